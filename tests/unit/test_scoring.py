"""The scoring use case against the in-memory fakes: outputs, lineage, duplicates and failure records."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from shared.errors import StorageUnavailableError
from shared.events import parse_blob_created
from shared.models import OnnxModel
from shared.scoring import idempotency_key

GOOD = b"id,x1,x2,color\n007,0.5,1.0,red\n008,-1.5,0.2,blue\n009,2.0,-0.3,green\n"


def _rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def test_a_good_file_is_scored_with_lineage_and_an_outcome_event(scoring, tiny_onnx):
    event = parse_blob_created(scoring.upload("batch/a.csv", GOOD))
    outcome = scoring.service.score(event)

    assert outcome.status == "succeeded" and outcome.rows == 3
    assert outcome.output == "scored/incoming/batch/a.csv.predictions.csv"
    rows = _rows(scoring.blobs.read_bytes("scored", "incoming/batch/a.csv.predictions.csv"))
    assert [r["id"] for r in rows] == ["007", "008", "009"]  # key column kept as text, leading zeros intact
    import pyarrow.csv as pacsv

    expected = OnnxModel.from_file(tiny_onnx).predict(pacsv.read_csv(io.BytesIO(GOOD)).to_batches()[0])
    assert [int(r["prediction"]) for r in rows] == expected["prediction"].tolist()
    np.testing.assert_allclose([float(r["probability"]) for r in rows], expected["probability"], rtol=1e-5)
    assert {r["model_version"] for r in rows} == {"1"}

    metadata = scoring.blobs.properties("scored", "incoming/batch/a.csv.predictions.csv").metadata
    assert metadata["input_url"] == event.url and metadata["input_etag"] == event.etag.strip('"')
    assert (metadata["model_name"], metadata["model_version"], metadata["model_flavor"]) == (
        "tiny",
        "1",
        "onnx",
    )
    assert (metadata["rows_read"], metadata["rows_scored"], metadata["rows_rejected"]) == ("3", "3", "0")
    assert metadata["event_id"] == event.id and float(metadata["scoring_ms"]) >= 0

    assert scoring.ledger.get(outcome.key).status == "succeeded"
    assert scoring.publisher.types() == ["Scorehook.Scoring.Completed"]
    assert scoring.publisher.events[0][2]["rows_scored"] == 3


def test_a_duplicate_delivery_is_acknowledged_without_work(scoring):
    raw = scoring.upload("a.csv", GOOD)
    outcomes = [scoring.service.score(parse_blob_created(raw)) for _ in range(10)]
    assert [o.status for o in outcomes] == ["succeeded"] + ["duplicate"] * 9
    assert scoring.blobs.names("scored") == ["incoming/a.csv.predictions.csv"]
    assert scoring.models.loads == 1
    assert scoring.publisher.types() == ["Scorehook.Scoring.Completed"]


def test_the_same_version_announced_after_the_emulator_moved_ports_is_a_duplicate(scoring):
    """The key is account/container/name@eTag, never host:port: after a restart of the local stack on
    another port, a replayed event of a finished file is not scored again."""
    from shared.scoring import ScoringService
    from shared.settings import Settings

    raw = scoring.upload("moved.csv", GOOD)
    assert scoring.service.score(parse_blob_created(raw)).status == "succeeded"
    moved = Settings.from_env({"DataStorage": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                               "AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:54321/devstoreaccount1;"},
                              model_uri="models:/tiny@champion")  # fmt: skip
    restarted = ScoringService(scoring.blobs, scoring.ledger, scoring.provider, scoring.publisher, moved)
    url = raw["data"]["url"].replace("127.0.0.1:10000", "127.0.0.1:54321")
    again = {**raw, "id": "after-restart", "data": {**raw["data"], "url": url}}
    assert restarted.score(parse_blob_created(again)).status == "duplicate"
    assert scoring.publisher.types() == ["Scorehook.Scoring.Completed"]


def test_a_new_version_of_the_same_blob_is_scored_again(scoring):
    first = scoring.service.score(parse_blob_created(scoring.upload("a.csv", GOOD)))
    second = scoring.service.score(parse_blob_created(scoring.upload("a.csv", GOOD + b"010,0,0,red\n")))
    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert len(_rows(scoring.blobs.read_bytes("scored", "incoming/a.csv.predictions.csv"))) == 4


@pytest.mark.parametrize(
    ("data", "reason", "detail"),
    [
        (b"id,x1,color\n1,0.5,red\n", "schema_mismatch", "'x2'"),
        (b"id,x1,x2,color\n1,0.5,abc,red\n", "bad_value", "column 'x2' has value 'abc'"),
        (b"id,x1,x2,color\n1,0.5,1,red,extra\n", "bad_file_format", "Expected 4 columns"),
        (b"id,x1,x2,color\n1,0.5,1,\xff\xfe\n", "not_utf8", "not UTF-8"),
        (b"id,x1,x2,color\n1,0.5,inf,red\n", "invalid_value", "'x2'"),  # a missing value passes by default
        (b"", "empty_file", "empty"),
        (b"id,x1,x2,color\n", "empty_file", "no data rows"),
    ],
)
def test_each_kind_of_bad_file_gets_a_failure_record_and_no_output(scoring, data, reason, detail):
    raw = scoring.upload("bad.csv", data)
    outcome = scoring.service.score(parse_blob_created(raw))

    assert outcome.status == "failed" and outcome.reason == reason
    assert scoring.blobs.names("scored") == []
    assert scoring.blobs.read_bytes("incoming", "bad.csv") == data  # the input stays where it was
    record = json.loads(scoring.blobs.read_bytes("failed", outcome.failure.removeprefix("failed/")))
    assert record["reason"] == reason and detail in record["message"]
    assert record["event"]["id"] == raw["id"] and record["blob"] == "incoming/bad.csv"
    assert scoring.ledger.get(outcome.key).status == "failed"
    assert scoring.publisher.types() == ["Scorehook.Scoring.Failed"]
    # a failed file is final: a redelivery does not retry it
    assert scoring.service.score(parse_blob_created(raw)).status == "duplicate"


@pytest.mark.parametrize("container", ["elsewhere", "failed", "scored"])
def test_events_for_containers_no_route_reads_are_ignored_without_a_record(scoring, container):
    outcome = scoring.service.score(parse_blob_created(scoring.upload("a.csv", GOOD, container=container)))
    assert outcome.status == "ignored" and f"container {container}" in outcome.details["why"]
    assert scoring.ledger.get(outcome.key) is None
    assert [n for n in scoring.blobs.names("failed") if n != "a.csv"] == []  # no record, no feedback loop


def test_a_foreign_account_is_recorded_under_the_event_namespace_never_under_its_names(scoring):
    raw = scoring.upload("a.csv", GOOD)
    raw["data"]["url"] = "http://127.0.0.1:10000/someoneelse/incoming/a.csv"
    raw["topic"] = raw["topic"].replace("devstoreaccount1", "someoneelse")
    outcome = scoring.service.score(parse_blob_created(raw))
    assert outcome.status == "failed" and outcome.failure.startswith("failed/_events/")
    assert [n.startswith("_events/") for n in scoring.blobs.names("failed")] == [True]
    assert scoring.ledger.get(outcome.key) is None


def test_a_transient_failure_leaves_a_retrying_record_and_the_redelivery_takes_over(scoring):
    raw = scoring.upload("a.csv", GOOD)
    key = idempotency_key(parse_blob_created(raw))
    scoring.blobs.fail_next = StorageUnavailableError("storage answered 503")
    with pytest.raises(StorageUnavailableError):
        scoring.service.score(parse_blob_created(raw))
    record = scoring.ledger.get(key)
    assert record.status == "retrying" and record.details["reason"] == "storage_unavailable"
    assert record.details["attempt"] == 1 and "503" in record.details["message"]
    assert scoring.service.score(parse_blob_created(raw)).status == "succeeded"
    done = scoring.ledger.get(key)
    assert done.status == "succeeded" and done.attempts == 2
    assert [r["reason"] for r in done.details["retries"]] == ["storage_unavailable"]


def test_a_failure_record_that_cannot_be_written_still_frees_the_key(scoring):
    from shared.errors import TransientError

    raw = scoring.upload("bad.csv", b"id,x1,color\n1,0.5,red\n")
    original = scoring.blobs.write_bytes

    def failing(container, name, data, **kwargs):
        if container == "failed":
            raise StorageUnavailableError("storage answered 503")
        return original(container, name, data, **kwargs)

    scoring.blobs.write_bytes = failing
    with pytest.raises(TransientError):
        scoring.service.score(parse_blob_created(raw))
    key = idempotency_key(parse_blob_created(raw))
    assert scoring.ledger.get(key).status == "retrying"
    scoring.blobs.write_bytes = original
    outcome = scoring.service.score(parse_blob_created(raw))
    assert outcome.status == "failed" and outcome.reason == "schema_mismatch"
    assert scoring.blobs.names("failed") == [outcome.failure.removeprefix("failed/")]


def test_racing_deliveries_of_one_file_give_exactly_one_output(scoring):
    import threading

    from shared.errors import AlreadyClaimedError

    raw = scoring.upload("race.csv", GOOD)
    barrier, outcomes = threading.Barrier(8), []

    def deliver():
        barrier.wait()
        try:
            outcomes.append(scoring.service.score(parse_blob_created(raw)).status)
        except AlreadyClaimedError:
            outcomes.append("retry-later")  # Event Grid redelivers; the key is finished by then

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("succeeded") == 1 and set(outcomes) <= {"succeeded", "duplicate", "retry-later"}
    assert scoring.blobs.names("scored") == ["incoming/race.csv.predictions.csv"]
    assert scoring.publisher.types() == ["Scorehook.Scoring.Completed"]
    assert scoring.service.score(parse_blob_created(raw)).status == "duplicate"


def test_a_crash_between_claim_and_commit_leaves_no_output_and_redelivery_scores_it(scoring):
    from shared.errors import AlreadyClaimedError
    from shared.scoring import idempotency_key

    now = [1000.0]
    scoring.ledger.clock = lambda: now[0]
    raw = scoring.upload("crash.csv", GOOD)
    event = parse_blob_created(raw)

    def crash(container, name):
        raise RuntimeError("instance died after staging, before the commit")

    scoring.blobs.before_commit = crash
    with pytest.raises(RuntimeError):
        scoring.service.score(event)
    assert scoring.blobs.names("scored") == []  # staged blocks are never visible
    # A real crash cannot release its claim: the key stays claimed by the dead instance until it expires.
    scoring.ledger.claim(idempotency_key(event), "dead-instance", ttl_seconds=900)
    scoring.blobs.before_commit = lambda container, name: None
    with pytest.raises(AlreadyClaimedError):  # → 500, Event Grid retries later
        scoring.service.score(event)
    now[0] += 901
    outcome = scoring.service.score(event)
    assert outcome.status == "succeeded" and scoring.blobs.names("scored") == ["incoming/crash.csv.predictions.csv"]
    # the failed first attempt (retrying), the dead instance's takeover, then ours
    assert scoring.ledger.get(outcome.key).attempts == 3


def test_an_older_event_never_overwrites_the_output_of_a_newer_version(scoring):
    old_raw = scoring.upload("v.csv", GOOD)
    new_data = GOOD + b"010,0.1,0.1,red\n"
    state = {}

    def newer_version_lands_meanwhile(container, name):
        if not state:  # while the old version is being committed, the new one is uploaded and scored
            state["new"] = scoring.upload("v.csv", new_data)
            state["outcome"] = scoring.service.score(parse_blob_created(state["new"]))

    scoring.blobs.before_commit = newer_version_lands_meanwhile
    old_outcome = scoring.service.score(parse_blob_created(old_raw))
    assert state["outcome"].status == "succeeded"
    assert old_outcome.status == "superseded"
    assert len(_rows(scoring.blobs.read_bytes("scored", "incoming/v.csv.predictions.csv"))) == 4  # the newer output stays
    # a late redelivery of the old event is not scored either (its eTag is gone, its sequencer is older)
    assert scoring.service.score(parse_blob_created({**old_raw, "id": "late"})).status in (
        "superseded",
        "duplicate",
    )
    assert len(_rows(scoring.blobs.read_bytes("scored", "incoming/v.csv.predictions.csv"))) == 4


def test_an_event_older_than_the_scored_output_is_superseded_without_work(scoring):
    first = scoring.upload("s.csv", GOOD)
    second = scoring.upload("s.csv", GOOD)
    assert scoring.service.score(parse_blob_created(second)).status == "succeeded"
    loads = scoring.models.loads
    assert scoring.service.score(parse_blob_created(first)).status == "superseded"
    assert scoring.models.loads == loads and scoring.blobs.names("failed") == []


def test_a_promoted_model_is_used_for_the_next_file(scoring, tiny_onnx):
    first = scoring.service.score(parse_blob_created(scoring.upload("p1.csv", GOOD)))
    v2 = scoring.registry.register("tiny", tiny_onnx)
    scoring.registry.set_alias("tiny", "champion", v2.version)
    cached = scoring.service.score(parse_blob_created(scoring.upload("p2.csv", GOOD)))
    assert (first.model, cached.model) == ("models:/tiny/1", "models:/tiny/1")  # alias cached within its TTL
    assert scoring.provider.invalidate("tiny") == 1  # what on_model_promoted does
    promoted = scoring.service.score(parse_blob_created(scoring.upload("p3.csv", GOOD)))
    assert promoted.model == "models:/tiny/2"
    assert scoring.blobs.properties("scored", "incoming/p3.csv.predictions.csv").metadata["model_version"] == "2"


def test_an_alias_is_re_resolved_after_its_ttl(tiny_onnx):
    from shared.models import ModelCache, ModelProvider
    from shared.testing import FakeBlobStore, FakeRegistry

    now = [0.0]
    registry = FakeRegistry()
    registry.register("m", tiny_onnx, alias="champion")
    provider = ModelProvider(registry, FakeBlobStore(), ModelCache(), ttl_seconds=30, clock=lambda: now[0])
    assert provider.get("models:/m@champion")[0].version == "1"
    registry.set_alias("m", "champion", registry.register("m", tiny_onnx).version)
    now[0] = 29
    assert provider.get("models:/m@champion")[0].version == "1"
    now[0] = 31
    assert provider.get("models:/m@champion")[0].version == "2"
    assert provider.get("models:/m/1")[0].version == "1"
    assert provider.cache.loads == 2


def test_a_model_version_is_loaded_once_however_many_events_arrive_together(scoring):
    import threading

    raws = [scoring.upload(f"many/{i}.csv", GOOD) for i in range(8)]
    scoring.models.clear()
    scoring.models.loads = 0
    threads = [threading.Thread(target=scoring.service.score, args=(parse_blob_created(r),)) for r in raws]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert scoring.models.loads == 1
    assert len(scoring.blobs.names("scored")) == 8


def test_routes_choose_model_and_output_format_and_unrouted_blobs_are_recorded(scoring, tiny_onnx):
    import pyarrow.parquet as pq

    from shared.models import ModelProvider
    from shared.scoring import ScoringService
    from shared.settings import Settings

    scoring.blobs.write_bytes("models", "tiny/model.onnx", tiny_onnx.read_bytes())
    routes = json.dumps([
        {"name": "parquet-out", "container": "incoming", "prefix": "pq/", "model": "blob://models/tiny/model.onnx",
         "output_format": "parquet", "output_container": "scored-pq"},
        {"name": "default", "container": "incoming", "model": "models:/tiny@champion"},
    ])  # fmt: skip
    service = ScoringService(scoring.blobs, scoring.ledger, ModelProvider(scoring.registry, scoring.blobs, scoring.models),
                             scoring.publisher, Settings.from_env({"SCOREHOOK_ROUTES": routes}))  # fmt: skip
    outcome = service.score(parse_blob_created(scoring.upload("pq/a.csv", GOOD)))
    assert outcome.status == "succeeded" and outcome.output == "scored-pq/incoming/pq/a.csv.predictions.parquet"
    import io

    table = pq.read_table(io.BytesIO(scoring.blobs.read_bytes("scored-pq", "incoming/pq/a.csv.predictions.parquet")))
    assert table.column("id").to_pylist() == ["007", "008", "009"]
    etag = scoring.blobs.properties("models", "tiny/model.onnx").etag.strip('"')
    assert table.column("model_version").to_pylist() == [etag] * 3
    assert (
        service.score(parse_blob_created(scoring.upload("b.csv", GOOD))).output == "scored/incoming/b.csv.predictions.csv"
    )
    unread = service.score(parse_blob_created(scoring.upload("x.csv", GOOD, container="other")))
    assert unread.status == "ignored"
    only_pq = ScoringService(scoring.blobs, scoring.ledger, ModelProvider(scoring.registry, scoring.blobs, scoring.models),
                             scoring.publisher, Settings.from_env({"SCOREHOOK_ROUTES": json.dumps(json.loads(routes)[:1])}))  # fmt: skip
    unrouted = only_pq.score(parse_blob_created(scoring.upload("x.csv", GOOD)))
    assert (
        unrouted.status == "failed"
        and unrouted.reason == "unknown_source"
        and "no route" in unrouted.details["message"]
        and unrouted.failure.startswith("failed/incoming/x.csv.")
    )


def test_an_unknown_model_is_a_failure_record_and_replay_scores_the_file_once_it_exists(scoring, tiny_onnx):
    from shared.models import ModelProvider
    from shared.scoring import ScoringService
    from shared.settings import Settings
    from shared.testing import FakeRegistry

    registry = FakeRegistry()
    service = ScoringService(scoring.blobs, scoring.ledger, ModelProvider(registry, scoring.blobs, scoring.models),
                             scoring.publisher, Settings.from_env({}, model_uri="models:/later@champion"))  # fmt: skip
    failed = service.score(parse_blob_created(scoring.upload("r.csv", GOOD)))
    assert (failed.status, failed.reason) == ("failed", "model_not_found")
    registry.register("later", tiny_onnx, alias="champion")
    replayed = service.replay("incoming", "r.csv")
    assert replayed.status == "succeeded" and scoring.blobs.names("scored") == ["incoming/r.csv.predictions.csv"]
    assert scoring.ledger.get(replayed.key).status == "succeeded"
