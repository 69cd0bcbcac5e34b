"""Builds the use cases with their real adapters from settings: used by the function entry points and the CLI.

Example:
    >>> service = build_scoring_service(Settings.from_env())   # doctest: +SKIP
"""

from __future__ import annotations

from shared.settings import Settings

__all__ = ["build_scoring_service"]


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
