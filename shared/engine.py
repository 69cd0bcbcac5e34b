"""The streaming scoring engine: a file in, prediction blocks out, memory bounded by the batch, not the file.

A reader thread turns the input (CSV, gzip CSV, JSON lines, Parquet) into typed record batches of about
``batch_rows`` rows with pyarrow (CSV is cut into 4 MiB blocks at record boundaries and parsed on two
threads); the calling thread checks each batch against the model's inputs, predicts, and encodes the output
(CSV or Parquet), yielding blocks of a few MiB for the blob store to stage. Parsing and inference overlap
(pyarrow and onnxruntime release the GIL).

Column types come from the model, never from inference on the first block (see the scoring pitfalls):
numeric inputs are parsed as the model's dtype, string inputs and key columns as text (``007`` stays
``007``). A value that does not parse is located exactly (column, data row, value) by a second pass
over the file when the source can be reopened.

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

import gzip
import io
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from shared.errors import FileFormatError, InputError, SchemaMismatchError

__all__ = [
    "FORMATS",
    "OUTPUT_FORMATS",
    "EngineStats",
    "ScoringModel",
    "detect_format",
    "read_ahead",
    "score_file",
]

FORMATS = ("csv", "csv.gz", "jsonl", "parquet")
OUTPUT_FORMATS = ("csv", "parquet")
_SUFFIXES = {".csv": "csv", ".csv.gz": "csv.gz", ".gz": "csv.gz", ".jsonl": "jsonl", ".ndjson": "jsonl",
             ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}  # fmt: skip
_BLOCK_BYTES = 4 << 20
_CSV_BLOCK = 1 << 20
_PARALLEL_BLOCK = 4 << 20
_CONVERSION = re.compile(
    r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to (\w+): invalid value '(.*)'", re.S
)
_DONE = object()


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


def detect_format(name: str, declared: str | None = None) -> str:
    """The input format: as declared (unless ``auto``), else from the blob name.

    Example:
        >>> detect_format("in/2026/a.CSV.gz"), detect_format("x.data", "parquet")
        ('csv.gz', 'parquet')
    """
    if declared and declared != "auto":
        if declared not in FORMATS:
            raise FileFormatError(f"input format {declared!r} is not one of {', '.join(FORMATS)}")
        return declared
    lowered = name.lower()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if lowered.endswith(suffix):
            return _SUFFIXES[suffix]
    raise FileFormatError(
        f"cannot tell the format of {name!r} from its name (use .csv, .csv.gz, .jsonl, .parquet)"
    )


# -- reading -------------------------------------------------------------------------------------------
def _arrow_types(model: ScoringModel, key_columns: Sequence[str], categories: bool = False) -> dict[str, Any]:
    """Arrow types from the model: its dtypes for numeric inputs, text for strings and key columns.

    With ``categories``, string inputs are parsed dictionary-encoded: categorical columns repeat a few values,
    and the model's object arrays are then built from the few distinct strings, not from every row.
    """
    import pyarrow as pa

    text = pa.dictionary(pa.int32(), pa.string()) if categories else pa.string()
    types = {c: pa.string() for c in key_columns}
    for column in model.inputs:
        types[column.name] = text if column.dtype == "object" else pa.from_numpy_dtype(column.dtype)
    return types


def _open(source: BinaryIO | Callable[[], BinaryIO]) -> BinaryIO:
    return source() if callable(source) else source


def _text_stream(raw: BinaryIO, fmt: str) -> io.BufferedReader:
    stream: Any = gzip.GzipFile(fileobj=raw, mode="rb") if fmt == "csv.gz" else raw
    return (
        io.BufferedReader(stream, buffer_size=_CSV_BLOCK)
        if not isinstance(stream, io.BufferedReader)
        else stream
    )


def _csv_header(stream: io.BufferedReader, fmt: str) -> list[str]:
    import csv

    try:
        if stream.peek(3).startswith(b"\xef\xbb\xbf"):
            stream.read(3)  # a UTF-8 byte order mark
        first = stream.peek(_CSV_BLOCK).split(b"\n", 1)[0].decode("utf-8").strip("\r")
    except UnicodeDecodeError as exc:
        raise FileFormatError("the header line is not UTF-8 text", encoding="utf-8") from exc
    except (OSError, EOFError) as exc:
        what = "cannot be decompressed as gzip" if fmt == "csv.gz" else "cannot be read"
        raise FileFormatError(f"the file {what}: {exc}") from exc
    if not first:
        raise FileFormatError("the file is empty (no header line)")
    return next(csv.reader([first]))


def _check_columns(present: Sequence[str], model: ScoringModel, where: str) -> None:
    missing = [c.name for c in model.inputs if c.name not in present]
    if missing:
        raise SchemaMismatchError(
            f"column {missing[0]!r} required by the model is missing from the {where} (missing: {', '.join(missing)})",
            column=missing[0], missing=missing,
        )  # fmt: skip


def _record_blocks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    """Cut a CSV byte stream into blocks that end on a record boundary: a newline outside quotes.

    RFC 4180 quotes come in pairs (an escaped quote is ``""``), so a newline ends a record exactly when the
    number of quotes before it, counted from the previous boundary, is even. The last such newline of a block
    is found from the end, counting only the quotes behind each candidate.
    """
    carry = b""
    while True:
        data = stream.read(size)
        if not data:
            if carry.strip():
                yield carry
            return
        data = carry + data
        quotes = data.count(b'"')
        boundary = data.rfind(b"\n")
        while boundary >= 0 and quotes and (quotes - data.count(b'"', boundary)) % 2:
            boundary = data.rfind(b"\n", 0, boundary)
        if boundary < 0:
            carry = data  # one record longer than a block: read on
            continue
        yield data[: boundary + 1]
        carry = data[boundary + 1 :]


def _csv_batches(source: Any, fmt: str, types: dict[str, Any], model: ScoringModel) -> Iterator[Any]:
    """Parse CSV blocks on both cores (the streaming reader of pyarrow is single-threaded), in order."""
    import collections
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.csv as pacsv

    stream = _text_stream(_open(source), fmt)
    header = _csv_header(stream, fmt)
    _check_columns(header, model, "header")
    stream.readline()
    wanted = [c for c in types if c in header]
    read_options = pacsv.ReadOptions(column_names=header, use_threads=False, block_size=_PARALLEL_BLOCK * 2)
    convert_options = pacsv.ConvertOptions(
        column_types=types, include_columns=wanted, null_values=[""], strings_can_be_null=True
    )

    def parse(block: bytes) -> Any:
        return pacsv.read_csv(pa.py_buffer(block), read_options=read_options, convert_options=convert_options)

    pending: collections.deque[Any] = collections.deque()
    try:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="scorehook-parse") as pool:
            for block in _record_blocks(stream, _PARALLEL_BLOCK):
                pending.append(pool.submit(parse, block))
                if len(pending) > 2:
                    yield from pending.popleft().result().to_batches()
            while pending:
                yield from pending.popleft().result().to_batches()
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError, EOFError) as exc:
        raise _csv_error(exc, header, source, fmt, types) from exc
    finally:
        for future in pending:
            future.cancel()


def _csv_error(exc: Exception, header: list[str], source: Any, fmt: str, types: dict[str, Any]) -> InputError:
    message = str(exc)
    if isinstance(exc, UnicodeDecodeError) or "invalid UTF8" in message:
        return FileFormatError("the file is not UTF-8 text", encoding="utf-8")
    if isinstance(exc, OSError | EOFError):
        return FileFormatError(f"the file cannot be decompressed or read: {exc}")
    match = _CONVERSION.search(message)
    if not match:
        return FileFormatError(f"not a readable CSV file: {message}")
    index, type_name, value = int(match[1]), match[2], match[3]
    column = header[index] if index < len(header) else f"#{index}"
    row = _locate_bad_value(source, fmt, column, types[column]) if callable(source) else None
    where = f"data row {row}" if row else "a data row"
    return SchemaMismatchError(
        f"column {column!r} has value {value!r} at {where}, which is not a {type_name}",
        reason="bad_value", column=column, row=row, value=value, expected=type_name,
    )  # fmt: skip


def _locate_bad_value(source: Callable[[], BinaryIO], fmt: str, column: str, arrow_type: Any) -> int | None:
    """Second pass, failure path only: read ``column`` as text and find the first row that does not cast."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    reader = pacsv.open_csv(
        _text_stream(source(), fmt),
        read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK),
        convert_options=pacsv.ConvertOptions(column_types={column: pa.string()}, include_columns=[column]),
    )
    before = 0
    for batch in reader:
        values = batch.column(0)
        try:
            values.cast(arrow_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            low, high = 0, len(values)  # the first failing index lies in [low, high)
            while high - low > 1:
                middle = (low + high) // 2
                try:
                    values.slice(low, middle - low).cast(arrow_type)
                    low = middle
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    high = middle
            return before + low + 1
        before += len(values)
    return None


def _jsonl_batches(source: Any, types: dict[str, Any], model: ScoringModel) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.json as pajson

    schema = pa.schema(list(types.items()))
    try:
        reader = pajson.open_json(
            _open(source),
            read_options=pajson.ReadOptions(block_size=_CSV_BLOCK),
            parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
        while True:
            try:
                yield reader.read_next_batch()
            except StopIteration:
                return
    except pa.ArrowInvalid as exc:
        message = str(exc)
        field = re.search(r"Column\(/([^)]+)\)", message)
        if field:
            raise SchemaMismatchError(
                f"field {field[1]!r} has a value of the wrong type: {message}",
                reason="bad_value",
                column=field[1],
            ) from exc
        raise FileFormatError(f"not readable JSON lines: {message}") from exc


def _parquet_batches(
    source: Any, types: dict[str, Any], model: ScoringModel, batch_rows: int
) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(_open(source))
    except (pa.ArrowInvalid, OSError) as exc:
        raise FileFormatError(f"not a readable Parquet file: {exc}") from exc
    names = parquet.schema_arrow.names
    _check_columns(names, model, "Parquet schema")
    wanted = [c for c in types if c in names]
    target = pa.schema([(c, types[c]) for c in wanted])
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=wanted):
        try:
            yield batch.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            column = next((c for c in wanted if not _casts(batch.column(c), types[c])), "?")
            raise SchemaMismatchError(
                f"column {column!r} is {batch.schema.field(column).type} in the file; the model needs {types[column]}",
                reason="bad_value", column=column, expected=str(types[column]),
            ) from exc  # fmt: skip


def _casts(array: Any, arrow_type: Any) -> bool:
    import pyarrow as pa

    try:
        array.cast(arrow_type)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def _regrouped(batches: Iterator[Any], rows: int) -> Iterator[Any]:
    """Small parser batches (one per 1 MiB block) regrouped into about ``rows`` rows: fewer, larger predicts."""
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


def _missing_values(
    batch: Any, model: ScoringModel, rows_before: int, on_missing: str, stats: EngineStats
) -> Any:
    """Empty model inputs (null, or NaN in a float column: onnxruntime would score them silently)."""
    import pyarrow.compute as pc

    missing = {}
    for column in model.inputs:
        array = batch.column(column.name)
        if array.null_count or (column.dtype.startswith("float") and pc.any(pc.is_nan(array)).as_py()):
            missing[column.name] = pc.is_null(array, nan_is_null=True)
    if not missing:
        return batch
    if on_missing == "fail":
        column, mask = next(iter(missing.items()))
        row = rows_before + int(pc.index(mask, True).as_py()) + 1
        raise SchemaMismatchError(
            f"column {column!r} has an empty value at data row {row}",
            reason="missing_value",
            column=column,
            row=row,
        )
    drop = None
    for mask in missing.values():
        drop = mask if drop is None else pc.or_(drop, mask)
    kept = batch.filter(pc.invert(drop))
    stats.rows_rejected += batch.num_rows - kept.num_rows
    return kept


class _Encoder:
    """Encodes output batches as CSV or Parquet and hands out the bytes in blocks of a few MiB."""

    def __init__(self, output_format: str, batch_rows: int) -> None:
        if output_format not in OUTPUT_FORMATS:
            raise FileFormatError(
                f"output format {output_format!r} is not one of {', '.join(OUTPUT_FORMATS)}"
            )
        self.format, self.batch_rows = output_format, batch_rows
        self.sink: io.BytesIO = io.BytesIO()
        self.writer: Any = None

    def write(self, batch: Any) -> bytes | None:
        if self.writer is None:
            if self.format == "csv":
                import pyarrow.csv as pacsv

                self.writer = pacsv.CSVWriter(self.sink, batch.schema)
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


def score_file(
    source: BinaryIO | Callable[[], BinaryIO],
    *,
    fmt: str,
    model: ScoringModel,
    model_version: str,
    key_columns: Sequence[str] = ("id",),
    output_format: str = "csv",
    batch_rows: int = 65536,
    on_missing: str = "fail",
    stats: EngineStats | None = None,
    observe: Callable[[Any, Any], None] | None = None,
) -> Iterator[bytes]:
    """Score a whole file, yielding the output in blocks; raises an ``InputError`` for a bad file.

    ``source`` is a binary file object, or a callable that opens one (then a bad value can be located
    exactly by reading the file a second time). Key columns present in the file are copied to the output
    next to ``prediction`` (and ``probability`` for classifiers) and ``model_version``. ``on_missing`` is
    ``"fail"`` (an empty model input fails the file, naming the row) or ``"reject"`` (such rows are
    dropped and counted in ``stats.rows_rejected``). ``observe(inputs, outputs)``, if given, sees every raw
    input batch and its output batch (``None`` when all its rows were rejected), e.g. to profile for drift.
    """
    import pyarrow as pa

    stats = stats if stats is not None else EngineStats()
    fmt = detect_format("", fmt)
    types = _arrow_types(model, key_columns, categories=fmt in ("csv", "csv.gz"))
    if fmt == "parquet":
        parsed = _parquet_batches(source, types, model, batch_rows)
    elif fmt == "jsonl":
        parsed = _jsonl_batches(source, types, model)
    else:
        parsed = _csv_batches(source, fmt, types, model)
    encoder = _Encoder(output_format, batch_rows)
    version_value = None
    for batch in read_ahead(_regrouped(parsed, batch_rows), stats=stats):
        rows_before = stats.rows_read
        stats.rows_read += batch.num_rows
        raw = batch
        batch = _missing_values(batch, model, rows_before, on_missing, stats)
        if batch.num_rows == 0:
            if observe is not None:
                observe(raw, None)
            continue
        started = time.perf_counter()
        predicted = model.predict(batch)
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
        raise FileFormatError("the file has no data rows")
    if stats.rows_scored == 0:
        raise SchemaMismatchError(
            f"all {stats.rows_read} rows were rejected for empty model inputs", reason="missing_value"
        )
    tail = encoder.close()
    stats.bytes_out += len(tail)
    yield tail
