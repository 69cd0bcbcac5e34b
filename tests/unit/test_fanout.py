"""Fan-out of large files on the fakes: planning (quoted newlines, CRLF, BOM, Parquet row groups) and the commit
protocol (out of order, duplicate deliveries, racing committers, a poison part, a poisoned message)."""

from __future__ import annotations

import io
import json
import random
import threading
from pathlib import Path

import pytest

from shared.engine import Limits, score_file
from shared.errors import AlreadyClaimedError
from shared.fanout import Part, part_key, plan_csv, plan_key, plan_parquet
from shared.models import ModelCache, ModelProvider
from shared.scoring import ScoringService, output_name
from shared.settings import Settings
from shared.testing import FakeBlobStore, FakeEventSink, FakeLedger, FakePublisher, FakeQueue, FakeRegistry


def _csv(rows: int, *, crlf: bool = False, bom: bool = False, bad_row: int | None = None, missing_until: int = 0) -> bytes:
    """A CSV whose ``note`` column holds quoted newlines and escaped quotes every few rows."""
    rng = random.Random(7)
    end = "\r\n" if crlf else "\n"
    lines = ["id,x1,x2,color,note,label"]
    for i in range(1, rows + 1):
        note = f'"line one{end}line ""two"" {i}"' if i % 7 == 0 else f"n{i}"
        x1 = "abc" if i == bad_row else f"{rng.uniform(-2, 2):.4f}"
        x1 = "" if i <= missing_until else x1
        lines.append(f"{i:06d},{x1},{rng.uniform(-2, 2):.4f},{rng.choice(['red', 'green', 'blue'])},{note},{i % 2}")
    data = (end.join(lines) + end).encode()
    return (b"\xef\xbb\xbf" + data) if bom else data


class Stack:
    """The scoring service on fakes with one route that fans files out above ``fanout_bytes``."""

    def __init__(self, model: Path, fanout: bool = True, part_bytes: int = 4096, reject: bool = False,
                 sink: FakeEventSink | None = None) -> None:  # fmt: skip
        self.blobs, self.ledger, self.publisher, self.registry = FakeBlobStore(), FakeLedger(), FakePublisher(), FakeRegistry()
        self.registry.register("tiny", model, alias="champion")
        self.queue = FakeQueue()
        route = {"name": "big", "container": "incoming", "model": "models:/tiny@champion",
                 "on_missing": "reject_rows" if reject else "pass", "batch_rows": 500}  # fmt: skip
        if fanout:
            route |= {"fanout_bytes": 1000, "part_bytes": part_bytes}
        if sink is not None:
            route |= {"eventhub_output": "monitoring"}
        self.settings = Settings.from_env({"SCOREHOOK_ROUTES": json.dumps([route])})
        provider = ModelProvider(self.registry, self.blobs, ModelCache(), ttl_seconds=60)
        from shared.collection import OutputCollector

        collector = OutputCollector(self.blobs, {"monitoring": sink}) if sink is not None else None
        self.service = ScoringService(self.blobs, self.ledger, provider, self.publisher, self.settings,
                                      collector=collector, parts=self.queue)  # fmt: skip

    def event(self, name: str, data: bytes) -> dict:
        from shared.events import parse_blob_created

        etag = self.blobs.write_bytes("incoming", name, data)
        return parse_blob_created({
            "id": f"evt-{name}", "eventType": "Microsoft.Storage.BlobCreated",
            "subject": f"/blobServices/default/containers/incoming/blobs/{name}",
            "eventTime": "2026-11-23T10:00:00Z", "topic": "/subscriptions/0/x/storageAccounts/devstoreaccount1",
            "data": {"api": "PutBlob", "eTag": etag, "contentLength": len(data), "blobType": "BlockBlob",
                     "url": f"http://127.0.0.1:10000/devstoreaccount1/incoming/{name}",
                     "sequencer": f"{int(etag.strip(chr(34)), 16):032x}"},
        })  # fmt: skip

    def output(self, name: str) -> bytes:
        return self.blobs.read_bytes("scored", output_name("incoming", name))


def _single(model: Path, name: str, data: bytes) -> bytes:
    stack = Stack(model, fanout=False)
    assert stack.service.score(stack.event(name, data)).status == "succeeded"
    return stack.output(name)


# -- planning ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("crlf, bom", [(False, False), (True, False), (False, True), (True, True)])
def test_csv_parts_end_at_record_boundaries_never_inside_a_quoted_newline(crlf, bom):
    data = _csv(600, crlf=crlf, bom=bom)
    blobs = FakeBlobStore()
    blobs.write_bytes("in", "a.csv", data)
    plan = plan_csv(blobs, "in", "a.csv", None, part_bytes=2048, limits=Limits(), size=len(data))
    assert plan is not None and len(plan.parts) > 5
    header = data[plan.header[0] : plan.header[1]]
    assert header.startswith(b"id,") and plan.header[0] == (3 if bom else 0)
    assert plan.parts[0].start == 0 and plan.parts[-1].end == len(data)
    rows = 0
    for before, part in zip((None, *plan.parts), plan.parts, strict=False):
        if before is not None:
            assert part.start == before.end and part.first_row == before.first_row + before.rows
        body = data[part.start : part.end]
        text = (body if part.index == 0 else header + body).decode("utf-8-sig")
        import csv

        records = list(csv.reader(io.StringIO(text, newline="")))
        assert records[0][0] == "id" and all(len(r) == 6 for r in records)  # no record was cut
        assert [int(r[0]) for r in records[1:]] == list(range(part.first_row, part.first_row + part.rows))
        # the physical line a part starts on is the file's
        assert data[: part.start].count(b"\n") + 1 == part.first_line or part.index == 0
        rows += part.rows
    assert rows == 600


def test_a_file_that_does_not_split_or_cannot_be_cut_is_scored_whole():
    blobs = FakeBlobStore()
    blobs.write_bytes("in", "small.csv", _csv(10))
    blobs.write_bytes("in", "open.csv", b'id,x\n1,"never closed\n' + b"2,x\n" * 3000)
    assert plan_csv(blobs, "in", "small.csv", None, part_bytes=1 << 20, limits=Limits()) is None
    assert plan_csv(blobs, "in", "open.csv", None, part_bytes=1024, limits=Limits(max_record_bytes=4096)) is None


def test_parquet_parts_are_whole_row_groups_grouped_to_the_part_size():
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": [f"{i:05d}" for i in range(10_000)], "x1": [float(i) for i in range(10_000)]})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=1000)
    blobs = FakeBlobStore()
    blobs.write_bytes("in", "a.parquet", sink.getvalue())
    plan = plan_parquet(blobs, "in", "a.parquet", None, part_bytes=20_000, size=len(sink.getvalue()))
    assert plan is not None and len(plan.parts) >= 2
    assert [g for p in plan.parts for g in p.row_groups] == list(range(10))
    assert [p.first_row for p in plan.parts] == [1 + sum(q.rows for q in plan.parts[: p.index]) for p in plan.parts]
    assert sum(p.rows for p in plan.parts) == 10_000


# -- the commit protocol ---------------------------------------------------------------------------------
def _messages(stack: Stack) -> list[str]:
    messages, stack.queue.messages = list(stack.queue.messages), []
    return messages


@pytest.mark.parametrize("crlf, bom", [(False, False), (True, True)])
def test_parts_scored_out_of_order_commit_once_byte_identical_to_the_single_path(tiny_onnx, crlf, bom):
    data = _csv(3000, crlf=crlf, bom=bom)
    stack = Stack(tiny_onnx)
    outcome = stack.service.score(stack.event("big.csv", data))
    assert outcome.status == "fanned_out" and outcome.details["parts"] > 5
    assert stack.ledger.get(outcome.key).status == "fanned_out"
    messages = _messages(stack)
    assert len(messages) == outcome.details["parts"]
    random.Random(3).shuffle(messages)
    statuses = [stack.service.fanout.score_part(m).status for m in messages]
    assert statuses.count("committed") == 1 and statuses[-1] == "committed"
    assert stack.output("big.csv") == _single(tiny_onnx, "big.csv", data)
    assert stack.blobs.commits == [("scored", output_name("incoming", "big.csv"))]
    record = stack.ledger.get(outcome.key)
    assert record.status == "succeeded" and record.details["rows_read"] == 3000 and record.details["parts"] == len(messages)
    metadata = stack.blobs.properties("scored", output_name("incoming", "big.csv")).metadata
    assert metadata["rows_scored"] == "3000" and metadata["input_etag"] and metadata["model_version"] == "1"
    assert stack.publisher.types().count("Scorehook.Scoring.Completed") == 1


def test_duplicate_part_deliveries_do_nothing_and_a_lost_commit_is_finished_by_a_redelivery(tiny_onnx):
    stack = Stack(tiny_onnx)
    stack.service.score(stack.event("big.csv", _csv(2000)))
    messages = _messages(stack)
    for message in messages[:-1]:
        assert stack.service.fanout.score_part(message).status == "scored"
        assert stack.service.fanout.score_part(message).status == "scored"  # counted once
    crash = RuntimeError("the instance died before committing")

    def die(container, name):
        raise crash

    stack.blobs.before_commit = die
    with pytest.raises(RuntimeError):
        stack.service.fanout.score_part(messages[-1])
    assert stack.blobs.commits == []
    stack.blobs.before_commit = lambda container, name: None
    assert stack.service.fanout.score_part(messages[-1]).status == "committed"  # the redelivery commits
    assert stack.service.fanout.score_part(messages[-1]).status == "duplicate"
    assert stack.service.fanout.score_part(messages[0]).status == "duplicate"
    assert len(stack.blobs.commits) == 1
    assert stack.output("big.csv") == _single(tiny_onnx, "big.csv", _csv(2000))


def test_two_parts_racing_to_finish_commit_once(tiny_onnx):
    stack = Stack(tiny_onnx)
    stack.service.score(stack.event("big.csv", _csv(2000)))
    messages = _messages(stack)
    for message in messages[:-2]:
        stack.service.fanout.score_part(message)
    barrier, results = threading.Barrier(4), []

    def deliver(message):
        barrier.wait()
        try:
            results.append(stack.service.fanout.score_part(message).status)
        except AlreadyClaimedError:  # the twin delivery holds the part's lease: this message comes back later
            results.append("retry")

    threads = [threading.Thread(target=deliver, args=(m,)) for m in messages[-2:] * 2]  # each delivered twice
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    redelivered = [stack.service.fanout.score_part(m).status for m in messages[-2:]]  # what comes back
    assert (results + redelivered).count("committed") == 1, (results, redelivered)
    assert len(stack.blobs.commits) == 1
    assert stack.output("big.csv") == _single(tiny_onnx, "big.csv", _csv(2000))


def test_a_poison_part_is_one_failure_record_naming_the_part_and_the_rows_of_the_file(tiny_onnx):
    data = _csv(3000, bad_row=2222)
    single = Stack(tiny_onnx, fanout=False)
    expected = single.service.score(single.event("big.csv", data))
    assert expected.reason == "bad_value"
    stack = Stack(tiny_onnx)
    outcome = stack.service.score(stack.event("big.csv", data))
    statuses = [stack.service.fanout.score_part(m).status for m in _messages(stack)]
    assert "committed" not in statuses and "failed" in statuses
    record = json.loads(stack.blobs.read_bytes("failed", expected.failure.split("/", 1)[1]))
    assert record["reason"] == "bad_value"
    assert (record["row"], record["line"], record["column"]) == (expected.details["row"], expected.details["line"], "x1")
    assert record["part_first_row"] <= 2222 <= record["part_last_row"] and record["parts"] == outcome.details["parts"]
    assert f"data row {expected.details['row']}" in record["message"] and record["message"].startswith("part ")
    assert stack.ledger.get(outcome.key).status == "failed"
    assert stack.blobs.names("scored") == [] and stack.blobs.commits == []
    assert stack.publisher.types().count("Scorehook.Scoring.Failed") == 1


def test_a_poisoned_part_message_fails_the_file_naming_the_part(tiny_onnx):
    stack = Stack(tiny_onnx)
    outcome = stack.service.score(stack.event("big.csv", _csv(2000)))
    messages = _messages(stack)
    stack.service.fanout.score_part(messages[0])
    failed = stack.service.fanout.poisoned(messages[1])
    assert failed.status == "failed"
    part = Part.from_dict(json.loads(messages[1])["part"])
    record = json.loads(stack.blobs.read_bytes("failed", failed.details["failure"].split("/", 1)[1]))
    assert record["reason"] == "dead_lettered" and record["part"] == 2 and record["row"] == part.first_row
    assert stack.ledger.get(plan_key(outcome.key)).status == "failed"
    assert [stack.service.fanout.score_part(m).status for m in messages[2:]] == ["duplicate"] * len(messages[2:])
    assert stack.blobs.names("scored") == []


def test_parquet_input_fans_out_by_row_groups_byte_identical(tiny_onnx):
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pacsv.read_csv(io.BytesIO(_csv(4000)), convert_options=pacsv.ConvertOptions(
        column_types={"id": pa.string(), "x1": pa.float64(), "x2": pa.float64()}))  # fmt: skip
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=400)
    stack = Stack(tiny_onnx, part_bytes=20_000)
    outcome = stack.service.score(stack.event("big.parquet", sink.getvalue()))
    assert outcome.status == "fanned_out" and outcome.details["parts"] >= 2
    statuses = [stack.service.fanout.score_part(m).status for m in reversed(_messages(stack))]
    assert statuses.count("committed") == 1
    assert stack.output("big.parquet") == _single(tiny_onnx, "big.parquet", sink.getvalue())


def test_below_the_threshold_or_without_the_setting_nothing_changes(tiny_onnx):
    stack = Stack(tiny_onnx)
    small = _csv(10)
    assert len(small) < 1000
    assert stack.service.score(stack.event("small.csv", small)).status == "succeeded"
    assert stack.queue.messages == []
    assert stack.output("small.csv") == b"".join(
        score_file(io.BytesIO(small), fmt="csv", model=stack.service.models.get("models:/tiny@champion")[1],
                   model_version="1", batch_rows=500)
    )


def test_each_part_profiles_its_rows_once_into_the_file_window(tiny_onnx):
    import pyarrow.csv as pacsv

    from shared.drift.evaluate import DriftPolicy
    from shared.drift.monitor import BASELINE_ARTIFACT, DriftMonitor, baseline_from_reference
    from shared.drift.store import ProfileStore
    from shared.models import OnnxModel

    stack = Stack(tiny_onnx)
    reference = pacsv.read_csv(io.BytesIO(_csv(3000)))
    artifact = baseline_from_reference(reference, OnnxModel.from_file(str(tiny_onnx)))
    stack.registry.artifacts[("tiny", "1", BASELINE_ARTIFACT)] = json.dumps(artifact).encode()
    now = 1_795_428_000.0  # 2026-11-23T10:00:00Z, the event's time
    stack.service.drift = DriftMonitor(store=ProfileStore(stack.blobs, "drift"), registry=stack.registry,
                                       ledger=stack.ledger, publisher=stack.publisher, policy=DriftPolicy(),
                                       clock=lambda: now)  # fmt: skip
    outcome = stack.service.score(stack.event("big.csv", _csv(2000)))
    messages = _messages(stack)
    statuses = [stack.service.fanout.score_part(m).status for m in messages + messages[:2]]  # two redelivered
    assert statuses.count("committed") == 1
    parts = {stack.ledger.get(f"part:{outcome.key}#{i:05d}").details["drift_profile"] for i in range(len(messages))}
    assert parts == {"recorded"}
    state = stack.service.drift.store.compact("tiny", "1", "20261123T100000Z", now=now)
    assert state is not None and state.rows == 2000  # every row once, whatever the redeliveries


def test_a_failed_fanned_out_file_replays_afresh_and_succeeds(tiny_onnx):
    stack = Stack(tiny_onnx)
    outcome = stack.service.score(stack.event("big.csv", _csv(2000)))
    messages = _messages(stack)
    assert stack.service.fanout.poisoned(messages[0]).status == "failed"
    assert stack.service.replay("incoming", "big.csv").status == "fanned_out"
    replayed = _messages(stack)
    assert len(replayed) == len(messages)
    statuses = [stack.service.fanout.score_part(m).status for m in replayed]
    assert statuses.count("committed") == 1
    assert stack.ledger.get(outcome.key).status == "succeeded"
    assert stack.output("big.csv") == _single(tiny_onnx, "big.csv", _csv(2000))


def test_a_blob_overwritten_while_its_parts_run_is_superseded_and_nothing_is_committed(tiny_onnx):
    stack = Stack(tiny_onnx)
    outcome = stack.service.score(stack.event("big.csv", _csv(2000)))
    messages = _messages(stack)
    assert stack.service.fanout.score_part(messages[0]).status == "scored"
    stack.blobs.write_bytes("incoming", "big.csv", _csv(2100))  # a new version: its own event scores it
    assert stack.service.fanout.score_part(messages[1]).status == "superseded"
    assert [stack.service.fanout.score_part(m).status for m in messages[2:]] == ["duplicate"] * len(messages[2:])
    assert stack.ledger.get(outcome.key).status == "superseded"
    assert stack.blobs.commits == [] and stack.blobs.names("scored") == []


def test_a_scan_out_of_time_continues_in_another_invocation_while_the_parts_it_found_are_scored(tiny_onnx):
    data = _csv(3000, crlf=True, bom=True)
    stack = Stack(tiny_onnx)
    stack.service.fanout.scan_seconds = 0  # pause after every part: the scan continues from its checkpoint
    outcome = stack.service.score(stack.event("big.csv", data))
    assert outcome.status == "fanned_out" and outcome.details["parts"] is None  # still scanning
    assert outcome.details["parts_queued"] == 1
    kinds, statuses, rng = [], [], random.Random(5)
    while stack.queue.messages:  # workers take whatever is queued, in any order
        message = stack.queue.messages.pop(rng.randrange(len(stack.queue.messages)))
        kinds.append(json.loads(message).get("kind", "part"))
        statuses.append(stack.service.fanout.score_part(message).status)
    assert kinds.count("scan") > 3 and statuses.count("committed") == 1
    assert stack.output("big.csv") == _single(tiny_onnx, "big.csv", data)
    record = stack.ledger.get(outcome.key)
    assert record.status == "succeeded" and record.details["rows_read"] == 3000


def test_parts_all_done_before_the_scan_counted_them_are_committed_by_a_commit_message(tiny_onnx):
    data = _csv(2000)
    stack = Stack(tiny_onnx)
    statuses: list[str] = []

    class Immediate(FakeQueue):  # a worker takes each part the moment it is queued, before the checkpoint
        def send(self, text: str) -> None:
            if json.loads(text).get("kind") is None:
                statuses.append(stack.service.fanout.score_part(text).status)
            else:
                super().send(text)

    stack.queue = stack.service.fanout.queue = Immediate()
    outcome = stack.service.score(stack.event("big.csv", data))
    assert outcome.status == "fanned_out" and "committed" not in statuses
    assert [json.loads(m)["kind"] for m in stack.queue.messages] == ["commit"]
    assert stack.service.fanout.score_part(stack.queue.messages[0]).status == "committed"
    assert stack.output("big.csv") == _single(tiny_onnx, "big.csv", data)


def test_a_scan_resumed_at_any_part_cuts_the_same_parts_as_one_scan_from_the_start():
    from shared.fanout import CsvScan, ScanState

    data = _csv(1500, crlf=True, bom=True)
    blobs = FakeBlobStore()
    blobs.write_bytes("in", "a.csv", data)
    whole = plan_csv(blobs, "in", "a.csv", None, part_bytes=3000, limits=Limits(), size=len(data))
    assert whole is not None and len(whole.parts) > 8
    for part in whole.parts[1:]:
        resumed = CsvScan(blobs, "in", "a.csv", None, part_bytes=3000, limits=Limits(), size=len(data),
                          state=ScanState(part.start, part.first_row, part.first_line, part.index), header=whole.header)
        assert tuple(resumed) == whole.parts[part.index :]


def test_when_every_row_of_the_first_part_is_rejected_the_header_still_comes_first_once(tiny_onnx):
    data = _csv(2500, missing_until=600)  # rows 1-600 are rejected: the first parts have no output at all
    stack = Stack(tiny_onnx, reject=True)
    outcome = stack.service.score(stack.event("big.csv", data))
    statuses = [stack.service.fanout.score_part(m).status for m in _messages(stack)]
    assert statuses.count("committed") == 1
    first = stack.ledger.get(part_key(outcome.key, 0))
    assert first.details["rows_scored"] == 0 and first.details["header_block"] is None
    single = Stack(tiny_onnx, fanout=False, reject=True)
    assert single.service.score(single.event("big.csv", data)).status == "succeeded"
    assert stack.output("big.csv") == single.output("big.csv")
    assert stack.output("big.csv").count(b'"id"') == 1


def test_a_route_with_an_event_hub_output_sends_the_committed_output_of_a_fanned_out_file_once(tiny_onnx):
    fanned, whole = FakeEventSink(), FakeEventSink()
    stack = Stack(tiny_onnx, sink=fanned)
    outcome = stack.service.score(stack.event("big.csv", _csv(2000)))
    statuses = [stack.service.fanout.score_part(m).status for m in _messages(stack)]
    assert statuses.count("committed") == 1 and stack.ledger.get(outcome.key).details["eventhub"] == "sent"
    single = Stack(tiny_onnx, fanout=False, sink=whole)
    single.service.score(single.event("big.csv", _csv(2000)))
    assert len(fanned.events) == len(whole.events) > 2000  # a prediction per row, and the file's telemetry
    assert [b for b in fanned.bodies() if "row" in b] == [b for b in whole.bodies() if "row" in b]
