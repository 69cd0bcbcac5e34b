"""Azure ML batch offload: routes with ``engine: azureml-batch``, the submission through azure-ai-ml's own
``batch_endpoints.invoke`` (its request built by the SDK offline, sent to a recording request pipeline), and
completion from the job's run events (the reference payloads of tests/events) on the in-memory fakes."""

from __future__ import annotations

import copy
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shared.adapters.azureml_batch import AzureMLBatchScorer, BatchUnavailableError, invoke_arguments
from shared.batch_offload import EXPERIMENT, job_key, parse_batch_run, pending_jobs
from shared.errors import BatchFailedError, ConfigurationError, EventSourceError, InputError, TransientError
from shared.events import parse_blob_created, parse_event
from shared.models import ModelCache, ModelProvider
from shared.ports import BatchJobRequest, BatchScorer
from shared.routes import parse_routes
from shared.scoring import ScoringService
from shared.settings import Settings
from shared.testing import FakeBatchScorer, FakeBlobStore, FakeLedger, FakePublisher, FakeRegistry

EVENTS = Path(__file__).resolve().parents[1] / "events"
WORKSPACE = "scorehook-ws"
ROUTES = [
    {"name": "big", "container": "incoming", "prefix": "big/", "model": "models:/churn@champion",
     "engine": "azureml-batch", "batch_endpoint": "churn-batch", "batch_deployment": "blue"},
    {"name": "rest", "container": "incoming", "model": "models:/churn@champion"},
]  # fmt: skip
JOB_NAME = re.compile(r"scorehook-[0-9a-f]{16}-[0-9a-f]{8}")


class Offload:
    """The scoring service with a batch route, on fakes."""

    def __init__(self) -> None:
        self.blobs, self.ledger, self.publisher = FakeBlobStore(), FakeLedger(), FakePublisher()
        self.registry, self.scorer = FakeRegistry(), FakeBatchScorer()
        self.settings = Settings.from_env(
            {"SCOREHOOK_ROUTES": json.dumps(ROUTES), "SCOREHOOK_ALLOWED_WORKSPACES": WORKSPACE}
        )
        provider = ModelProvider(self.registry, self.blobs, ModelCache(), ttl_seconds=60)
        self.service = ScoringService(self.blobs, self.ledger, provider, self.publisher, self.settings,
                                      batch=self.scorer)  # fmt: skip

    def upload(self, name: str, data: bytes = b"id,x1\n1,0.5\n") -> dict[str, Any]:
        etag = self.blobs.write_bytes("incoming", name, data)
        return {
            "id": f"evt-{name}", "eventType": "Microsoft.Storage.BlobCreated",
            "topic": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
            "subject": f"/blobServices/default/containers/incoming/blobs/{name}",
            "eventTime": "2026-11-23T10:00:00Z",
            "data": {"api": "PutBlob", "eTag": etag, "contentLength": len(data), "blobType": "BlockBlob",
                     "url": f"http://127.0.0.1:10000/devstoreaccount1/incoming/{name}"},
        }  # fmt: skip

    def submit(self, name: str = "big/2026/a.csv") -> Any:
        outcome = self.service.score(parse_blob_created(self.upload(name)))
        assert outcome.status == "submitted"
        return outcome


@pytest.fixture
def offload() -> Offload:
    return Offload()


def run_event(fixture: str, job_name: str, **data: Any) -> Any:
    """A reference run event (tests/events) re-addressed to one of our jobs, as ``shared.events`` parses it."""
    (raw,) = json.loads((EVENTS / fixture).read_text())
    raw = copy.deepcopy(raw)
    raw["subject"] = raw["subject"].rsplit("/", 1)[0] + f"/{job_name}"
    raw["id"] = f"{raw['id']}-{job_name}-{data.get('runStatus', 'x')}"
    raw["data"].update({"runId": job_name, "experimentName": EXPERIMENT, **data})
    return parse_event(raw)


# -- routes -----------------------------------------------------------------------------------------
def test_a_batch_route_parses_with_its_endpoint_and_deployment() -> None:
    big, rest = parse_routes(json.dumps(ROUTES))
    assert (big.engine, big.batch_endpoint, big.batch_deployment) == ("azureml-batch", "churn-batch", "blue")
    assert (rest.engine, rest.batch_endpoint, rest.batch_deployment) == ("local", None, None)
    (only,) = parse_routes(json.dumps([{**ROUTES[0], "batch_deployment": None}]))
    assert only.batch_deployment is None  # the endpoint's default deployment


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"engine": "sagemaker"}, "[big].engine='sagemaker': expected one of local, azureml-batch"),
        ({"batch_endpoint": None}, "[big].batch_endpoint=None: expected the batch endpoint's name"),
        ({"batch_endpoint": "9-lives"}, "[big].batch_endpoint='9-lives': expected an Azure ML name"),
        ({"batch_endpoint": "a_b"}, "[big].batch_endpoint='a_b': expected an Azure ML name"),
        ({"batch_deployment": "x" * 33}, "[big].batch_deployment='xxxx"),
        ({"batch_endpoint": 7}, "[big].batch_endpoint=7: expected text or null"),
        ({"engine": "local"}, "[big].batch_endpoint='churn-batch': expected only with engine azureml-batch"),
        ({"batch_datastore": "in-ds"}, "[big].batch_datastore='in-ds': expected an Azure ML datastore name"),
    ],
)
def test_bad_batch_routes_are_refused_at_start(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_routes(json.dumps([{**ROUTES[0], **change}]))
    assert problem in str(caught.value)


def test_batch_routes_need_the_workspace_at_start() -> None:
    from shared.startup import check_configuration

    env = {"SCOREHOOK_ROUTES": json.dumps(ROUTES)}
    with pytest.raises(ConfigurationError) as caught:
        check_configuration(env)
    settings = {p["setting"] for p in caught.value.details["problems"]}
    assert settings == {"SCOREHOOK_AZUREML_WORKSPACE", "SCOREHOOK_ALLOWED_WORKSPACES"}
    workspace = f"/subscriptions/s/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}"
    _, routes = check_configuration({**env, "SCOREHOOK_AZUREML_WORKSPACE": workspace,
                                     "SCOREHOOK_ALLOWED_WORKSPACES": WORKSPACE})  # fmt: skip
    assert [r.engine for r in routes] == ["azureml-batch", "local"]
    check_configuration({})  # no batch route: nothing more is asked


def test_a_route_with_a_datastore_hands_the_file_over_as_its_datastore_path() -> None:
    offload = Offload()
    routes = [{**ROUTES[0], "batch_datastore": "incoming_ds"}]
    offload.service.routes = parse_routes(json.dumps(routes))
    outcome = offload.service.score(parse_blob_created(offload.upload("big/2026/d.csv")))
    assert outcome.status == "submitted"
    assert offload.scorer.requests[0].input_url == "azureml://datastores/incoming_ds/paths/big/2026/d.csv"
    record = offload.ledger.get(outcome.key).details
    assert record["batch_input"] == offload.scorer.requests[0].input_url
    assert record["input_url"].startswith("http://127.0.0.1:10000/")  # lineage keeps the blob's URL


# -- submission -------------------------------------------------------------------------------------
def test_a_file_on_a_batch_route_is_claimed_submitted_and_acknowledged(offload: Offload) -> None:
    raw = offload.upload("big/2026/a.csv")
    outcome = offload.service.score(parse_blob_created(raw))

    assert outcome.status == "submitted" and outcome.model == "azureml-batch:churn-batch"
    (request,) = offload.scorer.requests
    assert (request.endpoint, request.deployment, request.experiment_name) == ("churn-batch", "blue", EXPERIMENT)
    assert request.input_url == raw["data"]["url"] and JOB_NAME.fullmatch(request.job_name)
    record = offload.ledger.get(outcome.key)
    assert record is not None and record.status == "submitted"
    assert record.details["job_name"] == request.job_name
    assert record.details["input_etag"] == raw["data"]["eTag"].strip('"')
    assert datetime.fromisoformat(record.details["submitted_at"]) <= datetime.now(UTC)
    pointer = offload.ledger.get(job_key(request.job_name))
    assert pointer is not None and pointer.details["blob_key"] == outcome.key
    assert offload.registry.resolves == 0 and offload.blobs.names("scored") == []  # nothing scored here
    assert offload.publisher.events == []  # the outcome is published when the job ends

    again = offload.service.score(parse_blob_created(raw))
    assert again.status == "duplicate" and again.details["status"] == "submitted"
    assert len(offload.scorer.requests) == 1


def test_a_refused_submission_is_a_failure_record_naming_the_blob(offload: Offload) -> None:
    offload.scorer.fail_next = BatchFailedError("invoke batch endpoint churn-batch: Azure ML rejected it (404)")
    outcome = offload.service.score(parse_blob_created(offload.upload("big/b.csv")))

    assert (outcome.status, outcome.reason) == ("failed", "batch_failed")
    assert outcome.failure is not None and outcome.failure.startswith("failed/incoming/big/b.csv.")
    record = json.loads(offload.blobs.read_bytes("failed", outcome.failure.removeprefix("failed/")))
    assert record["blob"] == "incoming/big/b.csv" and "404" in record["message"]
    assert offload.ledger.get(outcome.key).status == "failed"
    assert offload.publisher.types() == ["Scorehook.Scoring.Failed"]


def test_an_unavailable_endpoint_is_retried_and_the_redelivery_submits(offload: Offload) -> None:
    raw = offload.upload("big/c.csv")
    offload.scorer.fail_next = BatchUnavailableError("Azure ML answered 503")
    with pytest.raises(TransientError):
        offload.service.score(parse_blob_created(raw))
    key = parse_blob_created(raw)
    from shared.scoring import idempotency_key

    assert offload.ledger.get(idempotency_key(key)).status == "retrying"
    assert offload.service.score(parse_blob_created(raw)).status == "submitted"
    assert len(offload.scorer.requests) == 1


def test_files_off_the_batch_route_are_still_scored_here(offload: Offload) -> None:
    outcome = offload.service.score(parse_blob_created(offload.upload("small/a.csv")))
    assert outcome.status == "failed" and outcome.reason == "model_not_found"  # the local engine ran
    assert offload.scorer.requests == []


# -- completion -------------------------------------------------------------------------------------
def test_submit_then_run_completed_records_success_with_the_output_and_lineage(offload: Offload) -> None:
    outcome = offload.submit()
    job = offload.scorer.requests[0].job_name
    output = f"azureml://datastores/workspaceblobstore/paths/azureml/{job}/score/predictions.csv"
    offload.scorer.job_outputs[job] = {"score": output}

    done = offload.service.batch.complete(run_event("azureml_run_completed.json", job))

    assert done is not None and (done.status, done.output, done.key) == ("succeeded", output, outcome.key)
    record = offload.ledger.get(outcome.key)
    assert record.status == "succeeded" and record.details["output"] == output
    assert record.details["job_name"] == job and record.details["run_status"] == "Completed"
    lineage = offload.blobs.properties("scored", "incoming/big/2026/a.csv.azureml-batch.json").metadata
    assert lineage["job_name"] == job and lineage["output"] == output
    assert lineage["input_url"].endswith("/incoming/big/2026/a.csv") and lineage["batch_endpoint"] == "churn-batch"
    assert lineage["input_etag"] == record.details["input_etag"]
    assert offload.ledger.get(job_key(job)).status == "succeeded"
    assert offload.publisher.types() == ["Scorehook.Scoring.Completed"]
    assert offload.publisher.events[0][1] == "incoming/big/2026/a.csv"


def test_duplicate_and_late_events_leave_one_outcome(offload: Offload) -> None:
    outcome = offload.submit()
    job = offload.scorer.requests[0].job_name
    completed = run_event("azureml_run_completed.json", job)

    statuses = [offload.service.batch.complete(completed).status for _ in range(3)]
    late_failure = offload.service.batch.complete(
        run_event("azureml_run_status_changed_plain.json", job, runStatus="Failed")
    )
    late_running = offload.service.batch.complete(
        run_event("azureml_run_status_changed_plain.json", job, runStatus="Running")
    )

    assert statuses == ["succeeded", "duplicate", "duplicate"]
    assert (late_failure.status, late_running.status) == ("duplicate", "duplicate")
    assert offload.ledger.get(outcome.key).status == "succeeded"
    assert offload.publisher.types() == ["Scorehook.Scoring.Completed"]
    assert offload.scorer.outputs_read == [job]
    assert offload.blobs.names("failed") == []


def test_a_failed_run_is_a_failure_record_naming_the_blob_and_the_job(offload: Offload) -> None:
    outcome = offload.submit("big/bad.csv")
    job = offload.scorer.requests[0].job_name
    running = offload.service.batch.complete(
        run_event("azureml_run_status_changed_plain.json", job, runStatus="Running")
    )
    assert running.status == "pending" and offload.ledger.get(outcome.key).status == "submitted"

    failed = run_event("azureml_run_status_changed_plain.json", job)  # the reference payload: "failed"
    results = [offload.service.batch.complete(failed).status for _ in range(2)]

    assert results == ["failed", "duplicate"]
    record = offload.ledger.get(outcome.key)
    assert record.status == "failed" and record.details["reason"] == "batch_failed"
    name = record.details["failure"].removeprefix("failed/")
    assert name.startswith("incoming/big/bad.csv.")
    failure = json.loads(offload.blobs.read_bytes("failed", name))
    assert failure["blob"] == "incoming/big/bad.csv" and failure["job_name"] == job
    assert failure["reason"] == "batch_failed" and failure["run_status"] == "failed"
    assert job in failure["message"] and "incoming/big/bad.csv" in failure["message"]
    assert offload.publisher.types() == ["Scorehook.Scoring.Failed"]
    assert offload.scorer.outputs_read == []


def test_concurrent_deliveries_of_the_outcome_record_it_once(offload: Offload) -> None:
    outcome = offload.submit()
    job = offload.scorer.requests[0].job_name
    seen = offload.ledger.get(outcome.key)
    real_get = offload.ledger.get

    def racing_get(key: str) -> Any:  # both deliveries read "submitted" before either finishes
        return seen if key == outcome.key else real_get(key)

    offload.ledger.get = racing_get  # type: ignore[method-assign]
    first = offload.service.batch.complete(run_event("azureml_run_completed.json", job))
    second = offload.service.batch.complete(run_event("azureml_run_status_changed_plain.json", job))

    assert (first.status, second.status) == ("succeeded", "duplicate")
    assert real_get(outcome.key).status == "succeeded"
    assert offload.blobs.names("failed") == []  # the losing failure record was removed
    assert offload.publisher.types() == ["Scorehook.Scoring.Completed"]


def test_events_of_other_runs_and_of_unknown_jobs_change_nothing(offload: Offload) -> None:
    offload.submit()
    (raw,) = json.loads((EVENTS / "azureml_run_completed.json").read_text())
    assert offload.service.batch.complete(parse_event(raw)) is None  # the AutoML run of the reference payload
    other = run_event("azureml_run_completed.json", "scorehook-0123456789abcdef-89abcdef", experimentName="other")
    assert offload.service.batch.complete(other) is None
    unknown = offload.service.batch.complete(run_event("azureml_run_completed.json", "scorehook-0123456789abcdef-89abcdef"))
    assert unknown.status == "unknown"
    assert [r.status for r in offload.ledger.records() if r.key.startswith("blob:")] == ["submitted"]


def test_a_run_event_from_another_workspace_is_rejected(offload: Offload) -> None:
    offload.submit()
    job = offload.scorer.requests[0].job_name
    (raw,) = json.loads((EVENTS / "azureml_run_completed.json").read_text())
    raw["topic"] = raw["topic"].replace(WORKSPACE, "someone-elses-ws")
    raw["data"].update({"runId": job, "experimentName": EXPERIMENT})
    with pytest.raises(EventSourceError):
        offload.service.batch.complete(parse_event(raw))
    assert offload.ledger.get(job_key(job)).status == "submitted"


def test_a_job_that_never_reports_stays_visible_as_submitted(offload: Offload) -> None:
    outcome = offload.submit()
    later = datetime.now(UTC) + timedelta(hours=3)
    (stuck,) = pending_jobs(offload.ledger, older_than_seconds=7200, now=later)
    assert stuck["key"] == outcome.key and stuck["job_name"] == offload.scorer.requests[0].job_name
    assert stuck["batch_endpoint"] == "churn-batch" and stuck["age_s"] >= 3 * 3600 - 5
    assert pending_jobs(offload.ledger, older_than_seconds=7200) == []  # not old yet

    again = offload.service.replay("incoming", "big/2026/a.csv")  # the operator gives up on the job
    assert again.status == "submitted" and len(offload.scorer.requests) == 2
    old = offload.scorer.requests[0].job_name
    assert offload.service.batch.complete(run_event("azureml_run_completed.json", old)).status == "stale"


@pytest.mark.parametrize(
    ("fixture", "status", "outcome"),
    [
        ("azureml_run_completed.json", None, "succeeded"),
        ("azureml_run_status_changed_plain.json", None, "failed"),  # "failed" as the reference sends it
        ("azureml_run_status_changed_plain.json", "Canceled", "failed"),
        ("azureml_run_status_changed_plain.json", "Running", None),
    ],
)
def test_run_events_parse_from_the_reference_payloads(fixture: str, status: str | None, outcome: str | None) -> None:
    job = "scorehook-0123456789abcdef-89abcdef"
    event = run_event(fixture, job, **({"runStatus": status} if status else {}))
    run = parse_batch_run(event, allowed_workspaces=(WORKSPACE,))
    assert run is not None and (run.job_name, run.outcome, run.workspace) == (job, outcome, WORKSPACE)
    cloud = parse_event({"specversion": "1.0", "id": "c1", "type": event.type, "source": event.source,
                         "subject": event.subject, "time": "2026-01-01T00:00:00Z", "data": event.data})  # fmt: skip
    assert parse_batch_run(cloud, allowed_workspaces=(WORKSPACE,)).outcome == outcome


def test_a_replayed_file_gets_a_new_job_and_the_old_jobs_events_are_stale(offload: Offload) -> None:
    outcome = offload.submit("big/retry.csv")
    old = offload.scorer.requests[0].job_name
    offload.service.batch.complete(run_event("azureml_run_status_changed_plain.json", old))
    assert offload.ledger.get(outcome.key).status == "failed"

    again = offload.service.replay("incoming", "big/retry.csv")

    new = offload.scorer.requests[1].job_name
    assert again.status == "submitted" and new != old and new[:26] == old[:26]  # same file, new job
    assert offload.service.batch.complete(run_event("azureml_run_completed.json", old)).status == "stale"
    assert offload.ledger.get(outcome.key).status == "submitted"
    assert offload.service.batch.complete(run_event("azureml_run_completed.json", new)).status == "succeeded"


def test_the_entry_point_records_the_outcome_and_acknowledges_bad_events(
    offload: Offload, monkeypatch: pytest.MonkeyPatch
) -> None:
    import azure.functions as func

    import functions.batch as entry
    from shared.logs import capture_logs

    monkeypatch.setattr(entry, "scoring_service", lambda: offload.service)
    function = entry.on_batch_job_event._function.get_user_function()
    outcome = offload.submit()
    job = offload.scorer.requests[0].job_name

    def deliver(topic_workspace: str, status: str) -> None:
        (raw,) = json.loads((EVENTS / "azureml_run_status_changed_plain.json").read_text())
        raw["data"].update({"runId": job, "experimentName": EXPERIMENT, "runStatus": status})
        event = func.EventGridEvent(id=f"e-{status}-{topic_workspace}", data=raw["data"],
                                    topic=raw["topic"].replace(WORKSPACE, topic_workspace), subject=raw["subject"],
                                    event_type=raw["eventType"], event_time=datetime.now(UTC), data_version="")  # fmt: skip
        function(event, SimpleNamespace(invocation_id="inv-1"))

    with capture_logs() as logs:
        deliver("elsewhere", "Failed")  # rejected and acknowledged: nothing changes
        assert offload.ledger.get(outcome.key).status == "submitted"
        deliver(WORKSPACE, "Canceled")
    assert offload.ledger.get(outcome.key).status == "failed"
    rejected = [line for line in logs if line.get("message") == "batch job event rejected"]
    assert rejected and rejected[0]["reason"] == "unknown_source"
    failed = [line for line in logs if line.get("message") == "batch job failed"]
    assert failed and failed[0]["blob"] == "incoming/big/2026/a.csv" and failed[0]["job_name"] == job


# -- the azure-ai-ml adapter ------------------------------------------------------------------------
REQUEST = BatchJobRequest(
    endpoint="churn-batch", input_url="https://scorehookdata.blob.core.windows.net/incoming/big/a.csv",
    job_name="scorehook-0123456789abcdef-89abcdef", deployment="blue",
)  # fmt: skip


class _BatchEndpoints:
    """``ml_client.batch_endpoints`` recording ``invoke``; anything else is a failure."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.error = error

    def invoke(self, endpoint_name: str, **kwargs: Any) -> Any:
        self.calls.append((endpoint_name, kwargs))
        if self.error is not None:
            raise self.error
        return SimpleNamespace(name=kwargs["job_name"], status="NotStarted", id=f"/jobs/{kwargs['job_name']}")

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the scorer must not call batch_endpoints.{name}")


def _http_error(status: int) -> Exception:
    from azure.core.exceptions import HttpResponseError

    failure = HttpResponseError(message="endpoint says no")
    failure.status_code = status
    return failure


def test_submit_invokes_the_endpoint_once_with_the_blob_as_a_uri_file_input() -> None:
    from azure.ai.ml import Input

    endpoints = _BatchEndpoints()
    scorer = AzureMLBatchScorer(SimpleNamespace(batch_endpoints=endpoints))
    assert isinstance(scorer, BatchScorer)

    submission = scorer.submit(REQUEST)

    ((endpoint, kwargs),) = endpoints.calls
    assert endpoint == "churn-batch" and kwargs["deployment_name"] == "blue"
    assert set(kwargs) == {"deployment_name", "inputs", "job_name", "experiment_name"}
    (given,) = kwargs["inputs"].values()
    assert isinstance(given, Input) and (given.type, given.path) == ("uri_file", REQUEST.input_url)
    assert list(kwargs["inputs"]) == ["input"] and kwargs["experiment_name"] == EXPERIMENT
    assert (submission.job_name, submission.status) == (REQUEST.job_name, "NotStarted")
    default = invoke_arguments(BatchJobRequest("ep", REQUEST.input_url, "j", output_path="azureml://datastores/d/paths/p.csv"))
    assert "deployment_name" not in default and default["outputs"]["score"].path == "azureml://datastores/d/paths/p.csv"


@pytest.mark.parametrize(("status", "error"), [(400, BatchFailedError), (404, BatchFailedError),
                                               (503, BatchUnavailableError), (429, BatchUnavailableError)])  # fmt: skip
def test_endpoint_errors_map_to_final_or_transient(status: int, error: type[Exception]) -> None:
    scorer = AzureMLBatchScorer(SimpleNamespace(batch_endpoints=_BatchEndpoints(_http_error(status))))
    with pytest.raises(error, match=str(status)) as caught:
        scorer.submit(REQUEST)
    assert isinstance(caught.value, InputError if error is BatchFailedError else TransientError)


def test_sdk_validation_is_final() -> None:
    from azure.ai.ml.exceptions import ValidationException

    failure = ValidationException(message="Deployment name blue not found for this endpoint",
                                  no_personal_data_message="not found")  # fmt: skip
    scorer = AzureMLBatchScorer(SimpleNamespace(batch_endpoints=_BatchEndpoints(failure)))
    with pytest.raises(BatchFailedError, match="not found for this endpoint"):
        scorer.submit(REQUEST)


class _Token:
    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("test-token", int(time.time()) + 3600)


class _Pipeline:
    """The SDK's request pipeline, recording what ``invoke`` posts (no network)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    def post(self, url: str, json: Any = None, headers: Any = None) -> Any:
        import json as _json

        self.posts.append((url, copy.deepcopy(json), dict(headers)))
        name = json["properties"]["name"]
        body = {"id": f"/jobs/{name}", "name": name, "properties": {"status": "NotStarted"}}
        return SimpleNamespace(status_code=200, text=lambda: _json.dumps(body))


@pytest.fixture(scope="module")
def ml_client() -> Any:
    from azure.ai.ml import MLClient

    return MLClient(_Token(), "00000000-0000-0000-0000-000000000000", "ml-rg", WORKSPACE)


def test_the_sdk_builds_the_invoke_request_for_the_blob(ml_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """azure-ai-ml's own ``invoke`` runs: its schema builds the body, its deployment check lists deployments;
    only the operations it calls (endpoint get, deployment list, the request pipeline) are recording fakes."""
    operations = ml_client.batch_endpoints
    pipeline, looked_up = _Pipeline(), []
    scoring_uri = "https://churn-batch.westeurope.inference.ml.azure.com/jobs"
    endpoint = SimpleNamespace(properties=SimpleNamespace(scoring_uri=scoring_uri))
    monkeypatch.setattr(operations, "_requests_pipeline", pipeline)
    monkeypatch.setattr(operations, "_batch_operation",
                        SimpleNamespace(get=lambda **kw: looked_up.append(kw["endpoint_name"]) or endpoint))
    monkeypatch.setattr(operations, "_batch_deployment_operation",
                        SimpleNamespace(list=lambda **kw: kw["cls"]([SimpleNamespace(name="blue")])))  # fmt: skip
    scorer = AzureMLBatchScorer(ml_client)

    submission = scorer.submit(REQUEST)
    second = scorer.submit(BatchJobRequest("churn-batch", REQUEST.input_url, "scorehook-0123456789abcdef-00000000"))

    assert looked_up == ["churn-batch", "churn-batch"]
    (url, body, headers), (_, body2, headers2) = pipeline.posts
    assert url == scoring_uri
    assert body == {"properties": {
        "inputData": {"input": {"jobInputType": "UriFile", "uri": REQUEST.input_url}},
        "name": REQUEST.job_name, "properties": {"experimentName": EXPERIMENT},
    }}  # fmt: skip
    assert headers["azureml-model-deployment"] == "blue" and headers["Authorization"] == "Bearer test-token"
    assert body2["properties"]["name"] == "scorehook-0123456789abcdef-00000000"
    assert "azureml-model-deployment" not in headers2  # the SDK would have leaked "blue" into this one
    assert (submission.job_name, submission.status) == (REQUEST.job_name, "NotStarted")
    assert second.job_name == "scorehook-0123456789abcdef-00000000"

    with pytest.raises(BatchFailedError, match="green not found"):
        scorer.submit(BatchJobRequest("churn-batch", REQUEST.input_url, "scorehook-x", deployment="green"))
    assert len(pipeline.posts) == 2


def test_outputs_are_read_from_the_finished_job() -> None:
    outputs = {"score": SimpleNamespace(path="azureml://datastores/workspaceblobstore/paths/azureml/j/score/"),
               "empty": SimpleNamespace(path=None)}  # fmt: skip
    jobs = SimpleNamespace(get=lambda name: SimpleNamespace(name=name, outputs=outputs))
    scorer = AzureMLBatchScorer(SimpleNamespace(jobs=jobs))
    assert scorer.outputs("j") == {"score": "azureml://datastores/workspaceblobstore/paths/azureml/j/score/"}


def test_the_ops_view_shows_a_submitted_file_in_progress_then_scored(offload: Offload) -> None:
    from shared.opsview import OpsView

    offload.submit()
    job = offload.scorer.requests[0].job_name
    view = OpsView.for_scoring(offload.service, registry=offload.registry)
    assert [(f.blob, f.state) for f in view.files()] == [("incoming/big/2026/a.csv", "in_progress")]
    offload.service.batch.complete(run_event("azureml_run_completed.json", job))
    (scored,) = OpsView.for_scoring(offload.service, registry=offload.registry).files()  # no file for the pointer
    assert (scored.state, scored.output) == ("scored", offload.scorer.outputs(job)["score"])
