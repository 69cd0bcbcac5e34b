"""Dead letters through devhost: an event its local Event Grid gives up on becomes a failure record
(``on_deadletter``), and ``scorehook deadletters --replay`` scores the file once."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from shared.scoring import output_name
from tests.conftest import start_devhost, stop_devhost

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


def _subscriptions(tmp_path: Path, dead_letters: str) -> Path:
    """The real subscriptions, with scoring pointed at a function that is not there (every delivery answers
    404) and dead letters going to a container of this test's own; short retries."""
    raw = json.loads((ROOT / "devhost" / "subscriptions.json").read_text())
    raw["delivery"] = {**raw.get("delivery", {}), "retryDelaysSeconds": [0.2]}
    for sub in raw["subscriptions"]:
        if sub["name"] == "score-incoming-blobs":
            sub["endpoint"]["functionName"] = "score_blob_not_deployed"
            sub["retryPolicy"]["maxDeliveryAttempts"] = 2
            sub["deadLetterDestination"]["container"] = dead_letters
        elif sub["endpoint"]["functionName"] == "on_deadletter":
            assert "deadLetterDestination" not in sub
            sub["filter"]["subjectBeginsWith"] = f"/blobServices/default/containers/{dead_letters}/"
    path = tmp_path / "subscriptions.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.fixture(scope="module")
def app(azurite, mlflow_tracking_uri, tmp_path_factory):
    from azure.storage.blob import BlobServiceClient

    from training.train import train_and_register

    name, unique = f"dl-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:8]
    model = train_and_register(mlflow_tracking_uri, model_name=name, rows=2000, alias="champion")
    tmp = tmp_path_factory.mktemp("deadletters")
    dead_letters = f"dl{unique}"
    dev = start_devhost(tmp, azurite, mlflow_tracking_uri, subscriptions=_subscriptions(tmp, dead_letters), extra={
        "SCOREHOOK_MODEL_URI": f"models:/{name}@champion", "SCOREHOOK_ALIAS_TTL_SECONDS": "3600",
        "SCOREHOOK_LEDGER_TABLE": f"dl{unique}", "SCOREHOOK_DEADLETTER_CONTAINER": dead_letters,
    })  # fmt: skip
    dev.blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    for container in ("incoming", "scored", "failed"):
        if not dev.blobs.get_container_client(container).exists():
            dev.blobs.create_container(container)
    dev.model, dev.dead_letters = model, dead_letters
    yield dev
    stop_devhost(dev)


def _cli(dev, *args: str) -> tuple[int, list[dict], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCOREHOOK_", "MLFLOW_", "DataStorage"))}
    result = subprocess.run([sys.executable, "-m", "cli", "--settings", str(dev.settings_path), *args], cwd=ROOT,
                            capture_output=True, text=True, env=env, timeout=180)  # fmt: skip
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.returncode, lines, result.stdout + result.stderr


def _json_blob(dev, container: str, name: str) -> dict | None:
    client = dev.blobs.get_blob_client(container, name)
    return json.loads(client.download_blob().readall()) if client.exists() else None


def _sample(rows: int) -> bytes:
    import pyarrow.csv as pacsv

    from training.data import generate

    sink = io.BytesIO()
    pacsv.write_csv(generate(rows, seed=9, include_label=False), sink)
    return sink.getvalue()


def test_a_dead_lettered_file_is_recorded_then_replayed_once(app):
    name = f"dl/{uuid.uuid4().hex}.csv"
    etag = app.blobs.get_blob_client("incoming", name).upload_blob(_sample(200))["etag"].strip('"')
    record_name = f"incoming/{name}.{etag}.json"

    record = app.wait_for(lambda: _json_blob(app, "failed", record_name), timeout=90, what="dead-letter record")
    assert record["reason"] == "dead_lettered" and record["blob"] == f"incoming/{name}"
    facts = record["dead_letter"]
    assert (facts["reason"], facts["attempts"], facts["last_outcome"], facts["last_http_status"]) == (
        "MaxDeliveryAttemptsExceeded", 2, "NotFound", 404,
    )  # fmt: skip
    assert facts["subscription"] == "SCORE-INCOMING-BLOBS"
    assert facts["dead_letter_blob"].startswith(f"{app.dead_letters}/devstoreaccount1/SCORE-INCOMING-BLOBS/")
    deliveries = app.deliveries()
    assert [d["status"] for d in deliveries if (d.get("subject") or "").endswith(name) and "status" in d] == [404, 404]
    recorded = [d for d in deliveries if d["subscription"] == "record-dead-letters" and "status" in d]
    assert recorded and {d["status"] for d in recorded} == {200}
    assert not app.blobs.get_blob_client("scored", output_name("incoming", name)).exists()

    code, lines, out = _cli(app, "deadletters", "--json")
    (listed,) = [line for line in lines if (line["subject"] or "").endswith(name)]
    assert code == 0 and listed["replayed"] == "no" and listed["reason"] == "MaxDeliveryAttemptsExceeded", out
    assert listed["event_type"] == "Microsoft.Storage.BlobCreated" and listed["subscription"] == "SCORE-INCOMING-BLOBS"

    code, lines, out = _cli(app, "deadletters", "--replay", "--json")
    assert code == 0 and [(line["blob"], line["status"]) for line in lines] == [(f"incoming/{name}", "succeeded")], out
    output = app.blobs.get_blob_client("scored", output_name("incoming", name))
    assert output.get_blob_properties().metadata["rows_scored"] == "200"
    assert _json_blob(app, "failed", record_name) is None  # the file is scored: its dead-letter record is gone

    code, lines, out = _cli(app, "deadletters", "--replay", "--json")
    assert code == 0 and lines == [] and "no dead letter to replay" in out, out
    code, lines, out = _cli(app, "deadletters")
    row = next(line for line in out.splitlines() if "MaxDeliveryAttemptsExceeded" in line and name in line)
    assert code == 0 and " yes " in f"{row} ", out
