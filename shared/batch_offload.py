"""Azure ML batch offload: the files of an ``engine: azureml-batch`` route are scored by a batch endpoint.

Submission (from ``ScoringService.score``, with the file's claim held): the blob is handed to the endpoint
as ``Input(type="uri_file", path=<blob URL>)`` under a job name of ours (``scorehook-<key hash>-<random>``),
then the ledger says ``submitted`` (job name, endpoint, ``submitted_at``, the input's lineage) and a second
record, ``azureml-job:<job name>``, points from the job back to the file. The delivery is acknowledged:
nothing waits for the job. A refused job (4xx, SDK validation) is a ``batch_failed`` failure like any bad
file; an endpoint that is unavailable is retried.

Completion (``on_batch_job_event``): ``Microsoft.MachineLearningServices.RunCompleted``, or
``RunStatusChanged`` to Failed/Canceled, of a run named like our jobs. The job's record leads to the file's;
a succeeded job records the output location (from the job's outputs), writes a lineage record next to
where the function would have written the predictions (``<output container>/<container>/<blob>.azureml-batch.json``)
and publishes ``Scorehook.Scoring.Completed``; a failed job writes a ``batch_failed`` failure record naming
the blob and the job and publishes ``Scorehook.Scoring.Failed``. The first terminal event wins: duplicates and
late events (a Failed after a Completed, a Running after either) change nothing. A job that never reports
stays ``submitted`` with its ``submitted_at``: :func:`pending_jobs` lists them.

Example:
    >>> offload = BatchOffload(scorer, ledger, blobs, publisher, settings)         # doctest: +SKIP
    >>> offload.complete(parse_event(run_completed_event)).status                  # doctest: +SKIP
    'succeeded'
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.errors import AlreadyClaimedError, BatchFailedError, MalformedEventError, TransientError
from shared.events import Event
from shared.logs import bind, get_logger
from shared.names import ascii_metadata
from shared.ports import BatchJobRequest, BatchScorer, BlobStore, EventPublisher, Ledger, LedgerRecord
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.events import BlobCreated
    from shared.routes import Route
    from shared.scoring import ScoringOutcome

__all__ = [
    "EXPERIMENT",
    "JOB_KEY_PREFIX",
    "BatchCompletion",
    "BatchOffload",
    "BatchRun",
    "batch_input",
    "job_key",
    "job_name_for",
    "parse_batch_run",
    "pending_jobs",
]

_log = get_logger("batch_offload")
EXPERIMENT = "scorehook-batch"  # every batch job's experiment (the Event Grid subscription filters on it)
JOB_KEY_PREFIX = "azureml-job:"
_JOB_PREFIX = "scorehook-"
_JOB_NAME = re.compile(r"scorehook-[0-9a-f]{16}-[0-9a-f]{8}")
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
_FAILED = ("failed", "canceled", "cancelled")


def job_key(job_name: str) -> str:
    """The ledger key that leads from a batch job to the file it scores.

    Example:
        >>> job_key("scorehook-0123456789abcdef-89abcdef")
        'azureml-job:scorehook-0123456789abcdef-89abcdef'
    """
    return f"{JOB_KEY_PREFIX}{job_name}"


def job_name_for(key: str) -> str:
    """A new job name for one submission of a file: its key's hash (the same file, recognisable) and a random
    part (a replay or a retried submission never collides with an earlier job of the same file).

    Example:
        >>> name = job_name_for("blob:acc/incoming/a.csv@0x1")
        >>> name.startswith("scorehook-") and len(name) == 35 and name != job_name_for("blob:acc/incoming/a.csv@0x1")
        True
    """
    return f"{_JOB_PREFIX}{hashlib.sha256(key.encode()).hexdigest()[:16]}-{uuid.uuid4().hex[:8]}"


def batch_input(event: BlobCreated, route: Route) -> str:
    """What the job reads: the blob's URL, or its path on the route's Azure ML datastore (a datastore on the
    route's container, whose credentials or identity the job then uses).

    Example:
        >>> from types import SimpleNamespace as S
        >>> event = S(url="https://acct.blob.core.windows.net/incoming/big/a.csv", blob_name="big/a.csv")
        >>> batch_input(event, S(batch_datastore=None)), batch_input(event, S(batch_datastore="incoming_ds"))
        ('https://acct.blob.core.windows.net/incoming/big/a.csv', 'azureml://datastores/incoming_ds/paths/big/a.csv')
    """
    if route.batch_datastore:
        return f"azureml://datastores/{route.batch_datastore}/paths/{event.blob_name}"
    return event.url


@dataclass(frozen=True)
class BatchRun:
    """A run event of one of our batch jobs: ``outcome`` is ``succeeded``, ``failed`` or ``None`` (not finished)."""

    job_name: str
    run_status: str
    outcome: str | None
    event_id: str
    workspace: str | None = None


@dataclass
class BatchCompletion:
    """What one run event did: ``succeeded`` / ``failed`` (recorded now), ``duplicate`` (already recorded),
    ``pending`` (not a terminal status), ``unknown`` (no submission of ours by that job name) or ``stale`` (the
    file was submitted again since)."""

    status: str
    job_name: str
    key: str | None = None
    output: str | None = None
    failure: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _lower(data: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in data.items()}


def parse_batch_run(event: Event, *, allowed_workspaces: tuple[str, ...]) -> BatchRun | None:
    """The batch job a run event reports on, or ``None`` for a run that is not one of our batch jobs (another
    event type, another experiment, a run name we never give). The topic must name an allowed workspace
    (``EventSourceError`` otherwise).

    Example:
        >>> from shared.events import parse_event
        >>> parse_batch_run(parse_event({"id": "e1", "eventType": RUN_COMPLETED, "eventTime": "2026-01-01T00:00:00Z",
        ...     "subject": "experiments/x/runs/scorehook-0123456789abcdef-89abcdef",
        ...     "topic": "/subscriptions/s/providers/Microsoft.MachineLearningServices/workspaces/ws",
        ...     "data": {"experimentName": "scorehook-batch", "runId": "scorehook-0123456789abcdef-89abcdef"}}),
        ...     allowed_workspaces=("ws",))
        BatchRun(job_name='scorehook-0123456789abcdef-89abcdef', run_status='Completed', outcome='succeeded', event_id='e1', workspace='ws')
    """
    from shared.registrations import allowed_workspace

    kind = event.type.lower()
    if kind not in (RUN_COMPLETED.lower(), RUN_STATUS_CHANGED.lower()):
        return None
    if not isinstance(event.data, Mapping):
        raise MalformedEventError(f"event {event.id}: field 'data' must be an object", field="data")
    data = _lower(event.data)
    experiment = data.get("experimentname")
    if experiment not in (None, "", EXPERIMENT):
        return None
    run_id = data.get("runid") or event.subject.rsplit("/", 1)[-1]
    if not isinstance(run_id, str) or not _JOB_NAME.fullmatch(run_id):
        return None  # not a name we give: untrusted text never reaches the ledger
    workspace = allowed_workspace(event, allowed_workspaces)
    run_status = "Completed" if kind == RUN_COMPLETED.lower() else str(data.get("runstatus") or "")
    lowered = run_status.lower()
    outcome = "succeeded" if lowered == "completed" else "failed" if lowered in _FAILED else None
    return BatchRun(run_id, run_status, outcome, event.id, workspace)


def pending_jobs(
    ledger: Ledger, *, older_than_seconds: float = 0.0, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Files submitted to a batch endpoint whose job has not reported yet, oldest first, with their age.

    Example:
        >>> pending_jobs(ledger, older_than_seconds=3600)   # doctest: +SKIP
        [{'key': 'blob:acc/incoming/a.csv@0x1', 'job_name': 'scorehook-...', 'submitted_at': '...', 'age_s': 7260.0}]
    """
    now = now or datetime.now(UTC)
    found = []
    for record in ledger.records("submitted"):
        if record.key.startswith(JOB_KEY_PREFIX) or "submitted_at" not in record.details:
            continue
        age = (now - datetime.fromisoformat(str(record.details["submitted_at"]))).total_seconds()
        if age >= older_than_seconds:
            found.append({"key": record.key, "job_name": record.details.get("job_name"),
                          "batch_endpoint": record.details.get("batch_endpoint"),
                          "submitted_at": record.details["submitted_at"], "age_s": round(age, 1)})  # fmt: skip
    return sorted(found, key=lambda item: item["submitted_at"])


class BatchOffload:
    """Submits the files of ``azureml-batch`` routes and records how their jobs end; every dependency a port."""

    def __init__(
        self, scorer: BatchScorer, ledger: Ledger, blobs: BlobStore, publisher: EventPublisher, settings: Settings,
        *, owner: str = "scorehook", clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:  # fmt: skip
        self.scorer, self.ledger, self.blobs, self.publisher = scorer, ledger, blobs, publisher
        self.settings, self.owner, self._clock = settings, owner, clock

    # -- submission -----------------------------------------------------------------------------
    def submit(
        self, event: BlobCreated, route: Route, key: str, claim: Callable[[], LedgerRecord]
    ) -> ScoringOutcome:
        """Submit one claimed file to its route's batch endpoint and record ``submitted`` (the claim ends).
        ``claim`` gives the claim once the job is submitted (the lease's heartbeat runs until then).

        Raises ``BatchFailedError`` when the endpoint refuses the job (the caller records the failure) and a
        ``TransientError`` when it is unavailable (the caller frees the claim for the retry).
        """
        from shared.scoring import ScoringOutcome, lineage_url

        assert route.batch_endpoint is not None  # parse_routes guarantees it for engine azureml-batch
        started = time.perf_counter()
        request = BatchJobRequest(
            endpoint=route.batch_endpoint, input_url=batch_input(event, route), job_name=job_name_for(key),
            deployment=route.batch_deployment, experiment_name=EXPERIMENT,
        )  # fmt: skip
        with bind(job_name=request.job_name, batch_endpoint=request.endpoint):
            submission = self.scorer.submit(request)
            details: dict[str, Any] = {
                "engine": "azureml-batch", "job_name": submission.job_name, "job_status": submission.status,
                "batch_endpoint": request.endpoint, "batch_deployment": request.deployment or "",
                "experiment": request.experiment_name, "submitted_at": self._clock().isoformat(),
                "url": event.url, "input_url": lineage_url(event.url), "input_etag": event.etag.strip('"'),
                "input_sequencer": event.sequencer or "", "input_container": event.container,
                "input_blob": event.blob_name, "batch_input": request.input_url, "event_id": event.id,
                "route": route.name,
                "output_container": route.output_container,
            }  # fmt: skip
            pointer = self.ledger.claim(job_key(submission.job_name), self.owner,
                                        self.settings.claim_ttl_seconds, {"blob_key": key})  # fmt: skip
            if pointer is not None:
                self.ledger.finish(pointer, "submitted", {"submitted_at": details["submitted_at"]})
            self.ledger.finish(claim(), "submitted", details)
            elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
            _log.info("file submitted to the batch endpoint",
                      extra={"batch_deployment": request.deployment, "elapsed_ms": elapsed_ms})  # fmt: skip
        return ScoringOutcome("submitted", key, model=f"azureml-batch:{request.endpoint}", details=details)

    # -- completion -----------------------------------------------------------------------------
    def complete(self, event: Event) -> BatchCompletion | None:
        """Record how the batch job a run event reports on ended (``None``: not one of our batch jobs).

        A storage or Azure ML failure raises a ``TransientError``: the event is delivered again.
        """
        run = parse_batch_run(event, allowed_workspaces=self.settings.allowed_workspaces)
        if run is None:
            return None
        with bind(job_name=run.job_name, event_id=run.event_id):
            pointer = self.ledger.get(job_key(run.job_name))
            key = str(pointer.details.get("blob_key")) if pointer is not None else None
            record = self.ledger.get(key) if key else None
            if record is None or key is None:
                _log.info("batch job event ignored: no submission of ours by that name",
                          extra={"run_status": run.run_status})  # fmt: skip
                return BatchCompletion("unknown", run.job_name, key)
            with bind(blob=f"{record.details.get('input_container')}/{record.details.get('input_blob')}"):
                return self._complete(run, key, record, pointer)

    def _complete(
        self, run: BatchRun, key: str, record: LedgerRecord, pointer: LedgerRecord | None
    ) -> BatchCompletion:
        if record.details.get("job_name") != run.job_name:
            _log.info("batch job event ignored: the file was submitted again since",
                      extra={"current_job": record.details.get("job_name")})  # fmt: skip
            return BatchCompletion("stale", run.job_name, key)
        if record.status != "submitted":
            self._finish_pointer(pointer, record.status)
            _log.info("batch job event: outcome already recorded",
                      extra={"status": record.status, "run_status": run.run_status})  # fmt: skip
            return BatchCompletion("duplicate", run.job_name, key, details={"status": record.status})
        if run.outcome is None:
            _log.info("batch job still running", extra={"run_status": run.run_status})
            return BatchCompletion("pending", run.job_name, key, details={"run_status": run.run_status})
        if run.outcome == "succeeded":
            return self._succeeded(run, key, record, pointer)
        return self._failed(run, key, record, pointer)

    def _succeeded(
        self, run: BatchRun, key: str, record: LedgerRecord, pointer: LedgerRecord | None
    ) -> BatchCompletion:
        from shared.adapters.azureml_batch import OUTPUT_NAME

        outputs = dict(self.scorer.outputs(run.job_name))
        output = outputs.get(OUTPUT_NAME) or next(iter(outputs.values()), None)
        d = record.details
        lineage = {
            "input_url": d.get("input_url"), "input_etag": d.get("input_etag"),
            "input_sequencer": d.get("input_sequencer"), "event_id": d.get("event_id"), "route": d.get("route"),
            "engine": "azureml-batch", "batch_endpoint": d.get("batch_endpoint"),
            "batch_deployment": d.get("batch_deployment"), "job_name": run.job_name, "run_status": run.run_status,
            "output": output or "", "submitted_at": d.get("submitted_at"), "scored_at": self._clock().isoformat(),
        }  # fmt: skip
        container = str(d.get("output_container") or self.settings.output_container)
        name = f"{d.get('input_container')}/{d.get('input_blob')}.azureml-batch.json"
        self.blobs.write_bytes(
            container, name, json.dumps({**lineage, "outputs": outputs}, indent=2).encode(),
            metadata=ascii_metadata({k: str(v) for k, v in lineage.items() if v is not None}),
            content_type="application/json",
        )  # fmt: skip
        details = {"output": output, "outputs": outputs, "lineage": f"{container}/{name}",
                   "run_status": run.run_status, "completed_event_id": run.event_id}  # fmt: skip
        if not self._finish(record, "succeeded", details, pointer):
            self._undo(key, "succeeded", container, name)
            return BatchCompletion("duplicate", run.job_name, key)
        self._publish("Scorehook.Scoring.Completed", d, {**lineage, "lineage": details["lineage"]})
        _log.info("batch job succeeded", extra={"output": output, "run_status": run.run_status})
        return BatchCompletion("succeeded", run.job_name, key, output=output, details=details)

    def _failed(
        self, run: BatchRun, key: str, record: LedgerRecord, pointer: LedgerRecord | None
    ) -> BatchCompletion:
        from shared.scoring import failure_name

        d = record.details
        blob = f"{d.get('input_container')}/{d.get('input_blob')}"
        error = BatchFailedError(
            f"batch job {run.job_name} of {blob} on endpoint {d.get('batch_endpoint')} ended {run.run_status}",
            job_name=run.job_name, run_status=run.run_status, batch_endpoint=d.get("batch_endpoint"),
        )  # fmt: skip
        failure = {
            "failed_at": self._clock().isoformat(), "blob": blob, "url": d.get("url"),
            "etag": d.get("input_etag"), **error.to_record(), "batch_deployment": d.get("batch_deployment"),
            "submitted_at": d.get("submitted_at"), "event_id": run.event_id,
        }  # fmt: skip
        name = failure_name(str(d.get("input_container")), str(d.get("input_blob")), str(d.get("input_etag")))
        self.blobs.write_bytes(
            self.settings.failed_container, name, json.dumps(failure, indent=2, default=str).encode(),
            content_type="application/json", metadata={"reason": error.reason},
        )  # fmt: skip
        location = f"{self.settings.failed_container}/{name}"
        details = {"reason": error.reason, "message": error.message, "failure": location,
                   "run_status": run.run_status, "completed_event_id": run.event_id}  # fmt: skip
        if not self._finish(record, "failed", details, pointer):
            self._undo(key, "failed", self.settings.failed_container, name)
            return BatchCompletion("duplicate", run.job_name, key)
        self._publish("Scorehook.Scoring.Failed", d, {"reason": error.reason, "message": error.message,
                                                      "failure": location, "job_name": run.job_name})  # fmt: skip
        _log.warning("batch job failed", extra={**error.log_fields(), "failure": location})
        return BatchCompletion("failed", run.job_name, key, failure=location, details=details)

    def _finish(
        self, record: LedgerRecord, status: str, details: Mapping[str, Any], pointer: LedgerRecord | None
    ) -> bool:
        """Record the outcome on the file's record, only over the ``submitted`` state we read (its eTag): a
        concurrent delivery of the same (or another terminal) event that finished first wins."""
        try:
            self.ledger.finish(record, status, details)
        except AlreadyClaimedError:
            _log.info("batch job outcome recorded by a concurrent delivery")
            return False
        self._finish_pointer(pointer, status)
        return True

    def _undo(self, key: str, status: str, container: str, name: str) -> None:
        """A concurrent delivery recorded the other outcome first: remove the record we wrote for ours."""
        current = self.ledger.get(key)
        if current is None or current.status != status:
            self.blobs.delete(container, name)

    def _finish_pointer(self, pointer: LedgerRecord | None, status: str) -> None:
        if pointer is None or pointer.status == status:
            return
        try:
            self.ledger.finish(pointer, status, {})
        except (AlreadyClaimedError, TransientError) as exc:  # the file's record is what counts
            _log.warning("batch job pointer not updated", extra={"error": str(exc)})

    def _publish(self, event_type: str, details: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        subject = f"{details.get('input_container')}/{details.get('input_blob')}"
        try:
            self.publisher.publish(event_type, subject, data)
        except TransientError as exc:  # the ledger holds the outcome; a lost notification is only logged
            _log.error("could not publish outcome event", extra={"event_type": event_type, "error": str(exc)})
