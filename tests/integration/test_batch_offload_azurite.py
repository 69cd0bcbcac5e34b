"""Azure ML batch offload on the real blob store and table ledger (Azurite); the batch endpoint is the
recording fake of ``shared.testing`` (no Azure ML here)."""

from __future__ import annotations

import json
import uuid

import pytest

from shared.adapters import AzureBlobStore, TableLedger
from shared.batch_offload import EXPERIMENT, job_key
from shared.events import parse_blob_created, parse_event
from shared.models import ModelCache, ModelProvider
from shared.scoring import ScoringService
from shared.settings import Settings
from shared.testing import FakeBatchScorer, FakePublisher, FakeRegistry

pytestmark = pytest.mark.integration
TOPIC = "/subscriptions/0/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/scorehook-ws"


@pytest.fixture
def world(azurite, unique):
    routes = [{"name": "big", "container": f"in{unique}", "model": "models:/churn@champion",
               "engine": "azureml-batch", "batch_endpoint": "churn-batch"}]  # fmt: skip
    settings = Settings.from_env(
        {"DataStorage": azurite.connection_string, "SCOREHOOK_ROUTES": json.dumps(routes),
         "SCOREHOOK_ALLOWED_WORKSPACES": "scorehook-ws"},
        output_container=f"out{unique}", failed_container=f"failed{unique}", ledger_table=f"ledger{unique}",
    )  # fmt: skip
    blobs = AzureBlobStore.from_settings(settings)
    blobs.ensure_containers(f"in{unique}", settings.output_container, settings.failed_container)
    ledger, scorer, publisher = TableLedger.from_settings(settings), FakeBatchScorer(), FakePublisher()
    provider = ModelProvider(FakeRegistry(), blobs, ModelCache())
    service = ScoringService(blobs, ledger, provider, publisher, settings, batch=scorer)
    container = f"in{unique}"

    def upload(name: str) -> dict:
        etag = blobs.write_bytes(container, name, b"id,x1\n1,0.5\n")
        info = blobs.properties(container, name)
        return {
            "id": str(uuid.uuid4()), "eventType": "Microsoft.Storage.BlobCreated", "eventTime": "2026-11-23T10:00:00Z",
            "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
            "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
            "data": {"api": "PutBlob", "eTag": etag, "contentLength": info.size, "url": info.url},
        }  # fmt: skip

    class World:
        pass

    w = World()
    w.settings, w.blobs, w.ledger, w.scorer, w.publisher, w.service, w.upload, w.container = (
        settings, blobs, ledger, scorer, publisher, service, upload, container,
    )  # fmt: skip
    return w


def _run(job: str, kind: str = "RunCompleted", status: str | None = None):
    data = {"runId": job, "experimentName": EXPERIMENT, **({"runStatus": status} if status else {})}
    return parse_event({"id": str(uuid.uuid4()), "eventType": f"Microsoft.MachineLearningServices.{kind}",
                        "topic": TOPIC, "subject": f"experiments/e/runs/{job}", "eventTime": "2026-11-23T11:00:00Z",
                        "data": data, "dataVersion": ""})  # fmt: skip


def test_submit_and_complete_on_the_table_ledger(world):
    outcome = world.service.score(parse_blob_created(world.upload("a.csv")))
    assert outcome.status == "submitted"
    (request,) = world.scorer.requests
    assert request.input_url.startswith("http://127.0.0.1:") and request.input_url.endswith(f"/{world.container}/a.csv")
    assert world.ledger.get(outcome.key).status == "submitted"
    assert world.ledger.get(job_key(request.job_name)).details["blob_key"] == outcome.key

    seen = world.ledger.get(outcome.key)
    done = world.service.batch.complete(_run(request.job_name))
    assert done.status == "succeeded"
    assert world.service.batch.complete(_run(request.job_name)).status == "duplicate"
    record = world.ledger.get(outcome.key)
    assert record.status == "succeeded" and record.details["output"].endswith(f"/{request.job_name}/score/")
    meta = world.blobs.properties(world.settings.output_container, f"{world.container}/a.csv.azureml-batch.json")
    assert meta.metadata["job_name"] == request.job_name

    # a delivery that read "submitted" before the first one finished loses on the table's eTag
    assert world.service.batch._finish(seen, "failed", {"reason": "batch_failed"}, None) is False
    assert world.ledger.get(outcome.key).status == "succeeded"
    assert world.publisher.types() == ["Scorehook.Scoring.Completed"]


def test_a_failed_job_writes_its_failure_record_to_storage(world):
    outcome = world.service.score(parse_blob_created(world.upload("dir/b.csv")))
    job = world.scorer.requests[0].job_name
    done = world.service.batch.complete(_run(job, "RunStatusChanged", "Failed"))
    assert done.status == "failed"
    record = json.loads(world.blobs.read_bytes(world.settings.failed_container, done.failure.split("/", 1)[1]))
    assert record["blob"] == f"{world.container}/dir/b.csv" and record["job_name"] == job
    assert world.ledger.get(outcome.key).details["reason"] == "batch_failed"
