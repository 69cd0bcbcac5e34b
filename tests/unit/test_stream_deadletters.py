"""Stream dead letters on fakes: listed with their reasons, sent again to their input hub after a fix, each
once; a failed send marks nothing; ``status`` counts them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.errors import StorageUnavailableError
from shared.models import ModelCache, ModelProvider
from shared.opsview import OpsView
from shared.stream_deadletters import StreamDeadLetterService
from shared.streaming import StreamBatch, StreamingService, StreamRecord
from shared.testing import FakeBlobStore, FakeEventSink, FakeLedger, FakeRegistry

T0 = datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)


def good(rid: str, x1: float = 0.5) -> dict:
    return {"id": rid, "x1": x1, "x2": -0.2, "color": "red"}


def batch(records: list[bytes], first: int = 10) -> StreamBatch:
    return StreamBatch("records", "$Default", "1", [StreamRecord(b, first + i, str(i), T0, f"k{i}")
                                                    for i, b in enumerate(records)])  # fmt: skip


@pytest.fixture
def fakes(tiny_onnx):
    """A stream whose model is not registered yet: every record is dead-lettered (``model_not_found``)."""
    blobs, registry, ledger = FakeBlobStore(), FakeRegistry(), FakeLedger()
    service = StreamingService(blobs, ModelProvider(registry, blobs, ModelCache(), ttl_seconds=0),
                               model_uri="models:/tiny@champion")  # fmt: skip
    bodies = [json.dumps(good("r-1")).encode(), json.dumps(good("r-2", 1.5)).encode(), b"\xff\xfe not text",
              json.dumps({**good("r-4"), "pad": "x" * 5000}).encode()]  # fmt: skip
    outcome = service.score_batch(batch(bodies), FakeEventSink())
    assert outcome.dead_lettered == 4 and outcome.reasons == {"model_not_found": 4}
    return blobs, registry, ledger, service, tiny_onnx


def test_stream_dead_letters_are_listed_and_replayed_to_their_hub_once_after_the_fix(fakes):
    blobs, registry, ledger, stream, model = fakes
    sinks: dict[str, FakeEventSink] = {}
    service = StreamDeadLetterService(blobs, ledger, "failed", sink_for=lambda hub: sinks.setdefault(hub, FakeEventSink()))
    letters = list(service.dead_letters())
    assert [(d.hub, d.partition, d.position, d.sequence_number, d.reason) for d in letters] == [
        ("records", "1", i, 10 + i, "model_not_found") for i in range(4)]  # fmt: skip
    assert [service.replay_status(d) for d in letters] == ["no", "no", "n/a", "n/a"]  # not text; cut at 4 KiB
    assert "not UTF-8" in letters[2].problem and "cut" in letters[3].problem

    registry.register("tiny", model, alias="champion")  # the fix
    replayed = service.replay()
    assert [(r.status, r.hub, r.dead_letter.record_id) for r in replayed] == [("sent", "records", "r-1"),
                                                                              ("sent", "records", "r-2")]  # fmt: skip
    sent = sinks["records"].events
    assert [json.loads(body)["id"] for body, _ in sent] == ["r-1", "r-2"]  # unchanged bodies: same ids
    assert [key for _, key in sent] == ["k0", "k1"]  # and their partition keys
    assert service.replay() == [] and len(sinks["records"].events) == 2  # each once
    assert [service.replay_status(d) for d in service.dead_letters()] == ["yes", "yes", "n/a", "n/a"]

    # the trigger scores them now
    out = FakeEventSink()
    outcome = stream.score_batch(batch([body.encode() for body, _ in sent], first=20), out)
    assert outcome.scored == 2 and [b["id"] for b in out.bodies()] == ["r-1", "r-2"]


def test_a_failed_send_marks_nothing_and_the_next_replay_sends_them(fakes):
    blobs, _, ledger, _, _ = fakes
    sink = FakeEventSink()
    sink.unavailable = StorageUnavailableError("the hub is down")
    service = StreamDeadLetterService(blobs, ledger, "failed", sink_for=lambda hub: sink)
    assert [(r.status, r.reason) for r in service.replay()] == [("error", "storage_unavailable")] * 2
    assert [service.replay_status(d) for d in service.dead_letters()][:2] == ["no", "no"]
    sink.unavailable = None
    assert [r.status for r in service.replay()] == ["sent", "sent"] and len(sink.events) == 2


def test_records_bad_in_themselves_are_not_replayed(tiny_onnx):
    blobs, registry, ledger = FakeBlobStore(), FakeRegistry(), FakeLedger()
    registry.register("tiny", tiny_onnx, alias="champion")
    stream = StreamingService(blobs, ModelProvider(registry, blobs, ModelCache()), model_uri="models:/tiny@champion")
    bodies = [b"{not json", json.dumps({"x1": 1.0, "x2": 0.0, "color": "red"}).encode(),
              json.dumps({"id": "w-1", "x1": "high", "x2": 0.0, "color": "red"}).encode()]  # fmt: skip
    stream.score_batch(batch(bodies), FakeEventSink())
    service = StreamDeadLetterService(blobs, ledger, sink_for=lambda hub: FakeEventSink())
    assert [(d.reason, service.replay_status(d)) for d in service.dead_letters()] == [
        ("malformed_event", "n/a"), ("missing_field", "n/a"), ("wrong_type", "no")]  # a new model may take text
    assert [r.dead_letter.record_id for r in service.replay()] == ["w-1"]


def test_status_counts_stream_dead_letters(fakes):
    blobs, _, ledger, _, _ = fakes
    view = OpsView(ledger, blobs)
    assert view.status().stream_dead_letters == {"total": 4, "open": 2, "replayed": 0, "not_replayable": 2}
    StreamDeadLetterService(blobs, ledger, sink_for=lambda hub: FakeEventSink()).replay()
    assert view.status().stream_dead_letters == {"total": 4, "open": 0, "replayed": 2, "not_replayable": 2}
    assert view.status().files.counts.get("failed_open", 0) == 0  # records, not files
