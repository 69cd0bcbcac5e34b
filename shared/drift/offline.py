"""The offline drift check: compare a reference dataset with current data through the production path.

:func:`compare_tables` does what the app does, on files or tables instead of blobs:

1. **Reading.** Every file (CSV, CSV.gz, Parquet, JSON lines; a pyarrow table is read as Parquet) goes
   through ``shared.engine.score_file``, so types and missing values follow the scoring data contract
   (null tokens, ``inf`` refused, text never cast to a number, ids kept as text). With a ``model`` the
   column types are the model's inputs; without one they are decided once from the reference (numbers
   numeric, text and booleans categorical, dates, times and nested columns not compared;
   ``numeric``/``categorical`` override) and the current data is read with the same types.
2. **Baseline**, as the monitor builds it: with a ``model``, :func:`~shared.drift.monitor.baseline_from_reference`
   (the model's inputs and its predictions on the reference); without one, ``Profile.baseline`` with the
   production defaults. The artifact is serialised to JSON and parsed back, as the monitor reads it.
3. **Window**, as scoring stores it: a blank of the baseline fed batch by batch through
   :class:`~shared.drift.monitor.ProfileObserver` while the file is scored (rows keyed by the ``key`` column
   when the file has it, else by position salted per file), each file's profile serialised to JSON and
   parsed back, the files' profiles merged as the store merges parts.
4. **Decision**: ``shared.drift.evaluate.compare`` under ``policy`` (``DriftPolicy()`` when None: its
   defaults are the defaults of the ``SCOREHOOK_DRIFT_*`` settings; :func:`policy_from_settings` gives the
   policy an app's settings configure). The result is the :class:`~shared.drift.evaluate.DriftReport` the
   monitor writes; each feature has ``name``, ``flagged``, ``value`` (the distance), ``noise_bound``,
   ``threshold`` and ``reasons``.

Errors are ``InputError`` subclasses of the one tree: the engine's (``bad_file_format``, ``empty_file``,
``schema_mismatch``, ``wrong_type``, ...), ``blob_not_found`` for a path that does not exist, and
``schema_mismatch`` when the current data shares no feature column with the reference.

Example:
    >>> import numpy as np, pyarrow as pa
    >>> rng = np.random.default_rng(0)
    >>> ref = pa.table({"x": rng.normal(size=5000), "c": rng.choice(["a", "b"], 5000)})
    >>> cur = pa.table({"x": rng.normal(1.0, 1.0, 2000), "c": rng.choice(["a", "b"], 2000)})
    >>> report = compare_tables(ref, cur)
    >>> report.decision, [f.name for f in report.features if f.flagged]
    ('drift', ['x'])
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa

from shared.drift.evaluate import DriftPolicy, DriftReport, compare
from shared.drift.metrics import DriftInputError
from shared.drift.monitor import ProfileObserver, baseline_from_reference
from shared.drift.profile import Profile
from shared.engine import NULL_TOKENS, Limits, detect_format, score_file
from shared.errors import BlobNotFoundError, EmptyFileError, FileFormatError, InputError, SchemaMismatchError
from shared.models import ModelInput

__all__ = ["compare_tables", "policy_from_settings"]

Source: TypeAlias = "pa.Table | str | os.PathLike[str]"
"""A pyarrow table, or the path of a CSV, CSV.gz, Parquet or JSON lines file."""


@dataclass(frozen=True)
class _Columns:
    """A stand-in model that only declares columns: the engine reads and checks them, predicts nothing."""

    inputs: tuple[ModelInput, ...]
    lenient: bool = True  # numbers in a column read as categories are compared as text

    def predict(self, batch: Any) -> dict[str, Any]:
        return {}


def policy_from_settings(settings: Any) -> DriftPolicy:
    """The drift policy an app's settings configure (``SCOREHOOK_DRIFT_*``), as the monitor uses it.

    Example:
        >>> from shared.settings import Settings
        >>> policy_from_settings(Settings.from_env({"SCOREHOOK_DRIFT_SHARE": "0.5"})).drift_share
        0.5
    """
    return DriftPolicy(
        numeric_threshold=settings.drift_numeric_threshold, categorical_threshold=settings.drift_categorical_threshold,
        quality_threshold=settings.drift_quality_threshold, drift_share=settings.drift_share,
        alpha=settings.drift_alpha, min_rows=settings.drift_min_rows,
        full_alpha_rows=settings.drift_full_alpha_rows,
    )  # fmt: skip


def _opened(source: Source) -> tuple[Any, str, str]:
    """(a callable opening the bytes, the format, a name for messages and salts)."""
    if isinstance(source, pa.Table):
        sink = io.BytesIO()
        import pyarrow.parquet as pq

        pq.write_table(source, sink, row_group_size=65536)
        data = sink.getvalue()
        return (lambda: io.BytesIO(data)), "parquet", "table"
    path = Path(source)
    fmt = detect_format(path.name)
    if not path.is_file():
        raise BlobNotFoundError(f"{path}: no such file", path=str(path))
    return (lambda: path.open("rb")), fmt, str(path)


def _kind(arrow_type: pa.DataType) -> str | None:
    """The engine dtype a column of this type is read as, without a model (None: not compared)."""
    if pa.types.is_dictionary(arrow_type):
        return _kind(arrow_type.value_type)
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float64"  # integers too: a missing value is then NaN, as in a float model input
    if (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_boolean(arrow_type)
    ):
        return "object"  # booleans are two categories (and may be missing)
    return None  # empty (null), nested, dates and times, binary


def _text(source: Source, model: Any, key: str) -> Source:
    """A Parquet or JSON lines file whose columns read as categories are not all text, as a table (whose
    columns are then made text); other sources as they are. Only for features chosen without a model
    (a model's text input takes no number: the engine says ``wrong_type``, as when scoring)."""
    if isinstance(source, pa.Table) or not (isinstance(model, _Columns) and model.lenient):
        return source
    open_, fmt, _ = _opened(source)
    if fmt not in ("parquet", "jsonl"):
        return source
    schema = _schema(source, key)
    wanted = {i.name for i in model.inputs if i.dtype == "object"}
    if all(pa.types.is_string(f.type) or pa.types.is_dictionary(f.type) for f in schema if f.name in wanted):
        return source
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    with open_() as raw:
        try:
            return pq.read_table(raw) if fmt == "parquet" else pajson.read_json(raw)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise FileFormatError(
                f"{_name(source)} cannot be read as {fmt}: {exc}", path=str(source)
            ) from exc


def _schema(source: Source, key: str) -> pa.Schema:
    """The columns and inferred types of a source (CSV and JSON lines: inferred from the whole file)."""
    if isinstance(source, pa.Table):
        return source.schema
    open_, fmt, name = _opened(source)
    if Path(source).stat().st_size == 0:
        raise EmptyFileError("the file is empty (0 bytes)")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with open_() as raw:
                return pq.read_schema(raw)
        if fmt == "jsonl":
            import pyarrow.json as pajson

            with open_() as raw:
                return pajson.read_json(raw).schema
        import pyarrow.csv as pacsv

        with open_() as raw:
            stream = pa.CompressedInputStream(raw, "gzip") if fmt == "csv.gz" else raw
            return pacsv.read_csv(
                stream,
                convert_options=pacsv.ConvertOptions(
                    column_types={key: pa.string()}, null_values=list(NULL_TOKENS), strings_can_be_null=True
                ),
            ).schema
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise FileFormatError(f"{name} cannot be read as {fmt}: {exc}", path=name) from exc


def _columns(source: Source, key: str) -> list[str]:
    """The column names of a source, cheaply where the format allows (the header, the Parquet footer)."""
    if isinstance(source, pa.Table):
        return source.column_names
    open_, fmt, _ = _opened(source)
    if fmt in ("csv", "csv.gz"):
        import gzip

        with open_() as raw, gzip.open(raw) if fmt == "csv.gz" else raw as stream:
            try:
                header = stream.readline(1 << 20).decode("utf-8-sig").rstrip("\r\n")
            except (OSError, UnicodeDecodeError, EOFError):
                return []  # the engine says what is wrong, located
        import csv

        return next(csv.reader([header]), [])
    return _schema(source, key).names


def _read(source: Source, model: Any, key: str, limits: Limits | None, observe: Any) -> None:
    """Score ``source`` with ``model`` as the app does, handing every batch to ``observe``. A table's
    columns named categorical are made text first (the engine takes no number for a text input)."""
    source = _text(source, model, key)
    if isinstance(source, pa.Table):
        for spec in model.inputs:
            if spec.dtype == "object" and spec.name in source.column_names:
                column = source.column(spec.name)
                if not (pa.types.is_string(column.type) or pa.types.is_dictionary(column.type)):
                    index = source.column_names.index(spec.name)
                    source = source.set_column(index, spec.name, column.cast(pa.string()))
    open_, fmt, _ = _opened(source)
    blocks = score_file(
        open_, fmt=fmt, model=model, model_version="offline", key_columns=(key,), label_column=None,
        limits=limits, observe=observe,
    )  # fmt: skip
    for _ in blocks:
        pass


def read_table(source: Source, model: Any, *, key: str = "id", limits: Limits | None = None) -> pa.Table:
    """``source`` read as the engine reads an input of ``model`` (the model's columns and ``key``), whole.

    Example:
        >>> t = read_table(pa.table({"id": ["007"], "x": [1.5]}), _Columns((ModelInput("x", "float64"),)))
        >>> t.column_names, t.column("id").to_pylist()
        (['id', 'x'], ['007'])
    """
    batches: list[pa.RecordBatch] = []
    columns_only = _Columns(tuple(model.inputs), lenient=isinstance(model, _Columns) and model.lenient)
    _read(source, columns_only, key, limits, lambda raw, _: batches.append(raw))
    columns: dict[str, pa.ChunkedArray] = {}
    for name in batches[0].schema.names:
        chunks = [b.column(name) for b in batches]
        if pa.types.is_dictionary(chunks[0].type):  # dictionaries differ from batch to batch
            chunks = [c.cast(c.type.value_type) for c in chunks]
        columns[name] = pa.chunked_array(chunks)
    return pa.table(columns)


def _sources(current: Source | Sequence[Source]) -> list[Source]:
    if isinstance(current, pa.Table | str | os.PathLike):  # one source, not a sequence of them
        return [current]
    sources = list(current)
    if not sources:
        raise EmptyFileError("no current data to compare: give a table or at least one file")
    return sources


def compare_tables(
    reference: Source | Profile | Mapping[str, Any],
    current: Source | Sequence[Source],
    policy: DriftPolicy | None = None,
    *,
    model: Any = None,
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    key: str = "id",
    importance: Mapping[str, float] | None = None,
    limits: Limits | None = None,
) -> DriftReport:
    """Compare ``current`` (one source, or several files of one window) with ``reference`` as the monitor
    would, and return its :class:`~shared.drift.evaluate.DriftReport` (see the module docstring).

    ``reference`` is a table or file, or a baseline artifact already built (a ``Profile``, or its JSON
    dict, e.g. a model's ``baseline/drift-profile.json``; its ``importance`` is used). ``model`` (anything
    with ``inputs`` and ``predict``, e.g. ``shared.models.OnnxModel.from_file(path)``) profiles its
    inputs and its predictions; without it ``numeric``/``categorical`` name the features (default: every
    column of the reference but ``key``). ``importance`` weights the feature share as a model's does.

    Example:
        >>> import pyarrow as pa
        >>> ref = pa.table({"c": ["a", "b"] * 500})
        >>> cur = pa.table({"c": ["a", "b", "new", "a"] * 100})
        >>> r = compare_tables(ref, cur)
        >>> r.feature("c").flagged, r.feature("c").quality_breaches
        (True, ['unseen_rate'])
    """
    policy = policy or DriftPolicy()
    sources = _sources(current)
    dtypes: dict[str, str] = {}
    skipped: list[str] = []
    if isinstance(reference, Profile | Mapping):
        artifact = reference.to_json() if isinstance(reference, Profile) else dict(reference)
        importance = importance if importance is not None else artifact.get("importance")
    elif model is not None:
        with _located(reference, "the reference table"):
            artifact = baseline_from_reference(read_table(reference, model, key=key, limits=limits), model)
    else:
        with _located(reference, "the reference table"):
            artifact, dtypes, skipped = _baseline(reference, numeric, categorical, key, limits)
    try:
        baseline = Profile.from_json(json.loads(json.dumps(artifact)))  # as the monitor reads the artifact
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise DriftInputError(f"the reference is not a drift profile: {exc}") from exc
    window: Profile | None = None
    absent: set[str] = set(baseline.features)
    for index, source in enumerate(sources):
        with _located(source, "the current table"):
            present = set(_columns(source, key))
            shared = [name for name in baseline.features if name in present]
            reads = model
            if model is None:
                if not shared:
                    # a file that cannot be read says what is wrong with it before the columns are judged
                    _read_or_raise(source, baseline, dtypes, key, limits)
                    raise SchemaMismatchError(
                        f"{_name(source)} has none of the reference's feature columns "
                        f"({', '.join(sorted(baseline.features)[:20])})",
                        columns=sorted(present)[:50],
                    )
                reads = _reads(baseline, dtypes, shared)
            absent -= present
            part = _window_part(baseline, source, reads, key, limits, salt=f"offline:{index}:{_name(source)}")
            window = part if window is None else window.merge(part)
    assert window is not None
    report = compare(baseline, window, policy, importance=importance)
    if absent and model is None:
        report.reasons.append(f"not in the current data: {', '.join(sorted(absent))}")
    if skipped:
        report.reasons.append(f"not compared (dates, times, nested or empty columns): {', '.join(skipped)}")
    return report


@contextlib.contextmanager
def _located(source: Any, table_name: str) -> Iterator[None]:
    """An input error raised while ``source`` is read names it: ``path`` in its details and the message.

    Example:
        >>> with _located("cur.csv", "the current table"):    # doctest: +SKIP
        ...     raise EmptyFileError("the file is empty (0 bytes)")
        shared.errors.EmptyFileError: cur.csv: the file is empty (0 bytes)
    """
    try:
        yield
    except InputError as exc:
        name = table_name if isinstance(source, pa.Table | Profile | Mapping) else str(source)
        exc.details.setdefault("path", name)
        if name not in exc.message:
            exc.message = f"{name}: {exc.message}"
            exc.args = (exc.message, *exc.args[1:])
        raise


def _read_or_raise(
    source: Source, baseline: Profile, dtypes: Mapping[str, str], key: str, limits: Limits | None
) -> None:
    """Read ``source`` as the engine reads an input of every reference feature: its own located error
    for a file that cannot be read (empty, not UTF-8, corrupt gzip, ...); a missing column is left to the
    caller, which names every reference feature."""
    try:
        _read(source, _reads(baseline, dtypes, baseline.features), key, limits, lambda inputs, outputs: None)
    except SchemaMismatchError:
        pass


def _reads(baseline: Profile, dtypes: Mapping[str, str], names: Iterable[str]) -> _Columns:
    """The stand-in model that reads ``names`` with the types the reference gave them."""
    return _Columns(tuple(ModelInput(n, dtypes.get(n) or _dtype(baseline, n)) for n in names))


def _name(source: Source) -> str:
    return "the current table" if isinstance(source, pa.Table) else str(source)


def _dtype(baseline: Profile, name: str) -> str:
    return "float64" if baseline.features[name].spec.kind == "numeric" else "object"


def _baseline(
    reference: Source, numeric: Sequence[str] | None, categorical: Sequence[str] | None, key: str,
    limits: Limits | None,
) -> tuple[dict[str, Any], dict[str, str], list[str]]:  # fmt: skip
    """The baseline artifact of a reference source without a model (``Profile.baseline``, production
    defaults), the engine dtype of each feature (to read the current data with) and the columns that
    cannot be compared."""
    schema = _schema(reference, key)
    kinds = {f.name: _kind(f.type) for f in schema if f.name != key}
    named = [*(numeric or ()), *(categorical or ())]
    if numeric is None:
        numeric = [n for n, k in kinds.items() if k == "float64" and n not in named]
    if categorical is None:
        categorical = [n for n, k in kinds.items() if k == "object" and n not in named]
    inputs = [ModelInput(n, "float64") for n in numeric] + [ModelInput(n, "object") for n in categorical]
    chosen = {i.name for i in inputs}
    skipped = [n for n, k in kinds.items() if k is None and n not in chosen]
    if not inputs:
        if skipped:  # a header-only file types every column null: the engine says the file has no rows
            empty = _Columns(tuple(ModelInput(n, "object") for n in skipped))
            read_table(reference, empty, key=key, limits=limits)
        why = (
            f"; not comparable (dates, times, nested or empty): {', '.join(skipped[:20])}" if skipped else ""
        )
        raise SchemaMismatchError(
            f"{_name(reference)} has no column to profile but {key!r}{why}", columns=list(kinds)[:50]
        )
    table = read_table(reference, _Columns(tuple(inputs)), key=key, limits=limits)
    profile = Profile.baseline(table, numeric=list(numeric), categorical=list(categorical), key=key)
    return profile.to_json(), {i.name: i.dtype for i in inputs}, skipped


def _window_part(
    baseline: Profile, source: Source, model: Any, key: str, limits: Limits | None, salt: str
) -> Profile:
    """One file's window profile as scoring records it: observed while scored, stored as JSON, read back."""
    observer = ProfileObserver(baseline.blank(), salt)
    try:
        _read(source, model, key, limits, observer)
    finally:
        observer.stop()
    return Profile.from_json(json.loads(json.dumps(observer.close().to_json())))
