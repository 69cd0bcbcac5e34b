"""Failure records of events the app cannot trust (malformed, forged, foreign, oversized, dead-lettered).

Such an event never names where its record goes: the record is written under a fixed namespace of the failed
container, ``_events/<sha256 of the event id>.json`` (:func:`shared.names.rejected_event_name`), so a
sender cannot choose a path, and a redelivery of the same event rewrites the same record. The record keeps a
bounded excerpt of what was received (never the whole of a 2 MiB body).

Example:
    >>> from shared.errors import MalformedEventError
    >>> from shared.testing import FakeBlobStore
    >>> blobs = FakeBlobStore()
    >>> where = write_rejected_event(blobs, "failed", {"id": "e-1", "eventTime": 5},
    ...                              MalformedEventError("field 'eventTime' must be a string"), source="score_blob")
    >>> where.startswith("failed/_events/"), json.loads(blobs.read_bytes("failed", where[7:]))["reason"]
    (True, 'malformed_event')
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from shared.errors import ScorehookError
from shared.logs import get_logger
from shared.names import ascii_metadata, rejected_event_name
from shared.ports import BlobStore

__all__ = ["EXCERPT_BYTES", "rejected_event_record", "write_rejected_event"]

EXCERPT_BYTES = 16 << 10
_log = get_logger("rejections")


def _event_id(raw: Any) -> str | None:
    if isinstance(raw, dict):
        for key, value in raw.items():
            if str(key).lower() == "id" and isinstance(value, str) and value:
                return value
    return None


def _excerpt(raw: Any) -> tuple[Any, bool]:
    """What was received, as JSON-ready data when small, else the first bytes as text."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else json.dumps(raw, default=str)
    if len(text) <= EXCERPT_BYTES:
        if isinstance(raw, bytes | bytearray):
            try:
                return json.loads(text), False
            except ValueError:
                return text, False
        return raw, False
    return text[:EXCERPT_BYTES], True


def rejected_event_record(raw: Any, error: ScorehookError, *, source: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    """(name inside the failed container, record) for an untrusted event ``raw`` (a dict, or raw bytes)."""
    event_id = _event_id(raw)
    body = raw if isinstance(raw, bytes | bytearray) else json.dumps(raw, sort_keys=True, default=str).encode()
    received, truncated = _excerpt(raw)
    record = {
        "failed_at": datetime.now(UTC).isoformat(),
        "kind": "event",
        "source": source,
        "event_id": event_id,
        **error.to_record(),
        **extra,
        "received": received,
        "received_truncated": truncated,
        "received_bytes": len(body),
    }
    return rejected_event_name(event_id, bytes(body)), record


def write_rejected_event(
    blobs: BlobStore, failed_container: str, raw: Any, error: ScorehookError, *, source: str,
    raise_errors: bool = False, **extra: Any,
) -> str | None:
    """Write the failure record of an untrusted event; returns ``container/name``, or ``None`` when the
    record could not be written (logged with the event id: the caller still answers the delivery). With
    ``raise_errors`` the write error propagates instead (the caller asks for a redelivery)."""
    name, record = rejected_event_record(raw, error, source=source, **extra)
    try:
        blobs.write_bytes(
            failed_container, name, json.dumps(record, indent=2, default=str).encode(),
            content_type="application/json",
            metadata=ascii_metadata({"reason": error.reason, "kind": "event", "event_id": record["event_id"] or ""}),
        )  # fmt: skip
    except Exception as exc:  # a record we cannot write must not turn a rejection into a retry storm
        if raise_errors:
            raise
        _log.error("could not write the failure record of a rejected event",
                   extra={"event_id": record["event_id"], "reason": error.reason, "error": str(exc),
                          "error_type": type(exc).__name__, "failure": f"{failed_container}/{name}"})  # fmt: skip
        return None
    return f"{failed_container}/{name}"
