"""Scoring a file that landed in blob storage: the use case behind the ``score_blob`` function.

Flow: match the blob to a route (account, container, prefix → model and formats) → claim the file's
idempotency key (blob URL + eTag) in the ledger → resolve the model reference to a concrete version →
get the loaded model from the cache → stream the blob through the engine → stage the output as blocks
and commit it once, only if no newer version of the same blob (by ``sequencer``) has been scored →
record the outcome → publish ``Scorehook.Scoring.Completed`` / ``.Failed``.

Outcomes: ``succeeded``; ``failed`` (an ``InputError``: a failure record in the failed container and
the ledger, the delivery is acknowledged); ``duplicate`` (the key is already finished); ``superseded``
(a newer version of the blob exists or was scored). A ``TransientError`` (storage or registry down, the
key held by a live claim of another instance) releases our claim and propagates, so the delivery is
retried.

Example:
    >>> service = ScoringService(blobs, ledger, provider, publisher, settings)   # doctest: +SKIP
    >>> service.score(parse_blob_created(event_dict)).status                    # doctest: +SKIP
    'succeeded'
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import json
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from shared.batch_offload import BatchOffload
from shared.engine import EngineStats, Limits, detect_format, score_file
from shared.errors import (
    AlreadyClaimedError,
    BlobChangedError,
    BlobNotFoundError,
    ConfigurationError,
    EventSourceError,
    InputError,
    ScorehookError,
    TooLargeError,
    TransientError,
    WriteConflictError,
)
from shared.events import BlobCreated, parse_blob_created
from shared.fanout import FanOut
from shared.logs import bind, get_logger
from shared.models import ModelProvider
from shared.names import ascii_metadata, check_blob_event
from shared.ports import (
    BatchScorer,
    BlobInfo,
    BlobStore,
    EventPublisher,
    Ledger,
    LedgerRecord,
    MessageQueue,
    ModelVersion,
)
from shared.prefetch import ChunkStream
from shared.rejections import write_rejected_event
from shared.routes import Route, load_routes, match_route, serves_container
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.collection import OutputCollector
    from shared.drift.monitor import DriftMonitor, ProfileObserver

__all__ = ["ScoringOutcome", "ScoringService", "blob_key", "failure_name", "idempotency_key", "output_name"]

_log = get_logger("scoring")
_READ_CHUNK = 8 << 20  # per ranged download: fewer, larger requests (each costs a round trip)
_READS_IN_FLIGHT = 3  # ranges in memory at once (the parser's + 2 downloading ahead): 24 MiB at most
_OWNER = f"{socket.gethostname()}:{os.getpid()}"
_OUTPUT_SUFFIX = {"csv": ".predictions.csv", "parquet": ".predictions.parquet"}
DRIFT_WRITERS = 8
"""Drift parts written at once per instance, each beside its file's output commit (more files wait their turn)."""
_CONTENT_TYPE = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
_MAX_LINEAGE_URL = 2048
_NOT_COMMITTED_APIS = ("createfile",)  # Data Lake: the file exists, its content comes with FlushWithClose


def idempotency_key(event: BlobCreated) -> str:
    """The key a file is claimed under: account, container, name and eTag (never the endpoint's host or
    port, so a restarted emulator or a Data Lake endpoint gives the same key).

    Example:
        >>> class E: account, container, blob_name, etag = "acc", "incoming", "2026/a.csv", '"0x1"'
        >>> idempotency_key(E())
        'blob:acc/incoming/2026/a.csv@0x1'
    """
    return blob_key(event.account, event.container, event.blob_name, event.etag)


def blob_key(account: str, container: str, blob_name: str, etag: str) -> str:
    """The ledger key of one version of one blob (see ``idempotency_key``).

    Example:
        >>> blob_key("devstoreaccount1", "incoming", "a.csv", '"0x8D"')
        'blob:devstoreaccount1/incoming/a.csv@0x8D'
    """
    return f"blob:{account}/{container}/{blob_name}@{etag.strip(chr(34))}"


def output_name(container: str, blob_name: str, output_format: str = "csv") -> str:
    """Where the predictions for an input blob go, inside the output container: the input's container and
    whole name plus a suffix, so two inputs never share an output (``a.csv``, ``a.parquet``, ``a.csv.gz``, or
    ``a.csv`` of two input containers scored into one output container).

    Example:
        >>> output_name("incoming", "2026/11/batch.csv"), output_name("drop", "a.csv.gz", "parquet")
        ('incoming/2026/11/batch.csv.predictions.csv', 'drop/a.csv.gz.predictions.parquet')
    """
    return f"{container}/{blob_name}{_OUTPUT_SUFFIX[output_format]}"


def failure_name(container: str, blob_name: str, etag: str) -> str:
    """Where the failure record of one version of an input blob goes, inside the failed container.

    Example:
        >>> failure_name("incoming", "a.csv", '"0x8D1"')
        'incoming/a.csv.0x8D1.json'
    """
    return f"{container}/{blob_name}.{etag.strip(chr(34))}.json"


def _newer_or_same(theirs: str | None, ours: str | None) -> bool:
    """Sequencers order the events of one blob: compare as strings of equal width."""
    if not theirs or not ours:
        return False
    return (len(theirs), theirs) >= (len(ours), ours)


def lineage_url(url: str) -> str:
    """The input URL as lineage metadata holds it: ASCII-safe, and hashed when too long for a header.

    Example:
        >>> lineage_url("http://h/a/incoming/d\u00e9j\u00e0.csv")
        'http://h/a/incoming/d%C3%A9j%C3%A0.csv'
    """
    safe = ascii_metadata({"url": url})["url"]
    return safe if len(safe) <= _MAX_LINEAGE_URL else "sha256:" + hashlib.sha256(url.encode()).hexdigest()


@dataclass
class ScoringOutcome:
    """What happened to one delivery of one file."""

    status: str  # succeeded | failed | duplicate | superseded | ignored | submitted (azureml-batch)
    key: str
    output: str | None = None
    failure: str | None = None
    reason: str | None = None
    rows: int = 0
    model: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class _Superseded(Exception):
    """Internal: a newer version of the blob was (or will be) scored."""


class FunctionTimeoutError(TransientError):
    """The invocation ran past the host's ``functionTimeout``: stop, let the lease expire, be redelivered."""

    reason = "function_timeout"


class _Lease:
    """A ledger claim held as a lease: renewed every third of its TTL by a heartbeat thread while the file is
    scored, never past the invocation's deadline (the host's ``functionTimeout``), so a crashed or timed-out
    instance's claim expires inside the redelivery window and another delivery takes the file over."""

    def __init__(self, ledger: Ledger, claim: LedgerRecord, ttl: float, deadline: float | None) -> None:
        self.ledger, self.claim, self.ttl = ledger, claim, ttl
        self.deadline = deadline  # time.monotonic() value, or None
        self.lost: Exception | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name="scorehook-lease", daemon=True)

    def start(self) -> _Lease:
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(max(self.ttl / 3, 0.05)):
            if self.past_deadline():
                return  # the host gives up on us now: let the claim expire
            try:
                with self._lock:
                    if self._stop.is_set():
                        return
                    self.claim = self.ledger.renew(self.claim, self.ttl)
            except AlreadyClaimedError as exc:
                self.lost = exc
                _log.warning("lease lost: another delivery took the file over", extra={"key": self.claim.key})
                return
            except Exception as exc:  # storage hiccup: try again on the next beat, the lease may still hold
                _log.warning("lease renewal failed", extra={"key": self.claim.key, "error": str(exc),
                                                            "error_type": type(exc).__name__})  # fmt: skip

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def check(self) -> None:
        """Raise when scoring must stop: the lease was lost, or the invocation is past its deadline."""
        if self.lost is not None:
            raise AlreadyClaimedError(f"{self.claim.key}: the lease was lost to another delivery",
                                      key=self.claim.key) from self.lost  # fmt: skip
        if self.past_deadline():
            raise FunctionTimeoutError(f"{self.claim.key}: the invocation ran past the function timeout",
                                       key=self.claim.key)  # fmt: skip

    def stop(self) -> LedgerRecord:
        """Stop the heartbeat; the claim as last renewed (its eTag is what ``finish`` needs)."""
        self._stop.set()
        with self._lock:
            pass
        if self._thread.is_alive():
            self._thread.join()
        return self.claim


class ScoringService:
    """Scores files announced by ``BlobCreated`` events; every dependency is a port."""

    def __init__(
        self,
        blobs: BlobStore,
        ledger: Ledger,
        models: ModelProvider,
        publisher: EventPublisher,
        settings: Settings,
        clock: Callable[[], float] = time.perf_counter,
        drift: DriftMonitor | None = None,
        timeout_seconds: float | None = None,
        batch: BatchScorer | None = None,
        collector: OutputCollector | None = None,
        parts: MessageQueue | None = None,
    ) -> None:
        self.blobs, self.ledger, self.models = blobs, ledger, models
        self.publisher, self.settings, self._clock = publisher, settings, clock
        self.drift = drift
        # a scored file's drift part is written while its output commits (see ``_score_claimed``)
        self._drift_writes = ThreadPoolExecutor(DRIFT_WRITERS, "drift-part")  # no thread until the first part
        self.routes = load_routes(settings)
        # the files of engine azureml-batch routes go to an Azure ML batch endpoint (shared/batch_offload.py)
        self.batch = BatchOffload(batch, ledger, blobs, publisher, settings, owner=_OWNER) if batch else None
        self.timeout_seconds = timeout_seconds  # the host's functionTimeout: no lease is renewed past it
        # committed outputs of routes with eventhub_output go to their hub (shared/collection.py)
        self.collector = collector
        unsent = [r.name for r in self.routes if r.eventhub_output] if collector is None else []
        if unsent:
            raise ConfigurationError(f"routes {', '.join(unsent)} send to an Event Hub, but no sender is set up",
                                     routes=unsent)  # fmt: skip
        # files above a route's fanout_bytes are split into parts on the ``parts`` queue (shared/fanout.py)
        self.fanout = FanOut(self, parts)

    # -- the use case -------------------------------------------------------------------------
    def score(self, event: BlobCreated) -> ScoringOutcome:
        """Score the file an event announces, exactly once in effect."""
        key = idempotency_key(event)
        deadline = time.monotonic() + self.timeout_seconds if self.timeout_seconds else None
        with bind(event_id=event.id, blob=f"{event.container}/{event.blob_name}", etag=event.etag):
            try:
                check_blob_event(event, self.settings)  # before any I/O: nothing it names is trusted yet
                self._check_account(event)
            except InputError as exc:
                return self._reject_event(event, key, exc)
            if not serves_container(self.routes, event.account, event.container):
                _log.info("event ignored: no route reads this container", extra={"container": event.container})
                return ScoringOutcome("ignored", key, details={"why": f"no route reads container {event.container}"})
            if (event.api or "").lower() in _NOT_COMMITTED_APIS and not event.content_length:
                _log.info("event ignored: the file is created but not written yet", extra={"api": event.api})
                return ScoringOutcome("ignored", key, details={"why": f"{event.api} with contentLength 0"})
            try:
                route = match_route(self.routes, event.account, event.container, event.blob_name)
            except InputError as exc:
                return self._reject_unclaimed(event, key, exc)
            details = {
                "event_id": event.id,
                "blob": f"{event.container}/{event.blob_name}",
                "route": route.name,
                "etag": event.etag.strip('"'),
                "event_time": event.time.isoformat() if event.time else None,
                "claimed_at": datetime.now(UTC).isoformat(),
                **({"eventhub": "pending"} if route.eventhub_output else {}),
            }
            claim = self.ledger.claim(key, _OWNER, self.settings.claim_ttl_seconds, details)
            if claim is None:
                return self._already_claimed(key)
            lease = _Lease(self.ledger, claim, self.settings.claim_ttl_seconds, deadline).start()
            started = self._clock()
            try:
                if route.engine == "azureml-batch":
                    return self._offload(event, route, key, lease)
                return self._score_claimed(event, route, key, lease, started)
            except _Superseded as why:
                self.ledger.finish(lease.stop(), "superseded", {"why": str(why)})
                _log.info("superseded by a newer version of the blob", extra={"why": str(why)})
                return ScoringOutcome("superseded", key, details={"why": str(why)})
            except InputError as exc:
                return self._record_failure(event, key, lease, exc, started)
            except Exception as exc:
                self._retrying(lease, exc)  # transient or unexpected: let the delivery be retried
                raise
            except BaseException:  # the process is going down: no I/O beyond giving the key back
                with contextlib.suppress(Exception):
                    self.ledger.release(lease.stop())
                raise
            finally:
                lease.stop()

    def _offload(self, event: BlobCreated, route: Route, key: str, lease: _Lease) -> ScoringOutcome:
        if self.batch is None:
            raise ConfigurationError(f"route {route.name} has engine azureml-batch but no batch scorer is set up",
                                     route=route.name)  # fmt: skip
        lease.check()
        return self.batch.submit(event, route, key, lease.stop)

    def _retrying(self, lease: _Lease, exc: Exception) -> None:
        """Leave a trace of a failed attempt (``retrying``: reason, attempt) and free the key for the retry.

        When even that cannot be written (storage down), the lease simply expires and the retry takes over.
        """
        claim = lease.stop()
        fields = _error_fields(exc)
        reason = getattr(exc, "reason", "unexpected_error")
        _log.warning("attempt failed, the delivery will be retried",
                     extra={**fields, "attempt": claim.attempts, "reason": reason})  # fmt: skip
        if lease.lost is not None:
            return  # the key is someone else's now
        attempt = {"reason": reason, "message": str(exc)[:2000], "attempt": claim.attempts,
                   "failed_at": datetime.now(UTC).isoformat()}  # fmt: skip
        details = exc.details if isinstance(exc, ScorehookError) else {}
        state = {"eventhub": details["eventhub"]} if "eventhub" in details else {}  # a send after the commit failed
        try:
            self.ledger.finish(claim, "retrying", {**attempt, **state,
                                                   "retries": [*claim.details.get("retries", []), attempt][-10:]})
        except Exception as write_error:
            _log.warning("could not record the failed attempt; the lease will expire",
                         extra={"error": str(write_error), "error_type": type(write_error).__name__})  # fmt: skip
            with contextlib.suppress(Exception):
                self.ledger.release(claim)

    def replay(self, container: str, blob_name: str) -> ScoringOutcome:
        """Score a blob again as it is now (after a failure was fixed): a fresh event, a fresh claim.

        Example:
            >>> service.replay("incoming", "2026/11/batch.csv").status   # doctest: +SKIP
            'succeeded'
        """
        info = self.blobs.properties(container, blob_name)
        url = (
            info.url
            or f"https://{self.settings.allowed_storage_accounts[0]}.blob.core.windows.net/{container}/{blob_name}"
        )
        event = parse_blob_created({
            "id": f"replay-{uuid.uuid4()}", "eventType": "Microsoft.Storage.BlobCreated",
            "subject": f"/blobServices/default/containers/{container}/blobs/{blob_name}",
            "eventTime": datetime.now(UTC).isoformat(), "topic": "scorehook/replay",
            "data": {"api": "Replay", "eTag": info.etag, "contentLength": info.size, "url": url},
        })  # fmt: skip
        record = self.ledger.get(idempotency_key(event))
        # a batch job that never reported (``submitted``) is submitted again: its late events are then stale
        if record is not None and record.status in ("failed", "superseded", "submitted"):
            self.ledger.forget(record.key)
        return self.score(event)

    def _check_account(self, event: BlobCreated) -> None:
        if event.account not in self.settings.allowed_storage_accounts:
            raise EventSourceError(
                f"storage account {event.account!r} is not served (allowed: {', '.join(self.settings.allowed_storage_accounts)})",
                account=event.account,
            )

    def _already_claimed(self, key: str) -> ScoringOutcome:
        existing = self.ledger.get(key)
        if existing is not None and existing.status == "claimed":
            # Another instance is scoring this file right now (or crashed doing so): ask for a redelivery,
            # which finds it finished, or takes the claim over once it expires.
            raise AlreadyClaimedError(
                f"{key} is being scored by {existing.owner}", key=key, owner=existing.owner
            )
        status = existing.status if existing else "unknown"
        _log.info("duplicate delivery acknowledged", extra={"status": status})
        return ScoringOutcome("duplicate", key, details={"status": status})

    def _score_claimed(
        self, event: BlobCreated, route: Route, key: str, lease: _Lease, started: float
    ) -> ScoringOutcome:
        limit = min(route.max_file_bytes or self.settings.max_file_bytes, self.settings.max_file_bytes)
        if event.content_length is not None and event.content_length > limit:
            raise TooLargeError(f"the file has {event.content_length} bytes; the limit is {limit}",
                                limit="max_file_bytes", size=event.content_length, max=limit)  # fmt: skip
        output = output_name(event.container, event.blob_name, route.output_format)
        condition = self._output_condition(route, output, event)
        committed: BlobInfo | None = condition.pop("committed", None)
        if committed is None and route.fanout_bytes and self.fanout.enabled():
            planned = self.fanout.plan(event, route, key, lease, output)
            if planned is not None:  # else it is scored whole, here
                return planned
        resolving = self._clock()
        version, model = self.models.get(route.model)
        resolved = {"model_resolved_at": datetime.now(UTC).isoformat(),
                    "model_ms": round((self._clock() - resolving) * 1000, 1)}  # fmt: skip
        with bind(model=version.name, model_version=version.version, route=route.name):
            observer = self._drift_observer(version, model, key)
            stats = EngineStats()
            fmt = detect_format(event.blob_name, route.input_format)
            blocks = score_file(
                self._source(event, fmt, limit), fmt=fmt, model=model, model_version=version.version,
                key_columns=route.key_columns, output_format=route.output_format, batch_rows=route.batch_rows,
                on_missing=route.on_missing, limits=Limits.from_settings(self.settings, route),
                label_column=route.label_column, stats=stats, observe=observer,
            )  # fmt: skip
            metadata = {
                "input_url": lineage_url(event.url), "input_etag": event.etag.strip('"'),
                "input_sequencer": event.sequencer or "",
                "event_id": event.id, "route": route.name, "model_name": version.name,
                "model_version": version.version, "model_flavor": getattr(model, "flavor", "unknown"),
            }  # fmt: skip
            recording: list[Future[dict[str, str]]] = []

            def record_beside_commit() -> None:
                # every row is scored and profiled: the part is written while the output commits (one round
                # trip less per file); the ledger still says done only once both are durable
                if observer is not None:
                    recording.append(self._drift_writes.submit(
                        contextvars.copy_context().run, self._record_drift, version, event, observer, key
                    ))  # fmt: skip

            lineage = _Lineage(blocks, metadata, stats, started, self._clock, lease.check, record_beside_commit)
            try:
                if committed is not None:
                    self._recover_committed(committed, metadata, stats, lineage, observer)
                else:
                    self.blobs.write_blocks(
                        route.output_container, output, lineage,
                        metadata=metadata, content_type=_CONTENT_TYPE[route.output_format], **condition,
                    )  # fmt: skip
            except BlobChangedError as exc:
                raise _Superseded(f"the blob changed while it was read: {exc.message}") from exc
            except WriteConflictError:
                # raises _Superseded if a newer version won; says "committed" when this version's commit
                # landed after all (a request retried after its response was lost, or a takeover's twin)
                if "committed" not in self._output_condition(route, output, event):
                    raise
                _log.info("the output of this version was committed by an earlier request",
                          extra={"output": f"{route.output_container}/{output}"})  # fmt: skip
            finally:
                if observer is not None:
                    observer.stop()  # the worker has seen every batch once the output is committed
                drift_details = recording[0].result() if recording else None  # never raises
            location = f"{route.output_container}/{output}"
            details: dict[str, Any] = {**metadata, "output": location, "rows_read": stats.rows_read,
                                       "rows_scored": stats.rows_scored, "rows_rejected": stats.rows_rejected,
                                       **resolved, "committed_at": datetime.now(UTC).isoformat()}  # fmt: skip
            if observer is not None:
                details |= drift_details or self._record_drift(version, event, observer, key)
            if route.eventhub_output and self.collector is not None:  # after the commit, never before
                details |= self.collector.send(route, key, event.blob_path, event.etag, location, version)
            elapsed_ms = round((self._clock() - started) * 1000, 1)
            details |= {"finished_at": datetime.now(UTC).isoformat(), "elapsed_ms": elapsed_ms}
            self.ledger.finish(lease.stop(), "succeeded", details)
            self._publish("Scorehook.Scoring.Completed", event, {**details, "elapsed_ms": elapsed_ms})
            _log.info("file scored", extra={"output": location, "rows_read": stats.rows_read,
                                            "rows_scored": stats.rows_scored, "rows_rejected": stats.rows_rejected,
                                            "elapsed_ms": elapsed_ms, "read_s": round(stats.read_seconds, 3),
                                            "predict_s": round(stats.predict_seconds, 3)})  # fmt: skip
            return ScoringOutcome("succeeded", key, output=location, rows=stats.rows_scored, model=version.uri,
                                  details=details)  # fmt: skip

    def _drift_observer(self, version: ModelVersion, model: Any, key: str) -> ProfileObserver | None:
        """A drift profile for this file, or None (drift off, or no baseline: scoring goes on regardless)."""
        if self.drift is None:
            return None
        try:
            return self.drift.observer(version, model, salt=key)
        except Exception as exc:  # logged with its type; scoring never waits on monitoring
            # the bound ``blob`` is the input: an error's own blob field must not replace it
            fields = {k: v for k, v in _error_fields(exc).items() if k != "blob"}
            _log.warning("no drift profile for this file", extra=fields)
            return None

    def _record_drift(
        self, version: ModelVersion, event: BlobCreated, observer: ProfileObserver, key: str
    ) -> dict[str, str]:
        """Write the file's profile as its own part of its window (before the ledger says done, so a crash
        rewrites the same part, which counts once); monitoring never fails scoring. The details name the
        window, whether the profile is in it (``drift_profile``: ``recorded``, ``already_recorded`` or
        ``missing`` with ``drift_profile_reason``), and the window this file closed (when it opened one)."""
        assert self.drift is not None
        try:
            recorded = self.drift.record(
                version, event.time or datetime.now(UTC), observer, key, event.url, input_etag=event.etag
            )
        except Exception as exc:  # record() logs its own failures: this is the last guard of the output
            fields = {k: v for k, v in _error_fields(exc).items() if k != "blob"}
            _log.error("drift profile not recorded",
                       extra={**fields, "input_url": event.url, "etag": event.etag.strip('"')})  # fmt: skip
            reason = str(getattr(exc, "reason", "unexpected_error"))
            return {"drift_profile": "missing", "drift_profile_reason": reason}
        details = {"drift_window": recorded.window.key, "drift_profile": recorded.status}
        if recorded.reason:
            details["drift_profile_reason"] = recorded.reason
        if recorded.closed is not None:
            details["drift_window_closed"] = recorded.closed.key
        return details

    def _output_condition(self, route: Route, output: str, event: BlobCreated) -> dict[str, Any]:
        """How to commit the output: only over what we saw, and never over a newer version's output."""
        try:
            current = self.blobs.properties(route.output_container, output)
        except BlobNotFoundError:
            return {"if_none_match": True}
        theirs = current.metadata.get("input_sequencer")
        same_input = current.metadata.get("input_url") == lineage_url(event.url)
        if same_input and current.metadata.get("input_etag") == event.etag.strip('"'):
            return {"committed": current}  # this very version's output: an earlier attempt committed it
        if same_input and _newer_or_same(theirs, event.sequencer):
            raise _Superseded(f"output already holds sequencer {theirs} (this event: {event.sequencer})")
        return {"if_match": current.etag}

    def _recover_committed(
        self, committed: BlobInfo, metadata: dict[str, str], stats: EngineStats, lineage: _Lineage,
        observer: ProfileObserver | None,
    ) -> None:  # fmt: skip
        """An earlier attempt committed this version's output and stopped before the ledger said so (a
        crash, a lost response): keep that output, take its counts, and, when drift is on, read the file
        once more without writing so its profile part is recorded (written once, by its key)."""
        _log.info("the output of this version is already committed; finishing what the earlier attempt began",
                  extra={"output_etag": committed.etag})  # fmt: skip
        if observer is not None:
            for _ in lineage:
                pass
        for count in ("rows_read", "rows_scored", "rows_rejected"):
            with contextlib.suppress(KeyError, ValueError):
                setattr(stats, count, int(committed.metadata[count]))
        metadata.update(committed.metadata)

    def _source(self, event: BlobCreated, fmt: str, limit: int) -> Callable[[], BinaryIO]:
        """Opens the blob, pinned to the event's eTag: a stream, or for Parquet a spooled seekable copy; never
        more than ``limit`` bytes (whatever the event said its length was)."""

        def open_stream() -> BinaryIO:
            # ranged downloads run in parallel, a few ranges ahead of the parser (shared.prefetch)
            ranges = self.blobs.read_chunks(event.container, event.blob_name, _READ_CHUNK, event.etag,
                                            in_flight=_READS_IN_FLIGHT)  # fmt: skip
            chunks = _bounded(ranges, limit)
            if fmt != "parquet":
                return io.BufferedReader(ChunkStream(chunks), buffer_size=1 << 20)
            spool = tempfile.SpooledTemporaryFile(max_size=64 << 20)  # noqa: SIM115 - handed to the engine
            for chunk in chunks:
                spool.write(chunk)
            spool.seek(0)
            return spool  # type: ignore[return-value]

        return open_stream

    # -- outcomes -------------------------------------------------------------------------------
    def _failure_record(
        self, event: BlobCreated, exc: ScorehookError, elapsed_ms: float | None
    ) -> dict[str, Any]:
        return {
            "failed_at": datetime.now(UTC).isoformat(),
            "blob": f"{event.container}/{event.blob_name}",
            "url": event.url,
            "etag": event.etag,
            **exc.to_record(),
            "elapsed_ms": elapsed_ms,
            "event": event.as_eventgrid(),
        }

    def _write_failure(self, event: BlobCreated, record: dict[str, Any]) -> str:
        name = failure_name(event.container, event.blob_name, event.etag)
        self.blobs.write_bytes(
            self.settings.failed_container, name, json.dumps(record, indent=2, default=str).encode(),
            content_type="application/json", metadata={"reason": record["reason"]},
        )  # fmt: skip
        return f"{self.settings.failed_container}/{name}"

    def _record_failure(
        self, event: BlobCreated, key: str, lease: _Lease, exc: InputError, started: float
    ) -> ScoringOutcome:
        record = self._failure_record(event, exc, round((self._clock() - started) * 1000, 1))
        try:
            location = self._write_failure(event, record)
        except Exception as write_error:
            # the failure stays unrecorded: free the key and let the delivery come again to record it
            _log.error("could not write the failure record; the delivery will be retried",
                       extra={"reason": exc.reason, "error": str(write_error),
                              "error_type": type(write_error).__name__})  # fmt: skip
            self._retrying(lease, write_error)
            if isinstance(write_error, TransientError):
                raise
            raise TransientError(f"the failure record of {event.blob_path} could not be written: {write_error}",
                                 reason="failure_record_unwritten") from write_error  # fmt: skip
        self.ledger.finish(
            lease.stop(), "failed", {"reason": exc.reason, "message": exc.message, "failure": location,
                                     "failed_at": record["failed_at"], "elapsed_ms": record["elapsed_ms"]},
        )  # fmt: skip
        self._publish(
            "Scorehook.Scoring.Failed",
            event,
            {"reason": exc.reason, "message": exc.message, "failure": location},
        )
        _log.warning("file rejected", extra={"reason": exc.reason, "error": exc.message, "failure": location})
        return ScoringOutcome("failed", key, failure=location, reason=exc.reason, details=exc.to_record())

    def reject_raw_event(self, raw: Any, exc: InputError) -> str | None:
        """Record an event that did not even parse (malformed, unsupported, inconsistent) under the fixed
        namespace keyed by its id; a record that cannot be written raises, so the delivery is retried.

        Example:
            >>> service.reject_raw_event({"id": "e-1", "eventTime": 5}, exc)   # doctest: +SKIP
            'failed/_events/9f3c....json'
        """
        location = write_rejected_event(
            self.blobs, self.settings.failed_container, raw, exc, source="score_blob", raise_errors=True
        )
        _log.warning("event rejected", extra={**exc.log_fields(), "failure": location})
        return location

    def _reject_event(self, event: BlobCreated, key: str, exc: InputError) -> ScoringOutcome:
        """An event we cannot trust (bad names, a foreign account): recorded under the fixed namespace keyed
        by its id, never under a name it chose, and never claimed."""
        location = write_rejected_event(
            self.blobs, self.settings.failed_container, event.as_eventgrid(), exc, source="score_blob",
            raise_errors=True,
        )  # fmt: skip
        _log.warning("event rejected", extra={**exc.log_fields(), "failure": location})
        return ScoringOutcome("failed", key, failure=location, reason=exc.reason, details=exc.to_record())

    def _reject_unclaimed(self, event: BlobCreated, key: str, exc: InputError) -> ScoringOutcome:
        # A blob in a container we read that no route serves: recorded (its names are checked) but never
        # claimed: there is nothing to score.
        location = self._write_failure(event, self._failure_record(event, exc, None))
        _log.warning(
            "event rejected", extra={"reason": exc.reason, "error": exc.message, "failure": location}
        )
        return ScoringOutcome("failed", key, failure=location, reason=exc.reason, details=exc.to_record())

    def _publish(self, event_type: str, event: BlobCreated, data: dict[str, Any]) -> None:
        try:
            self.publisher.publish(event_type, f"{event.container}/{event.blob_name}", data)
        except TransientError as exc:
            # The outcome is already recorded in the ledger; a lost notification must not re-run the file.
            _log.error("could not publish outcome event", extra={"event_type": event_type, "error": str(exc)})


def _error_fields(exc: Exception) -> dict[str, Any]:
    """Log fields of any error: ours carry their reason and details."""
    if isinstance(exc, ScorehookError):
        return exc.log_fields()
    return {"error_type": type(exc).__name__, "error": str(exc)}


def _bounded(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """The chunks of a blob, failing as ``too_large`` once more than ``limit`` bytes were read."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise TooLargeError(f"the file has more than {limit} bytes (the limit)", limit="max_file_bytes",
                                max=limit)  # fmt: skip
        yield chunk


class _Lineage:
    """Iterates the output blocks; when exhausted, completes the metadata with counts and timings."""

    def __init__(
        self, blocks: Iterator[bytes], metadata: dict[str, str], stats: EngineStats, started: float,
        clock: Callable[[], float], check: Callable[[], None] = lambda: None,
        on_scored: Callable[[], None] = lambda: None,
    ) -> None:  # fmt: skip
        self._blocks, self._metadata, self._stats, self._started, self._clock = (
            blocks,
            metadata,
            stats,
            started,
            clock,
        )
        self._check = check  # raises when the lease is lost or the deadline passed: nothing is committed
        self._on_scored = on_scored  # called once every block is out, before the commit

    def __iter__(self) -> Iterator[bytes]:
        for block in self._blocks:
            self._check()
            yield block
        self._check()
        stats = self._stats
        self._metadata.update({
            "rows_read": str(stats.rows_read), "rows_scored": str(stats.rows_scored),
            "rows_rejected": str(stats.rows_rejected), "read_ms": str(round(stats.read_seconds * 1000, 1)),
            "predict_ms": str(round(stats.predict_seconds * 1000, 1)),
            "write_ms": str(round(stats.write_seconds * 1000, 1)),
            "scoring_ms": str(round((self._clock() - self._started) * 1000, 1)),
            "scored_at": datetime.now(UTC).isoformat(),
        })  # fmt: skip
        self._on_scored()
