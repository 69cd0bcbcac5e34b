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

import io
import json
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from shared.engine import EngineStats, detect_format, read_ahead, score_file
from shared.errors import (
    AlreadyClaimedError,
    BlobChangedError,
    BlobNotFoundError,
    EventSourceError,
    InputError,
    ScorehookError,
    TransientError,
    WriteConflictError,
)
from shared.events import BlobCreated, parse_blob_created
from shared.logs import bind, get_logger
from shared.models import ModelProvider
from shared.ports import BlobStore, EventPublisher, Ledger, LedgerRecord, ModelVersion
from shared.routes import Route, load_routes, match_route
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.drift.monitor import DriftMonitor, ProfileObserver

__all__ = ["ScoringOutcome", "ScoringService", "failure_name", "idempotency_key", "output_name"]

_log = get_logger("scoring")
_READ_CHUNK = 4 << 20
_OWNER = f"{socket.gethostname()}:{os.getpid()}"
_OUTPUT_SUFFIX = {"csv": ".predictions.csv", "parquet": ".predictions.parquet"}
_CONTENT_TYPE = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


def idempotency_key(event: BlobCreated) -> str:
    """The key a file is claimed under: blob URL + eTag.

    Example:
        >>> class E: url, etag = "http://h/acc/incoming/a.csv", '"0x1"'
        >>> idempotency_key(E())
        'blob:http://h/acc/incoming/a.csv@0x1'
    """
    return f"blob:{event.url}@{event.etag.strip(chr(34))}"


def output_name(blob_name: str, output_format: str = "csv") -> str:
    """Where the predictions for an input blob go, inside the output container.

    Example:
        >>> output_name("2026/11/batch.csv"), output_name("a.csv.gz", "parquet")
        ('2026/11/batch.predictions.csv', 'a.predictions.parquet')
    """
    base = blob_name.rsplit("/", 1)
    leaf = base[-1]
    for suffix in (".csv.gz", ".csv", ".gz", ".jsonl", ".ndjson", ".json", ".parquet", ".pq"):
        if leaf.lower().endswith(suffix):
            leaf = leaf[: -len(suffix)]
            break
    return "/".join([*base[:-1], leaf]) + _OUTPUT_SUFFIX[output_format]


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


@dataclass
class ScoringOutcome:
    """What happened to one delivery of one file."""

    status: str  # "succeeded" | "failed" | "duplicate" | "superseded"
    key: str
    output: str | None = None
    failure: str | None = None
    reason: str | None = None
    rows: int = 0
    model: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class _ChunkStream(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (ranged blob downloads)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


class _Superseded(Exception):
    """Internal: a newer version of the blob was (or will be) scored."""


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
    ) -> None:
        self.blobs, self.ledger, self.models = blobs, ledger, models
        self.publisher, self.settings, self._clock = publisher, settings, clock
        self.drift = drift
        self.routes = load_routes(settings)

    # -- the use case -------------------------------------------------------------------------
    def score(self, event: BlobCreated) -> ScoringOutcome:
        """Score the file an event announces, exactly once in effect."""
        key = idempotency_key(event)
        with bind(event_id=event.id, blob=f"{event.container}/{event.blob_name}", etag=event.etag):
            try:
                route = self._route(event)
            except InputError as exc:
                return self._reject_unclaimed(event, key, exc)
            details = {
                "event_id": event.id,
                "blob": f"{event.container}/{event.blob_name}",
                "route": route.name,
            }
            claim = self.ledger.claim(key, _OWNER, self.settings.claim_ttl_seconds, details)
            if claim is None:
                return self._already_claimed(key)
            started = self._clock()
            try:
                return self._score_claimed(event, route, key, claim, started)
            except _Superseded as why:
                self.ledger.finish(claim, "superseded", {"why": str(why)})
                _log.info("superseded by a newer version of the blob", extra={"why": str(why)})
                return ScoringOutcome("superseded", key, details={"why": str(why)})
            except InputError as exc:
                return self._record_failure(event, key, claim, exc, started)
            except BaseException:
                self.ledger.release(claim)  # transient or unexpected: let the delivery be retried
                raise

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
        if record is not None and record.status in ("failed", "superseded"):
            self.ledger.forget(record.key)
        return self.score(event)

    def _route(self, event: BlobCreated) -> Route:
        if event.account not in self.settings.allowed_storage_accounts:
            raise EventSourceError(
                f"storage account {event.account!r} is not served (allowed: {', '.join(self.settings.allowed_storage_accounts)})",
                account=event.account,
            )
        return match_route(self.routes, event.account, event.container, event.blob_name)

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
        self, event: BlobCreated, route: Route, key: str, claim: LedgerRecord, started: float
    ) -> ScoringOutcome:
        output = output_name(event.blob_name, route.output_format)
        condition = self._output_condition(route, output, event)
        version, model = self.models.get(route.model)
        with bind(model=version.name, model_version=version.version, route=route.name):
            observer = self._drift_observer(version, model, key)
            stats = EngineStats()
            fmt = detect_format(event.blob_name, route.input_format)
            blocks = score_file(
                self._source(event, fmt), fmt=fmt, model=model, model_version=version.version,
                key_columns=route.key_columns, output_format=route.output_format, batch_rows=route.batch_rows,
                on_missing=route.on_missing, stats=stats, observe=observer,
            )  # fmt: skip
            metadata = {
                "input_url": event.url, "input_etag": event.etag.strip('"'), "input_sequencer": event.sequencer or "",
                "event_id": event.id, "route": route.name, "model_name": version.name,
                "model_version": version.version, "model_flavor": getattr(model, "flavor", "unknown"),
            }  # fmt: skip
            try:
                self.blobs.write_blocks(
                    route.output_container, output, _Lineage(blocks, metadata, stats, started, self._clock),
                    metadata=metadata, content_type=_CONTENT_TYPE[route.output_format], **condition,
                )  # fmt: skip
            except BlobChangedError as exc:
                raise _Superseded(f"the blob changed while it was read: {exc.message}") from exc
            except WriteConflictError:
                self._output_condition(route, output, event)  # raises _Superseded if a newer one won
                raise
            finally:
                if observer is not None:
                    observer.stop()  # the worker has seen every batch once the output is committed
            location = f"{route.output_container}/{output}"
            details: dict[str, Any] = {**metadata, "output": location, "rows_read": stats.rows_read,
                                       "rows_scored": stats.rows_scored, "rows_rejected": stats.rows_rejected}  # fmt: skip
            if observer is not None:
                details |= self._record_drift(version, event, observer, key)
            self.ledger.finish(claim, "succeeded", details)
            elapsed_ms = round((self._clock() - started) * 1000, 1)
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
            _log.warning("no drift profile for this file", extra=_error_fields(exc))
            return None

    def _record_drift(
        self, version: ModelVersion, event: BlobCreated, observer: ProfileObserver, key: str
    ) -> dict[str, str]:
        """Merge the file's profile into its window (before the ledger says done, so a crash re-merges
        under the same part id, which counts once); monitoring never fails scoring. The details name the
        window, and the window this file closed (the one before, when this file opened a new one)."""
        assert self.drift is not None
        try:
            window, closed = self.drift.record(
                version, event.time or datetime.now(UTC), observer, key, event.url
            )
        except Exception as exc:  # logged with its type; the scored output stands
            _log.warning("drift profile not recorded", extra=_error_fields(exc))
            return {}
        return {"drift_window": window.key, **({"drift_window_closed": closed.key} if closed else {})}

    def _output_condition(self, route: Route, output: str, event: BlobCreated) -> dict[str, Any]:
        """How to commit the output: only over what we saw, and never over a newer version's output."""
        try:
            current = self.blobs.properties(route.output_container, output)
        except BlobNotFoundError:
            return {"if_none_match": True}
        theirs = current.metadata.get("input_sequencer")
        if current.metadata.get("input_url") == event.url and _newer_or_same(theirs, event.sequencer):
            raise _Superseded(f"output already holds sequencer {theirs} (this event: {event.sequencer})")
        return {"if_match": current.etag}

    def _source(self, event: BlobCreated, fmt: str) -> Callable[[], BinaryIO]:
        """Opens the blob, pinned to the event's eTag: a stream, or for Parquet a spooled seekable copy."""

        def open_stream() -> BinaryIO:
            # ranged downloads run a few chunks ahead of the parser
            chunks = read_ahead(
                self.blobs.read_chunks(event.container, event.blob_name, _READ_CHUNK, event.etag)
            )
            if fmt != "parquet":
                return io.BufferedReader(_ChunkStream(chunks), buffer_size=1 << 20)
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
        self, event: BlobCreated, key: str, claim: LedgerRecord, exc: InputError, started: float
    ) -> ScoringOutcome:
        record = self._failure_record(event, exc, round((self._clock() - started) * 1000, 1))
        location = self._write_failure(event, record)
        self.ledger.finish(
            claim, "failed", {"reason": exc.reason, "message": exc.message, "failure": location}
        )
        self._publish(
            "Scorehook.Scoring.Failed",
            event,
            {"reason": exc.reason, "message": exc.message, "failure": location},
        )
        _log.warning("file rejected", extra={"reason": exc.reason, "error": exc.message, "failure": location})
        return ScoringOutcome("failed", key, failure=location, reason=exc.reason, details=exc.to_record())

    def _reject_unclaimed(self, event: BlobCreated, key: str, exc: InputError) -> ScoringOutcome:
        # Events for sources we do not serve are recorded but never claimed: nothing to score.
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


class _Lineage:
    """Iterates the output blocks; when exhausted, completes the metadata with counts and timings."""

    def __init__(
        self, blocks: Iterator[bytes], metadata: dict[str, str], stats: EngineStats, started: float,
        clock: Callable[[], float],
    ) -> None:  # fmt: skip
        self._blocks, self._metadata, self._stats, self._started, self._clock = (
            blocks,
            metadata,
            stats,
            started,
            clock,
        )

    def __iter__(self) -> Iterator[bytes]:
        yield from self._blocks
        stats = self._stats
        self._metadata.update({
            "rows_read": str(stats.rows_read), "rows_scored": str(stats.rows_scored),
            "rows_rejected": str(stats.rows_rejected), "read_ms": str(round(stats.read_seconds * 1000, 1)),
            "predict_ms": str(round(stats.predict_seconds * 1000, 1)),
            "write_ms": str(round(stats.write_seconds * 1000, 1)),
            "scoring_ms": str(round((self._clock() - self._started) * 1000, 1)),
            "scored_at": datetime.now(UTC).isoformat(),
        })  # fmt: skip
