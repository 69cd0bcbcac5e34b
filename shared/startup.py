"""The configuration check run when the app (``function_app``) or devhost starts.

It builds the settings and the routes the way the functions will, and raises ONE
:class:`~shared.errors.ConfigurationError` listing every bad setting and every bad route (value, expected
form; secrets masked), so a mistyped flag, number, model URI or NCRONTAB schedule stops the app at start
instead of failing the first file, or a timer, later.

Example:
    >>> settings, routes = check_configuration({"SCOREHOOK_INPUT_CONTAINER": "drop"})
    >>> [(r.name, r.container, r.model) for r in routes]
    [('default', 'drop', 'models:/scorehook-sample@champion')]
    >>> check_configuration({"SCOREHOOK_ONNX_THREADS": "two",
    ...                      "SCOREHOOK_ROUTES": '[{"name": "churn", "container": "incoming", "model": "models:/churn@"}]'})
    Traceback (most recent call last):
    ...
    shared.errors.ConfigurationError: 2 settings are invalid:
      SCOREHOOK_ONNX_THREADS='two': expected a whole number >= 1
      SCOREHOOK_ROUTES[churn].model='models:/churn@': expected models:/NAME@ALIAS, models:/NAME/VERSION or blob://CONTAINER/PATH.onnx
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from shared.errors import ConfigurationError
from shared.routes import Route, load_routes
from shared.settings import SETTING_NAMES, Settings, configuration_error

__all__ = ["azureml_plugin_installed", "check_configuration"]


def check_configuration(env: Mapping[str, str] | None = None) -> tuple[Settings, tuple[Route, ...]]:
    """``(settings, routes)`` from ``env`` (default: ``os.environ``), or one error listing every problem."""
    env = os.environ if env is None else env
    problems: list[dict[str, Any]] = []
    try:
        settings = Settings.from_env(env)
    except ConfigurationError as exc:
        problems.extend(exc.details.get("problems") or [])
        # the routes are still checked (against the defaults), so one start shows every problem
        routes_text = env.get("SCOREHOOK_ROUTES") or None
        settings_for_routes = Settings.from_env({}, routes=routes_text) if routes_text else None
    else:
        settings_for_routes = settings
    routes: tuple[Route, ...] = ()
    if settings_for_routes is not None:
        try:
            routes = load_routes(settings_for_routes)
        except ConfigurationError as exc:
            problems.extend(exc.details.get("problems") or [])
    problems.extend(_unresolved_references(env))
    if settings_for_routes is not None:
        problems.extend(_registry_problems(settings_for_routes, routes))
        problems.extend(_batch_problems(settings_for_routes, routes))
        problems.extend(_stream_problems(settings_for_routes, env))
    if problems:
        raise configuration_error(problems, "settings")
    return settings, routes


_KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("


def _unresolved_references(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """A Key Vault reference the platform could not resolve reaches the app as its literal text: never a
    secret (an HMAC key of ``@Microsoft.KeyVault(...)`` would be guessable)."""
    return [
        {"setting": name, "value": env[name][:120],
         "expected": "expected the secret's value: this Key Vault reference was not resolved (grant the app's "
                     "identity 'Key Vault Secrets User' on the vault and check the reference)"}
        for name in SETTING_NAMES
        if str(env.get(name) or "").lstrip().startswith(_KEY_VAULT_REFERENCE)
    ]


# what the azureml-mlflow plugin parses (a workspace's MLflow tracking URI, as the Azure ML studio shows it)
_AZUREML_TRACKING_URI = re.compile(
    r"azureml://[A-Za-z0-9.-]+/mlflow/v[12]\.0/subscriptions/[^/?#]+/resourceGroups/[^/?#]+"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/[^/?#]+/?(\?.*)?"
)
_AZUREML_URI_FORM = ("azureml://REGION.api.azureml.ms/mlflow/v1.0/subscriptions/SUB/resourceGroups/RG/providers/"
                     "Microsoft.MachineLearningServices/workspaces/WS")  # fmt: skip


def azureml_plugin_installed() -> bool:
    """Whether MLflow can open ``azureml://`` URIs: the azureml-mlflow plugin registers its tracking and
    registry stores as entry points (requirements.txt pins it).

    Example:
        >>> azureml_plugin_installed()  # doctest: +SKIP
        True
    """
    from importlib.metadata import entry_points

    groups = ("mlflow.tracking_store", "mlflow.model_registry_store")
    return all(any(ep.name == "azureml" for ep in entry_points(group=group)) for group in groups)


def _registry_problems(settings: Settings, routes: tuple[Route, ...]) -> list[dict[str, Any]]:
    """``models:/`` URIs need a tracking server the app can reach: required in Azure (identity-based
    storage), there an http(s) URL or a workspace's ``azureml://`` URI; ``azureml://`` only in its
    workspace form and with its plugin installed."""
    uri = settings.mlflow_tracking_uri or ""
    uses_registry = any(r.model.startswith("models:/") and r.engine == "local" for r in routes) or any(
        (uri or "").startswith("models:/") for uri in (settings.model_uri, settings.stream_model_uri))  # fmt: skip
    if uri.startswith("azureml:"):
        if not _AZUREML_TRACKING_URI.fullmatch(uri):
            return [{"setting": "MLFLOW_TRACKING_URI", "value": uri,
                     "expected": f"expected a workspace's tracking URI, {_AZUREML_URI_FORM}"}]  # fmt: skip
        if not azureml_plugin_installed():
            return [{"setting": "MLFLOW_TRACKING_URI", "value": uri,
                     "expected": "expected an http(s) URL of an MLflow server, or install the azureml-mlflow "
                                 "plugin (requirements.txt) that azureml:// URIs need"}]  # fmt: skip
        return []
    if uses_registry and not uri and settings.data_blob_service_uri:
        return [{"setting": "MLFLOW_TRACKING_URI", "value": None,
                 "expected": "expected the http(s) URL of the MLflow server that holds the models:/ URIs "
                             "the routes name, or an Azure ML workspace's azureml:// tracking URI"}]  # fmt: skip
    if uri and settings.data_blob_service_uri and not uri.startswith(("http://", "https://")):
        return [{"setting": "MLFLOW_TRACKING_URI", "value": uri,
                 "expected": "expected the http(s) URL of an MLflow server or an Azure ML workspace's "
                             "azureml:// tracking URI (a local store is not shared by the instances)"}]  # fmt: skip
    return []


def _batch_problems(settings: Settings, routes: tuple[Route, ...]) -> list[dict[str, Any]]:
    """Routes with ``engine: azureml-batch`` need the workspace of their endpoints, and its name among the
    allowed workspaces (its run events say how the jobs ended)."""
    if not any(r.engine == "azureml-batch" for r in routes):
        return []
    problems = []
    if not settings.azureml_workspace:
        problems.append({"setting": "SCOREHOOK_AZUREML_WORKSPACE", "value": None,
                         "expected": "expected the ARM id of the Azure ML workspace of the batch endpoints that "
                                     "routes with engine azureml-batch name"})  # fmt: skip
    if not settings.allowed_workspaces:
        problems.append({"setting": "SCOREHOOK_ALLOWED_WORKSPACES", "value": None,
                         "expected": "expected the batch endpoints' workspace: only its run events tell how "
                                     "the batch jobs ended"})  # fmt: skip
    return problems


def _stream_problems(settings: Settings, env: Mapping[str, str]) -> list[dict[str, Any]]:
    """Streaming in Azure (identity-based storage) needs the Event Hubs namespace its bindings connect to
    (devhost plays the hubs over Azurite and needs none)."""
    if settings.stream_enabled and settings.data_blob_service_uri and not (
        settings.event_hubs_namespace or env.get("EventHubs")
    ):
        return [{"setting": "EventHubs__fullyQualifiedNamespace", "value": None,
                 "expected": "expected the Event Hubs namespace (NAME.servicebus.windows.net) when "
                             "SCOREHOOK_STREAM_ENABLED is true"}]  # fmt: skip
    return []
