"""The loop end to end through devhost: scoring builds drift profiles, the timer evaluates the window, an
undrifted window stays quiet, drifted files cross the threshold, exactly one local retraining runs, the new
version registers in MLflow, and the deployment flow decides on it."""

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

from tests.conftest import ROOT, registry_devhost

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def env(azurite, tmp_path_factory):
    extra = {"SCOREHOOK_DRIFT_CONTAINER": f"drift{uuid.uuid4().hex[:8]}", "SCOREHOOK_DRIFT_SCHEDULE": "*/2 * * * * *",
             "SCOREHOOK_RETRAIN_LAUNCHER": "local"}  # fmt: skip
    with registry_devhost(azurite, tmp_path_factory, "drift", extra) as dev:
        dev.drift = dev.blobs.get_container_client(extra["SCOREHOOK_DRIFT_CONTAINER"])
        yield dev


def _score(env, rows: int, drift: float, seed: int) -> None:
    from training.data import generate

    sink = io.BytesIO()
    pacsv.write_csv(generate(rows, seed=seed, drift=drift, start=seed * 1_000_000), sink)
    name = f"drift/{uuid.uuid4().hex}.csv"
    env.blobs.get_blob_client("incoming", name).upload_blob(sink.getvalue())
    out = env.blobs.get_blob_client("scored", "incoming/" + name + ".predictions.csv")
    env.wait_for(out.exists, timeout=60, what="scored output")
    return name


def _reports(env) -> list[dict]:
    if not env.drift.exists():
        return []
    reports = []
    for blob in env.drift.list_blobs(name_starts_with=f"reports/{env.name}/"):
        doc = json.loads(env.drift.download_blob(blob.name).readall())
        if doc.get("source_etag"):
            reports.append(doc)
    return reports


def _retrained(env) -> list:
    versions = env.client.search_model_versions(f"name='{env.name}'")
    return [v for v in versions if "scorehook.retrain.decision" in v.tags]


def test_drifted_files_lead_to_exactly_one_retraining_and_a_deployment_decision(env):
    from training.train import train_and_register

    first = train_and_register(env.mlflow.tracking_uri, model_name=env.name, rows=6000, seed=1)["version"]
    env.wait_for(
        lambda: env.client.get_model_version(env.name, first).tags.get("scorehook.decision") == "promote",
        timeout=90, what="first version promoted by the flow",
    )  # fmt: skip

    _score(env, 20_000, drift=0.0, seed=2)
    quiet = env.wait_for(lambda: [r for r in _reports(env) if r["rows"] >= 20_000], timeout=60,
                         what="the undrifted window evaluated")  # fmt: skip
    assert quiet[0]["decision"] == "no_drift" and quiet[0]["drifted_features"] == []

    for seed in (3, 4):
        _score(env, 30_000, drift=1.0, seed=seed)
    drifted = env.wait_for(lambda: [r for r in _reports(env) if r["decision"] == "drift"], timeout=60,
                           what="the drifted window evaluated")  # fmt: skip
    report = drifted[0]
    assert {"x01", "x02", "x05", "x11"} <= set(report["drifted_features"]), report["drifted_features"]
    assert report["action"]["status"] == "launched" and report["action"]["launcher"] == "local"
    assert any("x01: normalized_wasserstein" in reason for reason in report["reasons"])

    new = env.wait_for(lambda: _retrained(env), timeout=240, what="the retrained version registered")
    [version] = new
    tags = env.wait_for(lambda: (t := env.client.get_model_version(env.name, version.version).tags)
                        .get("scorehook.decision") and t, timeout=120, what="the deployment decision")  # fmt: skip
    assert tags["scorehook.decision"] in ("promote", "reject") and tags["scorehook.reasons"]
    # judged on the drifted window's rows that retraining held out, not only on the fixed holdout
    assert tags["scorehook.decided_by"] == "drift_window", (tags["scorehook.reasons"], tags.get("scorehook.evaluations"))
    evaluations = json.loads(tags["scorehook.evaluations"])
    assert evaluations["drift_window"]["rows"] >= 200 and evaluations["drift_window"]["action"] == tags["scorehook.decision"]
    assert tags["scorehook.decision"] == "promote", evaluations  # trained on the new data, it wins on it
    assert tags["scorehook.retrain.decision"] == report["action"]["decision_id"]
    assert tags["scorehook.retrain.reason"] == "drift"
    from shared.adapters import TableLedger
    from shared.settings import Settings

    ledger = TableLedger.from_settings(Settings.from_env(env.env), create=False)
    # one correlation_id from the drift report to the decision: report, retraining, version, decision record
    correlation = report["correlation_id"]
    assert report["action"]["correlation_id"] == correlation == tags["scorehook.correlation_id"]
    assert ledger.get(f"retrain:{report['action']['decision_id']}").details["correlation_id"] == correlation
    [decided] = [r for r in ledger.records() if r.key.startswith(f"registration:{env.name}/{version.version}@")]
    assert decided.details["correlation_id"] == correlation
    run = env.wait_for(lambda: ledger.get(f"retrain-run:{report['action']['run_id']}"), timeout=30,
                       what="the retraining process's exit recorded")  # fmt: skip
    assert run.status == "succeeded" and run.details["exit_code"] == 0

    def evaluated() -> dict[str, str]:
        return {f"{r['model_version']}/{r['window'][0]}": r["evaluated_at"] for r in _reports(env)}

    idle = evaluated()
    time.sleep(6)  # three timer ticks: an unchanged window is not evaluated (nor announced) again
    assert evaluated() == idle

    _score(env, 5_000, drift=1.0, seed=5)  # the wave goes on: new data is evaluated once, never retrained twice
    env.wait_for(lambda: evaluated() != idle, timeout=60, what="an evaluation of the new data")
    time.sleep(3)
    fresh = [r for r in _reports(env) if idle.get(f"{r['model_version']}/{r['window'][0]}") != r["evaluated_at"]]
    assert fresh and all(r["action"]["status"] in ("duplicate", "cooldown") for r in fresh if r["decision"] == "drift")
    assert len(_retrained(env)) == 1


def test_an_azure_ml_monitor_breach_enters_the_same_decision_and_respects_the_cooldown(env):
    from shared.adapters import TableLedger
    from shared.settings import Settings

    env.wait_for(lambda: _retrained(env), timeout=10, what="the retraining of the previous test")
    ledger = TableLedger.from_settings(Settings.from_env(env.env), create=False)
    [event] = json.loads((ROOT / "tests" / "events" / "azureml_run_status_changed_breach.json").read_text())
    run = f"monitor-run-{uuid.uuid4().hex[:6]}"
    breach = {**event, "id": str(uuid.uuid4()), "data": {**event["data"], "runId": run}}
    plain = {**breach, "id": str(uuid.uuid4()), "data": {**breach["data"], "runTags": {}, "runId": "other"}}
    for body in (breach, plain):
        status, _, _ = env.request("POST", "/runtime/webhooks/eventgrid?functionName=on_drift_signal", [body],
                                   {"aeg-event-type": "Notification"})  # fmt: skip
        assert status == 200
    record = env.wait_for(lambda: ledger.get(f"retrain:azureml-monitor:{run}"), what="the signal's decision")
    assert record.status == "skipped" and record.details["status"] == "cooldown"  # the wave already retrained
    assert ledger.get("retrain:azureml-monitor:other") is None  # a plain status change is not a signal
    assert len(_retrained(env)) == 1


def test_the_cli_shows_the_drift_reports(env):
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SCOREHOOK_", "MLFLOW_", "DataStorage"))}
    argv = [sys.executable, "-m", "cli", "--settings", str(env.settings_path), "drift", env.name]
    result = subprocess.run([*argv, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120, env=keep)
    assert result.returncode == 0, result.stderr
    reports = json.loads(result.stdout)["reports"]
    assert {r["decision"] for r in reports} >= {"drift"}
    table = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, env=keep)
    assert table.returncode == 0, table.stderr
    assert "normalized_wasserstein" in table.stdout and "threshold 0.1 + noise bound" in table.stdout
