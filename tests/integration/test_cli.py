"""``scorehook`` status / trace / replay against real Azurite and MLflow, as an ops person runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _cli(settings: Path, *args: str) -> tuple[int, list[dict], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCOREHOOK_", "MLFLOW_", "DataStorage"))}
    result = subprocess.run([sys.executable, "-m", "cli", "--settings", str(settings), *args], cwd=ROOT,
                            capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.returncode, lines, result.stdout + result.stderr


def test_a_failed_file_is_traced_and_replayed_once_its_model_exists(
    azurite, mlflow_tracking_uri, tmp_path, blob_service
):
    from devhost.runtime import local_settings
    from training.train import train_and_register

    model = f"cli-{uuid.uuid4().hex[:6]}"
    settings = local_settings(azurite, mlflow_tracking_uri, 1)
    settings["Values"].update({"SCOREHOOK_MODEL_URI": f"models:/{model}@champion",
                               "SCOREHOOK_LEDGER_TABLE": f"cli{uuid.uuid4().hex[:8]}",
                               "SCOREHOOK_EVENTS_TOPIC_ENDPOINT": ""})  # fmt: skip
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps(settings))
    if not blob_service.get_container_client("incoming").exists():
        blob_service.create_container("incoming")
    name = f"cli/{uuid.uuid4().hex}.csv"
    from training.data import generate

    table = generate(50, seed=2, include_label=False)
    import io

    import pyarrow.csv as pacsv

    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    blob_service.get_blob_client("incoming", name).upload_blob(sink.getvalue())

    code, lines, out = _cli(path, "replay", f"incoming/{name}")
    assert code == 1 and lines[0]["status"] == "failed" and lines[0]["reason"] == "model_not_found", out
    code, lines, out = _cli(path, "trace", f"incoming/{name}")
    assert code == 0, out
    assert any(line.get("status") == "failed" for line in lines)
    assert any(line.get("reason") == "model_not_found" and "failure_record" in line for line in lines)
    code, lines, out = _cli(path, "status")
    assert lines[0]["ledger"] == {"failed": 1}, out

    train_and_register(mlflow_tracking_uri, model_name=model, rows=2000, alias="champion")
    code, lines, out = _cli(path, "replay", "--failed")
    assert code == 0 and [line["status"] for line in lines] == ["succeeded"], out
    code, lines, out = _cli(path, "trace", f"incoming/{name}")
    lineage = next(line["lineage"] for line in lines if "lineage" in line)
    assert lineage["rows_scored"] == "50" and lineage["model_name"] == model
    assert _cli(path, "status")[1][0]["ledger"] == {"succeeded": 1}
