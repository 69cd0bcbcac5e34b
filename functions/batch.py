"""Azure ML batch offload: how the batch jobs of ``engine: azureml-batch`` routes end (``RunCompleted``, or
``RunStatusChanged`` to Failed/Canceled, of the ``scorehook-batch`` experiment)."""

from __future__ import annotations

import azure.functions as func

from functions._runtime import event_as_dict, scoring_service
from shared.errors import InputError
from shared.events import parse_event
from shared.logs import bind, get_logger

bp = func.Blueprint()
_log = get_logger("functions.batch")


@bp.function_name("on_batch_job_event")
@bp.event_grid_trigger(arg_name="event")
def on_batch_job_event(event: func.EventGridEvent, context: func.Context) -> None:
    """Record how one of our batch jobs ended on its file's ledger record (succeeded with its output and
    lineage, or a ``batch_failed`` failure record). A bad or foreign event is logged and acknowledged; a
    transient failure (storage, Azure ML) raises, so Event Grid delivers the event again."""
    with bind(invocation_id=context.invocation_id, function="on_batch_job_event", event_id=event.id):
        service = scoring_service()
        if service.batch is None:
            _log.warning("batch job event ignored: no route has engine azureml-batch")
            return
        try:
            completion = service.batch.complete(parse_event(event_as_dict(event)))
        except InputError as exc:
            _log.warning("batch job event rejected", extra=exc.log_fields())
            return
        if completion is None:
            _log.info("run event ignored: not a batch job of Scorehook")
