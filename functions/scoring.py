"""Scoring on arrival: ``BlobCreated`` (Event Grid or CloudEvents schema) → score the file."""

from __future__ import annotations

import json

import azure.functions as func

from functions._runtime import event_as_dict, scoring_service
from shared.errors import InputError
from shared.events import parse_blob_created, parse_event
from shared.logs import bind, get_logger
from shared.telemetry import incoming_traceparent, scored, span, with_traceparent

bp = func.Blueprint()
DRIFT_QUEUE = "drift-evaluations"
_log = get_logger("functions.scoring")


@bp.function_name("score_blob")
@bp.event_grid_trigger(arg_name="event")
@bp.queue_output(arg_name="closed", queue_name=DRIFT_QUEUE, connection="DataStorage")
def score_blob(event: func.EventGridEvent, closed: func.Out[str], context: func.Context) -> None:
    """Score the blob a ``Microsoft.Storage.BlobCreated`` event announces.

    A bad event or a bad file is recorded and acknowledged (never retried); a transient failure raises,
    so Event Grid delivers the event again. A file that opens a new drift window asks for an evaluation
    of the window it closed (a message to ``evaluate_drift_window``).
    """
    raw = event_as_dict(event)
    with (
        bind(invocation_id=context.invocation_id, function="score_blob", event_id=event.id),
        span("score_blob", parent=incoming_traceparent(event=raw, context=context), kind="consumer"),
    ):
        service = scoring_service()
        try:
            blob_created = parse_blob_created(raw)
        except InputError as exc:
            service.reject_raw_event(raw, exc)  # recorded under failed/_events/, never under its names
            return
        outcome = scored(service.score, blob_created)
        if outcome.details.get("drift_window_closed"):
            closed.set(json.dumps(with_traceparent({"model": outcome.details["model_name"], "version": outcome.details["model_version"],
                                                    "window": outcome.details["drift_window_closed"]})))  # fmt: skip


@bp.function_name("on_model_promoted")
@bp.event_grid_trigger(arg_name="event")
def on_model_promoted(event: func.EventGridEvent, context: func.Context) -> None:
    """``Scorehook.Model.Promoted``: forget this instance's alias resolutions for the model, so the next
    file is scored with the new champion without waiting for the alias TTL."""
    raw = event_as_dict(event)
    with (
        bind(invocation_id=context.invocation_id, function="on_model_promoted", event_id=event.id),
        span("on_model_promoted", parent=incoming_traceparent(event=raw, context=context), kind="consumer"),
    ):
        try:
            promoted = parse_event(raw)
        except InputError as exc:
            _log.warning("event rejected", extra={"reason": exc.reason, "error": exc.message})
            return
        data = promoted.data if isinstance(promoted.data, dict) else {}
        name = (
            data.get("model_name")
            or data.get("name")
            or promoted.subject.removeprefix("models/").split(":")[0]
        )
        dropped = scoring_service().models.invalidate(name or None)
        _log.info(
            "model promoted: alias cache refreshed",
            extra={"model": name, "dropped": dropped, "model_version": data.get("version")},
        )
