"""Builds the use cases with their real adapters from settings: used by the function entry points and the CLI.

Example:
    >>> service = build_scoring_service(Settings.from_env())   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from shared.settings import Settings

__all__ = [
    "build_deployment_service",
    "build_drift_monitor",
    "build_scoring_service",
    "drift_window_rows",
    "endpoint_rollout",
    "host_function_timeout",
    "read_table",
    "retrainer_from_settings",
]


def host_function_timeout(host_json: Path | None = None) -> float | None:
    """The host's ``functionTimeout`` (host.json, ``hh:mm:ss``, or its app-setting override
    ``AzureFunctionsJobHost__functionTimeout``) in seconds; ``None`` when unset or ``-1``. No lease is renewed
    past it: the host abandons the invocation then, and a redelivery takes the file over.

    Example:
        >>> host_function_timeout()
        600.0
    """
    path = host_json or Path(__file__).resolve().parent.parent / "host.json"
    value = os.environ.get("AzureFunctionsJobHost__functionTimeout")
    if value is None:
        try:
            value = json.loads(path.read_text()).get("functionTimeout")
        except (OSError, ValueError):
            return None
    if not isinstance(value, str) or value.strip() in ("", "-1"):
        return None
    days, _, clock = value.strip().rpartition(".")
    try:
        parts = [float(p) for p in clock.split(":")]
    except ValueError:
        return None
    if len(parts) != 3:
        return None
    return (float(days) if days else 0.0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def build_scoring_service(settings: Settings) -> object:
    """The scoring use case on Azure Storage (blob, table), the MLflow registry and Event Grid."""
    from shared.adapters import AzureBlobStore, TableLedger
    from shared.adapters.mlflow_registry import MlflowRegistry
    from shared.adapters.publisher import publisher_from_settings
    from shared.models import GenerationMarker, ModelCache, ModelProvider
    from shared.scoring import ScoringService

    blobs = AzureBlobStore.from_settings(settings)
    models = ModelProvider(
        MlflowRegistry.from_settings(settings), blobs, ModelCache(settings.model_cache_size),
        ttl_seconds=settings.alias_ttl_seconds, threads=settings.onnx_threads,
        marker=GenerationMarker(blobs, settings.model_marker_container), marker_seconds=settings.model_marker_seconds,
    )  # fmt: skip
    ledger, publisher = TableLedger.from_settings(settings), publisher_from_settings(settings)
    drift = (
        build_drift_monitor(settings, blobs=blobs, models=models, ledger=ledger, publisher=publisher)
        if settings.drift_enabled
        else None
    )
    service = ScoringService(
        blobs=blobs,
        ledger=ledger,
        models=models,
        publisher=publisher,
        settings=settings,
        drift=drift,  # type: ignore[arg-type]
        timeout_seconds=host_function_timeout(),
        batch=_batch_scorer(settings),
        collector=_collector(settings, blobs),
        parts=_parts_queue(settings),
    )
    containers = {route.output_container for route in service.routes} | (
        {settings.drift_container} if drift else set()
    )
    blobs.ensure_containers(settings.failed_container, *containers)
    return service


def _collector(settings: Settings, blobs: Any) -> Any:
    """The sender of committed outputs to the hubs routes name (``eventhub_output``), else None."""
    from shared.routes import load_routes

    hubs = sorted({route.eventhub_output for route in load_routes(settings) if route.eventhub_output})
    if not hubs:
        return None
    from shared.adapters.eventhub import eventhub_sink
    from shared.collection import OutputCollector

    return OutputCollector(blobs, {hub: eventhub_sink(settings, hub) for hub in hubs})


def _parts_queue(settings: Settings) -> Any:
    """The queue of fan-out parts (``shared/fanout.py``), when a route splits large files (else None)."""
    from shared.routes import load_routes

    if not any(route.fanout_bytes for route in load_routes(settings)):
        return None
    from shared.adapters.queue import StorageQueue
    from shared.routes import PARTS_QUEUE

    return StorageQueue.from_settings(settings, PARTS_QUEUE)


def _batch_scorer(settings: Settings) -> Any:
    """The Azure ML batch endpoint client, when a route has ``engine: azureml-batch`` (else None)."""
    from shared.routes import load_routes

    if not any(route.engine == "azureml-batch" for route in load_routes(settings)):
        return None
    from shared.adapters.azureml_batch import AzureMLBatchScorer

    return AzureMLBatchScorer(_workspace_client(settings))


def build_drift_monitor(
    settings: Settings,
    *,
    blobs: object = None,
    models: object = None,
    ledger: object = None,
    publisher: object = None,
) -> object:
    """The drift monitor on the drift container, the registry, the ledger and the retraining launcher;
    ``models`` (the scoring service's provider) is reused, so a model is loaded once per process."""
    from shared.adapters import AzureBlobStore, TableLedger
    from shared.adapters.mlflow_registry import MlflowRegistry
    from shared.adapters.publisher import publisher_from_settings
    from shared.drift.monitor import DriftMonitor
    from shared.drift.offline import policy_from_settings
    from shared.drift.store import ProfileStore
    from shared.models import ModelCache, ModelProvider

    blobs = blobs or AzureBlobStore.from_settings(settings)
    provider: ModelProvider = models or ModelProvider(  # type: ignore[assignment]
        MlflowRegistry.from_settings(settings), blobs, ModelCache(1), ttl_seconds=0
    )
    registry = provider.registry
    policy = policy_from_settings(settings)
    reference = settings.drift_reference_data or settings.evaluation_data
    retrainer = retrainer_from_settings(settings)
    monitor = DriftMonitor(
        store=ProfileStore(
            blobs,  # type: ignore[arg-type]
            settings.drift_container,
            retention_seconds=settings.drift_part_retention_seconds,
        ),
        registry=registry,  # type: ignore[arg-type]
        ledger=ledger or TableLedger.from_settings(settings),  # type: ignore[arg-type]
        publisher=publisher or publisher_from_settings(settings),  # type: ignore[arg-type]
        policy=policy,
        window_seconds=settings.drift_window_seconds,
        cooldown_seconds=settings.drift_cooldown_seconds,
        lookback_windows=settings.drift_lookback_windows,
        retrainer=retrainer,  # type: ignore[arg-type]
        reference=(lambda: read_table(blobs, reference)) if reference else None,
        load_model=lambda version: provider.get(version.uri)[1],
    )
    if hasattr(retrainer, "on_exit"):  # the local launcher reports its process's exit itself
        retrainer.on_exit = monitor.retraining_finished
    return monitor


def retrainer_from_settings(settings: Settings) -> object:
    """The launcher ``SCOREHOOK_RETRAIN_LAUNCHER`` names: ``local``, ``azureml`` or ``none`` (None)."""
    from shared.errors import ConfigurationError

    launcher = settings.retrain_launcher.lower()
    if launcher == "none":
        return None
    if launcher == "local":
        from shared.adapters.retrain_local import LocalProcessRetrainer

        return LocalProcessRetrainer(settings.require("mlflow_tracking_uri"))
    if launcher == "azureml":
        from pathlib import Path

        from shared.adapters.azureml_retrain import AzureMLRetrainer

        pipeline = Path(settings.retrain_pipeline)  # relative to the app's root, wherever the host runs
        pipeline = pipeline if pipeline.is_absolute() else Path(__file__).resolve().parents[1] / pipeline
        return AzureMLRetrainer(_workspace_client(settings), pipeline)
    raise ConfigurationError(
        f"SCOREHOOK_RETRAIN_LAUNCHER must be local, azureml or none, not {settings.retrain_launcher!r}",
        setting="SCOREHOOK_RETRAIN_LAUNCHER",
    )


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
    registry = MlflowRegistry.from_settings(settings)
    from shared.models import GenerationMarker

    policy = DeploymentPolicy(
        primary_metric=settings.primary_metric, margin=settings.promotion_margin,
        guard_metrics=settings.guard_metrics, require_approval=settings.require_approval,
        latency_budget_ms=settings.latency_budget_ms, history=settings.promote_history,
        floors=settings.promotion_floors(), window_min_rows=settings.promote_window_min_rows,
    )  # fmt: skip
    blobs.ensure_containers(settings.model_marker_container)
    cache = ModelCache(max(settings.model_cache_size, settings.promote_history + 2))  # champions of the bar
    return DeploymentService(
        registry, ModelProvider(registry, blobs, cache, ttl_seconds=0),
        TableLedger.from_settings(settings), publisher_from_settings(settings),
        lambda: read_table(blobs, settings.require("evaluation_data")), policy,
        rollout=endpoint_rollout(settings), recent_data=drift_window_rows(settings, blobs),
        marker=GenerationMarker(blobs, settings.model_marker_container),
    )  # fmt: skip


def drift_window_rows(settings: Settings, blobs: object) -> object:
    """For a retrained candidate (tag ``scorehook.retrain.decision`` = ``model/version/window``): the labelled
    rows of that drift window's input files that retraining held out (``shared.deployment.HELD_OUT_RULE``),
    as a :class:`shared.deployment.RecentData`; ``None`` when the window is not stored (any more).

    Example:
        >>> drift_window_rows(settings, blobs)(version).details["window"]   # doctest: +SKIP
        '20261201T1300'
    """
    from shared.deployment import HELD_OUT_RULE, RETRAIN_DECISION_TAG, RecentData, held_out_mask

    def rows(version: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        from shared.drift.store import ProfileStore
        from shared.events import _split_blob_url

        model, base, key = str(version.tags[RETRAIN_DECISION_TAG]).rsplit("/", 2)  # type: ignore[attr-defined]
        found = ProfileStore(blobs, settings.drift_container).window(model, base, key)  # type: ignore[arg-type]
        if found is None:
            return None
        tables = []
        for url in found[1]:
            _, container, name = _split_blob_url(url, "drift window input")
            table = _labelled_table(blobs.read_bytes(container, name), name)  # type: ignore[attr-defined]
            if table is not None:
                tables.append(table.filter(pa.array(held_out_mask(table))))
        table = pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})
        if "label" in table.column_names:
            table = table.filter(pc.is_valid(table.column("label")))
        details = {"window": key, "base_version": base, "inputs": len(found[1]), "held_out": HELD_OUT_RULE}
        return RecentData(table.combine_chunks() if table.num_rows else table, details)

    return rows


def _labelled_table(data: bytes, name: str) -> Any:
    """A scored input file's rows (CSV, CSV.gz, Parquet, JSON lines), ``id`` as text; ``None`` without labels."""
    import gzip
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    lowered = name.lower()
    if lowered.endswith(".gz"):
        data, lowered = gzip.decompress(data), lowered[:-3]
    if lowered.endswith((".parquet", ".pq")):
        table = pq.read_table(io.BytesIO(data))
    elif lowered.endswith((".jsonl", ".json")):
        table = pajson.read_json(io.BytesIO(data))
    else:
        table = pacsv.read_csv(io.BytesIO(data), convert_options=pacsv.ConvertOptions(
            column_types={"id": pa.string()}, strings_can_be_null=True))  # fmt: skip
    if "label" not in table.column_names:
        return None
    if "id" in table.column_names:
        table = table.set_column(table.schema.get_field_index("id"), "id", table.column("id").cast(pa.string()))
    return table.set_column(table.schema.get_field_index("label"), "label", table.column("label").cast(pa.int64()))


def endpoint_rollout(settings: Settings) -> object:
    """The staged rollout on the configured Azure ML online endpoint, or ``None`` when none is configured."""
    if not settings.online_endpoint:
        return None
    _workspace_ids(settings)  # a wrong workspace id fails at start, not at the first promotion

    def roll_out(name: str, version: str, champion: str | None) -> object:
        from shared.rollout import AzureMLOnlineEndpoints, roll_out_version

        return roll_out_version(
            AzureMLOnlineEndpoints(_workspace_client(settings)),
            settings.online_endpoint or "",
            name,
            version,
            champion,
        )

    return roll_out


def _workspace_ids(settings: Settings) -> tuple[str, str, str]:
    """(subscription, resource group, workspace) of ``SCOREHOOK_AZUREML_WORKSPACE`` (an ARM id)."""
    from shared.errors import ConfigurationError

    parts = settings.require("azureml_workspace").strip("/").split("/")
    try:
        return parts[1], parts[3], parts[7]
    except IndexError:
        raise ConfigurationError("SCOREHOOK_AZUREML_WORKSPACE must be the workspace's ARM id",
                                 setting="SCOREHOOK_AZUREML_WORKSPACE") from None  # fmt: skip


def _workspace_client(settings: Settings) -> object:
    """An ``MLClient`` on the workspace ``SCOREHOOK_AZUREML_WORKSPACE``, with managed identity."""
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    return MLClient(DefaultAzureCredential(), *_workspace_ids(settings))
