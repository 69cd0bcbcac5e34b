"""What in this process has stopped working for good (a timer whose loop died, a poller): ``/api/health``
reports it instead of answering ``ok``.

The runtime that runs the functions (devhost's timers here; nothing in Azure, whose host owns its timers)
reports a component that stopped; the health function lists them.

Example:
    >>> report_stopped("timer:drift_monitor", "ValueError: bad schedule")
    >>> stopped()["timer:drift_monitor"]["error"]
    'ValueError: bad schedule'
    >>> report_running("timer:drift_monitor"); "timer:drift_monitor" in stopped()
    False
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["report_running", "report_stopped", "stopped"]

_lock = threading.Lock()
_stopped: dict[str, dict[str, Any]] = {}


def report_stopped(component: str, error: str) -> None:
    """``component`` stopped with ``error`` (it stays reported until it runs again)."""
    with _lock:
        _stopped[component] = {"error": error, "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def report_running(component: str) -> None:
    """``component`` runs (again)."""
    with _lock:
        _stopped.pop(component, None)


def stopped() -> dict[str, dict[str, Any]]:
    """Every component that stopped: name -> ``{"error", "since"}``."""
    with _lock:
        return {name: dict(info) for name, info in _stopped.items()}
