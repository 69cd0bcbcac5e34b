"""Operations endpoints: health (anonymous), status, and the ops page with its replay action (function key)."""

from __future__ import annotations

import json
from collections import Counter

import azure.functions as func

from functions._runtime import ledger, scoring_service
from shared.errors import InputError, TransientError
from shared.logs import bind, get_logger
from shared.settings import get_settings

bp = func.Blueprint()
_log = get_logger("functions.ops")


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness: answers without touching any dependency; 503 ``degraded`` when a part of the process
    (a timer) has stopped, with what stopped it."""
    from shared.health import stopped

    down = stopped()
    body = {"status": "degraded" if down else "ok", "service": "scorehook", **({"stopped": down} if down else {})}
    return func.HttpResponse(json.dumps(body), status_code=503 if down else 200, mimetype="application/json")


@bp.function_name("status")
@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def status(req: func.HttpRequest) -> func.HttpResponse:
    """What the ledger knows: how many files succeeded, failed or are in progress, and the settings in use."""
    counts = Counter(record.status for record in ledger().records())
    body = {"ledger": dict(counts), "settings": get_settings().redacted()}
    return func.HttpResponse(json.dumps(body, default=str), mimetype="application/json")


_OUTCOMES = ("succeeded", "failed", "duplicate", "superseded", "ignored", "error")


def _replay_request(req: func.HttpRequest) -> tuple[str, bool]:
    """(the blob the request names as ``container/path``, whether it asked for JSON)."""
    from urllib.parse import parse_qs

    body = req.get_body() or b""
    if "json" in (req.headers.get("content-type") or "").lower():
        try:
            data = json.loads(body)
        except ValueError:
            data = {}
        return (str(data.get("blob") or "") if isinstance(data, dict) else ""), True
    values = parse_qs(body.decode("utf-8", "replace"))
    return (values.get("blob") or [req.params.get("blob") or ""])[0], False


@bp.function_name("ops_page")
@bp.route(route="ops", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def ops_page(req: func.HttpRequest) -> func.HttpResponse:
    """The ops page (``shared.opspage``): files, failures with a replay button, dead letters, decisions, drift."""
    from shared.opspage import collect, render

    with bind(function="ops_page"):
        notice = None
        if req.params.get("replayed") and req.params.get("outcome") in _OUTCOMES:
            notice = f"replayed {req.params['replayed'][:1100]}: {req.params['outcome']}"
        page = render(collect(scoring_service()), code=req.params.get("code"), notice=notice)
        return func.HttpResponse(page, mimetype="text/html", charset="utf-8",
                                 headers={"Cache-Control": "no-store"})  # fmt: skip


@bp.function_name("ops_replay")
@bp.route(route="ops/replay", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def ops_replay(req: func.HttpRequest) -> func.HttpResponse:
    """Replay one file through the scoring use case (as ``scorehook replay`` does). A form post is redirected
    back to the page (303) with the outcome; a JSON post (``{"blob": "incoming/a.csv"}``) gets the outcome."""
    from urllib.parse import urlencode, urlsplit

    from shared.names import check_blob_name

    blob, wants_json = _replay_request(req)
    with bind(function="ops_replay", blob=blob[:1100] or None):
        container, _, name = blob.partition("/")
        try:
            if not name:
                raise InputError(f"name the file as CONTAINER/PATH, not {blob[:200]!r}", reason="bad_event")
            check_blob_name(container, name)
            outcome = scoring_service().replay(container, name)
            result = {"blob": blob, "status": outcome.status, "output": outcome.output,
                      "reason": outcome.reason, "failure": outcome.failure}  # fmt: skip
            code = 200
        except (InputError, TransientError) as exc:
            result, code = (
                {"blob": blob, "status": "error", **exc.to_record()},
                (503 if isinstance(exc, TransientError) else 400),
            )
        _log.info("ops replay", extra={k: v for k, v in result.items() if k not in ("blob", "message")} | {
            "error": result.get("message")})  # fmt: skip
        if wants_json:
            return func.HttpResponse(
                json.dumps(result, default=str), status_code=code, mimetype="application/json"
            )
        query = {"replayed": blob[:1100], "outcome": result["status"]}
        if req.params.get("code"):
            query["code"] = req.params["code"]
        page = urlsplit(req.url).path.rstrip("/").removesuffix("/replay")
        return func.HttpResponse(status_code=303, headers={"Location": f"{page}?{urlencode(query)}"})
