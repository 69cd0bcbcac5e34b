"""One local stack per `.local`: the lock (a second start refused with what is running, a stale lock taken
over and its orphans stopped), stable ports kept across runs, user settings merged over the generated ones,
and the supervisor restarting a killed Azurite (real Azurite, devhost's HTTP server for /api/health)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import azure.functions as func
import pytest

from devhost.host import FunctionHost
from devhost.server import DevServer
from devhost.services import Azurite, _Service, free_port
from devhost.stack import (
    SettingsFileError,
    StackBusy,
    StackLock,
    Supervisor,
    choose_ports,
    load_user_settings,
    merge_user_settings,
    save_ports,
    stop_orphans,
)
from shared.logs import capture_logs
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_stack_on_the_same_local_dir_is_refused_with_what_is_running(tmp_path):
    lock = StackLock.acquire(tmp_path, "run")
    try:
        lock.update(ports={"blob": 10000, "queue": 10001, "table": 10002, "mlflow": 5000, "devhost": 7071})
        with pytest.raises(StackBusy) as refused:
            StackLock.acquire(tmp_path, "demo")
        message = str(refused.value)
        assert f"`devhost run` pid {os.getpid()} since {lock.info['started_at']}" in message
        assert "blob 10000, queue 10001, table 10002, mlflow 5000, devhost 7071" in message
        # the command line refuses before starting anything: exit code 3, one line on stderr
        out = subprocess.run([sys.executable, "-m", "devhost", "demo", "--local-dir", str(tmp_path),
                              "--settings-out", str(tmp_path / "local.settings.json")],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert out.returncode == 3, out.stderr
        assert out.stderr.strip().splitlines() == [f"devhost demo: {message}"] and out.stdout == ""
        assert not (tmp_path / "local.settings.json").exists()
    finally:
        lock.release()
    again = StackLock.acquire(tmp_path, "demo")  # released: free for the next one, nothing to take over
    assert again.previous is None
    again.release()


def test_a_stale_lock_is_taken_over_and_the_dead_stacks_services_are_stopped(tmp_path):
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(tmp_path.resolve())],
                            start_new_session=True)  # fmt: skip
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        dead = _dead_pid()
        stale = {"pid": dead, "command": "run", "started_at": "2026-01-01T00:00:00Z",
                 "children": {"azurite": ours.pid, "mlflow": stranger.pid}}  # fmt: skip
        (tmp_path / "stack.lock").write_text(json.dumps(stale))
        lock = StackLock.acquire(tmp_path, "run")
        assert lock.previous == stale
        assert json.loads((tmp_path / "stack.lock").read_text())["pid"] == os.getpid()
        assert stop_orphans(lock.previous, tmp_path) == [ours.pid]  # its command line names this .local
        assert ours.wait(10) == -signal.SIGTERM
        assert stranger.poll() is None  # a process that is not this stack's is never touched
        lock.release()
        assert (tmp_path / "stack.lock").read_text() == ""
    finally:
        for proc in (ours, stranger):
            proc.kill()
            proc.wait()


def test_ports_are_the_preferred_ones_when_free_and_kept_across_runs(tmp_path):
    preferred = {name: free_port() for name in ("blob", "queue", "table", "mlflow", "devhost")}
    assert choose_ports(tmp_path, preferred=preferred) == preferred
    with socket.create_server(("127.0.0.1", preferred["blob"])):  # someone else has the standard blob port
        first = choose_ports(tmp_path, preferred=preferred)
    assert first["blob"] != preferred["blob"] and first["blob"] not in preferred.values()
    assert {k: v for k, v in first.items() if k != "blob"} == {
        k: v for k, v in preferred.items() if k != "blob"
    }
    save_ports(tmp_path, first)
    assert choose_ports(tmp_path, preferred=preferred) == first  # the next run: the same ports again
    assert choose_ports(tmp_path, {"devhost": 7999}, preferred=preferred) == {**first, "devhost": 7999}


def test_user_settings_are_merged_over_the_generated_values(tmp_path):
    user_file = tmp_path / "local.settings.user.json"
    user_file.write_text(json.dumps({"Values": {"SCOREHOOK_DRIFT_SCHEDULE": "0 */5 * * * *", "X_FLAG": True,
                                                "X_LIMIT": 3}, "Host": {"FunctionKey": "my-key"}}))  # fmt: skip
    generated = {"IsEncrypted": False, "Values": {"SCOREHOOK_DRIFT_SCHEDULE": "*/10 * * * * *", "A": "1"},
                 "Host": {"LocalHttpPort": 7071, "FunctionKey": "generated"}}  # fmt: skip
    merged = merge_user_settings(generated, load_user_settings(user_file))
    assert merged["Values"] == {"SCOREHOOK_DRIFT_SCHEDULE": "0 */5 * * * *", "A": "1", "X_FLAG": "true",
                                "X_LIMIT": "3"}  # fmt: skip
    assert merged["Host"] == {"LocalHttpPort": 7071, "FunctionKey": "my-key"}
    assert "local.settings.user.json" in merged["_comment"] and merged["IsEncrypted"] is False
    user_file.write_text(json.dumps({"MLFLOW_TRACKING_URI": "http://127.0.0.1:5001"}))  # flat: Values
    assert load_user_settings(user_file) == {
        "Values": {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5001"},
        "Host": {},
    }
    assert load_user_settings(tmp_path / "missing.json") == {"Values": {}, "Host": {}}
    user_file.write_text('{"Values": {"A": ')
    with pytest.raises(SettingsFileError, match="is not valid JSON"):
        load_user_settings(user_file)
    user_file.write_text(json.dumps({"Values": {"A": {"nested": 1}, "B": [1]}}))
    with pytest.raises(SettingsFileError, match=r'A=\{"nested": 1\}, B=\[1\]'):
        load_user_settings(user_file)


def _health_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.function_name("health")
    @app.route(route="health", methods=["GET"])
    def health(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(json.dumps({"status": "ok"}), mimetype="application/json")

    return app


def _health(server: DevServer) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{server.base_url}/api/health", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _wait(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.1)
    raise AssertionError("timed out")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def test_a_killed_azurite_is_reaped_reported_and_restarted_on_the_same_ports(tmp_path):
    azurite = Azurite(log_dir=tmp_path).start()
    supervisor = Supervisor({"azurite": azurite}, max_restarts=1, interval=0.1, backoff=lambda _: 0.0).start()
    server = DevServer(FunctionHost(_health_app()), services_health=supervisor.states).start()
    try:
        endpoints, first = dict(azurite.endpoints), azurite.process.pid
        assert _health(server) == (200, {"status": "ok", "services": {"azurite": {
            "state": "running", "pid": first, "restarts": 0, "last_exit_code": None, "last_exit_at": None,
            "endpoint": endpoints["blob"]}}})  # fmt: skip
        with capture_logs() as records:
            os.kill(first, signal.SIGKILL)
            _wait(lambda: supervisor.states()["azurite"]["restarts"] == 1
                  and supervisor.states()["azurite"]["state"] == "running")  # fmt: skip
        assert not _zombie(first) and not Path(f"/proc/{first}").exists()
        assert azurite.endpoints == endpoints and azurite.process.pid != first
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(azurite.connection_string).create_container("afterrestart")
        [died] = [r for r in records if r.get("exit_code") is not None and r.get("restart") == 1]
        assert (died["service"], died["pid"], died["exit_code"], died["level"].lower()) == (
            "azurite",
            first,
            -9,
            "error",
        )
        assert any(r.get("new_pid") == azurite.process.pid for r in records)
        status, body = _health(server)
        assert status == 200 and body["status"] == "ok"
        assert body["services"]["azurite"] | {"last_exit_at": None} == {
            "state": "running", "pid": azurite.process.pid, "restarts": 1, "last_exit_code": -9,
            "last_exit_at": None, "endpoint": endpoints["blob"]}  # fmt: skip
        os.kill(azurite.process.pid, signal.SIGKILL)  # past max_restarts: given up on, and health says so
        _wait(lambda: supervisor.states()["azurite"]["state"] == "failed")
        status, body = _health(server)
        assert (status, body["status"], body["services"]["azurite"]["state"]) == (503, "degraded", "failed")
    finally:
        server.stop()
        supervisor.stop()
        azurite.stop()


class _Sleeper(_Service):
    """A child process that answers its health probe only while ``answers`` is set."""

    name = "sleeper"

    def __init__(self, log_dir: Path) -> None:
        super().__init__(log_dir)
        self.answers = True

    def start(self) -> _Sleeper:
        self._spawn([sys.executable, "-c", "import time; time.sleep(120)"])
        return self

    def restart(self) -> _Sleeper:
        self.stop()
        self.answers = True
        return self.start()

    def healthy(self) -> bool:
        return self.answers


def test_a_child_that_stops_answering_its_probe_is_killed_and_restarted(tmp_path):
    sleeper = _Sleeper(tmp_path).start()
    supervisor = Supervisor({"mlflow": sleeper}, interval=0.05, probe_interval=0.05, max_failed_probes=2,
                            backoff=lambda _: 0.0).start()  # fmt: skip
    try:
        first = sleeper.process
        time.sleep(0.3)
        assert supervisor.states()["mlflow"]["restarts"] == 0  # answering: left alone
        with capture_logs() as records:
            sleeper.answers = False
            _wait(lambda: supervisor.states()["mlflow"]["restarts"] == 1
                  and supervisor.states()["mlflow"]["state"] == "running")  # fmt: skip
        assert first.returncode == -signal.SIGKILL and sleeper.process.pid != first.pid
        assert supervisor.states()["mlflow"]["last_exit_code"] == -signal.SIGKILL
        assert [r["failed_probes"] for r in records if "failed_probes" in r] == [1, 2]
        [restart] = [r for r in records if r.get("restart") == 1]
        assert (restart["why"], restart["pid"], restart["exit_code"]) == ("stopped answering", first.pid, -9)
    finally:
        supervisor.stop()
        sleeper.stop()


def test_a_devhost_port_in_use_refuses_the_start_and_releases_the_lock(tmp_path):
    from devhost.stack import LocalStack, PortInUse

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        stack = LocalStack(tmp_path, settings_path=tmp_path / "local.settings.json", devhost_port=port)
        with pytest.raises(PortInUse, match=f"port {port} .* in use"):
            stack.start()
    assert stack.azurite is None and not (tmp_path / "local.settings.json").exists()
    StackLock.acquire(tmp_path, "run").release()  # not left locked
