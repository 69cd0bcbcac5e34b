"""The CI/CD definitions (.github/workflows/, azure-pipelines.yml) and azure.yaml's hooks, read offline with
``yaml.safe_load``: their structure, the test command (the README's), keyless sign-in, and that every hook
azure.yaml names exists for both shells."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def readme_test_command() -> str:
    """The command README.md's quick start gives for the whole suite (``make test   # ...``)."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README.md has no bash block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    (command,) = [c for c in commands if c.startswith("make test")]
    return command


def gha_runs(workflow: dict[str, Any]) -> dict[str, list[str]]:
    """Job id → the ``run`` scripts of its steps."""
    return {job_id: [step["run"].strip() for step in job["steps"] if "run" in step]
            for job_id, job in workflow["jobs"].items()}  # fmt: skip


def azdo_jobs(pipeline: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Job (or deployment) id → its steps, over every stage."""
    jobs: dict[str, list[dict[str, Any]]] = {}
    for stage in pipeline["stages"]:
        for job in stage["jobs"]:
            steps = job.get("steps") or job["strategy"]["runOnce"]["deploy"]["steps"]
            jobs[job.get("job") or job["deployment"]] = steps
    return jobs


def test_ci_lints_tests_with_the_readmes_command_and_packages():
    ci = load(WORKFLOWS / "ci.yml")
    assert {"push", "pull_request"} <= set(
        ci[True] if True in ci else ci["on"]
    )  # YAML 1.1 reads `on` as True
    assert ci["permissions"] == {"contents": "read"}
    runs = gha_runs(ci)
    assert set(runs) == {"lint", "test", "package"}
    assert runs["test"] == [readme_test_command()]
    assert runs["lint"] == ["make lint"]  # ruff, mypy and checkov (Makefile)
    assert set(ci["jobs"]["package"]["needs"]) == {"lint", "test"}
    assert any("zip" in r and "function_app.py" in r for r in runs["package"])
    uses = {s.get("uses", "").split("@")[0] for job in ci["jobs"].values() for s in job["steps"]}
    assert {"actions/setup-python", "actions/setup-node"} <= uses  # Python 3.11; Node for Azurite
    python = [s["with"]["python-version"] for j in ci["jobs"].values() for s in j["steps"]
              if s.get("uses", "").startswith("actions/setup-python")]  # fmt: skip
    assert set(python) == {"3.11"}


def test_cd_signs_in_with_oidc_and_stores_no_secret():
    text = (WORKFLOWS / "cd.yml").read_text()
    cd = load(WORKFLOWS / "cd.yml")
    assert "secrets." not in text, "CD must not read stored secrets"
    (deploy,) = cd["jobs"].values()
    assert deploy["permissions"]["id-token"] == "write"
    login = [s for s in deploy["steps"] if s.get("uses", "").startswith("azure/login@")]
    assert login and "client-secret" not in login[0]["with"] and "creds" not in login[0]["with"]
    runs = [s.get("run", "") for s in deploy["steps"]]
    assert any("--federated-credential-provider github" in r for r in runs)
    assert any(r.strip() == "azd up --no-prompt" for r in runs)
    assert deploy["env"]["AZURE_PRINCIPAL_TYPE"] == "ServicePrincipal"
    assert deploy["env"]["MLFLOW_TRACKING_URI"] == "${{ vars.MLFLOW_TRACKING_URI }}"


def test_azure_devops_pipeline_is_the_same_ci_and_cd():
    pipeline = load(ROOT / "azure-pipelines.yml")
    jobs = azdo_jobs(pipeline)
    assert set(jobs) == {"lint", "test", "package", "deploy"}
    scripts = {job: [s["script"].strip() for s in steps if "script" in s] for job, steps in jobs.items()}
    assert scripts["test"] == [readme_test_command()]
    assert scripts["lint"] == ["make lint"]
    cli = [s for s in jobs["deploy"] if s.get("task") == "AzureCLI@2"]
    assert cli and "--federated-credential-provider azure-pipelines" in cli[0]["inputs"]["inlineScript"]
    assert "azd up --no-prompt" in cli[0]["inputs"]["inlineScript"]
    assert "$(System.AccessToken)" in cli[0]["env"]["SYSTEM_ACCESSTOKEN"]  # no stored secret
    ci_package = [r for r in gha_runs(load(WORKFLOWS / "ci.yml"))["package"] if "zip -qr" in r]
    assert ci_package and ci_package[0] in scripts["package"]  # the same package both ways


def hooks() -> dict[str, dict[str, Any]]:
    return load(ROOT / "azure.yaml")["hooks"]


def test_azure_yaml_names_hooks_that_exist_for_both_shells():
    names = hooks()
    assert set(names) == {"preprovision", "postprovision", "postdeploy"}
    for name, hook in names.items():
        posix, windows = hook["posix"], hook["windows"]
        assert (posix["shell"], windows["shell"]) == ("sh", "pwsh")
        assert posix["run"] == f"infra/hooks/{name}.sh" and windows["run"] == f"infra/hooks/{name}.ps1"
        assert (ROOT / posix["run"]).is_file() and (ROOT / windows["run"]).is_file()
        assert hook["posix"]["continueOnError"] is False


@pytest.mark.parametrize("name", ["preprovision", "postprovision", "postdeploy"])
def test_posix_hooks_are_valid_sh(name: str):
    script = ROOT / hooks()[name]["posix"]["run"]
    assert script.read_text().startswith("#!/bin/sh\n")
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
    if shutil.which("pwsh"):
        ps1 = ROOT / hooks()[name]["windows"]["run"]
        parse = f"$null = [System.Management.Automation.Language.Parser]::ParseFile('{ps1}', [ref]$null, [ref]$e); if ($e) {{ exit 1 }}"
        assert subprocess.run(["pwsh", "-NoProfile", "-Command", parse]).returncode == 0


def test_make_lint_runs_the_pinned_checkov_on_infra_and_the_ci_cd_files():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "no lint target"
    lines = recipe.group(1).replace("\\\n", " ")
    assert "$(CHECKOV_VENV)/bin/python infra/bicep_parses.py infra" in lines  # unparsable Bicep fails lint
    checkov = [" ".join(line.split()) for line in lines.splitlines() if "/bin/checkov " in line]
    assert checkov and all(
        f" {target}" in checkov[0]
        for target in ("-d infra", "-d .github/workflows", "-f azure-pipelines.yml")
    )
    assert "--soft-fail" not in makefile
    assert re.search(r"^checkov==3\.3\.30$", (ROOT / "infra" / "requirements-policy.txt").read_text(), re.M)
    assert re.search(r"^CHECKOV_VENV := \.local/checkov$", makefile, re.M)  # its own venv, git-ignored
