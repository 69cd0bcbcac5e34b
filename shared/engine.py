"""The streaming scoring engine: a file in, prediction blocks out, memory bounded by the batch, not the file.

A reader thread turns the input (CSV, gzip CSV, JSON lines, Parquet) into typed record batches of about
``batch_rows`` rows with pyarrow: text is cut into blocks of about 4 MiB at record boundaries, in one
linear pass (the quote state is carried from block to block), and the blocks are parsed on two threads;
the calling thread predicts and encodes the output (CSV or Parquet), yielding blocks of a few MiB for the
blob store to stage. Parsing and inference overlap (pyarrow and onnxruntime release the GIL).

Column types come from the model, never from inference on the first block (see the scoring pitfalls):
numeric inputs are parsed as the model's dtype, string inputs and key columns as text (``007`` stays
``007``). Every failure is an ``InputError`` whose ``reason`` is in ``shared.errors.FAILURE_REASONS``
and whose details locate it: ``line`` (1-based physical line of the file), ``row`` (1-based data row,
the header not counted), ``column`` (its name).

Data contract (one rule per case):

=============================================  ====================================================
input                                          outcome
=============================================  ====================================================
extension ``.csv``, ``.csv.gz``, ``.jsonl``,   the format (extensions are trusted, never sniffed);
``.ndjson``, ``.json``, ``.parquet``, ``.pq``  any other name: ``unsupported_format``
zero bytes, header only, no data rows          ``empty_file``
UTF-8 byte order mark, CRLF line ends          read as usual
UTF-16 (BOM ``FF FE``/``FE FF``, or NUL-       ``not_utf8`` with ``encoding="utf-16"``, line 1
interleaved ASCII), other non-UTF-8 text       ``not_utf8`` with its line and row
CSV header with a duplicated column name       ``schema_mismatch`` (names match exactly, case too)
a model input column absent (CSV, Parquet)     ``schema_mismatch``; extra columns are ignored
a JSON lines key absent from a row             a missing value (below)
missing value in a model input: empty cell,    ``on_missing="pass"`` (default): NaN for numeric
``NaN``, ``nan``, null, absent JSON key, CSV   inputs, null (None) for string inputs, seen by the
null tokens (``NULL_TOKENS``: ``NA``, ``N/A``, drift observer; ``reject_rows``: the row is dropped
``NULL``, ``null``, ``None``, ...)             and counted; ``fail``: ``missing_value``
missing value in an integer or boolean input   ``missing_value`` whatever ``on_missing`` (only float
                                               inputs can carry NaN), except ``reject_rows``
every row rejected (``reject_rows``)           ``missing_value``
``inf``, ``-inf``, ``Infinity`` (or a number   ``invalid_value`` with column, row, line
beyond float32) in a float input
CSV value that does not parse as the declared  ``bad_value`` with column, row, line and value
type (``abc`` for a float, ``1.5`` for int)
text where a number is declared (Parquet,      ``wrong_type``, never a silent cast; likewise a
JSON lines), a number where text is declared   number where a string input is declared
float32 declared, float64 or integers given    cast (widened or narrowed); JSON ints are floats
dictionary or large_string column              a string column
label column (``label_column``) present        must parse as ``label_dtype`` (nulls allowed),
                                               else ``bad_value``; never passed to the model
key columns (``key_columns``)                  copied to the output byte for byte (``00123``,
                                               ``NA``, ``NaN``, ``1e5``, empty)
record (CSV record, JSON line) over            ``too_large`` (``limit="max_record_bytes"``) with
``max_record_bytes``                           its line and row, found while reading
more columns than ``max_columns``              ``too_large`` (``limit="max_columns"``)
more bytes read than ``max_file_bytes``        ``too_large`` (``limit="max_file_bytes"``)
gzip inflating over ``max_inflated_bytes``,    ``too_large`` (``limit="max_inflated_bytes"`` or
or over ``max_inflation_ratio`` times its      ``"max_inflation_ratio"``), checked while inflating
compressed size (after the first 8 MiB)
a broken CSV record (wrong number of fields,   ``bad_file_format`` with line and row
an unbalanced quote), invalid JSON, a JSON
line that is not an object, corrupt gzip or
Parquet
=============================================  ====================================================

Example:
    >>> import io
    >>> class Doubler:  # any object with ``inputs`` and ``predict`` is a model here
    ...     from shared.models import ModelInput
    ...     inputs = (ModelInput("x", "float32"),)
    ...     def predict(self, batch):
    ...         return {"prediction": batch.column("x").to_numpy() * 2}
    >>> blocks = score_file(io.BytesIO(b"id,x\\n007,1.5\\n008,2\\n"), fmt="csv", model=Doubler(), model_version="1")
    >>> print(b"".join(blocks).decode())
    "id","prediction","model_version"
    "007",3,"1"
    "008",4,"1"
    <BLANKLINE>
"""

from __future__ import annotations

import bisect
import collections
import gzip
import io
import json
import queue
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from shared.errors import (
    ConfigurationError,
    EmptyFileError,
    FileFormatError,
    InputError,
    InvalidValueError,
    MissingValueError,
    NotUtf8Error,
    SchemaMismatchError,
    TooLargeError,
    UnsupportedFormatError,
    WrongTypeError,
)

__all__ = [
    "FORMATS",
    "NULL_TOKENS",
    "ON_MISSING",
    "OUTPUT_FORMATS",
    "EngineStats",
    "Limits",
    "ScoringModel",
    "detect_format",
    "read_ahead",
    "score_file",
]

FORMATS = ("csv", "csv.gz", "jsonl", "parquet")
OUTPUT_FORMATS = ("csv", "parquet")
ON_MISSING = ("pass", "reject_rows", "fail")
# Text that means "no value" in a CSV cell (the usual tokens, as pandas reads them). Key columns are
# exempt: they come back as they were.
NULL_TOKENS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
               "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")  # fmt: skip
_SUFFIXES = {".csv": "csv", ".csv.gz": "csv.gz", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
             ".parquet": "parquet", ".pq": "parquet"}  # fmt: skip
_BLOCK_BYTES = 4 << 20  # output blocks handed to the blob store
_TEXT_BLOCK = 4 << 20  # input text blocks, parsed one per thread
_RATIO_AFTER = 8 << 20  # the inflation ratio is only applied once this much is inflated
_READ_BYTES = 1 << 20  # compressed bytes read at a time
_DONE = object()
_CONVERSION = re.compile(
    r"In CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error to (\w+): invalid value '(.*)'", re.S
)
_CSV_ROW = re.compile(r"Row #(\d+)")
_JSON_COLUMN = re.compile(r"Column\(/([^)]*)\) changed from (\w+) to (\w+)(?: in row (\d+))?")


class ScoringModel(Protocol):
    """What the engine needs of a model: its input columns and a batch predictor."""

    inputs: Sequence[Any]  # ModelInput(name, dtype)

    def predict(self, batch: Any) -> dict[str, Any]: ...


@dataclass
class EngineStats:
    """Counts and stage timings of one run (seconds are summed per stage, so they may overlap)."""

    rows_read: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    batches: int = 0
    bytes_out: int = 0
    read_seconds: float = 0.0
    predict_seconds: float = 0.0
    write_seconds: float = 0.0
    output_header: bytes = b""  # the CSV header line not written with ``include_header=False`` (fan-out parts)


@dataclass(frozen=True)
class Limits:
    """What one input may cost; each exceeded limit is a ``TooLargeError`` naming it.

    Example:
        >>> Limits(max_record_bytes=1 << 20).max_record_bytes, Limits().max_columns
        (1048576, 2000)
    """

    max_record_bytes: int = 16 << 20
    max_inflated_bytes: int = 256 << 30
    max_inflation_ratio: float = 200.0
    max_columns: int = 2000
    max_file_bytes: int = 64 << 30

    @classmethod
    def from_settings(cls, settings: Any, route: Any = None) -> Limits:
        """The limits of the settings; a route's ``max_file_bytes``, when set, lowers the file limit.

        Example:
            >>> from shared.settings import Settings
            >>> Limits.from_settings(Settings.from_env({"SCOREHOOK_MAX_COLUMNS": "10"})).max_columns
            10
        """
        file_bytes = settings.max_file_bytes
        route_bytes = getattr(route, "max_file_bytes", None)
        if route_bytes:
            file_bytes = min(file_bytes, route_bytes)
        return cls(
            max_record_bytes=settings.max_record_bytes,
            max_inflated_bytes=settings.max_inflated_bytes,
            max_inflation_ratio=settings.max_inflation_ratio,
            max_columns=settings.max_columns,
            max_file_bytes=file_bytes,
        )


def detect_format(name: str, declared: str | None = None) -> str:
    """The input format: as declared (unless ``auto``), else from the blob name's extension.

    Example:
        >>> detect_format("in/2026/a.CSV.gz"), detect_format("x.data", "parquet")
        ('csv.gz', 'parquet')
    """
    if declared and declared != "auto":
        if declared not in FORMATS:
            raise UnsupportedFormatError(
                f"input format {declared!r} is not one of {', '.join(FORMATS)}", format=declared
            )
        return declared
    lowered = name.lower()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if lowered.endswith(suffix):
            return _SUFFIXES[suffix]
    raise UnsupportedFormatError(
        f"{name.rsplit('/', 1)[-1]!r} does not end in an extension Scorehook reads "
        f"({', '.join(sorted(_SUFFIXES))})",
        extension=("." + name.rsplit(".", 1)[-1]) if "." in name.rsplit("/", 1)[-1] else "",
    )


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # unreachable


# -- byte streams with limits -------------------------------------------------------------------------
def _open(source: BinaryIO | Callable[[], BinaryIO]) -> BinaryIO:
    return source() if callable(source) else source


class _Counted:
    """Reads ``raw``, counting the bytes; more than ``limit`` is ``too_large`` (``max_file_bytes``)."""

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self.raw, self.limit, self.count = raw, limit, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        if self.count > self.limit:
            raise TooLargeError(
                f"the file is larger than max_file_bytes ({_size(self.limit)})",
                limit="max_file_bytes", max_bytes=self.limit, bytes_read=self.count,
            )  # fmt: skip
        return data

    def readable(self) -> bool:
        return True


class _Inflated:
    """gzip inflated while read: inflated bytes and the inflation ratio are checked as they grow."""

    def __init__(self, compressed: _Counted, limits: Limits) -> None:
        self.compressed, self.limits, self.count = compressed, limits, 0
        self.gzip = gzip.GzipFile(fileobj=compressed, mode="rb")  # type: ignore[call-overload]

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.gzip.read(size)
        except (OSError, EOFError, zlib.error) as exc:
            raise FileFormatError(
                f"the gzip data cannot be decompressed (corrupt or truncated) after {_size(self.count)} inflated: {exc}",
                inflated_bytes=self.count, compressed_bytes=self.compressed.count,
            ) from exc  # fmt: skip
        self.count += len(data)
        limits = self.limits
        if self.count > limits.max_inflated_bytes:
            raise TooLargeError(
                f"the gzip file inflates to more than max_inflated_bytes ({_size(limits.max_inflated_bytes)})",
                limit="max_inflated_bytes", max_bytes=limits.max_inflated_bytes, inflated_bytes=self.count,
            )  # fmt: skip
        ratio = self.count / max(self.compressed.count, 1)
        if self.count > _RATIO_AFTER and ratio > limits.max_inflation_ratio:
            raise TooLargeError(
                f"the gzip file inflates {ratio:.0f} times its compressed size (max_inflation_ratio "
                f"{limits.max_inflation_ratio:g}): {_size(self.compressed.count)} gave {_size(self.count)}",
                limit="max_inflation_ratio", max_ratio=limits.max_inflation_ratio, ratio=round(ratio, 1),
                inflated_bytes=self.count, compressed_bytes=self.compressed.count,
            )  # fmt: skip
        return data


def _text_stream(source: Any, fmt: str, limits: Limits) -> Any:
    raw = _Counted(_open(source), limits.max_file_bytes)
    return _Inflated(raw, limits) if fmt == "csv.gz" else raw


# -- records ---------------------------------------------------------------------------------------------
_COUNT_SLICE = 1 << 18  # bytes compared at a time: the comparison's scratch stays small and is reused


def _count_byte(chunk: bytes | memoryview, value: int) -> int:
    """How many bytes of ``chunk`` equal ``value`` (numpy: four times faster than ``bytes.count``, and
    without the GIL), in slices so that no scratch array as large as the chunk is ever allocated."""
    import numpy as np

    data = np.frombuffer(chunk, np.uint8)
    return sum(int(np.count_nonzero(data[i : i + _COUNT_SLICE] == value)) for i in range(0, data.size, _COUNT_SLICE))


def _quotes(chunk: bytes) -> int:
    """How many ``"`` are in ``chunk``."""
    return _count_byte(chunk, 34)


def _newlines(chunk: bytes | memoryview) -> int:
    """How many newlines are in ``chunk``."""
    return _count_byte(chunk, 10)


def _boundaries(chunk: bytes, parity: int) -> Any:
    """Every newline of ``chunk`` outside quotes, given ``parity`` (quotes mod 2) before it: one vector pass."""
    import numpy as np

    data = np.frombuffer(chunk, np.uint8)
    newlines = np.flatnonzero(data == 10)
    quotes = np.flatnonzero(data == 34)
    before = np.searchsorted(quotes, newlines)  # quotes in front of each newline
    return newlines[((before + parity) & 1) == 0]


def _last_boundary(chunk: bytes, parity: int, quotes: int) -> int:
    """The offset of the last newline in ``chunk`` that ends a record, or -1.

    RFC 4180 quotes come in pairs (an escaped quote is ``""``), so a newline ends a record exactly when the
    quotes in front of it, from the start of the record, are even. Usually the last newline does; a few
    candidates are tried from the end, then one vectorised pass decides.
    """
    at_end = parity ^ (quotes & 1)
    after, position = len(chunk), chunk.rfind(b"\n")
    for _ in range(8):
        if position < 0:
            return -1
        at_end ^= chunk.count(b'"', position, after) & 1
        if at_end == 0:
            return position
        after, position = position, chunk.rfind(b"\n", 0, position)
    found = _boundaries(chunk, parity)
    return int(found[-1]) if len(found) else -1


class _Unbalanced(Exception):
    """The last record of a CSV file opens a quoted field that never closes (raised after the blocks before)."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _RecordTooLong(Exception):
    """Raised inside the scanner; the reader turns it into a ``TooLargeError`` once it knows the row."""

    def __init__(self, line: int, size: int, limit: int, unbalanced: bool = False) -> None:
        super().__init__(line, size, limit)
        self.line, self.size, self.limit, self.unbalanced = line, size, limit, unbalanced


class _Scanner:
    """Cuts a text stream into blocks of whole records, in one linear pass with bounded memory.

    ``quoting`` is CSV (a newline inside quotes does not end a record); without it every newline does
    (JSON lines). Each block comes with the 1-based physical line it starts on. No record may be longer
    than ``max_record_bytes``: one that is raises ``_RecordTooLong`` after the blocks before it, having
    buffered at most the limit and one read.

    Example:
        >>> blocks = _Scanner(io.BytesIO(b'a,b\\n"x\\ny",1\\n2,3\\n'), quoting=True, block_bytes=6)
        >>> [(block, line) for block, line in blocks]
        [(b'a,b\\n', 1), (b'"x\\ny",1\\n', 2), (b'2,3\\n', 4)]
    """

    def __init__(self, stream: Any, *, quoting: bool, block_bytes: int = _TEXT_BLOCK,
                 max_record_bytes: int = 16 << 20) -> None:  # fmt: skip
        self.stream, self.quoting = stream, quoting
        self.block_bytes, self.limit = block_bytes, max_record_bytes
        self.line = 1  # the physical line the next block starts on

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        read_size = max(1, min(self.block_bytes, self.limit))
        pending = b""  # bytes after the last record boundary: the start of an unfinished record
        pending_lines = 0  # newlines in ``pending``
        parity = 0  # quotes in ``pending``, mod 2
        out: list[bytes] = []  # whole records not yet handed out
        out_bytes = out_lines = 0
        first = True
        while True:
            chunk = self.stream.read(read_size)
            if not chunk:
                break
            if first:
                chunk, first = _text_start(chunk, "csv" if self.quoting else "jsonl"), False
            quotes = _quotes(chunk) if self.quoting else 0
            last = _last_boundary(chunk, parity, quotes) if self.quoting else chunk.rfind(b"\n")
            if last < 0:
                pending += chunk
                pending_lines += _newlines(chunk)
                parity ^= quotes & 1
                if len(pending) > self.limit:
                    yield from self._flush(out, out_lines)
                    raise _RecordTooLong(self._line_of_record(pending, self.line), len(pending), self.limit,
                                         unbalanced=bool(parity))  # fmt: skip
                continue
            if pending and len(pending) + last >= self.limit:  # the record that straddles the chunks
                end = self._first_end(chunk, parity)
                if len(pending) + end + 1 > self.limit:
                    yield from self._flush(out, out_lines)
                    raise _RecordTooLong(self._line_of_record(pending, self.line), len(pending) + end + 1,
                                         self.limit, unbalanced=end == len(chunk) and bool(parity))  # fmt: skip
            records = pending + chunk[: last + 1] if pending else chunk[: last + 1]
            tail = chunk[last + 1 :]
            tail_lines = tail.count(b"\n")
            lines = pending_lines + _newlines(chunk) - tail_lines
            out.append(records)
            out_bytes += len(records)
            out_lines += lines
            pending, pending_lines = tail, tail_lines
            parity = (parity ^ quotes) & 1  # 0 at the boundary: the tail's own quotes
            if out_bytes + read_size > self.block_bytes:  # another read would make the block too big
                yield from self._flush(out, out_lines)
                out_bytes = out_lines = 0
        if pending.strip():
            if parity:
                yield from self._flush(out, out_lines)
                raise _Unbalanced(self._line_of_record(pending, self.line))
            out.append(pending)
            out_lines += pending_lines
        yield from self._flush(out, out_lines)

    def _flush(self, out: list[bytes], lines: int) -> Iterator[tuple[bytes, int]]:
        if out:
            block = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            line, self.line = self.line, self.line + lines
            yield block, line

    def _first_end(self, chunk: bytes, parity: int) -> int:
        position = _first_boundary(chunk, parity) if self.quoting else chunk.find(b"\n")
        return position if position >= 0 else len(chunk)

    @staticmethod
    def _line_of_record(pending: bytes, line: int) -> int:
        """The line an unfinished record starts on (blank lines in front of it skipped)."""
        stripped = pending.lstrip(b"\r\n")
        return line + pending[: len(pending) - len(stripped)].count(b"\n")


def _first_boundary(chunk: bytes, parity: int) -> int:
    """The offset of the first newline in ``chunk`` that ends a record (``parity``: quotes before), or -1."""
    before, position, state = 0, chunk.find(b"\n"), parity
    for _ in range(8):
        if position < 0:
            return -1
        state ^= chunk.count(b'"', before, position) & 1
        if state == 0:
            return position
        before, position = position, chunk.find(b"\n", position + 1)
    found = _boundaries(chunk, parity)
    return int(found[0]) if len(found) else -1


def _text_start(chunk: bytes, fmt: str = "csv") -> bytes:
    """The first bytes of a text file: a UTF-8 byte order mark dropped; UTF-16, gzip and Parquet bytes
    refused, saying so (before any record is looked for: their bytes may hold stray quotes)."""
    if chunk.startswith(b"\xef\xbb\xbf"):
        return chunk[3:]
    if chunk.startswith(b"\x1f\x8b"):
        named = "a gzip file must be named .csv.gz" if fmt == "csv" else "compressed JSON lines are not supported"
        raise NotUtf8Error(f"the header line is not UTF-8 text (the bytes are gzip: {named})",
                           encoding="utf-8", line=1)  # fmt: skip
    if chunk.startswith(b"PAR1"):
        raise NotUtf8Error("the header line is not UTF-8 text (the bytes are Parquet: a Parquet file must be "
                           "named .parquet)", encoding="utf-8", line=1)  # fmt: skip
    if chunk.startswith((b"\xff\xfe", b"\xfe\xff")) or _nul_interleaved(chunk[:4096]):
        raise NotUtf8Error(
            "the file is UTF-16 text, not UTF-8: re-encode it as UTF-8", encoding="utf-16", line=1
        )
    return chunk


def _nul_interleaved(head: bytes) -> bool:
    """ASCII text in UTF-16 without a byte order mark: every other byte is NUL."""
    if len(head) < 4 or b"\x00" not in head:
        return False
    half = len(head) // 2
    return max(head[0::2].count(0), head[1::2].count(0)) >= 0.4 * half


def _record_lines(block: bytes, quoting: bool) -> list[int]:
    """The line (0-based, within ``block``) on which each data row starts; blank lines are no rows."""
    starts, parity = [], 0
    for index, line in enumerate(block.split(b"\n")):
        if parity == 0 and (line not in (b"", b"\r") if quoting else line.strip()):
            starts.append(index)
        if quoting:
            parity ^= line.count(b'"') & 1
    return starts


class _Lines:
    """Row index within a parsed block → 1-based physical line (worked out only when asked: failures).

    ``block`` None: a block of one record per line (row i is on line i), whose text need not be kept.
    """

    def __init__(self, block: bytes | None, first_line: int, quoting: bool, offset: int = 0) -> None:
        self.block, self.first_line, self.quoting, self.offset = block, first_line, quoting, offset
        self._starts: list[int] | None = None

    def starts(self) -> list[int] | range:
        if self.block is None:
            return range(1 << 62)
        if self._starts is None:
            self._starts = _record_lines(self.block, self.quoting)
        return self._starts

    def shifted(self, offset: int) -> _Lines:
        lines = _Lines(self.block, self.first_line, self.quoting, self.offset + offset)
        lines._starts = self._starts
        return lines

    def __call__(self, index: int) -> int | None:
        starts = self.starts()
        index += self.offset
        return self.first_line + starts[index] if 0 <= index < len(starts) else None

    def row_of_line(self, line_index: int) -> int | None:
        """The block row (0-based) whose record contains the block's line ``line_index``."""
        found = bisect.bisect_right(self.starts(), line_index) - 1
        return found if found >= 0 else None


def _no_lines(index: int) -> None:
    return None


def _at(**location: Any) -> dict[str, Any]:
    """Location details without the parts that are not known."""
    return {k: v for k, v in location.items() if v is not None}


def _where(row: int | None, line: int | None) -> str:
    if row is not None and line is not None:
        return f"data row {row} (line {line})"
    if row is not None:
        return f"data row {row}"
    return f"line {line}" if line is not None else "a data row"


def _utf8_error(block: bytes, first_line: int, first_row: int, quoting: bool) -> NotUtf8Error | None:
    """A ``NotUtf8Error`` locating the first byte of ``block`` that is not UTF-8, or None."""
    try:
        block.decode("utf-8")
        return None
    except UnicodeDecodeError as exc:
        offset = exc.start
    line_index = block.count(b"\n", 0, offset)
    index = _Lines(block, first_line, quoting).row_of_line(line_index)
    row = first_row + index if index is not None else None
    line = first_line + line_index
    return NotUtf8Error(
        f"{_where(row, line)} is not UTF-8 text (byte 0x{block[offset]:02x}; Latin-1 or Windows-1252?): "
        "re-encode the file as UTF-8",
        encoding="utf-8", line=line, row=row,
    )  # fmt: skip


def _record_too_long(exc: _RecordTooLong, row: int | None, quoting: bool) -> TooLargeError:
    what = "the header" if row is None else f"the record at {_where(row, exc.line)}"
    hint = (
        " (an unbalanced quote makes the rest of the file one record)" if quoting and exc.unbalanced else ""
    )
    return TooLargeError(
        f"{what} is longer than max_record_bytes ({_size(exc.limit)}){hint}",
        limit="max_record_bytes", max_bytes=exc.limit, line=exc.line, row=row,
    )  # fmt: skip


@dataclass
class _Piece:
    """A parsed batch and where it is: the data row of its first row, and its rows' lines."""

    batch: Any
    row: int
    lines: Callable[[int], int | None]


# -- types -----------------------------------------------------------------------------------------------
def _arrow_type(dtype: str) -> Any:
    import pyarrow as pa

    if dtype in ("object", "string", "str"):
        return pa.string()
    return pa.from_numpy_dtype(dtype)


def _input_kind(dtype: str) -> str:
    if dtype == "object":
        return "text"
    if dtype.startswith("float"):
        return "float"
    return "bool" if dtype == "bool" else "int"


def _is_text(arrow_type: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        return _is_text(arrow_type.value_type)
    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
                or getattr(pa.types, "is_string_view", lambda _: False)(arrow_type))  # fmt: skip


def _is_number(arrow_type: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        return _is_number(arrow_type.value_type)
    return bool(
        pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type)
    )


def _type_name(arrow_type: Any) -> str:
    if _is_text(arrow_type):
        return "text"
    return str(arrow_type)


# -- CSV -------------------------------------------------------------------------------------------------
def _csv_header(header: bytes, limits: Limits) -> list[str]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    text = header.rstrip(b"\r\n")
    if not text.strip():
        raise EmptyFileError("the file has no header line (it is empty or blank)", line=1)
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as exc:
        hint = ""
        if header.startswith(b"\x1f\x8b"):
            hint = " (the bytes are gzip: a gzip file must be named .csv.gz)"
        elif header.startswith(b"PAR1"):
            hint = " (the bytes are Parquet: a Parquet file must be named .parquet)"
        raise NotUtf8Error(f"the header line is not UTF-8 text{hint}", encoding="utf-8", line=1) from exc
    if b"\x00" in text:
        raise NotUtf8Error("the header line contains NUL bytes: not UTF-8 text", encoding="utf-8", line=1)
    if not header.endswith(b"\n"):
        header += b"\n"
    try:
        names = pacsv.read_csv(
            pa.py_buffer(header),
            read_options=pacsv.ReadOptions(use_threads=False, block_size=len(header) + 1),
        ).column_names
    except pa.ArrowInvalid as exc:
        raise FileFormatError(f"the header line is not a CSV record: {exc}", line=1) from exc
    if len(names) > limits.max_columns:
        raise TooLargeError(
            f"the header has {len(names)} columns, more than max_columns ({limits.max_columns})",
            limit="max_columns", max_columns=limits.max_columns, columns=len(names), line=1,
        )  # fmt: skip
    _check_unique(names, "header", line=1)
    return names


def _check_unique(names: Sequence[str], where: str, **location: Any) -> None:
    counts = collections.Counter(names)
    duplicated = [name for name in names if counts[name] > 1]
    if duplicated:
        raise SchemaMismatchError(
            f"column {duplicated[0]!r} appears {counts[duplicated[0]]} times in the {where}: column names must be unique",
            column=duplicated[0], duplicated=sorted(set(duplicated)), **location,
        )  # fmt: skip


def _check_columns(present: Sequence[str], model: ScoringModel, where: str, **location: Any) -> None:
    missing = [c.name for c in model.inputs if c.name not in present]
    if missing:
        raise SchemaMismatchError(
            f"column {missing[0]!r} required by the model is missing from the {where} (missing: {', '.join(missing)}; "
            "names match exactly, case too)",
            column=missing[0], missing=missing, **location,
        )  # fmt: skip


def _csv_pieces(source: Any, fmt: str, types: dict[str, Any], model: ScoringModel, limits: Limits,
                label_column: str | None) -> Iterator[_Piece]:  # fmt: skip
    """Parse CSV blocks on both cores (the streaming reader of pyarrow is single-threaded), in order."""
    from concurrent.futures import Future, ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.csv as pacsv

    scanner = _Scanner(
        _text_stream(source, fmt, limits), quoting=True, max_record_bytes=limits.max_record_bytes
    )
    blocks = iter(scanner)
    try:
        first = next(blocks, None)
    except _RecordTooLong as exc:
        raise _record_too_long(exc, None, quoting=True) from None
    except _Unbalanced:
        raise FileFormatError("the header opens a quoted field that never closes (an unbalanced quote)",
                              line=1) from None  # fmt: skip
    if first is None:
        raise EmptyFileError("the file is empty (0 bytes)")
    block, line = first
    end = _first_boundary(block, 0)
    header_bytes, body = (block, b"") if end < 0 else (block[: end + 1], block[end + 1 :])
    header = _csv_header(header_bytes, limits)
    _check_columns(header, model, "header", line=1)
    wanted = [c for c in types if c in header]
    # Only the empty cell is a null token at first (pyarrow checks every cell against every token, and
    # numbers spelled nan are NaN anyway); once a block has another token, it and the rest are parsed with all.
    column_types = {c: types[c] for c in wanted}
    quick = pacsv.ConvertOptions(column_types=column_types, include_columns=wanted, null_values=[""],
                                 strings_can_be_null=False)  # fmt: skip
    full = pacsv.ConvertOptions(column_types=column_types, include_columns=wanted, null_values=list(NULL_TOKENS),
                                strings_can_be_null=False)  # fmt: skip
    tokens = [False]

    def read(data: bytes) -> Any:
        options = pacsv.ReadOptions(column_names=header, use_threads=False, block_size=len(data) + 1)
        if not tokens[0]:
            try:
                return pacsv.read_csv(pa.py_buffer(data), read_options=options, convert_options=quick)
            except pa.ArrowInvalid as exc:
                found = _CONVERSION.search(str(exc))
                if not (found and found[4] in NULL_TOKENS):
                    raise
                tokens[0] = True
        return pacsv.read_csv(pa.py_buffer(data), read_options=options, convert_options=full)

    def parse(data: bytes) -> tuple[Any, bytes | None]:
        """The block's table, and its text when rows and lines differ (kept to locate a row's line)."""
        try:
            table = read(data)
        except (pa.ArrowException, UnicodeDecodeError) as exc:
            raise _BlockFailed(exc, data) from exc
        plain = table.num_rows == _newlines(data) + (not data.endswith(b"\n"))
        return table, None if plain else data

    rows = 0
    pending: collections.deque[tuple[Future[Any], int]] = collections.deque()

    def take() -> Iterator[_Piece]:
        nonlocal rows
        future, first_line = pending.popleft()
        try:
            table, data = future.result()
        except _BlockFailed as failed:
            raise _csv_error(failed.cause, failed.data, first_line, rows, header, label_column) from failed.cause
        lines, offset = _Lines(data, first_line, quoting=True), 0
        for batch in table.to_batches():
            yield _Piece(batch, rows + offset + 1, lines.shifted(offset))
            offset += batch.num_rows
        rows += table.num_rows

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="scorehook-parse") as pool:
        try:
            if body.strip():
                pending.append((pool.submit(parse, body), line + header_bytes.count(b"\n")))
            try:
                for data, first_line in blocks:
                    pending.append((pool.submit(parse, data), first_line))
                    if len(pending) > 2:
                        yield from take()
            except (
                _RecordTooLong,
                _Unbalanced,
                TooLargeError,
                FileFormatError,
            ) as exc:  # located in the file
                while pending:  # an error earlier in the file comes first
                    collections.deque(take(), maxlen=0)
                if isinstance(exc, _RecordTooLong):
                    raise _record_too_long(exc, rows + 1, quoting=True) from None
                if isinstance(exc, _Unbalanced):
                    raise FileFormatError(
                        f"the record at {_where(rows + 1, exc.line)} opens a quoted field that never closes "
                        "(an unbalanced quote)", row=rows + 1, line=exc.line,
                    ) from None  # fmt: skip
                exc.details.setdefault("line", scanner.line)
                exc.details.setdefault("rows_before", rows)
                raise
            while pending:
                yield from take()
        finally:
            for future, _ in pending:
                future.cancel()


class _BlockFailed(Exception):
    """A block that did not parse, with its text (kept only for blocks that fail, to locate the failure)."""

    def __init__(self, cause: Exception, data: bytes) -> None:
        super().__init__(str(cause))
        self.cause, self.data = cause, data


def _csv_error(exc: Exception, data: bytes, first_line: int, rows: int, header: list[str],
               label_column: str | None) -> InputError:  # fmt: skip
    """The failure of one block, located: column, data row, line (pyarrow counts rows per block)."""
    not_utf8 = _utf8_error(data, first_line, rows + 1, quoting=True)
    if not_utf8 is not None:
        return not_utf8
    message = str(exc)
    lines = _Lines(data, first_line, quoting=True)
    match = _CONVERSION.search(message)
    if match:
        index, in_block, type_name, value = int(match[1]), match[2], match[3], match[4]
        column = header[index] if index < len(header) else f"#{index}"
        row = rows + int(in_block) if in_block else None
        line = lines(int(in_block) - 1) if in_block else None
        what = "label column" if column == label_column else "column"
        return SchemaMismatchError(
            f"{what} {column!r} has value {value[:200]!r} at {_where(row, line)}, which is not a {type_name}",
            reason="bad_value", column=column, row=row, line=line, value=value[:200], expected=type_name,
        )  # fmt: skip
    found = _CSV_ROW.search(message)
    row = rows + int(found[1]) if found else None
    line = lines(int(found[1]) - 1) if found else None
    text = _CSV_ROW.sub("", message.removeprefix("CSV parse error: ")).lstrip(": ")
    if len(text) > 300:
        text = text[:300] + "..."
    hint = ""
    if line is not None:
        start = sum(len(x) + 1 for x in data.split(b"\n")[: line - first_line])
        record = data[start : start + (1 << 20)]
        if record.count(b'"', 0, record.find(b"\n") if b"\n" in record else len(record)) % 2:
            hint = " (an unbalanced quote: a quoted field never ends)"
    return FileFormatError(
        f"the CSV record at {_where(row, line)} is broken{hint}: {text}", row=row, line=line
    )


# -- JSON lines ------------------------------------------------------------------------------------------
class _Object(dict):  # type: ignore[type-arg]
    """A JSON object that remembers a duplicated key."""

    duplicate: str | None = None


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    for key, value in pairs:
        if key in obj and obj.duplicate is None:
            obj.duplicate = key
        obj[key] = value
    return obj


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _json_value_error(
    name: str, value: Any, arrow_type: Any, role: str, row: int, line: int
) -> InputError | None:
    """What is wrong with one JSON value for its column (``role``: input, label or key), or None."""
    import math

    import pyarrow as pa

    if value is None or role == "key":
        return None
    where, kind = _where(row, line), _json_kind(value)
    label = role == "label"
    what = "label column" if label else "column"
    if pa.types.is_string(arrow_type):
        if kind == "string" or label:
            return None
        return WrongTypeError(f"{what} {name!r} is a JSON {kind} at {where}; the model needs text",
                              column=name, row=row, line=line, value=str(value)[:200], expected="string")  # fmt: skip
    expected = str(arrow_type)
    if pa.types.is_boolean(arrow_type):
        ok = kind == "boolean"
    elif kind != "number":
        ok = False
    elif pa.types.is_integer(arrow_type):
        ok = isinstance(value, int) and -(2**63) <= value < 2**63
    else:
        if math.isinf(value) and not label:
            return InvalidValueError(f"column {name!r} is infinite at {where}: the model must not see inf",
                                     column=name, row=row, line=line, value=str(value))  # fmt: skip
        ok = not math.isinf(value)
    if ok:
        return None
    if label or kind == "number" or pa.types.is_boolean(arrow_type):
        return SchemaMismatchError(
            f"{what} {name!r} has value {json.dumps(value)[:200]} at {where}, which is not a {expected}",
            reason="bad_value", column=name, row=row, line=line, value=json.dumps(value)[:200], expected=expected,
        )  # fmt: skip
    return WrongTypeError(
        f"{what} {name!r} is a JSON {kind} at {where}; the model needs a {expected} (no text is cast to a number)",
        column=name, row=row, line=line, value=json.dumps(value)[:200], expected=expected,
    )  # fmt: skip


def _json_error(exc: Exception, data: bytes, first_line: int, rows: int, types: dict[str, Any],
                roles: dict[str, str]) -> InputError:  # fmt: skip
    """The failure of one JSON lines block, located by reading its lines one by one (failure path only)."""
    problem = _json_problem(exc, data, first_line, rows, types, roles)
    if problem is not None:
        return problem
    return FileFormatError(
        f"not readable JSON lines at or after line {first_line}: {exc}", line=first_line, row=rows + 1
    )


def _json_problem(exc: Exception | None, data: bytes, first_line: int, rows: int, types: dict[str, Any],
                  roles: dict[str, str]) -> InputError | None:  # fmt: skip
    """The first line of a JSON lines block that breaks the contract, read with Python's parser, or None."""
    not_utf8 = _utf8_error(data, first_line, rows + 1, quoting=False)
    if not_utf8 is not None:
        return not_utf8
    row = rows
    for index, raw in enumerate(data.split(b"\n")):
        if not raw.strip():
            continue
        row, line = row + 1, first_line + index
        try:
            obj = json.loads(raw, object_pairs_hook=_object)
        except ValueError as bad:
            reason = getattr(bad, "msg", str(bad))
            return FileFormatError(f"{_where(row, line)} is not valid JSON: {reason}", row=row, line=line)
        except RecursionError:  # nested deeper than Python's parser goes: pyarrow's word on it
            found = _JSON_COLUMN.search(str(exc or ""))
            if found and found[1] in types and roles.get(found[1]) != "key":
                return WrongTypeError(
                    f"column {found[1]!r} is a JSON {found[3]} at {_where(row, line)}; it must be a single value",
                    column=found[1], row=row, line=line, expected=str(types[found[1]]),
                )  # fmt: skip
            return FileFormatError(
                f"{_where(row, line)} nests arrays or objects too deeply", row=row, line=line
            )
        if not isinstance(obj, _Object):
            return FileFormatError(
                f"{_where(row, line)} is a JSON {_json_kind(obj)}, not an object: JSON lines hold one object per line",
                row=row, line=line,
            )  # fmt: skip
        if obj.duplicate is not None:
            return SchemaMismatchError(
                f"key {obj.duplicate!r} appears twice in the object at {_where(row, line)}: keys must be unique",
                column=obj.duplicate, row=row, line=line,
            )  # fmt: skip
        for name, arrow_type in types.items():
            error = _json_value_error(name, obj.get(name), arrow_type, roles.get(name, "input"), row, line)
            if error is not None:
                return error
    return None


class _NotObjects(Exception):
    """A JSON lines block that does not start with an object, or has a line that is null."""


_NULL_LINE = re.compile(rb"\n[ \t\r]*null")


def _blank_lines(data: bytes) -> int:
    """Empty lines (``\\n`` or ``\\r\\n`` only) of a block; lines of spaces are counted by the slow check."""
    import numpy as np

    buffer = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(buffer == 10)
    if not len(newlines):
        return 0
    starts = np.concatenate(([0], newlines[:-1] + 1))
    length = newlines - starts
    empty = (length == 0) | ((length == 1) & (buffer[np.maximum(newlines - 1, 0)] == 13))
    return int(np.count_nonzero(empty))


def _raw_keys(data: bytes, keys: Sequence[str]) -> dict[str, list[str | None]]:
    """Key values as their JSON text (numbers exactly as written: ``1e5`` stays ``1e5``)."""
    values: dict[str, list[str | None]] = {k: [] for k in keys}
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        obj = json.loads(raw, parse_int=str, parse_float=str, parse_constant=str)
        for key in keys:
            value = obj.get(key) if isinstance(obj, dict) else None
            if value is None or isinstance(value, str):
                values[key].append(value)
            elif isinstance(value, bool):
                values[key].append("true" if value else "false")
            else:
                values[key].append(json.dumps(value))
    return values


def _jsonl_pieces(
    source: Any, types: dict[str, Any], roles: dict[str, str], limits: Limits
) -> Iterator[_Piece]:
    """Parse JSON lines blocks on both cores, in order; keys keep their exact text, numbers or not."""
    from concurrent.futures import Future, ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pajson

    scanner = _Scanner(
        _text_stream(source, "jsonl", limits), quoting=False, max_record_bytes=limits.max_record_bytes
    )
    keys = [name for name, role in roles.items() if role == "key"]
    full = pa.schema(list(types.items()))
    int_keys = pa.schema([(n, pa.int64() if n in keys else t) for n, t in types.items()])
    no_keys = pa.schema([(n, t) for n, t in types.items() if n not in keys])

    def read(data: bytes, schema: Any) -> Any:
        return pajson.read_json(
            pa.py_buffer(data),
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(data) + 1),
            parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )

    def parse(data: bytes) -> Any:
        if not data.isascii():
            data.decode("utf-8")  # pyarrow's JSON reader does not check
        if not data.strip():
            return full.empty_table()  # blank lines only
        if not data.lstrip().startswith(b"{") or _NULL_LINE.search(data):
            # pyarrow 25 crashes on a block whose first value is null, and reads a null line as a row
            raise _NotObjects()
        try:
            return read(data, full)
        except pa.ArrowInvalid as exc:
            found = _JSON_COLUMN.search(str(exc))
            if not (found and found[1] in keys):
                raise
        try:  # numeric ids: integers are written back as they were
            table = read(data, int_keys)
            columns = [
                pc.cast(table.column(n), pa.string()) if n in keys else table.column(n) for n in full.names
            ]
        except pa.ArrowInvalid:
            table = read(data, no_keys)
            raw = _raw_keys(data, keys)
            columns = [pa.array(raw[n], pa.string()) if n in keys else table.column(n) for n in full.names]
        return pa.Table.from_arrays(columns, schema=full)

    rows = 0
    pending: collections.deque[tuple[Future[Any], bytes, int]] = collections.deque()

    def take() -> Iterator[_Piece]:
        nonlocal rows
        future, data, first_line = pending.popleft()
        try:
            table = future.result()
        except (pa.ArrowException, ValueError, RecursionError, _NotObjects) as exc:
            raise _json_error(exc, data, first_line, rows, types, roles) from exc
        if table.num_rows != _newlines(data) + (not data.endswith(b"\n")) - _blank_lines(data):
            # pyarrow reads whitespace-separated values as rows: one object per line is checked line by line
            problem = _json_problem(None, data, first_line, rows, types, roles)
            if problem is not None:
                raise problem
        lines, offset = _Lines(data, first_line, quoting=False), 0
        for batch in table.to_batches():
            yield _Piece(batch, rows + offset + 1, lines.shifted(offset))
            offset += batch.num_rows
        rows += table.num_rows

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="scorehook-parse") as pool:
        try:
            try:
                for data, first_line in scanner:
                    pending.append((pool.submit(parse, data), data, first_line))
                    if len(pending) > 2:
                        yield from take()
            except (_RecordTooLong, TooLargeError, FileFormatError) as exc:  # located in the file
                while pending:
                    collections.deque(take(), maxlen=0)
                if isinstance(exc, _RecordTooLong):
                    raise _record_too_long(exc, rows + 1, quoting=False) from None
                exc.details.setdefault("line", scanner.line)
                exc.details.setdefault("rows_before", rows)
                raise
            while pending:
                yield from take()
        finally:
            for future, _, _ in pending:
                future.cancel()


# -- Parquet ---------------------------------------------------------------------------------------------
def _first_failing(array: Any, cast: Callable[[Any], Any]) -> int:
    """Index of the first value of ``array`` that ``cast`` rejects (bisection; failure path only)."""
    import pyarrow as pa

    low, high = 0, len(array)  # the first failing index lies in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        try:
            cast(array.slice(low, middle - low))
            low = middle
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            high = middle
    return low


def _valid_text(array: Any, name: str, first_row: int) -> Any:
    """``array`` if its strings are UTF-8 (Parquet does not check), else a located ``NotUtf8Error``."""
    import pyarrow as pa

    def check(values: Any) -> None:
        values.validate(full=True)

    try:
        check(array)
        return array
    except pa.ArrowInvalid as exc:
        row = first_row + _first_failing(array, check)
        raise NotUtf8Error(
            f"column {name!r} is not UTF-8 text at {_where(row, None)}",
            encoding="utf-8",
            column=name,
            row=row,
        ) from exc


def _parquet_column(array: Any, name: str, target: Any, role: str, first_row: int) -> Any:
    """One Parquet column as the model (or the label) needs it: numbers widen or narrow, text stays text
    (checked to be UTF-8)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if role == "key":
        if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
            array = array.view(pa.string() if pa.types.is_binary(array.type) else pa.large_string())
        if not _is_text(array.type):
            return array
        return _valid_text(array, name, first_row).cast(pa.string())
    if _is_text(target):
        return _valid_text(array, name, first_row).cast(target)
    if array.type == target:
        return array
    if pa.types.is_floating(array.type) and pa.types.is_integer(target):
        array = pc.if_else(pc.is_nan(array), pa.scalar(None, array.type), array)  # NaN is a missing value

    def cast(values: Any) -> Any:
        return values.cast(target, safe=not pa.types.is_floating(target))

    try:
        return cast(array)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        index = _first_failing(array, cast)
        value = array[index].as_py()
        what = "label column" if role == "label" else "column"
        raise SchemaMismatchError(
            f"{what} {name!r} has value {str(value)[:200]!r} at {_where(first_row + index, None)}, which is not a {target}",
            reason="bad_value", column=name, row=first_row + index, value=str(value)[:200], expected=str(target),
        ) from exc  # fmt: skip


def _parquet_pieces(source: Any, types: dict[str, Any], roles: dict[str, str], model: ScoringModel,
                    limits: Limits, batch_rows: int,
                    row_groups: Sequence[int] | None = None) -> Iterator[_Piece]:  # fmt: skip
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = _open(source)
    try:
        size = raw.seek(0, io.SEEK_END)
        raw.seek(0)
    except (AttributeError, OSError):
        size = None
    if size == 0:
        raise EmptyFileError("the file is empty (0 bytes)")
    if size is not None and size > limits.max_file_bytes:
        raise TooLargeError(
            f"the file ({_size(size)}) is larger than max_file_bytes ({_size(limits.max_file_bytes)})",
            limit="max_file_bytes", max_bytes=limits.max_file_bytes, bytes=size,
        )  # fmt: skip
    try:
        parquet = pq.ParquetFile(raw)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as exc:  # ValueError: undecodable names in the footer
        raise FileFormatError(f"not a readable Parquet file: {exc}") from exc
    names = schema.names
    if len(names) > limits.max_columns:
        raise TooLargeError(
            f"the Parquet schema has {len(names)} columns, more than max_columns ({limits.max_columns})",
            limit="max_columns", max_columns=limits.max_columns, columns=len(names),
        )  # fmt: skip
    _check_unique(names, "Parquet schema")
    _check_columns(names, model, "Parquet schema")
    wanted = [c for c in types if c in names]
    for name in wanted:
        found, target, role = schema.field(name).type, types[name], roles.get(name, "input")
        if role == "input" and not (_is_text(found) if _is_text(target) else
                                    pa.types.is_boolean(found) if pa.types.is_boolean(target) else _is_number(found)):  # fmt: skip
            raise WrongTypeError(
                f"column {name!r} is {_type_name(found)} in the file; the model needs {_type_name(target)} "
                "(no silent cast)",
                column=name, found=str(found), expected=str(target),
            )  # fmt: skip
        if pa.types.is_nested(found) and role != "input":
            raise WrongTypeError(f"{role} column {name!r} is {found}: it must hold single values", column=name,
                                 found=str(found))  # fmt: skip
    if parquet.metadata.num_rows == 0:
        raise EmptyFileError("the Parquet file has no data rows")
    rows = 0
    try:
        groups = list(row_groups) if row_groups is not None else None  # a fan-out part: its row groups only
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=wanted, row_groups=groups):
            arrays = [
                _parquet_column(batch.column(n), n, types[n], roles.get(n, "input"), rows + 1) for n in wanted
            ]
            yield _Piece(pa.RecordBatch.from_arrays(arrays, names=wanted), rows + 1, _no_lines)
            rows += batch.num_rows
    except InputError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise FileFormatError(
            f"the Parquet file cannot be read after data row {rows}: {exc}", row=rows + 1
        ) from exc


# -- checks ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    """What the checks need: each model input's name and kind, the missing-value rule, CSV null tokens."""

    inputs: tuple[tuple[str, str], ...]
    on_missing: str
    tokens: bool


def _null_tokens(array: Any) -> Any:
    """Text null tokens (``NA``, ``NULL``, empty, ...) of a CSV string input made nulls."""
    import pyarrow as pa
    import pyarrow.compute as pc

    tokens = pa.array(NULL_TOKENS, pa.string())
    if pa.types.is_dictionary(array.type):
        hits = pc.is_in(array.dictionary, value_set=tokens)
        if not pc.any(hits).as_py():
            return array
        codes = pc.indices_nonzero(hits).cast(array.indices.type)
        missing = pc.is_in(array.indices, value_set=codes)
        indices = pc.if_else(missing, pa.scalar(None, array.indices.type), array.indices)
        return pa.DictionaryArray.from_arrays(indices, array.dictionary)
    missing = pc.is_in(array, value_set=tokens)
    if not pc.any(missing).as_py():
        return array
    return pc.if_else(missing, pa.scalar(None, array.type), array)


def _check_piece(piece: _Piece, plan: _Plan) -> Any:
    """Raise for the first value the model must not see (inf; a missing value where the rule says fail)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    batch = piece.batch
    replaced: dict[str, Any] = {}
    problems: list[tuple[int, str, str, str]] = []  # (index, column, what, value)
    for name, kind in plan.inputs:
        array = batch.column(name)
        if kind == "float":
            values = array.to_numpy(zero_copy_only=False)
            missing = not np.isfinite(values).all()
            if missing:
                infinite = np.isinf(values)
                if infinite.any():
                    index = int(np.argmax(infinite))
                    problems.append((index, name, "inf", "inf" if values[index] > 0 else "-inf"))
        else:
            if kind == "text" and plan.tokens:
                fixed = _null_tokens(array)
                if fixed is not array:
                    replaced[name] = array = fixed
            missing = array.null_count > 0
        if missing and (plan.on_missing == "fail" or (kind in ("int", "bool") and plan.on_missing == "pass")):
            index = int(pc.index(pc.is_null(array, nan_is_null=True), True).as_py())
            problems.append((index, name, "missing", kind))
    if problems:
        index, name, what, value = min(problems, key=lambda problem: problem[0])  # ties: model order
        row, line = piece.row + index, piece.lines(index)
        if what == "inf":
            raise InvalidValueError(
                f"column {name!r} is {value} at {_where(row, line)}: the model must not see infinite values",
                column=name, value=value, **_at(row=row, line=line),
            )  # fmt: skip
        rule = (
            "on_missing is fail" if plan.on_missing == "fail"
            else f"an {value} input cannot carry a missing value; on_missing: reject_rows drops such rows"
        )  # fmt: skip
        raise MissingValueError(
            f"column {name!r} has no value at {_where(row, line)} ({rule})",
            column=name,
            **_at(row=row, line=line),
        )
    if replaced:
        batch = pa.RecordBatch.from_arrays(
            [replaced.get(n, batch.column(n)) for n in batch.schema.names], names=batch.schema.names
        )
    return batch


def _rejected(batch: Any, plan: _Plan, stats: EngineStats) -> Any:
    """``reject_rows``: the rows with a missing model input dropped (and counted)."""
    import pyarrow.compute as pc

    drop = None
    for name, kind in plan.inputs:
        array = batch.column(name)
        if array.null_count or (kind == "float" and pc.any(pc.is_nan(array)).as_py()):
            mask = pc.is_null(array, nan_is_null=True)
            drop = mask if drop is None else pc.or_(drop, mask)
    if drop is None:
        return batch
    kept = batch.filter(pc.invert(drop))
    stats.rows_rejected += batch.num_rows - kept.num_rows
    return kept


def _model_view(batch: Any, plan: _Plan) -> Any:
    """The model's columns only (never keys or the label); text inputs with nulls as plain strings, so a
    missing category reaches the model as None, not as a code of the dictionary."""
    import pyarrow as pa

    names = [name for name, _ in plan.inputs]
    arrays = []
    for name, kind in plan.inputs:
        array = batch.column(name)
        if kind == "text" and array.null_count and pa.types.is_dictionary(array.type):
            array = array.cast(array.type.value_type)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _regrouped(batches: Iterator[Any], rows: int) -> Iterator[Any]:
    """Small parser batches (one per text block) regrouped into about ``rows`` rows: fewer, larger predicts."""
    import pyarrow as pa

    pending: list[Any] = []
    count = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.concat_batches(pending) if len(pending) > 1 else pending[0]
            pending, count = [], 0
    if pending:
        yield pa.concat_batches(pending) if len(pending) > 1 else pending[0]


# -- the pipeline ----------------------------------------------------------------------------------------
def read_ahead(items: Iterator[Any], depth: int = 2, stats: EngineStats | None = None) -> Iterator[Any]:
    """Run ``items`` in a thread of its own, ``depth`` items ahead; errors surface in the consumer.

    Used for parsing (batches) and for downloading (ranged blob reads), so I/O, parsing and inference overlap.
    With ``stats``, the producer's time is added to ``stats.read_seconds``.

    Example:
        >>> list(read_ahead(iter(range(5))))
        [0, 1, 2, 3, 4]
    """
    ahead: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            started = time.perf_counter()
            for item in items:
                if stats is not None:
                    stats.read_seconds += time.perf_counter() - started
                while not stop.is_set():
                    try:
                        ahead.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
                started = time.perf_counter()
            ahead.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            ahead.put(exc)

    thread = threading.Thread(target=produce, name="scorehook-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = ahead.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                ahead.get_nowait()
            except queue.Empty:
                thread.join(0.05)


class _Encoder:
    """Encodes output batches as CSV or Parquet and hands out the bytes in blocks of a few MiB."""

    def __init__(self, output_format: str, batch_rows: int, header: bool = True) -> None:
        if output_format not in OUTPUT_FORMATS:
            raise UnsupportedFormatError(
                f"output format {output_format!r} is not one of {', '.join(OUTPUT_FORMATS)}"
            )
        self.format, self.batch_rows, self.header = output_format, batch_rows, header
        self.sink: io.BytesIO = io.BytesIO()
        self.writer: Any = None
        self.header_line = b""

    def write(self, batch: Any) -> bytes | None:
        if self.writer is None:
            if self.format == "csv":
                import pyarrow.csv as pacsv

                options = pacsv.WriteOptions(include_header=self.header)
                self.writer = pacsv.CSVWriter(self.sink, batch.schema, write_options=options)
                if not self.header:  # the header line alone, for whoever writes it in front of these rows
                    line = io.BytesIO()
                    pacsv.CSVWriter(line, batch.schema).close()
                    self.header_line = line.getvalue()
            else:
                import pyarrow.parquet as pq

                self.writer = pq.ParquetWriter(self.sink, batch.schema, compression="snappy")
        if self.format == "csv":
            self.writer.write_batch(batch)
        else:
            self.writer.write_batch(batch, row_group_size=self.batch_rows)
        return self._take() if self.sink.tell() >= _BLOCK_BYTES else None

    def _take(self) -> bytes:
        data = self.sink.getvalue()
        self.sink.seek(0)
        self.sink.truncate()
        return data

    def close(self) -> bytes:
        if self.writer is not None:
            self.writer.close()
        return self._take()


def _parsed(
    source: Any, fmt: str, model: ScoringModel, key_columns: Sequence[str], label_column: str | None,
    label_dtype: str, on_missing: str, limits: Limits, batch_rows: int, row_groups: Sequence[int] | None = None,
) -> tuple[Iterator[_Piece], _Plan]:  # fmt: skip
    """The parsed pieces of the file and the plan of their checks: column types come from the model."""
    import pyarrow as pa

    inputs = {c.name: c.dtype for c in model.inputs}
    text = fmt in ("csv", "csv.gz")
    types: dict[str, Any] = {}
    roles: dict[str, str] = {}
    for key in key_columns:
        if key not in inputs:
            types[key], roles[key] = pa.string(), "key"
    if label_column and label_column not in inputs and label_column not in types:
        types[label_column], roles[label_column] = _arrow_type(label_dtype), "label"
    for name, dtype in inputs.items():
        # CSV text inputs are dictionary-encoded: categories repeat, and the model's arrays are built from
        # the few distinct strings
        dictionary = pa.dictionary(pa.int32(), pa.string()) if text else pa.string()
        types[name], roles[name] = (dictionary if dtype == "object" else _arrow_type(dtype)), "input"
    if fmt == "parquet":
        pieces = _parquet_pieces(source, types, roles, model, limits, batch_rows, row_groups)
    elif fmt == "jsonl":
        pieces = _jsonl_pieces(source, types, roles, limits)
    else:
        pieces = _csv_pieces(source, fmt, types, model, limits, label_column)
    return pieces, _Plan(tuple((n, _input_kind(d)) for n, d in inputs.items()), on_missing, tokens=text)


def score_file(
    source: BinaryIO | Callable[[], BinaryIO],
    *,
    fmt: str,
    model: ScoringModel,
    model_version: str,
    key_columns: Sequence[str] = ("id",),
    output_format: str = "csv",
    batch_rows: int = 65536,
    on_missing: str = "pass",
    limits: Limits | None = None,
    label_column: str | None = "label",
    label_dtype: str = "int64",
    stats: EngineStats | None = None,
    observe: Callable[[Any, Any], None] | None = None,
    include_header: bool = True,
    row_groups: Sequence[int] | None = None,
) -> Iterator[bytes]:
    """Score a whole file, yielding the output in blocks; raises an ``InputError`` for a bad file.

    ``source`` is a binary file object, or a callable that opens one. Key columns present in the file are
    copied to the output byte for byte next to ``prediction`` (and ``probability`` for classifiers) and
    ``model_version``. ``on_missing``: ``"pass"`` (missing inputs reach the model as NaN, or None for text),
    ``"reject_rows"`` (alias ``"reject"``: such rows are dropped and counted in ``stats.rows_rejected``) or
    ``"fail"``. ``label_column``, when the file has it, must parse as ``label_dtype``; it is not given to
    the model. ``limits`` bound what the file may cost (``Limits()`` by default). ``observe(inputs,
    outputs)``, if given, sees every input batch (null tokens made nulls) and its output batch (``None``
    when all its rows were rejected), e.g. to profile for drift. A fan-out part (``shared/fanout.py``) scores
    only ``row_groups`` of a Parquet file and writes CSV without ``include_header`` (the header line is then
    left in ``stats.output_header``).

    The file is only known to be good when the last block has been yielded: stage the blocks, commit
    after the iterator is exhausted.
    """
    import pyarrow as pa

    on_missing = "reject_rows" if on_missing == "reject" else on_missing
    if on_missing not in ON_MISSING:
        raise ConfigurationError(f"on_missing must be one of {', '.join(ON_MISSING)}, not {on_missing!r}")
    stats = stats if stats is not None else EngineStats()
    limits = limits or Limits()
    fmt = detect_format("", fmt)
    encoder = _Encoder(output_format, batch_rows, header=include_header)
    pieces, plan = _parsed(
        source, fmt, model, key_columns, label_column, label_dtype, on_missing, limits, batch_rows, row_groups
    )
    checked = (_check_piece(piece, plan) for piece in pieces)
    version_value = None
    for batch in read_ahead(_regrouped(checked, batch_rows), stats=stats):
        stats.rows_read += batch.num_rows
        raw = batch
        if on_missing == "reject_rows":
            batch = _rejected(batch, plan, stats)
        if batch.num_rows == 0:
            if observe is not None:
                observe(raw, None)
            continue
        started = time.perf_counter()
        predicted = model.predict(_model_view(batch, plan))
        stats.predict_seconds += time.perf_counter() - started
        started = time.perf_counter()
        if version_value is None or len(version_value) < batch.num_rows:
            version_value = pa.nulls(batch.num_rows, pa.string()).fill_null(str(model_version))
        columns = {k: batch.column(k) for k in key_columns if k in batch.schema.names}
        columns.update({name: pa.array(values) for name, values in predicted.items()})
        columns["model_version"] = version_value.slice(0, batch.num_rows)
        scored = pa.record_batch(columns)
        if observe is not None:
            observe(raw, scored)
        block = encoder.write(scored)
        stats.write_seconds += time.perf_counter() - started
        stats.rows_scored += batch.num_rows
        stats.batches += 1
        if block:
            stats.bytes_out += len(block)
            yield block
    if stats.rows_read == 0:
        raise EmptyFileError("the file has no data rows (a header only, or blank lines)")
    if stats.rows_scored == 0:
        raise MissingValueError(
            f"all {stats.rows_read} rows were rejected for missing model inputs (on_missing: reject_rows)"
        )
    tail = encoder.close()
    stats.bytes_out += len(tail)
    stats.output_header = encoder.header_line
    yield tail
