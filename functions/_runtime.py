"""Wiring shared by the blueprints: the services built once per process from the app settings,
and the translation of ``azure.functions`` trigger objects into plain dicts for ``shared.events``."""

from __future__ import annotations

import threading
from typing import Any

import azure.functions as func

from shared.logs import configure_logging
from shared.settings import get_settings

__all__ = [
    "configure_app_logging",
    "deployment_service",
    "drift_monitor",
    "event_as_dict",
    "ledger",
    "queue",
    "scoring_service",
    "streaming_service",
]


_lock = threading.Lock()
_services: dict[str, Any] = {}


def configure_app_logging() -> None:
    """Send the app's logs to JSON lines as its settings say, once per process; with settings that do not
    read, to the console (the error surfaces where the settings are used). Runs when the blueprints are
    imported, so a line an entry point writes before any service is built (a refused delivery) is JSON too."""
    from shared.errors import ConfigurationError

    with _lock:
        if "logging" in _services:
            return
        try:
            settings = get_settings()
            configure_logging(settings.log_level, settings.log_file, console=settings.log_console,
                              renderer=settings.log_format)  # fmt: skip
        except (ConfigurationError, ValueError, OSError):
            configure_logging()
        _services["logging"] = True


def scoring_service() -> Any:
    """The scoring use case with its real adapters: built once per process, even when the first
    invocations arrive together (they share one model cache)."""
    from shared.services import build_scoring_service

    return _service("scoring", build_scoring_service)


def _service(name: str, build: Any) -> Any:
    service = _services.get(name)
    if service is None:
        configure_app_logging()
        with _lock:
            if name not in _services:
                _services[name] = build(get_settings())
            service = _services[name]
    return service


def streaming_service() -> Any:
    """The Event Hubs streaming use case, on the scoring service's blob store, model cache and drift monitor."""
    from shared.streaming import StreamingService

    scoring = scoring_service()  # built first: _service holds the lock while it builds
    return _service(
        "streaming", lambda settings: StreamingService.from_settings(settings, scoring.blobs, scoring.models, scoring.drift)
    )


def deployment_service() -> Any:
    """The deployment flow with its real adapters, built once per process."""
    from shared.services import build_deployment_service

    return _service("deployment", build_deployment_service)


def drift_monitor() -> Any:
    """The drift monitor with its real adapters, built once per process (shared with scoring when both run)."""
    from shared.services import build_drift_monitor

    service = _services.get("scoring")
    if service is not None and service.drift is not None:
        return service.drift
    return _service("drift", build_drift_monitor)


def ledger() -> Any:
    """The ledger (Azure Table), for entry points that deduplicate deliveries themselves."""
    from shared.adapters import TableLedger

    return _service("ledger", TableLedger.from_settings)


def queue(name: str) -> Any:
    """The storage queue ``name`` on ``DataStorage``, for entry points that must know a message is queued
    before they answer (an output binding is written only after the function returns)."""
    from shared.adapters.queue import StorageQueue

    return _service(f"queue:{name}", lambda settings: StorageQueue.from_settings(settings, name))


def event_as_dict(event: func.EventGridEvent | func.CloudEvent) -> dict[str, Any]:
    """The wire form of a trigger's event object, in its own schema, for ``shared.events.parse_event``."""
    if isinstance(event, func.CloudEvent):
        body: dict[str, Any] = {
            "specversion": event.specversion,
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": event.time.isoformat() if event.time else None,
            "datacontenttype": event.datacontenttype,
            "data": event.get_json(),
        }
        body.update(getattr(event, "extension_attrs", None) or {})
        return {k: v for k, v in body.items() if v is not None}
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": event.event_time.isoformat() if event.event_time else None,
        "data": event.get_json(),
        "dataVersion": event.data_version,
    }


configure_app_logging()
