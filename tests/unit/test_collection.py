"""A route's committed output sent to an Event Hub (``eventhub_output``): predictions and telemetry with ids
made of the idempotency key and the row, only after the commit, sent again with the same ids after a failure."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from azure.eventhub import EventDataBatch

from shared.adapters.eventhub import EventHubSink
from shared.errors import ConfigurationError, PublishError, StorageUnavailableError
from shared.events import parse_blob_created
from shared.models import ModelCache, ModelProvider
from shared.routes import parse_routes
from shared.scoring import ScoringService
from shared.settings import Settings
from shared.testing import FakeBlobStore, FakeEventSink, FakeLedger, FakePublisher, FakeRegistry
from tests.unit.conftest import Scoring

GOOD = b"id,x1,x2,color\n007,0.5,1.0,red\n008,-1.5,0.2,blue\n009,2.0,-0.3,green\n"
OUTPUT = "incoming/a.csv.predictions.csv"


def route_json(**extra) -> str:
    return json.dumps([{"name": "monitored", "container": "incoming", "model": "models:/tiny@champion",
                        "eventhub_output": "monitoring", **extra}])  # fmt: skip


class Collected(Scoring):
    """The scoring service with a route that sends to the hub ``monitoring`` (a fake sink)."""

    def __init__(self, model_path: Path, sink, rows_per_send: int = 2000, **route) -> None:
        super().__init__(model_path)
        from shared.collection import OutputCollector

        self.sink = sink
        self.settings = Settings.from_env({"SCOREHOOK_ROUTES": route_json(**route)}, model_uri="models:/tiny@champion")
        self.service = ScoringService(self.blobs, self.ledger, self.provider, self.publisher, self.settings,
                                      collector=OutputCollector(self.blobs, {"monitoring": sink}, rows_per_send))  # fmt: skip


class CommitCheckingSink(FakeEventSink):
    """Fails the test if anything is sent before the output blob exists; ``fail_after`` sends, then down."""

    def __init__(self, blobs: FakeBlobStore, fail_after: int | None = None) -> None:
        super().__init__()
        self.blobs, self.fail_after, self.calls = blobs, fail_after, 0

    def send(self, events) -> None:
        assert OUTPUT in self.blobs.names("scored"), "events sent before the output was committed"
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise StorageUnavailableError("the hub is down")
        super().send(events)


def output_rows(blobs: FakeBlobStore) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(blobs.read_bytes("scored", OUTPUT).decode())))


def test_predictions_and_telemetry_go_to_the_hub_after_the_commit_with_ids_of_key_and_row(tiny_onnx):
    scoring = Collected(tiny_onnx, None)
    scoring.sink = sink = CommitCheckingSink(scoring.blobs)
    scoring.service.collector.sinks["monitoring"] = sink
    outcome = scoring.service.score(parse_blob_created(scoring.upload("a.csv", GOOD)))

    assert outcome.status == "succeeded"
    bodies = sink.bodies()
    predictions, telemetry = bodies[:-1], bodies[-1]
    rows = output_rows(scoring.blobs)
    assert [p["id"] for p in predictions] == [f"{outcome.key}#{i}" for i in (1, 2, 3)]
    assert [p["values"]["id"] for p in predictions] == ["007", "008", "009"]  # key columns stay text
    assert [p["values"]["prediction"] for p in predictions] == [int(r["prediction"]) for r in rows]
    assert [p["values"]["probability"] for p in predictions] == pytest.approx([float(r["probability"]) for r in rows])
    assert {(p["model"], p["model_version"], p["source"]["output"]) for p in predictions} == {
        ("tiny", "1", f"scored/{OUTPUT}")}  # fmt: skip
    assert telemetry["id"] == f"{outcome.key}#telemetry" and telemetry["kind"] == "telemetry"
    assert (telemetry["rows_read"], telemetry["rows_scored"], telemetry["prediction_events"]) == (3, 3, 3)
    assert {key for _, key in sink.events} == {outcome.key}  # one file, one partition key: in order
    record = scoring.ledger.get(outcome.key)
    assert record.status == "succeeded"
    assert (record.details["eventhub"], record.details["eventhub_events"]) == ("sent", 4)


def test_a_failed_send_keeps_the_scored_file_and_the_retry_sends_again_with_the_same_ids(tiny_onnx):
    scoring = Collected(tiny_onnx, None, rows_per_send=2)
    sink = CommitCheckingSink(scoring.blobs, fail_after=1)  # the first 2 rows go, then the hub is down
    scoring.service.collector.sinks["monitoring"] = sink
    raw = scoring.upload("a.csv", GOOD)
    with pytest.raises(PublishError):
        scoring.service.score(parse_blob_created(raw))
    key = parse_blob_created(raw)
    record = scoring.ledger.get(f"blob:devstoreaccount1/incoming/a.csv@{key.etag.strip(chr(34))}")
    assert (record.status, record.details["eventhub"], record.details["reason"]) == ("retrying", "failed",
                                                                                     "publish_failed")  # fmt: skip
    committed = scoring.blobs.properties("scored", OUTPUT).etag
    assert len(sink.events) == 2

    sink.fail_after = None  # the hub is back: the redelivery finds the output committed and sends it all again
    outcome = scoring.service.score(parse_blob_created(raw))
    assert outcome.status == "succeeded" and scoring.blobs.properties("scored", OUTPUT).etag == committed
    ids = [b["id"] for b in sink.bodies()]
    assert ids[:2] == ids[2:4] and sorted(set(ids)) == sorted(
        [f"{outcome.key}#{i}" for i in (1, 2, 3)] + [f"{outcome.key}#telemetry"])  # fmt: skip
    assert scoring.ledger.get(outcome.key).details["eventhub"] == "sent"
    assert scoring.models.loads == 1


def test_parquet_outputs_send_typed_values_and_telemetry_alone_sends_one_summary(tiny_onnx):
    sink = FakeEventSink()
    scoring = Collected(tiny_onnx, sink, output_format="parquet")
    outcome = scoring.service.score(parse_blob_created(scoring.upload("a.csv", GOOD)))
    values = [b["values"] for b in sink.bodies() if b["kind"] == "prediction"]
    assert [v["id"] for v in values] == ["007", "008", "009"] and all(isinstance(v["prediction"], int) for v in values)
    assert outcome.details["eventhub_events"] == 4

    alone = FakeEventSink()
    scoring = Collected(tiny_onnx, alone, eventhub_send=["telemetry"])
    outcome = scoring.service.score(parse_blob_created(scoring.upload("b.csv", GOOD)))
    assert [b["kind"] for b in alone.bodies()] == ["telemetry"] and alone.bodies()[0]["rows_scored"] == 3


def test_an_event_no_batch_can_hold_is_final_and_the_file_stays_scored(tiny_onnx):
    class OfflineProducer:  # the SDK's own batch decides what fits
        def create_batch(self, *, partition_key=None, max_size_in_bytes=None):
            return EventDataBatch(max_size_in_bytes=200, partition_key=partition_key)

        def send_batch(self, batch):
            raise AssertionError("nothing fits, nothing is sent")

    scoring = Collected(tiny_onnx, EventHubSink(OfflineProducer()))
    outcome = scoring.service.score(parse_blob_created(scoring.upload("a.csv", GOOD)))
    assert outcome.status == "succeeded" and scoring.blobs.names("scored") == [OUTPUT]
    details = scoring.ledger.get(outcome.key).details
    assert (details["eventhub"], details["eventhub_reason"], details["eventhub_events"]) == ("failed", "too_large", 0)


def test_a_route_that_sends_needs_a_sender_and_valid_options(tiny_onnx):
    settings = Settings.from_env({"SCOREHOOK_ROUTES": route_json()}, model_uri="models:/tiny@champion")
    registry = FakeRegistry()
    registry.register("tiny", tiny_onnx, alias="champion")
    blobs = FakeBlobStore()
    with pytest.raises(ConfigurationError, match="monitored"):
        ScoringService(blobs, FakeLedger(), ModelProvider(registry, blobs, ModelCache()), FakePublisher(), settings)
    with pytest.raises(ConfigurationError) as problems:
        parse_routes(route_json(eventhub_output="../up", eventhub_send=["everything"], engine="local"))
    assert "eventhub_output='../up'" in str(problems.value) and "eventhub_send=['everything']" in str(problems.value)
    with pytest.raises(ConfigurationError, match="only with eventhub_output"):
        parse_routes(json.dumps([{"name": "a", "container": "incoming", "model": "models:/m/1",
                                  "eventhub_send": ["telemetry"]}]))  # fmt: skip


def test_through_the_sdk_adapter_a_files_events_fill_several_batches_of_one_partition_key(tiny_onnx):
    class OfflineProducer:  # create_batch / send_batch of EventHubProducerClient, the hub's limit 1 KiB
        def __init__(self) -> None:
            self.sent: list[EventDataBatch] = []

        def create_batch(self, *, partition_key=None, max_size_in_bytes=None):
            return EventDataBatch(max_size_in_bytes=1024, partition_key=partition_key)

        def send_batch(self, batch):
            self.sent.append(batch)

    producer = OfflineProducer()
    scoring = Collected(tiny_onnx, EventHubSink(producer))
    rows = b"".join(f"{i:03d},0.5,1.0,red\n".encode() for i in range(40))
    outcome = scoring.service.score(parse_blob_created(scoring.upload("a.csv", b"id,x1,x2,color\n" + rows)))
    bodies = [json.loads(b"".join(e.body)) for batch in producer.sent for e in batch._internal_events]
    assert len(producer.sent) > 1 and all(len(b) > 0 for b in producer.sent)
    assert [b["id"] for b in bodies] == [f"{outcome.key}#{i}" for i in range(1, 41)] + [f"{outcome.key}#telemetry"]
    assert {b._partition_key for b in producer.sent} == {outcome.key}  # one file, one partition, in order


def test_an_output_that_cannot_be_read_back_is_a_storage_error_and_the_retry_sends(tiny_onnx):
    sink = FakeEventSink()
    scoring = Collected(tiny_onnx, sink)
    reads = {"failing": 1}
    real = scoring.blobs.read_chunks

    def read_chunks(container, name, chunk_size=4 << 20, etag=None, *, in_flight=1):
        if container == "scored" and reads["failing"]:
            reads["failing"] -= 1
            raise StorageUnavailableError("storage is down")
        return real(container, name, chunk_size, etag, in_flight=in_flight)

    scoring.blobs.read_chunks = read_chunks  # type: ignore[method-assign]
    raw = scoring.upload("a.csv", GOOD)
    with pytest.raises(StorageUnavailableError):
        scoring.service.score(parse_blob_created(raw))
    key = f"blob:devstoreaccount1/incoming/a.csv@{raw['data']['eTag'].strip(chr(34))}"
    assert (scoring.ledger.get(key).status, scoring.ledger.get(key).details["reason"]) == ("retrying",
                                                                                          "storage_unavailable")  # fmt: skip
    assert sink.events == []
    assert scoring.service.score(parse_blob_created(raw)).status == "succeeded" and len(sink.events) == 4
