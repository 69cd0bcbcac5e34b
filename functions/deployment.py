"""Deployment on model registration: two front doors (Azure ML events, MLflow webhooks), one queue, one flow."""

from __future__ import annotations

import json

import azure.functions as func

from functions._runtime import deployment_service, event_as_dict, ledger
from shared.errors import InputError
from shared.events import parse_event
from shared.logs import bind, get_logger
from shared.registrations import (
    WebhookAuthError,
    from_azureml_event,
    from_message,
    from_mlflow_webhook,
    to_message,
)
from shared.settings import get_settings

bp = func.Blueprint()
_log = get_logger("functions.deployment")
QUEUE = "model-registrations"


@bp.function_name("on_model_registered")
@bp.event_grid_trigger(arg_name="event")
@bp.queue_output(arg_name="out", queue_name=QUEUE, connection="DataStorage")
def on_model_registered(event: func.EventGridEvent, out: func.Out[str], context: func.Context) -> None:
    """Azure ML ``ModelRegistered`` (either schema, either casing) → the deployment queue."""
    with bind(invocation_id=context.invocation_id, function="on_model_registered", event_id=event.id):
        try:
            registration = from_azureml_event(
                parse_event(event_as_dict(event)), get_settings().allowed_workspaces
            )
        except InputError as exc:
            _log.warning("registration event rejected", extra={"reason": exc.reason, "error": exc.message})
            return
        out.set(to_message(registration))
        _log.info(
            "registration queued", extra={"model": registration.name, "model_version": registration.version}
        )


@bp.function_name("mlflow_webhook")
@bp.route(route="mlflow-webhook", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.queue_output(arg_name="out", queue_name=QUEUE, connection="DataStorage")
def mlflow_webhook(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    """MLflow registry webhook: verify the signature (401 otherwise), deduplicate on the delivery id, queue the
    work and answer at once (the decision is made by ``deploy_model_version``)."""
    delivery = req.headers.get("X-MLflow-Delivery-Id", "")
    with bind(function="mlflow_webhook", event_id=delivery):
        try:
            item = from_mlflow_webhook(
                get_settings().mlflow_webhook_secret or "", dict(req.headers), req.get_body()
            )
        except WebhookAuthError as exc:
            _log.warning("webhook refused", extra={"reason": exc.reason, "error": exc.message})
            return func.HttpResponse(
                json.dumps({"error": exc.message}), status_code=401, mimetype="application/json"
            )
        except InputError as exc:
            return func.HttpResponse(
                json.dumps({"error": exc.message}), status_code=400, mimetype="application/json"
            )
        if item is None:
            return func.HttpResponse(status_code=204)
        claim = ledger().claim(f"delivery:{delivery}", "mlflow-webhook", 3600, {"kind": type(item).__name__})
        if claim is None:
            return func.HttpResponse(
                json.dumps({"status": "duplicate delivery"}), mimetype="application/json"
            )
        out.set(to_message(item))
        ledger().finish(claim, "queued", {"model": item.name, "version": item.version})
        return func.HttpResponse(
            json.dumps({"status": "queued"}), status_code=202, mimetype="application/json"
        )


@bp.function_name("deploy_model_version")
@bp.queue_trigger(arg_name="msg", queue_name=QUEUE, connection="DataStorage")
def deploy_model_version(msg: func.QueueMessage, context: func.Context) -> None:
    """Decide about one registration (or approval): validate, evaluate, promote / hold / reject."""
    with bind(invocation_id=context.invocation_id, function="deploy_model_version"):
        try:
            item = from_message(msg.get_body().decode())
        except InputError as exc:
            _log.error(
                "unreadable deployment message dropped", extra={"reason": exc.reason, "error": exc.message}
            )
            return
        service = deployment_service()
        outcome = service.approve(item) if type(item).__name__ == "ApprovalGranted" else service.handle(item)
        _log.info("deployment flow done", extra={"status": outcome.status, "champion": outcome.champion})
