"""devhost's own messages in the app's structured stream: its loggers, Python warnings and uncaught exceptions.

:func:`configure_devhost_logging` installs ``shared.logs`` handlers on the root logger (a console renderer on
a terminal, JSON lines otherwise, and JSON lines in ``log_file``), routes ``warnings.warn`` through logging
(``py.warnings``) and replaces ``sys.excepthook`` and ``threading.excepthook``, so a traceback in devhost or
in one of its threads is one structured line (``exception`` holds the traceback) instead of plain text on
stderr. When the app later configures logging from its settings, the handlers are replaced, not doubled.

Example:
    >>> configure_devhost_logging(log_file=None)   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType
from typing import Any

from shared.logs import configure_logging

__all__ = ["configure_devhost_logging"]

log = logging.getLogger("devhost")


def _excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    log.critical("uncaught exception", exc_info=(kind, value, tb), extra={"error_type": kind.__name__})


def _thread_excepthook(args: Any) -> None:
    if args.exc_type is SystemExit:
        return
    thread = args.thread.name if args.thread is not None else None
    log.error("uncaught exception in a thread", exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
              extra={"thread_name": thread, "error_type": args.exc_type.__name__})  # fmt: skip


def configure_devhost_logging(
    level: str = "WARNING", log_file: str | None = None, stream: Any = None, renderer: str = "auto"
) -> None:
    """Send devhost's loggers (at ``level``: its INFO lines name every invocation), Python warnings and
    uncaught exceptions to the structured stream."""
    configure_logging("INFO", log_file, stream=stream, renderer=renderer, worker=False)
    logging.getLogger("devhost").setLevel(level.upper())
    logging.captureWarnings(True)
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
