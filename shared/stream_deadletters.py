"""Stream dead letters: the records ``score_stream`` could not score, listed and sent again to their input hub.

``shared.streaming`` writes one blob per batch with bad records, ``failed/_stream/<hub>/<partition>/<first>-<last>.json``,
each record with its reason, position, sequence number and body (up to 4 KiB). After a fix (a corrected
model, a schema that now takes the records) :meth:`StreamDeadLetterService.replay` sends each record's body
again, unchanged (its own ``id`` included, so consumers deduplicate), to the hub it came from, where the
trigger scores it like any record (a record still bad is dead-lettered again, in a new batch's blob).

Each record is replayed once: it is marked in the ledger under ``stream-deadletter:<blob>#<position>`` —
claimed before the send (two replays at once send a record once), ``replayed`` after it. A send that fails
frees the marks (the next replay sends again); a replay that dies between the send and the mark is taken
over when its mark expires and sends again (at-least-once, the record's ``id`` unchanged). A record whose
body was cut (over 4 KiB) or is not UTF-8 text cannot be sent as it was, and one that is not a JSON object with
an ``id`` (``malformed_event``, ``missing_field``) would fail again whatever the fix: they are ``n/a``.

Example:
    >>> service = StreamDeadLetterService(blobs, ledger, "failed", sink_for=lambda hub: sink)   # doctest: +SKIP
    >>> [r.status for r in service.replay()]                                                   # doctest: +SKIP
    ['sent', 'sent']
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.errors import AlreadyClaimedError, BlobNotFoundError, ScorehookError
from shared.logs import bind, get_logger
from shared.ports import BlobStore, EventSink, Ledger, OutEvent

__all__ = ["KEY_PREFIX", "PREFIX", "StreamDeadLetter", "StreamDeadLetterService", "StreamReplayed", "parse_stream_dead_letters"]

PREFIX = "_stream/"  # inside the failed container
KEY_PREFIX = "stream-deadletter:"
REPLAYED = "replayed"
REPLAY_TTL_SECONDS = 900
_MAX_BLOB_BYTES = 64 << 20
_HUB = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,255}")
_OWNER = f"{socket.gethostname()}:{os.getpid()}"
# Reasons the body alone decides (not JSON, not an object, no usable id): sent again, it fails again.
_UNFIXABLE = ("malformed_event", "missing_field")
_log = get_logger("stream_deadletters")


@dataclass(frozen=True)
class StreamDeadLetter:
    """One dead-lettered record of one batch blob."""

    container: str
    blob: str
    hub: str | None
    partition: str | None
    position: int
    sequence_number: int | None
    reason: str | None
    error: str | None
    enqueued_time: str | None
    partition_key: str | None
    body: str | None  # None: cut, or not text
    problem: str | None = None  # why it cannot be replayed

    @property
    def key(self) -> str:
        """Its replay mark in the ledger."""
        return f"{KEY_PREFIX}{self.blob}#{self.position}"

    @property
    def location(self) -> str:
        return f"{self.container}/{self.blob}#{self.position}"

    @property
    def record_id(self) -> Any:
        """The record's own ``id`` when its body is a JSON object that has one."""
        try:
            value = json.loads(self.body) if self.body is not None else None
        except ValueError:
            return None
        return value.get("id") if isinstance(value, dict) else None


@dataclass
class StreamReplayed:
    """What a replay did with one record: ``sent`` (to ``hub``) or ``error`` (nothing marked, try again)."""

    dead_letter: StreamDeadLetter
    status: str
    hub: str | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = self.dead_letter
        return {"dead_letter": d.location, "event_hub": self.hub, "partition": d.partition, "position": d.position,
                "sequence_number": d.sequence_number, "record_id": d.record_id, "status": self.status,
                "reason": self.reason or d.reason, **self.details}  # fmt: skip


def parse_stream_dead_letters(container: str, blob: str, data: bytes) -> list[StreamDeadLetter]:
    """The records of one stream dead-letter blob (what ``shared.streaming`` wrote); never raises: a blob
    that does not read gives no records.

    Example:
        >>> doc = {"event_hub": "records", "partition": "0", "records": [{"position": 3, "sequence_number": 9,
        ...        "reason": "wrong_type", "error": "x", "body": '{"id": "a"}'}]}
        >>> [(d.hub, d.position, d.record_id) for d in parse_stream_dead_letters("failed", "_stream/records/0/5-9.json",
        ...                                                                     json.dumps(doc).encode())]
        [('records', 3, 'a')]
    """
    try:
        doc = json.loads(data)
    except ValueError:
        return []
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
        return []
    hub = doc.get("event_hub") if isinstance(doc.get("event_hub"), str) else None
    if hub is not None and (not _HUB.fullmatch(hub) or ".." in hub):
        hub = None
    partition = str(doc["partition"]) if doc.get("partition") is not None else None
    found = []
    for index, record in enumerate(doc["records"]):
        if not isinstance(record, dict):
            continue
        position = _int(record.get("position"))
        position = index if position is None else position
        body = record.get("body") if isinstance(record.get("body"), str) else None
        problem = None
        if hub is None:
            problem = "the dead letter names no valid event hub"
        elif record.get("body_truncated"):
            problem = f"the body was cut to 4 KiB (it had {record.get('body_bytes')} bytes)"
            body = None
        elif body is None:
            problem = "the body is not UTF-8 text"
        elif record.get("reason") in _UNFIXABLE:
            problem = f"the record itself is bad ({record['reason']}): no fix of the model or settings scores it"
        found.append(StreamDeadLetter(
            container, blob, hub, partition, position, _int(record.get("sequence_number")), _str(record.get("reason")),
            _str(record.get("error")), _str(record.get("enqueued_time")), _str(record.get("partition_key")), body,
            problem,
        ))  # fmt: skip
    return found


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class StreamDeadLetterService:
    """Lists and replays stream dead letters; ``sink_for(hub)`` gives the sender to an input hub (only replay
    needs it: :func:`shared.adapters.eventhub.eventhub_sink`)."""

    def __init__(
        self, blobs: BlobStore, ledger: Ledger, container: str = "failed",
        sink_for: Callable[[str], EventSink] | None = None,
    ) -> None:  # fmt: skip
        self.blobs, self.ledger, self.container, self.sink_for = blobs, ledger, container, sink_for

    def read(self, name: str) -> list[StreamDeadLetter]:
        data = bytearray()
        for chunk in self.blobs.read_chunks(self.container, name):
            data += chunk
            if len(data) > _MAX_BLOB_BYTES:
                return []
        return parse_stream_dead_letters(self.container, name, bytes(data))

    def dead_letters(self) -> Iterator[StreamDeadLetter]:
        """Every dead-lettered stream record, blob by blob (name order), in batch order."""
        for info in self.blobs.list_blobs(self.container, prefix=PREFIX):
            try:
                yield from self.read(info.name)
            except BlobNotFoundError:
                continue

    def replay_status(self, dead_letter: StreamDeadLetter) -> str:
        """``yes`` (sent again), ``replaying`` (a replay holds its mark), ``no``, or ``n/a`` (cannot be sent)."""
        if dead_letter.problem is not None:
            return "n/a"
        record = self.ledger.get(dead_letter.key)
        if record is None:
            return "no"
        return "yes" if record.status == REPLAYED else "replaying"

    def counts(self) -> dict[str, int]:
        """Records by replay status: ``total``, ``open``, ``replayed``, ``not_replayable``."""
        statuses = [self.replay_status(d) for d in self.dead_letters()]
        return {"total": len(statuses), "open": sum(s in ("no", "replaying") for s in statuses),
                "replayed": statuses.count("yes"), "not_replayable": statuses.count("n/a")}  # fmt: skip

    def replay(self) -> list[StreamReplayed]:
        """Send every replayable record not replayed yet to its hub, one send per dead-letter blob."""
        if self.sink_for is None:
            raise TypeError("replay needs sink_for (the sender to the input hubs)")
        by_blob: dict[str, list[StreamDeadLetter]] = {}
        for letter in self.dead_letters():
            if letter.problem is None:
                by_blob.setdefault(letter.blob, []).append(letter)
        done: list[StreamReplayed] = []
        for blob, letters in by_blob.items():
            with bind(dead_letter=f"{self.container}/{blob}"):
                done += self._replay_blob(letters)
        return done

    def _replay_blob(self, letters: list[StreamDeadLetter]) -> list[StreamReplayed]:
        claimed = []
        for letter in letters:
            claim = self.ledger.claim(letter.key, _OWNER, REPLAY_TTL_SECONDS,
                                      {"dead_letter": letter.location, "event_hub": letter.hub,
                                       "sequence_number": letter.sequence_number, "reason": letter.reason})  # fmt: skip
            if claim is not None:  # else replayed already, or another replay holds it now
                claimed.append((letter, claim))
        if not claimed:
            return []
        hub, sink_for = str(claimed[0][0].hub), self.sink_for
        assert sink_for is not None
        try:
            sink_for(hub).send([OutEvent(str(letter.body), letter.partition_key) for letter, _ in claimed])
        except Exception as exc:  # one blob's trouble never stops the others; nothing is marked
            for _, claim in claimed:
                self.ledger.release(claim)
            reason = exc.reason if isinstance(exc, ScorehookError) else type(exc).__name__
            _log.warning("stream dead letters not replayed: retry later",
                         extra={"event_hub": hub, "records": len(claimed), "reason": reason, "error": str(exc)[:500]})  # fmt: skip
            return [StreamReplayed(letter, "error", hub, reason, {"message": str(exc)[:500]}) for letter, _ in claimed]
        except BaseException:
            for _, claim in claimed:
                self.ledger.release(claim)
            raise
        results = []
        for letter, claim in claimed:
            try:
                self.ledger.finish(claim, REPLAYED, {"sent_to": hub})
            except AlreadyClaimedError:  # this replay outlived its mark: another one may send it again
                _log.warning("stream record replayed but its replay mark was lost", extra={"position": letter.position})
            results.append(StreamReplayed(letter, "sent", hub))
        _log.info("stream dead letters replayed", extra={"event_hub": hub, "records": len(results)})
        return results
