"""The ledger on Azure Table Storage (azure-data-tables): conditional inserts claim idempotency keys."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from shared.adapters._azure import default_credential, storage_errors, transport_options
from shared.errors import AlreadyClaimedError, ConfigurationError
from shared.ports import LedgerRecord, takeable
from shared.settings import Settings

__all__ = ["TableLedger", "row_key"]


def row_key(key: str) -> str:
    """Table keys cannot hold ``/ \\ # ?``: a key is stored under its SHA-256.

    Example:
        >>> len(row_key("blob:https://a/b.csv:0x1"))
        64
    """
    return hashlib.sha256(key.encode()).hexdigest()


def _partition(key: str) -> str:
    return key.split(":", 1)[0] or "default"


class TableLedger:
    """:class:`shared.ports.Ledger` on one table. A claim is an entity with status ``claimed`` and an expiry;
    an expired claim is taken over with an eTag-matched update, so exactly one taker wins.

    Example:
        >>> ledger = TableLedger.from_settings(settings)   # doctest: +SKIP
        >>> claim = ledger.claim("blob:...", owner="host-1", ttl_seconds=600)   # doctest: +SKIP
    """

    def __init__(self, table: Any, clock: Any = time.time) -> None:
        self._table = table
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, create: bool = True) -> TableLedger:
        """Connect with ``DataStorage`` or ``DataStorage__tableServiceUri``; create the table if asked."""
        from azure.data.tables import TableServiceClient

        if settings.data_connection_string:
            service = TableServiceClient.from_connection_string(settings.data_connection_string, **transport_options())
        elif settings.data_table_service_uri:
            uri = settings.data_table_service_uri
            service = TableServiceClient(uri, credential=default_credential(), **transport_options())
        else:
            raise ConfigurationError("set DataStorage or DataStorage__tableServiceUri", setting="DataStorage")
        if create:
            with storage_errors("create ledger table"):
                service.create_table_if_not_exists(settings.ledger_table)
        return cls(service.get_table_client(settings.ledger_table))

    def _record(self, entity: Mapping[str, Any]) -> LedgerRecord:
        return LedgerRecord(
            key=entity["Key"],
            status=entity["Status"],
            owner=entity.get("Owner", ""),
            attempts=int(entity.get("Attempts", 1)),
            expires_at=float(entity.get("ExpiresAt", 0.0)),
            details=json.loads(entity.get("Details") or "{}"),
            etag=entity.metadata.get("etag") if hasattr(entity, "metadata") else None,
        )

    def _entity(
        self, key: str, status: str, owner: str, attempts: int, expires_at: float, details: Any
    ) -> dict:
        return {
            "PartitionKey": _partition(key),
            "RowKey": row_key(key),
            "Key": key,
            "Status": status,
            "Owner": owner,
            "Attempts": attempts,
            "ExpiresAt": float(expires_at),
            "Details": json.dumps(dict(details or {}), default=str),
        }

    def get(self, key: str) -> LedgerRecord | None:
        from azure.core.exceptions import ResourceNotFoundError

        with storage_errors("read ledger"):
            try:
                return self._record(self._table.get_entity(_partition(key), row_key(key)))
            except ResourceNotFoundError:
                return None

    def claim(
        self, key: str, owner: str, ttl_seconds: float, details: Mapping[str, Any] | None = None
    ) -> LedgerRecord | None:
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError, ResourceExistsError
        from azure.data.tables import UpdateMode

        now = self._clock()
        entity = self._entity(key, "claimed", owner, 1, now + ttl_seconds, details)
        with storage_errors("claim in ledger"):
            try:
                meta = self._table.create_entity(entity)
                return LedgerRecord(
                    key, "claimed", owner, 1, now + ttl_seconds, dict(details or {}), meta.get("etag")
                )
            except ResourceExistsError:
                pass
            existing = self.get(key)
            if existing is None or not takeable(existing, now):
                return None
            entity["Attempts"] = existing.attempts + 1
            details = {**existing.details, **dict(details or {})}
            entity["Details"] = json.dumps(details, default=str)
            try:
                meta = self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=existing.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except HttpResponseError as exc:
                if exc.status_code == 412:
                    return None  # another instance took the expired claim first
                raise
        return LedgerRecord(
            key,
            "claimed",
            owner,
            existing.attempts + 1,
            now + ttl_seconds,
            dict(details or {}),
            meta.get("etag"),
        )

    def _update_owned(self, claim: LedgerRecord, entity: dict, mode: Any = None) -> dict:
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        with storage_errors("update ledger"):
            try:
                return dict(
                    self._table.update_entity(
                        entity,
                        mode=mode or UpdateMode.REPLACE,
                        etag=claim.etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
                )
            except (HttpResponseError, ResourceNotFoundError) as exc:
                if isinstance(exc, ResourceNotFoundError) or exc.status_code == 412:
                    raise AlreadyClaimedError(
                        f"claim on {claim.key} was lost to another owner", key=claim.key
                    ) from exc
                raise

    def renew(self, claim: LedgerRecord, ttl_seconds: float) -> LedgerRecord:
        """Move the claim's expiry to ``ttl_seconds`` from now with an eTag-matched merge: only the owner of
        the unchanged claim can; a takeover, finish or release in between makes it ``AlreadyClaimedError``.

        Example:
            >>> claim = ledger.renew(claim, ttl_seconds=60)   # doctest: +SKIP
        """
        from azure.data.tables import UpdateMode

        if claim.status != "claimed":
            raise AlreadyClaimedError(f"{claim.key} is {claim.status}, not a live claim", key=claim.key)
        expires_at = self._clock() + ttl_seconds
        entity = {
            "PartitionKey": _partition(claim.key),
            "RowKey": row_key(claim.key),
            "ExpiresAt": float(expires_at),
        }
        meta = self._update_owned(claim, entity, UpdateMode.MERGE)
        return replace(claim, expires_at=expires_at, etag=meta.get("etag"))

    def finish(self, claim: LedgerRecord, status: str, details: Mapping[str, Any]) -> LedgerRecord:
        merged = {**claim.details, **details}
        entity = self._entity(claim.key, status, claim.owner, claim.attempts, 0.0, merged)
        meta = self._update_owned(claim, entity)
        return LedgerRecord(claim.key, status, claim.owner, claim.attempts, 0.0, merged, meta.get("etag"))

    def release(self, claim: LedgerRecord) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        with storage_errors("release ledger claim"):
            try:
                self._table.delete_entity(
                    _partition(claim.key),
                    row_key(claim.key),
                    etag=claim.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (HttpResponseError, ResourceNotFoundError):
                pass  # lost or already gone: nothing of ours to release

    def forget(self, key: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with storage_errors("forget ledger record"):
            try:
                self._table.delete_entity(_partition(key), row_key(key))
            except ResourceNotFoundError:
                pass

    def records(self, status: str | None = None) -> Iterator[LedgerRecord]:
        query = f"Status eq '{status}'" if status else None
        with storage_errors("list ledger"):
            entities = self._table.query_entities(query) if query else self._table.list_entities()
            for entity in entities:
                yield self._record(entity)
