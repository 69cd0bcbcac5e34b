"""Builds the use cases with their real adapters from settings: used by the function entry points and the CLI.

Example:
    >>> service = build_scoring_service(Settings.from_env())   # doctest: +SKIP
"""

from __future__ import annotations

from shared.settings import Settings

__all__ = ["build_deployment_service", "build_scoring_service", "endpoint_rollout", "read_table"]


def build_scoring_service(settings: Settings) -> object:
    """The scoring use case on Azure Storage (blob, table), the MLflow registry and Event Grid."""
    from shared.adapters import AzureBlobStore, TableLedger
    from shared.adapters.mlflow_registry import MlflowRegistry
    from shared.adapters.publisher import publisher_from_settings
    from shared.models import ModelCache, ModelProvider
    from shared.scoring import ScoringService

    blobs = AzureBlobStore.from_settings(settings)
    models = ModelProvider(
        MlflowRegistry(settings.require("mlflow_tracking_uri")), blobs, ModelCache(settings.model_cache_size),
        ttl_seconds=settings.alias_ttl_seconds, threads=settings.onnx_threads,
    )  # fmt: skip
    service = ScoringService(
        blobs=blobs,
        ledger=TableLedger.from_settings(settings),
        models=models,
        publisher=publisher_from_settings(settings),
        settings=settings,
    )
    blobs.ensure_containers(settings.failed_container, *{route.output_container for route in service.routes})
    return service


def read_table(blobs: object, reference: str) -> object:
    """A small labelled table from ``blob://container/path.csv`` (or ``.parquet``), read whole."""
    import io

    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from shared.errors import ConfigurationError
    from shared.models import BLOB_SCHEME

    if not reference.startswith(BLOB_SCHEME):
        raise ConfigurationError(f"evaluation data {reference!r} must be blob://container/path.csv|.parquet")
    container, _, name = reference[len(BLOB_SCHEME) :].partition("/")
    data = io.BytesIO(blobs.read_bytes(container, name))  # type: ignore[attr-defined]
    return pq.read_table(data) if name.endswith((".parquet", ".pq")) else pacsv.read_csv(data)


def build_deployment_service(settings: Settings) -> object:
    """The deployment flow on the MLflow registry, the table ledger and Event Grid."""
    from shared.adapters import AzureBlobStore, TableLedger
    from shared.adapters.mlflow_registry import MlflowRegistry
    from shared.adapters.publisher import publisher_from_settings
    from shared.deployment import DeploymentPolicy, DeploymentService
    from shared.models import ModelCache, ModelProvider

    blobs = AzureBlobStore.from_settings(settings)
    registry = MlflowRegistry(settings.require("mlflow_tracking_uri"))
    policy = DeploymentPolicy(
        primary_metric=settings.primary_metric, margin=settings.promotion_margin,
        guard_metrics=settings.guard_metrics, require_approval=settings.require_approval,
        latency_budget_ms=settings.latency_budget_ms,
    )  # fmt: skip
    return DeploymentService(
        registry, ModelProvider(registry, blobs, ModelCache(settings.model_cache_size), ttl_seconds=0),
        TableLedger.from_settings(settings), publisher_from_settings(settings),
        lambda: read_table(blobs, settings.require("evaluation_data")), policy,
        rollout=endpoint_rollout(settings),
    )  # fmt: skip


def endpoint_rollout(settings: Settings) -> object:
    """The staged rollout on the configured Azure ML online endpoint, or ``None`` when none is configured."""
    if not settings.online_endpoint:
        return None
    from shared.errors import ConfigurationError

    parts = settings.require("azureml_workspace").strip("/").split("/")
    try:
        subscription, group, workspace = parts[1], parts[3], parts[7]
    except IndexError:
        raise ConfigurationError("SCOREHOOK_AZUREML_WORKSPACE must be the workspace's ARM id",
                                 setting="SCOREHOOK_AZUREML_WORKSPACE") from None  # fmt: skip

    def roll_out(name: str, version: str, champion: str | None) -> object:
        from azure.ai.ml import MLClient
        from azure.identity import DefaultAzureCredential

        from shared.rollout import AzureMLOnlineEndpoints, roll_out_version

        client = MLClient(DefaultAzureCredential(), subscription, group, workspace)
        return roll_out_version(
            AzureMLOnlineEndpoints(client), settings.online_endpoint or "", name, version, champion
        )

    return roll_out
