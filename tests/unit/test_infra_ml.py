"""infra/ml/ (the Azure ML definitions) agrees with itself, with the Bicep and with the pinned requirements:
the retraining environment installs exactly the app's and training's pins; compute, environment, component
and pipeline name the same things; the job runs as the cluster identity that the Bicep gives data access."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ML = ROOT / "infra" / "ml"
TRAINING_ONLY = {"scikit-learn", "skl2onnx", "onnx", "protobuf", "skops", "pandas"}  # requirements-dev.txt: what training adds


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((ML / name).read_text())


def pins(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", path.read_text(), re.M))


def test_the_training_environment_has_the_pinned_requirements():
    environment = load("environment.yml")
    conda = load(environment["conda_file"])
    (pip,) = [d["pip"] for d in conda["dependencies"] if isinstance(d, dict)]
    installed = dict(line.split("==") for line in pip)
    runtime, dev = pins(ROOT / "requirements.txt"), pins(ROOT / "requirements-dev.txt")
    expected = {name: v for name, v in runtime.items() if name != "azure-functions"}
    expected |= {name: dev[name] for name in TRAINING_ONLY}
    assert installed == expected
    assert "python=3.11" in conda["dependencies"]
    assert "azureml-mlflow" in installed  # the job logs to its workspace's azureml:// tracking URI


def test_pipeline_component_compute_and_environment_name_the_same_things():
    pipeline, component = load("retrain-pipeline.yml"), load("retrain-component.yml")
    compute, environment = load("compute.yml"), load("environment.yml")
    train = pipeline["jobs"]["train"]
    assert pipeline["settings"]["default_compute"] == f"azureml:{compute['name']}"
    bicep = (ROOT / "infra" / "modules" / "azureml.bicep").read_text()
    assert re.search(rf"^param computeName string = '{compute['name']}'$", bicep, re.M)
    assert train["environment"] == component["environment"] == f"azureml:{environment['name']}@latest"
    assert train["command"] == component["command"] and train["code"] == component["code"] == "../.."
    assert set(component["inputs"]) == set(pipeline["inputs"]) == set(train["inputs"])
    assert (compute["min_instances"], compute["identity"]["type"]) == (0, "system_assigned")


def test_the_job_runs_as_the_cluster_identity_that_reads_the_data_account():
    train = load("retrain-pipeline.yml")["jobs"]["train"]
    assert train["identity"] == {"type": "managed"}
    main = (ROOT / "infra" / "main.bicep").read_text()
    assert "principalId: withWorkspace ? azureml.outputs.computePrincipalId" in main
    reader = (ROOT / "infra" / "modules" / "data-reader.bicep").read_text()
    assert "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1" in reader  # Storage Blob Data Reader


def test_online_endpoint_and_its_blue_deployment():
    endpoint, blue = load("online-endpoint.yml"), load("online-deployment-blue.yml")
    assert blue["endpoint_name"] == endpoint["name"] and blue["name"] == "blue"
    assert endpoint["auth_mode"] == "aad_token"
    assert re.fullmatch(r"azureml:[\w-]+:\d+", blue["model"])


def test_no_subscription_that_takes_run_completed_filters_on_run_status():
    """Advanced filters are ANDed, and RunCompleted carries no RunStatus (the reference payload): a RunStatus
    filter on such a subscription would drop every completion."""
    bicep = "\n".join(p.read_text() for p in (ROOT / "infra").rglob("*.bicep"))
    blocks = re.split(r"\nresource ", bicep)
    taking = [b for b in blocks if "MachineLearningServices.RunCompleted'" in b.split("\n}\n")[0]]
    assert taking, "a subscription must take RunCompleted (retraining and batch jobs end with it)"
    for block in taking:
        body = block.split("\n}\n")[0]
        assert "data.RunStatus" not in body, body.splitlines()[0]
