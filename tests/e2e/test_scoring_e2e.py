"""The real app through devhost: a file dropped into Azurite is scored via the local Event Grid."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pytest

from tests.conftest import start_devhost, stop_devhost

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def app(azurite, mlflow_tracking_uri, tmp_path_factory):
    from azure.storage.blob import BlobServiceClient

    from training.train import train_and_register

    name = f"e2e-{uuid.uuid4().hex[:6]}"
    model = train_and_register(mlflow_tracking_uri, model_name=name, rows=3000, alias="champion")
    dev = start_devhost(
        tmp_path_factory.mktemp("app"),
        azurite,
        mlflow_tracking_uri,
        extra={
            "SCOREHOOK_MODEL_URI": f"models:/{name}@champion",
            "SCOREHOOK_LEDGER_TABLE": f"ledger{uuid.uuid4().hex[:8]}",
        },
    )
    dev.blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    for container in ("incoming", "scored", "failed"):
        if not dev.blobs.get_container_client(container).exists():
            dev.blobs.create_container(container)
    dev.model = model
    yield dev
    stop_devhost(dev)


def _blob(dev, container, name):
    client = dev.blobs.get_blob_client(container, name)
    return client if client.exists() else None


def _sample(rows: int) -> bytes:
    from training.data import generate

    table = generate(rows, seed=5, include_label=False)
    import pyarrow.csv as pacsv

    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    return sink.getvalue()


def test_a_dropped_file_is_scored_with_lineage(app):
    name = f"e2e/{uuid.uuid4().hex}.csv"
    data = _sample(500)
    etag = app.blobs.get_blob_client("incoming", name).upload_blob(data)["etag"]
    output = app.wait_for(
        lambda: _blob(app, "scored", name.replace(".csv", ".predictions.csv")), what="output blob"
    )
    rows = list(csv.DictReader(io.StringIO(output.download_blob().readall().decode())))
    assert len(rows) == 500 and set(rows[0]) == {"id", "prediction", "probability", "model_version"}
    assert {r["prediction"] for r in rows} <= {"0", "1"}
    meta = output.get_blob_properties().metadata
    assert meta["input_etag"] == etag.strip('"') and meta["input_url"].endswith(f"/incoming/{name}")
    assert meta["model_version"] == str(app.model["version"]) and meta["rows_scored"] == "500"
    deliveries = [d for d in app.deliveries() if (d.get("subject") or "").endswith(name)]
    assert [d["status"] for d in deliveries] == [200]


def test_a_bad_file_is_recorded_and_acknowledged_not_retried(app):
    name = f"e2e/{uuid.uuid4().hex}.csv"
    etag = app.blobs.get_blob_client("incoming", name).upload_blob(b"id,x01\nr1,0.5\n")["etag"]
    record_name = f"incoming/{name}.{etag.strip(chr(34))}.json"
    record = app.wait_for(lambda: _blob(app, "failed", record_name), what="failure record")
    failure = json.loads(record.download_blob().readall())
    assert failure["reason"] == "schema_mismatch" and "is missing" in failure["message"]
    assert _blob(app, "scored", name.replace(".csv", ".predictions.csv")) is None
    assert _blob(app, "incoming", name) is not None
    deliveries = [d for d in app.deliveries() if (d.get("subject") or "").endswith(name)]
    assert [d["status"] for d in deliveries] == [200]


def test_a_cloudevents_delivery_is_scored_the_same_way(app):
    name = f"e2e/{uuid.uuid4().hex}.csv"
    client = app.blobs.get_blob_client("incoming", "ce-" + name)
    etag = client.upload_blob(_sample(20))["etag"]
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": "Microsoft.Storage.BlobCreated",
        "source": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
        "subject": f"/blobServices/default/containers/incoming/blobs/ce-{name}",
        "time": "2026-11-23T10:00:00.1234567Z",
        "data": {
            "api": "PutBlob",
            "eTag": etag,
            "contentLength": 1,
            "blobType": "BlockBlob",
            "url": client.url,
        },
    }
    for _ in range(2):  # a duplicate delivery is acknowledged without a second scoring
        status, _, _ = app.request(
            "POST",
            "/runtime/webhooks/eventgrid?functionName=score_blob",
            [event],
            {"aeg-event-type": "Notification"},
        )
        assert status == 200
    output = app.wait_for(
        lambda: _blob(app, "scored", f"ce-{name}".replace(".csv", ".predictions.csv")), what="output"
    )
    assert output.get_blob_properties().metadata["event_id"] in {event["id"]} | {
        d["event_id"] for d in app.deliveries() if (d.get("subject") or "").endswith(f"ce-{name}")
    }


def test_health_is_anonymous_and_status_needs_the_function_key(app):
    status, _, body = app.request("GET", "/api/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert app.request("GET", "/api/status")[0] == 401
    status, _, body = app.request("GET", "/api/status", headers={"x-functions-key": app.function_key})
    assert status == 200
    before = json.loads(body)["ledger"].get("succeeded", 0)
    name = f"e2e/{uuid.uuid4().hex}.csv"
    app.blobs.get_blob_client("incoming", name).upload_blob(_sample(10))
    app.wait_for(lambda: _blob(app, "scored", name.replace(".csv", ".predictions.csv")), what="output")
    status, _, body = app.request("GET", "/api/status", headers={"x-functions-key": app.function_key})
    payload = json.loads(body)
    assert payload["settings"]["data_connection_string"] == "***"
    assert payload["ledger"]["succeeded"] == before + 1
