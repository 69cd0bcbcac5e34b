"""Where the CLI's settings come from: ``--settings FILE`` (or ``SCOREHOOK_SETTINGS``), else
``local.settings.json`` in the current directory when there is one, overridden by the environment."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from shared.errors import ConfigurationError

__all__ = ["load_settings", "local_settings_file", "settings_document"]


def local_settings_file(path: str | None) -> Path | None:
    """The settings file to read: the one named (it must exist), else ``./local.settings.json`` if there.

    Example:
        >>> local_settings_file(None) is None or local_settings_file(None).name == "local.settings.json"
        True
    """
    named = path or os.environ.get("SCOREHOOK_SETTINGS")
    if named:
        candidate = Path(named).expanduser()
        if not candidate.is_file():
            raise ConfigurationError(f"settings file {named} does not exist", setting="--settings")
        return candidate
    candidate = Path("local.settings.json")
    return candidate if candidate.is_file() else None


def settings_document(path: str | None) -> dict[str, Any]:
    """The settings file as a dict (``{}`` when there is none); unreadable JSON is a configuration error."""
    found = local_settings_file(path)
    if found is None:
        return {}
    try:
        doc = json.loads(found.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"settings file {found} is not readable JSON: {exc}", setting="--settings"
        ) from exc
    if not isinstance(doc, dict):
        raise ConfigurationError(f"settings file {found} is not a JSON object", setting="--settings")
    return doc


def load_settings(path: str | None) -> Any:
    """App settings: the file's ``Values`` overridden by the environment.

    Example:
        >>> load_settings(None).failed_container   # doctest: +SKIP
        'failed'
    """
    from shared.settings import Settings

    values = settings_document(path).get("Values") or {}
    env = {str(k): str(v) for k, v in values.items() if v is not None}
    env.update(os.environ)
    return Settings.from_env(env)
