"""Deployment on model registration: two front doors (Azure ML events, MLflow webhooks), one queue, one flow.

Every delivery the webhook answers writes one JSON line naming its delivery id, model, version and outcome
(``webhook delivery`` with ``outcome`` refused / invalid / ignored / duplicate / queued / not_queued).
"""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from functions._runtime import deployment_service, event_as_dict, ledger, queue
from shared.errors import InputError, TransientError
from shared.events import parse_event
from shared.logs import bind, get_logger
from shared.registrations import (
    WebhookAuthError,
    accept_delivery,
    from_azureml_event,
    from_message,
    from_mlflow_webhook,
    to_message,
)
from shared.settings import get_settings
from shared.telemetry import incoming_traceparent, span

bp = func.Blueprint()
_log = get_logger("functions.deployment")
QUEUE = "model-registrations"


@bp.function_name("on_model_registered")
@bp.event_grid_trigger(arg_name="event")
@bp.queue_output(arg_name="out", queue_name=QUEUE, connection="DataStorage")
def on_model_registered(event: func.EventGridEvent, out: func.Out[str], context: func.Context) -> None:
    """Azure ML ``ModelRegistered`` (either schema, either casing) → the deployment queue (references only;
    a failed write fails the invocation, so Event Grid redelivers)."""
    raw = event_as_dict(event)
    with (
        bind(invocation_id=context.invocation_id, function="on_model_registered", event_id=event.id),
        span("on_model_registered", parent=incoming_traceparent(event=raw, context=context), kind="consumer"),
    ):
        try:
            registration = from_azureml_event(parse_event(raw), get_settings().allowed_workspaces)
        except InputError as exc:
            _log.warning("registration event rejected", extra={"reason": exc.reason, "error": exc.message})
            return
        out.set(to_message(registration))
        _log.info(
            "registration queued", extra={"model": registration.name, "model_version": registration.version}
        )


def _claimed(raw: bytes) -> tuple[Any, Any]:
    """The model and version an unverified body names, for the log line only (cut short: untrusted)."""
    try:
        data = json.loads(raw).get("data") or {}
        return (str(data["name"])[:200] if data.get("name") is not None else None,
                str(data["version"])[:50] if data.get("version") is not None else None)  # fmt: skip
    except (ValueError, AttributeError, TypeError):
        return None, None


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _answer(status: int, body: dict[str, Any] | None = None) -> func.HttpResponse:
    if body is None:
        return func.HttpResponse(status_code=status)
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


@bp.function_name("mlflow_webhook")
@bp.route(route="mlflow-webhook", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def mlflow_webhook(req: func.HttpRequest) -> func.HttpResponse:
    """MLflow registry webhook: verify the signature (401 otherwise), queue the work once per delivery id and
    answer at once (202; 200 for a duplicate; the decision is made by ``deploy_model_version``). The delivery
    is marked only after its message is queued: a queue that is down answers 503, and MLflow's retry queues it."""
    delivery = req.headers.get("X-MLflow-Delivery-Id", "")[:100]
    raw = req.get_body()
    with (
        bind(function="mlflow_webhook", event_id=delivery or None),
        span("mlflow_webhook", parent=incoming_traceparent(headers=dict(req.headers)), kind="server"),
    ):
        line: dict[str, Any] = {"delivery_id": delivery}
        try:
            item = from_mlflow_webhook(get_settings().mlflow_webhook_secret or "", dict(req.headers), raw)
        except WebhookAuthError as exc:
            model, version = _claimed(raw)
            _log.warning("webhook delivery", extra={**line, "outcome": "refused", "model": model,
                         "model_version": version, "reason": exc.reason, "error": exc.message})  # fmt: skip
            return _answer(401, {"error": exc.message})
        except InputError as exc:
            model, version = _claimed(raw)
            _log.warning("webhook delivery", extra={**line, "outcome": "invalid", "model": model,
                         "model_version": version, "reason": exc.reason, "error": exc.message})  # fmt: skip
            return _answer(400, {"error": exc.message})
        if item is None:
            model, version = _claimed(raw)
            _log.info("webhook delivery", extra={**line, "outcome": "ignored", "model": model,
                      "model_version": version, "reason": "not a registration or an approval"})  # fmt: skip
            return _answer(204)
        line |= {"model": item.name, "model_version": item.version, "kind": type(item).__name__}
        try:
            outcome = accept_delivery(item, ledger(), queue(QUEUE))
        except TransientError as exc:
            _log.error("webhook delivery", extra={**line, "outcome": "not_queued", "reason": exc.reason,
                       "error": exc.message})  # fmt: skip
            return _answer(503, {"error": f"not queued, retry: {exc.message}"})
        except InputError as exc:
            _log.error("webhook delivery", extra={**line, "outcome": "invalid", "reason": exc.reason,
                       "error": exc.message})  # fmt: skip
            return _answer(400, {"error": exc.message})
        if outcome == "duplicate":
            _log.info(
                "webhook delivery", extra={**line, "outcome": "duplicate", "reason": "delivery id seen"}
            )
            return _answer(200, {"status": "duplicate delivery"})
        _log.info("webhook delivery", extra={**line, "outcome": "queued", "reason": None})
        return _answer(202, {"status": "queued"})


@bp.function_name("deploy_model_version")
@bp.queue_trigger(arg_name="msg", queue_name=QUEUE, connection="DataStorage")
def deploy_model_version(msg: func.QueueMessage, context: func.Context) -> None:
    """Decide about one registration (or approval): validate, evaluate, promote / hold / reject."""
    text = msg.get_body().decode(errors="replace")
    with (
        bind(invocation_id=context.invocation_id, function="deploy_model_version"),
        span(
            "deploy_model_version",
            parent=incoming_traceparent(event=_json_object(text), context=context),
            kind="consumer",
        ),
    ):
        try:
            item = from_message(text)
        except InputError as exc:
            _log.error(
                "unreadable deployment message dropped", extra={"reason": exc.reason, "error": exc.message}
            )
            return
        with bind(model=item.name, model_version=item.version, event_id=item.delivery_id):
            service = deployment_service()
            outcome = (
                service.approve(item) if type(item).__name__ == "ApprovalGranted" else service.handle(item)
            )
            _log.info("deployment flow done", extra={"status": outcome.status, "champion": outcome.champion,
                                                     "key": outcome.key})  # fmt: skip
