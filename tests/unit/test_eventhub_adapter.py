"""The Event Hubs producer adapter offline: the SDK's own ``EventDataBatch`` decides what fits (no connection)."""

from __future__ import annotations

import json

import pytest
from azure.eventhub import EventDataBatch
from azure.eventhub.exceptions import EventHubError

from shared.adapters.eventhub import EventHubSink, pack
from shared.errors import TooLargeError, TransientError
from shared.streaming import OutEvent


class OfflineProducer:
    """``create_batch`` / ``send_batch`` of ``EventHubProducerClient`` without the service: the batches are
    the SDK's own, with the size limit a hub would report."""

    def __init__(self, hub_limit: int = 1024, fail: Exception | None = None) -> None:
        self.hub_limit, self.fail, self.sent = hub_limit, fail, []

    def create_batch(self, *, partition_key=None, max_size_in_bytes=None):
        return EventDataBatch(max_size_in_bytes=min(max_size_in_bytes or self.hub_limit, self.hub_limit),
                              partition_key=partition_key)  # fmt: skip

    def send_batch(self, batch):
        if self.fail is not None:
            raise self.fail
        self.sent.append(batch)


def events(n: int, size: int = 100, key: str | None = None) -> list[OutEvent]:
    return [OutEvent(json.dumps({"id": i, "pad": "x" * size}), partition_key=key) for i in range(n)]


def bodies(batch) -> list[dict]:
    return [json.loads(b"".join(e.body)) for e in batch._internal_events]


def test_events_are_packed_into_as_few_batches_as_the_limit_allows_in_order():
    batches = list(pack(events(20), lambda key: EventDataBatch(max_size_in_bytes=1024, partition_key=key)))
    assert len(batches) > 1
    assert all(b.size_in_bytes <= 1024 for b in batches)
    assert [e["id"] for b in batches for e in bodies(b)] == list(range(20))
    # each batch but the last is full: one more event would not have fitted
    from azure.eventhub import EventData

    probe = EventDataBatch(max_size_in_bytes=1024)
    empty = probe.size_in_bytes
    probe.add(EventData(events(20)[19].body))
    assert all(b.size_in_bytes + (probe.size_in_bytes - empty) > 1024 for b in batches[:-1])


def test_one_batch_per_partition_key_so_events_of_one_key_keep_their_order():
    mixed = [OutEvent(json.dumps({"id": i}), partition_key=str(i % 2)) for i in range(6)]
    producer = OfflineProducer()
    EventHubSink(producer).send(mixed)
    assert [b._partition_key for b in producer.sent] == ["0", "1"]
    assert [[e["id"] for e in bodies(b)] for b in producer.sent] == [[0, 2, 4], [1, 3, 5]]


def test_an_event_too_large_for_an_empty_batch_is_refused_before_anything_is_sent():
    producer = OfflineProducer(hub_limit=1024)
    with pytest.raises(TooLargeError) as caught:
        EventHubSink(producer).send(events(2) + events(1, size=5000))
    assert caught.value.details["position"] == 2 and caught.value.details["max_bytes"] == 1024
    assert producer.sent == []


def test_a_lower_cap_than_the_hub_gives_smaller_batches():
    wide, narrow = OfflineProducer(hub_limit=4096), OfflineProducer(hub_limit=4096)
    EventHubSink(wide).send(events(20))
    EventHubSink(narrow, max_size_in_bytes=600).send(events(20))
    assert len(narrow.sent) > len(wide.sent) and all(b.size_in_bytes <= 600 for b in narrow.sent)


def test_a_service_failure_is_transient():
    with pytest.raises(TransientError):
        EventHubSink(OfflineProducer(fail=EventHubError("link detached"))).send(events(1))
