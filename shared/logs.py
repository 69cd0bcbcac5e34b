"""Structured logging: one JSON object per line, correlation fields bound once per invocation.

Correlation fields (``event_id``, ``invocation_id``, ``blob``, ``model``, ``model_version``, ``job_id``,
...) live in a ``contextvars.ContextVar``, so every log line written while they are bound carries them,
across function calls and threads started with ``contextvars.copy_context()``.

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
import sys
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["JsonFormatter", "bind", "bound", "capture_logs", "configure_logging", "get_logger"]

_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("scorehook_log_context", default={})  # noqa: B039 - never mutated, only replaced
_ROOT = "scorehook"
# Attributes every LogRecord has; anything else passed through ``extra=`` is a field of the line.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def get_logger(name: str) -> logging.Logger:
    """A logger under the ``scorehook`` tree, e.g. ``get_logger("scoring")`` → ``scorehook.scoring``."""
    return logging.getLogger(f"{_ROOT}.{name}" if not name.startswith(_ROOT) else name)


def bound() -> dict[str, Any]:
    """The correlation fields bound right now."""
    return dict(_CONTEXT.get())


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Bind correlation fields for the duration of the block (nested blocks add to the outer ones)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message, bound fields, extras, exception."""

    def as_dict(self, record: logging.LogRecord) -> dict[str, Any]:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_CONTEXT.get())
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = self.formatException(record.exc_info)
            line.setdefault("error_type", record.exc_info[0].__name__)
        return line

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.as_dict(record), default=_json_default, ensure_ascii=False)


def configure_logging(
    level: str = "INFO", log_file: str | None = None, stream: Any = None, console: bool = True
) -> None:
    """Send the ``scorehook`` logger tree to the console and/or a file as JSON lines. Idempotent."""
    root = logging.getLogger(_ROOT)
    root.setLevel(level.upper())
    root.propagate = False
    for handler in list(root.handlers):
        if getattr(handler, "_scorehook", False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = (
        [logging.StreamHandler(stream or sys.stderr)] if console or stream else []
    )
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(JsonFormatter())
        handler._scorehook = True  # type: ignore[attr-defined]
        root.addHandler(handler)


class _CaptureHandler(logging.Handler):
    def __init__(self, sink: list[dict[str, Any]]) -> None:
        super().__init__(logging.DEBUG)
        self._sink = sink
        self._formatter = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self._sink.append(json.loads(json.dumps(self._formatter.as_dict(record), default=_json_default)))


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
