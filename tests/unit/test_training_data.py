"""training.data: determinism, schema, drift, chunked file writing; training.train.baseline_profile."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest

from training.data import (
    CATEGORICAL,
    DRIFTED,
    FORMATS,
    KEY,
    LABEL,
    NUMERIC,
    SCHEMA,
    UNSEEN,
    generate,
    write_file,
)

ROOT = Path(__file__).resolve().parents[2]


def _schema(label: bool) -> pa.Schema:
    return SCHEMA if label else SCHEMA.remove(SCHEMA.get_field_index(LABEL))


def _read(path: Path, fmt: str, label: bool) -> pa.Table:
    schema = _schema(label)
    if fmt == "parquet":
        return pq.read_table(path)
    if fmt == "jsonl":
        return pajson.read_json(path, parse_options=pajson.ParseOptions(explicit_schema=schema))
    types = {f.name: f.type for f in schema}
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))


def _same(a: pa.Table, b: pa.Table) -> bool:
    """Same column names, types and values (field nullability aside: readers declare columns nullable)."""
    pairs = zip(a.columns, b.columns, strict=True)
    return a.column_names == b.column_names and all(x.equals(y) for x, y in pairs)


def _frequencies(table: pa.Table, column: str) -> dict[str, float]:
    counts = table.column(column).value_counts().to_pylist()
    return {c["values"]: c["counts"] / table.num_rows for c in counts}


def test_same_seed_same_table_other_seed_differs() -> None:
    assert generate(3000, seed=4).equals(generate(3000, seed=4))
    assert not generate(3000, seed=4).equals(generate(3000, seed=5))
    assert generate(0).num_rows == 0


def test_rows_do_not_depend_on_the_window() -> None:
    whole = generate(9000, seed=2)
    assert generate(100, seed=2, start=4050).equals(whole.slice(4050, 100))
    assert generate(1, seed=2, start=8999).equals(whole.slice(8999, 1))


def test_schema_and_types() -> None:
    table = generate(500, seed=1)
    assert table.schema.equals(SCHEMA)
    assert table.column_names == [KEY, *NUMERIC, *CATEGORICAL, LABEL]
    assert table.column(KEY).to_pylist()[:2] == ["r00000001", "r00000002"]
    assert set(np.unique(table.column(LABEL).to_numpy())) == {0, 1}
    assert 0.3 < np.mean(table.column(LABEL).to_numpy()) < 0.7
    assert LABEL not in generate(5, include_label=False).column_names
    for name in CATEGORICAL:
        assert table.column(name).null_count == 0 and len(set(table.column(name).to_pylist())) > 2


def test_ids_keep_leading_zeros_in_csv(tmp_path: Path) -> None:
    path = write_file(tmp_path / "in.csv", 20, fmt="csv")
    assert path.read_text().splitlines()[1].startswith('"r00000001"')
    back = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={KEY: pa.string()}))
    assert back.schema.field(KEY).type == pa.string()
    assert back.column(KEY).to_pylist()[0] == "r00000001"


def test_drift_moves_numeric_columns_and_categories() -> None:
    base, drifted = generate(20000, seed=0), generate(20000, seed=0, drift=1.0)
    x01, x01d = base.column("x01").to_numpy(), drifted.column("x01").to_numpy()
    assert (x01d.mean() - x01.mean()) / x01.std() > 1.0
    assert drifted.column("x02").to_numpy().std() / base.column("x02").to_numpy().std() > 1.8
    for name in set(NUMERIC) - set(DRIFTED):
        assert np.array_equal(base.column(name).to_numpy(), drifted.column(name).to_numpy())
    f0, f1 = _frequencies(base, "region"), _frequencies(drifted, "region")
    assert f0["north"] - f1["north"] > 0.1
    assert UNSEEN["region"] not in f0 and 0.02 < f1[UNSEEN["region"]] < 0.08
    assert UNSEEN["region"] not in _frequencies(generate(20000, drift=0.5), "region")
    assert abs(_frequencies(drifted, "channel")["mobile"] - _frequencies(base, "channel")["mobile"]) > 0.1
    assert generate(100, drift=0.0).equals(generate(100))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        generate(10, drift=1.5)
    with pytest.raises(ValueError):
        write_file("unused.csv", 10, fmt="xlsx")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("label", [False, True])
def test_write_file_writes_exactly_n_rows(tmp_path: Path, fmt: str, label: bool) -> None:
    path = write_file(tmp_path / f"in.{fmt}", 1001, fmt=fmt, seed=3, chunk_rows=300, include_label=label)
    back = _read(path, fmt, label)
    assert back.num_rows == 1001
    assert _same(back, generate(1001, seed=3, include_label=label))


@pytest.mark.parametrize("fmt", FORMATS)
def test_chunking_does_not_change_content(tmp_path: Path, fmt: str) -> None:
    one = write_file(tmp_path / f"one.{fmt}", 700, fmt=fmt, seed=8, drift=0.7, chunk_rows=700)
    many = write_file(tmp_path / f"many.{fmt}", 700, fmt=fmt, seed=8, drift=0.7, chunk_rows=64)
    if fmt == "parquet":
        assert pq.read_table(one).equals(pq.read_table(many))
        assert pq.ParquetFile(many).num_row_groups == 11 and pq.ParquetFile(one).num_row_groups == 1
    elif fmt == "csv.gz":
        assert gzip.decompress(one.read_bytes()) == gzip.decompress(many.read_bytes())
    else:
        assert one.read_bytes() == many.read_bytes()


def test_cli_writes_a_file(tmp_path: Path) -> None:
    out = tmp_path / "cli.csv.gz"
    argv = [
        sys.executable,
        "-m",
        "training.data",
        "--rows",
        "250",
        "--format",
        "csv.gz",
        "--out",
        str(out),
        "--seed",
        "2",
        "--drift",
        "0.3",
        "--label",
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["rows"] == 250
    assert _same(_read(out, "csv.gz", True), generate(250, seed=2, drift=0.3))


def test_importing_data_does_not_import_sklearn_or_mlflow() -> None:
    code = "import sys, training.data; print(sorted({'sklearn', 'mlflow', 'skl2onnx'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_baseline_profile_counts_sum_to_rows() -> None:
    from training.train import baseline_profile

    profile = baseline_profile(generate(3000, seed=6))
    assert profile["rows"] == 3000 and profile["std_ddof"] == 0
    assert set(profile["numeric"]) == set(NUMERIC) and set(profile["categorical"]) == set(CATEGORICAL)
    for entry in profile["numeric"].values():
        assert sum(entry["counts"]) == 3000 and len(entry["counts"]) == 10
        assert len(entry["edges"]) == 11 and entry["edges"] == sorted(entry["edges"])
        assert entry["edges"][0] == entry["min"] and entry["edges"][-1] == entry["max"]
        assert entry["missing_rate"] == 0.0 and entry["std"] > 0
    for entry in profile["categorical"].values():
        assert sum(entry["counts"].values()) == 3000
        assert sum(entry["frequencies"].values()) == pytest.approx(1.0)
    assert json.loads(json.dumps(profile)) == profile


def test_baseline_profile_missing_values() -> None:
    from training.train import baseline_profile

    table = pa.table({"a": pa.array([1.0, None, 3.0, float("nan")]), "c": pa.array(["x", None, "x", "y"])})
    profile = baseline_profile(table)
    assert profile["numeric"]["a"]["missing_rate"] == 0.5 and sum(profile["numeric"]["a"]["counts"]) == 2
    expected = {"counts": {"x": 2, "y": 1}, "frequencies": {"x": 2 / 3, "y": 1 / 3}, "missing_rate": 0.25}
    assert profile["categorical"]["c"] == expected
