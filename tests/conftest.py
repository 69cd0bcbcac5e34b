"""Shared fixtures: real Azurite and a real MLflow server, started once per test session on free
loopback ports and stopped at the end; a devhost subprocess for end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVENTS = Path(__file__).resolve().parent / "events"
sys.path.insert(0, str(ROOT))

from devhost.runtime import local_settings  # noqa: E402
from devhost.services import Azurite, MlflowServer, free_port  # noqa: E402


def load_event(name: str) -> Any:
    """A fixture event file from ``tests/events``."""
    return json.loads((EVENTS / name).read_text())


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with Azurite(log_dir=tmp_path_factory.mktemp("azurite")) as service:
        yield service  # type: ignore[misc]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with MlflowServer(data_dir=tmp_path_factory.mktemp("mlflow")) as service:
        yield service  # type: ignore[misc]


@pytest.fixture(scope="session")
def mlflow_tracking_uri(mlflow_server: MlflowServer) -> str:
    return mlflow_server.tracking_uri


@pytest.fixture
def blob_service(azurite: Azurite) -> Any:
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(azurite.connection_string)


@pytest.fixture
def unique() -> str:
    """A short unique suffix for containers, tables and model names (tests share one Azurite)."""
    return uuid.uuid4().hex[:8]


class DevhostProcess:
    """A devhost running as its own process (as ``func start`` would), reached over HTTP."""

    def __init__(
        self, settings: dict[str, Any], settings_path: Path, process: subprocess.Popen[str], log: Path
    ):
        self.settings, self.settings_path, self.process, self.log = settings, settings_path, process, log
        self.base_url = f"http://127.0.0.1:{settings['Host']['LocalHttpPort']}"
        self.function_key = settings["Host"]["FunctionKey"]
        self.master_key = settings["Host"]["MasterKey"]
        self.env = settings["Values"]

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> tuple[int, dict[str, str], bytes]:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.base_url}{path}", data=data, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def deliveries(self) -> list[dict[str, Any]]:
        _, _, body = self.request(
            "GET", "/admin/eventgrid/deliveries", headers={"x-functions-key": self.master_key}
        )
        return json.loads(body)["deliveries"]

    def wait_for(self, predicate: Any, timeout: float = 60, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            if self.process.poll() is not None:
                raise AssertionError(f"devhost exited: {self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; devhost log:\n{self.log.read_text()[-3000:]}")


def start_devhost(
    tmp_path: Path,
    azurite: Azurite,
    mlflow_uri: str,
    *,
    app: str = "function_app:app",
    subscriptions: Path | None = None,
    extra: dict[str, str] | None = None,
    wait: bool = True,
) -> DevhostProcess:
    """Write a local.settings.json for the running services and start devhost on a free port (``wait``: until
    it answers; a host meant to exit at once is not waited for)."""
    port = free_port()
    settings = local_settings(azurite, mlflow_uri, port)
    settings["Values"].update(extra or {})
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps(settings))
    log = tmp_path / "devhost.log"
    argv = [sys.executable, "-m", "devhost", "host", "--settings", str(path), "--app", app]
    if subscriptions:
        argv += ["--subscriptions", str(subscriptions)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "e2e")])}
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=open(log, "w"),  # noqa: SIM115 - the child process owns it
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    dev = DevhostProcess(settings, path, process, log)

    def up() -> bool:
        try:
            return (
                dev.request(
                    "GET", "/admin/host/status", headers={"x-functions-key": dev.master_key}, timeout=2
                )[0]
                == 200
            )
        except OSError:
            return False

    if wait:
        dev.wait_for(up, timeout=60, what="devhost to start")
    return dev


def stop_devhost(dev: DevhostProcess) -> None:
    dev.process.terminate()
    try:
        dev.process.wait(10)
    except subprocess.TimeoutExpired:
        dev.process.kill()


@contextlib.contextmanager
def registry_devhost(
    azurite: Azurite, tmp_path_factory: Any, prefix: str, extra: dict[str, str] | None = None
) -> Iterator[DevhostProcess]:
    """devhost with an MLflow server of its own (MLflow caches its webhook list, so the webhook must exist
    before any event): a unique model name, ledger table and labelled holdout, the registry webhook pointed
    at devhost. The process gets ``blobs``, ``client``, ``name``, ``secret`` and ``mlflow`` attributes."""
    import io
    import secrets

    import pyarrow.csv as pacsv
    from azure.storage.blob import BlobServiceClient
    from mlflow import MlflowClient

    from training.data import generate

    server = MlflowServer(data_dir=tmp_path_factory.mktemp(f"mlflow-{prefix}")).start()
    name, secret, unique = f"{prefix}-{uuid.uuid4().hex[:6]}", secrets.token_hex(16), uuid.uuid4().hex[:8]
    dev = start_devhost(tmp_path_factory.mktemp(prefix), azurite, server.tracking_uri, extra={
        "SCOREHOOK_MODEL_URI": f"models:/{name}@champion", "SCOREHOOK_LEDGER_TABLE": f"{prefix}{unique}",
        "SCOREHOOK_MLFLOW_WEBHOOK_SECRET": secret, "SCOREHOOK_EVALUATION_DATA": f"blob://eval{unique}/holdout.csv",
        "SCOREHOOK_ALIAS_TTL_SECONDS": "3600", "SCOREHOOK_ALLOWED_WORKSPACES": "scorehook-ws", **(extra or {}),
    })  # fmt: skip
    try:
        blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
        for container in (f"eval{unique}", "incoming", "scored", "failed"):
            if not blobs.get_container_client(container).exists():
                blobs.create_container(container)
        sink = io.BytesIO()
        pacsv.write_csv(generate(3000, seed=21, include_label=True), sink)
        blobs.get_blob_client(f"eval{unique}", "holdout.csv").upload_blob(sink.getvalue())
        client = MlflowClient(tracking_uri=server.tracking_uri, registry_uri=server.tracking_uri)
        client.create_webhook(name="scorehook", url=f"{dev.base_url}/api/mlflow-webhook",
                              events=["model_version.created", "model_version_tag.set"], secret=secret)  # fmt: skip
        dev.blobs, dev.client, dev.name, dev.secret, dev.mlflow = blobs, client, name, secret, server  # type: ignore[attr-defined]
        yield dev
    finally:
        stop_devhost(dev)
        server.stop()
