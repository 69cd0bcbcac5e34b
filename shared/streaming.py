"""Scoring records that arrive on Event Hubs: the use case behind the ``score_stream`` function.

A batch is the events one invocation of an Event Hub trigger (cardinality many) receives from one
partition. Each event's body is one JSON object: an ``id`` (text or a whole number) and the model's inputs.
The good records are scored together by the same engine and cached models as files are
(:func:`shared.engine.score_file` over JSON lines); each prediction is one event for the output hub and
carries the record's ``id``, partition and sequence number, so consumers deduplicate (delivery is
at-least-once: a batch scored again after a crash before its checkpoint gives the same ids).

Bad records never fail the batch: each goes to the dead-letter sink (one blob per batch in the failed
container, ``_stream/<hub>/<partition>/<first>-<last>.json``) with its reason (one of
``shared.errors.FAILURE_REASONS``), its position in the batch and its sequence number:

===============================================  ==================
record                                           reason
===============================================  ==================
not UTF-8                                        ``not_utf8``
not JSON, not a JSON object                      ``malformed_event``
no ``id`` (absent, null, empty)                  ``missing_field``
``id`` neither text nor a whole number           ``malformed_event``
a model input absent                             ``schema_mismatch``
text where a number is declared (and so on)      the engine's reason (``wrong_type``, ``invalid_value``, ...)
over ``max_record_bytes``                        ``too_large``
the model cannot be resolved or loaded           ``model_not_found`` / ``bad_model`` (every record)
===============================================  ==================

A ``TransientError`` (storage or registry down) propagates: the function fails, nothing is checkpointed,
and the retry policy delivers the same batch again.

Drift: the good records are grouped by the window of their enqueued time; each group's profile is written
through :meth:`DriftMonitor.record` as one part, named by hub, partition and sequence range.

Example:
    >>> sink = CollectingSink()                                                      # doctest: +SKIP
    >>> service.score_batch(StreamBatch("records", "$Default", "0", records), sink)  # doctest: +SKIP
    StreamOutcome(scored=98, dead_lettered=2, ...)
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.engine import EngineStats, Limits, score_file
from shared.errors import InputError, TransientError
from shared.logs import bind, get_logger
from shared.ports import BlobStore, EventSink, OutEvent

__all__ = [
    "CollectingSink",
    "DeadLetter",
    "EventSink",
    "OutEvent",
    "StreamBatch",
    "StreamOutcome",
    "StreamRecord",
    "StreamingService",
    "dead_letter_name",
    "part_id",
]

_log = get_logger("streaming")
_PARTITION = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HUB = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,255}")
_BODY_KEPT = 4096  # bytes of a bad record kept in its dead letter


@dataclass(frozen=True)
class StreamRecord:
    """One event as the trigger gives it: body and system properties."""

    body: bytes
    sequence_number: int | None = None
    offset: str | int | None = None
    enqueued_time: datetime | None = None
    partition_key: str | None = None


@dataclass(frozen=True)
class StreamBatch:
    """The events of one invocation, all from one partition of ``hub``."""

    hub: str
    consumer_group: str
    partition: str
    records: Sequence[StreamRecord]

    @property
    def sequence_range(self) -> str:
        """``first-last`` sequence numbers (positions when the host gave none)."""
        numbers = [r.sequence_number for r in self.records if r.sequence_number is not None]
        if not numbers:
            return f"p0-{len(self.records) - 1}"
        return f"{min(numbers)}-{max(numbers)}"


class CollectingSink:
    """An :class:`EventSink` that keeps the bodies for an output binding (set once the batch is scored).

    Example:
        >>> sink = CollectingSink(); sink.send([OutEvent('{"id": 1}')]); sink.bodies
        ['{"id": 1}']
    """

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send(self, events: Sequence[OutEvent]) -> None:
        self.bodies.extend(e.body for e in events)


@dataclass(frozen=True)
class DeadLetter:
    """A record that was not scored: where it was in the batch and why."""

    position: int
    record: StreamRecord
    reason: str
    error: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        body = self.record.body[:_BODY_KEPT]
        try:
            text: dict[str, Any] = {"body": body.decode("utf-8")}
        except UnicodeDecodeError:
            import base64

            text = {"body_base64": base64.b64encode(body).decode()}
        enqueued = self.record.enqueued_time
        return {
            "position": self.position, "sequence_number": self.record.sequence_number,
            "offset": self.record.offset, "enqueued_time": enqueued.isoformat() if enqueued else None,
            "partition_key": self.record.partition_key, "reason": self.reason, "error": self.error[:1000],
            "details": self.details, "body_bytes": len(self.record.body),
            "body_truncated": len(self.record.body) > _BODY_KEPT, **text,
        }  # fmt: skip


@dataclass(frozen=True)
class StreamOutcome:
    """What one batch gave: predictions sent, records dead-lettered, drift parts written."""

    scored: int
    dead_lettered: int
    dead_letter_blob: str | None
    model: str | None
    drift: list[dict[str, str]] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)


def _safe(value: str, pattern: re.Pattern[str], fallback: str) -> str:
    return value if pattern.fullmatch(value or "") else fallback


def dead_letter_name(batch: StreamBatch) -> str:
    """The dead-letter blob of a batch, inside the failed container (names from the host are checked).

    Example:
        >>> dead_letter_name(StreamBatch("records", "$Default", "3", [StreamRecord(b"x", 40), StreamRecord(b"y", 41)]))
        '_stream/records/3/40-41.json'
        >>> dead_letter_name(StreamBatch("../x", "$Default", "a/b", [StreamRecord(b"x", 7)]))
        '_stream/_unknown/_unknown/7-7.json'
    """
    hub = _safe(batch.hub, _HUB, "_unknown")
    if ".." in hub:
        hub = "_unknown"
    return f"_stream/{hub}/{_safe(batch.partition, _PARTITION, '_unknown')}/{batch.sequence_range}.json"


def part_id(batch: StreamBatch, records: Sequence[StreamRecord]) -> str:
    """The drift part of some records of a batch: hub, consumer group, partition and their sequence range.

    Example:
        >>> part_id(StreamBatch("records", "$Default", "0", []), [StreamRecord(b"", 5), StreamRecord(b"", 9)])
        'eventhub:records/$Default/0/5-9'
    """
    return f"eventhub:{batch.hub}/{batch.consumer_group}/{batch.partition}/" + StreamBatch(
        batch.hub, batch.consumer_group, batch.partition, records
    ).sequence_range


class _Bad(Exception):
    def __init__(self, reason: str, error: str, **details: Any) -> None:
        super().__init__(error)
        self.reason, self.error, self.details = reason, error, details


class StreamingService:
    """Scores batches of streamed JSON records; every dependency is a port.

    ``models`` is the scoring service's :class:`~shared.models.ModelProvider` (one model cache per
    process), ``drift`` its :class:`~shared.drift.monitor.DriftMonitor` or ``None``.
    """

    def __init__(
        self,
        blobs: BlobStore,
        models: Any,
        *,
        model_uri: str,
        failed_container: str = "failed",
        limits: Limits | None = None,
        on_missing: str = "pass",
        drift: Any = None,
        drift_window_seconds: int = 3600,
        key_column: str = "id",
        label_column: str | None = "label",
    ) -> None:
        self.blobs, self.models, self.model_uri = blobs, models, model_uri
        self.failed_container, self.limits = failed_container, limits or Limits()
        self.on_missing, self.drift, self.drift_window_seconds = on_missing, drift, drift_window_seconds
        self.key_column, self.label_column = key_column, label_column

    @classmethod
    def from_settings(cls, settings: Any, blobs: BlobStore, models: Any, drift: Any = None) -> StreamingService:
        """The service for the app settings, on the scoring service's blob store, models and drift monitor."""
        return cls(
            blobs, models, model_uri=settings.stream_model_uri or settings.model_uri,
            failed_container=settings.failed_container, limits=Limits.from_settings(settings),
            drift=drift, drift_window_seconds=settings.drift_window_seconds,
        )  # fmt: skip

    # -- the use case -------------------------------------------------------------------------
    def score_batch(self, batch: StreamBatch, sink: EventSink) -> StreamOutcome:
        """Score the good records of a batch into ``sink``; dead-letter the others (never fails on a record).

        Raises ``TransientError`` when storage or the registry is unavailable (the batch comes again)."""
        with bind(event_hub=batch.hub, partition=batch.partition, sequence_range=batch.sequence_range):
            dead: list[DeadLetter] = []
            good: list[tuple[int, dict[str, Any]]] = []
            model_version, model = None, None
            try:
                model_version, model = self.models.get(self.model_uri)
            except TransientError:
                raise
            except InputError as exc:  # every record waits in the dead letters for a usable model
                dead = [DeadLetter(i, r, exc.reason, exc.message, _details(exc)) for i, r in enumerate(batch.records)]
            if model is not None:
                inputs = [c.name for c in model.inputs]
                for position, record in enumerate(batch.records):
                    try:
                        good.append((position, self._parse(record, inputs)))
                    except _Bad as bad:
                        dead.append(DeadLetter(position, record, bad.reason, bad.error, bad.details))
            events: list[OutEvent] = []
            drift: list[dict[str, str]] = []
            for window_records in self._by_window(batch, good):
                sent, failed, recorded = self._score_group(batch, window_records, model_version, model)
                events += sent
                dead += failed
                if recorded:
                    drift.append(recorded)
            dead.sort(key=lambda d: d.position)
            where = self._dead_letter(batch, dead) if dead else None
            if events:
                sink.send(events)
            reasons: dict[str, int] = {}
            for letter in dead:
                reasons[letter.reason] = reasons.get(letter.reason, 0) + 1
            outcome = StreamOutcome(len(events), len(dead), where,
                                    model_version.uri if model_version is not None else None, drift, reasons)  # fmt: skip
            _log.info("stream batch scored",
                      extra={"events": len(batch.records), "scored": outcome.scored, "dead_lettered": outcome.dead_lettered,
                             "dead_letter_blob": where, "reasons": reasons, "model": outcome.model})  # fmt: skip
            return outcome

    def _parse(self, record: StreamRecord, inputs: Sequence[str]) -> dict[str, Any]:
        """The record as a JSON object with a usable id and every model input, else :class:`_Bad`."""
        if len(record.body) > self.limits.max_record_bytes:
            raise _Bad("too_large", f"the record has {len(record.body)} bytes, more than max_record_bytes "
                       f"({self.limits.max_record_bytes})", limit="max_record_bytes", bytes=len(record.body))  # fmt: skip
        try:
            text = record.body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _Bad("not_utf8", f"the record is not UTF-8 text: {exc}", encoding="utf-8") from None
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise _Bad("malformed_event", f"the record is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise _Bad("malformed_event", f"the record is JSON {type(value).__name__}, not an object")
        key = value.get(self.key_column)
        if key is None or key == "":
            raise _Bad("missing_field", f"the record has no {self.key_column!r} (consumers deduplicate by it)",
                       field=self.key_column)  # fmt: skip
        if isinstance(key, bool) or not isinstance(key, str | int):
            raise _Bad("malformed_event", f"{self.key_column!r} is {type(key).__name__}: expected text or a whole number",
                       field=self.key_column)  # fmt: skip
        missing = [name for name in inputs if name not in value]
        if missing:
            raise _Bad("schema_mismatch", f"the record lacks the model input(s) {', '.join(missing)}",
                       columns=missing)  # fmt: skip
        return value

    def _by_window(
        self, batch: StreamBatch, good: list[tuple[int, dict[str, Any]]]
    ) -> list[list[tuple[int, dict[str, Any]]]]:
        """Good records grouped by the drift window of their enqueued time (one group without drift)."""
        if not good:
            return []
        if self.drift is None:
            return [good]
        from shared.drift.store import window_of

        groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for position, value in good:
            when = batch.records[position].enqueued_time or datetime.now(UTC)
            groups.setdefault(window_of(when, self.drift_window_seconds).key, []).append((position, value))
        return [groups[key] for key in sorted(groups)]

    def _score_group(
        self, batch: StreamBatch, group: list[tuple[int, dict[str, Any]]], version: Any, model: Any
    ) -> tuple[list[OutEvent], list[DeadLetter], dict[str, str] | None]:
        """Score a group; a record the engine refuses is dead-lettered and the rest scored again."""
        dead: list[DeadLetter] = []
        pending = list(group)
        observer = None
        while pending:
            observer = self._observer(version, model, batch)  # a fresh one per attempt: only the clean set counts
            try:
                table = self._score(pending, version, model, observe=observer)
                break
            except InputError as exc:
                if observer is not None:
                    observer.stop()
                    observer = None
                row = exc.details.get("row") if isinstance(exc.details, dict) else None
                if isinstance(row, int) and 1 <= row <= len(pending):
                    position, _ = pending.pop(row - 1)
                elif len(pending) == 1:
                    position, _ = pending.pop()
                else:  # not located: score each record alone to find the bad ones
                    kept = []
                    for item in pending:
                        try:
                            self._score([item], version, model, observe=None)
                            kept.append(item)
                        except InputError as alone:
                            dead.append(self._engine_letter(batch, item[0], alone))
                    pending = kept
                    continue
                dead.append(self._engine_letter(batch, position, exc))
        if not pending:
            return [], dead, None
        recorded = None
        if observer is not None:
            recorded = self._record(batch, [batch.records[p] for p, _ in pending], version, observer)
        return self._events(batch, pending, table, version), dead, recorded

    def _engine_letter(self, batch: StreamBatch, position: int, exc: InputError) -> DeadLetter:
        details = {k: v for k, v in _details(exc).items() if k not in ("row", "line")}
        return DeadLetter(position, batch.records[position], exc.reason, exc.message, details)

    def _score(self, pending: list[tuple[int, dict[str, Any]]], version: Any, model: Any, observe: Any) -> Any:
        """The records through the engine (JSON lines in, Parquet out) as an Arrow table in input order."""
        import pyarrow.parquet as pq

        lines = []
        for _, value in pending:
            value = {**value, self.key_column: str(value[self.key_column])}  # ids are text in the output
            lines.append(json.dumps(value, allow_nan=True).encode())
        data = b"\n".join(lines) + b"\n"
        stats = EngineStats()
        blocks = score_file(
            io.BytesIO(data), fmt="jsonl", model=model, model_version=version.version,
            key_columns=(self.key_column,), output_format="parquet", on_missing=self.on_missing,
            limits=self.limits, label_column=self.label_column, stats=stats, observe=observe,
        )  # fmt: skip
        return pq.read_table(io.BytesIO(b"".join(blocks)))

    def _events(self, batch: StreamBatch, pending: list[tuple[int, dict[str, Any]]], table: Any,
                version: Any) -> list[OutEvent]:  # fmt: skip
        """One output event per scored row, with the record's original id (rows rejected for a missing
        value under ``on_missing: reject_rows`` have none)."""
        values = dict(pending)
        originals: dict[str, list[int]] = {}
        for position, value in pending:
            originals.setdefault(str(value[self.key_column]), []).append(position)
        columns = [c for c in table.column_names if c != self.key_column]
        events = []
        for row in table.to_pylist():
            key = row[self.key_column]
            position = originals[key].pop(0)
            record = batch.records[position]
            body = {
                "id": values[position][self.key_column], **{c: row[c] for c in columns},
                "model": version.name, "source": {"event_hub": batch.hub, "partition": batch.partition,
                "sequence_number": record.sequence_number,
                "enqueued_time": record.enqueued_time.isoformat() if record.enqueued_time else None},
            }  # fmt: skip
            events.append(OutEvent(json.dumps(body, default=str), partition_key=key))
        return events

    def _observer(self, version: Any, model: Any, batch: StreamBatch) -> Any:
        if self.drift is None:
            return None
        try:
            return self.drift.observer(version, model, salt=f"eventhub:{batch.hub}/{batch.partition}")
        except Exception as exc:  # no baseline: scoring goes on, as for files
            _log.warning("no drift profile for this stream batch",
                         extra={"model": getattr(version, "uri", None), "error_type": type(exc).__name__,
                                "error": str(exc)[:500]})  # fmt: skip
            return None

    def _record(self, batch: StreamBatch, records: list[StreamRecord], version: Any, observer: Any) -> dict[str, str]:
        pid = part_id(batch, records)
        when = next((r.enqueued_time for r in records if r.enqueued_time), None) or datetime.now(UTC)
        url = f"eventhub://{batch.hub}/{batch.consumer_group}/{batch.partition}/{pid.rsplit('/', 1)[-1]}"
        try:
            recorded = self.drift.record(version, when, observer, pid, url)
        except Exception as exc:  # record() logs its own failures; monitoring never fails scoring
            _log.error("drift profile not recorded", extra={"input_url": url, "error": str(exc)[:500]})
            return {"part": pid, "drift_profile": "missing"}
        details = {"part": pid, "drift_window": recorded.window.key, "drift_profile": recorded.status}
        if recorded.closed is not None:
            details["drift_window_closed"] = recorded.closed.key
        return details

    def _dead_letter(self, batch: StreamBatch, dead: list[DeadLetter]) -> str:
        """One blob per batch (a redelivery writes the same name again); raises ``TransientError``."""
        name = dead_letter_name(batch)
        body = {
            "source": "eventhub", "event_hub": batch.hub, "consumer_group": batch.consumer_group,
            "partition": batch.partition, "sequence_range": batch.sequence_range, "events": len(batch.records),
            "dead_lettered": len(dead), "records": [d.to_json() for d in dead],
        }  # fmt: skip
        self.blobs.write_bytes(self.failed_container, name, json.dumps(body, indent=1, default=str).encode(),
                               content_type="application/json")  # fmt: skip
        for letter in dead:
            _log.warning("stream record dead-lettered",
                         extra={"dead_letter_blob": f"{self.failed_container}/{name}", "position": letter.position,
                                "sequence_number": letter.record.sequence_number, "reason": letter.reason,
                                "error": letter.error[:300]})  # fmt: skip
        return f"{self.failed_container}/{name}"


def _details(exc: InputError) -> dict[str, Any]:
    details = getattr(exc, "details", None)
    return dict(details) if isinstance(details, Mapping) else {}
