"""Fan-out of large files: one file split into parts, each scored by whichever instance takes its queue message,
committed once into the same output the single-instance path writes, byte for byte.

Flow: ``ScoringService.score`` claims the file as usual; above the route's ``fanout_bytes`` (CSV or Parquet in,
CSV out) it calls :meth:`FanOut.plan` instead of scoring. The plan goes to the ledger (``fanout:<file key>``: the
pinned model version, a counter of finished parts, the scan's checkpoint) and the file is cut into parts of about
``part_bytes``: Parquet by whole row groups, from its footer; CSV by byte ranges at record boundaries found by the
engine's own scanner in one pass from the start of the file (the quote state carried from block to block). The
scan queues each part on ``scorehook-parts`` as soon as the next one begins (parts are scored while it reads on),
moves its checkpoint on, and past ``scan_seconds`` queues its own continuation (a ``scan`` message), so a file of
any size is planned across invocations. The file's entry says ``fanned_out``.

:meth:`FanOut.score_part` (the ``score_part`` queue trigger) scores one part under a lease
(``part:<file key>#<index>``), stages its output blocks on the one output blob under ids unique to the attempt,
records the ids in its own entry and counts itself on the plan with eTag-conditional updates. The update that
completes the set (every part counted, and the scan finished) commits every part's blocks in part order, once,
under the single path's output conditions and lineage metadata, and finishes the file's entry ``succeeded`` with
the summed counts. A part with bad rows (an ``InputError``) becomes the file's one failure record naming the part
and its rows (1-based rows and lines of the file); a message the host poisoned (``scorehook-parts-poison``) too.
Nothing is committed then.

Files that are not split (scored whole): gzip, JSON lines, Parquet output (parts cannot be concatenated), a
file of one part, a CSV file whose records the scanner cannot cut before its first part ends (a record over
``max_record_bytes``, an unbalanced quote: the single path reports it with its row; later in the file, the rest
of the file becomes the last part, whose scoring reports it).

Example:
    >>> plan = plan_csv(blobs, "incoming", "big.csv", etag, part_bytes=32 << 20, limits=Limits())  # doctest: +SKIP
    >>> [(p.start, p.end, p.first_row, p.rows) for p in plan.parts][:2]                          # doctest: +SKIP
    [(0, 33554810, 1, 402113), (33554810, 67109452, 402114, 402087)]
"""

from __future__ import annotations

import collections
import contextlib
import copy
import io
import itertools
import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.engine import EngineStats, Limits, detect_format, score_file
from shared.errors import (
    AlreadyClaimedError,
    BlobChangedError,
    EmptyFileError,
    InputError,
    MissingValueError,
    TransientError,
    WriteConflictError,
)
from shared.events import BlobCreated, parse_blob_created
from shared.logs import bind, get_logger
from shared.names import normalize_etag
from shared.ports import BlobStore, BlockStore, LedgerRecord, MessageQueue
from shared.prefetch import ChunkStream, prefetched_ranges
from shared.routes import PARTS_QUEUE, POISON_QUEUE, Route, match_route

if TYPE_CHECKING:
    from shared.scoring import ScoringOutcome, ScoringService

__all__ = [
    "PARTS_QUEUE",
    "POISON_QUEUE",
    "FanOut",
    "FilePlan",
    "Part",
    "PartOutcome",
    "fans_out",
    "part_key",
    "plan_csv",
    "plan_key",
    "plan_parquet",
]

_BOM = b"\xef\xbb\xbf"
_RANGE = 4 << 20  # bytes per ranged download of a part
_AHEAD = 3  # ranged downloads in flight ahead of the parser
_log = get_logger("fanout")


def plan_key(key: str) -> str:
    """The ledger key of a file's plan and part counter.

    Example:
        >>> plan_key("blob:acc/incoming/a.csv@0x1")
        'fanout:blob:acc/incoming/a.csv@0x1'
    """
    return f"fanout:{key}"


def part_key(key: str, index: int) -> str:
    """The ledger key of one part (its lease, then its staged block ids).

    Example:
        >>> part_key("blob:acc/incoming/a.csv@0x1", 2)
        'part:blob:acc/incoming/a.csv@0x1#00002'
    """
    return f"part:{key}#{index:05d}"


@dataclass(frozen=True)
class Part:
    """One part of a file: bytes ``[start, end)`` (CSV; part 0 starts at 0 with the header, the others hold data
    records only) or ``row_groups`` (Parquet); its first data row and physical line in the file (1-based)."""

    index: int
    start: int
    end: int
    first_row: int
    rows: int
    first_line: int = 1
    row_groups: tuple[int, ...] = ()

    @property
    def last_row(self) -> int:
        return self.first_row + self.rows - 1

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "row_groups": list(self.row_groups)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Part:
        return cls(**{**raw, "row_groups": tuple(raw.get("row_groups") or ())})


@dataclass(frozen=True)
class FilePlan:
    """How a file is split: its format, size, parts, and (CSV) the byte range and line count of its header."""

    fmt: str
    size: int
    parts: tuple[Part, ...]
    header: tuple[int, int] = (0, 0)
    header_lines: int = 0


@dataclass
class PartOutcome:
    """What happened to one delivery of one part: ``scored`` (counted, not last), ``committed`` (the last part:
    the output is committed), ``failed`` (the file failed: this part, or another before it), ``superseded``,
    ``duplicate`` (done before), ``stale`` (no plan: the file was replayed or forgotten), ``ignored``."""

    status: str
    key: str
    part: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def fans_out(route: Route, fmt: str, size: int | None) -> bool:
    """Whether a file is split: the route has ``fanout_bytes``, the file is larger, CSV or Parquet in, CSV out.

    Example:
        >>> from shared.routes import Route
        >>> route = Route("r", "incoming", "models:/m/1", fanout_bytes=100)
        >>> fans_out(route, "csv", 101), fans_out(route, "csv.gz", 101), fans_out(route, "csv", 100)
        (True, False, False)
    """
    return bool(route.fanout_bytes and size and size > route.fanout_bytes and fmt in ("csv", "parquet")
                and route.output_format == "csv")  # fmt: skip


# -- planning ----------------------------------------------------------------------------------------------
class _Tap:
    """A byte stream that keeps its first three bytes (to see a UTF-8 byte order mark the scanner drops)."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.head = raw, b""

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if len(self.head) < 3:
            self.head += data[: 3 - len(self.head)]
        return data

    def readable(self) -> bool:
        return True


def _data_rows(block: bytes) -> int:
    """Data rows in a block of whole CSV records (as the parser counts them: empty lines are no rows)."""
    import numpy as np

    from shared.engine import _boundaries

    ends = _boundaries(block, 0)
    rows = len(ends)
    if rows:
        data = np.frombuffer(block, np.uint8)
        starts = np.concatenate(([0], ends[:-1] + 1))
        lengths = ends - starts
        ones = lengths == 1
        blank = (lengths == 0).copy()
        blank[ones] = data[starts[ones]] == 13  # a lone CR before the newline: a CRLF blank line
        rows -= int(np.count_nonzero(blank))
    tail = block[int(ends[-1]) + 1 :] if len(ends) else block
    return rows + (1 if tail not in (b"", b"\r") else 0)


def _first_end_from(block: bytes, at: int) -> int | None:
    """The end (exclusive) of the first record of ``block`` (whole records from its start) that ends at or after
    ``at``, or None when no record ends there (an unterminated last record).

    Example:
        >>> _first_end_from(b'a\\n"b\\nc"\\nd\\n', 3), _first_end_from(b"a\\nb", 3)
        (8, None)
    """
    import numpy as np

    from shared.engine import _boundaries

    ends = _boundaries(block, 0) + 1
    found = int(np.searchsorted(ends, max(at, 1)))  # the first end >= at (a part holds one record at least)
    return int(ends[found]) if found < len(ends) else None


def _scan_block(part_bytes: int) -> int:
    return max(256, min(4 << 20, part_bytes // 4))  # parts of a few blocks: no part much over its size


@dataclass(frozen=True)
class ScanState:
    """Where a CSV scan stands: the part it builds starts at ``offset`` (a record boundary), on data row ``row``
    and line ``line`` of the file, and will be part ``index``. A scan resumes from it (another invocation)."""

    offset: int = 0
    row: int = 1
    line: int = 1
    index: int = 0


class _NoSplit(Exception):
    """The file does not split (one part, or records the scanner cannot cut before a first part closed)."""


class CsvScan:
    """Cuts a CSV file into parts at record boundaries as it reads it, with the engine's scanner (a quoted field
    with a newline is never split), from the start or from a :class:`ScanState` (with the file's header range).
    Iterating yields each part once the next one begins, then the last (``finished`` is then true); it raises
    ``_NoSplit`` when the file is not split. Records the scanner cannot cut (a record over ``max_record_bytes``,
    an unbalanced quote) after the first part make the rest of the file the last part: its scoring reports them.
    """

    def __init__(
        self, blobs: BlobStore, container: str, name: str, etag: str | None, *, part_bytes: int, limits: Limits,
        size: int | None = None, state: ScanState | None = None, header: tuple[int, int] | None = None,
        check: Callable[[], None] = lambda: None,
    ) -> None:  # fmt: skip
        self.blobs, self.container, self.name, self.etag = blobs, container, name, etag
        self.part_bytes, self.limits, self.size, self.check = part_bytes, limits, size, check
        self.start = state if state is not None and state.index else ScanState()
        self.header: tuple[int, int] | None = header if self.start.index else None
        self.header_lines = 0
        self.finished = False

    def _stream(self) -> tuple[_Tap, int]:
        """The bytes to scan (a resumed scan: the header, then the file from its offset) and the file offset of
        the first byte after the header."""
        from shared.engine import read_ahead

        blobs: Any = self.blobs
        where = (self.container, self.name)
        if self.size is not None and isinstance(blobs, BlockStore):  # ranged downloads in parallel, ahead
            chunks: Iterator[bytes] = _ranges(blobs, *where, self.start.offset, self.size, self.etag)
        else:
            chunks = read_ahead(blobs.read_chunks(*where, _RANGE, self.etag))
        if self.start.index:
            assert self.header is not None and self.size is not None
            head = blobs.read_range(*where, self.header[0], self.header[1] - self.header[0], self.etag)
            chunks = itertools.chain([head], chunks)
        return _Tap(io.BufferedReader(ChunkStream(chunks), buffer_size=1 << 20)), self.start.offset

    def state(self) -> ScanState:
        """Where the scan stands now (after the last part it yielded)."""
        return self._state

    def __iter__(self) -> Iterator[Part]:
        from shared.engine import _first_boundary, _RecordTooLong, _Scanner, _Unbalanced

        tap, resumed_at = self._stream()
        scanner = _Scanner(tap, quoting=True, block_bytes=_scan_block(self.part_bytes),
                           max_record_bytes=self.limits.max_record_bytes)  # fmt: skip
        s = self._state = self.start
        offset, row, line, rows = s.offset, s.row, s.line, 0
        try:
            blocks = iter(scanner)
            first = next(blocks, None)
            block = first[0] if first is not None else b""
            end = _first_boundary(block, 0)
            if end < 0:
                raise _NoSplit("no header line, or nothing after it")
            header = block[: end + 1]
            self.header_lines = header.count(b"\n")
            if not s.index:
                bom = 3 if tap.head == _BOM else 0
                self.header = (bom, bom + len(header))
                offset, line = bom + len(header), 1 + self.header_lines  # where the first data record is
            else:
                offset = resumed_at
            for data in itertools.chain([block[end + 1 :]], (b for b, _ in blocks)):
                if not data:
                    continue
                self.check()
                # a part ends at the first record boundary at or after its start + part_bytes: its end depends on
                # the file and its start only (never on where a scan began), so every scan cuts the same parts
                while offset + len(data) >= s.offset + self.part_bytes:
                    cut = _first_end_from(data, s.offset + self.part_bytes - offset)
                    if cut is None:
                        break  # the target is in the file's last, unterminated record
                    piece, data = data[:cut], data[cut:]
                    count = _data_rows(piece)
                    rows, row, line, offset = rows + count, row + count, line + piece.count(b"\n"), offset + cut
                    part = Part(s.index, s.offset, offset, s.row, rows, s.line)
                    s = self._state = ScanState(offset, row, line, s.index + 1)
                    rows = 0
                    yield part
                count = _data_rows(data) if data else 0
                rows, row, line, offset = rows + count, row + count, line + data.count(b"\n"), offset + len(data)
        except (_RecordTooLong, _Unbalanced, InputError) as exc:
            if not s.index:
                raise _NoSplit(str(exc)) from exc
        if not s.index:
            raise _NoSplit("one part")
        total = self.size if self.size is not None and self.size >= offset else offset  # trailing blanks
        self.finished = True
        yield Part(s.index, s.offset, total, s.row, rows, s.line)


def plan_csv(
    blobs: BlobStore, container: str, name: str, etag: str | None, *, part_bytes: int, limits: Limits,
    size: int | None = None,
) -> FilePlan | None:  # fmt: skip
    """All the parts of a CSV file (:class:`CsvScan` in one go); ``None`` when it is not split.

    Example:
        >>> from shared.testing import FakeBlobStore
        >>> data = b"id,x\\n" + b"".join(b'%03d,"a\\nb"\\n' % i for i in range(100))  # two lines per record
        >>> blobs = FakeBlobStore(); _ = blobs.write_bytes("in", "a.csv", data)
        >>> plan = plan_csv(blobs, "in", "a.csv", None, part_bytes=400, limits=Limits())
        >>> [(p.start, p.end, p.first_row, p.first_line) for p in plan.parts]
        [(0, 405, 1, 1), (405, 805, 41, 82), (805, 1005, 81, 162)]
    """
    scan = CsvScan(blobs, container, name, etag, part_bytes=part_bytes, limits=limits, size=size)
    try:
        parts = tuple(scan)
    except _NoSplit:
        return None
    assert scan.header is not None
    return FilePlan("csv", parts[-1].end, parts, scan.header, scan.header_lines)


class RangedFile(io.RawIOBase):
    """A seekable read-only file over a blob, one ranged download per read (Parquet footers and row groups).

    Example:
        >>> from shared.testing import FakeBlobStore
        >>> blobs = FakeBlobStore(); _ = blobs.write_bytes("in", "a.bin", b"0123456789")
        >>> f = RangedFile(blobs, "in", "a.bin", 10); _ = f.seek(-3, io.SEEK_END); f.read()
        b'789'
    """

    def __init__(self, blobs: Any, container: str, name: str, size: int, etag: str | None = None) -> None:
        self.blobs, self.container, self.name, self.size, self.etag = blobs, container, name, size, etag
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        length = min(len(buffer), self.size - self.position)
        if length <= 0:
            return 0
        data = self.blobs.read_range(self.container, self.name, self.position, length, self.etag)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def plan_parquet(
    blobs: Any, container: str, name: str, etag: str | None, *, part_bytes: int, size: int
) -> FilePlan | None:
    """Group a Parquet file's row groups into parts of at least ``part_bytes`` (compressed), reading only its
    footer; ``None`` for one part or an unreadable footer (the single path reports it)."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(io.BufferedReader(RangedFile(blobs, container, name, size, etag),
                                                    buffer_size=256 << 10)).metadata  # fmt: skip
    except Exception:  # any unreadable footer: the single path says why, with the engine's words
        return None
    parts: list[Part] = []
    groups: list[int] = []
    nbytes = rows = start = 0
    first_row = 1
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        if groups and nbytes >= part_bytes:
            parts.append(Part(len(parts), start, start + nbytes, first_row, rows, 1, tuple(groups)))
            first_row, start, groups, nbytes, rows = first_row + rows, start + nbytes, [], 0, 0
        if not groups and group.num_columns:
            column = group.column(0)
            start = column.dictionary_page_offset or column.data_page_offset
        groups.append(index)
        nbytes += sum(group.column(c).total_compressed_size for c in range(group.num_columns))
        rows += group.num_rows
    if groups:
        parts.append(Part(len(parts), start, start + nbytes, first_row, rows, 1, tuple(groups)))
    if len(parts) < 2:
        return None
    return FilePlan("parquet", size, tuple(parts))


# -- reading a part ---------------------------------------------------------------------------------------
def _ranges(blobs: Any, container: str, name: str, start: int, end: int, etag: str | None) -> Iterator[bytes]:
    """The bytes ``[start, end)`` of a blob in ranged downloads, ``_AHEAD`` of them in flight (bounded memory)."""
    return prefetched_ranges(lambda offset, length: blobs.read_range(container, name, offset, length, etag), end,
                             start, range_bytes=_RANGE, in_flight=_AHEAD, where=f"{container}/{name}")  # fmt: skip


# -- errors of a part, located in the file -----------------------------------------------------------------
_ROW = re.compile(r"\b(data rows? )(\d+)")
_LINE = re.compile(r"\b(line )(\d+)")


def _named(part: Part, parts: int | None) -> str:
    """``part 3 of 12 (data rows 2001-3000)`` (``of N`` once the scan has counted the parts)."""
    rows = f"data rows {part.first_row}-{part.last_row}" if part.rows else "no data rows"
    return f"part {part.index + 1}{f' of {parts}' if parts else ''} ({rows})"


def _located(exc: InputError, part: Part, parts: int | None, header_lines: int, fmt: str) -> InputError:
    """The error of a part with its rows and lines made the file's (1-based), naming the part and its rows."""
    row_shift = part.first_row - 1
    line_shift = part.first_line - 1 - header_lines if part.index and fmt == "csv" else 0

    def line(value: int) -> int:
        return value + line_shift if value > header_lines else value  # a header line is the file's own

    located = copy.copy(exc)
    details = dict(exc.details)
    for name in ("row", "rows_before"):
        if isinstance(details.get(name), int):
            details[name] += row_shift
    if isinstance(details.get("line"), int):
        details["line"] = line(details["line"])
    message = _ROW.sub(lambda m: f"{m[1]}{int(m[2]) + row_shift}", exc.message)
    message = _LINE.sub(lambda m: f"{m[1]}{line(int(m[2]))}", message)
    located.message = f"{_named(part, parts)}: {message}"
    located.args = (located.message,)
    located.details = {**details, "part": part.index + 1, "parts": parts, "part_first_row": part.first_row,
                       "part_last_row": part.last_row, "part_bytes": [part.start, part.end]}  # fmt: skip
    if part.row_groups:
        located.details["part_row_groups"] = list(part.row_groups)
    return located


def _checked(blocks: Iterator[bytes], check: Callable[[], None]) -> Iterator[bytes]:
    for block in blocks:
        check()
        yield block
    check()


def _mask(details: Mapping[str, Any]) -> int:
    return int(details.get("done") or "0", 16)


class FanOut:
    """Plans, scores and commits the parts of large files, on the scoring service's ports and model cache.

    Example:
        >>> fanout = FanOut(scoring_service, StorageQueue.from_settings(settings, PARTS_QUEUE))  # doctest: +SKIP
        >>> fanout.score_part(message_text).status                                            # doctest: +SKIP
        'committed'
    """

    def __init__(self, scoring: ScoringService, queue: MessageQueue | None) -> None:
        self.scoring, self.queue = scoring, queue
        self.blobs: Any = scoring.blobs  # a BlobStore that is also a BlockStore
        self.ledger = scoring.ledger
        self.settings = scoring.settings
        # how long one invocation scans a CSV file before it queues the scan's continuation: half the host's
        # functionTimeout (the parts it queued are scored meanwhile), at most 5 minutes
        timeout = scoring.timeout_seconds
        self.scan_seconds = min(timeout / 2, 300.0) if timeout else 300.0
        # score_blob answers an Event Grid delivery, which is retried when it takes over 30 s: its own scan
        # stops sooner and a queued continuation goes on
        self.plan_scan_seconds = 20.0

    def enabled(self) -> bool:
        """Whether files can be split here: a parts queue, and blob storage that stages blocks."""
        return self.queue is not None and isinstance(self.blobs, BlockStore)

    # -- the planner (inside score_blob) ------------------------------------------------------------
    def plan(self, event: BlobCreated, route: Route, key: str, lease: Any, output: str) -> ScoringOutcome | None:
        """Split the claimed file into parts and queue them as they are found; ``None`` when it is scored whole
        (see :func:`fans_out`, and files that do not split). A CSV scan that runs out of its time
        (``scan_seconds``) queues its own continuation: the file's record says ``fanned_out`` meanwhile."""
        from shared.scoring import ScoringOutcome

        started = time.perf_counter()
        try:
            fmt = detect_format(event.blob_name, route.input_format)
        except InputError:
            return None  # the single path says why
        if not fans_out(route, fmt, event.content_length):
            return None
        info = self.blobs.properties(event.container, event.blob_name)  # its size, never the event's word
        limit = min(route.max_file_bytes or self.settings.max_file_bytes, self.settings.max_file_bytes)
        if normalize_etag(info.etag) != normalize_etag(event.etag) or info.size > limit:
            return None  # changed since the event, or too large: the single path says so
        size = info.size
        version = self.scoring.models.resolve(route.model)  # every part scores with this version
        details = {
            "event": event.as_eventgrid(), "route": route.name,
            "model": version.uri if route.model.startswith("models:/") else route.model,
            "model_name": version.name, "model_version": version.version, "format": fmt, "bytes": size,
            "output": output, "output_container": route.output_container, "planned_at": datetime.now(UTC).isoformat(),
        }  # fmt: skip
        if fmt == "parquet":
            parquet = plan_parquet(self.blobs, event.container, event.blob_name, event.etag,
                                   part_bytes=route.part_bytes, size=size)  # fmt: skip
            if parquet is None:
                _log.info("file scored whole: it does not split", extra={"format": fmt, "bytes": size})
                return None
            plan = self._write_plan(key, details)
            for part in parquet.parts:
                self._send_part(plan, part)
            plan = self._update_plan(key, lambda d: {"parts": len(parquet.parts), "scanned": True})
        else:
            plan = self._write_plan(key, details)
            # a plan found running: an earlier planner died; its scan resumes (same cuts), unless it had finished
            budget = min(self.plan_scan_seconds, self.scan_seconds)
            scanned = plan if plan.details.get("scanned") else self._scan(plan, route, lease.check, budget)
            if scanned is None:  # not split after all: nothing was queued
                self.ledger.forget(plan_key(key))
                _log.info("file scored whole: it does not split", extra={"format": fmt, "bytes": size})
                return None
            plan = scanned
        lease.check()
        plan_ms = round((time.perf_counter() - started) * 1000, 1)
        location = f"{route.output_container}/{output}"
        parts = plan.details.get("parts")
        finished = {"parts": parts, "parts_queued": int(plan.details["scan"]["index"]) if parts is None else parts,
                    "plan_ms": plan_ms, "output": location, "model_name": version.name,
                    "model_version": version.version, "fanned_out_at": datetime.now(UTC).isoformat()}  # fmt: skip
        self.ledger.finish(lease.stop(), "fanned_out", finished)
        _log.info("file fanned out", extra={"parts": parts, "parts_queued": finished["parts_queued"], "bytes": size,
                                            "plan_ms": plan_ms, "part_bytes": route.part_bytes})  # fmt: skip
        if parts is not None and bin(_mask(plan.details)).count("1") == parts:  # every part done meanwhile
            self._send_commit(plan)
        return ScoringOutcome("fanned_out", key, output=location, model=version.uri, details=finished)

    def _write_plan(self, key: str, details: dict[str, Any]) -> LedgerRecord:
        """The plan entry with an empty counter and a scan at the start; a running one (a planner that crashed)
        is kept and resumed, a finished one (a replay) is forgotten with its parts' entries."""
        from shared.scoring import _OWNER

        existing = self.ledger.get(plan_key(key))
        if existing is not None and existing.status == "running":
            return existing
        if existing is not None:
            scan = existing.details.get("scan") or {}
            for index in range(max(int(existing.details.get("parts") or 0), int(scan.get("index", 0)) + 1)):
                self.ledger.forget(part_key(key, index))
            self.ledger.forget(plan_key(key))
        claim = self.ledger.claim(plan_key(key), _OWNER, self.settings.claim_ttl_seconds, details)
        if claim is None:
            raise AlreadyClaimedError(f"{plan_key(key)} is being written by another planner", key=key)
        return self.ledger.finish(claim, "running", {
            "plan_id": uuid.uuid4().hex, "parts": None, "scanned": False, "scan": asdict(ScanState()),
            "done": "0", "rows_read": 0, "rows_scored": 0, "rows_rejected": 0,
        })  # fmt: skip

    def _update_plan(self, key: str, change: Callable[[Mapping[str, Any]], Mapping[str, Any] | None]) -> LedgerRecord:
        """Apply ``change(details)`` (``None``: nothing to change) to the running plan with eTag-conditional
        updates, reading again when another writer (a part's count, a scan's checkpoint) came first."""
        for attempt in range(100):
            plan = self.ledger.get(plan_key(key))
            if plan is None or plan.status != "running":
                raise TransientError(f"{plan_key(key)} is not running any more", reason="write_conflict")
            update = change(plan.details)
            if update is None:
                return plan
            try:
                return self.ledger.finish(plan, "running", update)
            except AlreadyClaimedError:
                time.sleep(random.uniform(0, 0.02 * min(attempt + 1, 10)))
        raise TransientError(f"{plan_key(key)}: the plan stayed contended", reason="write_conflict")

    def _send_part(self, plan: LedgerRecord, part: Part, header: tuple[int, int] | None = None,
                   header_lines: int = 0) -> None:  # fmt: skip
        assert self.queue is not None
        body = {"key": plan.key.removeprefix("fanout:"), "plan_id": plan.details["plan_id"], "part": part.as_dict()}
        if header is not None:
            body |= {"header": list(header), "header_lines": header_lines}
        self.queue.send(json.dumps(body))
        # the queue's own insertion time has whole seconds only: this line times message -> part start
        _log.info("part queued", extra={"part": part.index + 1, "bytes": part.end - part.start, "rows": part.rows})

    def _send_commit(self, plan: LedgerRecord) -> None:
        """Every part was counted before the scan knew how many there are: a message commits (and is retried
        like a part's until it has)."""
        assert self.queue is not None
        key = plan.key.removeprefix("fanout:")
        self.queue.send(json.dumps({"kind": "commit", "key": key, "plan_id": plan.details["plan_id"]}))

    def _scan(self, plan: LedgerRecord, route: Route, check: Callable[[], None],
              budget: float | None = None) -> LedgerRecord | None:  # fmt: skip
        """Scan a CSV file from the plan's checkpoint, queueing each part as it is found and moving the checkpoint
        on; past ``scan_seconds``, queue the scan's continuation and stop. ``None``: the file does not split."""
        key = plan.key.removeprefix("fanout:")
        event, _ = self._event_route(plan)
        state = ScanState(**plan.details["scan"])
        header = plan.details.get("header")
        scan = CsvScan(self.blobs, event.container, event.blob_name, event.etag, part_bytes=route.part_bytes,
                       limits=Limits.from_settings(self.settings, route), size=int(plan.details["bytes"]), state=state,
                       header=tuple(header) if header else None, check=check)  # fmt: skip
        stop_at = time.monotonic() + (self.scan_seconds if budget is None else budget)
        try:
            for part in scan:
                assert scan.header is not None
                self._send_part(plan, part, scan.header, scan.header_lines)
                after, last = scan.state(), scan.finished

                def checkpoint(details: Mapping[str, Any], after: ScanState = after, last: bool = last,
                               part: Part = part) -> Mapping[str, Any] | None:  # fmt: skip
                    if int(details["scan"]["index"]) > part.index:
                        return None  # a twin scan got further
                    moved: dict[str, Any] = {"header": list(scan.header or ()), "header_lines": scan.header_lines,
                                             "scan": asdict(after) if not last else {**asdict(after), "index": part.index + 1}}  # fmt: skip
                    if last:
                        moved |= {"parts": part.index + 1, "scanned": True}
                    return moved

                plan = self._update_plan(key, checkpoint)
                if last:
                    break
                if time.monotonic() > stop_at:
                    assert self.queue is not None
                    self.queue.send(json.dumps({"kind": "scan", "key": key, "plan_id": plan.details["plan_id"],
                                                "offset": after.offset}))  # fmt: skip
                    _log.info("scan paused: its continuation is queued",
                              extra={"offset": after.offset, "parts_queued": after.index})  # fmt: skip
                    return plan
        except _NoSplit:
            return None
        return plan

    def _continue_scan(self, key: str, plan_id: str, offset: int) -> PartOutcome:
        """Resume a paused scan from its checkpoint (a ``scan`` message), under a lease of its own."""
        from shared.scoring import _OWNER, _Lease

        plan = self.ledger.get(plan_key(key))
        if (plan is None or plan.status != "running" or plan.details.get("plan_id") != plan_id
                or plan.details.get("scanned") or int(plan.details["scan"]["offset"]) != offset):  # fmt: skip
            return PartOutcome("duplicate", key, details={"status": plan.status if plan else "stale"})
        lease_key = f"scan:{key}#{plan_id}@{offset}"
        claim = self.ledger.claim(lease_key, _OWNER, self.settings.claim_ttl_seconds, {"key": key})
        if claim is None:
            existing = self.ledger.get(lease_key)
            if existing is not None and existing.status == "claimed":
                raise AlreadyClaimedError(f"{lease_key} is held by {existing.owner}", key=lease_key)
            return PartOutcome("duplicate", key)
        deadline = time.monotonic() + self.scoring.timeout_seconds if self.scoring.timeout_seconds else None
        lease = _Lease(self.ledger, claim, self.settings.claim_ttl_seconds, deadline).start()
        try:
            _, route = self._event_route(plan)
            scanned = self._scan(plan, route, lease.check)
        except BlobChangedError as exc:
            self.ledger.finish(lease.stop(), "superseded", {"why": exc.message})
            return self._supersede(key, None, exc.message)
        except BaseException:
            with contextlib.suppress(Exception):
                self.ledger.release(lease.stop())
            raise
        self.ledger.finish(lease.stop(), "succeeded", {})
        if scanned is None:  # cannot happen after a first part; kept safe: the parts already queued decide
            return PartOutcome("scanned", key)
        parts = scanned.details.get("parts")
        if parts is not None and bin(_mask(scanned.details)).count("1") == parts:
            self._send_commit(scanned)  # every part was done before the scan ended
        return PartOutcome("scanned", key, details={"parts_queued": int(scanned.details["scan"]["index"])})

    # -- one part (the score_part queue trigger) ---------------------------------------------------
    def score_part(self, text: str, dequeue_count: int = 1) -> PartOutcome:
        """Score one part a queue message names, at most once in effect; the last part commits the output.
        A ``scan`` message resumes a paused scan instead.

        A bad part records the file's failure and returns; a transient error raises (the message comes back).
        """
        from shared.scoring import _OWNER, _Lease

        try:
            message = json.loads(text)
            key, plan_id = str(message["key"]), str(message["plan_id"])
            if message.get("kind") == "scan":
                with bind(blob=_blob_of(key)):
                    return self._continue_scan(key, plan_id, int(message["offset"]))
            if message.get("kind") == "commit":
                with bind(blob=_blob_of(key)):
                    plan = self.ledger.get(plan_key(key))
                    if plan is None or plan.status != "running" or plan.details.get("plan_id") != plan_id:
                        return PartOutcome("duplicate", key)
                    return self._commit(key, plan)
            part = Part.from_dict(message["part"])
        except (ValueError, KeyError, TypeError) as exc:
            _log.error("part message ignored: not a part of a plan", extra={"error": str(exc), "body": text[:200]})
            return PartOutcome("ignored", "")
        with bind(blob=_blob_of(key), part=part.index + 1, dequeue_count=dequeue_count):
            plan = self.ledger.get(plan_key(key))
            if plan is None or plan.status != "running" or plan.details.get("plan_id") != plan_id:
                status = plan.status if plan is not None and plan.details.get("plan_id") == plan_id else "stale"
                _log.info("part delivery acknowledged: its file is done", extra={"status": status})
                return PartOutcome("stale" if status == "stale" else "duplicate", key, part.index, {"status": status})
            header = message.get("header")
            if header is not None:  # the plan may not hold it yet: the scan queues a part before its checkpoint
                plan = replace(plan, details={**plan.details, "header": header,
                                              "header_lines": int(message.get("header_lines") or 0)})  # fmt: skip
            parts = plan.details.get("parts")
            pkey = part_key(key, part.index)
            claim = self.ledger.claim(pkey, _OWNER, self.settings.claim_ttl_seconds, {"key": key, "part": part.index})
            if claim is None:
                existing = self.ledger.get(pkey)
                if existing is not None and existing.status == "claimed":
                    raise AlreadyClaimedError(f"{pkey} is being scored by {existing.owner}", key=pkey,
                                              owner=existing.owner)  # fmt: skip
                if existing is not None and existing.status == "succeeded":
                    return self._advance(key, part, existing)  # the counter may not have moved, or the commit
                if existing is not None and existing.status == "failed":
                    return self._fail_file(key, part, existing.details, plan)
                return PartOutcome("duplicate", key, part.index)
            deadline = time.monotonic() + self.scoring.timeout_seconds if self.scoring.timeout_seconds else None
            lease = _Lease(self.ledger, claim, self.settings.claim_ttl_seconds, deadline).start()
            try:
                done = self._score(key, part, plan, lease)
            except BlobChangedError as exc:
                self.ledger.finish(lease.stop(), "superseded", {"why": exc.message})
                return self._supersede(key, part, exc.message)
            except InputError as exc:
                return self._poison(key, part, parts, plan, lease, exc)
            except Exception as exc:
                claim = lease.stop()
                _log.warning("part attempt failed, the message will come back",
                             extra={"error": str(exc), "error_type": type(exc).__name__,
                                    "reason": getattr(exc, "reason", "unexpected_error")})  # fmt: skip
                if lease.lost is None:
                    with contextlib.suppress(Exception):
                        self.ledger.release(claim)
                raise
            except BaseException:
                with contextlib.suppress(Exception):
                    self.ledger.release(lease.stop())
                raise
            finally:
                lease.stop()
            return self._advance(key, part, done)

    def _event_route(self, plan: LedgerRecord) -> tuple[BlobCreated, Route]:
        event = parse_blob_created(dict(plan.details["event"]))
        return event, match_route(self.scoring.routes, event.account, event.container, event.blob_name)

    def _source(self, event: BlobCreated, part: Part, plan: LedgerRecord) -> Callable[[], Any]:

        def open_stream() -> Any:
            if plan.details["format"] == "parquet":
                size = int(plan.details["bytes"])
                # buffered: the small reads of a footer and of adjacent column chunks share a download
                return io.BufferedReader(RangedFile(self.blobs, event.container, event.blob_name, size, event.etag),
                                         buffer_size=1 << 20)  # fmt: skip
            chunks: Iterator[bytes] = _ranges(self.blobs, event.container, event.blob_name, part.start, part.end,
                                              event.etag)  # fmt: skip
            if part.index:
                start, end = plan.details["header"]
                header = self.blobs.read_range(event.container, event.blob_name, start, end - start, event.etag)
                chunks = itertools.chain([header], chunks)
            return io.BufferedReader(ChunkStream(chunks), buffer_size=1 << 20)

        return open_stream

    def _score(self, key: str, part: Part, plan: LedgerRecord, lease: Any) -> LedgerRecord:
        """Score one part and stage its output blocks; the part's entry records their ids and counts."""
        scoring = self.scoring
        event, route = self._event_route(plan)
        started = time.perf_counter()
        version, model = scoring.models.get(str(plan.details["model"]))
        with bind(model=version.name, model_version=version.version, route=route.name):
            part_id = f"{key}#part-{part.index:05d}"
            observer = scoring._drift_observer(version, model, part_id)
            stats = EngineStats()
            blocks = score_file(
                self._source(event, part, plan), fmt=str(plan.details["format"]), model=model,
                model_version=version.version, key_columns=route.key_columns, output_format="csv",
                batch_rows=route.batch_rows, on_missing=route.on_missing,
                limits=Limits.from_settings(self.settings, route), label_column=route.label_column, stats=stats,
                observe=observer, include_header=False, row_groups=part.row_groups or None,
            )  # fmt: skip
            output = str(plan.details["output"])
            try:
                ids = self.blobs.stage_blocks(route.output_container, output, _checked(blocks, lease.check))
            except EmptyFileError as exc:
                if exc.details.get("line") or stats.rows_read:
                    raise
                ids = []  # a part of blank lines only: nothing to add (the file as a whole is checked at commit)
            except MissingValueError:
                if not (stats.rows_read and stats.rows_rejected == stats.rows_read):
                    raise
                ids = []  # every row of this part rejected: the file fails only if every row of it is
            finally:
                if observer is not None:
                    observer.stop()
            # the header goes in front of the first part that has rows (part 0's may all be rejected)
            header = self.blobs.stage_blocks(route.output_container, output, [stats.output_header])
            details: dict[str, Any] = {
                "blocks": ids, "header_block": header[0] if header and stats.rows_scored else None,
                "rows_read": stats.rows_read, "rows_scored": stats.rows_scored, "rows_rejected": stats.rows_rejected, "bytes_out": stats.bytes_out,
                "read_ms": round(stats.read_seconds * 1000, 1), "predict_ms": round(stats.predict_seconds * 1000, 1),
                "write_ms": round(stats.write_seconds * 1000, 1), "model_name": version.name,
                "model_version": version.version,
            }  # fmt: skip
            if observer is not None and stats.rows_read:
                details |= scoring._record_drift(version, event, observer, part_id)
            details["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
            record = self.ledger.finish(lease.stop(), "succeeded", details)
            _log.info("part scored", extra={"rows_read": stats.rows_read, "rows_scored": stats.rows_scored,
                                            "blocks": len(ids), "elapsed_ms": details["elapsed_ms"]})  # fmt: skip
            return record

    # -- the counter and the commit ------------------------------------------------------------------
    def _advance(self, key: str, part: Part, done: LedgerRecord) -> PartOutcome:
        """Count a finished part on the plan with eTag-conditional updates; the one that completes the set
        (or a redelivery of a counted part once all are counted) commits."""
        for attempt in range(100):
            plan = self.ledger.get(plan_key(key))
            if plan is None or plan.status != "running":
                return PartOutcome("duplicate", key, part.index, {"status": plan.status if plan else "stale"})
            parts, mask = plan.details.get("parts"), _mask(plan.details)
            if mask >> part.index & 1:
                break  # counted by an earlier delivery of this part
            mask |= 1 << part.index
            totals = {name: int(plan.details.get(name, 0)) + int(done.details.get(name, 0))
                      for name in ("rows_read", "rows_scored", "rows_rejected")}  # fmt: skip
            try:
                plan = self.ledger.finish(plan, "running", {"done": f"{mask:x}", **totals})
                break
            except AlreadyClaimedError:  # another part counted first: read again
                time.sleep(random.uniform(0, 0.02 * min(attempt + 1, 10)))
        else:
            raise TransientError(f"{plan_key(key)}: the part counter stayed contended", reason="write_conflict")
        counted = bin(mask).count("1")
        outcome = PartOutcome("scored", key, part.index, {"counted": counted, "parts": parts,
                                                          **_drift_fields(done.details)})  # fmt: skip
        if parts is None or counted < int(parts):
            return outcome  # not the last part, or the scan has not found them all yet
        committed = self._commit(key, plan)
        committed.details |= outcome.details
        return committed

    def _commit(self, key: str, plan: LedgerRecord) -> PartOutcome:
        """Commit every part's blocks in part order, once, as the single path commits; finish the file."""
        from shared.scoring import _CONTENT_TYPE, _Superseded, lineage_url

        scoring = self.scoring
        file = self.ledger.get(key)
        if file is None:
            return PartOutcome("stale", key)
        if file.status == "claimed":
            raise TransientError(f"{key}: the planner has not recorded the plan yet", reason="already_claimed")
        if file.status != "fanned_out":
            with contextlib.suppress(AlreadyClaimedError):
                self.ledger.finish(plan, file.status, {})
            return PartOutcome("duplicate", key, details={"status": file.status})
        event, route = self._event_route(plan)
        parts = int(plan.details["parts"])
        counts = {name: int(plan.details.get(name, 0)) for name in ("rows_read", "rows_scored", "rows_rejected")}
        with bind(blob=f"{event.container}/{event.blob_name}", etag=event.etag, model=plan.details["model_name"],
                  model_version=plan.details["model_version"]):  # fmt: skip
            if counts["rows_read"] == 0 or counts["rows_scored"] == 0:
                error: InputError = (
                    EmptyFileError("the file has no data rows (a header only, or blank lines)")
                    if counts["rows_read"] == 0
                    else MissingValueError(f"all {counts['rows_read']} rows were rejected for missing model inputs "
                                           "(on_missing: reject_rows)")
                )
                return self._record_file_failure(key, plan, event, error, None)
            ids: list[str] = []
            timings: dict[str, float] = collections.defaultdict(float)
            for index in range(parts):
                record = self.ledger.get(part_key(key, index))
                if record is None or record.status != "succeeded":
                    raise TransientError(f"{part_key(key, index)} is counted but not recorded", reason="write_conflict")
                if not ids and record.details.get("header_block"):
                    ids.append(str(record.details["header_block"]))  # the header, once, before the first rows
                ids.extend(record.details.get("blocks") or [])
                for name in ("read_ms", "predict_ms", "write_ms"):
                    timings[name] += float(record.details.get(name, 0))
            output = str(plan.details["output"])
            try:
                condition = scoring._output_condition(route, output, event)
            except _Superseded as why:
                return self._supersede(key, None, str(why))
            planned = datetime.fromisoformat(str(plan.details["planned_at"]))
            metadata = {
                "input_url": lineage_url(event.url), "input_etag": event.etag.strip('"'),
                "input_sequencer": event.sequencer or "", "event_id": event.id, "route": route.name,
                "model_name": str(plan.details["model_name"]), "model_version": str(plan.details["model_version"]),
                "model_flavor": self._flavor(str(plan.details["model"])),
                **{name: str(value) for name, value in counts.items()},
                **{name: str(round(value, 1)) for name, value in timings.items()},
                "scoring_ms": str(round((datetime.now(UTC) - planned).total_seconds() * 1000, 1)),
                "scored_at": datetime.now(UTC).isoformat(), "parts": str(parts),
            }  # fmt: skip
            if "committed" not in condition:
                try:
                    self.blobs.commit_blocks(route.output_container, output, ids, metadata=metadata,
                                             content_type=_CONTENT_TYPE["csv"], **condition)  # fmt: skip
                except WriteConflictError:
                    try:
                        if "committed" not in scoring._output_condition(route, output, event):
                            raise
                    except _Superseded as why:  # a newer version's output landed meanwhile
                        return self._supersede(key, None, str(why))
                    _log.info("the output was committed by another delivery of the last part")
            location = f"{route.output_container}/{output}"
            details = {**metadata, "output": location, **counts, "parts": parts,
                       "committed_at": datetime.now(UTC).isoformat()}  # fmt: skip
            if route.eventhub_output and scoring.collector is not None:  # after the commit, as the single path
                version = scoring.models.get(str(plan.details["model"]))[0]
                details |= scoring.collector.send(route, key, event.blob_path, event.etag, location, version)
            details["elapsed_ms"] = round((datetime.now(UTC) - planned).total_seconds() * 1000, 1)
            try:
                self.ledger.finish(file, "succeeded", details)
            except AlreadyClaimedError:
                return PartOutcome("duplicate", key, details={"status": "succeeded"})
            with contextlib.suppress(AlreadyClaimedError):
                self.ledger.finish(plan, "succeeded", {"committed_at": details["committed_at"]})
            scoring._publish("Scorehook.Scoring.Completed", event, details)
            _log.info("file scored", extra={"output": location, "parts": parts, **counts,
                                            "elapsed_ms": details["elapsed_ms"]})  # fmt: skip
            return PartOutcome("committed", key, details=details)

    def _flavor(self, reference: str) -> str:
        try:
            return str(getattr(self.scoring.models.get(reference)[1], "flavor", "unknown"))
        except Exception:  # lineage detail only
            return "unknown"

    # -- failures ------------------------------------------------------------------------------------
    def _poison(self, key: str, part: Part, parts: int | None, plan: LedgerRecord, lease: Any,
                exc: InputError) -> PartOutcome:  # fmt: skip
        """A part with bad rows: the file's one failure record names the part and its rows; nothing committed."""
        located = _located(exc, part, parts, int(plan.details.get("header_lines") or 0), str(plan.details["format"]))
        try:
            outcome = self._fail_file(key, part, {}, plan, located)
        except Exception:
            with contextlib.suppress(Exception):
                self.ledger.release(lease.stop())
            raise
        with contextlib.suppress(AlreadyClaimedError):
            self.ledger.finish(lease.stop(), "failed", {"reason": located.reason, "message": located.message,
                                                        "failure": outcome.details.get("failure")})  # fmt: skip
        return outcome

    def _fail_file(self, key: str, part: Part, recorded: Mapping[str, Any], plan: LedgerRecord,
                   error: InputError | None = None) -> PartOutcome:  # fmt: skip
        """Finish the file failed (once: the first failure recorded wins), from ``error`` or a part's entry."""
        event, _ = self._event_route(plan)
        if error is None:
            error = InputError(str(recorded.get("message") or "a part failed"),
                               reason=str(recorded.get("reason") or "bad_input"))  # fmt: skip
        return self._record_file_failure(key, plan, event, error, part)

    def _record_file_failure(self, key: str, plan: LedgerRecord, event: BlobCreated, error: InputError,
                             part: Part | None) -> PartOutcome:  # fmt: skip
        scoring = self.scoring
        with bind(blob=f"{event.container}/{event.blob_name}", etag=event.etag):
            file = self.ledger.get(key)
            if file is not None and file.status == "claimed":
                raise TransientError(f"{key}: the planner has not recorded the plan yet", reason="already_claimed")
            current = self.ledger.get(plan_key(key))
            if current is None or current.status != "running" or file is None or file.status != "fanned_out":
                status = current.status if current is not None else "stale"
                return PartOutcome("failed" if status == "failed" else "duplicate", key, part.index if part else None,
                                   {"status": status})  # fmt: skip
            planned = datetime.fromisoformat(str(plan.details["planned_at"]))
            elapsed = round((datetime.now(UTC) - planned).total_seconds() * 1000, 1)
            record = scoring._failure_record(event, error, elapsed)
            location = scoring._write_failure(event, record)  # raises: the message comes back to write it
            failed = {"reason": error.reason, "message": error.message, "failure": location,
                      "failed_at": record["failed_at"], "elapsed_ms": elapsed}  # fmt: skip
            if part is not None:
                failed["part"] = part.index + 1
            try:
                self.ledger.finish(current, "failed", failed)
            except AlreadyClaimedError:  # the counter moved meanwhile: the next delivery decides again
                raise TransientError(f"{plan_key(key)} changed while the failure was recorded",
                                     reason="write_conflict") from None  # fmt: skip
            with contextlib.suppress(AlreadyClaimedError):
                self.ledger.finish(file, "failed", failed)
            scoring._publish("Scorehook.Scoring.Failed", event, failed)
            _log.warning("file rejected", extra={**error.log_fields(), "failure": location})
            return PartOutcome("failed", key, part.index if part else None, {**failed, "status": "failed"})

    def _supersede(self, key: str, part: Part | None, why: str) -> PartOutcome:
        """The blob changed (or a newer version's output exists): the file is superseded, nothing committed."""
        for name in (plan_key(key), key):
            record = self.ledger.get(name)
            if record is not None and record.status in ("running", "fanned_out"):
                with contextlib.suppress(AlreadyClaimedError):
                    self.ledger.finish(record, "superseded", {"why": why})
        _log.info("superseded by a newer version of the blob", extra={"why": why})
        return PartOutcome("superseded", key, part.index if part else None, {"why": why})

    def poisoned(self, text: str) -> PartOutcome:
        """A part message the host gave up on (``maxDequeueCount`` attempts, each failing transiently or killed):
        the file's failure record names the part and its rows (reason ``dead_lettered``)."""
        try:
            message = json.loads(text)
            key, plan_id = str(message["key"]), str(message["plan_id"])
            if message.get("kind") == "commit":
                plan = self.ledger.get(plan_key(key))
                if plan is None or plan.status != "running" or plan.details.get("plan_id") != plan_id:
                    return PartOutcome("duplicate", key)
                return self._record_file_failure(key, plan, self._event_route(plan)[0], InputError(
                    f"the commit of the output was given up after repeated failed attempts: its queue message was "
                    f"moved to {POISON_QUEUE}", reason="dead_lettered"), None)  # fmt: skip
            part = None if message.get("kind") == "scan" else Part.from_dict(message["part"])
        except (ValueError, KeyError, TypeError) as exc:
            _log.error("poisoned part message ignored: not a part of a plan", extra={"error": str(exc)})
            return PartOutcome("ignored", "")
        plan = self.ledger.get(plan_key(key))
        if plan is None or plan.status != "running" or plan.details.get("plan_id") != plan_id:
            return PartOutcome("duplicate", key, part.index if part else None,
                               {"status": plan.status if plan else "stale"})  # fmt: skip
        event, _ = self._event_route(plan)
        if part is None:  # a scan continuation the host gave up on: the rest of the file has no parts
            offset = int(message.get("offset") or 0)
            error = InputError(f"the scan of the file for parts was given up at byte {offset} after repeated failed "
                               f"attempts: its queue message was moved to {POISON_QUEUE}", reason="dead_lettered",
                               scan_offset=offset)  # fmt: skip
            return self._record_file_failure(key, plan, event, error, None)
        done = self.ledger.get(part_key(key, part.index))
        if done is not None and done.status == "succeeded":
            return self._advance(key, part, done)  # scored after all; only its acknowledgement was lost
        parts = plan.details.get("parts")
        error = InputError(
            f"{_named(part, parts)} was given up after repeated failed attempts: its queue message was moved to "
            f"{POISON_QUEUE}", reason="dead_lettered", part=part.index + 1, parts=parts,
            part_first_row=part.first_row, part_last_row=part.last_row, part_bytes=[part.start, part.end],
            row=part.first_row,
        )  # fmt: skip
        return self._fail_file(key, part, {}, plan, error)


def _blob_of(key: str) -> str:
    """``container/name`` of a file key (``blob:account/container/name@etag``), for log lines."""
    return key.split("/", 1)[-1].rsplit("@", 1)[0]


def _drift_fields(details: Mapping[str, Any]) -> dict[str, Any]:
    return {k: details[k] for k in ("drift_window_closed", "model_name", "model_version") if k in details}
