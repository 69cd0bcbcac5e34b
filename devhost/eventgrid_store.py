"""Where the local Event Grid keeps what must survive a restart: one Azurite table.

Azure Event Grid keeps pending deliveries on its side, so a Functions host that dies loses nothing. The
local Event Grid lives inside devhost, so it keeps them in storage instead, and resends them (with their
attempt counts) when devhost starts again. It also remembers which blobs it announced, so that on start
it announces the blobs that arrived while it was down, as Event Grid would have delivered them.

Table rows (``PartitionKey`` / ``RowKey``: properties):

* ``pending`` / delivery id: ``Subscription`` (name), ``Event`` (the event as JSON, split over ``Event``,
  ``Event1``, ... of at most 16,000 characters each; over 240,000 characters it goes to the blob
  ``devhost-eventgrid/<table>/<delivery id>.json`` named by ``EventBlob``), ``Attempts`` (attempts made or
  in flight), ``Due`` and ``Published`` (Unix seconds), ``LastStatus``, ``LastOutcome``.
* ``seen-<container>`` / sha256 of the blob name: ``Name``, ``ETag`` (unquoted) of each announced blob.
* ``baseline`` / container: written once, when the blobs already in the container were recorded without
  being announced (the very first start); a container without it is baselined, never announced.

Example:
    >>> store = EventGridStore.from_connection_string(conn, "devhostegdemo")   # doctest: +SKIP
    >>> store.load_seen("incoming")                                              # doctest: +SKIP
    {'a.csv': '0x8DC...'}
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["EventGridStore", "EventGridStoreError", "StoredDelivery", "state_table_name"]

log = logging.getLogger("devhost.eventgrid")
_CHUNK = 16_000  # characters: at most 64,000 bytes in UTF-16, under the 64 KiB property limit
_MAX_CHUNKS = 15  # and under the 1 MiB entity limit
_SPILL_CONTAINER = "devhost-eventgrid"
_BATCH = 100


class EventGridStoreError(OSError):
    """The state could not be read or written (Azurite unreachable, ...)."""


def state_table_name(storage: str, port: int, subscriptions: str | Path) -> str:
    """The default table for a devhost: one per storage account, port and subscriptions file, so the same
    devhost restarted finds its state, and devhosts on other ports (tests) start from an empty one.

    Example:
        >>> name = state_table_name("UseDevelopmentStorage=true", 7071, "devhost/subscriptions.json")
        >>> name.startswith("devhosteg"), len(name), name.isalnum()
        (True, 25, True)
    """
    key = f"{storage}|{port}|{Path(subscriptions).name}"
    return "devhosteg" + hashlib.sha256(key.encode()).hexdigest()[:16]


def normalise_etag(etag: str) -> str:
    """``"0x8D.."`` and ``0x8D..`` are the same eTag (listings give it unquoted, uploads quoted)."""
    return etag.strip('"')


@dataclass
class StoredDelivery:
    """A pending delivery as read back from the table."""

    id: str
    subscription: str
    event: dict[str, Any]
    attempts: int
    due: float
    published: float
    last_status: int | None
    last_outcome: str
    spilled: bool = False


def _wrap(what: str) -> Any:
    def decorate(fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except EventGridStoreError:
                raise
            except Exception as exc:
                raise EventGridStoreError(f"local Event Grid state: {what} failed: {type(exc).__name__}: {exc}") from exc

        run.__doc__, run.__name__ = fn.__doc__, fn.__name__
        return run

    return decorate


class EventGridStore:
    """The local Event Grid's state in the table ``table`` (created on :meth:`ensure`)."""

    def __init__(self, table_client: Any, blob_service: Any = None) -> None:
        self.table = table_client
        self.blob_service = blob_service

    @classmethod
    def from_connection_string(cls, connection: str, table: str, blob_service: Any = None) -> EventGridStore:
        from azure.data.tables import TableClient

        from shared.adapters._azure import transport_options

        return cls(TableClient.from_connection_string(connection, table, **transport_options()), blob_service)

    @property
    def name(self) -> str:
        return str(self.table.table_name)

    @_wrap("creating the table")
    def ensure(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self.table.create_table()
        except ResourceExistsError:
            pass

    # -- pending deliveries ---------------------------------------------------------------------
    @_wrap("saving a pending delivery")
    def save(
        self,
        delivery_id: str,
        subscription: str,
        event: Mapping[str, Any] | None,
        *,
        attempts: int,
        due: float,
        published: float,
        last_status: int | None = None,
        last_outcome: str = "",
    ) -> bool:
        """Insert or replace a pending delivery; ``event=None`` updates its counters only. Returns whether
        the event went to a blob (pass it to :meth:`delete`)."""
        from azure.data.tables import UpdateMode

        entity: dict[str, Any] = {
            "PartitionKey": "pending",
            "RowKey": delivery_id,
            "Subscription": subscription,
            "Attempts": attempts,
            "Due": float(due),
            "Published": float(published),
            "LastStatus": -1 if last_status is None else int(last_status),
            "LastOutcome": last_outcome,
        }
        if event is None:
            self.table.upsert_entity(entity, mode=UpdateMode.MERGE)
            return False
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        if len(text) > _CHUNK * _MAX_CHUNKS:
            blob = f"{self.name}/{delivery_id}.json"
            container = self.blob_service.get_container_client(_SPILL_CONTAINER)
            if not container.exists():
                container.create_container()
            container.upload_blob(blob, text.encode(), overwrite=True)
            entity["EventBlob"] = blob
            spilled = True
        else:
            spilled = False
            for index in range(0, max(1, -(-len(text) // _CHUNK))):
                entity[f"Event{index or ''}"] = text[index * _CHUNK : (index + 1) * _CHUNK]
        self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        return spilled

    @_wrap("deleting a delivered event")
    def delete(self, delivery_id: str, spilled: bool = False) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.table.delete_entity("pending", delivery_id)
        except ResourceNotFoundError:
            pass
        if spilled and self.blob_service is not None:
            try:
                self.blob_service.get_blob_client(_SPILL_CONTAINER, f"{self.name}/{delivery_id}.json").delete_blob()
            except ResourceNotFoundError:
                pass

    @_wrap("reading pending deliveries")
    def pending(self) -> list[StoredDelivery]:
        """Every pending delivery (a row that cannot be read back is logged and left out)."""
        found = []
        for entity in self.table.query_entities("PartitionKey eq 'pending'"):
            try:
                if entity.get("EventBlob"):
                    blob = self.blob_service.get_blob_client(_SPILL_CONTAINER, entity["EventBlob"])
                    text = blob.download_blob().readall().decode()
                else:
                    text = "".join(entity.get(f"Event{i or ''}", "") for i in range(_MAX_CHUNKS))
                event = json.loads(text)
            except Exception as exc:
                log.error("pending delivery %s cannot be read back: %s", entity["RowKey"], exc)
                continue
            status = int(entity.get("LastStatus", -1))
            found.append(
                StoredDelivery(
                    entity["RowKey"], entity["Subscription"], event, int(entity.get("Attempts", 0)),
                    float(entity.get("Due", 0.0)), float(entity.get("Published", 0.0)),
                    None if status < 0 else status, entity.get("LastOutcome", ""), bool(entity.get("EventBlob")),
                )
            )  # fmt: skip
        return found

    # -- announced blobs ------------------------------------------------------------------------
    @staticmethod
    def _seen_key(name: str) -> str:
        return hashlib.sha256(name.encode()).hexdigest()

    @_wrap("reading announced blobs")
    def load_seen(self, container: str) -> dict[str, str] | None:
        """name → eTag of the blobs announced in ``container``; ``None`` if it was never baselined."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.table.get_entity("baseline", container)
        except ResourceNotFoundError:
            return None
        rows = self.table.query_entities(f"PartitionKey eq 'seen-{container}'", select=["Name", "ETag"])
        return {row["Name"]: row["ETag"] for row in rows}

    @_wrap("recording an announced blob")
    def mark_seen(self, container: str, name: str, etag: str) -> None:
        self.table.upsert_entity(
            {"PartitionKey": f"seen-{container}", "RowKey": self._seen_key(name), "Name": name,
             "ETag": normalise_etag(etag)}
        )  # fmt: skip

    @_wrap("recording a container's baseline")
    def set_baseline(self, container: str, blobs: Mapping[str, str]) -> None:
        """Record the blobs already in ``container`` as announced, then mark it baselined."""
        items = list(blobs.items())
        for start in range(0, len(items), _BATCH):
            self.table.submit_transaction(
                [("upsert", {"PartitionKey": f"seen-{container}", "RowKey": self._seen_key(name), "Name": name,
                             "ETag": normalise_etag(etag)})
                 for name, etag in items[start : start + _BATCH]]
            )  # fmt: skip
        self.table.upsert_entity({"PartitionKey": "baseline", "RowKey": container})
