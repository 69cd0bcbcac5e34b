"""Structured logging on structlog: JSON lines in files, a readable console locally, correlation fields bound
once per invocation.

Call sites keep the stdlib style (``get_logger("scoring").info("scored", extra={"rows": 3})``); structlog's
``ProcessorFormatter`` turns every record into one event dict: time, level, logger, message, the bound
correlation fields (``event_id``, ``invocation_id``, ``blob``, ``model``, ``model_version``, ``correlation_id``,
...), the ``extra`` fields, the exception. Bound fields live in a ``contextvars.ContextVar``, so every line
written while they are bound carries them, across function calls and threads started with
``contextvars.copy_context()``. structlog is imported with the first formatted line, not with the app.

Where the lines go (:func:`configure_logging`):

* under the Azure Functions worker, the ``scorehook`` logger has no console handler of its own and
  propagates to the root logger, whose handler is the worker's (what carries logs to Application Insights);
* elsewhere (devhost, the CLI, tests) the handlers are installed on the root logger, so devhost's own
  messages, Python warnings and third-party warnings share the app's stream: a console renderer when the
  stream is a terminal (or ``renderer="console"``), JSON lines otherwise, JSON lines in the log file always.

Example:
    >>> with capture_logs() as records:
    ...     with bind(event_id="e-1", blob="incoming/a.csv"):
    ...         get_logger("scoring").info("scored", extra={"rows": 3})
    >>> records[0]["event_id"], records[0]["rows"], records[0]["message"]
    ('e-1', 3, 'scored')
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

__all__ = [
    "JsonFormatter",
    "bind",
    "bound",
    "capture_logs",
    "configure_logging",
    "get_logger",
    "in_functions_worker",
    "record_fields",
]

_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("scorehook_log_context", default={})  # noqa: B039 - never mutated, only replaced
_ROOT = "scorehook"
# Attributes every LogRecord has; anything else passed through ``extra=`` is a field of the line.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def get_logger(name: str) -> logging.Logger:
    """A logger under the ``scorehook`` tree, e.g. ``get_logger("scoring")`` → ``scorehook.scoring``."""
    return logging.getLogger(f"{_ROOT}.{name}" if not name.startswith(_ROOT) else name)


def bound() -> dict[str, Any]:
    """The correlation fields bound right now.

    Example:
        >>> with bind(model="m"):
        ...     bound()["model"]
        'm'
    """
    return dict(_CONTEXT.get())


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Bind correlation fields for the duration of the block (nested blocks add to the outer ones; ``None``
    values are left out)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def in_functions_worker() -> bool:
    """Whether this process runs under the Azure Functions Python worker (in Azure or ``func start``),
    whose handler on the root logger carries the app's logs to the host."""
    return any(name in sys.modules for name in ("azure_functions_worker", "proxy_worker")) or bool(
        os.environ.get("WEBSITE_INSTANCE_ID")
    )


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record carries: the bound correlation fields, then its ``extra`` (which win).

    Example:
        >>> with bind(event_id="e-1"):
        ...     record_fields(logging.makeLogRecord({"msg": "m", "rows": 2}))
        {'event_id': 'e-1', 'rows': 2}
    """
    fields = dict(_CONTEXT.get())
    fields.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
    return fields


# -- processors (structlog's shape: (logger, method name, event dict) -> event dict) ------------------------
def _fields(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    record = event.get("_record")
    if record is None:
        return event
    event["time"] = (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
    )
    event["level"] = record.levelname.lower()
    event["logger"] = record.name
    fields = record_fields(record)
    if "event" in fields:  # structlog's key for the message: a field of that name keeps its value elsewhere
        fields["event_field"] = fields.pop("event")
    event.update(fields)
    exc_info = event.get("exc_info")
    if isinstance(exc_info, tuple) and exc_info[0] is not None:
        event.setdefault("error_type", exc_info[0].__name__)
    return event


_PRE_CHAIN: list[Any] = [_fields]


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _order(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    head = {k: event.pop(k) for k in ("time", "level", "logger", "message") if k in event}
    return head | event


def _processor_formatter(renderer: str, colors: bool = False) -> logging.Formatter:
    import structlog

    def drop_time(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.pop("time", None)  # the console renderer prints its own timestamp
        return event

    meta = structlog.stdlib.ProcessorFormatter.remove_processors_meta
    if renderer == "console":
        processors: list[Any] = [
            meta,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False, key="timestamp"),
            drop_time,
            structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback),
        ]
    else:
        processors = [
            meta,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            _order,
            structlog.processors.JSONRenderer(
                serializer=json.dumps, default=_json_default, ensure_ascii=False
            ),
        ]
    return structlog.stdlib.ProcessorFormatter(processors=processors, foreign_pre_chain=_PRE_CHAIN)


class _LazyFormatter(logging.Formatter):
    renderer = "json"

    def __init__(self, colors: bool = False) -> None:
        super().__init__()
        self._colors = colors
        self._inner: logging.Formatter | None = None

    def format(self, record: logging.LogRecord) -> str:
        if self._inner is None:
            self._inner = _processor_formatter(self.renderer, self._colors)
        return self._inner.format(record)


class JsonFormatter(_LazyFormatter):
    """Formats a record as one JSON line: time, level, logger, message, bound fields, extras, exception."""

    def as_dict(self, record: logging.LogRecord) -> dict[str, Any]:
        """The line as a dict (what :func:`capture_logs` collects)."""
        return json.loads(self.format(record))


class ConsoleFormatter(_LazyFormatter):
    """A readable line for a terminal (structlog's ``ConsoleRenderer``): time, level, message, ``key=value``."""

    renderer = "console"


def _ours(handler: logging.Handler) -> bool:
    return bool(getattr(handler, "_scorehook", False))


def _remove_ours(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        if _ours(handler):
            logger.removeHandler(handler)
            handler.close()


def configure_logging(
    level: str = "INFO",
    log_file: str | None = None,
    stream: Any = None,
    console: bool = True,
    renderer: str = "auto",
    *,
    worker: bool | None = None,
) -> None:
    """Send the ``scorehook`` logger tree (and, outside the Functions worker, everything on the root
    logger) to the console and/or a file. Idempotent: a second call replaces what the first installed.

    ``renderer``: ``"json"``, ``"console"``, or ``"auto"`` (console when the stream is a terminal). The file
    always gets JSON lines. Under the Functions worker (``worker``, detected when ``None``) no console
    handler is added: the worker's root handler gets the records.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> configure_logging("INFO", stream=out, renderer="json", worker=False)
        >>> get_logger("demo").info("hello", extra={"rows": 1})
        >>> json.loads(out.getvalue())["rows"]
        1
        >>> configure_logging("INFO", console=False, worker=False)
    """
    if renderer not in ("auto", "json", "console"):
        raise ValueError(f"log renderer {renderer!r}: expected auto, json or console")
    worker = in_functions_worker() if worker is None else worker
    app = logging.getLogger(_ROOT)
    root = logging.getLogger()
    app.setLevel(level.upper())
    app.propagate = True
    _remove_ours(app)
    _remove_ours(root)
    handlers: list[logging.Handler] = []
    if (console or stream is not None) and not worker:
        out = stream or sys.stderr
        tty = bool(getattr(out, "isatty", lambda: False)())
        use_console = renderer == "console" or (renderer == "auto" and tty)
        console_handler = logging.StreamHandler(out)
        console_handler.setFormatter(ConsoleFormatter(colors=tty) if use_console else JsonFormatter())
        handlers.append(console_handler)
    if log_file:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(JsonFormatter())
        handlers.append(file_handler)
    target = app if worker else root  # under the worker, a file of our own still propagates to its handler
    for handler in handlers:
        handler._scorehook = True  # type: ignore[attr-defined]
        target.addHandler(handler)
    if not worker and root.level > logging.WARNING:
        root.setLevel(logging.WARNING)


class _CaptureHandler(logging.Handler):
    def __init__(self, sink: list[dict[str, Any]]) -> None:
        super().__init__(logging.DEBUG)
        self._sink = sink
        self._formatter = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self._sink.append(self._formatter.as_dict(record))


@contextlib.contextmanager
def capture_logs(level: int = logging.DEBUG) -> Iterator[list[dict[str, Any]]]:
    """Collect the structured lines logged under ``scorehook`` inside the block (a test helper)."""
    records: list[dict[str, Any]] = []
    root = logging.getLogger(_ROOT)
    handler = _CaptureHandler(records)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, old_level) if old_level else level)
    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
