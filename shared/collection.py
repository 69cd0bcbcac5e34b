"""Inputs/outputs collection for monitoring: a scored file's predictions and telemetry sent to an Event Hub.

A route with ``eventhub_output: HUB`` (``shared/routes.py``) sends, after its output blob is committed and
never before (a consumer never sees predictions of an output that does not exist), what ``eventhub_send``
lists:

* ``predictions``: one event per row of the committed output, read back from that blob (pinned to its eTag),
  so the events say exactly what the output says, whether this attempt or an earlier one wrote it;
* ``telemetry``: one summary of the file (rows read, scored and rejected, timings), from the output's lineage.

Every event carries an ``id`` made of the file's idempotency key and the output row (``<key>#<row>``, or
``<key>#telemetry``) and the model version; one file's events share one partition key (the idempotency key),
so they stay in order on one partition. Delivery is at-least-once: a retry sends everything again with the
same ids, and consumers deduplicate by ``id``.

A send that fails (the hub unreachable) never loses the scored file: the output stays committed, the ledger
record goes ``retrying`` with ``eventhub: failed`` and reason ``publish_failed``, and the redelivery finds the
output committed (``_recover_committed``), sends again and finishes ``succeeded`` with ``eventhub: sent``.
While the file is scored the ledger says ``eventhub: pending``. An event that no batch can hold (``too_large``)
is final: the file is ``succeeded`` with ``eventhub: failed`` and ``eventhub_reason``.

Example:
    >>> collector = OutputCollector(blobs, {"scorehook-monitoring": sink})            # doctest: +SKIP
    >>> collector.send(route, key, "incoming/a.csv", etag, output, version)           # doctest: +SKIP
    {'eventhub': 'sent', 'eventhub_hub': 'scorehook-monitoring', 'eventhub_events': 4, ...}
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from shared.errors import ConfigurationError, InputError, PublishError, TransientError
from shared.logs import get_logger
from shared.ports import BlobStore, EventSink, ModelVersion, OutEvent
from shared.prefetch import ChunkStream

__all__ = ["OutputCollector", "prediction_id"]

_log = get_logger("collection")
_READ_CHUNK = 4 << 20
_TIMINGS = ("read_ms", "predict_ms", "write_ms", "scoring_ms")
_COUNTS = ("rows_read", "rows_scored", "rows_rejected")


def prediction_id(key: str, row: int | str) -> str:
    """The id of one output row's event (``row`` 1-based), or of the file's telemetry (``row="telemetry"``).

    Example:
        >>> prediction_id("blob:acc/incoming/a.csv@0x8D1", 7)
        'blob:acc/incoming/a.csv@0x8D1#7'
    """
    return f"{key}#{row}"


class OutputCollector:
    """Sends committed outputs to the hubs routes name; ``sinks`` maps each hub name to its
    :class:`~shared.ports.EventSink` (``EventHubSink`` in Azure, ``LocalEventHubSink`` on devhost's hubs).
    ``rows_per_send`` bounds the events held in memory at once."""

    def __init__(self, blobs: BlobStore, sinks: Mapping[str, EventSink], rows_per_send: int = 2000) -> None:
        self.blobs, self.sinks, self.rows_per_send = blobs, dict(sinks), rows_per_send

    def send(
        self, route: Any, key: str, input_blob: str, input_etag: str, output: str, version: ModelVersion
    ) -> dict[str, Any]:
        """Send the committed ``output`` (``container/name``) of ``input_blob``: the ledger details to record.

        Raises ``PublishError`` (a ``TransientError``: the delivery is retried) when the hub cannot be reached,
        ``StorageUnavailableError`` when the output cannot be read back."""
        hub = route.eventhub_output
        sink = self.sinks.get(hub)
        if sink is None:
            raise ConfigurationError(f"route {route.name} sends to Event Hub {hub}, which has no sender",
                                     route=route.name, hub=hub)  # fmt: skip
        container, _, name = output.partition("/")
        info = self.blobs.properties(container, name)
        if info.metadata.get("input_etag") != input_etag.strip('"'):
            # a newer version of the input was scored into this output meanwhile: its own delivery sends it
            _log.info("output replaced by a newer version's: nothing sent to the event hub",
                      extra={"event_hub": hub, "output": output})  # fmt: skip
            return {"eventhub": "skipped", "eventhub_hub": hub, "eventhub_why": "the output holds a newer version"}
        source = {"key": key, "blob": input_blob, "output": output, "route": route.name}
        common = {"model": version.name, "model_version": version.version}
        sent = 0

        def send(events: list[OutEvent]) -> None:
            nonlocal sent
            try:
                sink.send(events)
            except TransientError as exc:  # the hub, not the output: a storage error reading it stays what it is
                _log.error("event hub send failed: the file is retried, its events sent again with the same ids",
                           extra={"event_hub": hub, "output": output, "events_sent": sent, "error": str(exc)[:500]})  # fmt: skip
                raise PublishError(f"sending {input_blob}'s output to Event Hub {hub} failed after {sent} events: "
                                   f"{exc}", eventhub="failed", hub=hub, events_sent=sent) from exc  # fmt: skip
            sent += len(events)

        try:
            if "predictions" in route.eventhub_send:
                for events in self._predictions(container, name, info, route, key, source, common):
                    send(events)
            if "telemetry" in route.eventhub_send:
                send([OutEvent(json.dumps(_telemetry(key, info.metadata, source, common, sent)), key)])
        except InputError as exc:  # an event too large for any batch: sending again cannot help
            _log.error("event hub send refused: the scored file stands without its events",
                       extra={**exc.log_fields(), "event_hub": hub, "output": output, "events_sent": sent})  # fmt: skip
            return {"eventhub": "failed", "eventhub_hub": hub, "eventhub_reason": exc.reason,
                    "eventhub_error": exc.message[:500], "eventhub_events": sent}  # fmt: skip
        _log.info("output sent to the event hub", extra={"event_hub": hub, "output": output, "events": sent})
        return {"eventhub": "sent", "eventhub_hub": hub, "eventhub_events": sent,
                "eventhub_sent_at": datetime.now(UTC).isoformat()}  # fmt: skip

    def _predictions(
        self, container: str, name: str, info: Any, route: Any, key: str, source: dict[str, Any],
        common: dict[str, Any],
    ) -> Iterator[list[OutEvent]]:  # fmt: skip
        """The output's rows as events, ``rows_per_send`` at a time, numbered from 1 in output order."""
        row, events = 0, []
        for batch in self._batches(container, name, info.etag, route):
            for values in batch:
                row += 1
                body = {"id": prediction_id(key, row), "kind": "prediction", "row": row, **common,
                        "values": values, "source": source}  # fmt: skip
                events.append(OutEvent(json.dumps(body, default=str), key))
                if len(events) >= self.rows_per_send:
                    yield events
                    events = []
        if events:
            yield events

    def _batches(self, container: str, name: str, etag: str, route: Any) -> Iterator[list[dict[str, Any]]]:
        """The committed output's rows (pinned to ``etag``) as dicts: Parquet as typed, CSV values as the file
        writes them (key columns and ``model_version`` text, other columns numbers where they all parse)."""
        chunks = self.blobs.read_chunks(container, name, _READ_CHUNK, etag)
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            with tempfile.SpooledTemporaryFile(max_size=64 << 20) as spool:
                for chunk in chunks:
                    spool.write(chunk)
                spool.seek(0)
                for batch in pq.ParquetFile(spool).iter_batches(batch_size=self.rows_per_send):
                    yield batch.to_pylist()
            return
        import pyarrow as pa
        import pyarrow.csv as pacsv

        stream = io.BufferedReader(ChunkStream(chunks), buffer_size=1 << 20)
        header = stream.readline().decode("utf-8-sig")
        if not header.strip():
            return
        names = next(csv.reader([header]))
        text = {*route.key_columns, "model_version"}
        reader = pacsv.open_csv(
            stream, read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 20),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )  # fmt: skip
        for batch in reader:
            columns = [batch.column(n) if n in text else _numbers(batch.column(n)) for n in names]
            yield pa.record_batch(columns, names=names).to_pylist()


def _numbers(column: Any) -> Any:
    """A text column as whole numbers, else as numbers, else as it is."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for kind in (pa.int64(), pa.float64()):
        try:
            return pc.cast(column, kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return column


def _telemetry(key: str, metadata: Mapping[str, str], source: dict[str, Any], common: dict[str, Any],
               predictions: int) -> dict[str, Any]:  # fmt: skip
    """The file's telemetry summary, from the output's lineage metadata."""
    figures: dict[str, Any] = {}
    for name in _COUNTS:
        figures[name] = _number(metadata.get(name), int)
    for name in _TIMINGS:
        figures[name] = _number(metadata.get(name), float)
    return {"id": prediction_id(key, "telemetry"), "kind": "telemetry", **common, **figures,
            "model_flavor": metadata.get("model_flavor"), "scored_at": metadata.get("scored_at"),
            "prediction_events": predictions, "source": source}  # fmt: skip


def _number(text: str | None, kind: type) -> Any:
    try:
        return kind(text) if text is not None else None
    except ValueError:
        return None
