"""Scoring a file that landed in blob storage: the use case behind the ``score_blob`` function.

Flow: check the event's source → claim the file's idempotency key in the ledger → resolve the model
reference to a concrete version → get the loaded model from the cache → stream the blob in chunks
through pyarrow's CSV reader → predict per record batch → stage the output as blocks and commit it
once, with lineage metadata → record the outcome → publish ``Scorehook.Scoring.Completed``.

A bad file (``InputError``) becomes a failure record in the ``failed`` container and the ledger and is
acknowledged; a ``TransientError`` releases the claim and propagates, so the delivery is retried.

Example:
    >>> service = ScoringService(blobs, ledger, registry, publisher, ModelCache(), settings)  # doctest: +SKIP
    >>> service.score(parse_blob_created(event_dict)).status                                  # doctest: +SKIP
    'succeeded'
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.errors import (
    EventSourceError,
    FileFormatError,
    InputError,
    SchemaMismatchError,
    ScorehookError,
    TransientError,
)
from shared.events import BlobCreated
from shared.logs import bind, get_logger
from shared.models import ModelCache, OnnxModel, load_model_dir
from shared.ports import BlobStore, EventPublisher, Ledger, LedgerRecord, ModelRegistry, ModelVersion
from shared.settings import Settings

__all__ = ["ScoringOutcome", "ScoringService", "failure_name", "idempotency_key", "output_name"]

_log = get_logger("scoring")
_BLOCK_BYTES = 4 << 20
_READ_CHUNK = 1 << 20
_OWNER = f"{socket.gethostname()}:{os.getpid()}"


def idempotency_key(event: BlobCreated) -> str:
    """The key a file is claimed under: blob URL + eTag.

    Example:
        >>> class E: url, etag = "http://h/acc/incoming/a.csv", '"0x1"'
        >>> idempotency_key(E())
        'blob:http://h/acc/incoming/a.csv@0x1'
    """
    return f"blob:{event.url}@{event.etag.strip(chr(34))}"


def output_name(blob_name: str) -> str:
    """Where the predictions for an input blob go, inside the output container.

    Example:
        >>> output_name("2026/11/batch.csv")
        '2026/11/batch.predictions.csv'
    """
    stem = blob_name.rsplit(".", 1)[0] if "." in blob_name.rsplit("/", 1)[-1] else blob_name
    return f"{stem}.predictions.csv"


def failure_name(container: str, blob_name: str, etag: str) -> str:
    """Where the failure record of one version of an input blob goes, inside the failed container.

    Example:
        >>> failure_name("incoming", "a.csv", '"0x8D1"')
        'incoming/a.csv.0x8D1.json'
    """
    return f"{container}/{blob_name}.{etag.strip(chr(34))}.json"


@dataclass
class ScoringOutcome:
    """What happened to one delivery of one file."""

    status: str  # "succeeded" | "failed" | "duplicate"
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
        self.bytes_read = 0

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
        self.bytes_read += n
        return n


class ScoringService:
    """Scores files announced by ``BlobCreated`` events; every dependency is a port."""

    def __init__(
        self,
        blobs: BlobStore,
        ledger: Ledger,
        registry: ModelRegistry,
        publisher: EventPublisher,
        models: ModelCache,
        settings: Settings,
    ) -> None:
        self.blobs, self.ledger, self.registry = blobs, ledger, registry
        self.publisher, self.models, self.settings = publisher, models, settings

    # -- the use case -------------------------------------------------------------------------
    def score(self, event: BlobCreated) -> ScoringOutcome:
        """Score the file an event announces, exactly once in effect."""
        key = idempotency_key(event)
        with bind(event_id=event.id, blob=f"{event.container}/{event.blob_name}", etag=event.etag):
            try:
                self._check_source(event)
            except InputError as exc:
                return self._reject_unclaimed(event, key, exc)
            claim = self.ledger.claim(key, _OWNER, self.settings.claim_ttl_seconds, {"event_id": event.id})
            if claim is None:
                existing = self.ledger.get(key)
                _log.info("duplicate delivery acknowledged", extra={"status": existing and existing.status})
                return ScoringOutcome("duplicate", key, details={"status": existing and existing.status})
            started = time.perf_counter()
            try:
                return self._score_claimed(event, key, claim, started)
            except InputError as exc:
                return self._record_failure(event, key, claim, exc, started)
            except TransientError:
                self.ledger.release(claim)
                raise
            except Exception:
                self.ledger.release(claim)
                raise

    def _check_source(self, event: BlobCreated) -> None:
        if event.account not in self.settings.allowed_storage_accounts:
            raise EventSourceError(
                f"storage account {event.account!r} is not served (allowed: {', '.join(self.settings.allowed_storage_accounts)})",
                account=event.account,
            )
        if event.container != self.settings.input_container:
            raise EventSourceError(
                f"container {event.container!r} is not an input container ({self.settings.input_container!r})",
                container=event.container,
            )

    def _model(self, reference: str) -> tuple[ModelVersion, OnnxModel]:
        version = self.registry.resolve(reference)

        def load() -> OnnxModel:
            with tempfile.TemporaryDirectory(prefix="scorehook-model-") as tmp:
                return load_model_dir(self.registry.download(version, tmp))

        return version, self.models.get(version.uri, load)

    def _score_claimed(
        self, event: BlobCreated, key: str, claim: LedgerRecord, started: float
    ) -> ScoringOutcome:
        version, model = self._model(self.settings.model_uri)
        with bind(model=version.name, model_version=version.version):
            counts = {"rows_read": 0, "rows_scored": 0}
            blocks = self._predict_blocks(event, model, version, counts)
            output = output_name(event.blob_name)
            metadata = {
                "input_url": event.url,
                "input_etag": event.etag.strip('"'),
                "event_id": event.id,
                "model_name": version.name,
                "model_version": version.version,
                "model_flavor": model.flavor,
            }
            # Lineage that depends on the whole file is known only after the last block is staged.
            self.blobs.write_blocks(
                self.settings.output_container,
                output,
                _LineageBlocks(blocks, metadata, counts, started),
                metadata=metadata,
                content_type="text/csv",
            )
            location = f"{self.settings.output_container}/{output}"
            details: dict[str, Any] = {**metadata, **counts, "output": location}
            self.ledger.finish(claim, "succeeded", details)
            elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
            self._publish("Scorehook.Scoring.Completed", event, {**details, "elapsed_ms": elapsed_ms})
            _log.info("file scored", extra={**counts, "output": location, "elapsed_ms": elapsed_ms})
            return ScoringOutcome(
                "succeeded",
                key,
                output=location,
                rows=counts["rows_scored"],
                model=version.uri,
                details=details,
            )

    def _predict_blocks(
        self, event: BlobCreated, model: OnnxModel, version: ModelVersion, counts: dict[str, int]
    ) -> Iterator[bytes]:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        column_types = {
            c.name: (pa.string() if c.is_string else pa.from_numpy_dtype(c.dtype)) for c in model.inputs
        }
        column_types["id"] = pa.string()
        stream = io.BufferedReader(
            _ChunkStream(self.blobs.read_chunks(event.container, event.blob_name, _READ_CHUNK, event.etag)),
            buffer_size=_READ_CHUNK,
        )
        header = _header(stream.peek(_READ_CHUNK))
        missing = [c.name for c in model.inputs if header and c.name not in header]
        if missing:
            raise SchemaMismatchError(
                f"column {missing[0]!r} required by model {version.uri} is missing (missing: {', '.join(missing)})",
                column=missing[0],
                missing=missing,
            )
        try:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=1 << 20),
                convert_options=pacsv.ConvertOptions(column_types=column_types, strings_can_be_null=True),
            )
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise _read_error(exc, header, 0) from exc
        missing = [c.name for c in model.inputs if c.name not in reader.schema.names]
        if missing:
            raise SchemaMismatchError(
                f"column {missing[0]!r} required by model {version.uri} is missing (missing: {', '.join(missing)})",
                column=missing[0],
                missing=missing,
            )
        keys = ["id"] if "id" in reader.schema.names else []
        sink, writer = io.BytesIO(), None
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                raise _read_error(exc, header, counts["rows_read"]) from exc
            self._check_missing(batch, model, counts["rows_read"])
            predicted = model.predict(batch)
            out = {k: batch.column(batch.schema.get_field_index(k)) for k in keys}
            out.update({name: pa.array(values) for name, values in predicted.items()})
            out["model_version"] = pa.array([version.version] * batch.num_rows, pa.string())
            table = pa.table(out)
            if writer is None:
                writer = pacsv.CSVWriter(sink, table.schema)
            writer.write_table(table)
            counts["rows_read"] += batch.num_rows
            counts["rows_scored"] += batch.num_rows
            if sink.tell() >= _BLOCK_BYTES:
                yield sink.getvalue()
                sink.seek(0)
                sink.truncate()
        if writer is None:
            raise FileFormatError("the file has a header but no rows")
        writer.close()
        yield sink.getvalue()

    @staticmethod
    def _check_missing(batch: Any, model: OnnxModel, rows_before: int) -> None:
        for column in model.inputs:
            array = batch.column(batch.schema.get_field_index(column.name))
            if array.null_count:
                import pyarrow.compute as pc

                row = rows_before + int(pc.index(pc.is_null(array), True).as_py())
                raise SchemaMismatchError(
                    f"column {column.name!r} has an empty value at data row {row + 1}",
                    reason="missing_value",
                    column=column.name,
                    row=row + 1,
                )

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
            self.settings.failed_container,
            name,
            json.dumps(record, indent=2, default=str).encode(),
            content_type="application/json",
            metadata={"reason": record["reason"]},
        )
        return f"{self.settings.failed_container}/{name}"

    def _record_failure(
        self, event: BlobCreated, key: str, claim: LedgerRecord, exc: InputError, started: float
    ) -> ScoringOutcome:
        record = self._failure_record(event, exc, round((time.perf_counter() - started) * 1000, 1))
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


_CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'", re.S)


def _header(head: bytes) -> list[str]:
    """Column names from the first line of a CSV file (best effort, for error messages)."""
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip("\r")
    return next(csv.reader([first]), []) if first else []


def _read_error(exc: Exception, header: list[str], rows_before: int) -> InputError:
    """pyarrow's CSV errors as our own: a value of the wrong type names its column and value."""
    if isinstance(exc, UnicodeDecodeError):
        return FileFormatError(
            f"the file is not UTF-8 text: {exc.reason} at byte {exc.start}", encoding="utf-8"
        )
    message = str(exc)
    if "invalid UTF8" in message:
        found = re.search(r"column #(\d+)", message)
        name = header[int(found[1])] if found and int(found[1]) < len(header) else "?"
        return FileFormatError(f"the file is not UTF-8 text (column {name!r})", encoding="utf-8", column=name)
    match = _CONVERSION.search(message)
    if match:
        index, type_name, value = int(match[1]), match[2], match[3]
        column = header[index] if index < len(header) else f"#{index}"
        return SchemaMismatchError(
            f"column {column!r} has value {value!r} that is not a {type_name} "
            + (f"(after data row {rows_before})" if rows_before else "(in the first block of rows)"),
            reason="bad_value",
            column=column,
            value=value,
            expected=type_name,
            row_after=rows_before,
        )
    return FileFormatError(f"not a readable CSV file: {message}", row_after=rows_before)


class _LineageBlocks:
    """Iterates the output blocks; when exhausted, completes the metadata with counts and timing."""

    def __init__(
        self, blocks: Iterator[bytes], metadata: dict[str, str], counts: dict[str, int], started: float
    ):
        self._blocks, self._metadata, self._counts, self._started = blocks, metadata, counts, started

    def __iter__(self) -> Iterator[bytes]:
        yield from self._blocks
        self._metadata.update({k: str(v) for k, v in self._counts.items()})
        self._metadata["rows_rejected"] = "0"
        self._metadata["scoring_ms"] = str(round((time.perf_counter() - self._started) * 1000, 1))
        self._metadata["scored_at"] = datetime.now(UTC).isoformat()
