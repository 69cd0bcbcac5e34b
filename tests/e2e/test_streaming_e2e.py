"""Event Hubs streaming end to end through devhost: records sent to the local hub (Azurite) are scored by
``score_stream`` into the local output hub, bad ones dead-lettered, the checkpoint advanced; a host that
crashes after the outputs and before the checkpoint redelivers the batch: the same ids come again."""

from __future__ import annotations

import json
import time

import pytest

from devhost.eventhubs import LocalEventHubs
from tests.conftest import start_devhost, stop_devhost

NO_MLFLOW = "http://127.0.0.1:9"  # the model is an ONNX blob: the registry is never asked


@pytest.fixture(scope="module")
def model_blob(azurite) -> str:
    import uuid

    from azure.storage.blob import BlobServiceClient

    from training.data import generate
    from training.train import to_onnx, train

    table = generate(2000, seed=4, include_label=True)
    container = f"models{uuid.uuid4().hex[:8]}"
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    service.create_container(container)
    service.get_blob_client(container, "model.onnx").upload_blob(to_onnx(train(table, kind="linear"), table.slice(0, 300)))
    return f"blob://{container}/model.onnx"


def records(n: int, seed: int) -> list[dict]:
    """``n`` records with the model's inputs and ids of their own (``s<seed>-<i>``)."""
    from training.data import generate

    return [{**r, "id": f"s{seed}-{i}"} for i, r in enumerate(generate(n, seed=seed, include_label=False).to_pylist())]


def test_records_scored_bad_ones_dead_lettered_checkpointed_and_redelivered_after_a_crash(
    azurite, model_blob, tmp_path, unique
):
    hub, out = f"records-{unique}", f"predictions-{unique}"
    crash = tmp_path / "crash-before-checkpoint"
    settings = {"SCOREHOOK_STREAM_ENABLED": "true", "SCOREHOOK_STREAM_HUB": hub, "SCOREHOOK_STREAM_OUTPUT_HUB": out,
                "SCOREHOOK_STREAM_CONSUMER_GROUP": "$Default", "SCOREHOOK_MODEL_URI": model_blob,
                "SCOREHOOK_DRIFT_ENABLED": "false", "SCOREHOOK_LEDGER_TABLE": f"stream{unique}",
                "DEVHOST_EVENTHUB_PARTITIONS": "2", "DEVHOST_EVENTHUB_CRASH_FILE": str(crash)}  # fmt: skip
    hubs = LocalEventHubs.from_connection_string(azurite.connection_string, partitions=2)
    good = records(6, seed=1)
    bodies = [json.dumps(r) for r in good[:3]] + ["{not json", json.dumps({**good[3], "x05": "high"})]
    bodies += [json.dumps({k: v for k, v in r.items() if k != "id"}) for r in good[4:5]] + [json.dumps(good[5])]
    hubs.send(hub, bodies, partition="0")
    hubs.send(hub, [json.dumps(r) for r in records(2, seed=2)], partition="1")

    (tmp_path / "first").mkdir(), (tmp_path / "second").mkdir()
    dev = start_devhost(tmp_path / "first", azurite, NO_MLFLOW, extra=settings)
    try:
        dev.wait_for(lambda: len(hubs.read_all(out)) >= 6, timeout=30, what="predictions in the output hub")
        dev.wait_for(lambda: hubs.checkpoint(hub, "$Default", "0") == 6 and hubs.checkpoint(hub, "$Default", "1") == 1,
                     timeout=10, what="checkpoints")  # fmt: skip
        predicted = [json.loads(e.body) for e in hubs.read_all(out)]
        ids = sorted(p["id"] for p in predicted)
        assert ids == sorted([good[0]["id"], good[1]["id"], good[2]["id"], good[5]["id"],
                              *(r["id"] for r in records(2, seed=2))])  # fmt: skip
        assert all(p["model_version"] and 0 <= p["probability"] <= 1 for p in predicted)
        letter = json.loads(azurite_blob(azurite, "failed", f"_stream/{hub}/0/0-6.json"))
        assert [(r["position"], r["reason"]) for r in letter["records"]] == [
            (3, "malformed_event"), (4, "wrong_type"), (5, "missing_field")]  # fmt: skip

    finally:
        stop_devhost(dev)

    # the host crashes after the outputs are written, before the checkpoint; the three events are in the hub
    # before it starts, so they come as one batch (a host already polling could read the first one alone)
    again = records(3, seed=3)
    hubs.send(hub, [json.dumps(r) for r in again], partition="0")
    crash.write_text("once")
    (tmp_path / "crashing").mkdir()
    dev = start_devhost(tmp_path / "crashing", azurite, NO_MLFLOW, extra=settings, wait=False)
    try:
        deadline = time.monotonic() + 60
        while dev.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert dev.process.poll() == 70, "devhost did not crash before the checkpoint"
    finally:
        stop_devhost(dev)
    assert not crash.exists()
    assert hubs.checkpoint(hub, "$Default", "0") == 6  # not moved: the batch is delivered again
    first_time = {r["id"] for r in again}
    assert sorted(json.loads(e.body)["id"] for e in hubs.read_all(out)) == sorted([*ids, *first_time])

    dev = start_devhost(tmp_path / "second", azurite, NO_MLFLOW, extra=settings)
    try:
        dev.wait_for(lambda: hubs.checkpoint(hub, "$Default", "0") == 9, timeout=30, what="the redelivery checkpointed")
    finally:
        stop_devhost(dev)
    predicted = [json.loads(e.body) for e in hubs.read_all(out)]
    redelivered = [p for p in predicted if p["id"] in first_time]
    assert len(predicted) == 6 + 3 + 3 and len(redelivered) == 6  # at-least-once: each id twice, never lost
    by_id: dict[str, list] = {}
    for p in redelivered:
        by_id.setdefault(p["id"], []).append(p["probability"])
    assert all(a == b for a, b in by_id.values())  # a consumer deduplicating by id keeps one prediction each


def azurite_blob(azurite, container: str, name: str) -> bytes:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    return service.get_blob_client(container, name).download_blob().readall()


def test_a_scored_file_sends_its_predictions_and_telemetry_to_the_local_hub_after_the_commit(
    azurite, model_blob, tmp_path, unique
):
    import io

    import pyarrow.csv as pacsv
    from azure.storage.blob import BlobServiceClient

    from training.data import generate

    hub, name = f"monitoring-{unique}", f"collect/{unique}.csv"
    routes = [{"name": "collected", "container": "incoming", "prefix": "collect/", "model": model_blob,
               "eventhub_output": hub}]  # fmt: skip
    settings = {"SCOREHOOK_ROUTES": json.dumps(routes), "SCOREHOOK_MODEL_URI": model_blob,
                "SCOREHOOK_DRIFT_ENABLED": "false", "SCOREHOOK_LEDGER_TABLE": f"collect{unique}"}  # fmt: skip
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    for container in ("incoming", "scored", "failed"):
        if not blobs.get_container_client(container).exists():
            blobs.create_container(container)
    data = io.BytesIO()
    pacsv.write_csv(generate(25, seed=7, include_label=False), data)
    hubs = LocalEventHubs.from_connection_string(azurite.connection_string, partitions=2)
    dev = start_devhost(tmp_path, azurite, NO_MLFLOW, extra=settings)
    try:
        etag = blobs.get_blob_client("incoming", name).upload_blob(data.getvalue())["etag"]
        dev.wait_for(lambda: len(hubs.read_all(hub)) >= 26, timeout=60, what="the file's events in the local hub")
        events = hubs.read_all(hub)
        output = blobs.get_blob_client("scored", f"incoming/{name}.predictions.csv").get_blob_properties()
    finally:
        stop_devhost(dev)
    bodies = [json.loads(e.body) for e in events]
    key = f"blob:devstoreaccount1/incoming/{name}@{etag.strip(chr(34))}"
    assert sorted(b["id"] for b in bodies) == sorted([f"{key}#{i}" for i in range(1, 26)] + [f"{key}#telemetry"])
    assert len({e.partition for e in events}) == 1  # one file's events on one partition, in order
    assert [b["row"] for b in bodies if b["kind"] == "prediction"] == list(range(1, 26))
    # every event came after the commit: none is older than the output blob
    assert min(e.enqueued_time for e in events) >= output.last_modified.replace(microsecond=0)
    telemetry = next(b for b in bodies if b["kind"] == "telemetry")
    assert telemetry["rows_scored"] == 25 and telemetry["model_version"] == output.metadata["model_version"]


def test_stream_dead_letters_replayed_by_the_cli_after_the_model_exists_are_scored_once(azurite, tmp_path, unique):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from azure.storage.blob import BlobServiceClient

    from training.data import generate
    from training.train import to_onnx, train

    hub, out, container = f"records-{unique}", f"predictions-{unique}", f"models{unique}"
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    blobs.create_container(container)
    failed = f"failed-{unique}"
    settings = {"SCOREHOOK_STREAM_ENABLED": "true", "SCOREHOOK_STREAM_HUB": hub, "SCOREHOOK_STREAM_OUTPUT_HUB": out,
                "SCOREHOOK_STREAM_CONSUMER_GROUP": "$Default", "SCOREHOOK_MODEL_URI": f"blob://{container}/model.onnx",
                "SCOREHOOK_DRIFT_ENABLED": "false",
                "SCOREHOOK_LEDGER_TABLE": f"replay{unique}", "SCOREHOOK_FAILED_CONTAINER": failed,
                "SCOREHOOK_EVENTS_TOPIC_ENDPOINT": ""}  # fmt: skip
    hubs = LocalEventHubs.from_connection_string(azurite.connection_string, partitions=2)
    sent = records(4, seed=9)
    hubs.send(hub, [json.dumps(r) for r in sent], partition="0")

    def cli(*args: str) -> tuple[int, list[dict], str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SCOREHOOK_", "MLFLOW_", "DataStorage"))}
        result = subprocess.run([sys.executable, "-m", "cli", "--settings", str(dev.settings_path), *args],
                                cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, env=env,
                                timeout=120)  # fmt: skip
        return result.returncode, [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")], \
            result.stdout + result.stderr  # fmt: skip

    dev = start_devhost(tmp_path, azurite, NO_MLFLOW, extra=settings)
    try:
        dev.wait_for(lambda: hubs.checkpoint(hub, "$Default", "0") == 3, timeout=30, what="the batch checkpointed")
        code, listed, text = cli("deadletters", "--stream", "--json")
        assert code == 0 and [(d["record_id"], d["reason"], d["replayed"]) for d in listed] == [
            (r["id"], "model_not_found", "no") for r in sent], text  # fmt: skip
        assert hubs.read_all(out) == []

        table = generate(2000, seed=4, include_label=True)  # the fix: the model exists now
        model = to_onnx(train(table, kind="linear"), table.slice(0, 300))
        blobs.get_blob_client(container, "model.onnx").upload_blob(model)
        code, replayed, text = cli("deadletters", "--stream", "--replay", "--json")
        assert code == 0 and [r["status"] for r in replayed] == ["sent"] * 4, text
        dev.wait_for(lambda: len(hubs.read_all(out)) >= 4, timeout=30, what="the replayed records scored")
        code, again, text = cli("deadletters", "--stream", "--replay", "--json")
        assert code == 0 and again == [], text  # each record once
        code, status, text = cli("status", "--json")
        assert status[0]["stream_dead_letters"] == {"total": 4, "open": 0, "replayed": 4, "not_replayable": 0}, text
    finally:
        stop_devhost(dev)
    assert sorted(json.loads(e.body)["id"] for e in hubs.read_all(out)) == sorted(r["id"] for r in sent)
    assert len(hubs.read_all(hub)) == 8  # the four records, and each sent again once
