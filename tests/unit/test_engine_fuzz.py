"""Whatever bytes arrive, the engine scores them or raises an ``InputError`` with a known reason: never
another exception, never a crash of the process (a hostile file must not take the host down)."""

from __future__ import annotations

import gzip
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.engine import Limits, score_file
from shared.errors import FAILURE_REASONS, InputError
from shared.models import OnnxModel

PIECES = [b"id", b"x1", b"x2", b"color", b"label", b",", b'"', b"\n", b"\r\n", b"1", b"0.5", b"-", b"inf", b"NA",
          b"\xff", b"\x00", b"{", b"}", b":", b"[", b"]", b"null", b"red", b" ", b"\xef\xbb\xbf", b"\xc3\xa9",
          b'"x1"', b'"color"', b"true", b"1e999", b"NaN"]  # fmt: skip
PREFIXES = {"csv": b"id,x1,x2,color,label\n", "jsonl": b'{"id":"1","x1":1,"x2":2,"color":"r"}\n'}


@pytest.fixture(scope="module")
def onnx(tiny_onnx):
    return OnnxModel.from_file(tiny_onnx)


def outcome(data: bytes, fmt: str, model, **options) -> str:
    try:
        for _ in score_file(lambda: io.BytesIO(data), fmt=fmt, model=model, model_version="1", **options):
            pass
        return "scored"
    except InputError as exc:
        assert exc.reason in FAILURE_REASONS and exc.message
        return exc.reason


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pieces=st.lists(st.sampled_from(PIECES), max_size=40),
    fmt=st.sampled_from(["csv", "jsonl", "csv.gz"]),
    prefixed=st.booleans(),
    on_missing=st.sampled_from(["pass", "fail", "reject_rows"]),
    record_bytes=st.sampled_from([16, 1000, 16 << 20]),
)
def test_any_text_is_scored_or_an_input_error(onnx, pieces, fmt, prefixed, on_missing, record_bytes):
    body = (PREFIXES.get(fmt, PREFIXES["csv"]) if prefixed else b"") + b"".join(pieces)
    data = gzip.compress(body) if fmt == "csv.gz" else body
    outcome(
        data, fmt, onnx, on_missing=on_missing, limits=Limits(max_record_bytes=record_bytes, max_columns=4)
    )


def _valid_parquet() -> bytes:
    sink = io.BytesIO()
    table = pa.table({"id": [str(i) for i in range(200)], "x1": [float(i) for i in range(200)], "x2": [1.0] * 200,
                      "color": pa.array(["a", "b"] * 100).dictionary_encode(), "label": list(range(200))})  # fmt: skip
    pq.write_table(table, sink, row_group_size=50)
    return sink.getvalue()


VALID = {
    "parquet": _valid_parquet(),
    "jsonl": b"".join(b'{"id":%d,"x1":%d.5,"x2":1,"color":"red","label":1}\n' % (i, i) for i in range(200)),
    "csv.gz": gzip.compress(b"id,x1,x2,color\n" + b'%d,1.5,1,"r,d"\n' * 200),
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(sorted(VALID)), edits=st.lists(st.tuples(st.floats(0, 1), st.binary(max_size=8)),
                                                          min_size=1, max_size=6))  # fmt: skip
def test_any_corruption_of_a_valid_file_is_scored_or_an_input_error(onnx, fmt, edits):
    data = bytearray(VALID[fmt])
    for where, replacement in edits:
        at = int(where * (len(data) - 1))
        data[at : at + len(replacement) or at + 1] = replacement
    outcome(bytes(data), fmt, onnx)
