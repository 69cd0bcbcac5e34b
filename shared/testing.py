"""In-memory fakes of every port, for unit tests of the core (hand-written, no mocks).

Example:
    >>> blobs = FakeBlobStore()
    >>> etag = blobs.write_blocks("scored", "a.csv", [b"id,p\\n", b"1,0.5\\n"], metadata={"m": "1"})
    >>> blobs.read_bytes("scored", "a.csv"), blobs.properties("scored", "a.csv").metadata
    (b'id,p\\n1,0.5\\n', {'m': '1'})
"""

from __future__ import annotations

import itertools
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from shared.errors import (
    AlreadyClaimedError,
    BlobChangedError,
    BlobNotFoundError,
    ModelNotFoundError,
    WriteConflictError,
)
from shared.names import ascii_metadata
from shared.ports import (
    BatchJobRequest,
    BatchSubmission,
    BlobInfo,
    LedgerRecord,
    ModelVersion,
    RetrainRequest,
    RetrainRun,
    takeable,
)
from shared.prefetch import prefetched_ranges

__all__ = [
    "FakeBatchScorer",
    "FakeBlobStore",
    "FakeEventSink",
    "FakeLedger",
    "FakePublisher",
    "FakeQueue",
    "FakeRegistry",
    "FakeRetrainer",
]


class FakeBlobStore:
    """Blobs in a dict; eTags change on every write; block writes become visible only on commit."""

    def __init__(self, account: str = "devstoreaccount1") -> None:
        self.account_name = account
        self._blobs: dict[tuple[str, str], tuple[bytes, BlobInfo]] = {}
        self._etags = itertools.count(1)
        self._lock = threading.RLock()  # commit_blocks checks and writes under one hold
        self.fail_next: Exception | None = None
        self._staged: dict[tuple[str, str], dict[str, bytes]] = {}
        self.commits: list[tuple[str, str]] = []  # every successful commit_blocks, in order

    def _maybe_fail(self) -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc

    def names(self, container: str) -> list[str]:
        return sorted(name for (c, name) in self._blobs if c == container)

    def properties(self, container: str, name: str) -> BlobInfo:
        self._maybe_fail()
        try:
            return self._blobs[(container, name)][1]
        except KeyError:
            raise BlobNotFoundError(
                f"blob {container}/{name} does not exist", blob=f"{container}/{name}"
            ) from None

    def read_chunks(
        self, container: str, name: str, chunk_size: int = 4 << 20, etag: str | None = None, *,
        in_flight: int = 1,
    ) -> Iterator[bytes]:  # fmt: skip
        """As the Azure adapter reads: every range conditional on the eTag (of the first read, if none is
        given), ``in_flight`` ranges ahead through :func:`shared.prefetch.prefetched_ranges`."""
        info = self.properties(container, name)
        if etag and info.etag != etag:
            raise BlobChangedError(f"blob {container}/{name} changed (eTag {etag} is stale)")
        pinned = etag or info.etag

        def fetch(offset: int, length: int) -> bytes:
            data, current = self._blobs.get((container, name), (b"", None))
            if current is None or current.etag != pinned:
                raise BlobChangedError(f"blob {container}/{name} changed while it was read (eTag {pinned} is stale)",
                                       blob=f"{container}/{name}")  # fmt: skip
            return data[offset : offset + length]

        yield from prefetched_ranges(fetch, info.size, range_bytes=chunk_size, in_flight=in_flight,
                                     where=f"{container}/{name}")  # fmt: skip

    def read_bytes(self, container: str, name: str) -> bytes:
        return b"".join(self.read_chunks(container, name))

    def write_bytes(
        self,
        container: str,
        name: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
        overwrite: bool = True,
    ) -> str:
        self._maybe_fail()
        with self._lock:
            if not overwrite and (container, name) in self._blobs:
                raise FileExistsError(f"{container}/{name}")
            etag = f'"0x{next(self._etags):016X}"'
            url = f"http://127.0.0.1:10000/{self.account_name}/{container}/{name}"
            info = BlobInfo(container, name, etag, len(data), content_type, ascii_metadata(metadata), url)
            self._blobs[(container, name)] = (bytes(data), info)
        return etag

    def write_blocks(
        self,
        container: str,
        name: str,
        blocks: Iterable[bytes],
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        staged = [bytes(b) for b in blocks]  # an error while producing blocks leaves nothing visible
        self.before_commit(container, name)
        with self._lock:
            current = self._blobs.get((container, name))
            if (if_match and (current is None or current[1].etag != if_match)) or (if_none_match and current):
                raise WriteConflictError(f"{container}/{name} changed before the commit")
        return self.write_bytes(
            container, name, b"".join(staged), metadata=metadata, content_type=content_type
        )

    def read_range(self, container: str, name: str, offset: int, length: int, etag: str | None = None) -> bytes:
        info = self.properties(container, name)
        if etag and info.etag != etag:
            raise BlobChangedError(f"blob {container}/{name} changed (eTag {etag} is stale)")
        return self._blobs[(container, name)][0][offset : offset + length]

    def stage_blocks(self, container: str, name: str, blocks: Iterable[bytes]) -> list[str]:
        from shared.names import block_ids

        ids, staged = block_ids(), []
        for block in blocks:
            if block:
                block_id = next(ids)
                with self._lock:
                    self._staged.setdefault((container, name), {})[block_id] = bytes(block)
                staged.append(block_id)
        return staged

    def commit_blocks(
        self,
        container: str,
        name: str,
        block_ids: Sequence[str],
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        self.before_commit(container, name)
        with self._lock:
            current = self._blobs.get((container, name))
            if (if_match and (current is None or current[1].etag != if_match)) or (if_none_match and current):
                raise WriteConflictError(f"{container}/{name} changed before the commit")
            staged = self._staged.get((container, name), {})
            if any(b not in staged for b in block_ids):
                raise WriteConflictError(f"{container}/{name}: a staged block is gone")
            data = b"".join(staged[b] for b in block_ids)
            self._staged.pop((container, name), None)  # a commit discards every other uncommitted block
            self.commits.append((container, name))
            return self.write_bytes(container, name, data, metadata=metadata, content_type=content_type)

    def before_commit(self, container: str, name: str) -> None:
        """A hook for tests: runs after staging, right before the commit (simulate a crash or a race)."""

    def list_blobs(self, container: str, prefix: str | None = None) -> Iterator[BlobInfo]:
        for (c, name), (_, info) in sorted(self._blobs.items()):
            if c == container and name.startswith(prefix or ""):
                yield info

    def delete(self, container: str, name: str) -> None:
        self._blobs.pop((container, name), None)


class FakeLedger:
    """The ledger in a dict, with the same claim/expiry/takeover/renew rules as the table adapter; ``clock``
    (seconds) decides expiry.

    Example:
        >>> now = [0.0]
        >>> ledger = FakeLedger(clock=lambda: now[0])
        >>> claim = ledger.claim("k", "host-a", ttl_seconds=60)
        >>> now[0] = 50
        >>> claim = ledger.renew(claim, ttl_seconds=60)   # the heartbeat: now expires at 110
        >>> now[0] = 90
        >>> ledger.claim("k", "host-b", ttl_seconds=60) is None
        True
        >>> ledger.finish(claim, "succeeded", {}).status
        'succeeded'
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._records: dict[str, LedgerRecord] = {}
        self._lock = threading.Lock()
        self._versions = itertools.count(1)
        self.clock = clock

    def get(self, key: str) -> LedgerRecord | None:
        return self._records.get(key)

    def claim(
        self, key: str, owner: str, ttl_seconds: float, details: Mapping[str, Any] | None = None
    ) -> LedgerRecord | None:
        with self._lock:
            now = self.clock()
            existing = self._records.get(key)
            if existing and not takeable(existing, now):
                return None
            attempts = existing.attempts + 1 if existing else 1
            record = LedgerRecord(
                key,
                "claimed",
                owner,
                attempts,
                now + ttl_seconds,
                {**(existing.details if existing else {}), **dict(details or {})},
                str(next(self._versions)),
            )
            self._records[key] = record
            return record

    def _owned(self, claim: LedgerRecord) -> LedgerRecord:
        current = self._records.get(claim.key)
        if current is None or current.etag != claim.etag:
            raise AlreadyClaimedError(f"claim on {claim.key} was lost to another owner", key=claim.key)
        return current

    def renew(self, claim: LedgerRecord, ttl_seconds: float) -> LedgerRecord:
        with self._lock:
            current = self._owned(claim)
            if current.status != "claimed":
                raise AlreadyClaimedError(f"{claim.key} is {current.status}, not claimed", key=claim.key)
            record = replace(current, expires_at=self.clock() + ttl_seconds, etag=str(next(self._versions)))
            self._records[claim.key] = record
            return record

    def finish(self, claim: LedgerRecord, status: str, details: Mapping[str, Any]) -> LedgerRecord:
        with self._lock:
            self._owned(claim)
            record = replace(
                claim,
                status=status,
                expires_at=0.0,
                details={**claim.details, **details},
                etag=str(next(self._versions)),
            )
            self._records[claim.key] = record
            return record

    def forget(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

    def release(self, claim: LedgerRecord) -> None:
        with self._lock:
            current = self._records.get(claim.key)
            if current is not None and current.etag == claim.etag:
                del self._records[claim.key]

    def records(self, status: str | None = None) -> Iterator[LedgerRecord]:
        return iter([r for r in self._records.values() if status is None or r.status == status])


class FakeQueue:
    """A :class:`~shared.ports.MessageQueue` in memory; ``unavailable`` makes ``send`` raise it (a queue that is down).

    Example:
        >>> queue = FakeQueue()
        >>> queue.send("hello"); queue.messages
        ['hello']
    """

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.unavailable: Exception | None = None

    def send(self, text: str) -> None:
        if self.unavailable is not None:
            raise self.unavailable
        self.messages.append(text)


class FakeEventSink:
    """An :class:`~shared.ports.EventSink` in memory: ``events`` as sent (``(body, partition_key)``);
    ``unavailable`` makes ``send`` raise it (a hub that is down).

    Example:
        >>> from shared.ports import OutEvent
        >>> sink = FakeEventSink(); sink.send([OutEvent('{"id": 1}', "1")]); sink.bodies()
        [{'id': 1}]
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, str | None]] = []
        self.unavailable: Exception | None = None

    def send(self, events: Iterable[Any]) -> None:
        if self.unavailable is not None:
            raise self.unavailable
        self.events.extend((e.body, e.partition_key) for e in events)

    def bodies(self) -> list[Any]:
        import json

        return [json.loads(body) for body, _ in self.events]


class FakePublisher:
    """Collects published events as ``(event_type, subject, data)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def publish(self, event_type: str, subject: str, data: Mapping[str, Any]) -> None:
        self.events.append((event_type, subject, dict(data)))

    def types(self) -> list[str]:
        return [e[0] for e in self.events]


class FakeRegistry:
    """A registry of model versions whose artifacts are local paths (a model dir or an ``.onnx`` file).

    ``fail_next`` makes the next ``resolve`` or ``download`` raise that error; ``unavailable`` makes every one
    raise it until it is set back to ``None`` (a registry that is down).

    Example:
        >>> from shared.errors import RegistryUnavailableError
        >>> registry = FakeRegistry()
        >>> registry.unavailable = RegistryUnavailableError("down")
        >>> registry.resolve("models:/m@champion")
        Traceback (most recent call last):
        ...
        shared.errors.RegistryUnavailableError: down
    """

    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], tuple[ModelVersion, Path]] = {}
        self._aliases: dict[tuple[str, str], str] = {}
        self.tags: dict[tuple[str, str], dict[str, str]] = {}
        self.artifacts: dict[tuple[str, str, str], bytes] = {}
        self.resolves = 0
        self.fail_next: Exception | None = None
        self.unavailable: Exception | None = None
        self.allows_pickle = False
        self._created = 0

    def _maybe_fail(self) -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        if self.unavailable is not None:
            raise self.unavailable

    def before_resolve(self, reference: str) -> None:
        """A hook for tests: runs at the start of every resolve (simulate a slow or hanging registry)."""

    def remove_alias(self, name: str, alias: str) -> None:
        """Delete an alias (later resolves of it raise ``ModelNotFoundError``)."""
        self._aliases.pop((name, alias), None)

    def register(
        self, name: str, path: str | Path, alias: str | None = None, tags: Mapping[str, str] | None = None
    ) -> ModelVersion:
        version = str(1 + sum(1 for (n, _) in self._versions if n == name))
        self._created += 1  # the registry's identity of the version, as MLflow's creation timestamp
        mv = ModelVersion(name=name, version=version, source=str(path), flavors=("onnx",),
                          identity=str(self._created), tags=dict(tags or {}))  # fmt: skip
        self._versions[(name, version)] = (mv, Path(path))
        if alias:
            self._aliases[(name, alias)] = version
        return mv

    def delete_model(self, name: str) -> None:
        """Delete a registered model with its versions, aliases and tags (a re-created one restarts at 1)."""
        for store in (self._versions, self._aliases, self.tags):
            for key in [k for k in store if k[0] == name]:
                del store[key]

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._aliases[(name, alias)] = version

    def alias_version(self, name: str, alias: str) -> str | None:
        return self._aliases.get((name, alias))

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        self.tags.setdefault((name, version), {}).update({k: str(v) for k, v in tags.items()})

    def read_artifact(self, version: ModelVersion, path: str) -> bytes | None:
        return self.artifacts.get((version.name, version.version, path))

    def resolve(self, reference: str) -> ModelVersion:
        from shared.models import parse_model_reference

        self.resolves += 1
        self.before_resolve(reference)
        self._maybe_fail()
        name, alias, version = parse_model_reference(reference)
        version = self._aliases.get((name, alias or ""), version) if alias else version
        try:
            found = self._versions[(name, str(version))][0]
        except KeyError:
            raise ModelNotFoundError(f"{reference} is not registered", reference=reference) from None
        tags = self.tags.get((found.name, found.version))
        return replace(found, tags={**found.tags, **tags}) if tags else found

    def download(self, version: ModelVersion, destination: str) -> str:
        self._maybe_fail()
        source = self._versions[(version.name, version.version)][1]
        target = Path(destination) / source.name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
        return str(target)


class FakeRetrainer:
    """Records retraining requests; ``fail_next`` makes the next launch raise that error."""

    def __init__(self) -> None:
        self.requests: list[RetrainRequest] = []
        self.fail_next: Exception | None = None

    def launch(self, request: RetrainRequest) -> RetrainRun:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        self.requests.append(request)
        return RetrainRun(f"fake-{len(self.requests)}", "fake", {"inputs": len(request.inputs)})


class FakeBatchScorer:
    """A :class:`~shared.ports.BatchScorer` that records every submission; ``fail_next`` makes the next
    ``submit`` raise that error; ``job_outputs`` are what ``outputs`` answers per job (default: the job's
    default output folder on the workspace's blob store).

    Example:
        >>> scorer = FakeBatchScorer()
        >>> scorer.submit(BatchJobRequest("ep", "https://a.blob.core.windows.net/in/x.csv", "job-1")).job_name
        'job-1'
        >>> scorer.requests[0].endpoint, scorer.outputs("job-1")
        ('ep', {'score': 'azureml://datastores/workspaceblobstore/paths/azureml/job-1/score/'})
    """

    def __init__(self) -> None:
        self.requests: list[BatchJobRequest] = []
        self.job_outputs: dict[str, dict[str, str]] = {}
        self.fail_next: Exception | None = None
        self.outputs_read: list[str] = []

    def submit(self, request: BatchJobRequest) -> BatchSubmission:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        self.requests.append(request)
        return BatchSubmission(request.job_name, "Queued", {"job_id": f"fake/{request.job_name}"})

    def outputs(self, job_name: str) -> Mapping[str, str]:
        self.outputs_read.append(job_name)
        default = {"score": f"azureml://datastores/workspaceblobstore/paths/azureml/{job_name}/score/"}
        return self.job_outputs.get(job_name, default)
