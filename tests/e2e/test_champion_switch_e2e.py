"""Two devhost processes on the same storage and registry: a promotion decided by one (MLflow webhook) and a
rollback from the CLI switch both within seconds, through the champion generation marker (the alias TTL is
an hour and the second instance never receives the ``Scorehook.Model.Promoted`` event)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid

import pyarrow.csv as pacsv
import pytest

from tests.conftest import ROOT, registry_devhost, start_devhost, stop_devhost

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def pair(azurite, tmp_path_factory):
    with registry_devhost(azurite, tmp_path_factory, "switch") as first:
        second = start_devhost(tmp_path_factory.mktemp("switch-b"), azurite, first.mlflow.tracking_uri,
                               app="apps.scoring_only_app:app", extra={
            "SCOREHOOK_MODEL_URI": f"models:/{first.name}@champion", "SCOREHOOK_ALIAS_TTL_SECONDS": "3600",
            "SCOREHOOK_OUTPUT_CONTAINER": "scored-b", "SCOREHOOK_LEDGER_TABLE": f"switchb{uuid.uuid4().hex[:8]}",
            "SCOREHOOK_DRIFT_ENABLED": "false", "SCOREHOOK_MLFLOW_WEBHOOK_SECRET": "unused",
        })  # fmt: skip
        try:
            yield first, second
        finally:
            stop_devhost(second)


def _champion(dev) -> str | None:
    try:
        return dev.client.get_model_version_by_alias(dev.name, "champion").version
    except Exception:
        return None


def _score_on_both(dev) -> tuple[str, str]:
    """Drop one file; the model version each instance scored it with (its own output container)."""
    from training.data import generate

    sink = io.BytesIO()
    pacsv.write_csv(generate(20, seed=8, include_label=False), sink)
    name = f"switch/{uuid.uuid4().hex}.csv"
    dev.blobs.get_blob_client("incoming", name).upload_blob(sink.getvalue())
    versions = []
    for container in ("scored", "scored-b"):
        out = dev.blobs.get_blob_client(container, f"incoming/{name}.predictions.csv")
        dev.wait_for(out.exists, timeout=60, what=f"output in {container}")
        versions.append(out.get_blob_properties().metadata["model_version"])
    return versions[0], versions[1]


def _cli(dev, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCOREHOOK_", "MLFLOW_"))}
    return subprocess.run([sys.executable, "-m", "cli", "--settings", str(dev.settings_path), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)  # fmt: skip


def test_both_instances_score_with_a_new_champion_within_5_seconds(pair):
    from training.train import train_and_register

    first, _ = pair
    v1 = train_and_register(first.mlflow.tracking_uri, model_name=first.name, rows=4000, seed=1)["version"]
    first.wait_for(lambda: _champion(first) == v1, timeout=90, what="v1 promoted")
    assert _score_on_both(first) == (v1, v1)  # both instances now hold v1 for an hour (alias TTL)

    v2 = train_and_register(first.mlflow.tracking_uri, model_name=first.name, rows=20000, seed=2)["version"]
    first.wait_for(lambda: _champion(first) == v2, timeout=120, what="v2 promoted by the flow")
    promoted = time.monotonic()
    time.sleep(2.5)  # the marker is read at most every 2 s
    assert _score_on_both(first) == (v2, v2)
    assert time.monotonic() - promoted < 30

    rollback = _cli(first, "models", "rollback", first.name, "--to", v1, "--reason", "e2e: back to v1", "--json")
    assert rollback.returncode == 0, rollback.stderr
    assert json.loads(rollback.stdout.strip().splitlines()[-1])["status"] == "promote"
    rolled_back = time.monotonic()
    again = _cli(first, "models", "rollback", first.name, "--to", v1, "--json")
    assert again.returncode == 0 and json.loads(again.stdout.strip().splitlines()[-1])["status"] == "unchanged"
    assert _champion(first) == v1
    tags = first.client.get_model_version(first.name, v2).tags
    assert tags["scorehook.rolled_back_to"] == v1 and tags["scorehook.rolled_back_reason"] == "e2e: back to v1"
    time.sleep(max(0.0, 2.5 - (time.monotonic() - rolled_back)))
    assert _score_on_both(first) == (v1, v1)

    unknown = _cli(first, "models", "rollback", "no-such-model")
    assert unknown.returncode == 2 and "unknown or has no champion" in unknown.stderr
    assert "Traceback" not in unknown.stderr
