"""Where drift state lives in blob storage: immutable profile parts, compacted windows, baselines, reports.

Layout in the drift container::

    parts/{model}/{version}/{window}/{tag}.json    one scored input's profile (immutable, If-None-Match)
    missing/{model}/{version}/{window}/{tag}.json  an input whose profile could not be written (best effort)
    opened/{model}/{version}/{window}.json         created once by the window's first input (If-None-Match)
    windows/{model}/{version}/{window}.json        the compacted window: merged profile + what it absorbed
    waves/{model}/{version}.json                   the model version's drift wave (one alert per wave)
    baselines/{model}/{version}.json               a baseline profile computed from the reference dataset
    reports/{model}/{version}/{window}.json        the latest evaluation of that window
    corrupt/...                                    unreadable windows and parts, moved aside

``tag`` is a hash of the scored input's idempotency key (blob URL + eTag), so a redelivered input writes
nothing new. No blob is read-modify-written on the scoring path: each input writes its own part, and the
compactor (:meth:`ProfileStore.compact`, run by the evaluator) merges the parts it has not absorbed yet into
the window document under the document's eTag (``if_match``/``if_none_match``: two compactors never lose
each other's work). The document keeps the tags it absorbed, so a part is counted once even when it is
written again after it was pruned (absorbed parts are deleted ``retention_seconds`` after absorption).

Example:
    >>> from shared.testing import FakeBlobStore
    >>> from shared.drift.profile import FeatureSpec
    >>> import pyarrow as pa
    >>> store = ProfileStore(FakeBlobStore())
    >>> part = Profile([FeatureSpec("x", "numeric", (0.0, 1.0))]).update(pa.table({"id": ["a"], "x": [0.5]}))
    >>> w = window_of(datetime(2026, 1, 1, 10, 30, tzinfo=UTC), 3600)
    >>> store.write_part("m", "1", w, part, "k1", "http://h/a.csv", '"0x1"'), store.write_part("m", "1", w, part, "k1", "x")
    (True, False)
    >>> state = store.compact("m", "1", w.key); state.rows, state.parts, store.compact("m", "1", w.key).changed
    (1, 1, False)
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.drift.profile import Profile
from shared.errors import (
    BlobChangedError,
    BlobNotFoundError,
    InputError,
    TransientError,
    WriteConflictError,
)
from shared.logs import get_logger
from shared.names import normalize_etag
from shared.ports import BlobInfo, BlobStore

__all__ = [
    "DEFAULT_PART_RETENTION_SECONDS",
    "MAX_ATTEMPTS",
    "MAX_INPUTS",
    "PART_FORMAT",
    "WINDOW_FORMAT",
    "CompactedWindow",
    "CorruptDriftStateError",
    "ProfileStore",
    "StoredWindow",
    "Window",
    "part_tag",
    "window_of",
]

log = get_logger("scorehook.drift")
MAX_ATTEMPTS = 8
"""Lost races a compaction (or a wave update) retries before giving up (a transient error)."""
MAX_INPUTS = 5000
"""A window remembers its most recent input URLs up to this many (what a retraining reads)."""
DEFAULT_PART_RETENTION_SECONDS = 3600
PART_FORMAT = "scorehook.drift-part"
WINDOW_FORMAT = "scorehook.drift-window"
_JSON = "application/json"
READ_AHEAD = 8
"""Parts a compactor reads at once (in parallel threads)."""
_CACHED_WINDOWS = 32  # compacted windows a process keeps parsed (by eTag), to skip re-reading unchanged ones
OWN_PARTS_BYTES = 32 << 20
"""The parts a process wrote are kept (serialized, with the eTag their write returned) up to this many bytes
until a compaction absorbs them: the compactor of the same process (the timer runs beside scoring) parses
its own parts without reading them back; any other part, or one whose listed eTag differs, is read."""


class CorruptDriftStateError(InputError):
    """A stored window or part cannot be read as one (edited by hand, truncated, another format)."""

    reason = "corrupt_drift_state"


def part_tag(part_id: str) -> str:
    """A short, stable tag of a part id (the ledger key of the input): names its part, what a window absorbs.

    Example:
        >>> part_tag("blob:http://h/a.csv@0x1")
        'bcba97ec653ceb9ea00b'
    """
    return hashlib.sha256(part_id.encode()).hexdigest()[:20]


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
    """A window as listed: model version, window key and the compacted document's eTag (normalized; ``""``
    when the window has parts but was not compacted yet)."""

    model: str
    version: str
    key: str
    etag: str


@dataclass
class CompactedWindow:
    """A window's compacted state: the merged profile (None before any readable part), the absorbed part
    tags (tag → absorption time, epoch seconds), the most recent input URLs, the inputs whose profile is
    missing (tag → input, eTag, reason), and the document's normalized eTag. ``changed``: this compaction
    wrote a new document."""

    model: str
    version: str
    key: str
    profile: Profile | None
    absorbed: dict[str, float] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    missing: dict[str, dict[str, Any]] = field(default_factory=dict)
    etag: str = ""
    changed: bool = False

    @property
    def rows(self) -> int:
        """Rows profiled in the window."""
        return self.profile.rows if self.profile is not None else 0

    @property
    def parts(self) -> int:
        """Inputs counted in the window (each once)."""
        return len(self.absorbed)

    @property
    def inputs_missing_profiles(self) -> int:
        """Inputs scored into this window whose profile is not in it."""
        return len(self.missing)


def _parse_window(model: str, version: str, key: str, doc: Any, etag: str) -> CompactedWindow:
    """A window document (this format, or the older ``profile`` + ``parts`` + ``inputs`` one, read as already
    compacted); ``CorruptDriftStateError`` for anything else."""
    try:
        profile = Profile.from_json(doc["profile"]) if doc["profile"] is not None else None
        if "absorbed" in doc:
            absorbed = {str(t): float(at) for t, at in doc["absorbed"].items()}
        else:
            absorbed = {str(t): 0.0 for t in doc["parts"]}  # the older layout: the tags it merged
        missing = {str(t): dict(v) for t, v in (doc.get("missing") or {}).items()}
        inputs = [str(u) for u in doc["inputs"]]
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise CorruptDriftStateError(f"not a drift window document: {type(exc).__name__}: {exc}") from exc
    return CompactedWindow(model, version, key, profile, absorbed, inputs, missing, etag)


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), default=str).encode()


class _BadPart(Exception):
    def __init__(self, why: str, doc: Any) -> None:
        super().__init__(why)
        self.doc = doc if isinstance(doc, dict) else {}


class ProfileStore:
    """Drift state in one container of a :class:`BlobStore` (see the module docstring).

    ``retention_seconds``: how long an absorbed part is kept before the compactor deletes it.
    """

    def __init__(
        self,
        blobs: BlobStore,
        container: str = "drift",
        *,
        retention_seconds: float = DEFAULT_PART_RETENTION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.blobs, self.container = blobs, container
        self.retention_seconds, self.clock = retention_seconds, clock
        self._docs: dict[str, CompactedWindow] = {}  # window name → last state read or written (by eTag)
        self._own: dict[str, tuple[str, bytes]] = {}  # part name → (eTag, body) of parts written here
        self._own_bytes = 0
        self._lock = threading.Lock()

    # -- names --------------------------------------------------------------------------------
    @staticmethod
    def window_name(model: str, version: str, key: str) -> str:
        """The blob name of a compacted window."""
        return f"windows/{model}/{version}/{key}.json"

    @staticmethod
    def part_name(model: str, version: str, key: str, tag: str) -> str:
        """The blob name of one input's profile part."""
        return f"parts/{model}/{version}/{key}/{tag}.json"

    @staticmethod
    def missing_name(model: str, version: str, key: str, tag: str) -> str:
        """The blob name of the marker of an input whose profile could not be written."""
        return f"missing/{model}/{version}/{key}/{tag}.json"

    @staticmethod
    def opened_name(model: str, version: str, key: str) -> str:
        """The blob name of the marker the window's first input creates."""
        return f"opened/{model}/{version}/{key}.json"

    # -- the scoring path: write-once blobs only ------------------------------------------------
    def write_part(
        self, model: str, version: str, window: Window, part: Profile, part_id: str, input_url: str,
        input_etag: str | None = None,
    ) -> bool:  # fmt: skip
        """Write one input's profile as its own immutable part; False when an earlier attempt already wrote
        it (If-None-Match: a redelivery adds nothing). Raises ``TransientError`` when storage fails."""
        tag = part_tag(part_id)
        body = {
            "format": PART_FORMAT, "version": 1, "model": model, "model_version": version, "window": window.key,
            "span": list(window.iso()), "tag": tag, "input": input_url, "etag": normalize_etag(input_etag), "rows": part.rows,
            "written_at": self.clock(), "profile": part.to_json(),
        }  # fmt: skip
        name, data = self.part_name(model, version, window.key, tag), _dumps(body)
        try:
            etag = self.blobs.write_blocks(self.container, name, [data], content_type=_JSON, if_none_match=True)
        except WriteConflictError:
            return False
        self._keep_own(name, etag, data)
        return True

    def _keep_own(self, name: str, etag: str, data: bytes) -> None:
        with self._lock:
            self._own[name] = (normalize_etag(etag), data)
            self._own_bytes += len(data)
            while self._own_bytes > OWN_PARTS_BYTES and self._own:  # the oldest first
                self._own_bytes -= len(self._own.pop(next(iter(self._own)))[1])

    def _forget_own(self, names: Iterable[str]) -> None:
        with self._lock:
            for name in names:
                kept = self._own.pop(name, None)
                if kept is not None:
                    self._own_bytes -= len(kept[1])

    def mark_missing(
        self, model: str, version: str, window: Window, part_id: str, input_url: str, input_etag: str | None,
        reason: str, error: str,
    ) -> str:  # fmt: skip
        """Leave the durable trace of an input whose profile is not in its window (the compactor counts it
        in ``inputs_missing_profiles``); returns the marker's blob name. Raises when storage fails."""
        name = self.missing_name(model, version, window.key, part_tag(part_id))
        body = {"input": input_url, "etag": normalize_etag(input_etag), "reason": reason, "error": error[:1000],
                "at": self.clock()}  # fmt: skip
        self.blobs.write_bytes(self.container, name, _dumps(body), content_type=_JSON)
        return name

    def open_window(self, model: str, version: str, window: Window, input_url: str = "") -> bool:
        """Create the window's ``opened`` marker; True when this call created it (the window's first input:
        the window before it is closed), False when it existed. Raises ``TransientError`` on storage errors."""
        body = {"window": window.key, "first_input": input_url, "at": self.clock()}
        try:
            self.blobs.write_blocks(
                self.container, self.opened_name(model, version, window.key), [_dumps(body)],
                content_type=_JSON, if_none_match=True,
            )  # fmt: skip
        except WriteConflictError:
            return False
        return True

    # -- the compactor --------------------------------------------------------------------------
    def compact(
        self, model: str, version: str, key: str, *, final: bool = False, now: float | None = None
    ) -> CompactedWindow | None:
        """Merge the window's parts not absorbed yet (and its new missing-profile markers) into its document,
        conditionally on the document's eTag (retried on a lost race); then prune absorbed parts older than
        the retention (all of them with ``final``: the timer will not visit the window again). Returns the
        state (``changed`` when a document was written), or None when the window has no data at all.

        Example:
            >>> store.compact("m", "1", "20260101T100000Z").parts      # doctest: +SKIP
            12
        """
        name = self.window_name(model, version, key)
        read_parts: dict[str, tuple[Profile, dict[str, Any]] | _BadPart] = {}  # parts are immutable
        for _ in range(MAX_ATTEMPTS):
            state, raw_etag, corrupt = self._load(model, version, key)
            parts = self._listed(f"parts/{model}/{version}/{key}/")
            markers = self._listed(f"missing/{model}/{version}/{key}/")
            new = sorted(t for t in parts if t not in state.absorbed)
            for tag in [
                t for t in new if state.missing.get(t, {}).get("reason") == CorruptDriftStateError.reason
            ]:
                found = read_parts.get(tag) or self._read_part(state, tag)
                if isinstance(found, _BadPart):  # counted already, but still there: set aside, write nothing
                    read_parts[tag] = found
                    self._set_aside(state, tag, found)
                    new.remove(tag)
            noted = sorted(
                t for t in markers if t not in state.absorbed and t not in state.missing and t not in parts
            )
            if not new and not noted and not corrupt:
                if raw_etag is None:
                    return None
                self._prune(state, parts, markers, final, now)
                return state
            merged, bad = self._merge(state, new, noted, read_parts, now, parts)
            body = {
                "format": WINDOW_FORMAT, "version": 2, "model": model, "model_version": version, "window": key,
                "rows": merged.rows, "parts": merged.parts, "inputs_missing_profiles": merged.inputs_missing_profiles,
                "profile": merged.profile.to_json() if merged.profile is not None else None,
                "absorbed": merged.absorbed, "missing": merged.missing, "inputs": merged.inputs,
                "compacted_at": datetime.now(UTC).isoformat(),
            }  # fmt: skip
            condition: dict[str, Any] = {"if_match": raw_etag} if raw_etag else {"if_none_match": True}
            try:
                etag = self.blobs.write_blocks(
                    self.container, name, [_dumps(body)], content_type=_JSON, **condition
                )
            except WriteConflictError:
                log.info(
                    "drift window compacted by another evaluator meanwhile; retrying", extra={"window": name}
                )
                continue
            merged.etag, merged.changed = normalize_etag(etag), True
            self._remember(name, merged)
            for tag, why in bad.items():  # counted as missing in the document just written
                self._set_aside(merged, tag, why)
            self._prune(merged, parts, markers, final, now)
            return merged
        raise WriteConflictError(f"could not compact {name} after {MAX_ATTEMPTS} attempts", window=name)

    def _merge(
        self, state: CompactedWindow, new: list[str], noted: list[str],
        read_parts: dict[str, tuple[Profile, dict[str, Any]] | _BadPart], now: float | None,
        listed: dict[str, BlobInfo],
    ) -> tuple[CompactedWindow, dict[str, _BadPart]]:  # fmt: skip
        """The state with ``new`` parts and ``noted`` markers merged in, and the unreadable parts (counted
        as missing; set aside by the caller once the state is written). Parts are read ``READ_AHEAD`` at a
        time in parallel and merged in name order as they come; only unreadable ones are kept for a retry
        (a parsed part of a 1k-row file holds ~0.7 MB of cells: a window's worth would not fit)."""
        stamp = self.clock() if now is None else now
        bad: dict[str, _BadPart] = {}
        profile, inputs = state.profile, list(state.inputs)
        owned = False  # whether ``profile`` is ours to add parts into (the state's may be a cached one's)
        absorbed, missing = dict(state.absorbed), dict(state.missing)
        arrived: list[tuple[float, str, str]] = []  # (written_at, tag, input): the inputs list in write order

        def read(tag: str) -> tuple[Profile, dict[str, Any]] | _BadPart | None:
            return read_parts.get(tag) or self._read_part(state, tag, listed[tag].etag)

        with ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="drift-compact") as pool:
            for start in range(0, len(new), READ_AHEAD * 4):
                chunk = new[start : start + READ_AHEAD * 4]
                for tag, found in zip(chunk, pool.map(read, chunk), strict=True):
                    if found is None:  # pruned by a compactor that absorbed it: its write makes ours retry
                        continue
                    if isinstance(found, _BadPart):
                        bad[tag] = read_parts[tag] = found
                        continue
                    part, doc = found
                    try:
                        if profile is None:
                            profile, owned = part, True  # freshly read: nobody else holds it
                            span = doc.get("span")
                            profile.window = (str(span[0]), str(span[1])) if span else profile.window
                            profile.model_version = state.version
                        else:
                            part.window, part.model_version = profile.window, profile.model_version
                            profile = profile.absorb(part) if owned else profile.merge(part)
                            owned = True
                    except ValueError as exc:  # another layout than the window's: never blocks the window
                        bad[tag] = read_parts[tag] = _BadPart(f"does not merge: {exc}", doc)
                        continue
                    absorbed[tag] = stamp
                    missing.pop(tag, None)
                    arrived.append((float(doc.get("written_at") or 0.0), tag, str(doc.get("input", ""))))
        inputs += [url for _, _, url in sorted(arrived)]
        for tag in noted:
            missing[tag] = self._read_marker(state, tag) | {"noted_at": stamp}
        for tag, why in bad.items():
            missing[tag] = {"input": why.doc.get("input"), "etag": why.doc.get("etag"), "noted_at": stamp,
                            "reason": CorruptDriftStateError.reason, "error": str(why)[:500]}  # fmt: skip
        merged = CompactedWindow(
            state.model,
            state.version,
            state.key,
            profile,
            absorbed,
            inputs[-MAX_INPUTS:],
            missing,
            state.etag,
        )
        return merged, bad

    def _read_part(
        self, state: CompactedWindow, tag: str, etag: str | None = None
    ) -> tuple[Profile, dict[str, Any]] | _BadPart | None:
        """A part parsed: the body this process wrote when the listed ``etag`` is the one its write
        returned, else read from storage; None when it is gone."""
        name = self.part_name(state.model, state.version, state.key, tag)
        with self._lock:
            own = self._own.get(name)
        if own is not None and etag is not None and own[0] == normalize_etag(etag):
            raw = own[1]
        else:
            try:
                raw = self.blobs.read_bytes(self.container, name)
            except (BlobNotFoundError, FileNotFoundError):
                return None
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            return _BadPart(f"not JSON: {exc}", {"raw": raw})
        try:
            if doc.get("format") != PART_FORMAT:
                raise ValueError(f"format {doc.get('format')!r}")
            return Profile.from_json(doc["profile"]), doc
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            return _BadPart(f"not a drift part: {type(exc).__name__}: {exc}", doc)

    def _set_aside(self, state: CompactedWindow, tag: str, bad: _BadPart) -> None:
        """Move an unreadable part to ``corrupt/`` (logged, naming the part and its input); it counts as a
        missing profile and never blocks the window."""
        name = self.part_name(state.model, state.version, state.key, tag)
        where = {"part": f"{self.container}/{name}", "input": bad.doc.get("input"), "etag": bad.doc.get("etag"),
                 "window": state.key, "model": state.model, "model_version": state.version,
                 "reason": CorruptDriftStateError.reason, "error": str(bad)}  # fmt: skip
        raw = bad.doc.get("raw")
        try:
            if raw is None:
                raw = self.blobs.read_bytes(self.container, name)
            self.blobs.write_bytes(self.container, f"corrupt/{name}", raw)
            self.blobs.delete(self.container, name)
            where["kept"] = f"{self.container}/corrupt/{name}"
        except (BlobNotFoundError, FileNotFoundError):
            pass
        except TransientError as exc:
            where["set_aside_error"] = exc.message
        log.error("unreadable drift profile part set aside; counted as a missing profile", extra=where)

    def _read_marker(self, state: CompactedWindow, tag: str) -> dict[str, Any]:
        name = self.missing_name(state.model, state.version, state.key, tag)
        try:
            doc = json.loads(self.blobs.read_bytes(self.container, name))
            return {k: doc.get(k) for k in ("input", "etag", "reason", "error")}
        except (BlobNotFoundError, FileNotFoundError, ValueError, AttributeError):
            return {"input": None, "etag": None, "reason": "unexpected_error", "error": "unreadable marker"}

    def _listed(self, prefix: str) -> dict[str, BlobInfo]:
        return {
            info.name[len(prefix) :].removesuffix(".json"): info
            for info in self.blobs.list_blobs(self.container, prefix)
            if info.name.endswith(".json") and "/" not in info.name[len(prefix) :]
        }

    def _prune(
        self, state: CompactedWindow, parts: dict[str, BlobInfo], markers: dict[str, BlobInfo], final: bool,
        now: float | None,
    ) -> None:  # fmt: skip
        self._forget_own(info.name for tag, info in parts.items() if tag in state.absorbed)
        cutoff = (self.clock() if now is None else now) - self.retention_seconds
        doomed = [info.name for tag, info in parts.items()
                  if tag in state.absorbed and (final or state.absorbed[tag] <= cutoff)]  # fmt: skip
        for tag, info in markers.items():
            seen = state.absorbed.get(tag, state.missing.get(tag, {}).get("noted_at"))
            if seen is not None and (final or float(seen) <= cutoff):
                doomed.append(info.name)
        for name in doomed:
            try:
                self.blobs.delete(self.container, name)
            except TransientError as exc:  # pruned on a later compaction
                log.warning("absorbed drift part not pruned", extra={"part": name, **exc.log_fields()})
                return

    def _load(self, model: str, version: str, key: str) -> tuple[CompactedWindow, str | None, bool]:
        """The window's state, the raw eTag to write over (None: no document) and whether the document was
        corrupt (copied to ``corrupt/``: the compactor rebuilds the window from the parts still kept)."""
        name = self.window_name(model, version, key)
        for _ in range(MAX_ATTEMPTS):
            try:
                etag = self.blobs.properties(self.container, name).etag
            except (BlobNotFoundError, FileNotFoundError):
                return CompactedWindow(model, version, key, None), None, False
            with self._lock:
                cached = self._docs.get(name)
            if cached is not None and cached.etag == normalize_etag(etag):
                return self._copy(cached), etag, False
            try:
                data = b"".join(self.blobs.read_chunks(self.container, name, etag=etag))
            except BlobChangedError:
                continue
            except (BlobNotFoundError, FileNotFoundError):
                return CompactedWindow(model, version, key, None), None, False
            try:
                state = _parse_window(model, version, key, json.loads(data), normalize_etag(etag))
            except (ValueError, CorruptDriftStateError) as exc:
                error = exc if isinstance(exc, CorruptDriftStateError) else CorruptDriftStateError(str(exc))
                self._quarantine(name, data, etag, error)
                return CompactedWindow(model, version, key, None, etag=normalize_etag(etag)), etag, True
            self._remember(name, state)
            return self._copy(state), etag, False
        raise BlobChangedError(f"{name} kept changing while it was read", window=name)

    def _remember(self, name: str, state: CompactedWindow) -> None:
        with self._lock:
            self._docs.pop(name, None)
            self._docs[name] = state
            while len(self._docs) > _CACHED_WINDOWS:
                self._docs.pop(next(iter(self._docs)))

    @staticmethod
    def _copy(state: CompactedWindow) -> CompactedWindow:
        return CompactedWindow(state.model, state.version, state.key, state.profile, dict(state.absorbed),
                               list(state.inputs), dict(state.missing), state.etag)  # fmt: skip

    def _quarantine(self, name: str, data: bytes, etag: str, exc: CorruptDriftStateError) -> None:
        kept = f"corrupt/{name}.{normalize_etag(etag)}"
        self.blobs.write_bytes(self.container, kept, data)
        log.error("unreadable drift window moved aside; rebuilt from the parts still kept",
                  extra={**exc.log_fields(), "window": name, "kept": f"{self.container}/{kept}"})  # fmt: skip

    # -- reading --------------------------------------------------------------------------------
    def compacted(self, model: str, version: str, key: str) -> CompactedWindow | None:
        """The window's compacted state as stored (no compaction), or None when it has no document.
        Raises ``CorruptDriftStateError`` for a document that cannot be read as one."""
        name = self.window_name(model, version, key)
        try:
            etag = self.blobs.properties(self.container, name).etag
            data = self.blobs.read_bytes(self.container, name)
        except (BlobNotFoundError, FileNotFoundError):
            return None
        try:
            return _parse_window(model, version, key, json.loads(data), normalize_etag(etag))
        except ValueError as exc:
            raise CorruptDriftStateError(f"{name} is not JSON: {exc}", window=name) from exc

    def window(self, model: str, version: str, key: str) -> tuple[Profile, list[str], str] | None:
        """The compacted window's profile, its recent input URLs and its (normalized) eTag; None when it has
        no data. Raises ``CorruptDriftStateError`` for a window document that cannot be read as one."""
        state = self.compacted(model, version, key)
        if state is None or state.profile is None:
            return None
        return state.profile, state.inputs, state.etag

    def window_etag(self, model: str, version: str, key: str) -> str | None:
        """The compacted window's normalized eTag, or None when it has no document."""
        try:
            return normalize_etag(
                self.blobs.properties(self.container, self.window_name(model, version, key)).etag
            )
        except (BlobNotFoundError, FileNotFoundError):
            return None

    def windows(self, model: str | None = None) -> Iterator[StoredWindow]:
        """Every window with data (of one model, or of all): compacted ones, and those only opened so far,
        in key order per model version."""
        found: dict[tuple[str, str, str], str] = {}
        for root in ("opened", "windows"):
            prefix = f"{root}/{model}/" if model else f"{root}/"
            for info in self.blobs.list_blobs(self.container, prefix):
                parts = info.name.removeprefix(f"{root}/").removesuffix(".json").split("/")
                if len(parts) == 3:
                    key = (parts[0], parts[1], parts[2])
                    found[key] = normalize_etag(info.etag) if root == "windows" else found.get(key, "")
        for (m, v, k), etag in sorted(found.items()):
            yield StoredWindow(m, v, k, etag)

    # -- drift waves ----------------------------------------------------------------------------
    def wave(self, model: str, version: str) -> tuple[dict[str, Any] | None, str | None]:
        """The model version's drift wave document and its raw eTag (None, None before the first)."""
        name = f"waves/{model}/{version}.json"
        try:
            etag = self.blobs.properties(self.container, name).etag
            data = b"".join(self.blobs.read_chunks(self.container, name, etag=etag))
        except (BlobNotFoundError, FileNotFoundError):
            return None, None
        except BlobChangedError as exc:
            raise WriteConflictError(f"{name} changed while it was read", wave=name) from exc
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        return (doc if isinstance(doc, dict) else {"state": "clear", "wave": 0}), etag

    def save_wave(self, model: str, version: str, doc: dict[str, Any], etag: str | None) -> str:
        """Write the wave document over ``etag`` (None: it must not exist yet); ``WriteConflictError`` when
        another evaluator changed it first."""
        condition: dict[str, Any] = {"if_match": etag} if etag else {"if_none_match": True}
        return self.blobs.write_blocks(
            self.container, f"waves/{model}/{version}.json", [_dumps(doc)], content_type=_JSON, **condition
        )

    # -- baselines and reports ------------------------------------------------------------------
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
            content_type=_JSON,
        )

    def report_name(self, model: str, version: str, key: str) -> str:
        """The blob name of a window's latest report."""
        return f"reports/{model}/{version}/{key}.json"

    def save_report(self, model: str, version: str, key: str, report: dict[str, Any]) -> str:
        """Store a report (replacing the window's previous one); returns its blob name."""
        name = self.report_name(model, version, key)
        self.blobs.write_bytes(
            self.container, name, json.dumps(report, indent=1, default=str).encode(), content_type=_JSON
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
