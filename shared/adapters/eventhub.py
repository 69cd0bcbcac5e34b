"""The :class:`~shared.ports.EventSink` port on Event Hubs: ``EventHubProducerClient`` and ``EventDataBatch``.

Events are packed into as few batches as the hub's size limit allows, one batch per partition key (events
with one key stay in order on one partition): a batch that is full is sent and a new one started; an event
too large even for an empty batch is a ``TooLargeError`` naming its position, raised before anything is sent.
A failure of the service (``EventHubError``) is a ``TransientError``: the caller's delivery is retried, and
the ids in the events let consumers drop what was sent twice.

Example:
    >>> sink = EventHubSink.from_settings(settings, "scorehook-predictions")   # doctest: +SKIP
    >>> sink.send([OutEvent('{"id": "7", "prediction": 1}', partition_key="7")])   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from shared.errors import ConfigurationError, TooLargeError, TransientError
from shared.ports import OutEvent

__all__ = ["EventHubSink", "eventhub_sink", "pack"]


def pack(events: Sequence[OutEvent], new_batch: Callable[[str | None], Any]) -> Iterator[Any]:
    """``EventDataBatch`` objects holding ``events`` in order, one key per batch, each within its size limit.

    ``new_batch(partition_key)`` makes an empty batch (``producer.create_batch`` in Azure; offline,
    ``EventDataBatch(max_size_in_bytes=...)``). Raises ``TooLargeError`` for an event no batch can hold.

    Example:
        >>> from azure.eventhub import EventDataBatch
        >>> batches = list(pack([OutEvent("a" * 60), OutEvent("b" * 60), OutEvent("c" * 60)],
        ...                     lambda key: EventDataBatch(max_size_in_bytes=200, partition_key=key)))
        >>> [len(b) for b in batches]
        [2, 1]
    """
    from azure.eventhub import EventData

    groups: dict[str | None, list[tuple[int, OutEvent]]] = {}
    for position, event in enumerate(events):
        groups.setdefault(event.partition_key, []).append((position, event))
    for key, group in groups.items():
        batch = new_batch(key)
        for position, event in group:
            data = EventData(event.body)
            try:
                batch.add(data)
                continue
            except ValueError:  # this batch is full (or the event alone is too large)
                pass
            if len(batch):
                yield batch
                batch = new_batch(key)
                try:
                    batch.add(data)
                    continue
                except ValueError:
                    pass
            raise TooLargeError(
                f"output event {position} ({len(event.body.encode())} bytes) does not fit in an Event Hubs batch "
                f"of {batch.max_size_in_bytes} bytes", limit="max_event_bytes", position=position,
                bytes=len(event.body.encode()), max_bytes=batch.max_size_in_bytes,
            )  # fmt: skip
        if len(batch):
            yield batch


class EventHubSink:
    """Sends output events to one hub with an ``EventHubProducerClient`` (or anything with its
    ``create_batch`` / ``send_batch``). ``max_size_in_bytes`` caps each batch below the hub's own limit."""

    def __init__(self, producer: Any, max_size_in_bytes: int | None = None) -> None:
        self.producer, self.max_size_in_bytes = producer, max_size_in_bytes

    @classmethod
    def from_settings(cls, settings: Any, hub: str, credential: Any = None) -> EventHubSink:
        """A producer for ``hub`` on ``EventHubs__fullyQualifiedNamespace`` with managed identity."""
        from azure.eventhub import EventHubProducerClient

        namespace = settings.event_hubs_namespace
        if not namespace:
            raise ConfigurationError(
                "EventHubs__fullyQualifiedNamespace is not set: no Event Hubs namespace to send to",
                setting="EventHubs__fullyQualifiedNamespace",
            )
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        return cls(EventHubProducerClient(namespace, hub, credential))

    def _new_batch(self, key: str | None) -> Any:
        kwargs: dict[str, Any] = {"partition_key": key} if key is not None else {}
        if self.max_size_in_bytes is not None:
            kwargs["max_size_in_bytes"] = self.max_size_in_bytes
        return self.producer.create_batch(**kwargs)

    def send(self, events: Sequence[OutEvent]) -> None:
        """Send every event (all batches are packed before the first is sent)."""
        from azure.eventhub.exceptions import EventHubError

        try:
            batches = list(pack(events, self._new_batch))
            for batch in batches:
                self.producer.send_batch(batch)
        except EventHubError as exc:
            raise TransientError(f"Event Hubs send failed: {exc}") from exc

    def close(self) -> None:
        self.producer.close()


def eventhub_sink(settings: Any, hub: str) -> Any:
    """The sender to ``hub``: on the Event Hubs namespace (``EventHubs__fullyQualifiedNamespace``, managed
    identity), else on devhost's local hubs (``SCOREHOOK_EVENTHUBS_LOCAL``); ``ConfigurationError`` with neither.

    Example:
        >>> eventhub_sink(settings, "scorehook-monitoring").send([OutEvent('{"id": "k#1"}', "k")])   # doctest: +SKIP
    """
    if settings.event_hubs_namespace:
        return EventHubSink.from_settings(settings, hub)
    if settings.eventhubs_local:
        from shared.adapters.eventhub_local import LocalEventHubSink

        return LocalEventHubSink.from_settings(settings, hub)
    raise ConfigurationError(
        f"nothing to send to Event Hub {hub}: set EventHubs__fullyQualifiedNamespace (or SCOREHOOK_EVENTHUBS_LOCAL "
        "on devhost)", setting="EventHubs__fullyQualifiedNamespace", hub=hub,
    )  # fmt: skip
