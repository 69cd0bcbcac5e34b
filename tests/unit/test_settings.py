"""Settings: read once, one place for names, explicit argument > setting > default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.errors import ConfigurationError
from shared.settings import SETTING_NAMES, Settings

ROOT = Path(__file__).resolve().parents[2]
HOST_ONLY = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}


def test_explicit_argument_beats_setting_beats_default():
    env = {"SCOREHOOK_INPUT_CONTAINER": "drop", "SCOREHOOK_OUTPUT_CONTAINER": "from-env"}
    settings = Settings.from_env(env, output_container="explicit")
    assert settings.input_container == "drop"
    assert settings.output_container == "explicit"
    assert settings.failed_container == "failed"


def test_values_are_parsed_and_bad_values_name_the_setting():
    settings = Settings.from_env(
        {"SCOREHOOK_ALLOWED_STORAGE_ACCOUNTS": " acct1, acct2 ,,", "SCOREHOOK_MODEL_CACHE_SIZE": "7"}
    )
    assert settings.allowed_storage_accounts == ("acct1", "acct2")
    assert settings.model_cache_size == 7
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({"SCOREHOOK_MODEL_CACHE_SIZE": "many"})
    assert info.value.details["setting"] == "SCOREHOOK_MODEL_CACHE_SIZE"


def test_settings_are_frozen_and_unknown_overrides_are_refused():
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.input_container = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Settings.from_env({}, no_such_setting=1)


def test_require_names_the_missing_app_setting():
    with pytest.raises(ConfigurationError, match="MLFLOW_TRACKING_URI"):
        Settings.from_env({}).require("mlflow_tracking_uri")


def test_redacted_masks_secrets_only():
    settings = Settings.from_env(
        {"DataStorage": "AccountName=acct;AccountKey=s3cr3t-value", "SCOREHOOK_EVENTS_TOPIC_KEY": "k"}
    )
    redacted = settings.redacted()
    assert redacted["data_connection_string"] == "***"
    assert redacted["events_topic_key"] == "***"
    assert redacted["input_container"] == "incoming"
    assert "s3cr3t-value" not in json.dumps(redacted)


def test_example_local_settings_name_every_setting_and_nothing_else():
    values = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    assert set(values) - HOST_ONLY == set(SETTING_NAMES)


def test_the_endpoint_rollout_is_built_only_when_an_endpoint_is_configured():
    from shared.services import endpoint_rollout

    assert endpoint_rollout(Settings.from_env({})) is None
    workspace = (
        "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.MachineLearningServices/workspaces/ws1"
    )
    assert callable(endpoint_rollout(Settings.from_env({"SCOREHOOK_ONLINE_ENDPOINT": "churn-ep",
                                                        "SCOREHOOK_AZUREML_WORKSPACE": workspace})))  # fmt: skip
    with pytest.raises(ConfigurationError, match="SCOREHOOK_AZUREML_WORKSPACE"):
        endpoint_rollout(Settings.from_env({"SCOREHOOK_ONLINE_ENDPOINT": "churn-ep"}))


# --- validated at start: one error listing every bad setting -------------------------------------------------


def _problems(env, **overrides):
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env, **overrides)
    return info.value, {p["setting"]: p for p in info.value.details["problems"]}


def test_several_bad_settings_make_one_error_that_lists_each_with_its_value_and_expected_form():
    error, problems = _problems({
        "SCOREHOOK_ALIAS_TTL_SECONDS": "abc",
        "SCOREHOOK_DRIFT_ENABLED": "maybe",
        "SCOREHOOK_MODEL_CACHE_SIZE": "0",
        "SCOREHOOK_DRIFT_SHARE": "1.5",
        "SCOREHOOK_INPUT_CONTAINER": "Incoming_Files",
        "SCOREHOOK_OUTPUT_CONTAINER": "scored",  # a good one is not listed
    })  # fmt: skip
    assert set(problems) == {"SCOREHOOK_ALIAS_TTL_SECONDS", "SCOREHOOK_DRIFT_ENABLED", "SCOREHOOK_MODEL_CACHE_SIZE",
                             "SCOREHOOK_DRIFT_SHARE", "SCOREHOOK_INPUT_CONTAINER"}  # fmt: skip
    message = str(error)
    assert message.startswith("5 app settings are invalid:")
    assert "SCOREHOOK_ALIAS_TTL_SECONDS='abc': expected a number of seconds >= 0" in message
    assert "SCOREHOOK_DRIFT_ENABLED='maybe': expected a flag: true or false" in message
    assert "SCOREHOOK_MODEL_CACHE_SIZE='0': expected a whole number >= 1" in message
    assert "SCOREHOOK_DRIFT_SHARE='1.5': expected a number > 0 and <= 1" in message
    assert "SCOREHOOK_INPUT_CONTAINER='Incoming_Files': expected a container name" in message
    assert "SCOREHOOK_OUTPUT_CONTAINER" not in message
    assert error.details["setting"] == "SCOREHOOK_INPUT_CONTAINER"  # the first, in declaration order


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SCOREHOOK_REQUIRE_APPROVAL", "ja", "expected a flag"),
        ("SCOREHOOK_LOG_CONSOLE", "on", "expected a flag"),
        ("SCOREHOOK_CLAIM_TTL_SECONDS", "1.5", "expected a whole number of seconds >= 1"),
        ("SCOREHOOK_MLFLOW_TIMEOUT_SECONDS", "-1", "expected a number of seconds > 0"),
        ("SCOREHOOK_MLFLOW_MAX_RETRIES", "-1", "expected a whole number >= 0"),
        ("SCOREHOOK_MAX_FILE_BYTES", "64GB", "expected a whole number of bytes >= 1"),
        ("SCOREHOOK_MAX_INFLATION_RATIO", "nan", "expected a number >= 1"),
        ("SCOREHOOK_PROMOTE_MIN_AUC", "80", "expected a number >= 0 and <= 1"),
        ("SCOREHOOK_LATENCY_BUDGET_MS", "inf", "expected a number of milliseconds > 0"),
        ("SCOREHOOK_PRIMARY_METRIC", "precision", "expected one of auc, f1, accuracy, rmse, mae, log_loss"),
        ("SCOREHOOK_GUARD_METRICS", "f1,recall", "(not 'recall')"),
        ("SCOREHOOK_ALLOWED_STORAGE_ACCOUNTS", "acct,Dev_Store", "each a storage account name"),
        ("SCOREHOOK_LEDGER_TABLE", "ledger-table", "expected a table name"),
        ("SCOREHOOK_RETRAIN_LAUNCHER", "cron", "expected local, azureml or none"),
        ("SCOREHOOK_LOG_LEVEL", "LOUD", "expected one of debug, info"),
        ("SCOREHOOK_EVENTS_TOPIC_ENDPOINT", "topic.example.com/api/events", "expected an http(s) URL"),
        ("DataStorage__blobServiceUri", "ftp://acct", "expected an http(s) URL"),
        ("SCOREHOOK_EVALUATION_DATA", "evaluation/holdout.csv", "expected blob://CONTAINER/PATH.csv"),
        ("SCOREHOOK_DRIFT_MONITOR_MODELS", "monitor-a=churn,monitor-b", "MONITOR=MODEL pairs"),
        ("SCOREHOOK_AZUREML_WORKSPACE", "ws1", "expected the workspace's ARM id"),
        ("SCOREHOOK_ONLINE_ENDPOINT", "1-endpoint", "expected an online endpoint name"),
    ],
)
def test_each_kind_of_setting_is_checked_with_its_expected_form(name, value, expected):
    error, problems = _problems({name: value})
    assert list(problems) == [name]
    assert problems[name]["value"] == value
    assert expected in problems[name]["expected"]
    assert f"{name}={value!r}: " in str(error)


def test_good_values_of_every_kind_parse():
    settings = Settings.from_env({
        "SCOREHOOK_REQUIRE_APPROVAL": "Yes", "SCOREHOOK_LOG_CONSOLE": "0", "SCOREHOOK_CLAIM_TTL_SECONDS": "30",
        "SCOREHOOK_ALIAS_TTL_SECONDS": "0.5", "SCOREHOOK_PROMOTE_MIN_AUC": "0.8", "SCOREHOOK_GUARD_METRICS": "f1, mae",
        "SCOREHOOK_LOG_LEVEL": "debug", "SCOREHOOK_RETRAIN_LAUNCHER": "AzureML",
        "DataStorage": "UseDevelopmentStorage=true", "SCOREHOOK_DRIFT_SCHEDULE": "*/10 * * * * mon-fri",
        "SCOREHOOK_MODEL_URI": "blob://models/churn/model.onnx", "SCOREHOOK_DRIFT_MONITOR_MODELS": "mon=churn",
    })  # fmt: skip
    assert (settings.require_approval, settings.log_console) == (True, False)
    assert (settings.claim_ttl_seconds, settings.alias_ttl_seconds, settings.promote_min_auc) == (30, 0.5, 0.8)
    assert settings.guard_metrics == ("f1", "mae")
    assert settings.retrain_launcher == "AzureML" and settings.drift_schedule == "*/10 * * * * mon-fri"


def test_secrets_are_masked_in_the_error():
    error, problems = _problems({"DataStorage": "DefaultEndpointsProtocol=https;AccountKey=s3cr3t-value",
                                 "SCOREHOOK_MLFLOW_WEBHOOK_SECRET": "fine", "SCOREHOOK_ONNX_THREADS": "x"})  # fmt: skip
    assert problems["DataStorage"]["value"] == "***"
    assert "DataStorage='***': expected a storage connection string" in str(error)
    assert "s3cr3t-value" not in str(error) and "s3cr3t-value" not in json.dumps(error.details)


@pytest.mark.parametrize(
    ("uri", "detail"),
    [
        ("model:/churn@champion", None),
        ("models:/churn@", None),
        ("models:/churn/v3", None),
        ("models:/churn/0", None),
        ("models:/churn", None),
        ("azureml://registries/r/models/churn/versions/3", None),
        ("blob://models/churn.pkl", "must be an .onnx file"),
        ("blob://Models/churn.onnx", "is not a container name"),
        ("blob://models/../churn.onnx", ". or .. segment"),
    ],
)
def test_a_malformed_model_uri_is_a_configuration_error(uri, detail):
    _, problems = _problems({"SCOREHOOK_MODEL_URI": uri})
    expected = problems["SCOREHOOK_MODEL_URI"]["expected"]
    assert expected.startswith("expected models:/NAME@ALIAS, models:/NAME/VERSION or blob://CONTAINER/PATH.onnx")
    assert detail is None or detail in expected


@pytest.mark.parametrize("uri", ["models:/churn@champion", "models:/churn/3", "models:/no-such-model@prod",
                                 "blob://models/tiny/model.onnx"])  # fmt: skip
def test_a_well_formed_model_uri_is_accepted_even_when_no_such_model_exists(uri):
    assert Settings.from_env({"SCOREHOOK_MODEL_URI": uri}).model_uri == uri


@pytest.mark.parametrize(
    ("schedule", "detail"),
    [
        ("*/5 * * * *", "has 5 fields, not 6"),
        ("0 */5 * * * * *", "has 7 fields"),
        ("0 0 25 * * *", "hour: 25 is out of range 0-23"),
        ("60 * * * * *", "second: 60 is out of range 0-59"),
        ("0 0 0 0 * *", "day: 0 is out of range 1-31"),
        ("0 0 0 * 13 *", "month: 13 is out of range 1-12"),
        ("0 0 0 * * 7", "day-of-week: 7 is out of range 0-6"),
        ("0 */0 * * * *", "step '*/0' must be at least 1"),
        ("0 30-10 * * * *", "range '30-10' runs backwards"),
        ("0 0 12 ? * *", "'?' is not *, a value"),
        ("0 0 12 L * *", "'l' is not a number"),
        ("0 0 12 * * funday", "'funday' is not a number or a name (sun..sat)"),
        ("every 5 minutes", "has 3 fields"),
    ],
)
def test_a_bad_ncrontab_schedule_is_a_configuration_error(schedule, detail):
    error, problems = _problems({"SCOREHOOK_DRIFT_SCHEDULE": schedule})
    assert "expected a 6-field NCRONTAB schedule (second minute hour day month day-of-week)" in str(error)
    assert detail in problems["SCOREHOOK_DRIFT_SCHEDULE"]["expected"]


@pytest.mark.parametrize("schedule", ["0 */5 * * * *", "*/10 * * * * *", "0 30 9 * * mon-fri", "0 0 0 1 jan,jul *",
                                      "15,45 0-30/5 8-18 1-15 * 1-5", "5/15 * * * * *", "0 0 12 * * SUN"])  # fmt: skip
def test_good_ncrontab_schedules_are_accepted_and_devhost_can_run_them(schedule):
    from datetime import datetime

    from devhost.triggers import next_fire

    assert Settings.from_env({"SCOREHOOK_DRIFT_SCHEDULE": schedule}).drift_schedule == schedule
    assert next_fire(schedule, datetime(2026, 1, 1, 10, 7, 30)) > datetime(2026, 1, 1, 10, 7, 30)


def test_explicit_values_are_validated_too_and_replace_keeps_the_rest():
    settings = Settings.from_env({"SCOREHOOK_INPUT_CONTAINER": "drop"})
    changed = settings.replace(claim_ttl_seconds=5)
    assert (changed.claim_ttl_seconds, changed.input_container, settings.claim_ttl_seconds) == (5, "drop", 60)
    _, problems = _problems({}, claim_ttl_seconds=0, drift_enabled="perhaps")
    assert set(problems) == {"SCOREHOOK_CLAIM_TTL_SECONDS", "SCOREHOOK_DRIFT_ENABLED"}


def test_the_example_local_settings_are_valid():
    values = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    placeholders = {k for k, v in values.items() if v.startswith("<")}
    assert placeholders == {"DataStorage", "SCOREHOOK_MLFLOW_WEBHOOK_SECRET", "SCOREHOOK_EVENTS_TOPIC_KEY"}
    Settings.from_env({k: v for k, v in values.items() if k not in placeholders})


def test_the_literal_app_settings_in_bicep_are_valid():
    import re

    bicep = (ROOT / "infra" / "modules" / "scorehook.bicep").read_text()
    values = {name: value for name, value in re.findall(r"^\s+(\w+): '([^'$]*)'$", bicep, re.MULTILINE)
              if name in SETTING_NAMES}  # fmt: skip
    assert {"SCOREHOOK_DRIFT_SCHEDULE", "SCOREHOOK_ALIAS_TTL_SECONDS", "SCOREHOOK_REQUIRE_APPROVAL"} <= set(values)
    Settings.from_env(values)
    main = (ROOT / "infra" / "main.bicep").read_text()
    defaults = dict(re.findall(r"^param (modelUri|evaluationData) string = '([^']*)'$", main, re.MULTILINE))
    Settings.from_env({"SCOREHOOK_MODEL_URI": defaults["modelUri"],
                       "SCOREHOOK_EVALUATION_DATA": defaults["evaluationData"]})  # fmt: skip


def test_a_setting_declared_with_an_older_style_parser_is_still_validated():
    from shared.settings import _csv, _flag, _kind

    assert (_kind(float).convert("2.5"), _kind(int).convert("7"), _kind(_csv).convert("a, b")) == (2.5, 7, ("a", "b"))
    assert _kind(_flag).convert("yes") is True
    for kind, bad in ((float, "abc"), (int, "1.5"), (_flag, "maybe")):
        with pytest.raises(ValueError):
            _kind(kind).convert(bad)
