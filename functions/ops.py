"""Operations endpoints: health (anonymous) and status (function key)."""

from __future__ import annotations

import json
from collections import Counter

import azure.functions as func

from functions._runtime import ledger
from shared.settings import get_settings

bp = func.Blueprint()


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
