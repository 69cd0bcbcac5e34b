"""What the scoring use case does before it reads a byte: names, sources, sizes, one output per input."""

from __future__ import annotations

import gzip
import io
import json
import urllib.parse

import pytest

from shared.events import parse_blob_created
from shared.routes import Route

GOOD = b"id,x1,x2,color\n007,0.5,1.0,red\n008,-1.5,0.2,blue\n009,2.0,-0.3,green\n"


def _hostile(scoring, url_blob: str, subject_blob: str) -> dict:
    raw = scoring.upload("real.csv", GOOD)
    raw["data"]["url"] = f"http://127.0.0.1:10000/devstoreaccount1/incoming/{url_blob}"
    raw["subject"] = f"/blobServices/default/containers/incoming/blobs/{subject_blob}"
    return raw


@pytest.mark.parametrize(
    ("url_blob", "subject_blob"),
    [("../../etc/passwd", "../../etc/passwd"),
     ("..%2F..%2Fhome%2Fsite%2Fwwwroot%2Flocal.settings.json", "../../home/site/wwwroot/local.settings.json"),
     ("a%5Cb.csv", "a\\b.csv"), ("a%0Ab.csv", "a\nb.csv")],
)  # fmt: skip
def test_unsafe_names_are_recorded_under_the_event_namespace_and_touch_nothing(scoring, url_blob, subject_blob):
    raw = _hostile(scoring, url_blob, subject_blob)
    before = {c: scoring.blobs.names(c) for c in ("incoming", "scored", "failed")}
    outcome = scoring.service.score(parse_blob_created(raw))

    assert outcome.status == "failed" and outcome.reason == "bad_event"
    assert outcome.failure.startswith("failed/_events/") and outcome.failure.endswith(".json")
    assert scoring.blobs.names("scored") == before["scored"] == []
    assert scoring.blobs.names("failed") == [outcome.failure.removeprefix("failed/")]
    assert scoring.ledger.get(outcome.key) is None
    record = json.loads(scoring.blobs.read_bytes("failed", outcome.failure.removeprefix("failed/")))
    assert record["reason"] == "bad_event" and record["event_id"] == raw["id"]


def test_a_redelivered_bad_event_rewrites_the_same_record(scoring):
    raw = _hostile(scoring, "../x.csv", "../x.csv")
    first = scoring.service.score(parse_blob_created(raw))
    second = scoring.service.score(parse_blob_created(raw))
    assert first.failure == second.failure and len(scoring.blobs.names("failed")) == 1


def test_a_unicode_name_scores_end_to_end_with_ascii_lineage(scoring):
    name = "déjà vu/ünïcødé 漢字.csv"
    raw = scoring.upload(name, GOOD)
    raw["data"]["url"] = "http://127.0.0.1:10000/devstoreaccount1/incoming/" + name  # raw, not percent-encoded
    outcome = scoring.service.score(parse_blob_created(raw))
    assert outcome.status == "succeeded" and outcome.output == f"scored/incoming/{name}.predictions.csv"
    metadata = scoring.blobs.properties("scored", f"incoming/{name}.predictions.csv").metadata
    assert all(v.isascii() and v.isprintable() for v in metadata.values())
    assert urllib.parse.unquote(metadata["input_url"]).endswith(name)
    # a redelivery of the same event is a duplicate, the lineage comparison holds for encoded URLs
    assert scoring.service.score(parse_blob_created(raw)).status == "duplicate"


def test_three_inputs_with_one_stem_get_three_outputs(scoring):
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table({"id": ["007"], "x1": [0.5], "x2": [1.0], "color": ["red"]}), sink)
    uploads = {"a.csv": GOOD, "a.csv.gz": gzip.compress(GOOD), "a.parquet": sink.getvalue()}
    outputs = [scoring.service.score(parse_blob_created(scoring.upload(n, d))).output for n, d in uploads.items()]
    assert outputs == ["scored/incoming/a.csv.predictions.csv", "scored/incoming/a.csv.gz.predictions.csv",
                       "scored/incoming/a.parquet.predictions.csv"]  # fmt: skip
    assert len(set(scoring.blobs.names("scored"))) == 3


def test_a_data_lake_create_file_is_ignored_and_an_empty_put_blob_is_an_empty_file(scoring):
    raw = scoring.upload("dl.csv", b"")
    raw["data"]["api"] = "CreateFile"
    created = scoring.service.score(parse_blob_created(raw))
    assert created.status == "ignored" and scoring.blobs.names("failed") == []

    empty = scoring.service.score(parse_blob_created(scoring.upload("empty.csv", b"")))
    assert empty.status == "failed" and empty.reason == "empty_file"


def test_files_over_the_size_limit_are_too_large_before_and_while_reading(scoring):
    import dataclasses

    scoring.service.routes = (dataclasses.replace(scoring.service.routes[0], max_file_bytes=40),)
    announced = scoring.service.score(parse_blob_created(scoring.upload("big.csv", GOOD)))
    assert announced.reason == "too_large"
    record = json.loads(scoring.blobs.read_bytes("failed", announced.failure.removeprefix("failed/")))
    assert record["limit"] == "max_file_bytes" and record["size"] == len(GOOD)

    lying = scoring.upload("liar.csv", GOOD)
    lying["data"]["contentLength"] = 10  # the event says 10 bytes; the blob has more
    outcome = scoring.service.score(parse_blob_created(lying))
    assert outcome.reason == "too_large" and scoring.blobs.names("scored") == []


def test_a_route_on_another_prefix_does_not_make_its_container_ignored(scoring):
    scoring.service.routes = (Route(name="churn", container="incoming", prefix="churn/", model="models:/tiny@champion"),)
    outcome = scoring.service.score(parse_blob_created(scoring.upload("other/a.csv", GOOD)))
    assert outcome.status == "failed" and outcome.reason == "unknown_source"


def _slow_reads(scoring, seconds_per_chunk: float, chunks: int):
    """Make reads of the input slow: the file arrives in ``chunks`` pieces, ``seconds_per_chunk`` apart."""
    import time

    original = scoring.blobs.read_chunks

    def slow(container, name, chunk_size=4 << 20, etag=None, *, in_flight=1):
        data = b"".join(original(container, name, chunk_size, etag, in_flight=in_flight))
        step = max(1, len(data) // chunks)
        for start in range(0, len(data), step):
            time.sleep(seconds_per_chunk)
            yield data[start : start + step]

    scoring.blobs.read_chunks = slow


def _service_with(scoring, **settings):
    from shared.scoring import ScoringService

    timeout = settings.pop("timeout_seconds", None)
    return ScoringService(scoring.blobs, scoring.ledger, scoring.provider, scoring.publisher,
                          scoring.settings.replace(**settings), timeout_seconds=timeout)  # fmt: skip


def test_the_lease_is_renewed_while_a_slow_file_is_scored(scoring):
    import threading

    from shared.scoring import idempotency_key

    service = _service_with(scoring, claim_ttl_seconds=1)
    raw = scoring.upload("slow.csv", GOOD + GOOD.split(b"\n", 1)[1] * 100)
    _slow_reads(scoring, 0.4, 6)  # about 2.4 s: well past the 1 s lease
    event = parse_blob_created(raw)
    seen: list[float] = []

    def watch():
        for _ in range(12):
            record = scoring.ledger.get(idempotency_key(event))
            if record is not None and record.status == "claimed":
                seen.append(record.expires_at)
                assert scoring.ledger.claim(record.key, "intruder", 1) is None  # never expired meanwhile
            threading.Event().wait(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    outcome = service.score(event)
    watcher.join()
    assert outcome.status == "succeeded", outcome.details
    assert scoring.ledger.get(outcome.key).attempts == 1
    assert len(set(seen)) >= 3  # the expiry moved forward several times


def test_a_lost_lease_stops_the_file_before_anything_is_committed(scoring):
    import threading

    from shared.errors import AlreadyClaimedError
    from shared.scoring import idempotency_key

    service = _service_with(scoring, claim_ttl_seconds=1)
    raw = scoring.upload("stolen.csv", GOOD + GOOD.split(b"\n", 1)[1] * 100)
    _slow_reads(scoring, 0.5, 5)
    event = parse_blob_created(raw)
    key = idempotency_key(event)

    def steal():  # another delivery takes the key over (as after a long pause of this instance)
        threading.Event().wait(0.3)
        scoring.ledger.forget(key)
        scoring.ledger.claim(key, "other-instance", 60)

    thief = threading.Thread(target=steal)
    thief.start()
    with pytest.raises(AlreadyClaimedError):
        service.score(event)
    thief.join()
    assert scoring.blobs.names("scored") == []
    assert scoring.ledger.get(key).owner == "other-instance"  # its claim was left alone


def test_past_the_function_timeout_nothing_is_committed_and_the_lease_expires(scoring):
    from shared.scoring import FunctionTimeoutError, idempotency_key

    service = _service_with(scoring, claim_ttl_seconds=1, timeout_seconds=0.5)
    raw = scoring.upload("late.csv", GOOD + GOOD.split(b"\n", 1)[1] * 100)
    _slow_reads(scoring, 0.4, 4)
    event = parse_blob_created(raw)
    with pytest.raises(FunctionTimeoutError):
        service.score(event)
    assert scoring.blobs.names("scored") == []
    record = scoring.ledger.get(idempotency_key(event))
    assert record.status == "retrying" and record.details["reason"] == "function_timeout"
