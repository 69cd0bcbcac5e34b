"""``scorehook drift compare`` as a user runs it: a subprocess, files on disk, no service; exit status
0 no drift, 1 drift, 2 error, 3 insufficient data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCOREHOOK_", "MLFLOW_", "DataStorage"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip


def _table(rows: int, seed: int, shift: float = 0.0, prefix: str = "r") -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"id": [f"{prefix}{i}" for i in range(rows)], "x1": rng.normal(shift, 1, rows),
                     "x2": rng.normal(size=rows), "color": rng.choice(["red", "green", "blue"], rows)})  # fmt: skip


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {name: tmp_path / f"{name}.{ext}" for name, ext in
             (("ref", "csv"), ("same", "parquet"), ("moved", "parquet"), ("tiny", "csv"))}  # fmt: skip
    pacsv.write_csv(_table(3000, 1, prefix="b"), paths["ref"])
    pq.write_table(_table(1000, 2), paths["same"])
    pq.write_table(_table(1000, 3, shift=1.0), paths["moved"])
    pacsv.write_csv(_table(20, 4), paths["tiny"])
    return paths


def test_drift_is_a_table_and_exit_1_and_no_drift_exit_0(files: dict[str, Path], tmp_path: Path) -> None:
    moved = _cli("drift", "compare", str(files["ref"]), str(files["moved"]), cwd=tmp_path)
    assert moved.returncode == 1, moved.stderr
    lines = moved.stdout.splitlines()
    assert (
        lines[0].split()[:3] == ["feature", "kind", "role"] and "distance" in lines[0] and "bound" in lines[0]
    )
    x1 = next(line for line in lines if line.startswith("x1 "))
    assert "DRIFT" in x1 and "normalized_wasserstein" in x1
    assert "ok" in next(line for line in lines if line.startswith("x2 ")).split()
    assert any(line.startswith("dataset: DRIFT") for line in lines) and "flagged: x1" in moved.stdout

    same = _cli("drift", "compare", str(files["ref"]), str(files["same"]), cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    assert "dataset: NO_DRIFT" in same.stdout and "flagged: none" in same.stdout


def test_json_is_the_report_and_flags_override_the_policy(files: dict[str, Path], tmp_path: Path) -> None:
    result = _cli("drift", "compare", str(files["ref"]), str(files["moved"]), "--json",
                  "--numeric-threshold", "2.0", "--categorical", "color", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr  # a 1-sd shift is under a threshold of 2
    report = json.loads(result.stdout)
    assert report["format"] == "scorehook.drift-report/v1" and report["decision"] == "no_drift"
    assert report["policy"]["numeric_threshold"] == 2.0 and report["policy"]["drift_share"] == 0.2
    x1 = next(f for f in report["features"] if f["name"] == "x1")
    assert {"name", "flagged", "value", "noise_bound", "reasons"} <= set(x1) and x1["flagged"] is False


def test_errors_exit_2_and_too_few_rows_exit_3(files: dict[str, Path], tmp_path: Path) -> None:
    missing = _cli("drift", "compare", str(files["ref"]), str(tmp_path / "nope.csv"), "--json", cwd=tmp_path)
    assert missing.returncode == 2 and "blob_not_found" in missing.stderr
    assert json.loads(missing.stdout)["error"]["reason"] == "blob_not_found"
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    assert _cli("drift", "compare", str(files["ref"]), str(other), cwd=tmp_path).returncode == 2
    no_settings = _cli("--settings", str(tmp_path / "none.json"), "drift", "compare", str(files["ref"]),
                       str(files["same"]), cwd=tmp_path)  # fmt: skip
    assert no_settings.returncode == 2 and "does not exist" in no_settings.stderr
    bad_alpha = _cli("drift", "compare", str(files["ref"]), str(files["same"]), "--alpha", "2", cwd=tmp_path)
    assert bad_alpha.returncode == 2 and "SCOREHOOK_DRIFT_ALPHA" in bad_alpha.stderr
    tiny = _cli("drift", "compare", str(files["ref"]), str(files["tiny"]), cwd=tmp_path)
    assert tiny.returncode == 3 and "dataset: INSUFFICIENT_DATA" in tiny.stdout


def test_a_baseline_artifact_and_a_model_file(
    files: dict[str, Path], tmp_path: Path, tiny_onnx: Path
) -> None:
    from shared.drift.monitor import baseline_from_reference
    from shared.models import OnnxModel

    artifact = tmp_path / "drift-profile.json"
    artifact.write_text(
        json.dumps(baseline_from_reference(_table(3000, 1), OnnxModel.from_file(str(tiny_onnx))))
    )
    result = _cli("drift", "compare", str(artifact), str(files["moved"]), "--json", cwd=tmp_path)
    names = [f["name"] for f in json.loads(result.stdout)["features"]]
    assert result.returncode == 1 and names[-1] == "prediction" and "probability" in names
    with_model = _cli("drift", "compare", str(files["ref"]), str(files["same"]), "--model", str(tiny_onnx),
                      "--json", cwd=tmp_path)  # fmt: skip
    assert with_model.returncode == 0, with_model.stderr
    assert "prediction" in [f["name"] for f in json.loads(with_model.stdout)["features"]]


def test_the_policy_is_the_apps_settings(files: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text(
        json.dumps({"Values": {"SCOREHOOK_DRIFT_NUMERIC_THRESHOLD": "3"}})
    )
    result = _cli("drift", "compare", str(files["ref"]), str(files["moved"]), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["policy"]["numeric_threshold"] == 3.0
