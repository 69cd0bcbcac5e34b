"""Ports: the small interfaces behind which every external system sits.

Real adapters live in ``shared/adapters`` (azure-storage-blob, azure-data-tables, azure-eventgrid,
MLflow); in-memory fakes for tests live in ``shared/testing.py``. The core only sees these protocols.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "BatchJobRequest",
    "BatchScorer",
    "BatchSubmission",
    "BlobInfo",
    "BlobStore",
    "BlockStore",
    "EventPublisher",
    "EventSink",
    "Ledger",
    "LedgerRecord",
    "MessageQueue",
    "ModelRegistry",
    "ModelVersion",
    "OutEvent",
    "RetrainFinished",
    "RetrainRequest",
    "RetrainRun",
    "Retrainer",
    "takeable",
]


@dataclass(frozen=True)
class BlobInfo:
    """What a blob store says about one blob; ``etag`` always in its quoted HTTP form (``"0x8D..."``), the
    same from a listing as from the blob's properties."""

    container: str
    name: str
    etag: str
    size: int
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None


@runtime_checkable
class BlobStore(Protocol):
    """Blob storage, by container and blob name."""

    def properties(self, container: str, name: str) -> BlobInfo:
        """Properties of one blob; ``FileNotFoundError`` when it does not exist."""
        ...

    def read_chunks(
        self, container: str, name: str, chunk_size: int = 4 << 20, etag: str | None = None, *,
        in_flight: int = 1,
    ) -> Iterator[bytes]:  # fmt: skip
        """The blob's bytes in ranged chunks, each pinned to ``etag`` (or to the first read's): fails with
        ``BlobChangedError`` if the blob changed meanwhile; ``in_flight`` ranges are fetched in parallel ahead
        of the consumer, in order."""
        ...

    def read_bytes(self, container: str, name: str) -> bytes:
        """The whole blob (small blobs only: records, configs)."""
        ...

    def write_bytes(
        self,
        container: str,
        name: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
        overwrite: bool = True,
    ) -> str:
        """Write a small blob in one request; returns its eTag."""
        ...

    def write_blocks(
        self,
        container: str,
        name: str,
        blocks: Iterable[bytes],
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        """Stage every block, then commit them once: nothing is visible before the commit. Returns the eTag.

        The commit can be conditional: ``if_match`` (the blob still has that eTag) or ``if_none_match``
        (the blob does not exist yet); when the condition fails, ``WriteConflictError`` is raised."""
        ...

    def list_blobs(self, container: str, prefix: str | None = None) -> Iterator[BlobInfo]:
        """The blobs of a container (optionally under a prefix)."""
        ...

    def delete(self, container: str, name: str) -> None:
        """Delete a blob if it exists."""
        ...


@runtime_checkable
class BlockStore(Protocol):
    """What fan-out needs of blob storage beyond :class:`BlobStore`: ranged reads, and the staging and commit
    of one blob's blocks by several writers (``shared/fanout.py``)."""

    def read_range(self, container: str, name: str, offset: int, length: int, etag: str | None = None) -> bytes:
        """``length`` bytes from ``offset`` (fewer at the end); with ``etag``, ``BlobChangedError`` if it changed."""
        ...

    def stage_blocks(self, container: str, name: str, blocks: Iterable[bytes]) -> list[str]:
        """Stage every non-empty block under ids unique to this call (all of one length); returns the ids."""
        ...

    def commit_blocks(
        self,
        container: str,
        name: str,
        block_ids: Sequence[str],
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        """Commit staged blocks in this order (``WriteConflictError`` when a condition fails or a block is
        gone, e.g. another commit discarded it). Returns the eTag."""
        ...


@dataclass(frozen=True)
class LedgerRecord:
    """One idempotency key's state in the ledger."""

    key: str
    status: str  # "claimed" | "retrying" | "succeeded" | "failed" | ...
    owner: str
    attempts: int = 1
    expires_at: float = 0.0
    details: Mapping[str, Any] = field(default_factory=dict)
    etag: str | None = None


def takeable(record: LedgerRecord, now: float) -> bool:
    """Whether a new claim may take a key over: its claim expired, or its last attempt failed transiently
    (``retrying``). Finished keys (``succeeded``, ``failed``, ...) are never taken.

    Example:
        >>> takeable(LedgerRecord("k", "retrying", "host-1"), now=0), takeable(LedgerRecord("k", "succeeded", "h"), 0)
        (True, False)
    """
    return record.status == "retrying" or (record.status == "claimed" and record.expires_at <= now)


@runtime_checkable
class Ledger(Protocol):
    """Where every action is claimed before it runs, and its outcome recorded."""

    def claim(
        self, key: str, owner: str, ttl_seconds: float, details: Mapping[str, Any] | None = None
    ) -> LedgerRecord | None:
        """Claim ``key``. Returns the new claim, or ``None`` with the existing record readable by :meth:`get`
        when the key is finished or held by a live claim. An expired claim, or a ``retrying`` record, is
        taken over (see :func:`takeable`), keeping the earlier record's details under the new ones."""
        ...

    def renew(self, claim: LedgerRecord, ttl_seconds: float) -> LedgerRecord:
        """Extend a live claim (a lease heartbeat): it now expires ``ttl_seconds`` from now. Returns the claim
        with its new eTag, which :meth:`finish`, :meth:`release` and the next renew must be given (the older
        copy is stale). Raises ``AlreadyClaimedError`` when the claim was lost: taken over after it expired,
        finished, released or forgotten."""
        ...

    def finish(self, claim: LedgerRecord, status: str, details: Mapping[str, Any]) -> LedgerRecord:
        """Record the outcome of a claim (``succeeded`` or ``failed``); ``AlreadyClaimedError`` if it was lost."""
        ...

    def release(self, claim: LedgerRecord) -> None:
        """Give a claim up (the work will be retried); a lost claim is left alone."""
        ...

    def get(self, key: str) -> LedgerRecord | None:
        """The record of ``key``, if any."""
        ...

    def forget(self, key: str) -> None:
        """Delete the record of ``key`` whatever its state (replay of a failed file)."""
        ...

    def records(self, status: str | None = None) -> Iterator[LedgerRecord]:
        """All records, optionally with one status."""
        ...


@runtime_checkable
class MessageQueue(Protocol):
    """One storage queue the app writes work items to (a queue-triggered function reads them)."""

    def send(self, text: str) -> None:
        """Send one message; returns once it is durably queued (``StorageUnavailableError`` otherwise)."""
        ...


@dataclass(frozen=True)
class OutEvent:
    """One event for an Event Hub: its body (JSON text) and partition key (events with one key keep their
    order on one partition)."""

    body: str
    partition_key: str | None = None


@runtime_checkable
class EventSink(Protocol):
    """Where output events go: an Event Hubs output binding, or the producer client."""

    def send(self, events: Sequence[OutEvent]) -> None:
        """Send every event (raises ``TransientError`` when the hub cannot be reached)."""
        ...


@runtime_checkable
class EventPublisher(Protocol):
    """Publishes Scorehook's own events (Event Grid custom topic)."""

    def publish(self, event_type: str, subject: str, data: Mapping[str, Any]) -> None:
        """Publish one event."""
        ...


@dataclass(frozen=True)
class ModelVersion:
    """A concrete, registered model version a reference resolved to."""

    name: str
    version: str
    source: str
    flavors: tuple[str, ...] = ()
    run_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    #: the registry's identity of this version beyond name and number (MLflow: its creation timestamp in ms;
    #: Azure ML: the asset id): a model deleted and re-created restarts at version 1 with another identity
    identity: str | None = None

    @property
    def uri(self) -> str:
        """``models:/name/version``."""
        return f"models:/{self.name}/{self.version}"


@runtime_checkable
class ModelRegistry(Protocol):
    """The model registry (MLflow locally; MLflow or Azure ML in Azure)."""

    def resolve(self, reference: str) -> ModelVersion:
        """``models:/name@alias`` or ``models:/name/3`` → the concrete version (``ModelNotFoundError``)."""
        ...

    def download(self, version: ModelVersion, destination: str) -> str:
        """Download the version's model directory; returns the local path."""
        ...

    def alias_version(self, name: str, alias: str) -> str | None:
        """The version an alias points to, or ``None`` when the alias is not set."""
        ...

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point an alias at a version (moving it if it pointed elsewhere)."""
        ...

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        """Set tags on a model version (the decision record travels with the version)."""
        ...

    def read_artifact(self, version: ModelVersion, path: str) -> bytes | None:
        """A small artifact of the run that produced the version (e.g. ``baseline/drift-profile.json``);
        ``None`` when the run has no such artifact."""
        ...


CORRELATION_TAG = "scorehook.correlation_id"
"""The tag that carries a drift report's id (its ``correlation_id``) from the retraining job to the version it
registers, and so to the registration and the deployment decision."""
TRACEPARENT_TAG = "scorehook.traceparent"
"""The W3C trace context of the drift evaluation that asked for a retraining (on the job and the version)."""


@dataclass(frozen=True)
class RetrainRequest:
    """What a retraining needs: the model and version that drifted, why, and the recent data to learn from.

    ``decision_id`` is the dedupe key of the drift decision (``model/version/window`` or an external
    signal's id); launchers tag the job with it so the new version can be traced back to the decision.
    ``inputs`` are blob URLs of recently scored input files; ``report`` is the drift report's blob URL.
    """

    model: str
    model_version: str
    decision_id: str
    reason: str
    inputs: tuple[str, ...] = ()
    report: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrainRun:
    """A launched retraining: its id where it runs (process id, Azure ML job name) and where that is."""

    run_id: str
    launcher: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrainFinished:
    """How a launched retraining ended (``succeeded`` or ``failed``), as its backend reported it."""

    decision_id: str
    model: str
    run_id: str
    status: str
    details: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Retrainer(Protocol):
    """Starts a retraining pipeline and returns at once; completion is learned from registry events."""

    def launch(self, request: RetrainRequest) -> RetrainRun:
        """Submit one retraining for ``request`` (raises ``TransientError`` when the backend is unavailable)."""
        ...


@dataclass(frozen=True)
class BatchJobRequest:
    """One file for an Azure ML batch endpoint: the input blob's URL, the endpoint (and deployment, or the
    endpoint's default), the job's name (chosen by us, so the completion event finds the ledger record) and
    its experiment; ``output_path`` (an ``azureml://datastores/...`` URI) or ``None`` for the default output."""

    endpoint: str
    input_url: str
    job_name: str
    deployment: str | None = None
    experiment_name: str = "scorehook-batch"
    output_path: str | None = None


@dataclass(frozen=True)
class BatchSubmission:
    """A submitted batch job: its name and status as the endpoint answered."""

    job_name: str
    status: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class BatchScorer(Protocol):
    """An Azure ML batch endpoint: submit a job and return at once; completion is learned from its events."""

    def submit(self, request: BatchJobRequest) -> BatchSubmission:
        """Invoke the endpoint for one file (``InputError`` when refused, ``TransientError`` when unavailable)."""
        ...

    def outputs(self, job_name: str) -> Mapping[str, str]:
        """The finished job's outputs: output name -> location (``azureml://`` or ``https://`` URI)."""
        ...
