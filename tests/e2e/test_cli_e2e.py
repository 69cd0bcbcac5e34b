"""``scorehook`` against one real local stack (devhost, Azurite, its own MLflow with the webhook), with
files in every state: scored, failed, fixed and rescored, retrying after a registry outage, dead-lettered;
a model version promoted, then rolled back. Each command is checked as a table and as ``--json``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, registry_devhost

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
DL_BLOB = "devstoreaccount1/SCORE-INCOMING-BLOBS/2026/12/01/10/{}.json"


def _csv(rows: int, seed: int, drop: str | None = None) -> bytes:
    import pyarrow.csv as pacsv

    from training.data import generate

    table = generate(rows, seed=seed, include_label=False)
    if drop:
        table = table.drop_columns([drop])
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    return sink.getvalue()


def _event(dev, container: str, name: str, etag: str) -> dict:
    url = dev.blobs.get_blob_client(container, name).url
    return {"id": f"cli-{uuid.uuid4().hex[:8]}", "eventType": "Microsoft.Storage.BlobCreated",
            "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
            "eventTime": "2026-12-01T10:00:00Z", "dataVersion": "", "metadataVersion": "1",
            "topic": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
            "data": {"api": "PutBlob", "eTag": etag, "contentLength": 1, "blobType": "BlockBlob", "url": url}}  # fmt: skip


def _upload(dev, container: str, name: str, data: bytes) -> str:
    return dev.blobs.get_blob_client(container, name).upload_blob(data, overwrite=True)["etag"]


@pytest.fixture(scope="module")
def stack(azurite, tmp_path_factory):
    """One stack for the module, its files and models brought into every state once."""
    from shared.errors import RegistryUnavailableError
    from training.train import train_and_register

    model = f"cli-{uuid.uuid4().hex[:6]}"
    routes = json.dumps([{"name": "incoming", "container": "incoming", "model": f"models:/{model}@champion"},
                         {"name": "held", "container": "held", "model": f"models:/{model}@champion"}])  # fmt: skip
    extra = {"SCOREHOOK_MODEL_URI": f"models:/{model}@champion", "SCOREHOOK_ROUTES": routes,
             "SCOREHOOK_ALIAS_TTL_SECONDS": "0"}  # fmt: skip
    with registry_devhost(azurite, tmp_path_factory, "cli", extra=extra) as dev:
        dev.name = model  # devhost subscribes the "incoming" container only: "held" files wait for us
        for container in ("held", "deadletter"):
            if not dev.blobs.get_container_client(container).exists():
                dev.blobs.create_container(container)
        first = train_and_register(dev.mlflow.tracking_uri, model_name=dev.name, rows=4000, seed=1)["version"]
        dev.wait_for(lambda: _champion(dev) == first, timeout=90, what="first version promoted")
        better = train_and_register(dev.mlflow.tracking_uri, model_name=dev.name, rows=20000, seed=2)[
            "version"
        ]
        dev.wait_for(lambda: _champion(dev) == better, timeout=90, what="better version promoted")
        dev.first, dev.better = first, better

        tag = uuid.uuid4().hex[:6]
        dev.files = {state: f"cli{tag}/{state}.csv" for state in ("scored", "failed", "fixed")}
        _upload(dev, "incoming", dev.files["scored"], _csv(50, 1))
        _upload(dev, "incoming", dev.files["failed"], _csv(20, 2, drop="x01"))
        _upload(dev, "incoming", dev.files["fixed"], _csv(20, 3, drop="x01"))
        _wait_file(dev, f"incoming/{dev.files['fixed']}", "failed_open")
        _upload(dev, "incoming", dev.files["fixed"], _csv(30, 3))  # the fix: a new version of the same blob
        for state in ("scored", "failed"):
            _wait_file(
                dev, f"incoming/{dev.files[state]}", {"scored": "scored", "failed": "failed_open"}[state]
            )
        _wait_file(dev, f"incoming/{dev.files['fixed']}", "failed_resolved")

        # a registry outage: scored in this process, the registry down (devhost does not watch "held")
        dev.files["retrying"] = f"cli{tag}/retrying.csv"
        etag = _upload(dev, "held", dev.files["retrying"], _csv(40, 4))
        service = _scoring_with_registry_down(dev, RegistryUnavailableError("MLflow is down (test)"))
        from shared.events import parse_blob_created

        with pytest.raises(RegistryUnavailableError):
            service.score(parse_blob_created(_event(dev, "held", dev.files["retrying"], etag)))

        # Event Grid gave up on a file of "held": its dead letter lands in the dead-letter container
        dev.files["dead"] = f"cli{tag}/dead.csv"
        etag = _upload(dev, "held", dev.files["dead"], _csv(25, 5))
        facts = {"deadLetterReason": "MaxDeliveryAttemptsExceeded", "deliveryAttempts": 10,
                 "lastDeliveryOutcome": "GenericError", "lastHttpStatusCode": 500,
                 "publishTime": "2026-12-01T10:00:00Z", "lastDeliveryAttemptTime": "2026-12-01T10:06:00Z"}  # fmt: skip
        dev.blobs.get_blob_client("deadletter", DL_BLOB.format(tag)).upload_blob(
            json.dumps([{**_event(dev, "held", dev.files["dead"], etag), **facts}]).encode()
        )
        dev.tmp = tmp_path_factory.mktemp("cli-cwd")  # commands run from another directory
        yield dev


def _champion(dev) -> str | None:
    try:
        return dev.client.get_model_version_by_alias(dev.name, "champion").version
    except Exception:
        return None


def _scoring_with_registry_down(dev, error: Exception):
    from shared.adapters import AzureBlobStore, TableLedger
    from shared.models import ModelCache, ModelProvider
    from shared.scoring import ScoringService
    from shared.settings import Settings
    from shared.testing import FakePublisher, FakeRegistry

    settings = Settings.from_env(dev.env)
    registry = FakeRegistry()
    registry.unavailable = error
    blobs = AzureBlobStore.from_settings(settings)
    provider = ModelProvider(registry, blobs, ModelCache(1), ttl_seconds=0)
    return ScoringService(blobs, TableLedger.from_settings(settings), provider, FakePublisher(), settings)


def _view(dev):
    from cli.app import Services

    return Services(str(dev.settings_path)).view()


def _wait_file(dev, blob: str, state: str) -> None:
    view = _view(dev)
    dev.wait_for(lambda: any(f.blob == blob and f.state == state for f in view.files()), timeout=60,
                 what=f"{blob} {state}")  # fmt: skip


def _run(dev, *args: str) -> tuple[int, str, str]:
    """A command in this process (the same code as the console script), stdout and stderr captured."""
    from cli.app import Services, main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args), services=Services(str(dev.settings_path), timeout=60))
    return code, out.getvalue(), err.getvalue()


def _json(dev, *args: str) -> tuple[int, object]:
    code, out, err = _run(dev, *args, "--json")
    assert "Traceback" not in err
    return code, json.loads(out)  # pure JSON: the whole of stdout parses


def _process(dev, *args: str, shell: str | None = None) -> subprocess.CompletedProcess:
    """The command as a person runs it, from another directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCOREHOOK_", "MLFLOW_", "DataStorage"))}
    env["PYTHONPATH"] = str(ROOT)
    argv = [sys.executable, "-m", "cli", "--settings", str(dev.settings_path), *args]
    if shell:
        argv = ["bash", "-c", " ".join(f"'{a}'" for a in argv) + shell]
    return subprocess.run(argv, cwd=dev.tmp, capture_output=True, text=True, env=env, timeout=120)


def test_status_separates_files_deliveries_decisions_and_names_the_champion(stack):
    code, doc = _json(stack, "status")
    assert code == 0
    counts = doc["files"]["counts"]
    assert counts["scored"] >= 1 and counts["failed_open"] >= 1 and counts["failed_resolved"] >= 1
    assert counts["retrying"] == 1 and counts["dead_lettered"] == 1
    problems = {p["blob"]: p for p in doc["files"]["problems"]}
    assert problems[f"incoming/{stack.files['failed']}"]["reason"] == "schema_mismatch"
    assert problems[f"held/{stack.files['retrying']}"]["reason"] == "registry_unavailable"
    assert doc["decisions"].get("promote", 0) >= 2 and doc["deliveries"].get("queued", 0) >= 2
    (model,) = [m for m in doc["models"] if m["name"] == stack.name]
    assert (model["champion"], model["previous"]) == (stack.better, stack.first)
    assert doc["times"]["last_scored_at"] and doc["times"]["last_decision_at"]

    code, text, _ = _run(stack, "status")
    assert code == 0
    for words in (
        "failed_resolved",
        "dead_lettered",
        "Open problems",
        "registry_unavailable",
        "Decisions",
        "Deliveries",
        stack.name,
    ):
        assert words in text, text


def test_trace_shows_the_timeline_of_a_scored_a_failed_a_fixed_and_a_retried_file(stack):
    code, doc = _json(stack, "trace", f"incoming/{stack.files['scored']}")
    kinds = [e["kind"] for e in doc["events"]]
    assert code == 0 and doc["state"] == "scored"
    assert [k for k in kinds if k in ("received", "claimed", "model_resolved", "scored", "committed", "done")] == [
        "received", "claimed", "model_resolved", "scored", "committed", "done"]  # fmt: skip
    scored = next(e for e in doc["events"] if e["kind"] == "scored")
    assert scored["details"]["rows_scored"] == 50
    assert (
        next(e for e in doc["events"] if e["kind"] == "model_resolved")["details"]["model_version"]
        == stack.better
    )

    code, doc = _json(stack, "trace", f"incoming/{stack.files['failed']}")
    failed = next(e for e in doc["events"] if e["kind"] == "failed")
    assert failed["details"]["reason"] == "schema_mismatch" and failed["details"]["location"].startswith(
        "failed/"
    )

    code, text, _ = _run(stack, "trace", f"incoming/{stack.files['fixed']}")
    assert code == 0 and "failed_resolved" in text and text.index("failed") < text.rindex("succeeded in"), (
        text
    )

    code, text, _ = _run(stack, "trace", f"held/{stack.files['retrying']}")
    assert code == 0 and "retry" in text and "registry_unavailable" in text and "MLflow is down" in text, text

    code, _, err = _run(stack, "trace", "incoming/no/such.csv")
    assert code == 1 and "nothing is known about incoming/no/such.csv" in err


def test_models_tell_why_a_version_was_promoted_and_a_rollback_is_recorded_once(stack):
    code, doc = _json(stack, "models", stack.name)
    assert code == 0
    better = next(v for v in doc["versions"] if v["version"] == stack.better)
    assert better["decision"] == "promote" and better["reasons"] and better["challenger_metrics"]
    code, text, _ = _run(stack, "models", stack.name)
    assert code == 0 and "promote" in text and f"champion {stack.better}" in text

    code, text, err = _run(stack, "models", "approve", stack.name, stack.first)
    assert code == 2 and "not held for approval" in err

    code, doc = _json(stack, "rollback", stack.name, "--reason", "cli e2e")
    assert code == 0 and doc["status"] == "promote" and doc["champion"] == stack.first
    code, text, _ = _run(stack, "models", "rollback", stack.name)
    assert code == 0 and "unchanged" in text
    code, doc = _json(stack, "trace", "--model", stack.name)
    changes = [e for e in doc["events"] if e["kind"] == "champion"]
    assert changes[-1]["details"]["how"] == "rollback" and changes[-1]["details"]["reason"] == "cli e2e"
    assert [e["kind"] for e in doc["events"]].count("decision") >= 2
    code, doc = _json(stack, "models")
    assert next(m for m in doc["models"] if m["name"] == stack.name)["champion_how"] == "rollback"
    code, _, err = _run(stack, "rollback", "no-such-model")
    assert code == 2 and "unknown or has no champion" in err


def test_replay_deadletters_and_events_and_upload_bring_files_to_scored(stack, tmp_path):
    code, text, _ = _run(stack, "deadletters")
    assert code == 0 and "MaxDeliveryAttemptsExceeded" in text and f"held/{stack.files['dead']}" in text
    code, out, _ = _run(stack, "deadletters", "--replay", "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(r["blob"], r["status"]) for r in lines] == [
        (f"held/{stack.files['dead']}", "succeeded")
    ]

    code, out, _ = _run(stack, "replay", f"held/{stack.files['retrying']}", "--json")
    assert code == 0 and json.loads(out)["status"] == "succeeded"
    code, text, _ = _run(stack, "replay", "--failed")
    assert code == 1 and "schema_mismatch" in text  # still broken: the failure stays open

    name = f"cli{uuid.uuid4().hex[:6]}/sent.csv"
    etag = _upload(stack, "held", name, _csv(10, 6))
    event = tmp_path / "event.json"
    event.write_text(json.dumps(_event(stack, "held", name, etag)))
    code, doc = _json(stack, "events", "send", str(event))
    assert code == 0 and doc["http_status"] == 200 and doc["function"] == "score_blob", doc

    mine = tmp_path / "mine.csv"
    mine.write_bytes(_csv(15, 7))
    code, doc = _json(stack, "upload", str(mine), "--name", f"cli{uuid.uuid4().hex[:6]}/mine.csv", "--wait")
    assert code == 0 and doc["state"] == "scored" and doc["blob"].startswith("incoming/"), doc

    code, doc = _json(stack, "status")
    assert doc["files"]["counts"]["retrying"] == 0 and doc["files"]["counts"]["dead_lettered"] == 0
    assert doc["dead_letters"]["replayed"] == 1


def test_drift_runs_and_answers_without_a_report(stack):
    code, doc = _json(stack, "drift", stack.name)
    assert code == 0 and doc["model"] == stack.name and isinstance(doc["reports"], list)


def test_the_command_from_another_directory_is_pipe_safe_and_errors_are_one_line(stack):
    piped = _process(stack, "status", shell=" | head -1")
    assert piped.returncode == 0 and "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr
    assert len(piped.stdout.splitlines()) == 1

    bad = Path(stack.tmp) / "bad.json"
    bad.write_text(json.dumps({"Values": {**stack.env, "DataStorage": "BlobEndpoint=http://127.0.0.1:9;"
                                          "AccountName=devstoreaccount1;AccountKey=a2V5"}}))  # fmt: skip
    from cli.app import Services, main

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["status"], services=Services(str(bad), timeout=60))
    assert code == 4 and "Storage at 127.0.0.1:9 is unreachable" in err.getvalue(), err.getvalue()
    assert len(err.getvalue().splitlines()) == 1
