"""``python -m devhost host`` refuses to start on a bad configuration: exit 2, one message, no traceback.

No Azurite or MLflow is needed: the check runs before devhost touches any service.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTING_PREFIXES = ("SCOREHOOK_", "DataStorage", "MLFLOW_TRACKING_URI", "AzureWebJobs")


def _devhost(tmp_path: Path, values: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"FUNCTIONS_WORKER_RUNTIME": "python", **values},
                                "Host": {"LocalHttpPort": 0}}))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests" / "e2e")])
    return subprocess.run([sys.executable, "-m", "devhost", "host", "--settings", str(path), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_devhost_refuses_to_start_with_bad_settings_and_lists_them_all(tmp_path):
    done = _devhost(tmp_path, {
        "DataStorage": "DefaultEndpointsProtocol=http;AccountKey=t0p-s3cret",
        "SCOREHOOK_ALIAS_TTL_SECONDS": "abc",
        "SCOREHOOK_DRIFT_ENABLED": "maybe",
        "SCOREHOOK_DRIFT_SCHEDULE": "*/5 * * * *",
        "SCOREHOOK_ROUTES": json.dumps([{"name": "churn", "container": "incoming", "model": "models:/churn@"}]),
    })  # fmt: skip
    assert done.returncode == 2, done.stderr
    err = done.stderr
    assert "devhost: not started: 5 settings are invalid:" in err
    assert "SCOREHOOK_ALIAS_TTL_SECONDS='abc': expected a number of seconds >= 0" in err
    assert "SCOREHOOK_DRIFT_ENABLED='maybe': expected a flag: true or false" in err
    assert "SCOREHOOK_DRIFT_SCHEDULE='*/5 * * * *': expected a 6-field NCRONTAB schedule" in err
    assert "SCOREHOOK_ROUTES[churn].model='models:/churn@': expected models:/NAME@ALIAS" in err
    assert "DataStorage='***': expected a storage connection string" in err
    assert "t0p-s3cret" not in err + done.stdout
    assert "Traceback" not in err and "devhost listening" not in done.stdout


def test_devhost_refuses_an_app_whose_timer_schedule_is_not_ncrontab(tmp_path):
    done = _devhost(tmp_path, {}, "--app", "apps.bad_timer_app:app", "--subscriptions", "")
    assert done.returncode == 2, done.stderr
    assert "devhost: not started: timer schedule is invalid:" in done.stderr
    assert "timer every_five schedule='*/5 * * * *'" in done.stderr and "has 5 fields, not 6" in done.stderr
    assert "Traceback" not in done.stderr


def test_devhost_says_so_when_the_settings_file_is_missing_or_not_json(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    (tmp_path / "broken.json").write_text('{"Values": {')
    for name, says in (("missing.json", "No such file or directory"), ("broken.json", "Expecting")):
        done = subprocess.run([sys.executable, "-m", "devhost", "host", "--settings", str(tmp_path / name)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 2
        assert f"devhost: not started: settings file {tmp_path / name} cannot be read: " in done.stderr
        assert says in done.stderr and "Traceback" not in done.stderr
