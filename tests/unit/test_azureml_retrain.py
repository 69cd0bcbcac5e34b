"""The Azure retraining launcher: the real pipeline YAML loaded and serialised by azure-ai-ml offline, submitted
to a hand-written MLClient that records every call (no Azure, no HTTP, no mocking library)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.azureml_retrain import (
    DEFAULT_PIPELINE_YAML,
    AzureMLRetrainer,
    RetrainRejectedError,
    RetrainUnavailableError,
    recent_data,
    retrainer_job,
)
from shared.errors import ConfigurationError, InputError, TransientError
from shared.ports import Retrainer, RetrainRequest

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "https://scorehookdata.blob.core.windows.net"
REPORT = f"{ACCOUNT}/drift/churn/4/2024-05-01.json"
REQUEST = RetrainRequest(
    model="churn",
    model_version="4",
    decision_id="churn/4/2024-05-01",
    reason="x1: wasserstein 0.31 > 0.1 (noise bound 0.04)",
    inputs=(f"{ACCOUNT}/incoming/churn/2024-05-01/b.csv", f"{ACCOUNT}/incoming/churn/2024-04-30/a.csv"),
    report=REPORT,
    tags={"team": "risk", "scorehook.model": "spoofed"},
)


class _Submitted:
    def __init__(self, name: str) -> None:
        self.name = name
        self.studio_url = f"https://ml.azure.com/runs/{name}"


class _Jobs:
    """``ml_client.jobs``: records ``create_or_update``; any other attribute (get, stream, ...) is a failure."""

    def __init__(self, calls: list[tuple[str, Any, dict[str, Any]]], error: Exception | None) -> None:
        self._calls, self._error = calls, error

    def create_or_update(self, job: Any, **kwargs: Any) -> _Submitted:
        self._calls.append(("jobs.create_or_update", job, kwargs))
        if self._error is not None:
            raise self._error
        return _Submitted("plucky_lemon_x1")

    def __getattr__(self, name: str) -> Any:
        self._calls.append((f"jobs.{name}", None, {}))
        raise AssertionError(f"the launcher must not call jobs.{name}")


class _MLClient:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []
        self.jobs = _Jobs(self.calls, error)

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the launcher must not use ml_client.{name}")


def _http_error(status: int) -> Exception:
    from azure.core.exceptions import HttpResponseError

    failure = HttpResponseError(message="quota exceeded")
    failure.status_code = status
    return failure


def test_the_pipeline_yaml_loads_offline_with_the_expected_inputs_and_step() -> None:
    from azure.ai.ml import load_job

    job = load_job(DEFAULT_PIPELINE_YAML)
    assert type(job).__name__ == "PipelineJob"
    assert set(job.inputs) == {
        "drift_report",
        "recent_data",
        "recent_files",
        "model_name",
        "base_version",
        "decision_id",
        "reason",
    }
    assert job.settings.continue_on_step_failure is False
    assert job.settings.default_compute == "cpu-cluster"  # load_job strips "azureml:"
    train = job.jobs["train"]
    assert train.command.startswith("python -m training.retrain ")
    assert '--tracking-uri "$MLFLOW_TRACKING_URI"' in train.command  # set by Azure ML in every job
    bound = {"drift_report", "recent_data", "model_name", "base_version", "decision_id", "reason"}
    assert all(f"${{{{inputs.{name}}}}}" in train.command for name in bound)
    assert train.component.environment == "scorehook-train@latest"  # "azureml:" stripped on load
    assert (DEFAULT_PIPELINE_YAML.parent / train.code).resolve() == ROOT
    assert (ROOT / "training").is_dir()


def test_the_job_binds_inputs_tags_and_a_deterministic_display_name() -> None:
    job = retrainer_job(REQUEST)

    assert job.inputs.drift_report._data.path == REPORT
    assert job.inputs.recent_data._data.path == f"{ACCOUNT}/incoming/churn/"
    assert job.inputs.recent_files._data == "2024-04-30/a.csv,2024-05-01/b.csv"
    assert job.inputs.decision_id._data == "churn/4/2024-05-01"
    assert job.inputs.reason._data.startswith("x1%3A%20wasserstein%200.31")
    assert job.tags == {
        "team": "risk",
        "scorehook.decision_id": "churn/4/2024-05-01",
        "scorehook.model": "churn",  # request.tags cannot override the decision's link
        "scorehook.base_version": "4",
        "scorehook.reason": REQUEST.reason,
    }
    assert job.display_name == retrainer_job(REQUEST).display_name
    assert job.display_name.startswith("retrain-churn-v4-")
    assert retrainer_job(replace(REQUEST, decision_id="churn/4/2024-05-02")).display_name != job.display_name


def test_the_sdk_serialisation_carries_the_report_the_data_and_the_tags() -> None:
    body = retrainer_job(REQUEST, compute="azureml:gpu-cluster")._to_rest_object().as_dict()["properties"]

    assert body["jobType"] == "Pipeline"
    assert body["inputs"]["drift_report"] == {"uri": REPORT, "jobInputType": "uri_file"}
    assert body["inputs"]["recent_data"] == {
        "uri": f"{ACCOUNT}/incoming/churn/",
        "jobInputType": "uri_folder",
    }
    assert body["inputs"]["model_name"] == {"value": "churn", "jobInputType": "literal"}
    assert body["tags"]["scorehook.decision_id"] == "churn/4/2024-05-01"
    assert body["tags"]["scorehook.reason"] == REQUEST.reason
    assert body["settings"]["default_compute"] == "gpu-cluster"
    assert body["settings"]["continue_on_step_failure"] is False


def test_launch_submits_once_to_the_experiment_and_returns_at_once() -> None:
    client = _MLClient()
    retrainer = AzureMLRetrainer(client, experiment_name="retrain-on-drift")
    assert isinstance(retrainer, Retrainer)

    run = retrainer.launch(REQUEST)

    assert [call[0] for call in client.calls] == ["jobs.create_or_update"]  # no get/stream: never polled
    _, job, kwargs = client.calls[0]
    assert kwargs == {"experiment_name": "retrain-on-drift"}
    assert job.experiment_name == "retrain-on-drift"
    assert job.tags["scorehook.decision_id"] == REQUEST.decision_id
    assert job.inputs.drift_report._data.path == REPORT
    assert (run.run_id, run.launcher) == ("plucky_lemon_x1", "azureml")
    assert run.details["studio_url"] == "https://ml.azure.com/runs/plucky_lemon_x1"
    assert run.details["experiment"] == "retrain-on-drift"


@pytest.mark.parametrize("status", [500, 503, 429, 408])
def test_server_errors_and_throttling_are_transient(status: int) -> None:
    with pytest.raises(RetrainUnavailableError, match=f"Azure ML answered {status}") as caught:
        AzureMLRetrainer(_MLClient(error=_http_error(status))).launch(REQUEST)
    assert isinstance(caught.value, TransientError) and caught.value.details["status"] == status


def test_transport_errors_are_transient() -> None:
    from azure.core.exceptions import ServiceRequestError

    with pytest.raises(RetrainUnavailableError) as caught:
        AzureMLRetrainer(_MLClient(error=ServiceRequestError("connection refused"))).launch(REQUEST)
    assert isinstance(caught.value, TransientError) and isinstance(
        caught.value.__cause__, ServiceRequestError
    )


@pytest.mark.parametrize("status", [400, 403, 404])
def test_client_errors_are_final(status: int) -> None:
    with pytest.raises(RetrainRejectedError, match=f"rejected it \\({status}\\)") as caught:
        AzureMLRetrainer(_MLClient(error=_http_error(status))).launch(REQUEST)
    assert isinstance(caught.value, InputError)


def test_sdk_validation_errors_are_final() -> None:
    from azure.ai.ml.exceptions import ValidationException

    failure = ValidationException(message="compute not found", no_personal_data_message="compute not found")
    with pytest.raises(RetrainRejectedError, match="compute not found"):
        AzureMLRetrainer(_MLClient(error=failure)).launch(REQUEST)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"report": None}, "needs the drift report"),
        ({"inputs": ()}, "needs recent inputs"),
        ({"inputs": (f"{ACCOUNT}/a/x.csv", f"{ACCOUNT}/b/y.csv")}, "several containers"),
        (
            {"inputs": (f"{ACCOUNT}/a/x.csv", "https://other.blob.core.windows.net/a/y.csv")},
            "several storage",
        ),
        ({"inputs": (f"{ACCOUNT}/x.csv",)}, "files inside a container"),
    ],
)
def test_requests_that_cannot_run_are_rejected_before_anything_is_sent(
    change: dict[str, Any], message: str
) -> None:
    client = _MLClient()
    with pytest.raises(RetrainRejectedError, match=message):
        AzureMLRetrainer(client).launch(replace(REQUEST, **change))
    assert client.calls == []


def test_blob_names_reach_the_command_line_percent_encoded() -> None:
    folder, files = recent_data(
        [f"{ACCOUNT}/in/d/it's;$(rm -rf ~),1.csv", f"{ACCOUNT}/in/d/sub/b%20c.csv?sv=sas#frag"]
    )
    assert folder == f"{ACCOUNT}/in/d/"
    assert files == "it%27s%3B%24%28rm%20-rf%20~%29%2C1.csv,sub/b%20c.csv"
    job = retrainer_job(replace(REQUEST, decision_id="ext:monitor run 'x'"))
    assert job.inputs.decision_id._data == "ext%3Amonitor%20run%20%27x%27"
    assert job.tags["scorehook.decision_id"] == "ext:monitor run 'x'"  # tags keep the raw id


def test_a_broken_pipeline_yaml_is_a_configuration_error(tmp_path: Path) -> None:
    broken = tmp_path / "retrain.yml"
    broken.write_text("type: pipeline\ninputs:\n  model_name:\n    type: string\njobs: {}\n")
    with pytest.raises(ConfigurationError, match="does not load"):
        retrainer_job(REQUEST, broken)
    with pytest.raises(ConfigurationError):
        retrainer_job(REQUEST, tmp_path / "missing.yml")
