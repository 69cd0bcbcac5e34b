"""The azd hooks run for real with stand-ins for ``azd`` and ``az`` on PATH (they record their arguments):
preprovision refuses tracking URIs the app cannot use and fills in the webhook secret and principal type;
postprovision uploads a real labelled holdout and creates the Azure ML assets in the workspace's group;
postdeploy provisions a second time once and prints the webhook URL."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / "infra" / "hooks"
HOOK = HOOKS / "preprovision.sh"
WORKSPACE = "/subscriptions/s1/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/ws1"


def run_hook(
    tmp_path: Path, env: dict[str, str], az_user_type: str = "user", vault_secret: str = ""
) -> tuple[int, str, list[str]]:
    """Exit code, stderr and the recorded ``azd``/``az`` calls of one hook run."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "azd").write_text(f'#!/bin/sh\necho "azd $*" >> {log}\n')
    (bin_dir / "az").write_text(
        f'#!/bin/sh\necho "az $*" >> {log}\n'
        f'case "$*" in "account show"*) echo {az_user_type} ;; "keyvault secret show"*) echo "{vault_secret}" ;; esac\n'
    )
    for tool in ("azd", "az"):
        (bin_dir / tool).chmod(0o755)
    base = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    done = subprocess.run(["sh", str(HOOK)], env={**base, **env}, capture_output=True, text=True, timeout=30)
    calls = log.read_text().splitlines() if log.exists() else []
    return done.returncode, done.stderr, calls


@pytest.mark.parametrize(
    ("uri", "message"),
    [("", "MLFLOW_TRACKING_URI is not set"),
     ("azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s", "is not a workspace's tracking URI"),
     (f"azureml://westeurope.api.azureml.ms/mlflow/v1.0{WORKSPACE}", f"azd env set AZUREML_WORKSPACE {WORKSPACE}"),
     ("file:///tmp/mlruns", "must be an http(s) URL")],
)  # fmt: skip
def test_a_tracking_uri_the_app_cannot_use_stops_the_provision(tmp_path: Path, uri: str, message: str):
    code, stderr, calls = run_hook(tmp_path, {"MLFLOW_TRACKING_URI": uri})
    assert code == 1 and message in stderr
    assert calls == []  # nothing was set in the azd environment


def test_a_workspace_tracking_uri_passes_with_that_workspace_given(tmp_path: Path):
    uri = f"azureml://westeurope.api.azureml.ms/mlflow/v1.0{WORKSPACE}"
    code, stderr, _ = run_hook(tmp_path, {"MLFLOW_TRACKING_URI": uri, "AZUREML_WORKSPACE": WORKSPACE.upper()})
    assert code == 0, stderr  # ARM ids compare without case
    other = WORKSPACE.replace("/ws1", "/ws2")
    (tmp_path / "other").mkdir()
    code, stderr, calls = run_hook(tmp_path / "other", {"MLFLOW_TRACKING_URI": uri, "AZUREML_WORKSPACE": other})
    assert code == 1 and f"AZUREML_WORKSPACE is\n'{other}'" in stderr and calls == []


def test_a_first_provision_gets_a_fresh_secret_and_the_principal_type(tmp_path: Path):
    code, stderr, calls = run_hook(
        tmp_path, {"MLFLOW_TRACKING_URI": "https://mlflow.example.com"}, "servicePrincipal"
    )
    assert code == 0, stderr
    (secret,) = [c.split()[-1] for c in calls if c.startswith("azd env set WEBHOOK_SECRET ")]
    assert re.fullmatch(r"[0-9a-f]{64}", secret)  # 32 random bytes
    assert "azd env set AZURE_PRINCIPAL_TYPE ServicePrincipal" in calls
    (tmp_path / "again").mkdir()
    _, _, again = run_hook(tmp_path / "again", {"MLFLOW_TRACKING_URI": "https://mlflow.example.com"})
    (other,) = [c.split()[-1] for c in again if c.startswith("azd env set WEBHOOK_SECRET ")]
    assert other != secret
    assert "azd env set AZURE_PRINCIPAL_TYPE User" in again


def test_a_secret_already_chosen_is_kept(tmp_path: Path):
    env = {
        "MLFLOW_TRACKING_URI": "http://10.0.0.4:5000",
        "WEBHOOK_SECRET": "s" * 40,
        "AZURE_PRINCIPAL_TYPE": "User",
    }
    code, _, calls = run_hook(tmp_path, env)
    assert code == 0 and calls == []


def test_a_fresh_environment_of_an_existing_deployment_reuses_the_vaults_secret(tmp_path: Path):
    env = {"MLFLOW_TRACKING_URI": "https://mlflow.example.com", "AZURE_KEY_VAULT_NAME": "kv-abc",
           "AZURE_PRINCIPAL_TYPE": "ServicePrincipal"}  # fmt: skip
    code, _, calls = run_hook(tmp_path, env, vault_secret="f" * 64)
    assert code == 0
    assert any(
        c.startswith("az keyvault secret show --vault-name kv-abc -n scorehook-mlflow-webhook-secret")
        for c in calls
    )
    assert f"azd env set WEBHOOK_SECRET {'f' * 64}" in calls


def run_script(tmp_path: Path, script: str, env: dict[str, str], az_body: str) -> tuple[int, str, list[str]]:
    """Exit code, stdout + stderr and recorded calls of ``infra/hooks/<script>`` with an ``az`` whose replies
    ``az_body`` (sh ``case`` branches on ``$*``) defines."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    (bin_dir / "azd").write_text(f'#!/bin/sh\necho "azd $*" >> {log}\n')
    (bin_dir / "az").write_text(f'#!/bin/sh\necho "az $*" >> {log}\ncase "$*" in\n{az_body}\nesac\n')
    for tool in ("azd", "az"):
        (bin_dir / tool).chmod(0o755)
    base = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    done = subprocess.run(["sh", str(HOOKS / script)], env={**base, **env}, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    calls = log.read_text().splitlines() if log.exists() else []
    return done.returncode, done.stdout + done.stderr, calls


def test_postprovision_uploads_a_labelled_holdout_when_none_is_given(tmp_path: Path):
    import pyarrow.csv as pacsv

    uploaded = tmp_path / "uploaded.csv"
    az = f"""  "storage blob exists"*) echo false ;;
  "storage blob upload"*) while [ "$1" != "-f" ]; do shift; done; cp "$2" {uploaded} ;;"""
    code, output, calls = run_script(
        tmp_path, "postprovision.sh", {"AZURE_DATA_STORAGE_ACCOUNT_NAME": "stdataabc"}, az
    )
    assert code == 0, output
    (upload,) = [c for c in calls if c.startswith("az storage blob upload")]
    assert "--account-name stdataabc -c evaluation -n holdout.csv" in upload and "--auth-mode login" in upload
    table = pacsv.read_csv(uploaded)
    assert table.num_rows == 5000 and "label" in table.column_names


def test_postprovision_keeps_given_data_and_creates_the_azure_ml_assets_in_the_workspace(tmp_path: Path):
    workspace = "/subscriptions/sub-1/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/ws-1"
    env = {"AZURE_DATA_STORAGE_ACCOUNT_NAME": "stdataabc", "EVALUATION_DATA": "blob://mine/labelled.parquet",
           "AZUREML_WORKSPACE": workspace}  # fmt: skip
    code, output, calls = run_script(tmp_path, "postprovision.sh", env, '  "extension show"*) exit 0 ;;')
    assert code == 0, output
    assert not [c for c in calls if c.startswith("az storage")]  # given data: nothing generated or uploaded
    where = "--subscription sub-1 -g rg-ml -w ws-1"
    assert f"az ml environment create -f infra/ml/environment.yml {where} --only-show-errors" in calls
    assert f"az ml component create -f infra/ml/retrain-component.yml {where} --only-show-errors" in calls


def test_postdeploy_subscribes_once_then_prints_the_webhook_url(tmp_path: Path):
    env = {"AZURE_RESOURCE_GROUP": "rg-x", "AZURE_FUNCTION_APP_NAME": "func-x",
           "WEBHOOK_URL": "https://func-x.azurewebsites.net/api/mlflow-webhook"}  # fmt: skip
    az = """  "functionapp show"*) echo /subscriptions/s/resourceGroups/rg-x/providers/Microsoft.Web/sites/func-x ;;
  "rest"*) echo Resolved ;;"""
    code, output, calls = run_script(tmp_path, "postdeploy.sh", env, az)
    assert code == 0, output
    assert calls[:2] == ["azd env set SUBSCRIBE_FUNCTIONS true", "azd provision --no-prompt"]
    assert any("config/configreferences/appsettings/SCOREHOOK_MLFLOW_WEBHOOK_SECRET" in c for c in calls)
    assert "MLflow registry webhook URL: https://func-x.azurewebsites.net/api/mlflow-webhook" in output
    assert "create_webhook(" in output and "not Resolved" not in output
    (tmp_path / "again").mkdir()
    _, _, again = run_script(tmp_path / "again", "postdeploy.sh", {**env, "SUBSCRIBE_FUNCTIONS": "true"}, az)
    assert not [c for c in again if c.startswith("azd")]  # already subscribed: no second provision


def test_postdeploy_with_a_workspace_registry_prints_no_webhook_command(tmp_path: Path):
    env = {"AZURE_RESOURCE_GROUP": "rg-x", "AZURE_FUNCTION_APP_NAME": "func-x", "SUBSCRIBE_FUNCTIONS": "true",
           "WEBHOOK_URL": "https://func-x.azurewebsites.net/api/mlflow-webhook",
           "MLFLOW_TRACKING_URI": f"azureml://westeurope.api.azureml.ms/mlflow/v1.0{WORKSPACE}"}  # fmt: skip
    az = """  "functionapp show"*) echo /subscriptions/s/resourceGroups/rg-x/providers/Microsoft.Web/sites/func-x ;;
  "rest"*) echo Resolved ;;"""
    code, output, _ = run_script(tmp_path, "postdeploy.sh", env, az)
    assert code == 0, output
    assert "ModelRegistered events" in output and "create_webhook(" not in output
    assert "Upload a file to score:" in output and "Scorehook is deployed:" in output
