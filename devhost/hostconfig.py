"""What devhost reads from ``host.json``, as the Functions host does: ``functionTimeout`` and the HTTP
concurrency limits (``extensions.http.maxConcurrentRequests``, ``extensions.http.maxOutstandingRequests``).

App settings override host.json the way they do in Azure (``AzureFunctionsJobHost__functionTimeout``,
``AzureFunctionsJobHost__extensions__http__maxConcurrentRequests``, ...); for tests,
``DEVHOST_FUNCTION_TIMEOUT`` (seconds) overrides the timeout as well. An explicit argument beats both.

Example:
    >>> config = HostConfig.from_dict({"functionTimeout": "00:10:00",
    ...                                "extensions": {"http": {"maxConcurrentRequests": 4}}})
    >>> config.function_timeout, config.max_concurrent_requests, config.max_outstanding_requests
    (600.0, 4, None)
    >>> HostConfig.from_dict({"functionTimeout": "00:10:00"}, {"DEVHOST_FUNCTION_TIMEOUT": "2.5"}).function_timeout
    2.5
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_FUNCTION_TIMEOUT", "HostConfig", "parse_timespan"]

DEFAULT_FUNCTION_TIMEOUT = 1800.0  # Flex Consumption / Premium default when host.json says nothing
_OVERRIDE = "AzureFunctionsJobHost__"
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


def parse_timespan(value: str) -> float | None:
    """``[d.]hh:mm:ss[.fff]`` → seconds; ``-1`` → ``None`` (no limit).

    Example:
        >>> parse_timespan("00:10:00"), parse_timespan("1.00:00:30"), parse_timespan("-1")
        (600.0, 86430.0, None)
    """
    value = str(value).strip()
    if value == "-1":
        return None
    match = _TIMESPAN.match(value)
    if not match:
        raise ValueError(f"functionTimeout {value!r} is not a timespan like 00:10:00")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _limit(value: Any) -> int | None:
    number = int(value)
    return None if number < 0 else number


@dataclass(frozen=True)
class HostConfig:
    """The host.json settings devhost enforces. ``None`` means unlimited."""

    function_timeout: float | None = DEFAULT_FUNCTION_TIMEOUT
    max_concurrent_requests: int | None = None
    max_outstanding_requests: int | None = None

    @classmethod
    def from_dict(cls, host_json: Mapping[str, Any], env: Mapping[str, str] | None = None) -> HostConfig:
        env = env or {}
        http = dict((host_json.get("extensions") or {}).get("http") or {})
        timeout: Any = host_json.get("functionTimeout")
        timeout = env.get(f"{_OVERRIDE}functionTimeout") or timeout
        seconds = DEFAULT_FUNCTION_TIMEOUT if timeout in (None, "") else parse_timespan(timeout)
        if env.get("DEVHOST_FUNCTION_TIMEOUT"):
            seconds = float(env["DEVHOST_FUNCTION_TIMEOUT"])
            seconds = None if seconds < 0 else seconds
        for key in ("maxConcurrentRequests", "maxOutstandingRequests"):
            override = env.get(f"{_OVERRIDE}extensions__http__{key}")
            if override:
                http[key] = override
        return cls(
            function_timeout=seconds,
            max_concurrent_requests=_limit(http.get("maxConcurrentRequests", -1)),
            max_outstanding_requests=_limit(http.get("maxOutstandingRequests", -1)),
        )

    @classmethod
    def load(cls, path: str | Path, env: Mapping[str, str] | None = None) -> HostConfig:
        """Read ``host.json`` at ``path`` (a missing file means the defaults)."""
        path = Path(path)
        return cls.from_dict(json.loads(path.read_text()) if path.exists() else {}, env)

    def app_settings(self) -> dict[str, str]:
        """The effective values as the app settings that override host.json in Azure, so the app (which
        stops its lease heartbeat at the function deadline) sees the deadline devhost enforces."""
        settings = {}
        if self.function_timeout is not None:
            total = self.function_timeout
            hours, rest = divmod(total, 3600)
            minutes, seconds = divmod(rest, 60)
            settings[f"{_OVERRIDE}functionTimeout"] = f"{int(hours):02d}:{int(minutes):02d}:{seconds:06.3f}"
        else:
            settings[f"{_OVERRIDE}functionTimeout"] = "-1"
        return settings
