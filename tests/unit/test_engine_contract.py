"""The data contract of the engine, one rule per case (the table in ``shared.engine``'s docstring).

Each failure must carry a reason of ``FAILURE_REASONS`` and a location a person can go to: ``line`` (1-based
physical line), ``row`` (1-based data row), ``column``.
"""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from shared.engine import NULL_TOKENS, EngineStats, detect_format, score_file
from shared.errors import FAILURE_REASONS, InputError
from shared.models import ModelInput, OnnxModel

HEADER = b"id,x1,x2,color\n"


class Recorder:
    """A model that records what it is given (the batches, as Python values) and predicts 0."""

    def __init__(self, *inputs: tuple[str, str]) -> None:
        self.inputs = tuple(ModelInput(name, dtype) for name, dtype in inputs)
        self.seen: list[dict[str, list]] = []

    def predict(self, batch: pa.RecordBatch) -> dict[str, np.ndarray]:
        self.seen.append(
            {name: batch.column(name).to_numpy(zero_copy_only=False).tolist() for name in batch.schema.names}
        )
        return {"prediction": np.zeros(batch.num_rows, dtype=np.int64)}

    def given(self, column: str) -> list:
        return [value for batch in self.seen for value in batch[column]]


@pytest.fixture(scope="module")
def onnx(tiny_onnx):
    return OnnxModel.from_file(tiny_onnx)


def recorder() -> Recorder:
    return Recorder(("x1", "float32"), ("x2", "float32"), ("color", "object"))


def score(data: bytes, fmt: str, model, **options) -> tuple[pa.Table, EngineStats]:
    stats = EngineStats()
    out = b"".join(
        score_file(lambda: io.BytesIO(data), fmt=fmt, model=model, model_version="3", stats=stats, **options)
    )
    table = pacsv.read_csv(
        io.BytesIO(out),
        convert_options=pacsv.ConvertOptions(
            column_types={"id": pa.string()}, strings_can_be_null=False, null_values=[]
        ),
    )
    return table, stats


def failure(data: bytes, fmt: str, model, **options) -> dict:
    with pytest.raises(InputError) as info:
        score(data, fmt, model, **options)
    record = info.value.to_record()
    assert record["reason"] in FAILURE_REASONS, record
    assert record["message"] and "Traceback" not in record["message"]
    return record


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


# -- missing values -----------------------------------------------------------------------------------
@pytest.mark.parametrize("token", ["", "NaN", "nan", "NA", "N/A", "NULL", "null", "None", "<NA>", "#N/A"])
def test_a_missing_csv_value_reaches_the_model_as_nan_or_none_by_default(token):
    model = recorder()
    data = HEADER + f"1,{token},0.5,red\n2,1.5,0.5,{token}\n".encode()
    _, stats = score(data, "csv", model)
    assert (stats.rows_read, stats.rows_scored, stats.rows_rejected) == (2, 2, 0)
    x1, color = model.given("x1"), model.given("color")
    assert np.isnan(x1[0]) and x1[1] == 1.5
    assert color == ["red", None]


def test_the_null_tokens_are_the_documented_ones():
    assert {"", "NA", "N/A", "NULL", "null", "None", "NaN", "nan"} <= set(NULL_TOKENS)


@pytest.mark.parametrize(
    "lines",
    [
        b'{"id":"1","x1":null,"x2":0.5,"color":null}\n',
        b'{"id":"1","x2":0.5}\n',  # absent keys
        b'{"id":"1","x1":NaN,"x2":0.5}\n',
    ],
)
def test_a_missing_json_value_reaches_the_model_as_nan_or_none(lines):
    model = recorder()
    _, stats = score(lines, "jsonl", model)
    assert stats.rows_scored == 1
    assert np.isnan(model.given("x1")[0]) and model.given("color") == [None]


def test_a_missing_parquet_value_reaches_the_model_as_nan_or_none():
    model = recorder()
    data = parquet(
        pa.table({"id": ["1", "2"], "x1": [None, float("nan")], "x2": [0.5, 0.5], "color": [None, "red"]})
    )
    score(data, "parquet", model)
    assert all(np.isnan(v) for v in model.given("x1")) and model.given("color") == [None, "red"]


def test_missing_values_show_in_what_the_drift_observer_sees(onnx):
    seen = []
    data = HEADER + b"1,NA,0.5,red\n2,1.5,0.5,NULL\n"
    b"".join(
        score_file(io.BytesIO(data), fmt="csv", model=onnx, model_version="1",
                   observe=lambda inputs, outputs: seen.append((inputs.to_pydict(), outputs.num_rows)))
    )  # fmt: skip
    (inputs, scored), = seen  # fmt: skip
    assert inputs["x1"] == [None, 1.5] and inputs["color"] == ["red", None] and scored == 2


def test_the_onnx_model_scores_missing_values_when_they_pass(onnx):
    out, _ = score(HEADER + b"1,,0.5,red\n2,1.5,0.5,\n3,1,1,blue\n", "csv", onnx)
    assert out.column("id").to_pylist() == ["1", "2", "3"]


@pytest.mark.parametrize("rule", ["reject_rows", "reject"])
def test_reject_rows_drops_and_counts_rows_with_a_missing_input(onnx, rule):
    data = HEADER + b"1,1,1,red\n2,,1,red\n3,1,1,NA\n4,1,1,blue\n"
    out, stats = score(data, "csv", onnx, on_missing=rule)
    assert out.column("id").to_pylist() == ["1", "4"]
    assert (stats.rows_read, stats.rows_scored, stats.rows_rejected) == (4, 2, 2)


def test_reject_rows_with_every_row_rejected_is_missing_value(onnx):
    record = failure(HEADER + b"1,,1,red\n2,1,1,\n", "csv", onnx, on_missing="reject_rows")
    assert record["reason"] == "missing_value"


def test_fail_names_the_first_missing_value_of_the_file(onnx):
    data = HEADER + b"1,1,1,red\n\n" + b"2,1,1,NA\n" + b"3,,1,red\n"
    record = failure(data, "csv", onnx, on_missing="fail")
    assert (record["reason"], record["column"], record["row"], record["line"]) == (
        "missing_value",
        "color",
        2,
        4,
    )


def test_an_integer_input_cannot_carry_a_missing_value():
    model = Recorder(("n", "int64"))
    _, stats = score(b"n\n1\n\n2\n\n", "csv", model)  # blank lines are no rows, so nothing is missing
    assert stats.rows_scored == 2
    record = failure(b"n\n1\nNA\n", "csv", model)
    assert (record["reason"], record["column"], record["row"], record["line"]) == ("missing_value", "n", 2, 3)
    _, stats = score(b"n\n1\nNA\n", "csv", model, on_missing="reject_rows")
    assert (stats.rows_scored, stats.rows_rejected) == (1, 1)


# -- values the model must not see ------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "value"), [("inf", "inf"), ("-inf", "-inf"), ("Infinity", "inf"),
                                             ("-Infinity", "-inf"), ("1e39", "inf")])  # fmt: skip
def test_infinite_csv_values_are_invalid(onnx, text, value):
    data = HEADER + b"1,1,1,red\n" + f'"2",0.5,{text},blue\n'.encode()
    record = failure(data, "csv", onnx)
    assert (record["reason"], record["column"], record["row"], record["line"], record["value"]) == (
        "invalid_value", "x2", 2, 3, value,
    )  # fmt: skip


def test_infinite_json_and_parquet_values_are_invalid(onnx):
    record = failure(
        b'{"id":"1","x1":1,"x2":1,"color":"a"}\n{"id":"2","x1":-Infinity,"x2":1}\n', "jsonl", onnx
    )
    assert (record["reason"], record["column"], record["row"], record["line"]) == (
        "invalid_value",
        "x1",
        2,
        2,
    )
    data = parquet(
        pa.table({"id": ["1", "2"], "x1": [1.0, 2.0], "x2": [1.0, float("inf")], "color": ["a", "b"]})
    )
    record = failure(data, "parquet", onnx)
    assert (record["reason"], record["column"], record["row"]) == ("invalid_value", "x2", 2)


# -- columns ---------------------------------------------------------------------------------------------
def test_duplicate_column_names_are_a_schema_mismatch(onnx):
    record = failure(b"id,x1,x2,color,x2\n1,1,1,red,2\n", "csv", onnx)
    assert (record["reason"], record["column"], record["line"]) == ("schema_mismatch", "x2", 1)
    data = parquet(pa.Table.from_arrays([pa.array(["a"]), pa.array([1.0]), pa.array([1.0]), pa.array([2.0])],
                                        names=["color", "x1", "x2", "x1"]))  # fmt: skip
    assert failure(data, "parquet", onnx)["reason"] == "schema_mismatch"
    record = failure(b'{"id":"1","x1":1,"x2":1,"x1":2,"color":"a"}\n', "jsonl", onnx)
    assert (record["reason"], record["column"], record["line"]) == ("schema_mismatch", "x1", 1)


def test_names_match_exactly_case_too(onnx):
    record = failure(b"id,X1,x2,color\n1,1,1,red\n", "csv", onnx)
    assert (record["reason"], record["column"], record["missing"]) == ("schema_mismatch", "x1", ["x1"])
    record = failure(parquet(pa.table({"x1": [1.0], "X2": [1.0], "color": ["a"]})), "parquet", onnx)
    assert (record["reason"], record["column"]) == ("schema_mismatch", "x2")


def test_extra_columns_are_ignored(onnx):
    plain, _ = score(HEADER + b"1,0.5,1,red\n", "csv", onnx)
    extra, _ = score(b"note,id,x1,x2,color,more\nhi,1,0.5,1,red,\xc3\xa9\n", "csv", onnx)
    assert extra.to_pylist() == plain.to_pylist()


# -- types -----------------------------------------------------------------------------------------------
def test_parquet_numbers_widen_or_narrow_to_the_declared_float(onnx):
    typed = parquet(pa.table({"id": ["1"], "x1": pa.array([2], pa.int64()), "x2": pa.array([0.5], pa.float64()),
                              "color": pa.array(["red"]).dictionary_encode()}))  # fmt: skip
    wide = parquet(pa.table({"id": ["1"], "x1": pa.array([2.0], pa.float32()), "x2": pa.array([0.5], pa.float32()),
                             "color": pa.array(["red"], pa.large_string())}))  # fmt: skip
    first, _ = score(typed, "parquet", onnx)
    second, _ = score(wide, "parquet", onnx)
    assert first.column("probability").to_pylist() == second.column("probability").to_pylist()


def test_json_integers_are_valid_floats(onnx):
    ints, _ = score(b'{"id":"1","x1":2,"x2":1,"color":"red"}\n', "jsonl", onnx)
    floats, _ = score(b'{"id":"1","x1":2.0,"x2":1.0,"color":"red"}\n', "jsonl", onnx)
    assert ints.to_pylist() == floats.to_pylist()


def test_text_where_a_number_is_declared_is_wrong_type_never_a_silent_cast(onnx):
    data = parquet(pa.table({"id": ["1"], "x1": ["1.5"], "x2": [1.0], "color": ["red"]}))
    record = failure(data, "parquet", onnx)
    assert (record["reason"], record["column"]) == ("wrong_type", "x1")
    data = b'{"id":"1","x1":1,"x2":1,"color":"red"}\n\n{"id":"2","x1":"1.5","x2":1,"color":"red"}\n'
    record = failure(data, "jsonl", onnx)
    assert (record["reason"], record["column"], record["row"], record["line"]) == ("wrong_type", "x1", 2, 3)


def test_a_number_where_text_is_declared_is_wrong_type(onnx):
    record = failure(parquet(pa.table({"x1": [1.0], "x2": [1.0], "color": [3]})), "parquet", onnx)
    assert (record["reason"], record["column"]) == ("wrong_type", "color")
    record = failure(b'{"x1":1,"x2":1,"color":3}\n', "jsonl", onnx)
    assert (record["reason"], record["column"], record["row"], record["line"]) == (
        "wrong_type",
        "color",
        1,
        1,
    )


def test_a_csv_value_that_does_not_parse_is_bad_value_with_its_location(onnx):
    rows = [
        f'"{i}","multi\nline",0.5,{i % 7},red\n'.encode() for i in range(250_000)
    ]  # about 7 MiB: 2 blocks
    rows[200_000] = b'"200000","x",0.5,high,red\n'
    data = b"id,note,x1,x2,color\n" + b"".join(rows)
    record = failure(data, "csv", onnx)
    assert (record["reason"], record["column"], record["value"], record["row"], record["line"]) == (
        "bad_value", "x2", "high", 200_001, 2 + 2 * 200_000,
    )  # fmt: skip


# -- the label -------------------------------------------------------------------------------------------
def test_a_label_must_parse_as_its_type_and_is_never_given_to_the_model():
    model = recorder()
    header = b"id,x1,x2,color,label\n"
    _, stats = score(header + b"1,1,1,red,1\n2,1,1,red,\n3,1,1,red,NA\n", "csv", model)
    assert stats.rows_scored == 3 and "label" not in model.seen[0] and "id" not in model.seen[0]
    record = failure(header + b"1,1,1,red,1\n2,1,1,red,yes\n", "csv", model)
    assert (record["reason"], record["column"], record["row"], record["line"]) == ("bad_value", "label", 2, 3)
    record = failure(b'{"x1":1,"x2":1,"color":"a","label":0.5}\n', "jsonl", model)
    assert (record["reason"], record["column"], record["line"]) == ("bad_value", "label", 1)
    record = failure(
        parquet(pa.table({"x1": [1.0], "x2": [1.0], "color": ["a"], "label": ["yes"]})), "parquet", model
    )
    assert (record["reason"], record["column"], record["row"]) == ("bad_value", "label", 1)
    _, stats = score(header + b"1,1,1,red,yes\n", "csv", model, label_column=None)  # no label: just a column
    assert stats.rows_scored == 1
    _, stats = score(header + b"1,1,1,red,yes\n", "csv", model, label_dtype="string")
    assert stats.rows_scored == 1


# -- empty files -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (b"", "csv"),
        (b"\xef\xbb\xbf", "csv"),
        (HEADER, "csv"),
        (HEADER.strip(), "csv"),
        (HEADER + b"\n\r\n\n", "csv"),
        (b"\n\n", "csv"),
        (gzip.compress(HEADER), "csv.gz"),
        (gzip.compress(b""), "csv.gz"),
        (b"", "jsonl"),
        (b"\n \n", "jsonl"),
        (b"", "parquet"),
    ],
)
def test_files_without_data_rows_are_empty_file(onnx, data, fmt):
    assert failure(data, fmt, onnx)["reason"] == "empty_file"


def test_a_parquet_file_with_zero_rows_is_empty_file(onnx):
    empty = pa.table({"x1": pa.array([], pa.float64()), "x2": pa.array([], pa.float64()),
                      "color": pa.array([], pa.string())})  # fmt: skip
    assert failure(parquet(empty), "parquet", onnx)["reason"] == "empty_file"


# -- encodings -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_text_is_not_utf8_and_says_utf16(onnx, encoding):
    text = "id,x1,x2,color\n1,1,1,red\n".encode(encoding)
    record = failure(text, "csv", onnx)
    assert (record["reason"], record["encoding"], record["line"]) == ("not_utf8", "utf-16", 1)
    text = '{"x1":1,"x2":1,"color":"red"}\n'.encode(encoding)
    assert failure(text, "jsonl", onnx)["encoding"] == "utf-16"


def test_other_non_utf8_text_names_its_row_and_line(onnx):
    record = failure(HEADER + b"1,1,1,red\n2,1,1,caf\xe9\n", "csv", onnx)
    assert (record["reason"], record["encoding"], record["row"], record["line"]) == (
        "not_utf8",
        "utf-8",
        2,
        3,
    )
    record = failure(b'{"x1":1,"x2":1,"color":"a"}\n\n{"x1":1,"x2":1,"color":"caf\xe9"}\n', "jsonl", onnx)
    assert (record["reason"], record["row"], record["line"]) == ("not_utf8", 2, 3)
    record = failure(b"id,x1,x2,caf\xe9\n", "csv", onnx)
    assert (record["reason"], record["line"]) == ("not_utf8", 1)


def test_a_utf8_bom_and_crlf_are_fine(onnx):
    plain, _ = score(HEADER + b"1,0.5,1,red\n", "csv", onnx)
    windows, _ = score(b"\xef\xbb\xbf" + HEADER.replace(b"\n", b"\r\n") + b"1,0.5,1,red\r\n", "csv", onnx)
    assert windows.to_pylist() == plain.to_pylist()
    json_windows, _ = score(b'\xef\xbb\xbf{"id":"1","x1":0.5,"x2":1,"color":"red"}\r\n', "jsonl", onnx)
    assert json_windows.to_pylist() == plain.to_pylist()


# -- formats ---------------------------------------------------------------------------------------------
def test_extensions_are_trusted_and_unknown_ones_unsupported():
    assert [detect_format(n) for n in ("a.csv", "A.CSV.GZ", "a.jsonl", "a.ndjson", "a.json", "a.parquet", "a.pq")] == [
        "csv", "csv.gz", "jsonl", "jsonl", "jsonl", "parquet", "parquet"]  # fmt: skip
    for name in ("a.xlsx", "a.gz", "a.json.gz", "a.txt", "noextension", "a.csv.bak"):
        with pytest.raises(InputError) as info:
            detect_format(name)
        assert info.value.reason == "unsupported_format", name
    with pytest.raises(InputError) as info:
        detect_format("a.csv", "xml")
    assert info.value.reason == "unsupported_format"


def test_a_gzip_file_named_csv_is_not_sniffed(onnx):
    data = HEADER + b"1,1,1,red\n"
    odd_quotes = [t for t in range(1_800_000_000, 1_800_020_000) if gzip.compress(data, mtime=t).count(b'"') % 2]
    for mtime in [1_800_000_000, *odd_quotes[:3]]:  # the time stamp varies the bytes: some hold a stray quote
        record = failure(gzip.compress(data, mtime=mtime), "csv", onnx)
        assert record["reason"] == "not_utf8" and ".csv.gz" in record["message"], mtime


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (b"not gzip at all", "csv.gz"),
        (gzip.compress(HEADER + b"1,1,1,red\n" * 1000)[:-30], "csv.gz"),
        (b"PAR1 not really parquet", "parquet"),
        (parquet(pa.table({"x1": [1.0] * 100, "x2": [1.0] * 100, "color": ["a"] * 100}))[:-200], "parquet"),
    ],
)
def test_corrupt_gzip_or_parquet_is_bad_file_format(onnx, data, fmt):
    assert failure(data, fmt, onnx)["reason"] == "bad_file_format"


# -- ids -------------------------------------------------------------------------------------------------
def test_csv_ids_come_back_byte_for_byte(onnx):
    ids = ["00123", "NA", "NaN", "1e5", "", "null", " 7 ", "-0"]
    data = HEADER + b"".join(f'"{i}",0.5,1,red\n'.encode() for i in ids)
    out, _ = score(data, "csv", onnx)
    assert out.column("id").to_pylist() == ids


def test_json_ids_come_back_as_written(onnx):
    data = b"".join(
        b'{"id":%s,"x1":0.5,"x2":1,"color":"red"}\n' % i
        for i in (b'"00123"', b'"NA"', b"1e5", b"-0.50", b"17")
    )
    out, _ = score(data, "jsonl", onnx)
    assert out.column("id").to_pylist() == ["00123", "NA", "1e5", "-0.50", "17"]
    out, _ = score(
        b'{"id":17,"x1":0.5,"x2":1,"color":"red"}\n{"id":18,"x1":0.5,"x2":1,"color":"red"}\n', "jsonl", onnx
    )
    assert out.column("id").to_pylist() == ["17", "18"]


# -- locations of broken records -------------------------------------------------------------------------
def test_a_broken_csv_record_late_in_the_file_has_its_file_row_and_line(onnx):
    data = HEADER + b"1,0.5,1,red\n" * 500_000 + b"\n" + b"2,0.5,1,red,9\n"  # well past the first block
    record = failure(data, "csv", onnx)
    assert (record["reason"], record["row"], record["line"]) == ("bad_file_format", 500_001, 500_003)
    assert "Expected 4 columns" in record["message"]


def test_an_unbalanced_quote_is_located(onnx):
    record = failure(HEADER + b'1,1,1,red\n2,1,1,"red\n3,1,1,red\n', "csv", onnx)
    assert (record["reason"], record["row"], record["line"]) == ("bad_file_format", 2, 3)
    assert "quote" in record["message"]


@pytest.mark.parametrize(
    ("line", "what"),
    [(b'{"x1": 1,', "not valid JSON"), (b"[1, 2]", "array"), (b"7", "number"), (b'"text"', "string")],
)
def test_a_broken_json_line_is_located_one_based(onnx, line, what):
    data = b'{"x1":1,"x2":1,"color":"a"}\n' * 3 + b"\n" + line + b"\n"
    record = failure(data, "jsonl", onnx)
    assert (record["reason"], record["row"], record["line"]) == ("bad_file_format", 4, 5)
    assert what in record["message"]


def test_every_failure_has_a_known_reason_and_a_message(onnx):
    cases = [
        (HEADER + b"1,1,1,red\n2,abc,1,red\n", "csv"),
        (json.dumps({"x1": "a"}).encode(), "jsonl"),
        (b"id,x1\n1,2\n", "csv"),
    ]
    for data, fmt in cases:
        record = failure(data, fmt, onnx)
        assert set(record) >= {"reason", "message"}


def test_parquet_keys_keep_their_type_and_must_be_single_utf8_values(onnx):
    inputs = {"x1": [1.0, 2.0], "x2": [1.0, 1.0], "color": ["a", "b"]}
    out, _ = score(parquet(pa.table({"id": pa.array([7, 8], pa.int64()), **inputs})), "parquet", onnx)
    assert out.column("id").to_pylist() == ["7", "8"]
    record = failure(
        parquet(pa.table({"id": pa.array([b"ok", b"\xff"], pa.binary()), **inputs})), "parquet", onnx
    )
    assert (record["reason"], record["column"], record["row"]) == ("not_utf8", "id", 2)
    record = failure(parquet(pa.table({"id": pa.array([[1], [2]]), **inputs})), "parquet", onnx)
    assert (record["reason"], record["column"]) == ("wrong_type", "id")


def test_deeply_nested_json_is_ignored_in_extra_fields_and_wrong_type_in_inputs(onnx):
    deep = b"[" * 100_000 + b"]" * 100_000
    out, _ = score(b'{"id":"1","x1":1,"x2":1,"color":"a","extra":' + deep + b"}\n", "jsonl", onnx)
    assert out.column("id").to_pylist() == ["1"]
    record = failure(b'{"id":"1","x1":1,"x2":1,"color":"a"}\n{"id":"2","x1":' + deep + b"}\n", "jsonl", onnx)
    assert (record["reason"], record["column"], record["row"], record["line"]) == ("wrong_type", "x1", 2, 2)
    record = failure(b'{"id":"1","x1":[1],"x2":1,"color":"a"}\n', "jsonl", onnx)
    assert (record["reason"], record["column"], record["row"]) == ("wrong_type", "x1", 1)


@pytest.mark.parametrize(
    ("data", "row", "line"),
    [
        (b"null\n", 1, 1),  # pyarrow 25 crashes on this as a block's first value: never handed to it
        (b'{"x1":1,"x2":1,"color":"a"}\n  null\n', 2, 2),  # pyarrow would read it as a row of nulls
        (b'{"x1":1,"x2":1,"color":"a"} {"x1":2,"x2":1,"color":"a"}\n', 1, 1),  # two objects on one line
    ],
)
def test_a_json_line_holds_exactly_one_object(onnx, data, row, line):
    record = failure(data, "jsonl", onnx)
    assert (record["reason"], record["row"], record["line"]) == ("bad_file_format", row, line)


def test_lines_of_spaces_between_json_objects_are_blank(onnx):
    out, stats = score(
        b'{"id":"1","x1":1,"x2":1,"color":"a"}\n   \n\t\n{"id":"2","x1":1,"x2":1,"color":"a"}\n',
        "jsonl",
        onnx,
    )
    assert out.column("id").to_pylist() == ["1", "2"] and stats.rows_read == 2


def test_parquet_text_that_is_not_utf8_is_located(onnx):
    strings = pa.array([b"red", b"r\xffd"], pa.binary()).view(pa.string())  # Parquet does not check
    data = parquet(pa.table({"id": ["1", "2"], "x1": [1.0, 2.0], "x2": [1.0, 1.0], "color": strings}))
    record = failure(data, "parquet", onnx)
    assert (record["reason"], record["column"], record["row"]) == ("not_utf8", "color", 2)
