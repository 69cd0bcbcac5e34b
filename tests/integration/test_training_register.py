"""training.train_and_register against a real MLflow server (fixture ``mlflow_tracking_uri``)."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registered(mlflow_tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from training.train import train_and_register

    name = f"scorehook-test-{uuid.uuid4().hex[:8]}"
    out = tmp_path_factory.mktemp("trained")
    return train_and_register(
        mlflow_tracking_uri, model_name=name, rows=5000, seed=3, alias="champion", out_dir=out
    )


@pytest.fixture(scope="module")
def client(mlflow_tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(mlflow_tracking_uri, registry_uri=mlflow_tracking_uri)


@pytest.fixture
def uses_server(mlflow_tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's fluent API (``models:/`` and ``runs:/`` URIs) resolves against the test server."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_tracking_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", mlflow_tracking_uri)


def test_uris_restored(registered: dict) -> None:
    import os

    import mlflow

    assert os.environ.get("MLFLOW_REGISTRY_URI") is None
    assert not mlflow.get_tracking_uri().startswith("http")


def test_version_registered_with_alias_and_tags(registered: dict, client) -> None:
    version = client.get_model_version(registered["name"], registered["version"])
    assert version.run_id == registered["run_id"]
    assert registered["model_uri"] == f"models:/{registered['name']}/{registered['version']}"
    assert client.get_model_version_by_alias(registered["name"], "champion").version == registered["version"]
    assert version.tags["scorehook.kind"] == "linear"
    assert version.tags["scorehook.training_rows"] == "4000"


def test_metrics_and_params_logged(registered: dict, client) -> None:
    run = client.get_run(registered["run_id"])
    for key in ("auc", "f1", "accuracy", "onnx_max_abs_diff", "onnx_label_agreement"):
        assert run.data.metrics[key] == pytest.approx(registered["metrics"][key])
    assert run.data.metrics["auc"] >= 0.75
    assert run.data.params["kind"] == "linear" and run.data.params["rows"] == "5000"


def test_model_has_onnx_flavor_signature_and_predicts(registered: dict, uses_server: None, tmp_path) -> None:
    import mlflow
    from mlflow.models import Model

    local = mlflow.artifacts.download_artifacts(artifact_uri=registered["model_uri"], dst_path=str(tmp_path))
    meta = Model.load(local)
    assert "onnx" in meta.flavors and "python_function" in meta.flavors
    assert meta.signature is not None
    assert [s.name for s in meta.signature.inputs.inputs][:2] == ["x01", "x02"]
    assert "id" not in meta.signature.inputs.input_names()
    example = meta.load_input_example(local)
    predicted = mlflow.pyfunc.load_model(registered["model_uri"]).predict(example)
    assert predicted["label"].shape == (5,) and predicted["probabilities"].shape == (5, 2)


def test_sklearn_model_and_baseline_artifacts(registered: dict, uses_server: None) -> None:
    import mlflow

    run_uri = f"runs:/{registered['run_id']}"
    profile = mlflow.artifacts.load_dict(f"{run_uri}/baseline/profile.json")
    assert profile["rows"] == 4000
    assert sum(profile["numeric"]["x01"]["counts"]) == profile["rows"]
    sk = mlflow.sklearn.load_model(f"{run_uri}/sklearn-model")
    assert sk.predict_proba(_frame(5)).shape == (5, 2)
    assert json.loads(Path(registered["profile_path"]).read_text()) == profile
    assert Path(registered["onnx_path"]).stat().st_size > 1000


def _frame(rows: int):
    from training.data import FEATURES, generate

    return generate(rows, seed=11).select(list(FEATURES)).to_pandas()


def test_drift_profile_artifact_and_file(registered: dict, uses_server: None) -> None:
    import mlflow

    from shared.drift.profile import Profile

    logged = mlflow.artifacts.load_dict(f"runs:/{registered['run_id']}/baseline/drift-profile.json")
    assert json.loads(Path(registered["drift_profile_path"]).read_text()) == logged
    profile = Profile.from_json(logged)
    assert profile.rows == 4000 and {"probability", "prediction"} <= set(profile.features)
    assert sum(logged["importance"].values()) == pytest.approx(1.0)


# --- python -m training.retrain against Azurite + MLflow ---


def _upload_csv(blob_service, container: str, name: str, table) -> str:
    import io

    import pyarrow.csv as pacsv

    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    blob = blob_service.get_blob_client(container, name)
    blob.upload_blob(sink.getvalue(), overwrite=True)
    return blob.url


def _retrain(connection_string: str, *args: str) -> tuple[int, dict]:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["SCOREHOOK_TEST_STORAGE"] = connection_string
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.retrain",
            "--connection-string-env",
            "SCOREHOOK_TEST_STORAGE",
            *args,
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, (done.stdout, done.stderr[-3000:])
    return done.returncode, json.loads(lines[0])


def _held_out(*tables) -> int:
    from shared.deployment import held_out_mask

    return sum(int(held_out_mask(t).sum()) for t in tables)


def test_retrain_registers_a_tagged_version(
    azurite, blob_service, unique: str, mlflow_tracking_uri: str, client, uses_server: None
) -> None:
    import mlflow

    from training.data import generate

    container = f"retrain-{unique}"
    blob_service.create_container(container)
    urls = [
        _upload_csv(blob_service, container, "2026/01/a.csv", generate(1500, seed=21)),
        _upload_csv(blob_service, container, "2026/01/b.csv", generate(1500, seed=22, drift=1.0)),
    ]
    assert urls[0].startswith("http://127.0.0.1:")  # Azurite path style
    name = f"scorehook-retrain-{unique}"
    args = ["--tracking-uri", mlflow_tracking_uri, "--name", name, "--decision-id", f"{name}/1/w1"]
    args += ["--reason", "drift", "--base-version", "1", "--tag", "team=ml"]
    code, result = _retrain(azurite.connection_string, *args, *(a for u in urls for a in ("--input", u)))

    assert code == 0 and result["status"] == "succeeded", result
    version = client.get_model_version(name, result["version"])
    assert version.run_id == result["run_id"]
    assert version.tags["scorehook.retrain.decision"] == f"{name}/1/w1"
    assert version.tags["scorehook.retrain.reason"] == "drift"
    assert version.tags["scorehook.retrain.base_version"] == "1"
    assert version.tags["scorehook.retrain.inputs"] == "2"
    held = _held_out(generate(1500, seed=21), generate(1500, seed=22, drift=1.0))  # left for the deployment flow
    assert version.tags["scorehook.retrain.rows"] == str(3000 - held)
    assert version.tags["scorehook.retrain.held_out"] == f"crc32(id) % 5 == 0 ({held} rows)"
    assert version.tags["scorehook.training_rows"] == str(3000 - held - math.ceil((3000 - held) * 0.2))
    assert version.tags["team"] == "ml" and version.tags["scorehook.kind"] == "linear"
    profile = mlflow.artifacts.load_dict(f"runs:/{result['run_id']}/baseline/drift-profile.json")
    assert profile["rows"] == 3000 - held - math.ceil((3000 - held) * 0.2) and "prediction" in profile["features"]
    assert result["metrics"]["auc"] >= 0.7


def test_retrain_without_labels_fails_with_exit_2(
    azurite, blob_service, unique: str, mlflow_tracking_uri: str, client
) -> None:
    from training.data import generate

    container = f"retrain-{unique}"
    blob_service.create_container(container)
    url = _upload_csv(blob_service, container, "scored.csv", generate(500, seed=23, include_label=False))
    name = f"scorehook-retrain-{unique}"
    code, result = _retrain(
        azurite.connection_string, "--tracking-uri", mlflow_tracking_uri, "--name", name, "--input", url
    )
    assert code == 2
    assert result["status"] == "failed" and result["reason"] == "not_enough_labels"
    assert result["labelled_rows"] == 0 and result["inputs"] == 1
    assert client.search_model_versions(f"name = '{name}'") == []


def test_the_pipeline_yaml_command_registers_from_a_mounted_folder(
    tmp_path: Path, unique: str, mlflow_tracking_uri: str, client
) -> None:
    """The Azure ML step's command (``infra/ml/retrain-pipeline.yml`` loaded by azure-ai-ml, placeholders
    substituted as Azure ML does, run by a shell with ``MLFLOW_TRACKING_URI`` set) on a local folder."""
    import os
    import re
    import subprocess
    import sys

    from azure.ai.ml import load_job

    from shared.adapters.azureml_retrain import DEFAULT_PIPELINE_YAML, recent_data
    from training.data import write_file

    root = tmp_path / "INPUT_recent_data"
    write_file(root / "2026-01" / "a b.csv", 1500, seed=41, include_label=True)
    write_file(root / "2026-02" / "b.parquet", 1500, fmt="parquet", seed=42, drift=1.0, include_label=True)
    write_file(root / "2026-02" / "old.csv", 1000, seed=43, include_label=True)  # not listed: not read
    report = tmp_path / "INPUT_drift_report" / "report.json"
    report.parent.mkdir()
    report.write_text("{}")
    acct = "https://acct.blob.core.windows.net/incoming"
    _, files = recent_data([f"{acct}/2026-01/a b.csv", f"{acct}/2026-02/b.parquet"])
    name = f"scorehook-retrain-{unique}"
    values = {
        "drift_report": str(report),
        "recent_data": str(root),
        "recent_files": files,
        "model_name": name,
        "base_version": "1",
        "decision_id": f"{name}/1/w1",
        "reason": "x01%3A%20psi%200.4",
    }
    command = load_job(DEFAULT_PIPELINE_YAML).jobs["train"].command
    command = re.sub(r"\$\{\{\s*(?:parent\.)?inputs\.(\w+)\s*\}\}", lambda m: values[m.group(1)], command)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # "python" = this one
    done = subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, (done.stdout, done.stderr[-3000:])
    result = json.loads(lines[0])

    assert done.returncode == 0 and result["status"] == "succeeded", result
    version = client.get_model_version(name, result["version"])
    assert version.tags["scorehook.retrain.decision"] == f"{name}/1/w1"
    assert version.tags["scorehook.retrain.reason"] == "x01: psi 0.4"
    assert version.tags["scorehook.retrain.base_version"] == "1"
    assert version.tags["scorehook.retrain.report"] == "report.json"
    assert version.tags["scorehook.retrain.inputs"] == "2"
    held = int(version.tags["scorehook.retrain.held_out"].rsplit("(", 1)[1].split()[0])
    assert 0 < held < 1000 and version.tags["scorehook.retrain.rows"] == str(3000 - held)
