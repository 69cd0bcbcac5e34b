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
            "SCOREHOOK_ALIAS_TTL_SECONDS": "3600",
            "SCOREHOOK_LEDGER_TABLE": f"ledger{uuid.uuid4().hex[:8]}",
        },
    )
    dev.blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    for container in ("incoming", "scored", "failed"):
        if not dev.blobs.get_container_client(container).exists():
            dev.blobs.create_container(container)
    dev.model, dev.model_name = model, name
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
        lambda: _blob(app, "scored", "incoming/" + name + ".predictions.csv"), what="output blob"
    )
    rows = list(csv.DictReader(io.StringIO(output.download_blob().readall().decode())))
    assert len(rows) == 500 and set(rows[0]) == {"id", "prediction", "probability", "model_version"}
    assert {r["prediction"] for r in rows} <= {"0", "1"}
    meta = output.get_blob_properties().metadata
    assert meta["input_etag"] == etag.strip('"') and meta["input_url"].endswith(f"/incoming/{name}")
    assert meta["model_version"] == str(app.model["version"]) and meta["rows_scored"] == "500"
    # the delivery is logged once the function returns, just after the output commits
    deliveries = app.wait_for(
        lambda: [d for d in app.deliveries() if (d.get("subject") or "").endswith(name) and "status" in d],
        what="the delivery's log entry",
    )
    assert [d["status"] for d in deliveries] == [200]


def test_a_bad_file_is_recorded_and_acknowledged_not_retried(app):
    name = f"e2e/{uuid.uuid4().hex}.csv"
    etag = app.blobs.get_blob_client("incoming", name).upload_blob(b"id,x01\nr1,0.5\n")["etag"]
    record_name = f"incoming/{name}.{etag.strip(chr(34))}.json"
    record = app.wait_for(lambda: _blob(app, "failed", record_name), what="failure record")
    failure = json.loads(record.download_blob().readall())
    assert failure["reason"] == "schema_mismatch" and "is missing" in failure["message"]
    assert _blob(app, "scored", "incoming/" + name + ".predictions.csv") is None
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
        lambda: _blob(app, "scored", f"incoming/ce-{name}.predictions.csv"), what="output"
    )
    assert output.get_blob_properties().metadata["event_id"] in {event["id"]} | {
        d["event_id"] for d in app.deliveries() if (d.get("subject") or "").endswith(f"ce-{name}")
    }


def test_a_delivery_with_a_traceparent_is_handled_under_that_trace(app):
    """The CloudEvents ``traceparent`` extension attribute becomes the parent of the invocation: the app's
    log lines (devhost's console, JSON lines) carry its trace id. devhost's own delivery of the upload races
    with this one: whichever scores, this invocation's line says what it did, under this trace."""
    trace = uuid.uuid4().hex
    name = f"e2e/{uuid.uuid4().hex}.csv"
    client = app.blobs.get_blob_client("incoming", name)
    etag = client.upload_blob(_sample(20))["etag"]
    event = {
        "specversion": "1.0", "id": str(uuid.uuid4()), "type": "Microsoft.Storage.BlobCreated",
        "source": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
        "subject": f"/blobServices/default/containers/incoming/blobs/{name}", "time": "2026-11-23T10:00:00Z",
        "traceparent": f"00-{trace}-00f067aa0ba902b7-01",
        "data": {"api": "PutBlob", "eTag": etag, "contentLength": 1, "blobType": "BlockBlob", "url": client.url},
    }  # fmt: skip

    def delivered() -> bool:  # 500 while the other delivery holds the file: Event Grid would retry
        status, _, _ = app.request(
            "POST",
            "/runtime/webhooks/eventgrid?functionName=score_blob",
            [event],
            {"aeg-event-type": "Notification"},
        )
        return status == 200

    app.wait_for(delivered, what="the traced delivery acknowledged")
    lines = [json.loads(line) for line in app.log.read_text().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("trace_id") == trace]
    assert mine and all(line["event_id"] == event["id"] and line["function"] == "score_blob" for line in mine)
    assert {line["message"] for line in mine} & {"file scored", "duplicate delivery acknowledged"}


def test_health_is_anonymous_and_status_needs_the_function_key(app):
    status, _, body = app.request("GET", "/api/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert app.request("GET", "/api/status")[0] == 401
    def ledger() -> dict:
        status, _, body = app.request("GET", "/api/status", headers={"x-functions-key": app.function_key})
        assert status == 200
        return json.loads(body)["ledger"]

    # an earlier test's file may still be between its output commit and its ledger finish: start when none is
    app.wait_for(lambda: not ledger().get("claimed"), what="no file in progress")
    before = ledger().get("succeeded", 0)
    name = f"e2e/{uuid.uuid4().hex}.csv"
    app.blobs.get_blob_client("incoming", name).upload_blob(_sample(10))
    app.wait_for(lambda: _blob(app, "scored", "incoming/" + name + ".predictions.csv"), what="output")
    app.wait_for(lambda: ledger().get("succeeded", 0) >= before + 1, what="the ledger's finish")
    status, _, body = app.request("GET", "/api/status", headers={"x-functions-key": app.function_key})
    payload = json.loads(body)
    assert payload["settings"]["data_connection_string"] == "***"
    assert payload["ledger"]["succeeded"] == before + 1


def _event_for(app, name: str) -> dict:
    client = app.blobs.get_blob_client("incoming", name)
    props = client.get_blob_properties()
    return {
        "id": str(uuid.uuid4()), "eventType": "Microsoft.Storage.BlobCreated", "eventTime": "2026-11-23T10:00:00Z",
        "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
        "subject": f"/blobServices/default/containers/incoming/blobs/{name}", "dataVersion": "",
        "data": {"api": "PutBlob", "eTag": props.etag, "contentLength": props.size, "url": client.url,
                 "sequencer": "0" * 32},
    }  # fmt: skip


def test_the_same_event_delivered_ten_times_at_once_gives_one_output(app):
    from concurrent.futures import ThreadPoolExecutor

    name = f"e2e-dup/{uuid.uuid4().hex}.csv"
    app.blobs.get_blob_client("incoming", name).upload_blob(_sample(2000))
    event = _event_for(app, name)
    with ThreadPoolExecutor(10) as pool:
        statuses = list(
            pool.map(
                lambda _: app.request(
                    "POST",
                    "/runtime/webhooks/eventgrid?functionName=score_blob",
                    [event],
                    {"aeg-event-type": "Notification"},
                )[0],
                range(10),
            )
        )
    assert set(statuses) <= {200, 500}  # 500: "being scored right now" → Event Grid retries later
    output = app.wait_for(
        lambda: _blob(app, "scored", "incoming/" + name + ".predictions.csv"), what="output"
    )
    assert output.get_blob_properties().metadata["rows_scored"] == "2000"
    # every late delivery finds the key finished and is acknowledged without scoring again
    for _ in range(3):
        assert (
            app.request(
                "POST",
                "/runtime/webhooks/eventgrid?functionName=score_blob",
                [event],
                {"aeg-event-type": "Notification"},
            )[0]
            == 200
        )
    assert (
        output.get_blob_properties().etag
        == app.blobs.get_blob_client("scored", "incoming/" + name + ".predictions.csv")
        .get_blob_properties()
        .etag
    )


def test_a_promoted_event_makes_the_next_file_use_the_new_version(app, mlflow_tracking_uri):
    from azure.core.credentials import AzureKeyCredential
    from azure.eventgrid import EventGridEvent, EventGridPublisherClient

    from training.train import train_and_register

    before = f"e2e-promo/{uuid.uuid4().hex}.csv"
    app.blobs.get_blob_client("incoming", before).upload_blob(_sample(10))
    old = app.wait_for(
        lambda: _blob(app, "scored", "incoming/" + before + ".predictions.csv"), what="output"
    )
    assert old.get_blob_properties().metadata["model_version"] == str(app.model["version"])

    new = train_and_register(
        mlflow_tracking_uri, model_name=app.model_name, rows=3000, seed=9, alias="champion"
    )
    EventGridPublisherClient(app.env["SCOREHOOK_EVENTS_TOPIC_ENDPOINT"],
                             AzureKeyCredential(app.env["SCOREHOOK_EVENTS_TOPIC_KEY"])).send([EventGridEvent(
        subject=f"models/{app.model_name}:{new['version']}", event_type="Scorehook.Model.Promoted",
        data={"model_name": app.model_name, "version": new["version"]}, data_version="1.0")])  # fmt: skip
    app.wait_for(lambda: [d for d in app.deliveries() if d.get("subscription") == "refresh-on-promotion"
                          and d.get("status") == 200], what="Promoted delivery")  # fmt: skip

    after = f"e2e-promo/{uuid.uuid4().hex}.csv"
    app.blobs.get_blob_client("incoming", after).upload_blob(_sample(10))
    fresh = app.wait_for(
        lambda: _blob(app, "scored", "incoming/" + after + ".predictions.csv"), what="output"
    )
    assert (
        fresh.get_blob_properties().metadata["model_version"]
        == str(new["version"])
        != str(app.model["version"])
    )
