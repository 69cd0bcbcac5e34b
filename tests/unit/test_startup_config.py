"""The start-up check: settings and routes together, one error listing every problem."""

from __future__ import annotations

import json

import pytest

from shared import startup
from shared.errors import ConfigurationError
from shared.routes import parse_routes
from shared.startup import check_configuration


def _route(**overrides):
    return {"name": "churn", "container": "incoming", "model": "models:/churn@champion", **overrides}


def _problems(env):
    with pytest.raises(ConfigurationError) as info:
        check_configuration(env)
    return str(info.value), {p["setting"]: p for p in info.value.details["problems"]}


def test_good_settings_and_routes_are_returned():
    settings, routes = check_configuration({"SCOREHOOK_ROUTES": json.dumps([_route(), _route(name="b", prefix="b/")])})
    assert settings.routes and [r.name for r in routes] == ["churn", "b"]


def test_a_malformed_route_model_uri_names_the_route_and_the_uri():
    message, problems = _problems({"SCOREHOOK_ROUTES": json.dumps([_route(), _route(name="typo", model="models:/churn@")])})
    assert list(problems) == ["SCOREHOOK_ROUTES[typo].model"]
    assert problems["SCOREHOOK_ROUTES[typo].model"]["value"] == "models:/churn@"
    assert "SCOREHOOK_ROUTES[typo].model='models:/churn@': expected models:/NAME@ALIAS" in message


def test_bad_settings_and_bad_routes_are_listed_in_one_error():
    routes = [
        _route(name="a", model="mlflow:/churn@champion", output_format="xlsx", on_missing="skip"),
        _route(name="b", container="In", batch_rows=0, colour="red"),
        {"name": "c", "container": "incoming"},
        _route(name="d", model="blob://models/churn.onnx", key_columns="id"),
    ]
    message, problems = _problems({"SCOREHOOK_ROUTES": json.dumps(routes), "SCOREHOOK_DRIFT_ENABLED": "maybe",
                                   "SCOREHOOK_DRIFT_SCHEDULE": "*/5 * * * *"})  # fmt: skip
    assert set(problems) == {
        "SCOREHOOK_DRIFT_ENABLED", "SCOREHOOK_DRIFT_SCHEDULE",
        "SCOREHOOK_ROUTES[a].model", "SCOREHOOK_ROUTES[a].output_format", "SCOREHOOK_ROUTES[a].on_missing",
        "SCOREHOOK_ROUTES[b]", "SCOREHOOK_ROUTES[b].container", "SCOREHOOK_ROUTES[b].batch_rows",
        "SCOREHOOK_ROUTES[d].key_columns",
    }  # fmt: skip
    assert message.startswith("9 settings are invalid:")
    assert "SCOREHOOK_ROUTES[b]='colour': expected only the keys name, container, model" in message
    assert "SCOREHOOK_ROUTES[a].output_format='xlsx': expected one of csv" in message


def test_a_route_without_a_model_takes_the_model_setting_and_a_missing_container_is_reported():
    (route,) = check_configuration({"SCOREHOOK_ROUTES": json.dumps([{"name": "c", "container": "incoming"}])})[1]
    assert route.model == "models:/scorehook-sample@champion"
    with pytest.raises(ConfigurationError, match=r"SCOREHOOK_ROUTES\[x\]='container'"):
        parse_routes(json.dumps([{"name": "x", "model": "models:/m/1"}]))


def test_routes_that_are_not_json_or_a_missing_routes_file_are_configuration_errors(tmp_path):
    message, _ = _problems({"SCOREHOOK_ROUTES": "[{not json"})
    assert "expected JSON (not valid JSON" in message
    message, _ = _problems({"SCOREHOOK_ROUTES": f"@{tmp_path / 'missing.json'}"})
    assert "expected inline JSON or @FILE of a readable file" in message
    (tmp_path / "routes.json").write_text(json.dumps([_route()]))
    assert check_configuration({"SCOREHOOK_ROUTES": f"@{tmp_path / 'routes.json'}"})[1][0].name == "churn"


def test_duplicate_route_names_are_refused():
    with pytest.raises(ConfigurationError, match="expected unique route names"):
        parse_routes(json.dumps([_route(), _route(prefix="x/")]))


def test_importing_the_app_with_a_bad_setting_fails_with_the_whole_list():
    import subprocess
    import sys
    from pathlib import Path

    env = {"PATH": "/usr/bin:/bin", "SCOREHOOK_ALIAS_TTL_SECONDS": "abc", "SCOREHOOK_MODEL_URI": "models:/x@"}
    done = subprocess.run([sys.executable, "-c", "import function_app"], cwd=Path(__file__).resolve().parents[2],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode != 0
    assert "ConfigurationError: 2 settings are invalid:" in done.stderr
    assert "SCOREHOOK_ALIAS_TTL_SECONDS='abc': expected a number of seconds >= 0" in done.stderr
    assert "SCOREHOOK_MODEL_URI='models:/x@': expected models:/NAME@ALIAS" in done.stderr


def test_an_unresolved_key_vault_reference_is_refused_never_used_as_the_secret():
    reference = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/mlflow-webhook/)"
    message, problems = _problems({"SCOREHOOK_MLFLOW_WEBHOOK_SECRET": reference, "SCOREHOOK_ONNX_THREADS": "two"})
    assert set(problems) == {"SCOREHOOK_MLFLOW_WEBHOOK_SECRET", "SCOREHOOK_ONNX_THREADS"}
    assert "not resolved" in problems["SCOREHOOK_MLFLOW_WEBHOOK_SECRET"]["expected"] and "2 settings" in message


WORKSPACE_URI = ("azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/0000-11/resourceGroups/rg-ml"
                 "/providers/Microsoft.MachineLearningServices/workspaces/scorehook-ws")  # fmt: skip
AZURE = {"DataStorage__blobServiceUri": "https://acct1.blob.core.windows.net"}


def test_in_azure_models_uris_need_a_tracking_server():
    _, problems = _problems(AZURE)
    assert "MLFLOW_TRACKING_URI" in problems and "models:/" in problems["MLFLOW_TRACKING_URI"]["expected"]
    check_configuration({**AZURE, "MLFLOW_TRACKING_URI": "https://mlflow.example.com"})
    check_configuration({**AZURE, "SCOREHOOK_MODEL_URI": "blob://models/churn.onnx"})  # no registry needed
    _, problems = _problems({**AZURE, "MLFLOW_TRACKING_URI": "file:///home/site/mlruns"})
    assert "not shared by the instances" in problems["MLFLOW_TRACKING_URI"]["expected"]


def test_a_workspace_azureml_tracking_uri_is_accepted_with_the_plugin_installed():
    assert startup.azureml_plugin_installed()  # requirements.txt pins azureml-mlflow
    settings, _ = check_configuration({**AZURE, "MLFLOW_TRACKING_URI": WORKSPACE_URI})
    assert settings.mlflow_tracking_uri == WORKSPACE_URI
    check_configuration({"MLFLOW_TRACKING_URI": WORKSPACE_URI})


@pytest.mark.parametrize(
    "uri",
    ["azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/x",
     "azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s/resourceGroups/rg/workspaces/ws",
     "azureml:/scorehook-ws"],
)  # fmt: skip
def test_an_azureml_uri_not_of_a_workspace_is_refused_with_its_form(uri):
    _, problems = _problems({**AZURE, "MLFLOW_TRACKING_URI": uri})
    assert problems["MLFLOW_TRACKING_URI"]["value"] == uri
    assert "Microsoft.MachineLearningServices/workspaces/WS" in problems["MLFLOW_TRACKING_URI"]["expected"]


def test_without_the_plugin_an_azureml_uri_is_a_configuration_error_naming_it(monkeypatch):
    monkeypatch.setattr(startup, "azureml_plugin_installed", lambda: False)
    message, problems = _problems({**AZURE, "MLFLOW_TRACKING_URI": WORKSPACE_URI})
    assert "install the azureml-mlflow plugin" in problems["MLFLOW_TRACKING_URI"]["expected"]
    assert "MLFLOW_TRACKING_URI=" in message


def test_in_azure_streaming_needs_its_event_hubs_namespace_and_a_registry_for_a_models_stream_model():
    azure = {"DataStorage__blobServiceUri": "https://acct1.blob.core.windows.net",
             "SCOREHOOK_MODEL_URI": "blob://models/churn.onnx", "SCOREHOOK_STREAM_ENABLED": "true"}  # fmt: skip
    _, problems = _problems(azure)
    assert set(problems) == {"EventHubs__fullyQualifiedNamespace"}
    namespace = {"EventHubs__fullyQualifiedNamespace": "scorehook-ns.servicebus.windows.net"}
    check_configuration({**azure, **namespace})
    check_configuration({k: v for k, v in azure.items() if k != "DataStorage__blobServiceUri"})  # devhost: none needed
    _, problems = _problems({**azure, **namespace, "SCOREHOOK_STREAM_MODEL_URI": "models:/churn@champion"})
    assert set(problems) == {"MLFLOW_TRACKING_URI"}
