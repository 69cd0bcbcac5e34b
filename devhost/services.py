"""Real local services, started and stopped by the project itself: Azurite and an MLflow server.

Both listen on loopback ports chosen at run time, so parallel runs never collide. Processes run in
their own session and are stopped on exit (also on Ctrl-C, through ``atexit`` and the context managers).

Example:
    >>> with Azurite() as storage, MlflowServer(data_dir=tmp) as mlflow:   # doctest: +SKIP
    ...     print(storage.connection_string, mlflow.tracking_uri)
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO

__all__ = ["AZURITE_ACCOUNT", "MLFLOW_SERVER_VENV", "PROJECT_ROOT", "Azurite", "MlflowServer", "ServiceError",
           "free_port", "mlflow_server_binary"]  # fmt: skip

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The full mlflow (the server) lives in a venv of its own, built by `make bootstrap` from
# requirements-mlflow-server.txt: the app's venv has only mlflow-skinny (azureml-mlflow caps it).
MLFLOW_SERVER_VENV = PROJECT_ROOT / ".local" / "mlflow-server"
AZURITE_ACCOUNT = "devstoreaccount1"
# The emulator's well-known, documented development key (not a secret: every Azurite has it).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at (http://\S+)")
_RUNNING: set[_Service] = set()


class ServiceError(RuntimeError):
    """A local service did not start or stopped unexpectedly."""


def mlflow_server_binary(env: Mapping[str, str] | None = None, venv: Path = MLFLOW_SERVER_VENV) -> str:
    """The ``mlflow`` executable that runs ``mlflow server``: ``SCOREHOOK_MLFLOW_SERVER_BIN`` when set, else
    the server's venv (``.local/mlflow-server/bin/mlflow``), else the ``mlflow`` beside this interpreter or on
    ``PATH`` (only an environment with the full mlflow, not mlflow-skinny alone, can serve).

    Example:
        >>> mlflow_server_binary({"SCOREHOOK_MLFLOW_SERVER_BIN": "/opt/mlflow/bin/mlflow"})
        '/opt/mlflow/bin/mlflow'
    """
    explicit = (os.environ if env is None else env).get("SCOREHOOK_MLFLOW_SERVER_BIN")
    if explicit:
        return explicit
    own = venv / "bin" / "mlflow"
    if own.exists():
        return str(own)
    beside = Path(sys.executable).parent / "mlflow"
    return str(beside) if beside.exists() else (shutil.which("mlflow") or "mlflow")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Service:
    name = "service"

    def __init__(self, log_dir: Path | None = None) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix=f"scorehook-{self.name}-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{self.name}.log"

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None, pipe: bool = False) -> None:
        log: IO[bytes] = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child's lifetime
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE if pipe else log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        log.close()
        _RUNNING.add(self)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process group: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        proc, self.process = self.process, None
        _RUNNING.discard(self)
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def _fail(self, why: str) -> ServiceError:
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        self.stop()
        return ServiceError(f"{self.name} {why}; log {self.log_path}:\n{tail}")

    def __enter__(self) -> _Service:
        self.start()  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Azurite(_Service):
    """The Azure Storage emulator (blob, queue, table) from the project's own ``node_modules``.

    ``data_dir=None`` keeps everything in memory (tests); a folder makes a persistent dev store.
    ``ports`` (``{"blob": P1, "queue": P2, "table": P3}``) fixes the ports; otherwise free ones are picked at
    the first start and kept, so :meth:`restart` (or ``stop`` then ``start``) comes back on the same
    endpoints, with the same data when ``data_dir`` is set (fault tests stop storage mid-run).

    Example:
        >>> storage = Azurite(data_dir=tmp).start()                        # doctest: +SKIP
        >>> storage.stop(); storage.start()                                # doctest: +SKIP
    """

    name = "azurite"

    def __init__(
        self, data_dir: Path | None = None, log_dir: Path | None = None, ports: dict[str, int] | None = None
    ) -> None:
        super().__init__(log_dir)
        self.data_dir = data_dir
        self.ports: dict[str, int] = dict(ports or {})
        self.endpoints: dict[str, str] = {}

    def restart(self, timeout: float = 60.0) -> Azurite:
        """Stop and start again on the same ports (same data when ``data_dir`` is set)."""
        self.stop()
        for attempt in range(3):  # a port can take a moment to be free again
            try:
                return self.start(timeout)
            except ServiceError:
                if attempt == 2:
                    raise
                time.sleep(1.0)
        return self

    def start(self, timeout: float = 60.0) -> Azurite:
        """Start Azurite on its ports (three free loopback ports the first time) and wait until all three
        services listen."""
        binary = PROJECT_ROOT / "node_modules" / ".bin" / "azurite"
        if not binary.exists():
            raise ServiceError(f"{binary} is missing: run `npm ci` (make bootstrap) first")
        argv = [str(binary), "--silent", "--skipApiVersionCheck", "--disableTelemetry", "--loose"]
        if self.data_dir is None:
            argv.append("--inMemoryPersistence")
        else:
            Path(self.data_dir).mkdir(parents=True, exist_ok=True)
            argv += ["--location", str(self.data_dir)]
        for service in ("blob", "queue", "table"):
            argv += [f"--{service}Host", "127.0.0.1", f"--{service}Port", str(self.ports.get(service, 0))]
        self.endpoints = {}
        self._spawn(argv, pipe=True)
        assert self.process is not None and self.process.stdout is not None
        stdout, deadline = self.process.stdout, time.monotonic() + timeout
        with open(self.log_path, "ab") as log:
            while len(self.endpoints) < 3:
                if time.monotonic() > deadline:
                    raise self._fail("did not start in time")
                line = stdout.readline()
                if not line:
                    raise self._fail("exited during start-up")
                log.write(line)
                match = _LISTENING.search(line.decode(errors="replace"))
                if match:
                    service, url = match.group(1).lower(), match.group(2).rstrip("/")
                    self.endpoints[service] = f"{url}/{AZURITE_ACCOUNT}"
                    self.ports[service] = int(url.rsplit(":", 1)[1])
        threading.Thread(target=self._drain, args=(stdout,), daemon=True, name="azurite-stdout").start()
        return self

    def _drain(self, stdout: IO[bytes]) -> None:
        with open(self.log_path, "ab") as log:
            for line in stdout:
                log.write(line)

    @property
    def connection_string(self) -> str:
        """The connection string for the emulator's account, with all three endpoints."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.endpoints['blob']};QueueEndpoint={self.endpoints['queue']};"
            f"TableEndpoint={self.endpoints['table']};"
        )


class MlflowServer(_Service):
    """``mlflow server`` with a SQLite backend and a local artifact root, webhooks allowed on loopback."""

    name = "mlflow"

    def __init__(
        self, data_dir: Path | None = None, log_dir: Path | None = None, port: int | None = None
    ) -> None:
        super().__init__(log_dir or data_dir)
        self.data_dir = Path(data_dir) if data_dir else self.log_dir
        self.port = port
        self.tracking_uri = ""

    def start(self, timeout: float = 90.0) -> MlflowServer:
        """Start the server on a free port and wait for ``/health``."""
        from cryptography.fernet import Fernet

        self.data_dir.mkdir(parents=True, exist_ok=True)
        key_file = self.data_dir / "webhook-encryption.key"
        if not key_file.exists():
            key_file.write_bytes(Fernet.generate_key())
        binary = mlflow_server_binary()
        for _attempt in range(3):
            port = self.port or free_port()
            argv = [
                binary,
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}",
                "--default-artifact-root",
                str((self.data_dir / "artifacts").resolve()),
            ]
            env = {
                "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
                "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
                "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": key_file.read_text().strip(),
            }
            self._spawn(argv, env=env)
            self.tracking_uri = f"http://127.0.0.1:{port}"
            if self._wait_healthy(timeout):
                return self
            self.stop()
        raise self._fail(f"did not become healthy ({binary} server; `make bootstrap` builds its venv, "
                         f"{MLFLOW_SERVER_VENV.relative_to(PROJECT_ROOT)}, from requirements-mlflow-server.txt)")

    def restart(self, timeout: float = 90.0) -> MlflowServer:
        """Stop and start again on the same port, with the same database and artifacts."""
        if self.tracking_uri:
            self.port = int(self.tracking_uri.rsplit(":", 1)[1])
        self.stop()
        return self.start(timeout)

    def healthy(self, timeout: float = 5.0) -> bool:
        """Whether the server answers ``/health`` (its CLI process can outlive a crashed web server)."""
        try:
            with urllib.request.urlopen(f"{self.tracking_uri}/health", timeout=timeout) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _wait_healthy(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.tracking_uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.25)
        return False


@atexit.register
def _stop_all() -> None:
    for service in list(_RUNNING):
        service.stop(timeout=5)
