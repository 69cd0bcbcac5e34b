"""The streaming engine: every input format gives the same predictions; bad input is located exactly."""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from shared.engine import EngineStats, detect_format, score_file
from shared.errors import FileFormatError, SchemaMismatchError
from shared.models import OnnxModel

ROWS = 5000


@pytest.fixture(scope="module")
def model(tiny_onnx):
    return OnnxModel.from_file(tiny_onnx)


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(1)
    return pa.table({
        "id": [f"{i:06d}" for i in range(ROWS)],
        "x1": rng.normal(size=ROWS).round(4), "x2": rng.normal(size=ROWS).round(4),
        "color": rng.choice(["red", "green", "blue"], ROWS), "extra": np.arange(ROWS),
    })  # fmt: skip


def _encode(table: pa.Table, fmt: str) -> bytes:
    sink = io.BytesIO()
    if fmt in ("csv", "csv.gz"):
        pacsv.write_csv(table, sink)
        return gzip.compress(sink.getvalue()) if fmt == "csv.gz" else sink.getvalue()
    if fmt == "parquet":
        pq.write_table(table, sink, row_group_size=1000)
        return sink.getvalue()
    return "".join(json.dumps(row) + "\n" for row in table.to_pylist()).encode()


def _run(data: bytes, fmt: str, model, **options) -> tuple[pa.Table, EngineStats]:
    stats = EngineStats()
    out = b"".join(score_file(lambda: io.BytesIO(data), fmt=fmt, model=model, model_version="7", stats=stats,
                              batch_rows=options.pop("batch_rows", 1024), **options))  # fmt: skip
    output_format = options.get("output_format", "csv")
    if output_format == "parquet":
        return pq.read_table(io.BytesIO(out)), stats
    return pacsv.read_csv(
        io.BytesIO(out), convert_options=pacsv.ConvertOptions(column_types={"id": pa.string()})
    ), stats


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet", "jsonl"])
@pytest.mark.parametrize("output_format", ["csv", "parquet"])
def test_every_format_gives_the_same_predictions_as_the_model(table, model, fmt, output_format):
    out, stats = _run(_encode(table, fmt), fmt, model, output_format=output_format)
    expected = model.predict(table.cast(pa.schema([
        ("id", pa.string()), ("x1", pa.float32()), ("x2", pa.float32()), ("color", pa.string()), ("extra", pa.int64()),
    ])).combine_chunks().to_batches()[0])  # fmt: skip
    assert out.column("id").to_pylist() == table.column("id").to_pylist()  # order and leading zeros kept
    assert out.column("prediction").to_pylist() == expected["prediction"].tolist()
    np.testing.assert_allclose(out.column("probability").to_numpy(), expected["probability"], rtol=1e-5)
    assert {str(v) for v in out.column("model_version").to_pylist()} == {"7"}
    assert out.column_names == ["id", "prediction", "probability", "model_version"]
    assert (stats.rows_read, stats.rows_scored, stats.rows_rejected) == (ROWS, ROWS, 0)
    assert 1 <= stats.batches <= -(-ROWS // 1024)  # parser batches regrouped to at least ~batch_rows rows


def test_a_bad_value_is_located_by_column_row_and_value(table, model):
    rows = [{k: str(v) for k, v in row.items()} for row in table.to_pylist()]
    rows[3210]["x2"] = "high"
    data = _encode(pa.Table.from_pylist(rows), "csv")
    with pytest.raises(SchemaMismatchError) as info:
        _run(data, "csv", model)
    assert info.value.reason == "bad_value"
    assert (info.value.details["column"], info.value.details["row"], info.value.details["value"]) == (
        "x2",
        3211,
        "high",
    )
    assert "data row 3211" in info.value.message


def test_missing_values_fail_the_file_or_are_rejected_by_policy(table, model):
    rows = table.to_pylist()
    rows[10]["color"], rows[20]["x1"], rows[30]["x2"] = None, None, float("nan")
    data = _encode(pa.Table.from_pylist(rows, schema=table.schema), "csv")
    with pytest.raises(SchemaMismatchError) as info:
        _run(data, "csv", model, on_missing="fail")
    # the first missing value of the file, whichever column it is in
    assert (info.value.reason, info.value.details["column"], info.value.details["row"]) == (
        "missing_value",
        "color",
        11,
    )
    out, stats = _run(data, "csv", model)  # pass, the default: scored, NaN or None for the model
    assert (stats.rows_read, stats.rows_scored, stats.rows_rejected) == (ROWS, ROWS, 0)
    out, stats = _run(data, "csv", model, on_missing="reject")
    assert (stats.rows_read, stats.rows_scored, stats.rows_rejected) == (ROWS, ROWS - 3, 3)
    assert {"000010", "000020", "000030"}.isdisjoint(out.column("id").to_pylist())


@pytest.mark.parametrize(
    ("data", "fmt", "error", "text"),
    [
        (b"id,x1,color\n1,0.5,red\n", "csv", SchemaMismatchError, "'x2'"),
        (b"", "csv", FileFormatError, "empty"),
        (b"id,x1,x2,color\n", "csv", FileFormatError, "no data rows"),
        (b"id,x1,x2,color\n1,0.5,1,red,9\n", "csv", FileFormatError, "Expected 4 columns"),
        (b"id,x1,x2,color\n1,0.5,1,\xff\xfe\n", "csv", FileFormatError, "UTF-8"),
        (b"not gzip at all", "csv.gz", FileFormatError, "decompress"),
        (b"PAR1 not really parquet", "parquet", FileFormatError, "Parquet"),
        (b'{"id": "1", "x1": 0.5, "x2": "high", "color": "red"}\n', "jsonl", SchemaMismatchError, "x2"),
        (b'{"id": "1", "x1": 0.5,\n', "jsonl", FileFormatError, "JSON"),
    ],
)
def test_bad_files_raise_specific_errors(model, data, fmt, error, text):
    with pytest.raises(error) as info:
        _run(data, fmt, model)
    assert text in info.value.message


def test_a_parquet_file_with_a_wrongly_typed_column_names_it(model):
    data = _encode(pa.table({"id": ["1"], "x1": [0.5], "x2": ["high"], "color": ["red"]}), "parquet")
    with pytest.raises(SchemaMismatchError, match="'x2'"):
        _run(data, "parquet", model)


def test_format_detection():
    assert [detect_format(n) for n in ("a.csv", "a.CSV.GZ", "a.jsonl", "a.ndjson", "a.parquet")] == [
        "csv", "csv.gz", "jsonl", "jsonl", "parquet"]  # fmt: skip
    with pytest.raises(FileFormatError):
        detect_format("a.xlsx")
    with pytest.raises(FileFormatError):
        detect_format("a.csv", "xml")


def test_output_is_produced_in_blocks_and_stops_reading_when_the_consumer_stops(table, model):
    big = pa.concat_tables([table] * 40)  # 200k rows → several 4 MiB blocks
    data = _encode(big, "csv")
    blocks = score_file(io.BytesIO(data), fmt="csv", model=model, model_version="1")
    first = next(blocks)
    assert len(first) >= 4 << 20
    blocks.close()  # the reader thread is told to stop; nothing hangs


def test_record_blocks_never_cut_inside_a_quoted_field():
    from shared.engine import _Scanner

    rows = [f'"{i:04d}","line one\nline ""two""",{i}\r\n'.encode() for i in range(300)]
    data = b"".join(rows)
    for size in (7, 50, 333, 4096):
        blocks = list(_Scanner(io.BytesIO(data), quoting=True, block_bytes=size))
        assert b"".join(block for block, _ in blocks) == data
        line = 1
        for block, first_line in blocks:
            assert block.count(b'"') % 2 == 0 and block.endswith(b"\r\n")  # whole records only
            assert first_line == line  # each block knows the physical line it starts on
            line += block.count(b"\n")


def test_bom_crlf_and_quoted_newlines_in_key_columns_are_read(model):
    text = '\ufeffid,x1,x2,color\r\n"a,1",0.5,1.0,red\r\n"b\nline",-1.0,0.5,blue\r\n'
    out, stats = _run(text.encode("utf-8"), "csv", model)
    assert out.column("id").to_pylist() == ["a,1", "b\nline"] and stats.rows_scored == 2
