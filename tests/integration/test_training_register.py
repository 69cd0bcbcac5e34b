"""training.train_and_register against a real MLflow server (fixture ``mlflow_tracking_uri``)."""

from __future__ import annotations

import json
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
