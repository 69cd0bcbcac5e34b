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
        {"SCOREHOOK_ALLOWED_STORAGE_ACCOUNTS": " a, b ,,", "SCOREHOOK_MODEL_CACHE_SIZE": "7"}
    )
    assert settings.allowed_storage_accounts == ("a", "b")
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
        {"DataStorage": "AccountKey=s3cr3t-value", "SCOREHOOK_EVENTS_TOPIC_KEY": "k"}
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
