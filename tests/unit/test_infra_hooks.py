"""The preprovision hook run for real with stand-ins for ``azd`` and ``az`` on PATH (they record their
arguments): it refuses tracking URIs the app cannot use and fills in the webhook secret and principal type."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOOK = ROOT / "infra" / "hooks" / "preprovision.sh"


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
     ("azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s", "azureml-mlflow"),
     ("file:///tmp/mlruns", "must be an http(s) URL")],
)  # fmt: skip
def test_a_tracking_uri_the_app_cannot_use_stops_the_provision(tmp_path: Path, uri: str, message: str):
    code, stderr, calls = run_hook(tmp_path, {"MLFLOW_TRACKING_URI": uri})
    assert code == 1 and message in stderr
    assert calls == []  # nothing was set in the azd environment


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
