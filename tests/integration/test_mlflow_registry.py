"""The MLflow registry adapter against a real ``mlflow server``: aliases, versions, download, errors."""

from __future__ import annotations

import pytest

from shared.adapters.mlflow_registry import MlflowRegistry
from shared.errors import ModelNotFoundError, RegistryUnavailableError
from shared.models import load_model_dir

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registered(mlflow_tracking_uri):
    from training.train import train_and_register

    return train_and_register(mlflow_tracking_uri, model_name="registry-test", rows=3000, alias="champion")


def test_alias_and_version_resolve_to_the_same_concrete_version(mlflow_tracking_uri, registered):
    registry = MlflowRegistry(mlflow_tracking_uri)
    by_alias = registry.resolve("models:/registry-test@champion")
    by_version = registry.resolve(f"models:/registry-test/{registered['version']}")
    assert by_alias == by_version
    assert by_alias.version == str(registered["version"]) and by_alias.uri == registered["model_uri"]


def test_downloaded_version_loads_as_an_onnx_model_with_column_inputs(
    mlflow_tracking_uri, registered, tmp_path
):
    registry = MlflowRegistry(mlflow_tracking_uri)
    model = load_model_dir(
        registry.download(registry.resolve("models:/registry-test@champion"), str(tmp_path))
    )
    names = [i.name for i in model.inputs]
    assert "id" not in names and {"x01", "region"} <= set(names)
    assert {i.dtype for i in model.inputs} == {"float32", "object"}


@pytest.mark.parametrize(
    "reference",
    [
        "models:/registry-test@no-such-alias",
        "models:/no-such-model/1",
        "models:/registry-test/999",
        "runs:/abc/model",
    ],
)
def test_unknown_models_raise_model_not_found(mlflow_tracking_uri, registered, reference):
    with pytest.raises(ModelNotFoundError):
        MlflowRegistry(mlflow_tracking_uri).resolve(reference)


def test_an_unreachable_registry_is_transient(monkeypatch):
    from devhost.services import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(RegistryUnavailableError):
        MlflowRegistry(f"http://127.0.0.1:{free_port()}").resolve("models:/x@champion")


def test_aliases_and_tags_are_set_on_the_real_registry(mlflow_tracking_uri, registered):
    import mlflow

    registry = MlflowRegistry(mlflow_tracking_uri)
    version = str(registered["version"])
    assert registry.alias_version("registry-test", "previous") is None
    registry.set_alias("registry-test", "previous", version)
    assert registry.alias_version("registry-test", "previous") == version
    registry.set_tags("registry-test", version, {"scorehook.decision": "promote"})
    client = mlflow.MlflowClient(tracking_uri=mlflow_tracking_uri, registry_uri=mlflow_tracking_uri)
    assert client.get_model_version("registry-test", version).tags["scorehook.decision"] == "promote"


def test_the_drift_baseline_artifact_is_read_from_the_versions_run(mlflow_tracking_uri, registered):
    import json

    from shared.drift import BASELINE_ARTIFACT, Profile

    registry = MlflowRegistry(mlflow_tracking_uri)
    version = registry.resolve("models:/registry-test@champion")
    artifact = json.loads(registry.read_artifact(version, BASELINE_ARTIFACT) or b"{}")
    profile = Profile.from_json(artifact)
    assert {"x01", "region", "probability", "prediction"} <= set(profile.features)
    assert abs(sum(artifact["importance"].values()) - 1) < 1e-9
    assert registry.read_artifact(version, "baseline/no-such-file.json") is None
    assert registry.read_artifact(version, "nowhere/at/all.json") is None
