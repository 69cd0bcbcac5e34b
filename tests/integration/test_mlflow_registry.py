"""The MLflow registry adapter against a real ``mlflow server``: aliases, versions, download, errors."""

from __future__ import annotations

import pytest

from shared.adapters.mlflow_registry import MlflowRegistry
from shared.errors import ModelNotFoundError, RegistryUnavailableError
from shared.models import load_model_dir
from shared.settings import Settings

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
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_tracking_uri, registry_uri=mlflow_tracking_uri)
    created = client.get_model_version("registry-test", by_alias.version).creation_timestamp
    assert by_alias.identity == str(created)  # the registry's identity of the version: its creation time


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


def test_an_unreachable_registry_is_transient_within_seconds():
    import time

    from devhost.services import free_port

    registry = MlflowRegistry.from_settings(
        Settings.from_env({"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"})
    )
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError):
        registry.resolve("models:/x@champion")
    assert time.monotonic() - started < 10


def test_a_registry_that_accepts_but_never_answers_times_out(monkeypatch):
    import socket
    import time

    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")  # what another MLflow user set: not ours to use
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        registry = MlflowRegistry(
            f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_seconds=1, max_retries=1
        )
        started = time.monotonic()
        with pytest.raises(RegistryUnavailableError):
            registry.resolve("models:/x@champion")
        elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 6  # two attempts of one second each, nothing like 300 s
    # outside the registry's calls MLflow's own settings are untouched
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 300 and MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 7


def test_a_registry_refuses_retry_counts_mlflow_would_reject():
    from shared.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        MlflowRegistry("http://127.0.0.1:1", max_retries=11)
    with pytest.raises(ConfigurationError):
        MlflowRegistry("http://127.0.0.1:1", timeout_seconds=0)


def test_a_stopped_mlflow_server_fails_fast_and_the_last_alias_version_keeps_scoring(tmp_path):
    """A real server, stopped: a resolve with no earlier answer fails in seconds (not MLflow's ~4 minutes of
    retries); a provider that resolved the alias before keeps its version, logged as stale."""
    import time

    import mlflow

    from devhost.services import MlflowServer
    from shared.logs import capture_logs
    from shared.models import ModelCache, ModelProvider
    from shared.testing import FakeBlobStore

    server = MlflowServer(data_dir=tmp_path / "mlflow").start()
    try:
        client = mlflow.MlflowClient(tracking_uri=server.tracking_uri, registry_uri=server.tracking_uri)
        client.create_registered_model("stoppable")
        # a source resolving never reads
        mv = client.create_model_version("stoppable", source="s3://scorehook-test/stoppable")
        client.set_registered_model_alias("stoppable", "champion", mv.version)
        settings = Settings.from_env({"MLFLOW_TRACKING_URI": server.tracking_uri})
        now = [0.0]
        provider = ModelProvider(
            MlflowRegistry.from_settings(settings),
            FakeBlobStore(),
            ModelCache(),
            ttl_seconds=30,
            clock=lambda: now[0],
        )
        assert provider.resolve("models:/stoppable@champion").version == mv.version
    finally:
        server.stop()

    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError):
        MlflowRegistry.from_settings(settings).resolve("models:/stoppable@champion")
    assert time.monotonic() - started < 10

    now[0] = 31
    started = time.monotonic()
    with capture_logs() as logs:
        assert provider.resolve("models:/stoppable@champion").version == mv.version
    assert time.monotonic() - started < 10
    stale = [r for r in logs if r["message"] == "alias resolved from a stale cache"]
    assert stale and stale[0]["model"] == "stoppable" and stale[0]["age_seconds"] == 31
    assert "unavailable" in stale[0]["error"]


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
