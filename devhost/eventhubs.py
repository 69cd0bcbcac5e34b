"""devhost's Event Hubs: the extension played locally over a partitioned store in Azurite.

* **Hubs and checkpoints**: :class:`~shared.adapters.eventhub_local.LocalEventHubs` (one blob per event in
  Azurite, partitioned, and the extension's checkpoint blobs); the app sends to the same store through
  :class:`~shared.adapters.eventhub_local.LocalEventHubSink` when ``SCOREHOOK_EVENTHUBS_LOCAL`` is set.
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

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from shared.adapters.eventhub_local import CHECKPOINTS, CONTAINER, NAMESPACE, LocalEventHubs, StoredEvent

__all__ = ["CHECKPOINTS", "CONTAINER", "NAMESPACE", "EventHubRunner", "LocalEventHubs", "StoredEvent", "send_output"]

log = logging.getLogger("devhost.eventhubs")
DEFAULT_PARTITIONS = 2
DEFAULT_BATCH = 100  # the extension's maxEventBatchSize default


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
