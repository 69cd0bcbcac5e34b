"""The local retraining launcher: ``python -m training.retrain`` as a separate process.

The process reads the drift window's input files from blob storage (their labelled rows), trains, and
registers a new version in the MLflow registry; the registry's webhook then starts the deployment flow.
``launch`` returns as soon as the process started; a reaper thread reports its exit to ``on_exit`` (the drift
monitor's ``retraining_finished``), as Azure ML's run events do for the Azure launcher.

Example:
    >>> LocalProcessRetrainer("http://127.0.0.1:5000").launch(request)   # doctest: +SKIP
    RetrainRun(run_id='local-4242', launcher='local', details={'pid': 4242, 'log': '/tmp/...log'})
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.errors import ConfigurationError
from shared.logs import get_logger
from shared.ports import RetrainFinished, RetrainRequest, RetrainRun

__all__ = ["LocalProcessRetrainer", "retrain_command"]

log = get_logger("scorehook.drift")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def retrain_command(request: RetrainRequest, tracking_uri: str, connection_env: str) -> list[str]:
    """The command line of one local retraining.

    Example:
        >>> from shared.ports import RetrainRequest
        >>> retrain_command(RetrainRequest("m", "3", "m/3/w", "drift", ("http://h/a/c/f.csv",)), "http://t", "DataStorage")[3:7]
        ['--tracking-uri', 'http://t', '--name', 'm']
    """
    command = [
        sys.executable, "-m", "training.retrain", "--tracking-uri", tracking_uri, "--name", request.model,
        "--connection-string-env", connection_env, "--decision-id", request.decision_id,
        "--reason", request.reason, "--base-version", request.model_version,
    ]  # fmt: skip
    for url in request.inputs:
        command += ["--input", url]
    for key, value in request.tags.items():
        command += ["--tag", f"{key}={value}"]
    return command


class LocalProcessRetrainer:
    """:class:`shared.ports.Retrainer` that starts ``training.retrain`` in its own process."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        connection_env: str = "DataStorage",
        log_dir: str | Path | None = None,
        on_exit: Callable[[RetrainFinished], Any] | None = None,
    ) -> None:
        self.tracking_uri, self.connection_env, self.on_exit = tracking_uri, connection_env, on_exit
        self.log_dir = Path(log_dir or Path(tempfile.gettempdir()) / "scorehook-retrain")

    def launch(self, request: RetrainRequest) -> RetrainRun:
        if self.connection_env not in os.environ:
            raise ConfigurationError(
                f"app setting {self.connection_env} is not set", setting=self.connection_env
            )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(request.decision_id.encode()).hexdigest()[:12]
        log_path = self.log_dir / f"retrain-{request.model}-{name}.log"
        command = retrain_command(request, self.tracking_uri, self.connection_env)
        with open(log_path, "ab") as out:
            process = subprocess.Popen(
                command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        threading.Thread(target=self._reap, args=(process, request, log_path), daemon=True).start()
        return RetrainRun(f"local-{process.pid}", "local", {"pid": process.pid, "log": str(log_path)})

    def _reap(self, process: subprocess.Popen[bytes], request: RetrainRequest, log_path: Path) -> None:
        code = process.wait()
        details = {"exit_code": code, "log": str(log_path)}
        if self.on_exit is None:
            log.info("local retraining ended", extra={"decision_id": request.decision_id, **details})
            return
        finished = RetrainFinished(
            request.decision_id,
            request.model,
            f"local-{process.pid}",
            "succeeded" if code == 0 else "failed",
            details,
        )
        try:
            self.on_exit(finished)
        except Exception as exc:  # a thread of its own: log, never raise into nowhere
            log.warning(
                "retraining outcome not recorded", extra={"error_type": type(exc).__name__, "error": str(exc)}
            )
