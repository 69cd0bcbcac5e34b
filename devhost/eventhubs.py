"""devhost's Event Hubs: the extension played locally over a partitioned store in Azurite.

* **Hubs**: each event is one blob ``eventhubs/<hub>/<partition>/<sequence>.json`` (a JSON envelope: the body in
  base64, enqueued time, partition key, offset). Sequence numbers grow by one per partition; a sender takes the
  next one with a create-only write, so two senders never share one. ``partition_key`` picks the partition
  by a stable hash (one key, one partition, in order); without one, partitions take turns.
* **Checkpoints**: as the extension's blob checkpoint store keeps them, one blob per consumer group and
  partition, ``azure-webjobs-eventhub/<namespace>/<hub>/<consumergroup>/checkpoint/<partition>`` with the
  ``sequencenumber`` and ``offset`` metadata.
* **Runner**: a thread per ``eventHubTrigger`` function reads each partition after its checkpoint (up to
  ``maxEventBatchSize`` events), builds real ``func.EventHubEvent`` objects with the library's
  ``EventHubTriggerConverter`` (cardinality many or one), invokes the function, and checkpoints only after the
  function returned and its outputs were written. A failed invocation is not checkpointed: the same batch comes
  again after the retry policy's delay (at-least-once; consumers deduplicate by the records' ids).
* **Output binding** (type ``eventHub``): each value is one event sent to the named hub.

``DEVHOST_EVENTHUB_CRASH_FILE`` (fault injection for tests): when that file exists after an invocation's
outputs were written, devhost removes it and exits at once, before the checkpoint, as a host that crashes there.

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
import logging
import os
import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

__all__ = ["EventHubRunner", "LocalEventHubs", "StoredEvent", "send_output"]

log = logging.getLogger("devhost.eventhubs")
CONTAINER = "eventhubs"
CHECKPOINTS = "azure-webjobs-eventhub"
NAMESPACE = "devhost.servicebus.windows.net"
DEFAULT_PARTITIONS = 2
DEFAULT_BATCH = 100  # the extension's maxEventBatchSize default


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
        return cls(BlobServiceClient.from_connection_string(connection), count)

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


def _datum(kind: str, value: Any) -> Any:
    from azure.functions.meta import Datum

    return Datum(type=kind, value=value)


def trigger_input(events: Sequence[StoredEvent], hub: str, consumer_group: str, many: bool) -> Any:
    """``func.EventHubEvent`` objects (a list when ``many``) built by the library's trigger converter from the
    data and metadata the extension sends the worker."""
    from azure.functions.eventhub import EventHubTriggerConverter

    context = {"ConsumerGroup": consumer_group, "EventHubName": hub, "PartitionId": events[0].partition,
               "FullyQualifiedNamespace": NAMESPACE}  # fmt: skip
    if not many:
        event = events[0]
        metadata = {"SystemProperties": _datum("json", json.dumps(event.system_properties())),
                    "PartitionContext": _datum("json", json.dumps(context)),
                    "EnqueuedTimeUtc": _datum("string", event.system_properties()["EnqueuedTimeUtc"]),
                    "SequenceNumber": _datum("int", event.sequence_number),
                    "Offset": _datum("string", str(event.offset))}  # fmt: skip
        if event.partition_key is not None:
            metadata["PartitionKey"] = _datum("string", event.partition_key)
        return EventHubTriggerConverter.decode(_datum("bytes", event.body), trigger_metadata=metadata)
    properties = [e.system_properties() for e in events]
    metadata = {
        "SystemPropertiesArray": _datum("json", json.dumps(properties)),
        "PartitionContext": _datum("json", json.dumps(context)),
        "EnqueuedTimeUtcArray": _datum("json", json.dumps([p["EnqueuedTimeUtc"] for p in properties])),
        "SequenceNumberArray": _datum("json", json.dumps([e.sequence_number for e in events])),
        "OffsetArray": _datum("json", json.dumps([str(e.offset) for e in events])),
        "PartitionKeyArray": _datum("json", json.dumps([e.partition_key for e in events])),
    }
    data = _datum("collection_bytes", SimpleNamespace(bytes=[e.body for e in events]))
    return EventHubTriggerConverter.decode(data, trigger_metadata=metadata)


def send_output(env: Mapping[str, str], binding: Mapping[str, Any], values: Sequence[Any]) -> None:
    """An ``eventHub`` output binding's values, one event each, to the local hub it names."""
    from devhost.triggers import resolve_setting

    hub = resolve_setting(str(binding["eventHubName"]))
    hubs = _hubs(env)
    for value in values:
        hubs.send(hub, [value if isinstance(value, bytes | str) else json.dumps(value)])


_shared: dict[str, LocalEventHubs] = {}


def _hubs(env: Mapping[str, str]) -> LocalEventHubs:
    connection = env.get("AzureWebJobsStorage") or env.get("DataStorage") or ""
    if connection not in _shared:
        partitions = int(env.get("DEVHOST_EVENTHUB_PARTITIONS", DEFAULT_PARTITIONS))
        _shared[connection] = LocalEventHubs.from_connection_string(connection, partitions)
    return _shared[connection]


class EventHubRunner:
    """Runs every ``eventHubTrigger`` function of a host over the local hubs, as the extension does."""

    def __init__(self, host: Any, env: Mapping[str, str], interval: float = 0.2,
                 max_batch: int | None = None) -> None:  # fmt: skip
        self.host, self.env, self.interval = host, dict(env), interval
        self.max_batch = max_batch or int(self.env.get("DEVHOST_EVENTHUB_MAX_BATCH", DEFAULT_BATCH))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> EventHubRunner:
        for info in self.host.by_trigger("eventHubTrigger"):
            thread = threading.Thread(target=self._run, args=(info,), name=f"eventhub-{info.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self, info: Any) -> None:
        from shared.health import report_running, report_stopped

        component = f"eventhub:{info.name}"
        report_running(component)
        try:
            self._loop(info)
        except Exception as exc:  # an unset hub setting, a bug: reported by /api/health, never silently gone
            error = f"{type(exc).__name__}: {exc}"
            report_stopped(component, error)
            log.exception("event hub trigger %s stopped: %s", info.name, error)

    def _loop(self, info: Any) -> None:
        from devhost.triggers import resolve_setting, retry_delay

        hub = resolve_setting(str(info.trigger["eventHubName"]))
        group = resolve_setting(str(info.trigger.get("consumerGroup") or "$Default"))
        many = str(info.trigger.get("cardinality", "many")).lower() == "many"
        policy = info.settings.get("retry_policy") or {}
        hubs, failures = _hubs(self.env), 0
        while not self._stop.is_set():
            busy = False
            for partition in hubs.partition_ids():
                try:
                    events = hubs.read(hub, partition, hubs.checkpoint(hub, group, partition),
                                       self.max_batch if many else 1)  # fmt: skip
                except Exception as exc:  # storage away for a moment: the next round tries again
                    log.warning("reading event hub %s partition %s failed: %s", hub, partition, exc)
                    continue
                if not events:
                    continue
                busy = True
                if self._deliver(info, hubs, hub, group, events, many):
                    failures = 0
                else:  # not checkpointed: the same events come again after the retry delay
                    failures += 1
                    delay = retry_delay(policy, min(failures - 1, 16)) if policy else self.interval
                    if self._stop.wait(max(delay, self.interval)):
                        return
            if not busy:
                self._stop.wait(self.interval)

    def _deliver(self, info: Any, hubs: LocalEventHubs, hub: str, group: str, events: list[StoredEvent],
                 many: bool) -> bool:  # fmt: skip
        from devhost.host import InvocationError

        try:
            self.host.invoke(info.name, trigger_input(events, hub, group, many))
        except InvocationError:
            return False  # logged by the host
        crash = self.env.get("DEVHOST_EVENTHUB_CRASH_FILE") or os.environ.get("DEVHOST_EVENTHUB_CRASH_FILE")
        if crash and os.path.exists(crash):
            os.remove(crash)
            log.error("DEVHOST_EVENTHUB_CRASH_FILE: exiting before the checkpoint of %s/%s %d-%d", hub,
                      events[0].partition, events[0].sequence_number, events[-1].sequence_number)  # fmt: skip
            logging.shutdown()
            os._exit(70)
        hubs.set_checkpoint(hub, group, events[0].partition, events[-1])
        return True
