"""Both registration front doors become one typed input; MLflow deliveries are verified before anything."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from shared.errors import EventSourceError, MissingFieldError, UnsupportedEventError
from shared.events import parse_event
from shared.registrations import (
    ApprovalGranted,
    ModelVersionRegistered,
    WebhookAuthError,
    from_azureml_event,
    from_mlflow_webhook,
)

EVENTS = Path(__file__).resolve().parents[1] / "events"
WORKSPACES = ("scorehook-ws",)
SECRET = "webhook-secret"
NOW = 1_752_494_400


def _event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())[0]


def _variants() -> list[dict]:
    eg_pascal = _event("model_registered_eventgrid.json")
    ce_camel = _event("model_registered_cloudevents_camelcase.json")
    eg_camel = copy.deepcopy(eg_pascal)
    eg_camel["data"] = ce_camel["data"]
    ce_pascal = copy.deepcopy(ce_camel)
    ce_pascal["data"] = eg_pascal["data"]
    return [eg_pascal, eg_camel, ce_pascal, ce_camel]


@pytest.mark.parametrize("index", range(4), ids=["eventgrid-Pascal", "eventgrid-camel", "cloudevents-Pascal",
                                                  "cloudevents-camel"])  # fmt: skip
def test_model_registered_in_both_schemas_and_casings_gives_the_same_registration(index):
    registration = from_azureml_event(parse_event(_variants()[index]), WORKSPACES)
    expected = from_azureml_event(parse_event(_variants()[0]), WORKSPACES)
    assert (registration.name, registration.version, registration.tags, registration.workspace) == (
        "sklearn_regression_model", "20", {"area": "diabetes", "type": "regression"}, "scorehook-ws")  # fmt: skip
    assert (
        registration.idempotency_key == expected.idempotency_key == "registration:sklearn_regression_model/20"
    )


def test_a_workspace_that_is_not_allowed_is_refused():
    with pytest.raises(EventSourceError, match="scorehook-ws"):
        from_azureml_event(parse_event(_variants()[0]), ("another-ws",))


def test_missing_model_fields_fall_back_to_the_subject_then_fail_by_name():
    event = _variants()[0]
    del event["data"]["ModelVersion"]
    assert from_azureml_event(parse_event(event), WORKSPACES).version == "20"  # subject models/NAME:VERSION
    event["subject"] = "models/"
    with pytest.raises(MissingFieldError, match="modelVersion"):
        from_azureml_event(parse_event(event), WORKSPACES)
    other = {**_variants()[0], "eventType": "Microsoft.MachineLearningServices.RunCompleted"}
    with pytest.raises(UnsupportedEventError):
        from_azureml_event(parse_event(other), WORKSPACES)


def _delivery(body: dict, *, delivery_id: str = "0c6a6d58-3f1a-4c8e-9d7b-2f3b6a1e9d10", timestamp: int = NOW,
              secret: str = SECRET) -> tuple[dict, bytes]:  # fmt: skip
    raw = json.dumps(body).encode()
    signed = f"{delivery_id}.{timestamp}.".encode() + raw  # the reference's recipe, written out independently
    signature = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()
    return {"X-MLflow-Delivery-Id": delivery_id, "X-MLflow-Timestamp": str(timestamp),
            "X-MLflow-Signature": f"v1,{signature}", "Content-Type": "application/json"}, raw  # fmt: skip


CREATED = {"entity": "model_version", "action": "created", "timestamp": "2025-07-14T12:00:00.123456+00:00",
           "data": {"name": "example_model", "version": "1", "source": "models:/123", "run_id": None,
                    "tags": {"example_key": "example_value"}, "description": "An example model version"}}  # fmt: skip


def test_a_signed_model_version_created_delivery_is_a_registration():
    headers, raw = _delivery(CREATED)
    registration = from_mlflow_webhook(SECRET, headers, raw, now=NOW + 10)
    assert isinstance(registration, ModelVersionRegistered)
    assert (registration.name, registration.version, registration.origin, registration.run_id) == (
        "example_model", "1", "mlflow", None)  # fmt: skip
    assert registration.delivery_id == headers["X-MLflow-Delivery-Id"]
    assert registration.idempotency_key == "registration:example_model/1"


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda h, r: ({k: v for k, v in h.items() if k != "X-MLflow-Signature"}, r), "unsigned"),
        (lambda h, r: (h, r.replace(b'"1"', b'"2"')), "forged"),
        (lambda h, r: ({**h, "X-MLflow-Signature": "v1,AAAA"}, r), "forged"),
        (lambda h, r: ({**h, "X-MLflow-Delivery-Id": "another-id"}, r), "forged"),
        (lambda h, r: (h, r), "stale"),
    ],
    ids=["unsigned", "body-changed", "bad-signature", "other-delivery-id", "replayed-later"],
)
def test_unsigned_forged_or_replayed_deliveries_are_refused(tamper, message):
    headers, raw = tamper(*_delivery(CREATED))
    now = NOW + 301 if message == "stale" else NOW
    with pytest.raises(WebhookAuthError, match=message):
        from_mlflow_webhook(SECRET, headers, raw, now=now)


def test_a_delivery_signed_with_another_secret_is_forged():
    headers, raw = _delivery(CREATED, secret="not-ours")
    with pytest.raises(WebhookAuthError, match="forged"):
        from_mlflow_webhook(SECRET, headers, raw, now=NOW)


def test_the_approval_tag_is_an_approval_and_other_deliveries_are_ignored():
    tag = {"entity": "model_version_tag", "action": "set", "timestamp": "x",
           "data": {"name": "m", "version": "4", "key": "scorehook.approve", "value": "true"}}  # fmt: skip
    headers, raw = _delivery(tag)
    assert from_mlflow_webhook(SECRET, headers, raw, now=NOW) == ApprovalGranted(
        "m", "4", headers["X-MLflow-Delivery-Id"]
    )
    alias = {
        "entity": "model_version_alias",
        "action": "created",
        "data": {"name": "m", "alias": "champion", "version": "4"},
    }
    assert from_mlflow_webhook(SECRET, *_delivery(alias), now=NOW) is None
    other_tag = {**tag, "data": {**tag["data"], "key": "team"}}
    assert from_mlflow_webhook(SECRET, *_delivery(other_tag), now=NOW) is None


def test_a_queue_message_carries_references_only_whatever_the_tags():
    from shared.registrations import from_message, to_message

    registration = ModelVersionRegistered("m", "3", "mlflow", "d-1", source="s3://x" * 1000, run_id="r1",
                                          tags={"big": "x" * 60_000, "other": "y" * 40_000}, identity="17")  # fmt: skip
    message = to_message(registration)
    assert len(message) < 300 and "xxx" not in message and "s3://" not in message
    back = from_message(message)
    assert (back.name, back.version, back.run_id, back.identity, back.tags) == ("m", "3", "r1", "17", {})
    assert back.idempotency_key == "registration:m/3@17"
    old = json.dumps({"kind": "registration", "name": "m", "version": "3", "origin": "mlflow",
                      "delivery_id": "d", "tags": {"a": "b"}, "source": "x"})  # fmt: skip
    assert from_message(old).name == "m"  # messages written before still read


def test_a_delivery_is_marked_only_after_its_message_is_queued():
    from shared.errors import StorageUnavailableError
    from shared.registrations import accept_delivery
    from shared.testing import FakeLedger, FakeQueue

    ledger, queue = FakeLedger(), FakeQueue()
    registration = ModelVersionRegistered("m", "1", "mlflow", "d-7", tags={"big": "x" * 60_000})
    queue.unavailable = StorageUnavailableError("queue down")
    with pytest.raises(StorageUnavailableError):
        accept_delivery(registration, ledger, queue)
    assert queue.messages == [] and ledger.get("delivery:d-7") is None  # not marked: MLflow's retry must work
    queue.unavailable = None
    assert accept_delivery(registration, ledger, queue) == "queued"
    assert ledger.get("delivery:d-7").status == "queued" and len(queue.messages) == 1
    assert accept_delivery(registration, ledger, queue) == "duplicate" and len(queue.messages) == 1


class _Webhook:
    """The ``mlflow_webhook`` entry point called in-process, on the fakes of ``shared.testing``."""

    def __init__(self, monkeypatch):
        import functions.deployment as entry
        from shared.settings import reset_settings
        from shared.testing import FakeLedger, FakeQueue

        monkeypatch.setenv("SCOREHOOK_MLFLOW_WEBHOOK_SECRET", SECRET)
        reset_settings()
        self.ledger, self.queue = FakeLedger(), FakeQueue()
        monkeypatch.setattr(entry, "ledger", lambda: self.ledger)
        monkeypatch.setattr(entry, "queue", lambda name: self.queue)
        self.function = entry.mlflow_webhook._function.get_user_function()

    def post(self, headers: dict, raw: bytes) -> int:
        import azure.functions as func

        request = func.HttpRequest("POST", "http://localhost/api/mlflow-webhook", headers=headers, body=raw)
        return self.function(request).status_code


def test_every_delivery_the_webhook_answers_writes_one_json_line(monkeypatch):
    import time

    from shared.errors import StorageUnavailableError
    from shared.logs import capture_logs
    from shared.settings import reset_settings

    webhook = _Webhook(monkeypatch)
    now = int(time.time())
    body = {**CREATED, "data": {**CREATED["data"], "tags": {"big": "x" * 60_000}}}
    headers, raw = _delivery(body, delivery_id="d-ok", timestamp=now)
    forged, _ = _delivery(body, delivery_id="d-forged", timestamp=now, secret="not-ours")
    alias = {
        "entity": "model_version_alias",
        "action": "created",
        "data": {"name": "m", "alias": "a", "version": "1"},
    }
    down_headers, down_raw = _delivery(CREATED, delivery_id="d-down", timestamp=now)
    try:
        with capture_logs() as logs:
            assert webhook.post(forged, raw) == 401
            assert webhook.post(*_delivery(alias, delivery_id="d-alias", timestamp=now)) == 204
            assert webhook.post(headers, raw) == 202
            assert webhook.post(headers, raw) == 200
            webhook.queue.unavailable = StorageUnavailableError("queue down")
            assert webhook.post(down_headers, down_raw) == 503
            webhook.queue.unavailable = None
            assert webhook.post(down_headers, down_raw) == 202  # MLflow's retry: same delivery id
    finally:
        reset_settings()
    lines = [(r["outcome"], r["delivery_id"], r["model"], r["model_version"], r["reason"])
             for r in logs if r["message"] == "webhook delivery"]  # fmt: skip
    assert lines == [
        ("refused", "d-forged", "example_model", "1", "unauthorized"),
        ("ignored", "d-alias", "m", "1", "not a registration or an approval"),
        ("queued", "d-ok", "example_model", "1", None),
        ("duplicate", "d-ok", "example_model", "1", "delivery id seen"),
        ("not_queued", "d-down", "example_model", "1", "storage_unavailable"),
        ("queued", "d-down", "example_model", "1", None),
    ]
    assert len(webhook.queue.messages) == 2 and all(len(m) < 300 for m in webhook.queue.messages)


def test_logging_is_configured_before_an_entry_points_first_line(tmp_path):
    """A fresh process: a refused delivery, before any service is built, is a JSON line in the log file."""
    import os
    import subprocess
    import sys

    log = tmp_path / "app.jsonl"
    code = (
        "import azure.functions as func, function_app\n"
        "from functions.deployment import mlflow_webhook\n"
        "request = func.HttpRequest('POST', 'http://h/api/mlflow-webhook', headers={}, body=b'{}')\n"
        "print(mlflow_webhook._function.get_user_function()(request).status_code)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREHOOK_")}
    env |= {"SCOREHOOK_LOG_FILE": str(log), "SCOREHOOK_MLFLOW_WEBHOOK_SECRET": SECRET}
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "401", out.stderr
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["message"], r["outcome"], r["reason"]) for r in lines] == [
        ("webhook delivery", "refused", "unauthorized")
    ]
