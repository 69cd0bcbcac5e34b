"""`python -m devhost run` (make run) as a newcomer meets it: the ports kept in `.local/ports.json`, the
user's settings merged into the generated file, /api/health naming the supervised services, a killed
Azurite restarted on its ports, a second stack on the same `.local` refused, a clean stop."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from devhost.services import free_port
from devhost.stack import choose_ports, save_ports
from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


def _health(base_url: str) -> dict:
    with urllib.request.urlopen(f"{base_url}/api/health", timeout=10) as response:
        return json.loads(response.read())


def _wait(predicate, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := predicate():
                return result
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_devhost_run_keeps_its_ports_merges_user_settings_supervises_and_refuses_a_second_stack(
    tmp_path: Path,
):
    local = tmp_path / ".local"
    local.mkdir()
    ports = {name: free_port() for name in ("blob", "queue", "table", "mlflow", "devhost")}
    save_ports(local, ports)  # as a previous run left them (tests never take the standard ports)
    settings_file = tmp_path / "local.settings.json"
    (tmp_path / "local.settings.user.json").write_text(
        json.dumps({"Values": {"SCOREHOOK_DRIFT_SCHEDULE": "0 0 * * * *", "X_MINE": "kept"}})
    )
    argv = [
        sys.executable,
        "-m",
        "devhost",
        "run",
        "--local-dir",
        str(local),
        "--settings-out",
        str(settings_file),
    ]
    log = tmp_path / "run.log"
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)  # noqa: SIM115
    try:
        line = _first_line(proc, timeout=180)
        assert line, f"devhost run printed nothing; log:\n{log.read_text()[-3000:]}"
        info = json.loads(line)
        assert info["ports"] == ports
        assert info["devhost"] == f"http://127.0.0.1:{ports['devhost']}"
        assert info["mlflow"] == f"http://127.0.0.1:{ports['mlflow']}"
        settings = json.loads(settings_file.read_text())
        assert settings["Values"]["X_MINE"] == "kept"
        assert settings["Values"]["SCOREHOOK_DRIFT_SCHEDULE"] == "0 0 * * * *"
        assert f"127.0.0.1:{ports['blob']}" in settings["Values"]["DataStorage"]
        assert "edits here are lost" in settings["_comment"]
        services = _health(info["devhost"])["services"]
        assert {name: s["state"] for name, s in services.items()} == {
            "azurite": "running",
            "mlflow": "running",
        }

        second = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode == 3
        [refusal] = second.stderr.strip().splitlines()
        assert f"`devhost run` pid {proc.pid} since " in refusal and f"devhost {ports['devhost']}" in refusal

        azurite_pid = services["azurite"]["pid"]
        os.kill(azurite_pid, signal.SIGKILL)
        restarted = _wait(lambda: (s := _health(info["devhost"])["services"]["azurite"])["restarts"] == 1
                          and s["state"] == "running" and s)  # fmt: skip
        assert restarted["last_exit_code"] == -signal.SIGKILL and restarted["pid"] != azurite_pid
        assert not Path(f"/proc/{azurite_pid}").exists()  # reaped, not <defunct>
        assert json.loads((local / "stack.lock").read_text())["children"]["azurite"] == restarted["pid"]
        lines = [json.loads(line) for line in (local / "logs" / "scorehook.jsonl").read_text().splitlines()
                 if line.startswith("{")]  # fmt: skip
        assert [line["pid"] for line in lines if line.get("service") == "azurite"
                and line.get("exit_code") == -signal.SIGKILL and line.get("restart") == 1] == [azurite_pid]  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log.read_text()[-3000:]
    assert (local / "stack.lock").read_text() == ""  # a clean stop: nothing to take over
    assert choose_ports(local) == ports  # the next run gets the same ports
