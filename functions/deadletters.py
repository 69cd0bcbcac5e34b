"""Dead letters: every event Event Grid gave up on becomes a failure record (``scorehook deadletters`` replays
them). Triggered by ``BlobCreated`` in the dead-letter container; its subscription has no dead-letter
destination of its own, so nothing loops."""

from __future__ import annotations

import azure.functions as func

from functions._runtime import event_as_dict, scoring_service
from shared.deadletters import DeadLetterService
from shared.errors import InputError
from shared.events import parse_blob_created
from shared.logs import bind, get_logger
from shared.telemetry import incoming_traceparent, span

bp = func.Blueprint()
_log = get_logger("functions.deadletters")


@bp.function_name("on_deadletter")
@bp.event_grid_trigger(arg_name="event")
def on_deadletter(event: func.EventGridEvent, context: func.Context) -> None:
    """Record every dead letter of the blob a ``Microsoft.Storage.BlobCreated`` event announces.

    A bad event is logged and acknowledged; a transient failure (storage down) raises, so Event Grid
    delivers the event again.
    """
    raw = event_as_dict(event)
    with (
        bind(invocation_id=context.invocation_id, function="on_deadletter", event_id=event.id),
        span("on_deadletter", parent=incoming_traceparent(event=raw, context=context), kind="consumer"),
    ):
        dead_letters = DeadLetterService.for_scoring(scoring_service())
        try:
            blob_created = parse_blob_created(raw)
        except InputError as exc:
            dead_letters.reject_raw_event(raw, exc)  # recorded under failed/_events/, never under its names
            return
        recorded = dead_letters.record_event(blob_created)
        if recorded:
            _log.info("dead letters recorded", extra={"dead_letter_blob": blob_created.blob_path,
                                                      "events": len(recorded),
                                                      "records": [r.record for r in recorded]})  # fmt: skip
