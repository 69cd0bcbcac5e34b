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
    failed_container = f"failed-{uuid.uuid4().hex[:8]}"  # its own failure records: status counts them all
    settings["Values"].update({"SCOREHOOK_MODEL_URI": f"models:/{model}@champion",
                               "SCOREHOOK_LEDGER_TABLE": f"cli{uuid.uuid4().hex[:8]}",
                               "SCOREHOOK_FAILED_CONTAINER": failed_container,
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

    code, lines, out = _cli(path, "replay", f"incoming/{name}", "--json")
    assert code == 1 and lines[0]["status"] == "failed" and lines[0]["reason"] == "model_not_found", out
    code, lines, out = _cli(path, "trace", f"incoming/{name}", "--json")
    assert code == 0 and lines[0]["state"] == "failed_open", out
    failed = [e for e in lines[0]["events"] if e["kind"] == "failed"]
    assert failed and failed[-1]["details"]["reason"] == "model_not_found", out
    assert failed[-1]["details"]["location"].startswith(f"{failed_container}/"), out
    code, lines, out = _cli(path, "status", "--json")
    counts = lines[0]["files"]["counts"]
    assert (counts["failed_open"], counts["scored"]) == (1, 0), out

    train_and_register(mlflow_tracking_uri, model_name=model, rows=2000, alias="champion")
    code, lines, out = _cli(path, "replay", "--failed", "--json")
    assert code == 0 and [line["status"] for line in lines] == ["succeeded"], out
    code, lines, out = _cli(path, "trace", f"incoming/{name}", "--json")
    scored = next(e for e in lines[0]["events"] if e["kind"] == "scored")
    assert scored["details"]["rows_scored"] == 50 and lines[0]["state"] == "failed_resolved", out
    resolved = next(e for e in lines[0]["events"] if e["kind"] == "model_resolved")
    assert resolved["details"]["model"] == model
    counts = _cli(path, "status", "--json")[1][0]["files"]["counts"]
    assert (counts["failed_open"], counts["failed_resolved"]) == (0, 1)
