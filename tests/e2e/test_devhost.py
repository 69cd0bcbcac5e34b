"""devhost behaves like the Functions host and Event Grid: tested over HTTP against a probe app,
with real Azurite behind it."""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from pathlib import Path

import pytest

from tests.conftest import load_event, start_devhost, stop_devhost

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
APPS = Path(__file__).parent / "apps"


@pytest.fixture(scope="module")
def probe(azurite, tmp_path_factory):
    dev = start_devhost(
        tmp_path_factory.mktemp("probe"),
        azurite,
        "http://127.0.0.1:1",
        app="apps.probe_app:app",
        subscriptions=APPS / "probe_subscriptions.json",
    )
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    for container in ("egdrop", "cedrop", "faildrop", "blobdrop", "probe"):
        if not service.get_container_client(container).exists():
            service.create_container(container)
    dev.blobs = service
    yield dev
    stop_devhost(dev)


def _probe_record(dev, kind: str, name: str):
    blob = dev.blobs.get_blob_client("probe", f"{kind}/{name}.json")
    return json.loads(blob.download_blob().readall()) if blob.exists() else None


def _probe_records(dev, kind: str) -> list[dict]:
    container = dev.blobs.get_container_client("probe")
    return [
        json.loads(container.download_blob(b.name).readall())
        for b in container.list_blobs(name_starts_with=f"{kind}/")
    ]


def test_subscription_validation_handshake_is_answered(probe):
    event = load_event("subscription_validation.json")
    status, _, body = probe.request(
        "POST",
        "/runtime/webhooks/eventgrid?functionName=on_blob_event",
        event,
        {"aeg-event-type": "SubscriptionValidation", "Content-Type": "application/json"},
    )
    assert status == 200
    assert json.loads(body) == {"validationResponse": event[0]["data"]["validationCode"]}


def test_cloudevents_options_handshake_echoes_the_origin(probe):
    status, headers, _ = probe.request(
        "OPTIONS",
        "/runtime/webhooks/eventgrid?functionName=on_cloud_event",
        headers={"WebHook-Request-Origin": "eventgrid.azure.net"},
    )
    assert status == 200
    assert headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[{not json", "not valid JSON"),
        (
            json.dumps(
                [{"id": "1", "subject": "s", "eventTime": "2026-01-01T00:00:00Z", "data": {}}]
            ).encode(),
            "required field 'eventType' is missing",
        ),
        (
            json.dumps([{"specversion": "1.0", "id": "1", "type": "T"}]).encode(),
            "required field 'source' is missing",
        ),
        (json.dumps([42]).encode(), "event[0] is a int"),
    ],
)
def test_malformed_event_gets_400_naming_the_problem(probe, body, expected):
    status, _, response = probe.request(
        "POST",
        "/runtime/webhooks/eventgrid?functionName=on_blob_event",
        body,
        {"aeg-event-type": "Notification"},
    )
    assert status == 400
    assert expected in json.loads(response)["message"]


def test_uploaded_blob_reaches_the_function_through_local_event_grid(probe):
    name = f"{uuid.uuid4().hex}.csv"
    etag = probe.blobs.get_blob_client("egdrop", name).upload_blob(b"a,b\n1,2\n")["etag"]
    records = probe.wait_for(
        lambda: [r for r in _probe_records(probe, "eventgrid") if r["subject"].endswith(name)],
        what="BlobCreated delivery",
    )
    record = records[0]
    assert record["type"] == "EventGridEvent"
    assert record["subject"] == f"/blobServices/default/containers/egdrop/blobs/{name}"
    assert record["data"]["eTag"] == etag
    assert record["data"]["contentLength"] == 8
    assert record["data"]["url"].endswith(f"/devstoreaccount1/egdrop/{name}")
    assert len(record["data"]["sequencer"]) == 32


def test_cloudevents_subscription_delivers_a_cloud_event(probe):
    name = f"{uuid.uuid4().hex}.csv"
    probe.blobs.get_blob_client("cedrop", name).upload_blob(b"x")
    records = probe.wait_for(
        lambda: [r for r in _probe_records(probe, "cloudevent") if r["data"]["url"].endswith(name)],
        what="CloudEvent delivery",
    )
    assert records[0]["type"] == "CloudEvent"
    assert records[0]["source"].endswith("/storageAccounts/devstoreaccount1")


def test_failing_function_is_retried_then_dead_lettered(probe):
    name = f"{uuid.uuid4().hex}.csv"
    probe.blobs.get_blob_client("faildrop", name).upload_blob(b"x")

    def dead_letter():
        container = probe.blobs.get_container_client("deadletter")
        if not container.exists():
            return None
        for blob in container.list_blobs(name_starts_with="devstoreaccount1/PROBE-FAILING/"):
            record = json.loads(container.download_blob(blob.name).readall())[0]
            if record["subject"].endswith(name):
                return record
        return None

    record = probe.wait_for(dead_letter, what="dead letter")
    assert record["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
    assert record["deliveryAttempts"] == 3
    assert record["lastHttpStatusCode"] == 500
    attempts = [d for d in probe.deliveries() if (d.get("subject") or "").endswith(name) and "status" in d]
    assert [d["status"] for d in attempts] == [500, 500, 500]


def test_event_published_with_eventgrid_sdk_reaches_its_subscriber(probe):
    from azure.core.credentials import AzureKeyCredential
    from azure.core.exceptions import HttpResponseError
    from azure.eventgrid import EventGridEvent, EventGridPublisherClient

    endpoint = f"{probe.base_url}/topics/probe-topic/api/events"
    subject = f"things/{uuid.uuid4().hex}"
    EventGridPublisherClient(endpoint, AzureKeyCredential(probe.env["SCOREHOOK_EVENTS_TOPIC_KEY"])).send(
        [
            EventGridEvent(
                subject=subject, event_type="Probe.Thing.Happened", data={"n": 1}, data_version="1.0"
            )
        ]
    )
    records = probe.wait_for(
        lambda: [r for r in _probe_records(probe, "custom") if r["subject"] == subject],
        what="custom topic delivery",
    )
    assert records[0]["event_type"] == "Probe.Thing.Happened"
    assert records[0]["data"] == {"n": 1}
    with pytest.raises(HttpResponseError) as info:
        EventGridPublisherClient(endpoint, AzureKeyCredential("wrong-key")).send(
            [EventGridEvent(subject=subject, event_type="Probe.Thing.Happened", data={}, data_version="1.0")]
        )
    assert info.value.status_code == 401


def test_eventgrid_sourced_blob_trigger_receives_the_blob(probe):
    name = f"{uuid.uuid4().hex}.txt"
    probe.blobs.get_blob_client("blobdrop", name).upload_blob(b"hello blob")
    record = probe.wait_for(lambda: _probe_record(probe, "blob", f"blobdrop_{name}"), what="blob trigger")
    assert record == {"name": f"blobdrop/{name}", "length": 10, "text": "hello blob"}


def _peek(queue) -> list:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return list(queue.peek_messages(max_messages=32))
    except ResourceNotFoundError:
        return []


def test_queue_trigger_runs_writes_its_output_and_poisons_failures(probe, azurite):
    from azure.storage.queue import QueueClient

    items = QueueClient.from_connection_string(azurite.connection_string, "probe-items")
    with contextlib.suppress(Exception):
        items.create_queue()
    word = uuid.uuid4().hex
    items.send_message(base64.b64encode(word.encode()).decode())
    items.send_message(base64.b64encode(b"poison").decode())
    results = QueueClient.from_connection_string(azurite.connection_string, "probe-results")
    found = probe.wait_for(
        lambda: [m for m in _peek(results) if base64.b64decode(m.content) == word.upper().encode()],
        what="queue output",
    )
    assert found
    poison = QueueClient.from_connection_string(azurite.connection_string, "probe-items-poison")
    probe.wait_for(
        lambda: [m for m in _peek(poison) if base64.b64decode(m.content) == b"poison"],
        timeout=90,
        what="poison message",
    )


def test_timer_fires_on_its_schedule_and_admin_runs_functions_by_hand(probe):
    assert (
        probe.wait_for(lambda: _probe_record(probe, "timer", "tick"), what="timer tick")["past_due"] is False
    )
    assert (
        probe.request("POST", "/admin/functions/tick", {"input": ""}, {"x-functions-key": probe.master_key})[
            0
        ]
        == 202
    )
    assert (
        probe.request(
            "POST", "/admin/functions/tick", {"input": ""}, {"x-functions-key": probe.function_key}
        )[0]
        == 401
    )


def test_http_function_enforces_its_auth_level(probe):
    assert probe.request("GET", "/api/echo/ann")[0] == 401
    assert probe.request("GET", "/api/echo/ann?code=wrong")[0] == 401
    status, _headers, body = probe.request(
        "POST", "/api/echo/ann?q=7", b"hi", {"x-functions-key": probe.function_key}
    )
    assert status == 200
    assert json.loads(body) == {"name": "ann", "body": "hi", "q": "7"}
    assert probe.request("DELETE", "/api/echo/ann", headers={"x-functions-key": probe.function_key})[0] == 405


def _rejection_record(dev, event_id: str):
    from shared.names import rejected_event_name

    blob = dev.blobs.get_blob_client("failed", rejected_event_name(event_id))
    return json.loads(blob.download_blob().readall()) if blob.exists() else None


def test_an_event_over_1_mb_gets_413_and_a_failure_record(probe):
    event_id = f"big-{uuid.uuid4().hex}"
    event = {"id": event_id, "eventType": "Microsoft.Storage.BlobCreated", "subject": "/x",
             "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "", "data": {"pad": "x" * (2 << 20)}}  # fmt: skip
    status, _, body = probe.request("POST", "/runtime/webhooks/eventgrid?functionName=on_blob_event", [event],
                                    {"aeg-event-type": "Notification"})  # fmt: skip
    assert status == 413
    assert json.loads(body)["rejected"][0]["record"].startswith("failed/_events/")
    record = _rejection_record(probe, event_id)
    assert (record["reason"], record["limit"], record["source"]) == ("too_large", "event_bytes", "on_blob_event")
    assert _probe_record(probe, "eventgrid", event_id) is None


def test_a_converter_failure_gets_400_and_a_record_while_the_rest_of_the_batch_runs(probe):
    bad_id, good_id = f"bad-{uuid.uuid4().hex}", f"good-{uuid.uuid4().hex}"
    good = {"id": good_id, "eventType": "Demo.Thing", "subject": "/s", "eventTime": "2026-01-01T00:00:00Z",
            "dataVersion": "1", "data": {}}  # fmt: skip
    status, _, body = probe.request("POST", "/runtime/webhooks/eventgrid?functionName=on_blob_event",
                                    [{**good, "id": bad_id, "eventTime": 1764547200}, good],
                                    {"aeg-event-type": "Notification"})  # fmt: skip
    assert status == 400
    assert "converter" in json.loads(body)["message"]
    assert _rejection_record(probe, bad_id)["reason"] == "malformed_event"
    assert _probe_record(probe, "eventgrid", good_id)["subject"] == "/s"
    status, _, _ = probe.request("GET", "/admin/host/status", headers={"x-functions-key": probe.master_key})
    assert status == 200  # the host is still up
