"""Event Hubs on one machine: partitioned hubs and their checkpoints as blobs in Azurite (devhost's hubs).

* **Hubs**: each event is one blob ``eventhubs/<hub>/<partition>/<sequence>.json`` (a JSON envelope: the body in
  base64, enqueued time, partition key, offset). Sequence numbers grow by one per partition; a sender takes the
  next one with a create-only write, so two senders never share one. ``partition_key`` picks the partition
  by a stable hash (one key, one partition, in order); without one, partitions take turns.
* **Checkpoints**: as the extension's blob checkpoint store keeps them, one blob per consumer group and
  partition, ``azure-webjobs-eventhub/<namespace>/<hub>/<consumergroup>/checkpoint/<partition>`` with the
  ``sequencenumber`` and ``offset`` metadata.
* :class:`LocalEventHubSink` is the :class:`~shared.ports.EventSink` port on them: what the app sends where
  Azure has ``EventHubProducerClient`` (``SCOREHOOK_EVENTHUBS_LOCAL``). devhost (``devhost/eventhubs.py``) reads
  the same store as the Functions extension would.

Example:
    >>> hubs = LocalEventHubs.from_connection_string(conn)                      # doctest: +SKIP
    >>> hubs.send("scorehook-records", [b'{"id": "1", "x01": 0.5}'])              # doctest: +SKIP
    [('0', 0)]
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import threading
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.ports import OutEvent

__all__ = ["CHECKPOINTS", "CONTAINER", "NAMESPACE", "LocalEventHubSink", "LocalEventHubs", "StoredEvent"]

CONTAINER = "eventhubs"
CHECKPOINTS = "azure-webjobs-eventhub"
NAMESPACE = "devhost.servicebus.windows.net"
DEFAULT_PARTITIONS = 2


@dataclass(frozen=True)
class StoredEvent:
    """One event of a local hub."""

    partition: str
    sequence_number: int
    body: bytes
    enqueued_time: datetime
    partition_key: str | None
    offset: int

    def system_properties(self) -> dict[str, Any]:
        """The event's system properties as the extension hands them to the worker."""
        return {
            "SequenceNumber": self.sequence_number, "Offset": self.offset, "PartitionKey": self.partition_key,
            "EnqueuedTimeUtc": self.enqueued_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }  # fmt: skip


class LocalEventHubs:
    """Partitioned hubs and checkpoints in Azurite blobs (see the module docstring)."""

    def __init__(self, service: Any, partitions: int = DEFAULT_PARTITIONS, namespace: str = NAMESPACE) -> None:
        self.service, self.partitions, self.namespace = service, partitions, namespace
        self._turn = itertools.count()
        self._lock = threading.Lock()
        for container in (CONTAINER, CHECKPOINTS):
            with contextlib.suppress(Exception):  # already there
                service.create_container(container)

    @classmethod
    def from_connection_string(cls, connection: str, partitions: int | None = None) -> LocalEventHubs:
        from azure.storage.blob import BlobServiceClient

        count = partitions or int(os.environ.get("DEVHOST_EVENTHUB_PARTITIONS", DEFAULT_PARTITIONS))
        from shared.adapters._azure import transport_options

        return cls(BlobServiceClient.from_connection_string(connection, **transport_options()), count)

    def partition_ids(self) -> list[str]:
        return [str(i) for i in range(self.partitions)]

    def _partition(self, partition_key: str | None) -> str:
        if partition_key is not None:
            return str(zlib.crc32(partition_key.encode()) % self.partitions)
        with self._lock:
            return str(next(self._turn) % self.partitions)

    # -- sending ---------------------------------------------------------------------------------
    def send(
        self, hub: str, bodies: Iterable[bytes | str], partition_key: str | None = None, partition: str | None = None
    ) -> list[tuple[str, int]]:
        """Append events to ``hub``; returns ``(partition, sequence number)`` of each."""
        from azure.core.exceptions import ResourceExistsError

        container = self.service.get_container_client(CONTAINER)
        placed = []
        following: dict[str, int] = {}  # partition -> the next sequence number to try (one listing each)
        for body in bodies:
            data = body.encode() if isinstance(body, str) else bytes(body)
            target = partition if partition is not None else self._partition(partition_key)
            sequence = following.get(target)
            if sequence is None:
                sequence = self.last_sequence(hub, target) + 1
            while True:
                envelope = {"body": base64.b64encode(data).decode(), "partition_key": partition_key,
                            "enqueued_time": datetime.now(UTC).isoformat(), "offset": sequence}  # fmt: skip
                try:
                    container.upload_blob(_name(hub, target, sequence), json.dumps(envelope), overwrite=False)
                    break
                except ResourceExistsError:  # another sender took it
                    sequence += 1
            placed.append((target, sequence))
            following[target] = sequence + 1
        return placed

    # -- reading ---------------------------------------------------------------------------------
    def last_sequence(self, hub: str, partition: str) -> int:
        """The highest sequence number in a partition (-1 when empty)."""
        names = [b.name for b in self.service.get_container_client(CONTAINER).list_blobs(f"{hub}/{partition}/")]
        return max((int(n.rsplit("/", 1)[1].split(".")[0]) for n in names), default=-1)

    def read(self, hub: str, partition: str, after: int = -1, limit: int | None = None) -> list[StoredEvent]:
        """The events of one partition after sequence number ``after``, in order (at most ``limit``)."""
        container = self.service.get_container_client(CONTAINER)
        numbers = sorted(
            n for n in (int(b.name.rsplit("/", 1)[1].split(".")[0]) for b in container.list_blobs(f"{hub}/{partition}/"))
            if n > after
        )[:limit]  # fmt: skip
        events = []
        for number in numbers:
            envelope = json.loads(container.download_blob(_name(hub, partition, number)).readall())
            events.append(StoredEvent(partition, number, base64.b64decode(envelope["body"]),
                                      datetime.fromisoformat(envelope["enqueued_time"]),
                                      envelope.get("partition_key"), int(envelope.get("offset", number))))  # fmt: skip
        return events

    def read_all(self, hub: str) -> list[StoredEvent]:
        """Every event of every partition (partition order, then sequence order)."""
        return [e for p in self.partition_ids() for e in self.read(hub, p)]

    # -- checkpoints -----------------------------------------------------------------------------
    def _checkpoint_blob(self, hub: str, consumer_group: str, partition: str) -> Any:
        name = f"{self.namespace}/{hub}/{consumer_group.lower()}/checkpoint/{partition}"
        return self.service.get_blob_client(CHECKPOINTS, name)

    def checkpoint(self, hub: str, consumer_group: str, partition: str) -> int:
        """The sequence number checkpointed for a consumer group's partition (-1: none yet)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            metadata = self._checkpoint_blob(hub, consumer_group, partition).get_blob_properties().metadata
        except ResourceNotFoundError:
            return -1
        return int(metadata.get("sequencenumber", -1))

    def set_checkpoint(self, hub: str, consumer_group: str, partition: str, event: StoredEvent) -> None:
        self._checkpoint_blob(hub, consumer_group, partition).upload_blob(
            b"", overwrite=True, metadata={"sequencenumber": str(event.sequence_number), "offset": str(event.offset)}
        )


def _name(hub: str, partition: str, sequence: int) -> str:
    return f"{hub}/{partition}/{sequence:012d}.json"


class LocalEventHubSink:
    """An :class:`~shared.ports.EventSink` sending to one local hub (events with one key stay in order on
    one partition); a storage error is a ``TransientError`` (``StorageUnavailableError``).

    Example:
        >>> LocalEventHubSink(hubs, "scorehook-predictions").send([OutEvent('{"id": "1"}', "k")])   # doctest: +SKIP
    """

    def __init__(self, hubs: LocalEventHubs, hub: str) -> None:
        self.hubs, self.hub = hubs, hub

    @classmethod
    def from_settings(cls, settings: Any, hub: str) -> LocalEventHubSink:
        """The local hub ``hub`` in the ``DataStorage`` account (Azurite)."""
        from shared.errors import ConfigurationError

        connection = settings.data_connection_string or ""
        if not connection:
            raise ConfigurationError("SCOREHOOK_EVENTHUBS_LOCAL needs a DataStorage connection string (Azurite)",
                                     setting="DataStorage")  # fmt: skip
        return cls(LocalEventHubs.from_connection_string(connection), hub)

    def send(self, events: Sequence[OutEvent]) -> None:
        from shared.adapters._azure import storage_errors

        with storage_errors(f"send to the local event hub {self.hub}"):
            run: list[OutEvent] = []
            for event in events:
                if run and event.partition_key != run[0].partition_key:
                    self.hubs.send(self.hub, [e.body for e in run], partition_key=run[0].partition_key)
                    run = []
                run.append(event)
            if run:
                self.hubs.send(self.hub, [e.body for e in run], partition_key=run[0].partition_key)
