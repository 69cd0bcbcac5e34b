"""Fan-out on the real adapters (Azurite blob, queue and table): a file split, scored by several workers at once
and committed once, byte-identical to the single path; a worker process SIGKILLed mid-part and its part finished
by another; a poison part recorded as the file's one failure."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shared.adapters import AzureBlobStore, TableLedger
from shared.adapters.queue import StorageQueue
from shared.events import parse_blob_created
from shared.fanout import part_key
from shared.models import ModelCache, ModelProvider
from shared.scoring import ScoringService, output_name
from shared.settings import Settings
from shared.testing import FakePublisher, FakeRegistry

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    """A logistic regression on x1, x2 and a category, one ONNX input per column (as skl2onnx converts)."""
    import numpy as np
    import pandas as pd
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x1": rng.normal(size=300), "x2": rng.normal(size=300),
                          "color": rng.choice(["red", "green", "blue"], 300)})  # fmt: skip
    prep = ColumnTransformer([("num", StandardScaler(), ["x1", "x2"]),
                              ("cat", OneHotEncoder(handle_unknown="ignore"), ["color"])])  # fmt: skip
    pipeline = Pipeline([("prep", prep), ("clf", LogisticRegression())]).fit(frame, (frame.x1 > 0).astype(int))
    onx = to_onnx(pipeline, initial_types=[("x1", FloatTensorType([None, 1])), ("x2", FloatTensorType([None, 1])),
                                           ("color", StringTensorType([None, 1]))],
                  options={id(pipeline.steps[-1][1]): {"zipmap": False}})  # fmt: skip
    return onx.SerializeToString()


def _csv(rows: int, bad_row: int | None = None) -> bytes:
    """Quoted newlines and escaped quotes in ``note`` every few rows, CRLF line ends."""
    rng = random.Random(11)
    out = ["id,x1,x2,color,note"]
    for i in range(1, rows + 1):
        note = f'"two\r\nlines, ""quoted"" {i}"' if i % 5 == 0 else f"n{i}"
        x1 = "oops" if i == bad_row else f"{rng.uniform(-3, 3):.5f}"
        out.append(f"{i:07d},{x1},{rng.uniform(-3, 3):.5f},{rng.choice(['red', 'green', 'blue'])},{note}")
    return ("\r\n".join(out) + "\r\n").encode()


def instance(settings: Settings, queue_name: str, publisher: FakePublisher) -> ScoringService:
    """The scoring service as one more instance has it: its own clients and model cache (blob:// ONNX model)."""
    store = AzureBlobStore.from_settings(settings)
    provider = ModelProvider(FakeRegistry(), store, ModelCache())
    return ScoringService(store, TableLedger.from_settings(settings, create=False), provider, publisher, settings,
                          parts=StorageQueue.from_settings(settings, queue_name))  # fmt: skip


class World:
    def __init__(self, azurite, unique: str, onnx: bytes) -> None:
        self.unique = unique
        self.model = f"blob://models{unique}/tiny.onnx"
        routes = [
            {"name": "big", "container": f"in{unique}", "prefix": "big/", "model": self.model,
             "key_columns": ["id"], "fanout_bytes": 100_000, "part_bytes": 256 << 10, "batch_rows": 4096},
            {"name": "whole", "container": f"in{unique}", "prefix": "whole/", "model": self.model,
             "key_columns": ["id"], "batch_rows": 4096},
        ]  # fmt: skip
        self.env = {
            "DataStorage": azurite.connection_string, "SCOREHOOK_INPUT_CONTAINER": f"in{unique}",
            "SCOREHOOK_OUTPUT_CONTAINER": f"out{unique}", "SCOREHOOK_FAILED_CONTAINER": f"failed{unique}",
            "SCOREHOOK_LEDGER_TABLE": f"ledger{unique}", "SCOREHOOK_ROUTES": json.dumps(routes),
            "SCOREHOOK_CLAIM_TTL_SECONDS": "2",
        }  # fmt: skip
        self.settings = Settings.from_env(self.env)
        self.queue_name = f"parts{unique}"
        self.store = AzureBlobStore.from_settings(self.settings)
        self.store.ensure_containers(f"in{unique}", f"out{unique}", f"failed{unique}", f"models{unique}")
        self.store.write_bytes(f"models{unique}", "tiny.onnx", onnx)
        self.ledger = TableLedger.from_settings(self.settings)
        self.publisher = FakePublisher()
        self.service = self.instance()
        from azure.storage.queue import QueueClient

        self.queue = QueueClient.from_connection_string(azurite.connection_string, self.queue_name)
        self.sequence = iter(range(1, 10_000))

    def instance(self) -> ScoringService:
        return instance(self.settings, self.queue_name, self.publisher)

    def event(self, name: str, data: bytes):
        container = self.settings.input_container
        etag = self.store.write_bytes(container, name, data)
        info = self.store.properties(container, name)
        return parse_blob_created({
            "id": f"e-{name}", "eventType": "Microsoft.Storage.BlobCreated", "eventTime": "2026-11-23T10:00:00Z",
            "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
            "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
            "data": {"api": "PutBlob", "eTag": etag, "contentLength": info.size, "url": info.url,
                     "sequencer": f"{next(self.sequence):032x}"},
        })  # fmt: skip

    def output(self, name: str) -> bytes:
        return self.store.read_bytes(self.settings.output_container, output_name(self.settings.input_container, name))

    def work(self, key: str, workers: int = 3, timeout: float = 120) -> list[str]:
        """Run ``workers`` queue workers (threads, one service each) until the file is finished."""
        statuses: list[str] = []
        done = threading.Event()

        def worker() -> None:
            service = self.instance()
            while not done.is_set():
                messages = list(self.queue.receive_messages(max_messages=1, visibility_timeout=10))
                if not messages:
                    time.sleep(0.1)
                    continue
                message = messages[0]
                try:
                    outcome = service.fanout.score_part(base64.b64decode(message.content).decode(),
                                                        message.dequeue_count)  # fmt: skip
                except Exception:  # transient: visible again soon (the host's visibilityTimeout)
                    self.queue.update_message(message.id, message.pop_receipt, visibility_timeout=1)
                    statuses.append("retry")
                    continue
                self.queue.delete_message(message.id, message.pop_receipt)
                statuses.append(outcome.status)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.ledger.get(key)
            if record is not None and record.status in ("succeeded", "failed"):
                break
            time.sleep(0.2)
        time.sleep(0.5)
        done.set()
        for thread in threads:
            thread.join(30)
        return statuses


@pytest.fixture
def world(azurite, unique, onnx_bytes) -> World:
    return World(azurite, unique, onnx_bytes)


def test_a_large_file_scored_by_several_workers_is_committed_once_byte_identical(world):
    data = _csv(60_000)
    assert world.service.score(world.event("whole/a.csv", data)).status == "succeeded"
    outcome = world.service.score(world.event("big/a.csv", data))
    assert outcome.status == "fanned_out" and outcome.details["parts"] >= 6
    statuses = world.work(outcome.key, workers=3)
    assert statuses.count("committed") == 1, statuses
    assert world.output("big/a.csv") == world.output("whole/a.csv")
    record = world.ledger.get(outcome.key)
    assert record.status == "succeeded" and record.details["rows_scored"] == 60_000
    assert world.publisher.types().count("Scorehook.Scoring.Completed") == 2  # one per file


def test_a_worker_killed_mid_part_loses_its_lease_and_another_finishes_the_part(world):
    data = _csv(30_000)
    outcome = world.service.score(world.event("big/k.csv", data))
    assert outcome.status == "fanned_out"
    script = f"""
import base64, json, os, sys, time
sys.path.insert(0, {str(ROOT)!r})
from shared.adapters import AzureBlobStore
slow = AzureBlobStore.read_range
def read_range(self, *args, **kwargs):
    time.sleep(3.0)  # long enough to be killed in the middle of the part
    return slow(self, *args, **kwargs)
AzureBlobStore.read_range = read_range
from shared.settings import Settings
from shared.testing import FakePublisher
from tests.integration.test_fanout_azurite import instance
settings = Settings.from_env(json.loads(os.environ["ENV"]))
from azure.storage.queue import QueueClient
queue = QueueClient.from_connection_string(settings.data_connection_string, os.environ["QUEUE"])
(message,) = list(queue.receive_messages(max_messages=1, visibility_timeout=3))
print(json.loads(base64.b64decode(message.content))["part"]["index"], flush=True)
service = instance(settings, os.environ["QUEUE"], FakePublisher())
service.fanout.score_part(base64.b64decode(message.content).decode(), message.dequeue_count)
"""
    env = {**os.environ, "ENV": json.dumps(world.env), "QUEUE": world.queue_name}
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        index = int(child.stdout.readline())  # type: ignore[union-attr]
        key = part_key(outcome.key, index)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            record = world.ledger.get(key)
            if record is not None and record.status == "claimed" and record.owner.endswith(f":{child.pid}"):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the worker never claimed its part")
        time.sleep(1.5)  # in the middle of its ranged downloads
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    assert world.ledger.get(key).status == "claimed"  # what the dead worker left behind
    statuses = world.work(outcome.key, workers=2)
    assert statuses.count("committed") == 1, statuses
    taken = world.ledger.get(key)
    assert taken.status == "succeeded" and taken.attempts == 2 and not taken.owner.endswith(f":{child.pid}")
    reference = world.instance()
    assert reference.score(world.event("whole/k.csv", data)).status == "succeeded"
    assert world.output("big/k.csv") == world.output("whole/k.csv")


def test_a_poison_part_fails_the_file_naming_the_part_and_commits_nothing(world):
    data = _csv(30_000, bad_row=21_000)
    single = world.service.score(world.event("whole/p.csv", data))
    assert single.status == "failed" and single.reason == "bad_value"
    outcome = world.service.score(world.event("big/p.csv", data))
    statuses = world.work(outcome.key, workers=2)
    assert "failed" in statuses and "committed" not in statuses
    record = world.ledger.get(outcome.key)
    assert record.status == "failed" and record.details["reason"] == "bad_value"
    failure = json.loads(world.store.read_bytes(*record.details["failure"].split("/", 1)))
    assert (failure["row"], failure["line"]) == (single.details["row"], single.details["line"])
    assert failure["part_first_row"] <= 21_000 <= failure["part_last_row"]
    assert not list(world.store.list_blobs(world.settings.output_container, prefix=f"{world.settings.input_container}/big/"))
