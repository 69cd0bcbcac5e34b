"""``azureml://`` tracking URIs: MLflow resolves them to the azureml-mlflow plugin's stores (requirements.txt
pins the plugin). Offline: the stores are built without a call to Azure (only a request fetches a token)."""

from __future__ import annotations

import socket

import pytest
from mlflow.store.tracking.rest_store import RestStore
from mlflow.tracking._model_registry.utils import _get_store as registry_store
from mlflow.tracking._tracking_service.utils import _get_store as tracking_store

from shared.adapters.mlflow_registry import MlflowRegistry
from shared.startup import azureml_plugin_installed, check_configuration

WORKSPACE = "/subscriptions/0000-11/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/ws1"
URI = f"azureml://westeurope.api.azureml.ms/mlflow/v1.0{WORKSPACE}"


@pytest.fixture
def offline(monkeypatch):
    """No name lookups (every Azure call would need one): the host names asked for are recorded."""
    monkeypatch.setenv("AZUREML_CURRENT_CLOUD", "AzureCloud")  # else the plugin fetches ARM's list of clouds
    lookups: list[str] = []

    def refuse(host, *args, **kwargs):
        lookups.append(host)
        raise OSError(f"offline test: no lookup of {host}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return lookups


def test_the_plugin_registers_the_azureml_tracking_and_registry_stores():
    assert azureml_plugin_installed()


def test_an_azureml_uri_resolves_to_the_plugins_stores_of_its_workspace(offline):
    store, registry = tracking_store(URI), registry_store(URI)
    assert type(store).__module__.startswith("azureml.mlflow.") and isinstance(store, RestStore)
    assert type(registry).__name__ == "AzureMLflowModelRegistry"
    context = store.service_context
    assert (context.subscription_id, context.resource_group_name, context.workspace_name) == ("0000-11", "rg-ml", "ws1")
    assert context.host_url.startswith("https://westeurope.api.azureml.ms")
    assert offline == []


def test_the_apps_registry_client_opens_an_azureml_uri_with_the_plugin(offline):
    settings, _ = check_configuration({"MLFLOW_TRACKING_URI": URI,
                                       "DataStorage__blobServiceUri": "https://acct1.blob.core.windows.net"})  # fmt: skip
    client = MlflowRegistry.from_settings(settings).client
    assert type(client._tracking_client.store).__name__ == "AzureMLRestStore"
    assert type(client._get_registry_client().store).__name__ == "AzureMLflowModelRegistry"
    assert offline == []
