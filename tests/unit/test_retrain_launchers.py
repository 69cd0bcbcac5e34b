"""Which retraining launcher the settings give, and the local launcher's process (a real child process)."""

from __future__ import annotations

import sys
import time

import pytest

from shared.adapters.azureml_retrain import AzureMLRetrainer
from shared.adapters.retrain_local import LocalProcessRetrainer, retrain_command
from shared.errors import ConfigurationError
from shared.ports import RetrainRequest
from shared.services import retrainer_from_settings
from shared.settings import Settings

WORKSPACE = "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.MachineLearningServices/workspaces/ws1"


def test_the_launcher_follows_the_setting():
    assert retrainer_from_settings(Settings.from_env({})) is None  # default: report only
    local = retrainer_from_settings(
        Settings.from_env({}, retrain_launcher="local", mlflow_tracking_uri="http://m")
    )
    assert isinstance(local, LocalProcessRetrainer) and local.tracking_uri == "http://m"
    azure = retrainer_from_settings(
        Settings.from_env({}, retrain_launcher="azureml", azureml_workspace=WORKSPACE)
    )
    assert isinstance(azure, AzureMLRetrainer) and azure.pipeline_yaml.is_file()
    with pytest.raises(ConfigurationError, match="SCOREHOOK_AZUREML_WORKSPACE"):
        retrainer_from_settings(Settings.from_env({}, retrain_launcher="azureml"))
    with pytest.raises(ConfigurationError, match="local, azureml or none"):
        retrainer_from_settings(Settings.from_env({}, retrain_launcher="cron"))


def test_the_local_command_carries_the_decision():
    request = RetrainRequest("m", "3", "m/3/20261123T100000Z", "drift", ("http://h/a/c/1.csv", "http://h/a/c/2.csv"),
                             tags={"team": "risk"})  # fmt: skip
    command = retrain_command(request, "http://mlflow", "DataStorage")
    assert command[:3] == [sys.executable, "-m", "training.retrain"]
    pairs = dict(zip(command[3::2], command[4::2], strict=False))
    assert pairs["--decision-id"] == "m/3/20261123T100000Z" and pairs["--base-version"] == "3"
    assert command.count("--input") == 2 and "team=risk" in command


def test_the_local_launcher_returns_at_once_and_logs_the_process(tmp_path, monkeypatch):
    monkeypatch.setenv("DataStorage", "UseDevelopmentStorage=true")
    launcher = LocalProcessRetrainer("http://127.0.0.1:9", log_dir=tmp_path)
    run = launcher.launch(RetrainRequest("m", "1", "m/1/w", "drift"))  # no inputs: the process exits 1
    assert run.launcher == "local" and run.run_id == f"local-{run.details['pid']}"
    log = tmp_path / next(p.name for p in tmp_path.iterdir())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and '"status"' not in log.read_text():
        time.sleep(0.2)
    assert "neither was given" in log.read_text()  # the child ran training.retrain and said why it stopped


def test_the_local_launcher_needs_the_storage_setting(monkeypatch):
    monkeypatch.delenv("DataStorage", raising=False)
    with pytest.raises(ConfigurationError, match="DataStorage"):
        LocalProcessRetrainer("http://m").launch(RetrainRequest("m", "1", "d", "drift"))
