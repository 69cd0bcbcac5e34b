"""Fan-out of large files: each part of a split file is scored by whichever instance takes its queue message."""

from __future__ import annotations

import json

import azure.functions as func

from functions._runtime import scoring_service
from functions.scoring import DRIFT_QUEUE
from shared.logs import bind
from shared.routes import PARTS_QUEUE, POISON_QUEUE
from shared.telemetry import incoming_traceparent, span, with_traceparent

bp = func.Blueprint()


@bp.function_name("score_part")
@bp.queue_trigger(arg_name="msg", queue_name=PARTS_QUEUE, connection="DataStorage")
@bp.queue_output(arg_name="closed", queue_name=DRIFT_QUEUE, connection="DataStorage")
def score_part(msg: func.QueueMessage, closed: func.Out[str], context: func.Context) -> None:
    """Score one part of a fanned-out file (``shared.fanout.FanOut.score_part``); the last part to finish
    commits the file's output. A bad part records the file's failure and returns; a transient failure raises,
    so the message comes back (after ``maxDequeueCount`` attempts it goes to ``scorehook-parts-poison``)."""
    with (
        bind(invocation_id=context.invocation_id, function="score_part"),
        span("score_part", parent=incoming_traceparent(context=context), kind="consumer"),
    ):
        dequeue_count = getattr(msg, "dequeue_count", None) or 1
        outcome = scoring_service().fanout.score_part(msg.get_body().decode("utf-8", "replace"), dequeue_count)
        if outcome.details.get("drift_window_closed"):
            closed.set(json.dumps(with_traceparent({"model": outcome.details["model_name"], "version": outcome.details["model_version"],
                                                    "window": outcome.details["drift_window_closed"]})))  # fmt: skip


@bp.function_name("part_poisoned")
@bp.queue_trigger(arg_name="msg", queue_name=POISON_QUEUE, connection="DataStorage")
def part_poisoned(msg: func.QueueMessage, context: func.Context) -> None:
    """A part message the host gave up on: the file's failure record names the part and its rows."""
    with bind(invocation_id=context.invocation_id, function="part_poisoned"):
        scoring_service().fanout.poisoned(msg.get_body().decode("utf-8", "replace"))
