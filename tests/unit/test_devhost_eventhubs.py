"""devhost's Event Hubs trigger inputs: built by the library's converter from what the extension sends the
worker, so the function sees real ``func.EventHubEvent`` objects with their system properties."""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func

from devhost.eventhubs import StoredEvent, trigger_input
from functions.streaming import as_record, partition_of

WHEN = datetime(2026, 12, 1, 10, 0, 5, 123456, tzinfo=UTC)


def stored(seq: int, key: str | None = None) -> StoredEvent:
    return StoredEvent("3", seq, f'{{"id": {seq}}}'.encode(), WHEN, key, seq * 10)


def test_cardinality_many_gives_a_list_of_events_with_their_system_properties_and_partition():
    events = trigger_input([stored(40, "k"), stored(41)], "records", "$Default", many=True)
    assert isinstance(events, list) and all(isinstance(e, func.EventHubEvent) for e in events)
    assert [e.get_body() for e in events] == [b'{"id": 40}', b'{"id": 41}']
    assert [e.sequence_number for e in events] == [40, 41] and [e.offset for e in events] == [400, 410]
    assert events[0].partition_key == "k" and events[1].partition_key is None
    assert events[0].enqueued_time == WHEN
    assert partition_of(events) == "3"  # from the PartitionContext the batch shares
    record = as_record(events[1])
    assert (record.body, record.sequence_number, record.enqueued_time) == (b'{"id": 41}', 41, WHEN)


def test_cardinality_one_gives_one_event():
    event = trigger_input([stored(7, "k")], "records", "$Default", many=False)
    assert isinstance(event, func.EventHubEvent)
    assert (event.get_body(), event.sequence_number, event.partition_key) == (b'{"id": 7}', 7, "k")
