"""App settings, read once into a frozen dataclass.

Every app setting name is defined here and only here (``SETTING_NAMES``); ``infra/`` and
``local.settings.json.example`` use the same names, and a test checks that they agree.
An explicit argument beats the setting, which beats the default.

Example:
    >>> s = Settings.from_env({"SCOREHOOK_INPUT_CONTAINER": "drop"}, output_container="out")
    >>> (s.input_container, s.output_container, s.failed_container)
    ('drop', 'out', 'failed')
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from shared.errors import ConfigurationError

__all__ = ["SETTING_NAMES", "Settings", "get_settings", "reset_settings"]


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in {"true", "false", "1", "0", "yes", "no"}:
        raise ValueError(value)
    return lowered in {"true", "1", "yes"}


def _setting(name: str, default: Any = None, parse: Any = str, secret: bool = False) -> Any:
    return field(default=default, metadata={"setting": name, "parse": parse, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """Everything the app reads from its environment.

    Storage is reached either through a connection string (``DataStorage``, local runs) or, in Azure,
    through managed identity and the service URIs (``DataStorage__blobServiceUri`` and friends).
    """

    data_connection_string: str | None = _setting("DataStorage", secret=True)
    data_blob_service_uri: str | None = _setting("DataStorage__blobServiceUri")
    data_queue_service_uri: str | None = _setting("DataStorage__queueServiceUri")
    data_table_service_uri: str | None = _setting("DataStorage__tableServiceUri")
    allowed_storage_accounts: tuple[str, ...] = _setting(
        "SCOREHOOK_ALLOWED_STORAGE_ACCOUNTS", ("devstoreaccount1",), _csv
    )
    input_container: str = _setting("SCOREHOOK_INPUT_CONTAINER", "incoming")
    output_container: str = _setting("SCOREHOOK_OUTPUT_CONTAINER", "scored")
    failed_container: str = _setting("SCOREHOOK_FAILED_CONTAINER", "failed")
    dead_letter_container: str = _setting("SCOREHOOK_DEADLETTER_CONTAINER", "deadletter")
    ledger_table: str = _setting("SCOREHOOK_LEDGER_TABLE", "ScorehookLedger")
    model_uri: str = _setting("SCOREHOOK_MODEL_URI", "models:/scorehook-sample@champion")
    routes: str | None = _setting("SCOREHOOK_ROUTES")
    alias_ttl_seconds: float = _setting("SCOREHOOK_ALIAS_TTL_SECONDS", 60.0, float)
    model_marker_container: str = _setting("SCOREHOOK_MODEL_MARKER_CONTAINER", "scorehook-models")
    model_marker_seconds: float = _setting("SCOREHOOK_MODEL_MARKER_SECONDS", 2.0, float)
    onnx_threads: int = _setting("SCOREHOOK_ONNX_THREADS", 1, int)
    model_cache_size: int = _setting("SCOREHOOK_MODEL_CACHE_SIZE", 4, int)
    claim_ttl_seconds: int = _setting("SCOREHOOK_CLAIM_TTL_SECONDS", 60, int)
    max_file_bytes: int = _setting("SCOREHOOK_MAX_FILE_BYTES", 64 << 30, int)
    max_record_bytes: int = _setting("SCOREHOOK_MAX_RECORD_BYTES", 16 << 20, int)
    max_inflated_bytes: int = _setting("SCOREHOOK_MAX_INFLATED_BYTES", 256 << 30, int)
    max_inflation_ratio: float = _setting("SCOREHOOK_MAX_INFLATION_RATIO", 200.0, float)
    max_columns: int = _setting("SCOREHOOK_MAX_COLUMNS", 2000, int)
    mlflow_timeout_seconds: float = _setting("SCOREHOOK_MLFLOW_TIMEOUT_SECONDS", 10.0, float)
    mlflow_max_retries: int = _setting("SCOREHOOK_MLFLOW_MAX_RETRIES", 1, int)
    mlflow_tracking_uri: str | None = _setting("MLFLOW_TRACKING_URI")
    # registries (tracking URIs) whose pickle-based flavors may be loaded; ONNX and skops never unpickle
    pickle_registries: tuple[str, ...] = _setting("SCOREHOOK_PICKLE_REGISTRIES", (), _csv)
    mlflow_webhook_secret: str | None = _setting("SCOREHOOK_MLFLOW_WEBHOOK_SECRET", secret=True)
    allowed_workspaces: tuple[str, ...] = _setting("SCOREHOOK_ALLOWED_WORKSPACES", (), _csv)
    evaluation_data: str | None = _setting("SCOREHOOK_EVALUATION_DATA")
    primary_metric: str = _setting("SCOREHOOK_PRIMARY_METRIC", "auc")
    promotion_margin: float = _setting("SCOREHOOK_PROMOTION_MARGIN", 0.0, float)
    promote_history: int = _setting("SCOREHOOK_PROMOTE_HISTORY", 5, int)
    promote_min_auc: float | None = _setting("SCOREHOOK_PROMOTE_MIN_AUC", None, float)
    promote_min_f1: float | None = _setting("SCOREHOOK_PROMOTE_MIN_F1", None, float)
    promote_min_accuracy: float | None = _setting("SCOREHOOK_PROMOTE_MIN_ACCURACY", None, float)
    promote_max_rmse: float | None = _setting("SCOREHOOK_PROMOTE_MAX_RMSE", None, float)
    promote_max_mae: float | None = _setting("SCOREHOOK_PROMOTE_MAX_MAE", None, float)
    promote_window_min_rows: int = _setting("SCOREHOOK_PROMOTE_WINDOW_MIN_ROWS", 200, int)
    guard_metrics: tuple[str, ...] = _setting("SCOREHOOK_GUARD_METRICS", ("f1",), _csv)
    require_approval: bool = _setting("SCOREHOOK_REQUIRE_APPROVAL", False, _flag)
    latency_budget_ms: float = _setting("SCOREHOOK_LATENCY_BUDGET_MS", 250.0, float)
    online_endpoint: str | None = _setting("SCOREHOOK_ONLINE_ENDPOINT")
    azureml_workspace: str | None = _setting("SCOREHOOK_AZUREML_WORKSPACE")
    events_topic_endpoint: str | None = _setting("SCOREHOOK_EVENTS_TOPIC_ENDPOINT")
    events_topic_key: str | None = _setting("SCOREHOOK_EVENTS_TOPIC_KEY", secret=True)
    drift_enabled: bool = _setting("SCOREHOOK_DRIFT_ENABLED", True, _flag)
    drift_container: str = _setting("SCOREHOOK_DRIFT_CONTAINER", "drift")
    drift_window_seconds: int = _setting("SCOREHOOK_DRIFT_WINDOW_SECONDS", 3600, int)
    drift_numeric_threshold: float = _setting("SCOREHOOK_DRIFT_NUMERIC_THRESHOLD", 0.1, float)
    drift_categorical_threshold: float = _setting("SCOREHOOK_DRIFT_CATEGORICAL_THRESHOLD", 0.1, float)
    drift_quality_threshold: float = _setting("SCOREHOOK_DRIFT_QUALITY_THRESHOLD", 0.05, float)
    drift_share: float = _setting("SCOREHOOK_DRIFT_SHARE", 0.2, float)
    drift_alpha: float = _setting("SCOREHOOK_DRIFT_ALPHA", 0.05, float)
    drift_min_rows: int = _setting("SCOREHOOK_DRIFT_MIN_ROWS", 50, int)
    drift_cooldown_seconds: int = _setting("SCOREHOOK_DRIFT_COOLDOWN_SECONDS", 86400, int)
    drift_lookback_windows: int = _setting("SCOREHOOK_DRIFT_LOOKBACK_WINDOWS", 2, int)
    drift_schedule: str = _setting("SCOREHOOK_DRIFT_SCHEDULE", "0 */5 * * * *")
    drift_part_retention_seconds: int = _setting("SCOREHOOK_DRIFT_PART_RETENTION_SECONDS", 3600, int)
    drift_reference_data: str | None = _setting("SCOREHOOK_DRIFT_REFERENCE_DATA")
    drift_monitor_models: str | None = _setting("SCOREHOOK_DRIFT_MONITOR_MODELS")
    retrain_launcher: str = _setting("SCOREHOOK_RETRAIN_LAUNCHER", "none")
    retrain_pipeline: str = _setting("SCOREHOOK_RETRAIN_PIPELINE", "infra/ml/retrain-pipeline.yml")
    log_level: str = _setting("SCOREHOOK_LOG_LEVEL", "INFO")
    log_file: str | None = _setting("SCOREHOOK_LOG_FILE")
    log_console: bool = _setting("SCOREHOOK_LOG_CONSOLE", True, _flag)
    log_format: str = _setting("SCOREHOOK_LOG_FORMAT", "auto")  # auto (readable on a terminal), json, console

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``env`` (default: ``os.environ``); keyword arguments win over it."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in overrides:
                values[f.name] = overrides.pop(f.name)
                continue
            raw = env.get(f.metadata["setting"])
            if raw is not None and raw != "":
                try:
                    values[f.name] = f.metadata["parse"](raw)
                except ValueError as exc:
                    raise ConfigurationError(
                        f"setting {f.metadata['setting']} has an invalid value", setting=f.metadata["setting"]
                    ) from exc
        if overrides:
            raise TypeError(f"unknown settings: {sorted(overrides)}")
        return cls(**values)

    def promotion_floors(self) -> dict[str, float]:
        """The absolute floors (``min`` for higher-is-better metrics, ``max`` for errors) that are set.

        Example:
            >>> Settings.from_env({"SCOREHOOK_PROMOTE_MIN_AUC": "0.8"}).promotion_floors()
            {'auc': 0.8}
        """
        floors = {"auc": self.promote_min_auc, "f1": self.promote_min_f1, "accuracy": self.promote_min_accuracy,
                  "rmse": self.promote_max_rmse, "mae": self.promote_max_mae}  # fmt: skip
        return {metric: value for metric, value in floors.items() if value is not None}

    def require(self, attribute: str) -> Any:
        """The value of ``attribute``, or a ``ConfigurationError`` naming the app setting to set."""
        value = getattr(self, attribute)
        if value in (None, "", ()):
            name = next(f.metadata["setting"] for f in dataclasses.fields(self) if f.name == attribute)
            raise ConfigurationError(f"app setting {name} is not set", setting=name)
        return value

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked, safe to log."""
        return {
            f.name: ("***" if f.metadata["secret"] and getattr(self, f.name) else getattr(self, f.name))
            for f in dataclasses.fields(self)
        }


SETTING_NAMES: tuple[str, ...] = tuple(f.metadata["setting"] for f in dataclasses.fields(Settings))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings.from_env()


def reset_settings() -> None:
    """Forget the cached settings (tests, and devhost after it writes the environment)."""
    get_settings.cache_clear()
