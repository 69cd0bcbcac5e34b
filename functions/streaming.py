"""Streaming: batches of JSON records from Event Hubs → predictions to the output hub, bad records to the
dead letters (``failed/_stream/...``). Registered only with ``SCOREHOOK_STREAM_ENABLED``."""

from __future__ import annotations

from typing import Any, List  # noqa: UP035 - the worker checks these annotations and knows typing.List only

import azure.functions as func

from functions._runtime import streaming_service
from shared.logs import bind
from shared.settings import get_settings
from shared.streaming import CollectingSink, StreamBatch, StreamRecord

bp = func.Blueprint()


@bp.function_name("score_stream")
@bp.event_hub_message_trigger(
    arg_name="events", event_hub_name="%SCOREHOOK_STREAM_HUB%", connection="EventHubs", cardinality="many",
    consumer_group="%SCOREHOOK_STREAM_CONSUMER_GROUP%",
)  # fmt: skip
@bp.event_hub_output(arg_name="predictions", event_hub_name="%SCOREHOOK_STREAM_OUTPUT_HUB%", connection="EventHubs")
@bp.retry(strategy="exponential_backoff", max_retry_count="-1", minimum_interval="00:00:02",
          maximum_interval="00:01:00")  # fmt: skip
def score_stream(
    events: List[func.EventHubEvent], predictions: func.Out[List[str]], context: func.Context  # noqa: UP006
) -> None:
    """Score one partition's batch: one prediction event per good record (with its ``id``), the bad ones
    dead-lettered with their reason. A ``TransientError`` raises: the retry policy delivers the batch again
    before the checkpoint moves (consumers deduplicate by ``id``)."""
    settings = get_settings()
    batch = StreamBatch(settings.stream_hub, settings.stream_consumer_group, partition_of(events),
                        [as_record(e) for e in events])  # fmt: skip
    with bind(invocation_id=context.invocation_id, function="score_stream"):
        sink = CollectingSink()
        streaming_service().score_batch(batch, sink)
        if sink.bodies:
            predictions.set(sink.bodies)


def as_record(event: func.EventHubEvent) -> StreamRecord:
    """The trigger's event as the use case reads it."""
    return StreamRecord(event.get_body(), event.sequence_number, event.offset, event.enqueued_time,
                        event.partition_key)  # fmt: skip


def partition_of(events: list[func.EventHubEvent]) -> str:
    """The partition of a batch, from the trigger metadata the batch shares (``PartitionContext``)."""
    metadata: Any = events[0].metadata if events else None
    context = (metadata or {}).get("PartitionContext") or {}
    return str(context.get("PartitionId", "")) if isinstance(context, dict) else ""
