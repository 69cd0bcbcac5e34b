"""App settings, read once into a frozen, validated object (pydantic-settings).

Every app setting name is defined here and only here (``SETTING_NAMES``); ``infra/`` and
``local.settings.json.example`` use the same names, and a test checks that they agree.
An explicit argument beats the setting, which beats the default. An empty setting is an unset one.

Every value is checked when the settings are built, not when it is first used: one
:class:`~shared.errors.ConfigurationError` lists every bad setting with the value given (secrets masked)
and the form expected, e.g. ``SCOREHOOK_ALIAS_TTL_SECONDS='abc': expected a number of seconds >= 0``.

Example:
    >>> s = Settings.from_env({"SCOREHOOK_INPUT_CONTAINER": "drop"}, output_container="out")
    >>> (s.input_container, s.output_container, s.failed_container)
    ('drop', 'out', 'failed')
    >>> Settings.from_env({"SCOREHOOK_ALIAS_TTL_SECONDS": "abc", "SCOREHOOK_DRIFT_ENABLED": "maybe"})
    Traceback (most recent call last):
    ...
    shared.errors.ConfigurationError: 2 app settings are invalid:
      SCOREHOOK_ALIAS_TTL_SECONDS='abc': expected a number of seconds >= 0
      SCOREHOOK_DRIFT_ENABLED='maybe': expected a flag: true or false (also 1/0, yes/no)
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shared.errors import ConfigurationError
from shared.modelrefs import EXPECTED_MODEL_REFERENCE, model_reference_problem
from shared.ncrontab import EXPECTED_SCHEDULE, schedule_problem

__all__ = ["SETTING_NAMES", "Kind", "Settings", "configuration_error", "get_settings", "reset_settings"]

MASK = "***"


@dataclass(frozen=True)
class Kind:
    """What a setting holds: ``convert`` turns its text (or an explicit value) into the value, raising
    ``ValueError`` (with a detail, or an empty message) when it does not fit ``expected``."""

    expected: str
    convert: Callable[[Any], Any]


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("")
    return value


def _number(
    what: str, *, integer: bool = False, low: float | None = None, high: float | None = None, open_low: bool = False
) -> Kind:
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if open_low else '>='} {low:g}")
    if high is not None:
        bounds.append(f"<= {high:g}")
    expected = f"expected {what}" + (f" {' and '.join(bounds)}" if bounds else "")

    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("")
        if isinstance(value, str):
            value = value.strip()
            try:
                number: float = int(value) if integer else float(value)
            except ValueError:
                raise ValueError("") from None
        elif isinstance(value, int | float):
            number = value
        else:
            raise ValueError("")
        if not math.isfinite(number) or (integer and number != int(number)):
            raise ValueError("")
        if low is not None and (number <= low if open_low else number < low):
            raise ValueError("")
        if high is not None and number > high:
            raise ValueError("")
        return int(number) if integer else float(number)

    return Kind(expected, convert)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    lowered = _text(value).strip().lower()
    if lowered not in {"true", "false", "1", "0", "yes", "no"}:
        raise ValueError("")
    return lowered in {"true", "1", "yes"}


def _csv(item: Kind | None = None) -> Kind:
    expected = "expected a comma-separated list" + (f", each {item.expected.removeprefix('expected ')}" if item else "")

    def convert(value: Any) -> tuple[str, ...]:
        parts = value.split(",") if isinstance(value, str) else list(value)
        items = tuple(str(part).strip() for part in parts if str(part).strip())
        bad = []
        for one in items:
            try:
                item is None or item.convert(one)
            except ValueError:
                bad.append(one)
        if bad:
            raise ValueError(f"not {', '.join(map(repr, bad))}")
        return items

    return Kind(expected, convert)


def _pattern(regex: str, expected: str, flags: int = 0) -> Kind:
    compiled = re.compile(regex, flags)

    def convert(value: Any) -> str:
        if not compiled.fullmatch(_text(value).strip()):
            raise ValueError("")
        return value.strip()

    return Kind(expected, convert)


def _choice(*options: str) -> Kind:
    def convert(value: Any) -> str:
        if _text(value).strip().lower() not in options:
            raise ValueError("")
        return value.strip()

    return Kind(f"expected one of {', '.join(options)}", convert)


def _url(value: Any) -> str:
    parts = urllib.parse.urlsplit(_text(value).strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("")
    return value.strip()


def _checked(problem: Callable[[str], str | None]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        found = problem(_text(value).strip())
        if found is not None:
            raise ValueError(found)
        return value.strip()

    return convert


def _connection_string(value: Any) -> str:
    pairs = dict(part.partition("=")[::2] for part in _text(value).split(";") if part.strip())
    if not ({"AccountName", "BlobEndpoint", "UseDevelopmentStorage"} & set(pairs)):
        raise ValueError("")
    return value


def _pairs(value: Any) -> str:
    for item in (part for part in _text(value).split(",") if part.strip()):
        key, sep, model = item.partition("=")
        if not sep or not key.strip() or not model.strip():
            raise ValueError(f"not {item.strip()!r}")
    return value


TEXT = Kind("expected text", _text)
FLAG = Kind("expected a flag: true or false (also 1/0, yes/no)", _flag)
SECONDS = _number("a number of seconds", low=0, open_low=True)
SECONDS_OR_ZERO = _number("a number of seconds", low=0)
WHOLE_SECONDS = _number("a whole number of seconds", integer=True, low=1)
WHOLE_SECONDS_OR_ZERO = _number("a whole number of seconds", integer=True, low=0)
POSITIVE = _number("a whole number", integer=True, low=1)
COUNT = _number("a whole number", integer=True, low=0)
BYTES = _number("a whole number of bytes", integer=True, low=1)
NUMBER = _number("a number")
NON_NEGATIVE = _number("a number", low=0)
FRACTION = _number("a number", low=0, high=1)
OPEN_FRACTION = _number("a number", low=0, high=1, open_low=True)
RATIO = _number("a number", low=1)
MILLISECONDS = _number("a number of milliseconds", low=0, open_low=True)
URL = Kind("expected an http(s) URL such as https://account.blob.core.windows.net", _url)
CONTAINER = _pattern(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}",
                     "expected a container name: 3-63 lowercase letters, digits and single hyphens")  # fmt: skip
TABLE = _pattern(r"[A-Za-z][A-Za-z0-9]{2,62}", "expected a table name: 3-63 letters and digits, a letter first")
ACCOUNTS = _csv(_pattern(r"[a-z0-9]{3,24}", "expected a storage account name (3-24 lowercase letters and digits)"))
METRICS = ("auc", "f1", "accuracy", "rmse", "mae", "log_loss")
MODEL_REFERENCE = Kind(EXPECTED_MODEL_REFERENCE, _checked(model_reference_problem))
SCHEDULE = Kind(f"expected {EXPECTED_SCHEDULE}", _checked(schedule_problem))
BLOB_DATA = _pattern(r"blob://[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}/\S+",
                     "expected blob://CONTAINER/PATH.csv (or .parquet)")  # fmt: skip
EVENT_HUB = _pattern(r"[A-Za-z0-9][A-Za-z0-9._-]{0,255}",
                     "expected an event hub name: letters, digits, periods, hyphens and underscores, a letter or digit first")  # fmt: skip
CONSUMER_GROUP = _pattern(r"\$Default|[A-Za-z0-9][A-Za-z0-9._-]{0,49}", "expected $Default or a consumer group name")
EVENT_HUBS_NAMESPACE = _pattern(r"[A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9]\.servicebus\.windows\.net",
                                "expected a namespace host such as NAME.servicebus.windows.net")  # fmt: skip
WORKSPACE_ID = _pattern(
    r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.MachineLearningServices/workspaces/[^/]+/?",
    "expected the workspace's ARM id: /subscriptions/SUB/resourceGroups/RG/providers/"
    "Microsoft.MachineLearningServices/workspaces/NAME",
    re.IGNORECASE,
)
ENDPOINT_NAME = _pattern(r"[A-Za-z][A-Za-z0-9-]{2,31}", "expected an online endpoint name: 3-32 letters, digits, hyphens")
CONNECTION_STRING = Kind(
    "expected a storage connection string (AccountName=...;AccountKey=...;EndpointSuffix=... or "
    "UseDevelopmentStorage=true)",
    _connection_string,
)
MODEL_PAIRS = Kind("expected MONITOR=MODEL pairs separated by commas", _pairs)
LOG_LEVEL = _choice("debug", "info", "warning", "warn", "error", "critical")
LAUNCHER = Kind("expected local, azureml or none", _choice("local", "azureml", "none").convert)


_KINDS: dict[str, Kind] = {}  # setting name -> what it holds


def _kind(kind: Any) -> Kind:
    """``kind``, or the kind an older-style parser (``str``, ``int``, ``float``, ``_flag``, ``_csv``) stands for."""
    if isinstance(kind, Kind):
        return kind
    known = {str: TEXT, int: _number("a whole number", integer=True), float: NUMBER, _flag: FLAG, _csv: _csv()}
    if kind in known:
        return known[kind]

    def convert(value: Any) -> Any:
        return kind(value) if isinstance(value, str) else value

    return Kind(f"expected a value {getattr(kind, '__name__', 'the parser')} accepts", convert)


def _setting(name: str, default: Any = None, kind: Any = TEXT, secret: bool = False) -> Any:
    """A setting named ``name`` holding ``kind`` (a :class:`Kind`; ``str``, ``int``, ``float`` also do)."""
    kind = _kind(kind)
    _KINDS[name] = kind
    return Field(default, validation_alias=name, description=kind.expected,
                 json_schema_extra={"setting": name, "secret": secret})  # fmt: skip


class Settings(BaseSettings):
    """Everything the app reads from its environment.

    Storage is reached either through a connection string (``DataStorage``, local runs) or, in Azure,
    through managed identity and the service URIs (``DataStorage__blobServiceUri`` and friends).
    """

    data_connection_string: str | None = _setting("DataStorage", None, CONNECTION_STRING, secret=True)
    data_blob_service_uri: str | None = _setting("DataStorage__blobServiceUri", None, URL)
    data_queue_service_uri: str | None = _setting("DataStorage__queueServiceUri", None, URL)
    data_table_service_uri: str | None = _setting("DataStorage__tableServiceUri", None, URL)
    allowed_storage_accounts: tuple[str, ...] = _setting(
        "SCOREHOOK_ALLOWED_STORAGE_ACCOUNTS", ("devstoreaccount1",), ACCOUNTS
    )
    input_container: str = _setting("SCOREHOOK_INPUT_CONTAINER", "incoming", CONTAINER)
    output_container: str = _setting("SCOREHOOK_OUTPUT_CONTAINER", "scored", CONTAINER)
    failed_container: str = _setting("SCOREHOOK_FAILED_CONTAINER", "failed", CONTAINER)
    dead_letter_container: str = _setting("SCOREHOOK_DEADLETTER_CONTAINER", "deadletter", CONTAINER)
    ledger_table: str = _setting("SCOREHOOK_LEDGER_TABLE", "ScorehookLedger", TABLE)
    model_uri: str = _setting("SCOREHOOK_MODEL_URI", "models:/scorehook-sample@champion", MODEL_REFERENCE)
    routes: str | None = _setting("SCOREHOOK_ROUTES")
    alias_ttl_seconds: float = _setting("SCOREHOOK_ALIAS_TTL_SECONDS", 60.0, SECONDS_OR_ZERO)  # 0: every file
    model_marker_container: str = _setting("SCOREHOOK_MODEL_MARKER_CONTAINER", "scorehook-models", CONTAINER)
    model_marker_seconds: float = _setting("SCOREHOOK_MODEL_MARKER_SECONDS", 2.0, SECONDS_OR_ZERO)
    onnx_threads: int = _setting("SCOREHOOK_ONNX_THREADS", 1, POSITIVE)
    model_cache_size: int = _setting("SCOREHOOK_MODEL_CACHE_SIZE", 4, POSITIVE)
    claim_ttl_seconds: int = _setting("SCOREHOOK_CLAIM_TTL_SECONDS", 60, WHOLE_SECONDS)
    max_file_bytes: int = _setting("SCOREHOOK_MAX_FILE_BYTES", 64 << 30, BYTES)
    max_record_bytes: int = _setting("SCOREHOOK_MAX_RECORD_BYTES", 16 << 20, BYTES)
    max_inflated_bytes: int = _setting("SCOREHOOK_MAX_INFLATED_BYTES", 256 << 30, BYTES)
    max_inflation_ratio: float = _setting("SCOREHOOK_MAX_INFLATION_RATIO", 200.0, RATIO)
    max_columns: int = _setting("SCOREHOOK_MAX_COLUMNS", 2000, POSITIVE)
    mlflow_timeout_seconds: float = _setting("SCOREHOOK_MLFLOW_TIMEOUT_SECONDS", 10.0, SECONDS)
    mlflow_max_retries: int = _setting("SCOREHOOK_MLFLOW_MAX_RETRIES", 1, COUNT)
    mlflow_tracking_uri: str | None = _setting("MLFLOW_TRACKING_URI")
    # registries (tracking URIs) whose pickle-based flavors may be loaded; ONNX and skops never unpickle
    pickle_registries: tuple[str, ...] = _setting("SCOREHOOK_PICKLE_REGISTRIES", (), _csv())
    mlflow_webhook_secret: str | None = _setting("SCOREHOOK_MLFLOW_WEBHOOK_SECRET", secret=True)
    allowed_workspaces: tuple[str, ...] = _setting("SCOREHOOK_ALLOWED_WORKSPACES", (), _csv())
    evaluation_data: str | None = _setting("SCOREHOOK_EVALUATION_DATA", None, BLOB_DATA)
    primary_metric: str = _setting("SCOREHOOK_PRIMARY_METRIC", "auc", _choice(*METRICS))
    promotion_margin: float = _setting("SCOREHOOK_PROMOTION_MARGIN", 0.0, NUMBER)
    promote_history: int = _setting("SCOREHOOK_PROMOTE_HISTORY", 5, COUNT)
    promote_min_auc: float | None = _setting("SCOREHOOK_PROMOTE_MIN_AUC", None, FRACTION)
    promote_min_f1: float | None = _setting("SCOREHOOK_PROMOTE_MIN_F1", None, FRACTION)
    promote_min_accuracy: float | None = _setting("SCOREHOOK_PROMOTE_MIN_ACCURACY", None, FRACTION)
    promote_max_rmse: float | None = _setting("SCOREHOOK_PROMOTE_MAX_RMSE", None, NON_NEGATIVE)
    promote_max_mae: float | None = _setting("SCOREHOOK_PROMOTE_MAX_MAE", None, NON_NEGATIVE)
    promote_window_min_rows: int = _setting("SCOREHOOK_PROMOTE_WINDOW_MIN_ROWS", 200, COUNT)
    guard_metrics: tuple[str, ...] = _setting("SCOREHOOK_GUARD_METRICS", ("f1",), _csv(_choice(*METRICS)))
    require_approval: bool = _setting("SCOREHOOK_REQUIRE_APPROVAL", False, FLAG)
    latency_budget_ms: float = _setting("SCOREHOOK_LATENCY_BUDGET_MS", 250.0, MILLISECONDS)
    online_endpoint: str | None = _setting("SCOREHOOK_ONLINE_ENDPOINT", None, ENDPOINT_NAME)
    azureml_workspace: str | None = _setting("SCOREHOOK_AZUREML_WORKSPACE", None, WORKSPACE_ID)
    events_topic_endpoint: str | None = _setting("SCOREHOOK_EVENTS_TOPIC_ENDPOINT", None, URL)
    events_topic_key: str | None = _setting("SCOREHOOK_EVENTS_TOPIC_KEY", secret=True)
    drift_enabled: bool = _setting("SCOREHOOK_DRIFT_ENABLED", True, FLAG)
    drift_container: str = _setting("SCOREHOOK_DRIFT_CONTAINER", "drift", CONTAINER)
    drift_window_seconds: int = _setting("SCOREHOOK_DRIFT_WINDOW_SECONDS", 3600, WHOLE_SECONDS)
    drift_numeric_threshold: float = _setting("SCOREHOOK_DRIFT_NUMERIC_THRESHOLD", 0.1, NON_NEGATIVE)
    drift_categorical_threshold: float = _setting("SCOREHOOK_DRIFT_CATEGORICAL_THRESHOLD", 0.1, NON_NEGATIVE)
    drift_quality_threshold: float = _setting("SCOREHOOK_DRIFT_QUALITY_THRESHOLD", 0.05, NON_NEGATIVE)
    drift_share: float = _setting("SCOREHOOK_DRIFT_SHARE", 0.2, OPEN_FRACTION)
    drift_alpha: float = _setting("SCOREHOOK_DRIFT_ALPHA", 0.05, OPEN_FRACTION)
    drift_min_rows: int = _setting("SCOREHOOK_DRIFT_MIN_ROWS", 50, POSITIVE)
    drift_full_alpha_rows: int = _setting("SCOREHOOK_DRIFT_FULL_ALPHA_ROWS", 1000, COUNT)
    drift_cooldown_seconds: int = _setting("SCOREHOOK_DRIFT_COOLDOWN_SECONDS", 86400, WHOLE_SECONDS_OR_ZERO)
    drift_lookback_windows: int = _setting("SCOREHOOK_DRIFT_LOOKBACK_WINDOWS", 2, COUNT)
    drift_schedule: str = _setting("SCOREHOOK_DRIFT_SCHEDULE", "0 */5 * * * *", SCHEDULE)
    drift_part_retention_seconds: int = _setting("SCOREHOOK_DRIFT_PART_RETENTION_SECONDS", 3600, WHOLE_SECONDS_OR_ZERO)
    drift_reference_data: str | None = _setting("SCOREHOOK_DRIFT_REFERENCE_DATA", None, BLOB_DATA)
    drift_monitor_models: str | None = _setting("SCOREHOOK_DRIFT_MONITOR_MODELS", None, MODEL_PAIRS)
    retrain_launcher: str = _setting("SCOREHOOK_RETRAIN_LAUNCHER", "none", LAUNCHER)
    # Event Hubs streaming (functions/streaming.py): the trigger is registered only when enabled
    stream_enabled: bool = _setting("SCOREHOOK_STREAM_ENABLED", False, FLAG)
    stream_hub: str = _setting("SCOREHOOK_STREAM_HUB", "scorehook-records", EVENT_HUB)
    stream_output_hub: str = _setting("SCOREHOOK_STREAM_OUTPUT_HUB", "scorehook-predictions", EVENT_HUB)
    stream_consumer_group: str = _setting("SCOREHOOK_STREAM_CONSUMER_GROUP", "$Default", CONSUMER_GROUP)
    stream_model_uri: str | None = _setting("SCOREHOOK_STREAM_MODEL_URI", None, MODEL_REFERENCE)
    event_hubs_namespace: str | None = _setting("EventHubs__fullyQualifiedNamespace", None, EVENT_HUBS_NAMESPACE)
    # devhost: the hubs are the local ones in DataStorage (Azurite), not a namespace (shared/adapters/eventhub_local.py)
    eventhubs_local: bool = _setting("SCOREHOOK_EVENTHUBS_LOCAL", False, FLAG)
    retrain_pipeline: str = _setting("SCOREHOOK_RETRAIN_PIPELINE", "infra/ml/retrain-pipeline.yml")
    log_level: str = _setting("SCOREHOOK_LOG_LEVEL", "INFO", LOG_LEVEL)
    log_file: str | None = _setting("SCOREHOOK_LOG_FILE")
    log_console: bool = _setting("SCOREHOOK_LOG_CONSOLE", True, FLAG)
    # auto (readable on a terminal), json, console
    log_format: str = _setting("SCOREHOOK_LOG_FORMAT", "auto", _choice("auto", "json", "console"))

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what :meth:`from_env` passes: the environment is read there, with empty meaning unset."""
        return (init_settings,)

    @field_validator("*", mode="before")
    @classmethod
    def _convert(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        return _KINDS[_setting_name(str(info.field_name))].convert(value)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``env`` (default: ``os.environ``); keyword arguments win over it.

        Raises one ``ConfigurationError`` listing every bad setting (``details["problems"]``).
        """
        env = os.environ if env is None else env
        unknown = sorted(set(overrides) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"unknown settings: {unknown}")
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            setting = _setting_name(name)
            if name in overrides:
                values[name] = overrides[name]
            elif env.get(setting) not in (None, ""):
                values[setting] = env[setting]
        try:
            return cls(**values)
        except ValidationError as exc:
            raise configuration_error(_problems(exc)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"settings are frozen: cannot assign {name}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"settings are frozen: cannot delete {name}")

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed (by attribute name), validated like the rest.

        Example:
            >>> Settings.from_env({}).replace(claim_ttl_seconds=5).claim_ttl_seconds
            5
        """
        return type(self).from_env({}, **{**self.__dict__, **changes})

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
            name = _setting_name(attribute)
            raise ConfigurationError(f"app setting {name} is not set", setting=name)
        return value

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked, safe to log."""
        return {
            name: (MASK if _is_secret(name) and getattr(self, name) else getattr(self, name))
            for name in type(self).model_fields
        }


def _setting_name(field_name: str) -> str:
    return str(Settings.model_fields[field_name].validation_alias)


def _is_secret(field_name: str) -> bool:
    extra = Settings.model_fields[field_name].json_schema_extra
    return bool(isinstance(extra, dict) and extra.get("secret"))


_BY_SETTING: dict[str, str] = {}  # setting name -> attribute name


def _problems(exc: ValidationError) -> list[dict[str, Any]]:
    problems = []
    for error in exc.errors(include_url=False):
        key = str(error["loc"][0]) if error["loc"] else "?"
        field_name = _BY_SETTING.get(key, key)
        setting = _setting_name(field_name) if field_name in Settings.model_fields else key
        kind = _KINDS.get(setting)
        detail = str(error.get("ctx", {}).get("error", "")) if error["type"] == "value_error" else error["msg"]
        expected = kind.expected if kind else "expected a valid value"
        problems.append({
            "setting": setting,
            "value": MASK if field_name in Settings.model_fields and _is_secret(field_name) else error["input"],
            "expected": expected + (f" ({detail})" if detail and detail not in expected else ""),
        })  # fmt: skip
    return problems


def configuration_error(problems: list[dict[str, Any]], what: str = "app settings") -> ConfigurationError:
    """One error listing every problem (``{"setting", "value", "expected"}``, the value already masked).

    Example:
        >>> print(configuration_error([{"setting": "A", "value": "x", "expected": "expected a number"}]))
        app setting is invalid: A='x': expected a number
    """
    lines = [f"{p['setting']}={p['value']!r}: {p['expected']}" for p in problems]
    if len(lines) == 1:
        message = f"{what.removesuffix('s')} is invalid: {lines[0]}"
    else:
        message = f"{len(lines)} {what} are invalid:\n" + "\n".join(f"  {line}" for line in lines)
    return ConfigurationError(message, setting=problems[0]["setting"] if problems else None, problems=problems)


_BY_SETTING.update({_setting_name(name): name for name in Settings.model_fields})
SETTING_NAMES: tuple[str, ...] = tuple(_BY_SETTING)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use (a bad one raises every time)."""
    return Settings.from_env()


def reset_settings() -> None:
    """Forget the cached settings (tests, and devhost after it writes the environment)."""
    get_settings.cache_clear()
