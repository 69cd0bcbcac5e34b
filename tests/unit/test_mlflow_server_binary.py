"""Which ``mlflow`` runs ``mlflow server``: the full mlflow lives in a venv of its own (the app's venv has only
mlflow-skinny, which azureml-mlflow caps below the server's release)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devhost.services import MLFLOW_SERVER_VENV, PROJECT_ROOT, mlflow_server_binary


def test_the_environment_variable_wins_then_the_servers_venv(tmp_path: Path):
    venv = tmp_path / "mlflow-server"
    (venv / "bin").mkdir(parents=True)
    assert mlflow_server_binary({"SCOREHOOK_MLFLOW_SERVER_BIN": "/opt/m/bin/mlflow"}, venv) == "/opt/m/bin/mlflow"
    assert mlflow_server_binary({}, venv) != str(venv / "bin" / "mlflow")  # no binary there: the fallback
    (venv / "bin" / "mlflow").write_text("#!/bin/sh\n")
    assert mlflow_server_binary({}, venv) == str(venv / "bin" / "mlflow")
    assert MLFLOW_SERVER_VENV == PROJECT_ROOT / ".local" / "mlflow-server"


def test_the_app_venv_has_mlflow_skinny_only_and_the_server_venv_the_full_mlflow():
    from importlib.metadata import PackageNotFoundError, version

    assert version("mlflow-skinny") == "3.15.0" and version("azureml-mlflow") == "1.62.0.post6"
    try:
        full = version("mlflow")
    except PackageNotFoundError:
        full = None
    assert full is None, "the full mlflow in the app's venv would replace mlflow-skinny's files"
    binary = Path(mlflow_server_binary({}))
    assert binary.parent.parent != Path(sys.executable).parent.parent  # not the app's own venv
    done = subprocess.run([str(binary), "server", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--backend-store-uri" in done.stdout
