"""Where drift state lives in blob storage: window profiles (eTag-safe merges), baselines and reports.

Layout in the drift container::

    windows/{model}/{version}/{start}.json    {"profile": ..., "parts": [...], "inputs": [...]}
    baselines/{model}/{version}.json          a baseline profile computed from the reference dataset
    reports/{model}/{version}/{start}.json    the latest evaluation of that window

A window file is read-modified-written under its eTag (``if_match``, or ``if_none_match`` for the first
part), so parallel instances never lose each other's parts. Each part is added once: its id (the scored
input's idempotency key) is recorded, and a redelivered or replayed input is not counted twice.

Example:
    >>> from shared.testing import FakeBlobStore
    >>> from shared.drift.profile import FeatureSpec
    >>> import pyarrow as pa
    >>> store = ProfileStore(FakeBlobStore())
    >>> part = Profile([FeatureSpec("x", "numeric", (0.0, 1.0))]).update(pa.table({"id": ["a"], "x": [0.5]}))
    >>> w = window_of(datetime(2026, 1, 1, 10, 30, tzinfo=UTC), 3600)
    >>> store.add_part("m", "1", w, part, "k1", "http://h/a.csv")[0].rows, store.add_part("m", "1", w, part, "k1", "x")
    (1, (Profile(1 features, rows=1, model_version='1', window=('2026-01-01T10:00:00Z', '2026-01-01T11:00:00Z')), False))
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.drift.profile import Profile
from shared.errors import BlobChangedError, BlobNotFoundError, InputError, WriteConflictError
from shared.logs import get_logger
from shared.ports import BlobStore

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_INPUTS",
    "CorruptDriftStateError",
    "ProfileStore",
    "StoredWindow",
    "Window",
    "window_of",
]

log = get_logger("scorehook.drift")
MAX_ATTEMPTS = 8
MAX_INPUTS = 5000
"""A window remembers its most recent input URLs up to this many (what a retraining reads)."""


class CorruptDriftStateError(InputError):
    """A stored window file is not a window document (edited by hand, truncated, another format)."""

    reason = "corrupt_drift_state"


def _part_tag(part_id: str) -> str:
    """A short, stable tag of a part id (the ledger key of the input): what the window remembers."""
    return hashlib.sha256(part_id.encode()).hexdigest()[:20]


def _parse(found: tuple[bytes, str, Any]) -> tuple[Profile, list[str], list[str]]:
    doc = found[2]
    try:
        return Profile.from_json(doc["profile"]), list(doc["parts"]), list(doc["inputs"])
    except (TypeError, KeyError, ValueError) as exc:
        raise CorruptDriftStateError(f"not a drift window document: {type(exc).__name__}: {exc}") from exc


_STAMP = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Window:
    """A time window ``[start, end)`` in UTC; ``key`` names it in blob paths.

    Example:
        >>> window_of(datetime(2026, 1, 1, 10, 30, tzinfo=UTC), 3600).key
        '20260101T100000Z'
    """

    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        """The start as a compact UTC stamp."""
        return self.start.strftime(_STAMP)

    def iso(self) -> tuple[str, str]:
        """(start, end) as ISO-8601 strings."""
        return self.start.isoformat().replace("+00:00", "Z"), self.end.isoformat().replace("+00:00", "Z")

    @classmethod
    def from_key(cls, key: str, seconds: int) -> Window:
        """The window of length ``seconds`` starting at ``key``."""
        start = datetime.strptime(key, _STAMP).replace(tzinfo=UTC)
        return cls(start, start + timedelta(seconds=seconds))


def window_of(when: datetime, seconds: int) -> Window:
    """The window of ``seconds`` (aligned to the Unix epoch) that contains ``when``."""
    if seconds <= 0:
        raise ValueError("a window must last at least one second")
    stamp = int(when.astimezone(UTC).timestamp()) // seconds * seconds
    start = datetime.fromtimestamp(stamp, UTC)
    return Window(start, start + timedelta(seconds=seconds))


@dataclass(frozen=True)
class StoredWindow:
    """A window file as listed: which model version and window, and its eTag (changes with every part)."""

    model: str
    version: str
    key: str
    etag: str


class ProfileStore:
    """Drift state in one container of a :class:`BlobStore` (see the module docstring)."""

    def __init__(self, blobs: BlobStore, container: str = "drift") -> None:
        self.blobs, self.container = blobs, container

    @staticmethod
    def window_name(model: str, version: str, key: str) -> str:
        """The blob name of a window file."""
        return f"windows/{model}/{version}/{key}.json"

    def add_part(
        self, model: str, version: str, window: Window, part: Profile, part_id: str, input_url: str
    ) -> tuple[Profile, bool]:
        """Merge ``part`` into the window's profile once (by ``part_id``); returns the merged profile and
        whether this part opened the window (it was the window's first).

        A window file that cannot be read as one is copied to ``corrupt/`` and started afresh (logged).
        Raises ``WriteConflictError`` after ``MAX_ATTEMPTS`` lost races (a transient error: retry later).
        """
        name, tag = self.window_name(model, version, window.key), _part_tag(part_id)
        for _ in range(MAX_ATTEMPTS):
            try:
                current = self._read(name)
            except BlobChangedError:
                continue
            parts: list[str] = []
            inputs: list[str] = []
            if current is not None:
                try:
                    stored, parts, inputs = _parse(current)
                except CorruptDriftStateError as exc:
                    self._quarantine(name, current, exc)
                    current = (current[0], current[1], None)
            if current is None or current[2] is None:
                merged = Profile.from_json(part.to_json())
                merged.window, merged.model_version = window.iso(), version
            else:
                if tag in parts:
                    return stored, False
                part.window, part.model_version = stored.window, stored.model_version
                merged = stored.merge(part)
            body = {
                "model": model,
                "profile": merged.to_json(),
                "parts": [*parts, tag],
                "inputs": [*inputs, input_url][-MAX_INPUTS:],
            }
            data = json.dumps(body, separators=(",", ":")).encode()
            condition: dict[str, Any] = (
                {"if_none_match": True} if current is None else {"if_match": current[1]}
            )
            try:
                self.blobs.write_blocks(
                    self.container, name, [data], content_type="application/json", **condition
                )
                return merged, current is None
            except WriteConflictError:
                log.info("drift window changed while merging; retrying", extra={"window": name})
        raise WriteConflictError(f"could not merge into {name} after {MAX_ATTEMPTS} attempts", blob=name)

    def _quarantine(self, name: str, current: tuple[bytes, str, Any], exc: CorruptDriftStateError) -> None:
        kept = f"corrupt/{name}.{current[1].strip(chr(34))}"
        self.blobs.write_bytes(self.container, kept, current[0])
        log.error("unreadable drift window moved aside; the window starts afresh",
                  extra={**exc.log_fields(), "window": name, "kept": f"{self.container}/{kept}"})  # fmt: skip

    def _read(self, name: str) -> tuple[bytes, str, Any] | None:
        """The raw document, its eTag and the document parsed as JSON (``None`` when that fails), read
        consistently (``BlobChangedError`` if written meanwhile); None when there is no such blob."""
        try:
            etag = self.blobs.properties(self.container, name).etag
            data = b"".join(self.blobs.read_chunks(self.container, name, etag=etag))
        except (BlobNotFoundError, FileNotFoundError):
            return None
        try:
            return data, etag, json.loads(data)
        except ValueError:
            return data, etag, None

    def window(self, model: str, version: str, key: str) -> tuple[Profile, list[str], str] | None:
        """The window's profile, the input URLs merged into it, and its eTag; None when it has no data.
        Raises ``CorruptDriftStateError`` for a window file that cannot be read as one."""
        name = self.window_name(model, version, key)
        try:
            found = self._read(name)
        except BlobChangedError:
            found = self._read(name)
        if found is None:
            return None
        profile, _, inputs = _parse(found)
        return profile, inputs, found[1]

    def window_etag(self, model: str, version: str, key: str) -> str | None:
        """The window file's eTag (it changes with every part), or None when the window has no data."""
        try:
            return self.blobs.properties(self.container, self.window_name(model, version, key)).etag
        except (BlobNotFoundError, FileNotFoundError):
            return None

    def windows(self, model: str | None = None) -> Iterator[StoredWindow]:
        """Every window file (of one model, or of all)."""
        prefix = f"windows/{model}/" if model else "windows/"
        for info in self.blobs.list_blobs(self.container, prefix):
            parts = info.name.removeprefix("windows/").removesuffix(".json").split("/")
            if len(parts) == 3:
                yield StoredWindow(parts[0], parts[1], parts[2], info.etag)

    def baseline(self, model: str, version: str) -> dict[str, Any] | None:
        """A baseline artifact computed earlier from the reference dataset, if any."""
        try:
            return json.loads(self.blobs.read_bytes(self.container, f"baselines/{model}/{version}.json"))  # type: ignore[no-any-return]
        except (BlobNotFoundError, FileNotFoundError):
            return None

    def save_baseline(self, model: str, version: str, artifact: dict[str, Any]) -> None:
        """Keep a computed baseline so it is computed once per model version."""
        self.blobs.write_bytes(
            self.container,
            f"baselines/{model}/{version}.json",
            json.dumps(artifact, separators=(",", ":")).encode(),
            content_type="application/json",
        )

    def report_name(self, model: str, version: str, key: str) -> str:
        """The blob name of a window's latest report."""
        return f"reports/{model}/{version}/{key}.json"

    def save_report(self, model: str, version: str, key: str, report: dict[str, Any]) -> str:
        """Store a report (replacing the window's previous one); returns its blob name."""
        name = self.report_name(model, version, key)
        self.blobs.write_bytes(
            self.container,
            name,
            json.dumps(report, indent=1, default=str).encode(),
            content_type="application/json",
        )
        return name

    def report(self, model: str, version: str, key: str) -> dict[str, Any] | None:
        """The window's latest report, if it was evaluated."""
        try:
            return json.loads(self.blobs.read_bytes(self.container, self.report_name(model, version, key)))  # type: ignore[no-any-return]
        except (BlobNotFoundError, FileNotFoundError):
            return None

    def reports(self, model: str | None = None) -> Iterator[dict[str, Any]]:
        """Every stored report (of one model, or of all), oldest window first per version."""
        prefix = f"reports/{model}/" if model else "reports/"
        for info in sorted(self.blobs.list_blobs(self.container, prefix), key=lambda i: i.name):
            try:
                yield json.loads(self.blobs.read_bytes(self.container, info.name))
            except (BlobNotFoundError, FileNotFoundError):
                continue
