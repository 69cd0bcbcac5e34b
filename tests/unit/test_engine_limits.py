"""Bounded cost for any input: limits as settings, each exceeded one a located ``too_large``; hostile inputs
finish in seconds within bounded memory; the record-boundary search is one linear pass."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.engine import EngineStats, Limits, _Scanner, score_file
from shared.errors import InputError
from shared.models import OnnxModel
from shared.routes import Route
from shared.settings import Settings

HEADER = b"id,x1,x2,color\n"
ROW = b"000001,0.5,1.25,red\n"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def onnx(tiny_onnx):
    return OnnxModel.from_file(tiny_onnx)


def run(data: bytes, fmt: str, model, **options) -> EngineStats:
    stats = EngineStats()
    for _ in score_file(io.BytesIO(data), fmt=fmt, model=model, model_version="1", stats=stats, **options):
        pass
    return stats


def failure(data: bytes, fmt: str, model, **options) -> dict:
    with pytest.raises(InputError) as info:
        run(data, fmt, model, **options)
    return info.value.to_record()


# -- the settings ----------------------------------------------------------------------------------------
def test_limits_have_sane_defaults_and_come_from_the_settings():
    assert Limits() == Limits(16 << 20, 256 << 30, 200.0, 2000, 64 << 30)
    settings = Settings.from_env(
        {"SCOREHOOK_MAX_RECORD_BYTES": "1024", "SCOREHOOK_MAX_INFLATED_BYTES": "2048",
         "SCOREHOOK_MAX_INFLATION_RATIO": "50", "SCOREHOOK_MAX_COLUMNS": "7", "SCOREHOOK_MAX_FILE_BYTES": "4096"}
    )  # fmt: skip
    assert Limits.from_settings(settings) == Limits(1024, 2048, 50.0, 7, 4096)
    small = Route(name="r", container="incoming", model="m", max_file_bytes=100)
    big = Route(name="r", container="incoming", model="m", max_file_bytes=1 << 40)
    assert Limits.from_settings(settings, small).max_file_bytes == 100  # a route lowers the file limit
    assert Limits.from_settings(settings, big).max_file_bytes == 4096  # but never raises it
    assert Limits.from_settings(settings, Route(name="r", container="c", model="m")).max_file_bytes == 4096


# -- records ---------------------------------------------------------------------------------------------
def test_a_record_over_the_limit_is_too_large_with_its_line_and_row(onnx):
    limits = Limits(max_record_bytes=1000)
    data = HEADER + ROW * 100 + b"\n" + b"2,1,1," + b"r" * 5000 + b"\n" + ROW
    record = failure(data, "csv", onnx, limits=limits)
    assert (record["reason"], record["limit"], record["row"], record["line"]) == (
        "too_large", "max_record_bytes", 101, 103,
    )  # fmt: skip
    data = b'{"x1":1,"x2":1,"color":"a"}\n' * 10 + b'{"x1":1,"x2":1,"color":"' + b"a" * 5000 + b'"}\n'
    record = failure(data, "jsonl", onnx, limits=limits)
    assert (record["reason"], record["limit"], record["row"], record["line"]) == (
        "too_large", "max_record_bytes", 11, 11,
    )  # fmt: skip
    record = failure(b"id,x1,x2,color," + b"c" * 5000 + b"\n" + ROW, "csv", onnx, limits=limits)
    assert (record["reason"], record["line"]) == ("too_large", 1) and "header" in record["message"]


def test_a_field_longer_than_pyarrows_block_parses():
    from shared.models import ModelInput

    class Model:
        inputs = (ModelInput("x", "float32"),)

        def predict(self, batch):
            return {"prediction": batch.column("x").to_numpy()}

    big = b"f" * (12 << 20)  # over pyarrow's default block and over the engine's text block
    data = b"id,x,note\n1,1,a\n2,2," + big + b"\n3,3,c\n"
    out = b"".join(
        score_file(io.BytesIO(data), fmt="csv", model=Model(), model_version="1", key_columns=("id", "note"))
    )
    assert out.count(b"\n") == 4 and big in out


def test_the_default_record_limit_refuses_a_50_mib_field_fast(onnx):
    started = time.perf_counter()
    record = failure(HEADER + b"1,1,1," + b"r" * (50 << 20) + b"\n", "csv", onnx)
    assert (record["reason"], record["limit"], record["row"]) == ("too_large", "max_record_bytes", 1)
    assert time.perf_counter() - started < 10


def test_one_stray_quote_costs_linear_time(onnx):
    body = ROW * (8_000_000 // len(ROW))
    clean = HEADER + ROW * 10 + body
    stray = HEADER + ROW * 10 + b'000x,0.5,1,"red\n' + body
    started = time.perf_counter()
    assert run(clean, "csv", onnx).rows_scored > 0
    clean_seconds = time.perf_counter() - started
    started = time.perf_counter()
    record = failure(stray, "csv", onnx)
    stray_seconds = time.perf_counter() - started
    assert (record["reason"], record["row"], record["line"]) == ("bad_file_format", 11, 12)
    assert stray_seconds < max(5 * clean_seconds, 2.0), (stray_seconds, clean_seconds)


def test_a_stray_quote_in_a_large_file_is_a_located_too_large(onnx):
    record = failure(HEADER + ROW * 10 + b'000x,0.5,1,"red\n' + ROW * (20_000_000 // len(ROW)), "csv", onnx)
    assert (record["reason"], record["limit"], record["row"], record["line"]) == (
        "too_large", "max_record_bytes", 11, 12,
    )  # fmt: skip
    assert "unbalanced quote" in record["message"]


def test_newlines_inside_quotes_everywhere_finish_fast(onnx):
    started = time.perf_counter()
    data = HEADER + b'1,1,1,"' + b"\n" * (2 << 20) + b'"\n' + ROW * 1000
    assert run(data, "csv", onnx, key_columns=("id", "color")).rows_scored == 1001
    assert time.perf_counter() - started < 10


csv_field = st.one_of(
    st.text(alphabet="ab1 ", max_size=5),
    st.text(alphabet='ab,"\n\r ', max_size=8).map(lambda s: '"' + s.replace('"', '""') + '"'),
)
csv_record = st.lists(csv_field, min_size=1, max_size=4).map(lambda fields: ",".join(fields))


@settings(max_examples=200, deadline=None)
@given(records=st.lists(csv_record, min_size=1, max_size=30), block=st.integers(1, 64),
       ending=st.sampled_from(["\n", "\r\n"]))  # fmt: skip
def test_the_scanner_cuts_only_at_record_boundaries_and_counts_lines(records, block, ending):
    data = "".join(r + ending for r in records).encode()
    ends = set()
    offset = 0
    for r in records:
        offset += len((r + ending).encode())
        ends.add(offset)
    blocks = list(_Scanner(io.BytesIO(data), quoting=True, block_bytes=block, max_record_bytes=1 << 20))
    joined, line = b"", 1
    for chunk, first_line in blocks:
        assert first_line == line
        joined += chunk
        line += chunk.count(b"\n")
        assert len(joined) in ends  # every block ends where a record ends
    assert joined == data


# -- gzip ------------------------------------------------------------------------------------------------
def test_inflated_bytes_over_the_limit_are_too_large(onnx):
    data = gzip.compress(HEADER + ROW * 10_000)
    record = failure(data, "csv.gz", onnx, limits=Limits(max_inflated_bytes=50_000))
    assert (record["reason"], record["limit"]) == ("too_large", "max_inflated_bytes")
    assert run(data, "csv.gz", onnx).rows_scored == 10_000


def test_the_inflation_ratio_spares_small_files_and_stops_bombs(onnx):
    small = gzip.compress(HEADER + ROW * 200_000, 9)  # 4 MiB inflated, ratio far over 200: still scored
    assert len(HEADER + ROW * 200_000) / len(small) > 200
    assert run(small, "csv.gz", onnx).rows_scored == 200_000
    bomb = gzip.compress(HEADER + b"1,1,1,red\n" * 5_000_000, 9)  # 50 MB of rows in about 100 KB
    started = time.perf_counter()
    record = failure(bomb, "csv.gz", onnx)
    assert (record["reason"], record["limit"]) == ("too_large", "max_inflation_ratio")
    assert record["ratio"] > 200 and record["compressed_bytes"] < len(bomb) + 1
    assert time.perf_counter() - started < 10


def test_a_gzip_inflating_to_one_512_mib_line_fails_fast_in_bounded_memory(tiny_onnx, tmp_path):
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"r" * (1 << 20)
    parts = [compressor.compress(HEADER + b"1,1,1,")] + [compressor.compress(chunk) for _ in range(512)]
    bomb = tmp_path / "bomb.csv.gz"
    bomb.write_bytes(b"".join([*parts, compressor.compress(b"\n"), compressor.flush()]))
    assert bomb.stat().st_size < 600_000
    script = textwrap.dedent(f"""
        import io, resource, time
        from shared.engine import score_file
        from shared.errors import InputError
        from shared.models import OnnxModel
        model = OnnxModel.from_file({str(tiny_onnx)!r})
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        try:
            for _ in score_file(open({str(bomb)!r}, "rb"), fmt="csv.gz", model=model, model_version="1"):
                pass
            print("scored")
        except InputError as exc:
            print(exc.reason, exc.details.get("limit"))
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
        print(round(time.perf_counter() - started, 2), grown)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    outcome, measured = result.stdout.split("\n")[:2]
    seconds, grown = float(measured.split()[0]), int(measured.split()[1])
    assert outcome.split()[0] == "too_large"
    assert seconds < 5 and grown < 512 << 20, (seconds, grown)


# -- columns and file size -------------------------------------------------------------------------------
def test_more_columns_than_the_limit_is_too_large(onnx):
    header = b",".join([b"id", b"x1", b"x2", b"color"] + [b"c%d" % i for i in range(20)]) + b"\n"
    record = failure(header + b"1,1,1,red" + b",0" * 20 + b"\n", "csv", onnx, limits=Limits(max_columns=10))
    assert (record["reason"], record["limit"], record["columns"], record["line"]) == (
        "too_large", "max_columns", 24, 1,
    )  # fmt: skip
    table = pa.table({"x1": [1.0], "x2": [1.0], "color": ["a"], **{f"c{i}": [0] for i in range(20)}})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    record = failure(sink.getvalue(), "parquet", onnx, limits=Limits(max_columns=10))
    assert (record["reason"], record["limit"]) == ("too_large", "max_columns")


def test_a_wide_file_within_the_limit_scores(onnx):
    names = [b"id", b"x1", b"x2", b"color"] + [b"c%d" % i for i in range(1990)]
    line = b",".join([b"1", b"1", b"1", b"red"] + [b"7"] * 1990) + b"\n"
    started = time.perf_counter()
    assert run(b",".join(names) + b"\n" + line * 2000, "csv", onnx).rows_scored == 2000
    assert time.perf_counter() - started < 10


def test_bytes_read_over_the_file_limit_are_too_large(onnx):
    data = HEADER + ROW * 1000
    record = failure(data, "csv", onnx, limits=Limits(max_file_bytes=5000))
    assert (record["reason"], record["limit"]) == ("too_large", "max_file_bytes")
    record = failure(gzip.compress(data), "csv.gz", onnx, limits=Limits(max_file_bytes=50))
    assert (record["reason"], record["limit"]) == ("too_large", "max_file_bytes")
    sink = io.BytesIO()
    pq.write_table(pa.table({"x1": [1.0] * 1000, "x2": [1.0] * 1000, "color": ["a"] * 1000}), sink)
    record = failure(sink.getvalue(), "parquet", onnx, limits=Limits(max_file_bytes=100))
    assert (record["reason"], record["limit"]) == ("too_large", "max_file_bytes")
    assert run(data, "csv", onnx, limits=Limits(max_file_bytes=len(data))).rows_scored == 1000


@settings(max_examples=300, deadline=None)
@given(chunk=st.text(alphabet='a"\n', max_size=200).map(str.encode), parity=st.integers(0, 1))
def test_the_boundary_search_agrees_with_a_byte_by_byte_scan(chunk, parity):
    from shared.engine import _first_boundary, _last_boundary

    expected, state = [], parity
    for offset, byte in enumerate(chunk):
        if byte == ord('"'):
            state ^= 1
        elif byte == ord("\n") and state == 0:
            expected.append(offset)
    assert _last_boundary(chunk, parity, chunk.count(b'"')) == (expected[-1] if expected else -1)
    assert _first_boundary(chunk, parity) == (expected[0] if expected else -1)
