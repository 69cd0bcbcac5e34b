"""Retraining on recently scored data: read the input files, keep their labelled rows, train and register a
new model version in MLflow (tagged with the drift decision), print one JSON line.

Run as its own process, by the local retraining launcher (blob URLs)::

    python -m training.retrain --tracking-uri URI --name NAME --input URL [--input URL ...]
        [--connection-string-env AzureWebJobsStorage] [--decision-id ID] [--reason R] [--base-version V]
        [--kind linear] [--min-rows 200] [--tag k=v ...]

or as the step of the Azure ML pipeline ``infra/ml/retrain-pipeline.yml`` (a mounted folder)::

    python -m training.retrain --tracking-uri "$MLFLOW_TRACKING_URI" --name NAME --base-version V
        --decision-id ID --reason R --drift-report PATH --recent-data DIR --recent-files 'a.csv,d/b.csv'

Exactly one source: ``--input`` URLs or ``--recent-data``.

- ``--input``: blob URLs (``https://{account}.blob.core.windows.net/{container}/{blob}`` or Azurite's path
  style ``http://host:port/{account}/{container}/{blob}``) read with the connection string in the
  environment variable named by ``--connection-string-env``.
- ``--recent-data DIR`` with ``--recent-files LIST``: local files, ``LIST`` comma-separated paths relative
  to ``DIR`` (each percent-encoded; absolute paths and ``..`` are refused), or ``*`` (the default) for
  every file of a supported format under ``DIR``, recursively.

The format follows the name: ``.csv``, ``.csv.gz``, ``.parquet``, ``.jsonl``. Columns of
``training.data.SCHEMA`` are kept and cast to its types; rows without a label are dropped (files without a
``label`` column contribute nothing). Labelled rows with ``shared.deployment.HELD_OUT_RULE`` (``crc32(id) % 5
== 0``) are never trained on: the deployment flow judges the new version and the champion on them (tag
``scorehook.retrain.held_out``).

``--name``, ``--decision-id``, ``--reason``, ``--base-version`` and the ``--recent-files`` entries are
percent-decoded (``urllib.parse.unquote``): the Azure ML launcher quotes them for the command line; plain
values (no ``%XX``) are unchanged. ``--tracking-uri`` defaults to (and, when empty, falls back to) the
``MLFLOW_TRACKING_URI`` environment variable, which Azure ML sets in every job. ``--drift-report PATH``
(optional) is recorded as the version tag ``scorehook.retrain.report`` (the file name).

Output (stdout, one JSON line) and exit code:

- ``{"status": "succeeded", "name", "version", "run_id", "model_uri", ...}``: exit 0 (the
  ``train_and_register`` result; the new version carries ``scorehook.retrain.*`` tags);
- ``{"status": "failed", "reason": "not_enough_labels", "labelled_rows", "held_out_rows", "min_rows", "inputs",
  "error"}``:
  exit 2, nothing registered;
- ``{"status": "failed", "reason": "error", "error"}``: exit 1 (no source or two sources, no tracking URI,
  unreadable input, MLflow unavailable, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc

from training.data import LABEL, SCHEMA

__all__ = [
    "FORMATS",
    "TAG_PREFIX",
    "TRACKING_URI_ENV",
    "load_inputs",
    "load_local_inputs",
    "local_files",
    "main",
    "parser",
    "read_table",
]

FORMATS = {".csv.gz": "csv", ".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl"}
"""Blob name suffix (case-insensitive) -> reader."""
TAG_PREFIX = "scorehook.retrain."
EXIT_NOT_ENOUGH_LABELS = 2
EXIT_ERROR = 1
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
"""Environment variable of the tracking URI when ``--tracking-uri`` is absent or empty (set by Azure ML)."""


def _format(name: str) -> str:
    lowered = name.lower()
    for suffix, fmt in FORMATS.items():
        if lowered.endswith(suffix):
            return fmt
    raise ValueError(f"{name!r}: unsupported input format (expected one of {', '.join(FORMATS)})")


def read_table(path: str | Path, name: str | None = None) -> pa.Table:
    """The ``SCHEMA`` columns of a local file (format from ``name``, default the path), cast to ``SCHEMA`` types
    (nullable); a file without a ``label`` column gets an all-null one.

    Example:
        >>> import tempfile
        >>> from training.data import write_file
        >>> t = read_table(write_file(tempfile.mkdtemp() + "/a.csv.gz", 5, fmt="csv.gz", include_label=True))
        >>> t.num_rows, t.schema.field("label").type, t.column("label").null_count
        (5, DataType(int64), 0)
    """
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    path = Path(path)
    fmt = _format(name or path.name)
    if fmt == "csv":
        compressed = (name or path.name).lower().endswith(".gz")
        source: Any = pa.CompressedInputStream(pa.OSFile(str(path)), "gzip") if compressed else str(path)
        convert = pacsv.ConvertOptions(
            column_types={f.name: f.type for f in SCHEMA}, strings_can_be_null=True
        )
        table = pacsv.read_csv(source, convert_options=convert)
    elif fmt == "parquet":
        present = set(pq.read_schema(path).names)
        table = pq.read_table(path, columns=[c for c in SCHEMA.names if c in present])
    else:
        table = pajson.read_json(path)
    names = [c for c in SCHEMA.names if c in table.column_names]
    table = table.select(names).cast(pa.schema([SCHEMA.field(c).with_nullable(True) for c in names]))
    if LABEL not in table.column_names:
        table = table.append_column(pa.field(LABEL, pa.int64()), pa.nulls(table.num_rows, pa.int64()))
    return table


def load_inputs(urls: Sequence[str], connection_string: str) -> pa.Table:
    """The labelled rows of the blobs at ``urls``, in ``SCHEMA`` columns (those present in any file).

    Raises ``ValueError`` for a URL that is not a blob URL, names another storage account than the
    connection string, or has an unsupported suffix.

    Example:
        >>> t = load_inputs(["http://127.0.0.1:10000/devstoreaccount1/inputs/a.csv"], conn)  # doctest: +SKIP
        >>> t.column("label").null_count  # doctest: +SKIP
        0
    """
    from azure.storage.blob import BlobServiceClient

    from shared.errors import ScorehookError
    from shared.events import _split_blob_url

    service = BlobServiceClient.from_connection_string(connection_string)
    tables = []
    with tempfile.TemporaryDirectory(prefix="scorehook-retrain-") as tmp:
        for i, url in enumerate(urls):
            try:
                account, container, blob_name = _split_blob_url(url, "--input")
            except ScorehookError as error:
                raise ValueError(str(error)) from error
            if account != (service.account_name or "").lower():
                raise ValueError(
                    f"--input {url!r} is in storage account {account!r}, "
                    f"the connection string is for {service.account_name!r}"
                )
            _format(blob_name)
            path = Path(tmp) / f"{i}-{Path(blob_name).name}"
            with path.open("wb") as sink:
                service.get_blob_client(container, blob_name).download_blob().readinto(sink)
            tables.append(read_table(path, blob_name))
            path.unlink()
    return _labelled(tables)


def _labelled(tables: Sequence[pa.Table]) -> pa.Table:
    if not tables:
        return SCHEMA.empty_table()
    table = pa.concat_tables(tables, promote_options="default")
    return table.filter(pc.is_valid(table.column(LABEL)))


def local_files(root: str | Path, files: str = "*") -> list[Path]:
    """The files of ``--recent-files`` under ``root``: ``files`` is ``*`` (every file of a supported format
    under ``root``, recursively, sorted) or comma-separated relative paths, each percent-decoded (empty
    entries are skipped).

    Raises ``ValueError`` when ``root`` is not a folder, for an absolute or ``..`` path, an unsupported
    suffix, or an empty list; ``FileNotFoundError`` for a listed file that is not there.

    Example:
        >>> import tempfile
        >>> from training.data import write_file
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = write_file(root / "d1" / "a b.csv", 3), (root / "notes.txt").write_text("x")
        >>> [p.relative_to(root).as_posix() for p in local_files(root, "*")]
        ['d1/a b.csv']
        >>> [p.relative_to(root).as_posix() for p in local_files(root, "d1/a%20b.csv")]
        ['d1/a b.csv']
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--recent-data {str(root)!r} is not a folder")
    if files.strip() == "*":
        found = (p for p in root.rglob("*") if p.is_file())
        return sorted(p for p in found if _supported(p.relative_to(root).as_posix()))
    paths = []
    for entry in files.split(","):
        name = unquote(entry.strip())
        if not name:
            continue
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or Path(name).is_absolute():
            raise ValueError(f"--recent-files entry {name!r} must be a path inside --recent-data")
        _format(name)
        path = root / relative
        if not path.is_file():
            raise FileNotFoundError(f"--recent-files entry {name!r} is not a file in {str(root)!r}")
        paths.append(path)
    if not paths:
        raise ValueError(f"--recent-files {files!r} names no file (use '*' for every file)")
    return paths


def _supported(name: str) -> bool:
    try:
        _format(name)
    except ValueError:
        return False
    return True


def load_local_inputs(paths: Sequence[str | Path]) -> pa.Table:
    """The labelled rows of local files (e.g. :func:`local_files` of a mounted folder), in ``SCHEMA``
    columns (those present in any file).

    Example:
        >>> import tempfile
        >>> from training.data import write_file
        >>> root = Path(tempfile.mkdtemp())
        >>> a = write_file(root / "a.csv", 4, include_label=True)
        >>> b = write_file(root / "b.csv", 6, include_label=False)
        >>> load_local_inputs([a, b]).num_rows
        4
    """
    return _labelled([read_table(path) for path in paths])


def _tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--tag expects key=value, got {text!r}")
    return key, value


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout (MLflow's "View run ..." lines, library prints, also at the file
    descriptor level when there is one) to stderr, so stdout carries only the one JSON result line."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd = None
    saved = os.dup(fd) if fd is not None else None
    try:
        if fd is not None:
            sys.stderr.flush()
            os.dup2(sys.stderr.fileno(), fd)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if fd is not None and saved is not None:
            os.dup2(saved, fd)
            os.close(saved)


def _emit(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, default=str), flush=True)


def parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m training.retrain`` (values as given: not yet unquoted).

    Example:
        >>> args = parser().parse_args(["--name", "m", "--recent-data", "/mnt/in", "--recent-files", "a%20b.csv"])
        >>> args.tracking_uri, args.input, args.recent_data, args.recent_files
        (None, None, '/mnt/in', 'a%20b.csv')
    """
    from training.train import KINDS, MIN_LABELLED_ROWS

    cli = argparse.ArgumentParser(prog="python -m training.retrain", description=__doc__.split("\n")[0])
    cli.add_argument("--tracking-uri", help=f"MLflow tracking URI (default: ${TRACKING_URI_ENV})")
    cli.add_argument("--name", required=True, help="registered model name")
    source = "exactly one source: --input URLs or --recent-data"
    cli.add_argument("--input", action="append", help=f"blob URL (repeatable; {source})")
    cli.add_argument("--connection-string-env", default="AzureWebJobsStorage", help="for --input")
    cli.add_argument("--recent-data", help=f"local (mounted) folder of input files ({source})")
    cli.add_argument(
        "--recent-files",
        default="*",
        help="comma-separated percent-encoded paths relative to --recent-data, or * (default) for all",
    )
    cli.add_argument("--drift-report", help="drift report file (recorded as a version tag)")
    cli.add_argument("--decision-id", default="")
    cli.add_argument("--reason", default="")
    cli.add_argument("--base-version", default="")
    cli.add_argument("--kind", choices=KINDS, default="linear")
    cli.add_argument("--seed", type=int, default=0)
    cli.add_argument(
        "--min-rows",
        type=int,
        default=MIN_LABELLED_ROWS,
        help=f"labelled rows needed (at least {MIN_LABELLED_ROWS})",
    )
    cli.add_argument("--tag", type=_tag, action="append", default=[], help="extra version tag k=v")
    return cli


def _report(path: str | None) -> str:
    """The ``scorehook.retrain.report`` tag: the drift report's file name ("" without a report)."""
    if not path:
        return ""
    if not Path(path).is_file():
        print(f"training.retrain: warning: --drift-report {path!r} is not a file", file=sys.stderr)
    return Path(path).name or path


def _failure(error: str) -> dict[str, Any]:
    return {"status": "failed", "reason": "error", "error": error}


def _check(args: argparse.Namespace) -> str | None:
    """Normalise ``args`` in place (unquote, tracking URI from the environment); the usage error, if any."""
    for key in ("name", "decision_id", "reason", "base_version"):
        setattr(args, key, unquote(getattr(args, key)))
    if bool(args.input) == (args.recent_data is not None):
        given = "both were given" if args.input else "neither was given"
        return f"give exactly one source, --input URL(s) or --recent-data DIR: {given}"
    if not args.name:
        return "--name is empty"
    args.tracking_uri = args.tracking_uri or os.environ.get(TRACKING_URI_ENV, "")
    if not args.tracking_uri:
        return f"no tracking URI: give --tracking-uri or set {TRACKING_URI_ENV}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, retrain, print one JSON line, return the exit code (0, 1 or 2; see the module doc).

    Example:
        >>> main(["--tracking-uri", "http://127.0.0.1:5000", "--name", "m", "--input", url])  # doctest: +SKIP
        {"status": "succeeded", "name": "m", "version": "2", ...}
        0
        >>> main(["--tracking-uri", "http://127.0.0.1:5000", "--name", "m"])
        {"status": "failed", "reason": "error", "error": "give exactly one source, ...: neither was given"}
        1
    """
    args = parser().parse_args(argv)
    problem = _check(args)
    if problem is not None:
        _emit(_failure(problem))
        return EXIT_ERROR

    with _stdout_to_stderr():
        payload, code = _run(args)
    _emit(payload)
    return code


def _run(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    from training.train import MIN_LABELLED_ROWS, NotEnoughLabelsError, train_and_register

    try:
        if args.recent_data is not None:
            paths = local_files(args.recent_data, args.recent_files)
            inputs = len(paths)
            data = load_local_inputs(paths)
        else:
            connection_string = os.environ.get(args.connection_string_env)
            if not connection_string:
                raise ValueError(
                    f"environment variable {args.connection_string_env} (connection string) is not set"
                )
            inputs = len(args.input)
            data = load_inputs(args.input, connection_string)
        from shared.deployment import HELD_OUT_RULE, held_out_mask

        labelled = data.num_rows
        held_out = held_out_mask(data)  # the deployment flow judges champion and challenger on these rows
        data = data.filter(pa.array(~held_out))
        minimum = max(args.min_rows, MIN_LABELLED_ROWS)
        failed = {
            "status": "failed",
            "reason": "not_enough_labels",
            "labelled_rows": labelled,
            "held_out_rows": int(held_out.sum()),
            "min_rows": minimum,
            "inputs": inputs,
            "decision_id": args.decision_id,
        }
        if data.num_rows < minimum:
            error = (f"{data.num_rows} labelled rows to train on in {inputs} input(s) ({int(held_out.sum())} more "
                     f"held out for the deployment flow), need {minimum}")  # fmt: skip
            return failed | {"error": error}, EXIT_NOT_ENOUGH_LABELS
        tags = {
            f"{TAG_PREFIX}decision": args.decision_id,
            f"{TAG_PREFIX}reason": args.reason,
            f"{TAG_PREFIX}base_version": args.base_version,
            f"{TAG_PREFIX}inputs": str(inputs),
            f"{TAG_PREFIX}rows": str(data.num_rows),
            f"{TAG_PREFIX}report": _report(args.drift_report),
            f"{TAG_PREFIX}held_out": f"{HELD_OUT_RULE} ({int(held_out.sum())} rows)",
        }
        tags = {k: v for k, v in tags.items() if v} | dict(args.tag)  # unset options are left out
        try:
            result = train_and_register(
                args.tracking_uri, model_name=args.name, seed=args.seed, kind=args.kind, data=data, tags=tags
            )
        except NotEnoughLabelsError as error:  # e.g. too few complete rows, or one class only
            return failed | {"error": str(error)}, EXIT_NOT_ENOUGH_LABELS
    except Exception as error:
        traceback.print_exc()  # stderr: the launcher keeps it in the process log
        return _failure(f"{type(error).__name__}: {error}"), EXIT_ERROR
    return result | {"status": "succeeded", "decision_id": args.decision_id}, 0


if __name__ == "__main__":
    sys.exit(main())
