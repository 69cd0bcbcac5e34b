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

GOOD = b"id,x1,x2,color\n007,0.5,1.0,red\n008,-1.5,0.2,blue\n009,2.0,-0.3,green\n"


def _rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def test_a_good_file_is_scored_with_lineage_and_an_outcome_event(scoring, tiny_onnx):
    event = parse_blob_created(scoring.upload("batch/a.csv", GOOD))
    outcome = scoring.service.score(event)

    assert outcome.status == "succeeded" and outcome.rows == 3
    assert outcome.output == "scored/batch/a.predictions.csv"
    rows = _rows(scoring.blobs.read_bytes("scored", "batch/a.predictions.csv"))
    assert [r["id"] for r in rows] == ["007", "008", "009"]  # key column kept as text, leading zeros intact
    import pyarrow.csv as pacsv

    expected = OnnxModel.from_file(tiny_onnx).predict(pacsv.read_csv(io.BytesIO(GOOD)).to_batches()[0])
    assert [int(r["prediction"]) for r in rows] == expected["prediction"].tolist()
    np.testing.assert_allclose([float(r["probability"]) for r in rows], expected["probability"], rtol=1e-5)
    assert {r["model_version"] for r in rows} == {"1"}

    metadata = scoring.blobs.properties("scored", "batch/a.predictions.csv").metadata
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
    assert scoring.blobs.names("scored") == ["a.predictions.csv"]
    assert scoring.models.loads == 1
    assert scoring.publisher.types() == ["Scorehook.Scoring.Completed"]


def test_a_new_version_of_the_same_blob_is_scored_again(scoring):
    first = scoring.service.score(parse_blob_created(scoring.upload("a.csv", GOOD)))
    second = scoring.service.score(parse_blob_created(scoring.upload("a.csv", GOOD + b"010,0,0,red\n")))
    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert len(_rows(scoring.blobs.read_bytes("scored", "a.predictions.csv"))) == 4


@pytest.mark.parametrize(
    ("data", "reason", "detail"),
    [
        (b"id,x1,color\n1,0.5,red\n", "schema_mismatch", "'x2'"),
        (b"id,x1,x2,color\n1,0.5,abc,red\n", "bad_value", "column 'x2' has value 'abc'"),
        (b"id,x1,x2,color\n1,0.5,1,red,extra\n", "bad_file_format", "Expected 4 columns"),
        (b"id,x1,x2,color\n1,0.5,1,\xff\xfe\n", "bad_file_format", "not UTF-8"),
        (b"id,x1,x2,color\n1,0.5,,red\n", "missing_value", "'x2'"),
        (b"", "bad_file_format", "empty"),
        (b"id,x1,x2,color\n", "bad_file_format", "no data rows"),
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


def test_events_for_sources_we_do_not_serve_are_recorded_not_claimed(scoring):
    outcome = scoring.service.score(parse_blob_created(scoring.upload("a.csv", GOOD, container="elsewhere")))
    assert outcome.status == "failed" and outcome.reason == "unknown_source"
    assert scoring.ledger.get(outcome.key) is None
    assert scoring.blobs.names("failed") == [f"elsewhere/a.csv.{outcome.key.rsplit('@', 1)[1]}.json"]


def test_a_transient_failure_raises_and_releases_the_claim_for_redelivery(scoring):
    raw = scoring.upload("a.csv", GOOD)
    scoring.blobs.fail_next = StorageUnavailableError("storage answered 503")
    with pytest.raises(StorageUnavailableError):
        scoring.service.score(parse_blob_created(raw))
    assert scoring.ledger.get(f"blob:{raw['data']['url']}@{raw['data']['eTag'].strip(chr(34))}") is None
    assert scoring.service.score(parse_blob_created(raw)).status == "succeeded"
