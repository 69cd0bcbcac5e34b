"""Event Hubs streaming use case on fakes: good records scored with their ids, bad ones dead-lettered with
reasons and positions, the batch never failed by a record; drift parts by enqueued-time window."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import FAILURE_REASONS, StorageUnavailableError
from shared.models import ModelCache, ModelProvider
from shared.streaming import StreamBatch, StreamingService, StreamRecord
from shared.testing import FakeBlobStore, FakeEventSink, FakeRegistry

T0 = datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)


def record(seq: int, value: object, when: datetime = T0) -> StreamRecord:
    body = value if isinstance(value, bytes) else json.dumps(value).encode()
    return StreamRecord(body, sequence_number=seq, offset=str(seq * 100), enqueued_time=when)


def good(rid: object, x1: float = 0.5, color: str = "red") -> dict:
    return {"id": rid, "x1": x1, "x2": -0.2, "color": color}


@pytest.fixture
def stream(tiny_onnx):
    blobs, registry = FakeBlobStore(), FakeRegistry()
    registry.register("tiny", tiny_onnx, alias="champion")
    provider = ModelProvider(registry, blobs, ModelCache(), ttl_seconds=60)
    service = StreamingService(blobs, provider, model_uri="models:/tiny@champion")
    service.fakes = (blobs, provider)  # type: ignore[attr-defined]
    return service


def test_good_and_bad_records_in_one_batch_predictions_with_ids_and_dead_letters_with_reasons(stream):
    records = [
        record(40, good("a-1")),
        record(41, b"{not json"),
        record(42, good(7, x1=2.0, color="blue")),
        record(43, {"x1": 1.0, "x2": 0.0, "color": "red"}),  # no id
        record(44, {"id": "a-5", "x2": 0.0, "color": "red"}),  # x1 absent
        record(45, good("a-6", x1="high")),  # text where a float is declared: found by the engine
        record(46, [1, 2]),
        record(47, good("a-8", color="green")),
        record(48, b"\xff\xfe\x00x"),
    ]
    sink = FakeEventSink()
    outcome = stream.score_batch(StreamBatch("records", "$Default", "3", records), sink)

    bodies = sink.bodies()
    assert [b["id"] for b in bodies] == ["a-1", 7, "a-8"]  # ids as they arrived, in order
    assert [key for _, key in sink.events] == ["a-1", "7", "a-8"]  # one partition key per id
    assert all(b["model_version"] == "1" and b["model"] == "tiny" for b in bodies)
    assert all(0.0 <= b["probability"] <= 1.0 and b["prediction"] in (0, 1) for b in bodies)
    assert [b["source"]["sequence_number"] for b in bodies] == [40, 42, 47]
    assert outcome.scored == 3 and outcome.dead_lettered == 6

    blobs, _ = stream.fakes
    assert outcome.dead_letter_blob == "failed/_stream/records/3/40-48.json"
    letter = json.loads(blobs.read_bytes("failed", "_stream/records/3/40-48.json"))
    found = {(r["position"], r["sequence_number"], r["reason"]) for r in letter["records"]}
    assert found == {(1, 41, "malformed_event"), (3, 43, "missing_field"), (4, 44, "schema_mismatch"),
                     (5, 45, "wrong_type"), (6, 46, "malformed_event"), (8, 48, "not_utf8")}  # fmt: skip
    assert {r["reason"] for r in letter["records"]} <= set(FAILURE_REASONS)
    assert letter["records"][0]["body"] == "{not json" and letter["partition"] == "3"
    assert next(r for r in letter["records"] if r["position"] == 4)["details"]["columns"] == ["x1"]
    assert outcome.reasons == {"malformed_event": 2, "missing_field": 1, "schema_mismatch": 1, "wrong_type": 1,
                               "not_utf8": 1}  # fmt: skip


def test_a_redelivered_batch_gives_the_same_ids_and_the_same_dead_letter_blob(stream):
    records = [record(i, good(f"r{i}", x1=i / 10)) for i in range(5)] + [record(5, b"nope")]
    first, second = FakeEventSink(), FakeEventSink()
    batch = StreamBatch("records", "$Default", "0", records)
    one, two = stream.score_batch(batch, first), stream.score_batch(batch, second)
    assert first.bodies() == second.bodies() and len(first.bodies()) == 5
    assert one.dead_letter_blob == two.dead_letter_blob


def test_a_batch_of_only_good_records_writes_no_dead_letter(stream):
    sink = FakeEventSink()
    outcome = stream.score_batch(StreamBatch("records", "$Default", "0", [record(1, good("x"))]), sink)
    blobs, _ = stream.fakes
    assert outcome.dead_letter_blob is None and blobs.names("failed") == [] and len(sink.events) == 1


def test_an_unusable_model_dead_letters_every_record_and_sends_nothing(tiny_onnx):
    blobs = FakeBlobStore()
    service = StreamingService(blobs, ModelProvider(FakeRegistry(), blobs, ModelCache()), model_uri="models:/none@champion")
    sink = FakeEventSink()
    outcome = service.score_batch(StreamBatch("records", "$Default", "1", [record(1, good("a")), record(2, good("b"))]), sink)
    assert sink.events == [] and outcome.dead_lettered == 2 and outcome.reasons == {"model_not_found": 2}


def test_storage_down_fails_the_batch_so_it_is_delivered_again(stream):
    blobs, _ = stream.fakes
    blobs.fail_next = StorageUnavailableError("storage down")
    sink = FakeEventSink()
    with pytest.raises(StorageUnavailableError):
        stream.score_batch(StreamBatch("records", "$Default", "0", [record(1, good("a")), record(2, b"bad")]), sink)
    assert sink.events == []  # nothing sent before the dead letters are safe


class _Drift:
    """Records what the streaming service hands the drift monitor (``observer`` / ``record``)."""

    def __init__(self, monitor):
        self.monitor, self.parts = monitor, []

    def observer(self, version, model, salt):
        from shared.drift.monitor import ProfileObserver
        from shared.drift.profile import FeatureSpec, Profile

        return ProfileObserver(Profile([FeatureSpec("x1", "numeric", (-1.0, 0.0, 1.0))]), salt)

    def record(self, version, when, observer, part_id, input_url):
        profile = observer.close()
        self.parts.append((when, part_id, input_url, profile.rows))
        return self.monitor.record(version, when, observer, part_id, input_url)


def test_drift_parts_by_enqueued_time_window_named_by_partition_and_sequence_range(tiny_onnx):
    from shared.drift.evaluate import DriftPolicy
    from shared.drift.monitor import DriftMonitor
    from shared.drift.store import ProfileStore
    from shared.testing import FakeLedger, FakePublisher

    blobs, registry = FakeBlobStore(), FakeRegistry()
    registry.register("tiny", tiny_onnx, alias="champion")
    monitor = DriftMonitor(store=ProfileStore(blobs, "drift"), registry=registry, ledger=FakeLedger(),
                           publisher=FakePublisher(), policy=DriftPolicy(), window_seconds=3600)  # fmt: skip
    drift = _Drift(monitor)
    service = StreamingService(blobs, ModelProvider(registry, blobs, ModelCache()), model_uri="models:/tiny@champion",
                               drift=drift, drift_window_seconds=3600)  # fmt: skip
    later = T0 + timedelta(hours=1)
    records = [record(10, good("a")), record(11, good("b")), record(12, b"bad"), record(13, good("c"), later),
               record(14, good("z", x1="high"))]  # refused by the engine: never profiled
    outcome = service.score_batch(StreamBatch("records", "$Default", "2", records), FakeEventSink())

    assert [(p[1], p[3]) for p in drift.parts] == [("eventhub:records/$Default/2/10-11", 2),
                                                   ("eventhub:records/$Default/2/13-13", 1)]  # fmt: skip
    assert [d["drift_window"] for d in outcome.drift] == ["20261201T100000Z", "20261201T110000Z"]
    assert {d["drift_profile"] for d in outcome.drift} == {"recorded"}
    parts = [n for n in blobs.names("drift") if n.startswith("parts/tiny/1/")]
    assert sorted(p.split("/")[3] for p in parts) == ["20261201T100000Z", "20261201T110000Z"]
    again = service.score_batch(StreamBatch("records", "$Default", "2", records), FakeEventSink())
    assert {d["drift_profile"] for d in again.drift} == {"already_recorded"}  # a redelivery adds nothing


def test_an_output_hub_that_is_down_fails_the_batch_and_the_redelivery_rewrites_the_same_dead_letter(stream):
    from shared.errors import TransientError

    batch = StreamBatch("records", "$Default", "0", [record(1, good("a")), record(2, b"bad")])
    sink = FakeEventSink()
    sink.unavailable = TransientError("hub down")
    with pytest.raises(TransientError):
        stream.score_batch(batch, sink)
    sink.unavailable = None
    outcome = stream.score_batch(batch, sink)
    blobs, _ = stream.fakes
    assert [b["id"] for b in sink.bodies()] == ["a"]
    assert blobs.names("failed") == ["_stream/records/0/1-2.json"] and outcome.dead_lettered == 1
