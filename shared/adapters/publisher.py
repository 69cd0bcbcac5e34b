"""Publishing Scorehook's own events to an Event Grid custom topic (azure-eventgrid)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.errors import PublishError
from shared.logs import get_logger
from shared.settings import Settings

__all__ = ["EventGridPublisher", "NullPublisher", "publisher_from_settings"]

_log = get_logger("publisher")


class EventGridPublisher:
    """:class:`shared.ports.EventPublisher` on ``EventGridPublisherClient``, Event Grid schema: key auth when a
    key is given (devhost), else Entra ID with ``DefaultAzureCredential`` (Azure: the topic has no keys).

    Example:
        >>> EventGridPublisher("http://127.0.0.1:7071/topics/scorehook/api/events", "k1").publish(
        ...     "Scorehook.Scoring.Completed", "scored/a.csv", {"rows": 3})   # doctest: +SKIP
    """

    def __init__(self, endpoint: str, key: str | None = None) -> None:
        from azure.core.credentials import AzureKeyCredential
        from azure.eventgrid import EventGridPublisherClient

        from shared.adapters._azure import default_credential, transport_options

        self.endpoint = endpoint
        credential = AzureKeyCredential(key) if key else default_credential()
        self._client = EventGridPublisherClient(endpoint, credential, **transport_options())

    def publish(self, event_type: str, subject: str, data: Mapping[str, Any]) -> None:
        from azure.core.exceptions import AzureError
        from azure.eventgrid import EventGridEvent

        from shared.telemetry import with_traceparent

        # the Event Grid schema has no extension attributes: the W3C trace context travels in data
        event = EventGridEvent(
            subject=subject, event_type=event_type, data=with_traceparent(data), data_version="1.0"
        )
        try:
            self._client.send([event])
        except AzureError as exc:
            raise PublishError(f"publishing {event_type} to {self.endpoint} failed: {exc}") from exc


class NullPublisher:
    """Used when no topic is configured: the event is only logged."""

    def publish(self, event_type: str, subject: str, data: Mapping[str, Any]) -> None:
        _log.info(
            "event not published (no topic configured)", extra={"event_type": event_type, "subject": subject}
        )


def publisher_from_settings(settings: Settings) -> EventGridPublisher | NullPublisher:
    """The configured publisher (keyless: Entra ID), or a :class:`NullPublisher` when no topic endpoint is set."""
    if settings.events_topic_endpoint:
        return EventGridPublisher(settings.events_topic_endpoint, settings.events_topic_key)
    return NullPublisher()
