"""The local Event Grid survives devhost: a devhost process SIGKILLed mid-delivery and started again (same
settings, same port, so the same state table) resends what was pending with its attempt counts, and
announces the blobs that arrived while it was down. Real Azurite, devhost over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, DevhostProcess, start_devhost, stop_devhost

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
APPS = Path(__file__).parent / "apps"
SUBSCRIPTIONS = APPS / "restart_subscriptions.json"


def restart(dev: DevhostProcess) -> DevhostProcess:
    """The same devhost again (same command line and settings file: port, keys, state table), a new process.
    Works for any devhost started with ``tests.conftest.start_devhost``."""
    log = dev.log.with_name(f"devhost-{uuid.uuid4().hex[:6]}.log")
    argv = list(dev.process.args)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "e2e")])}
    process = subprocess.Popen(argv, cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT, text=True, env=env)  # noqa: SIM115
    again = DevhostProcess(dev.settings, dev.settings_path, process, log)

    def up() -> bool:
        try:
            return again.request("GET", "/admin/host/status", headers={"x-functions-key": again.master_key},
                                 timeout=2)[0] == 200  # fmt: skip
        except OSError:
            return False

    again.wait_for(up, timeout=60, what="devhost to start again")
    return again


def kill(dev: DevhostProcess) -> None:
    dev.process.kill()  # SIGKILL: nothing is flushed, no shutdown hook runs
    dev.process.wait(10)


@pytest.fixture
def blobs(azurite):
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    for container in ("holddrop", "retrydrop", "restart-probe", "deadletter"):
        if not service.get_container_client(container).exists():
            service.create_container(container)
    return service


def _exists(blobs, container: str, name: str) -> bool:
    return blobs.get_blob_client(container, name).exists()


def _started(blobs, name: str) -> list[str]:
    return [b.name for b in blobs.get_container_client("restart-probe").list_blobs(name_starts_with=f"started/{name}/")]


def test_a_killed_devhost_resends_pending_deliveries_and_announces_blobs_that_arrived_meanwhile(
    tmp_path, azurite, blobs
):
    tag = uuid.uuid4().hex[:8]
    before, stable = f"before-{tag}.csv", f"stable-{tag}.csv"
    held, meanwhile = f"held-{tag}.csv", f"meanwhile-{tag}.csv"
    for name in (before, stable):  # there before the very first start: baselined, not announced
        blobs.get_blob_client("holddrop", name).upload_blob(b"x")
    dev = start_devhost(tmp_path, azurite, "http://127.0.0.1:1", app="apps.restart_app:app",
                        subscriptions=SUBSCRIPTIONS, extra={"DEVHOST_EVENTGRID_TABLE": f"restart{tag}"})  # fmt: skip
    try:
        blobs.get_blob_client("holddrop", held).upload_blob(b"x")
        dev.wait_for(lambda: _started(blobs, held), what="the held delivery to start")
        kill(dev)
        blobs.get_blob_client("holddrop", meanwhile).upload_blob(b"y")  # while devhost is down: new,
        blobs.get_blob_client("holddrop", before).upload_blob(b"changed", overwrite=True)  # and changed
        blobs.get_blob_client("restart-probe", "release").upload_blob(b"", overwrite=True)
        dev = restart(dev)
        dev.wait_for(lambda: all(_exists(blobs, "restart-probe", f"done/{n}") for n in (held, meanwhile, before)),
                     what="the three deliveries")  # fmt: skip
        done = json.loads(blobs.get_blob_client("restart-probe", f"done/{held}").download_blob().readall())
        assert done["pid"] == dev.process.pid
        attempts = {d["subject"].rsplit("/", 1)[-1]: d["attempt"] for d in dev.deliveries() if "status" in d}
        assert attempts[held] == 2  # the attempt in flight when devhost died counts
        assert attempts[meanwhile] == 1 and attempts[before] == 1
        assert stable not in attempts  # baselined by the very first start, unchanged since
        assert len(_started(blobs, held)) == 2
        stop_devhost(dev)  # a graceful stop and start: nothing left to resend or announce
        dev = restart(dev)
        dev.wait_for(lambda: dev.request("GET", "/admin/host/status",
                                         headers={"x-functions-key": dev.master_key})[0] == 200)  # fmt: skip
        time.sleep(1.5)
        assert [d for d in dev.deliveries() if "status" in d] == []
    finally:
        stop_devhost(dev)
        blobs.get_blob_client("restart-probe", "release").delete_blob(delete_snapshots=None) if _exists(
            blobs, "restart-probe", "release") else None


def test_a_delivery_waiting_for_a_retry_continues_its_attempt_count_after_a_kill(tmp_path, azurite, blobs):
    tag = uuid.uuid4().hex[:8]
    name = f"fails-{tag}.csv"
    dev = start_devhost(tmp_path, azurite, "http://127.0.0.1:1", app="apps.restart_app:app",
                        subscriptions=SUBSCRIPTIONS, extra={"DEVHOST_EVENTGRID_TABLE": f"retry{tag}"})  # fmt: skip
    try:
        blobs.get_blob_client("retrydrop", name).upload_blob(b"x")
        dev.wait_for(lambda: [d for d in dev.deliveries() if (d.get("subject") or "").endswith(name)
                              and d.get("status") == 500], what="the first failed attempt")  # fmt: skip
        kill(dev)
        dev = restart(dev)

        def dead_letter():
            container = blobs.get_container_client("deadletter")
            for blob in container.list_blobs(name_starts_with="devstoreaccount1/RESTART-FAILING/"):
                record = json.loads(container.download_blob(blob.name).readall())[0]
                if record["subject"].endswith(name):
                    return record
            return None

        record = dev.wait_for(dead_letter, what="the dead letter")
        assert record["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
        assert record["deliveryAttempts"] == 4
        after = [d["attempt"] for d in dev.deliveries() if (d.get("subject") or "").endswith(name) and "status" in d]
        assert after == [2, 3, 4]
    finally:
        stop_devhost(dev)


def test_pending_events_of_any_size_are_read_back_whole_by_the_next_local_event_grid(azurite, blobs):
    """In process, no host: deliveries to a closed port stay pending; a second LocalEventGrid on the same
    table restores them byte for byte (a 100 KB event split over properties, a 700 KB one in a blob)."""
    from devhost.eventgrid import EventGridStore, LocalEventGrid, Subscription
    from devhost.services import free_port

    table = f"store{uuid.uuid4().hex[:8]}"
    sub = Subscription(name="store-topic", function="nowhere", topic="t1", event_types=("Demo.Thing",))
    events = [{"id": f"e-{size}", "eventType": "Demo.Thing", "subject": "s", "eventTime": "2026-01-01T00:00:00Z",
               "dataVersion": "1", "data": {"pad": "é" * size}} for size in (10, 100_000, 700_000)]  # fmt: skip

    def grid() -> LocalEventGrid:
        store = EventGridStore.from_connection_string(azurite.connection_string, table, blobs)
        return LocalEventGrid([sub], f"http://127.0.0.1:{free_port()}", blobs, topics={"t1": {"key": "k"}},
                              retry_delays=[600], store=store, timeout=2)  # fmt: skip

    first = grid().start()
    published = [dict(e) for e in events]
    first.publish_to_topic("t1", "k", published)  # adds topic and metadataVersion
    deadline = time.monotonic() + 30
    while sum(1 for d in first.history if "status" in d) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.stop()
    assert sorted(d["status"] for d in first.history if "status" in d) == [0, 0, 0]  # nobody listening
    second = grid()
    second.restore()
    restored = {d.event["id"]: d for d in second._heap}
    assert {k: v.event for k, v in restored.items()} == {e["id"]: e for e in published}
    assert {d.attempts for d in restored.values()} == {1}
    assert restored["e-700000"].spilled and not restored["e-100000"].spilled
    for delivery in restored.values():
        second._forget(delivery)
    assert EventGridStore.from_connection_string(azurite.connection_string, table, blobs).pending() == []
    assert not [b for b in blobs.get_container_client("devhost-eventgrid").list_blobs(name_starts_with=table)]


def test_an_invocation_past_function_timeout_is_answered_500_and_retried(tmp_path, azurite, blobs):
    tag = uuid.uuid4().hex[:8]
    name = f"slow-{tag}.csv"
    dev = start_devhost(tmp_path, azurite, "http://127.0.0.1:1", app="apps.restart_app:app", subscriptions=SUBSCRIPTIONS,
                        extra={"DEVHOST_EVENTGRID_TABLE": f"timeout{tag}", "DEVHOST_FUNCTION_TIMEOUT": "1"})  # fmt: skip
    try:
        blobs.get_blob_client("holddrop", name).upload_blob(b"x")  # never released: runs past the timeout
        statuses = dev.wait_for(lambda: [d["status"] for d in dev.deliveries()
                                         if (d.get("subject") or "").endswith(name) and "status" in d][:2] or None
                                if len(_started(blobs, name)) >= 2 else None, what="a retry after the timeout")  # fmt: skip
        assert statuses == [500, 500][: len(statuses)] and statuses
        log = dev.log.read_text()
        assert "function hold (invocation " in log and "exceeded functionTimeout (1 s): abandoned" in log
        assert not _exists(blobs, "restart-probe", f"done/{name}")
    finally:
        stop_devhost(dev)
