"""``shared.drift.compare_tables``: the offline drift check through the production path (engine read,
baseline as the monitor builds it, window profiled while scored and stored as JSON, ``compare``)."""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from shared.drift import DriftPolicy, compare_tables, policy_from_settings
from shared.drift.monitor import BASELINE_ARTIFACT, DriftMonitor, baseline_from_reference
from shared.drift.store import ProfileStore
from shared.errors import (
    BlobNotFoundError,
    FileFormatError,
    InputError,
    SchemaMismatchError,
    UnsupportedFormatError,
)
from shared.events import parse_blob_created
from shared.models import OnnxModel
from shared.settings import Settings


def data(
    rows: int, *, seed: int, shift: float = 0.0, prefix: str = "r", colors=("red", "green", "blue")
) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": [f"{prefix}{i:05d}" for i in range(rows)],
            "x1": rng.normal(size=rows) + shift,
            "x2": rng.normal(size=rows),
            "color": rng.choice(list(colors), rows),
        }
    )


def write(t: pa.Table, path: Path) -> Path:
    name = path.name
    if name.endswith(".parquet"):
        pq.write_table(t, path)
    elif name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(row, default=str) + "\n" for row in t.to_pylist()))
    else:
        sink = io.BytesIO()
        pacsv.write_csv(t, sink)
        path.write_bytes(gzip.compress(sink.getvalue()) if name.endswith(".gz") else sink.getvalue())
    return path


def flagged(report) -> list[str]:
    return sorted(f.name for f in report.features if f.flagged)


def test_undrifted_data_stays_quiet() -> None:
    report = compare_tables(data(5000, seed=1, prefix="b"), data(2000, seed=2))
    assert report.decision == "no_drift" and flagged(report) == []
    assert {f.name for f in report.features} == {"x1", "x2", "color"}  # the key column is not a feature
    for f in report.features:
        assert f.status == "evaluated" and f.value is not None and f.noise_bound is not None
        assert f.value <= f.threshold + f.noise_bound


def test_a_one_sd_shift_is_flagged_with_its_distance_bound_and_reason() -> None:
    report = compare_tables(data(5000, seed=1, prefix="b"), data(2000, seed=2, shift=1.0))
    assert report.decision == "drift" and flagged(report) == ["x1"]
    x1 = report.feature("x1")
    assert x1.metric == "normalized_wasserstein" and 0.6 < x1.value < 1.0  # E|shift| / sd = 0.8
    assert x1.value > x1.threshold + x1.noise_bound and x1.reasons and "x1" in x1.reasons[0]
    doc = report.to_json()
    assert doc["drifted_features"] == ["x1"] and doc["features"][0]["flagged"] is True


def test_a_new_categorical_level_is_flagged() -> None:
    current = data(2000, seed=2, colors=("red", "green", "blue", "violet"))
    report = compare_tables(data(5000, seed=1, prefix="b"), current)
    color = report.feature("color")
    assert color.flagged and "unseen_rate" in color.quality_breaches
    assert flagged(report) == ["color"]


@pytest.mark.parametrize("suffix", ["csv", "csv.gz", "parquet", "jsonl"])
def test_every_format_reads_to_the_same_report_as_the_table(tmp_path: Path, suffix: str) -> None:
    ref, cur = data(3000, seed=1, prefix="b"), data(800, seed=3, shift=0.5)
    expected = compare_tables(ref, cur)
    report = compare_tables(write(ref, tmp_path / f"ref.{suffix}"), write(cur, tmp_path / f"cur.{suffix}"))
    assert [(f.name, f.value, f.rows, f.flagged) for f in report.features] == [
        (f.name, f.value, f.rows, f.flagged) for f in expected.features
    ]
    assert report.decision == expected.decision == "drift"


def test_missing_values_follow_the_data_contract(tmp_path: Path) -> None:
    ref = tmp_path / "ref.csv"
    ref.write_text("id,x,c\n" + "".join(f"{i:03d},{i % 10},{'ab'[i % 2]}\n" for i in range(400)))
    cur = tmp_path / "cur.csv"  # NA and empty cells are missing values; half of x is missing
    cur.write_text("id,x,c\n" + "".join(f"{i:03d},{'NA' if i % 2 else i % 10},{'' if i % 4 == 0 else 'ab'[i % 2]}\n"
                                         for i in range(400)))  # fmt: skip
    report = compare_tables(ref, cur)
    x, c = report.feature("x"), report.feature("c")
    assert x.quality["missing_rate"] == 0.5 and "missing_rate" in x.quality_breaches
    assert c.quality["missing_rate"] == 0.25 and c.flagged


def test_several_current_files_form_one_window_like_the_whole(tmp_path: Path) -> None:
    ref, cur = data(3000, seed=1, prefix="b"), data(900, seed=4, shift=0.3)
    parts = [write(cur.slice(i * 300, 300), tmp_path / f"part{i}.parquet") for i in range(3)]
    whole, split = compare_tables(ref, cur), compare_tables(ref, parts)
    assert [(f.name, f.value, f.rows) for f in split.features] == [
        (f.name, f.value, f.rows) for f in whole.features
    ]


def test_the_report_is_the_monitors_for_the_same_file(scoring, tiny_onnx: Path, tmp_path: Path) -> None:
    """The app scores a file with a reference baseline and evaluates its window; compare_tables on the
    reference and the same file, with the same model, reports the same distances and decisions."""
    model = OnnxModel.from_file(str(tiny_onnx))
    reference = data(3000, seed=1, prefix="b")
    scoring.registry.artifacts[("tiny", scoring.version.version, BASELINE_ARTIFACT)] = json.dumps(
        baseline_from_reference(reference, model)
    ).encode()
    now = datetime(2026, 11, 23, 10, 30, tzinfo=UTC).timestamp()
    monitor = DriftMonitor(
        store=ProfileStore(scoring.blobs, "drift"), registry=scoring.registry, ledger=scoring.ledger,
        publisher=scoring.publisher, policy=DriftPolicy(), clock=lambda: now,
    )  # fmt: skip
    scoring.service.drift = monitor
    current = data(1500, seed=5, shift=0.8)
    path = write(current, tmp_path / "current.csv")
    outcome = scoring.service.score(parse_blob_created(scoring.upload("a.csv", path.read_bytes())))
    assert outcome.status == "succeeded"
    app = monitor.evaluate("tiny", scoring.version.version, outcome.details["drift_window"])

    offline = compare_tables(reference, path, model=model)
    assert offline.rows == app["rows"] == 1500 and offline.baseline_rows == app["baseline_rows"]
    ours = {f.name: (f.rows, f.drifted, f.quality_breaches) for f in offline.features}
    theirs = {f["name"]: (f["rows"], f["drifted"], f["quality_breaches"]) for f in app["features"]}
    assert ours == theirs and "probability" in ours and "prediction" in ours
    # the same distances, to the rounding of float32 sums over differently sized read batches
    values = {f.name: f.value for f in offline.features}
    assert all(values[f["name"]] == pytest.approx(f["value"], abs=1e-5) for f in app["features"])
    assert offline.decision == app["decision"] == "drift"


def test_a_baseline_artifact_can_be_the_reference_and_brings_its_importance() -> None:
    from shared.drift import Profile

    base = Profile.baseline(data(3000, seed=1, prefix="b"), numeric=["x1", "x2"], categorical=["color"])
    artifact = {**base.to_json(), "importance": {"x1": 0.05, "x2": 0.9, "color": 0.05}}
    report = compare_tables(artifact, data(1000, seed=2, shift=1.0))
    assert flagged(report) == ["x1"] and report.decision == "no_drift"  # x1 weighs 5 % < drift_share 20 %
    assert report.feature("x1").importance == 0.05


def test_named_columns_choose_the_features_and_their_kinds() -> None:
    ref = pa.table({"id": ["a", "b"] * 500, "code": [1, 2, 3, 4] * 250, "x": np.arange(1000.0)})
    report = compare_tables(ref, ref, numeric=["x"], categorical=["code"])
    assert [(f.name, f.kind) for f in report.features] == [("x", "numeric"), ("code", "categorical")]
    assert report.decision == "no_drift"


def test_columns_absent_from_the_current_data_are_named(tmp_path: Path) -> None:
    current = data(500, seed=2).drop_columns(["x2"])
    report = compare_tables(data(3000, seed=1, prefix="b"), current)
    assert report.feature("x2").rows == 0 and report.feature("x2").status == "insufficient_data"
    assert report.reasons[-1] == "not in the current data: x2"


def test_bad_inputs_raise_errors_of_the_one_tree(tmp_path: Path) -> None:
    ref = data(500, seed=1)
    with pytest.raises(BlobNotFoundError, match="no such file"):
        compare_tables(ref, tmp_path / "missing.csv")
    with pytest.raises(UnsupportedFormatError):
        compare_tables(ref, write(ref, tmp_path / "cur.csv").rename(tmp_path / "cur.txt"))
    with pytest.raises(SchemaMismatchError, match="none of the reference's feature columns"):
        compare_tables(ref, pa.table({"other": [1.0, 2.0]}))
    broken = tmp_path / "broken.csv"
    broken.write_text("id,x1,x2,color\n1,0.5,0.1,red\n2,0.5\n")
    with pytest.raises(FileFormatError) as info:
        compare_tables(ref, broken)
    assert info.value.details.get("line") == 3
    text = tmp_path / "text.csv"
    text.write_text("id,x1,x2,color\n1,abc,0.1,red\n")
    with pytest.raises(SchemaMismatchError) as info:
        compare_tables(ref, text)
    assert info.value.reason == "bad_value" and info.value.details["column"] == "x1"
    empty = tmp_path / "empty.csv"
    empty.write_text("id,x1,x2,color\n")
    with pytest.raises(InputError) as info:
        compare_tables(empty, ref)
    assert info.value.reason in ("empty_file", "schema_mismatch")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty_file"),
        (b"id,x1,x2,color\n", "empty_file"),
        (bytes(range(256)) * 4, "not_utf8"),
        (b"\x1f\x8b\x08\x00not gzip", "bad_file_format"),
    ],
)
@pytest.mark.parametrize("side", ["reference", "current"])
def test_an_unreadable_file_is_named_with_its_own_reason_on_either_side(
    tmp_path: Path, content: bytes, reason: str, side: str
) -> None:
    """A file the engine cannot read says why (not "no shared columns"), and names the file."""
    bad = tmp_path / ("bad.csv.gz" if content.startswith(b"\x1f\x8b") else "bad.csv")
    bad.write_bytes(content)
    good = data(300, seed=2)
    with pytest.raises(InputError) as info:
        compare_tables(bad, good) if side == "reference" else compare_tables(good, bad)
    if side == "reference" and reason == "not_utf8":
        assert info.value.reason in ("not_utf8", "bad_file_format")  # the reference is typed by pyarrow first
    else:
        assert info.value.reason == reason
    assert info.value.details["path"] == str(bad) and str(bad) in str(info.value)


def test_a_reference_without_comparable_columns_says_which_it_has(tmp_path: Path) -> None:
    nulls = tmp_path / "nulls.csv"
    nulls.write_text("id,x1\n1,\n2,\n")
    with pytest.raises(SchemaMismatchError, match=r"not comparable .*: x1") as info:
        compare_tables(nulls, data(100, seed=3))
    assert info.value.details["path"] == str(nulls)


def test_default_policy_is_the_default_settings_policy() -> None:
    assert policy_from_settings(Settings.from_env({})) == DriftPolicy()
    custom = Settings.from_env({"SCOREHOOK_DRIFT_NUMERIC_THRESHOLD": "0.2", "SCOREHOOK_DRIFT_MIN_ROWS": "10"})
    assert policy_from_settings(custom) == DriftPolicy(numeric_threshold=0.2, min_rows=10)
    every_size = Settings.from_env({"SCOREHOOK_DRIFT_FULL_ALPHA_ROWS": "0"})
    assert policy_from_settings(every_size).alpha_at(50) == 0.05


def mixed(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    codes = [None if i % 7 == 0 else int(v) for i, v in enumerate(rng.integers(0, 5, rows))]
    flags = [None if i % 9 == 0 else bool(v) for i, v in enumerate(rng.random(rows) < 0.3)]
    when = np.datetime64("2026-01-01T00:00:00") + rng.integers(0, 10**6, rows).astype("timedelta64[s]")
    return pa.table({"id": [f"{seed}-{i}" for i in range(rows)], "code": pa.array(codes, pa.int64()),
                     "flag": pa.array(flags, pa.bool_()), "when": pa.array(when), "x": rng.normal(size=rows)})  # fmt: skip


@pytest.mark.parametrize("suffix", ["csv", "parquet", "jsonl"])
def test_integers_booleans_with_missing_values_and_dates_read_alike(tmp_path: Path, suffix: str) -> None:
    """Integers (with nulls) are numeric, booleans (with nulls) two categories, dates are not compared."""
    expected = compare_tables(mixed(2000, 1), mixed(1000, 2))
    assert [(f.name, f.kind) for f in expected.features] == [
        ("code", "numeric"), ("x", "numeric"), ("flag", "categorical")
    ]  # fmt: skip
    assert expected.reasons[-1] == "not compared (dates, times, nested or empty columns): when"
    assert expected.feature("code").quality["missing_rate"] == pytest.approx(1 / 7, abs=0.01)
    report = compare_tables(
        write(mixed(2000, 1), tmp_path / f"r.{suffix}"), write(mixed(1000, 2), tmp_path / f"c.{suffix}")
    )
    assert [(f.name, f.value, f.rows, f.quality) for f in report.features] == [
        (f.name, f.value, f.rows, f.quality) for f in expected.features
    ]
    assert report.decision == expected.decision == "no_drift"


def test_with_a_model_its_types_are_the_contract(tiny_onnx: Path, tmp_path: Path) -> None:
    """A number where the model takes text is ``wrong_type``, as when the app scores the file."""
    from shared.errors import WrongTypeError

    model = OnnxModel.from_file(str(tiny_onnx))
    bad = data(500, seed=1).drop_columns(["color"]).append_column("color", pa.array([1, 2] * 250))
    with pytest.raises(WrongTypeError) as info:
        compare_tables(write(bad, tmp_path / "ref.parquet"), data(500, seed=2), model=model)
    assert info.value.details["column"] == "color"
    with pytest.raises(SchemaMismatchError, match="'x2'"):  # a model input missing from the current file
        compare_tables(
            data(500, seed=1), write(data(500, seed=2).drop_columns(["x2"]), tmp_path / "c.csv"), model=model
        )


@pytest.mark.parametrize("rows", [50, 1000, 100_000])
def test_a_missing_rate_that_falls_is_flagged_and_one_that_holds_is_not(rows: int) -> None:
    """An upstream change that stops sending missing values is a change of the data (20 % -> 0 %)."""
    rng = np.random.default_rng(5)
    ref = rng.normal(size=20_000)
    ref[rng.random(20_000) < 0.2] = np.nan
    fallen = compare_tables(pa.table({"x": ref}), pa.table({"x": rng.normal(size=rows)})).feature("x")
    assert fallen.flagged and fallen.quality_breaches == ["missing_rate"]
    assert "a fall of more than" in fallen.reasons[-1]
    same = rng.normal(size=rows)
    same[rng.random(rows) < 0.2] = np.nan
    assert not compare_tables(pa.table({"x": ref}), pa.table({"x": same})).feature("x").flagged


def test_a_column_gone_all_missing_counts_in_the_dataset_decision() -> None:
    rng = np.random.default_rng(6)
    ref = pa.table({"x": rng.normal(size=5000), "y": rng.normal(size=5000)})
    cur = pa.table({"x": pa.array([None] * 5000, pa.float64()), "y": rng.normal(size=5000)})
    report = compare_tables(ref, cur)
    assert report.feature("x").flagged and report.feature("x").status == "no_values"
    assert report.decision == "drift" and report.drifted_share == 0.5
    assert not any("profile version 1" in reason for reason in report.reasons)
    alone = compare_tables(ref.select(["x"]), cur.select(["x"]))
    assert alone.decision == "drift" and alone.drifted_share == 1.0


def test_a_categorical_with_more_levels_than_the_vocabulary_stays_quiet_without_drift() -> None:
    """The top 256 of 1,000 equally likely levels are chosen by the reference's own counts, so its share
    outside them comes out low; a fresh window of the same distribution must not read as "unseen" values,
    and a new level still shows."""
    levels = np.array([f"L{i}" for i in range(1000)])
    for seed in range(3):
        rng = np.random.default_rng(seed)
        ref = pa.table({"x": levels[rng.integers(0, 1000, 20_000)]})
        same = compare_tables(ref, pa.table({"x": levels[rng.integers(0, 1000, 10_000)]})).feature("x")
        assert not same.flagged, same.reasons
        assert same.quality["unseen_rate"] > same.quality["baseline_unseen_rate"] + 0.05  # the bias, measured
        new = levels[rng.integers(0, 1000, 10_000)]
        new[rng.random(10_000) < 0.1] = "NEW"
        changed = compare_tables(ref, pa.table({"x": new})).feature("x")
        assert changed.flagged and "NEW" in changed.new_levels
