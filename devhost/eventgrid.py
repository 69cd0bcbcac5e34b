"""The local Event Grid: system events for new blobs in Azurite, custom topics, and delivery with retries
and dead-lettering, to the same webhook endpoints Azure Event Grid calls on a Functions app.

Subscriptions are read from one small JSON file (``devhost/subscriptions.json``) that mirrors the Event
Grid subscriptions ``infra/`` declares. Deliveries go over HTTP to the host's webhook URLs, one event
per request (``maxEventsPerBatch: 1``), and follow Azure's rules: 200-204 is success; 400 and 413 are
dead-lettered at once; anything else is retried on the (locally shortened) schedule until
``maxDeliveryAttempts`` or the event's time to live is exhausted, then dead-lettered.

With a :class:`~devhost.eventgrid_store.EventGridStore`, pending deliveries (queued, in flight, waiting for
a retry) and the announced blobs live in an Azurite table: after devhost is killed and started again, the
deliveries are resent with their attempt counts, and blobs that arrived (or changed) meanwhile are
announced. The attempt in flight when devhost died counts as made (its outcome is unknown, as for an
Event Grid delivery that timed out).

A new blob's delivery starts at once and is persisted beside it (a persister thread saves it, then marks
the blob announced), so the table is never on the path from upload to invocation. Should devhost die in
the few milliseconds before the save, the blob is not marked announced either, and the next start
announces it again: delivered at least once either way.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devhost.eventgrid_store import EventGridStore, EventGridStoreError, normalise_etag, state_table_name
from shared.adapters.listing import ListedBlob, listed_blobs  # the watcher's scan: see that module

__all__ = [
    "EventGridStore",
    "EventGridStoreError",
    "ListedBlob",
    "LocalEventGrid",
    "Subscription",
    "listed_blobs",
    "load_subscriptions",
    "state_table_name",
    "storage_topic",
    "to_cloudevent",
]

log = logging.getLogger("devhost.eventgrid")

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
_LOCAL_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
_NO_RETRY = {400: "BadRequest", 413: "RequestEntityTooLarge"}
_OUTCOMES = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    408: "TimedOut",
    503: "ServiceUnavailable",
}


def storage_topic(account: str) -> str:
    """The ARM id Event Grid uses as ``topic`` for a storage account's system events."""
    return (
        f"/subscriptions/{_LOCAL_SUBSCRIPTION}/resourceGroups/scorehook-local/providers/"
        f"Microsoft.Storage/storageAccounts/{account}"
    )


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def to_cloudevent(event: dict[str, Any]) -> dict[str, Any]:
    """An Event Grid schema event in CloudEvents 1.0 form, as Event Grid converts it for a subscription."""
    if "specversion" in event:
        return event
    return {
        "specversion": "1.0",
        "id": event["id"],
        "source": event.get("topic", ""),
        "subject": event.get("subject", ""),
        "type": event["eventType"],
        "time": event.get("eventTime"),
        "datacontenttype": "application/json",
        "data": event.get("data"),
    }


@dataclass
class Subscription:
    """One event subscription: which events (source, types, subject filters) go to which endpoint."""

    name: str
    function: str | None = None
    endpoint_type: str = "eventgrid"  # "eventgrid" | "blobs" | "webhook"
    webhook_url: str | None = None
    storage_account: str | None = None
    topic: str | None = None
    event_types: tuple[str, ...] = ()
    subject_begins_with: str = ""
    subject_ends_with: str = ""
    schema: str = "EventGridSchema"
    max_attempts: int = 30
    ttl_minutes: float = 1440
    dead_letter_container: str | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Subscription:
        source, endpoint = raw.get("source", {}), raw.get("endpoint", {})
        retry, filters = raw.get("retryPolicy", {}), raw.get("filter", {})
        return cls(
            name=raw["name"],
            function=endpoint.get("functionName"),
            endpoint_type=endpoint.get("type", "eventgrid"),
            webhook_url=endpoint.get("url"),
            storage_account=source.get("storageAccount"),
            topic=source.get("topic"),
            event_types=tuple(filters.get("includedEventTypes", ())),
            subject_begins_with=filters.get("subjectBeginsWith", ""),
            subject_ends_with=filters.get("subjectEndsWith", ""),
            schema=raw.get("eventDeliverySchema", "EventGridSchema"),
            max_attempts=int(retry.get("maxDeliveryAttempts", 30)),
            ttl_minutes=float(retry.get("eventTimeToLiveInMinutes", 1440)),
            dead_letter_container=(raw.get("deadLetterDestination") or {}).get("container"),
        )

    @property
    def watched_container(self) -> str | None:
        """The container a storage subscription's subject filter names (what the watcher polls)."""
        prefix = "/blobServices/default/containers/"
        if self.storage_account and self.subject_begins_with.startswith(prefix):
            return self.subject_begins_with[len(prefix) :].split("/", 1)[0] or None
        return None

    def matches(self, event: dict[str, Any], *, account: str | None = None, topic: str | None = None) -> bool:
        if account is not None and account != self.storage_account:
            return False
        if topic is not None and topic != self.topic:
            return False
        event_type = event.get("eventType") or event.get("type") or ""
        if self.event_types and event_type.lower() not in {t.lower() for t in self.event_types}:
            return False
        subject = event.get("subject") or ""
        return subject.startswith(self.subject_begins_with) and subject.endswith(self.subject_ends_with)

    def path(self) -> str:
        if self.endpoint_type == "blobs":
            return f"/runtime/webhooks/blobs?functionName=Host.Functions.{self.function}"
        if self.endpoint_type == "webhook":
            return self.webhook_url or ""
        return f"/runtime/webhooks/eventgrid?functionName={self.function}"


def load_subscriptions(path: str | Path) -> tuple[list[Subscription], dict[str, Any], dict[str, Any]]:
    """Read the subscriptions file: (subscriptions, topics, local delivery options)."""
    raw = json.loads(Path(path).read_text())
    return (
        [Subscription.from_dict(s) for s in raw.get("subscriptions", [])],
        raw.get("topics", {}),
        raw.get("delivery", {}),
    )


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    subscription: Subscription = field(compare=False)
    event: dict[str, Any] = field(compare=False)
    published: float = field(compare=False, default=0.0)
    attempts: int = field(compare=False, default=0)
    last_status: int | None = field(compare=False, default=None)
    last_outcome: str = field(compare=False, default="")
    id: str = field(compare=False, default_factory=lambda: uuid.uuid4().hex)
    persisted_attempts: int = field(compare=False, default=0)
    spilled: bool = field(compare=False, default=False)
    stored: bool = field(compare=False, default=False)
    finished: bool = field(compare=False, default=False)
    lock: threading.Lock = field(compare=False, default_factory=threading.Lock, repr=False)


def _wall(monotonic: float) -> float:
    return time.time() + (monotonic - time.monotonic())


def _monotonic(wall: float) -> float:
    return time.monotonic() + (wall - time.time())


WATCHER_PAUSE_FACTOR = 4.0
"""The blob watcher waits at least this many times the CPU its last scan took before the next one (a
container of thousands of blobs is scanned less often than ``blobPollIntervalSeconds``). CPU, not wall time:
a scan that waited on storage (retries while Azurite is down) held no GIL and must not delay the next one."""

WATCHER_MAX_PAUSE = 2.0
"""The longest pause between two scans, seconds, however costly the last one was."""


class LocalEventGrid:
    """Watches Azurite containers, accepts custom-topic events, and delivers them to subscribers.

    ``base_url`` is the devhost server the webhooks live on; ``blob_service`` a ``BlobServiceClient`` on
    Azurite (polled for new blobs, and where dead letters are written); ``store`` where pending deliveries
    and announced blobs are kept across restarts (``None``: in memory only); ``workers`` how many
    deliveries are in flight at once.
    """

    def __init__(
        self,
        subscriptions: list[Subscription],
        base_url: str,
        blob_service: Any,
        *,
        topics: dict[str, Any] | None = None,
        retry_delays: list[float] | None = None,
        poll_interval: float = 0.25,
        workers: int = 4,
        timeout: float = 30.0,
        store: EventGridStore | None = None,
    ) -> None:
        self.store = store
        self._restored = False
        self.subscriptions = subscriptions
        self.base_url = base_url.rstrip("/")
        self.blob_service = blob_service
        self.topics = topics or {}
        self.retry_delays = retry_delays or [0.5, 1, 2, 5, 10, 30, 60]
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.history: deque[dict[str, Any]] = deque(maxlen=10_000)
        self._heap: list[_Delivery] = []
        self._seq = itertools.count()
        self._sequencer = itertools.count(1)
        self._cv = threading.Condition()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eventgrid-delivery")
        self._stop = threading.Event()
        self._seen: dict[tuple[str, str], str] = {}
        self._threads: list[threading.Thread] = []
        self._announced: queue.Queue[tuple[str, str, str, list[_Delivery]] | None] = queue.Queue()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> LocalEventGrid:
        """Restore the state (unless :meth:`restore` ran already) and start watching and delivering."""
        if not self._restored:
            self.restore()
        for target, name in (
            (self._schedule_loop, "eventgrid-scheduler"),
            (self._watch_loop, "eventgrid-watcher"),
            (self._persist_loop, "eventgrid-persister"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._announced.put(None)  # the persister saves what is queued before it, then ends
        with self._cv:
            self._cv.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def restore(self) -> None:
        """Load the announced blobs and requeue the pending deliveries; containers never seen before are
        baselined (their blobs are not "created" now). The watcher's first scan then announces what
        arrived while devhost was down."""
        self._restored = True
        if self.store is None:
            self._scan(emit=False)
            return
        self.store.ensure()
        account = self.blob_service.account_name
        fresh = []
        for container in sorted(self._watched().get(account, set())):
            seen = self.store.load_seen(container)
            if seen is None:
                fresh.append(container)
            else:
                self._seen.update({(container, name): etag for name, etag in seen.items()})
        self._scan(emit=False, containers=fresh)
        for container in fresh:
            self.store.set_baseline(
                container, {name: etag for (c, name), etag in self._seen.items() if c == container}
            )
        by_name = {s.name: s for s in self.subscriptions}
        restored = 0
        for stored in self.store.pending():
            subscription = by_name.get(stored.subscription)
            if subscription is None:
                log.warning("pending delivery %s is for subscription %s, which no longer exists: dropped",
                            stored.id, stored.subscription)  # fmt: skip
                with contextlib.suppress(EventGridStoreError):
                    self.store.delete(stored.id, stored.spilled)
                continue
            delivery = _Delivery(
                max(time.monotonic(), _monotonic(stored.due)), next(self._seq), subscription, stored.event,
                published=_monotonic(stored.published), attempts=stored.attempts,
                last_status=stored.last_status, last_outcome=stored.last_outcome,
                id=stored.id, persisted_attempts=stored.attempts, spilled=stored.spilled, stored=True,
            )  # fmt: skip
            if delivery.attempts >= subscription.max_attempts:
                delivery.last_outcome = delivery.last_outcome or "Aborted"
                self._dead_letter(delivery, "MaxDeliveryAttemptsExceeded")
                continue
            with self._cv:
                heapq.heappush(self._heap, delivery)
            restored += 1
        if restored or fresh:
            log.info("local Event Grid state %s: %d pending deliveries resumed, containers baselined: %s",
                     self.store.name, restored, ", ".join(fresh) or "none")  # fmt: skip

    def _save(self, delivery: _Delivery, *, due: float | None = None, strict: bool = False) -> bool:
        """Persist a delivery's state (the event too, the first time): its attempts (the one about to be
        made included) and when it is due again should that attempt be lost. The caller holds
        ``delivery.lock``; returns whether the state is stored."""
        if self.store is None:
            return False
        try:
            delivery.spilled |= self.store.save(
                delivery.id, delivery.subscription.name, None if delivery.stored else delivery.event,
                attempts=delivery.persisted_attempts, due=_wall(delivery.due if due is None else due),
                published=_wall(delivery.published), last_status=delivery.last_status,
                last_outcome=delivery.last_outcome,
            )  # fmt: skip
        except EventGridStoreError as exc:
            if strict:
                raise
            log.warning("delivery %s of event %s: %s", delivery.id, delivery.event.get("id"), exc)
            return False
        delivery.stored = True
        return True

    def _forget(self, delivery: _Delivery) -> None:
        """The delivery is over (delivered or dead-lettered): its stored state, if any, goes."""
        with delivery.lock:
            delivery.finished = True
            if self.store is None or not delivery.stored:
                return
            try:
                self.store.delete(delivery.id, delivery.spilled)
            except EventGridStoreError as exc:  # it will be resent after a restart: at least once
                log.warning("delivery %s of event %s: %s", delivery.id, delivery.event.get("id"), exc)

    def _persist_loop(self) -> None:
        """Save each announced blob's deliveries that are still under way, then mark the blob announced
        (only then: a blob whose deliveries could not be saved is announced again by the next start)."""
        stopping = False
        while not stopping or not self._announced.empty():
            item = self._announced.get() if not stopping else self._announced.get_nowait()
            if item is None:
                stopping = True
                continue
            container, name, etag, deliveries = item
            saved = True
            for delivery in deliveries:
                with delivery.lock:
                    if not delivery.finished and not delivery.stored:
                        saved &= self._save(delivery, due=delivery.published + self._delay(1))
            if saved and self.store is not None:
                try:
                    self.store.mark_seen(container, name, etag)
                except EventGridStoreError as exc:
                    log.warning("blob %s/%s: %s (it is announced again after a restart)", container, name, exc)

    def _delay(self, attempts: int) -> float:
        return float(self.retry_delays[min(max(attempts, 1) - 1, len(self.retry_delays) - 1)])

    # -- sources --------------------------------------------------------------------------------
    def _watched(self) -> dict[str, set[str]]:
        watched: dict[str, set[str]] = {}
        for s in self.subscriptions:
            if s.watched_container:
                watched.setdefault(s.storage_account or "", set()).add(s.watched_container)
        return watched

    def _watch_loop(self) -> None:
        wait = self.poll_interval
        while not self._stop.wait(wait):
            started = time.thread_time()
            try:
                self._scan(emit=True)
            except Exception as exc:  # storage hiccup: keep watching
                log.warning("blob watcher scan failed: %s", exc)
            # Event Grid costs a Functions app nothing: the watcher holds devhost's GIL at most ~1/5 of the time
            spent = time.thread_time() - started
            wait = min(WATCHER_MAX_PAUSE, max(self.poll_interval, WATCHER_PAUSE_FACTOR * spent))

    def _scan(self, emit: bool, containers: list[str] | None = None) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        account = self.blob_service.account_name
        watched = sorted(self._watched().get(account, set())) if containers is None else containers
        for container in watched:
            client = self.blob_service.get_container_client(container)
            try:
                blobs = list(listed_blobs(client))
            except ResourceNotFoundError:
                continue
            for blob in blobs:
                key, etag = (container, blob.name), normalise_etag(blob.etag)
                if self._seen.get(key) == etag:
                    continue
                self._seen[key] = etag
                if emit:  # delivered at once, persisted beside it (see the module docstring)
                    event = self._blob_created(account, container, blob, client.url)
                    deliveries = self._route(event, self._storage_subscriptions(event), persist=False)
                    if self.store is not None:
                        self._announced.put((container, blob.name, etag, deliveries))

    def _blob_created(self, account: str, container: str, blob: Any, container_url: str) -> dict[str, Any]:
        sequencer = f"{time.time_ns():016x}{next(self._sequencer):016x}"
        return {
            "topic": storage_topic(account),
            "subject": f"/blobServices/default/containers/{container}/blobs/{blob.name}",
            "eventType": BLOB_CREATED,
            "eventTime": _now_iso(),
            "id": str(uuid.uuid4()),
            "data": {
                "api": "PutBlob",
                "clientRequestId": str(uuid.uuid4()),
                "requestId": str(uuid.uuid4()),
                "eTag": blob.etag if blob.etag.startswith('"') else f'"{blob.etag}"',
                "contentType": blob.content_type or "application/octet-stream",
                "contentLength": blob.size,
                "blobType": "BlockBlob",
                "url": f"{container_url}/{urllib.parse.quote(blob.name)}",
                "sequencer": sequencer,
                "storageDiagnostics": {"batchId": str(uuid.uuid4())},
            },
            "dataVersion": "",
            "metadataVersion": "1",
        }

    def _storage_subscriptions(self, event: dict[str, Any]) -> list[Subscription]:
        account = event["topic"].rsplit("/", 1)[-1]
        return [s for s in self.subscriptions if s.matches(event, account=account)]

    def publish_system_event(self, event: dict[str, Any]) -> int:
        """Route a storage system event to the matching subscriptions (each delivery persisted before
        this returns); returns how many matched."""
        return len(self._route(event, self._storage_subscriptions(event)))

    def publish_to_topic(self, topic: str, key: str | None, events: list[dict[str, Any]]) -> int:
        """Accept events published to a custom topic (key-checked); returns how many deliveries queued."""
        if topic not in self.topics:
            raise LookupError(f"topic {topic!r} does not exist")
        expected = self.topics[topic].get("key")
        if not expected or key != expected:
            raise PermissionError("the aeg-sas-key header is missing or does not match the topic's key")
        queued = 0
        for event in events:
            if "specversion" not in event:
                event.setdefault(
                    "topic",
                    f"/subscriptions/{_LOCAL_SUBSCRIPTION}/resourceGroups/scorehook-local"
                    f"/providers/Microsoft.EventGrid/topics/{topic}",
                )
                event.setdefault("metadataVersion", "1")
            queued += len(self._route(event, [s for s in self.subscriptions if s.matches(event, topic=topic)]))
        return queued

    # -- delivery -------------------------------------------------------------------------------
    def _route(
        self, event: dict[str, Any], subscriptions: list[Subscription], *, persist: bool = True
    ) -> list[_Delivery]:
        """Queue one delivery per subscription. ``persist``: each is saved first (raises
        ``EventGridStoreError`` when it cannot be: the source tries again); else the caller has it saved."""
        now = time.monotonic()
        deliveries = []
        for subscription in subscriptions:
            delivery = _Delivery(now, next(self._seq), subscription, event, published=now, persisted_attempts=1)
            if persist:  # the due time stored: when a lost first attempt is retried
                self._save(delivery, due=now + self._delay(1), strict=True)
            deliveries.append(delivery)
        with self._cv:
            for delivery in deliveries:
                heapq.heappush(self._heap, delivery)
            self._cv.notify()
        return deliveries

    def _schedule_loop(self) -> None:
        while not self._stop.is_set():
            with self._cv:
                while not self._stop.is_set() and (not self._heap or self._heap[0].due > time.monotonic()):
                    self._cv.wait(None if not self._heap else max(0.0, self._heap[0].due - time.monotonic()))
                if self._stop.is_set():
                    return
                delivery = heapq.heappop(self._heap)
            self._pool.submit(self._deliver, delivery)

    def _deliver(self, delivery: _Delivery) -> None:
        subscription = delivery.subscription
        delivery.attempts += 1
        if delivery.attempts > delivery.persisted_attempts:
            with delivery.lock:
                delivery.persisted_attempts = delivery.attempts
                self._save(delivery, due=time.monotonic() + self._delay(delivery.attempts))
        body_event = (
            to_cloudevent(delivery.event) if subscription.schema.startswith("CloudEvent") else delivery.event
        )
        content_type = (
            "application/cloudevents-batch+json" if "specversion" in body_event else "application/json"
        )
        path = subscription.path()
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        request = urllib.request.Request(
            url,
            data=json.dumps([body_event]).encode(),
            method="POST",
            headers={
                "Content-Type": f"{content_type}; charset=utf-8",
                "aeg-event-type": "Notification",
                "aeg-subscription-name": subscription.name.upper(),
                "aeg-delivery-count": str(delivery.attempts - 1),
                "aeg-metadata-version": "1",
                "aeg-data-version": str(delivery.event.get("dataVersion", "")),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = 0
        self._record(delivery, status)
        if 200 <= status <= 204:
            self._forget(delivery)
            return
        delivery.last_status = status
        delivery.last_outcome = (
            _NO_RETRY.get(status) or _OUTCOMES.get(status) or ("Aborted" if not status else "GenericError")
        )
        expired = time.monotonic() - delivery.published > subscription.ttl_minutes * 60
        if status in _NO_RETRY and subscription.dead_letter_container:
            self._dead_letter(delivery, delivery.last_outcome)
        elif delivery.attempts >= subscription.max_attempts:
            self._dead_letter(delivery, "MaxDeliveryAttemptsExceeded")
        elif expired:
            self._dead_letter(delivery, "TimeToLiveExceeded")
        else:
            delivery.due = time.monotonic() + self._delay(delivery.attempts)
            with delivery.lock:
                self._save(delivery)
            with self._cv:
                heapq.heappush(self._heap, delivery)
                self._cv.notify()

    def _record(self, delivery: _Delivery, status: int) -> None:
        self.history.append(
            {
                "subscription": delivery.subscription.name,
                "event_id": delivery.event.get("id"),
                "event_type": delivery.event.get("eventType") or delivery.event.get("type"),
                "subject": delivery.event.get("subject"),
                "attempt": delivery.attempts,
                "status": status,
                "time": _now_iso(),
            }
        )

    def _dead_letter(self, delivery: _Delivery, reason: str) -> None:
        subscription = delivery.subscription
        self.history.append(
            {
                "subscription": subscription.name,
                "event_id": delivery.event.get("id"),
                "subject": delivery.event.get("subject"),
                "attempt": delivery.attempts,
                "dead_lettered": reason,
                "time": _now_iso(),
            }
        )
        if not subscription.dead_letter_container:
            log.warning(
                "event %s dropped after %d attempts (%s): no dead-letter destination",
                delivery.event.get("id"),
                delivery.attempts,
                reason,
            )
            self._forget(delivery)
            return
        cloud = "specversion" in delivery.event
        names = (
            (
                "deadletterreason",
                "deliveryattempts",
                "lastdeliveryoutcome",
                "lastHttpStatusCode",
                "publishtime",
                "lastdeliveryattempttime",
            )
            if cloud
            else (
                "deadLetterReason",
                "deliveryAttempts",
                "lastDeliveryOutcome",
                "lastHttpStatusCode",
                "publishTime",
                "lastDeliveryAttemptTime",
            )
        )
        published = datetime.now(UTC).timestamp() - (time.monotonic() - delivery.published)
        record = {
            **delivery.event,
            **dict(
                zip(
                    names,
                    (
                        reason,
                        delivery.attempts,
                        delivery.last_outcome or "Probation",
                        delivery.last_status,
                        datetime.fromtimestamp(published, UTC).isoformat().replace("+00:00", "Z"),
                        _now_iso(),
                    ),
                    strict=True,
                )
            ),
        }
        now = datetime.now(UTC)
        topic_name = (delivery.event.get("topic") or delivery.event.get("source") or "topic").rsplit("/", 1)[
            -1
        ]
        blob = f"{topic_name}/{subscription.name.upper()}/{now:%Y/%m/%d/%H}/{delivery.event.get('id')}.json"
        try:
            container = self.blob_service.get_container_client(subscription.dead_letter_container)
            if not container.exists():
                container.create_container()
            container.upload_blob(blob, json.dumps([record], indent=2), overwrite=True)
            log.warning(
                "event %s dead-lettered to %s/%s (%s)",
                delivery.event.get("id"),
                subscription.dead_letter_container,
                blob,
                reason,
            )
        except Exception as exc:  # kept pending: dead-lettered again after a restart
            log.error("dead-lettering event %s failed: %s", delivery.event.get("id"), exc)
            return
        self._forget(delivery)

    def pending(self) -> int:
        with self._cv:
            return len(self._heap)
