"""The blob and ledger adapters against real Azurite."""

from __future__ import annotations

import threading

import pytest

from shared.adapters import AzureBlobStore, TableLedger
from shared.errors import AlreadyClaimedError, BlobChangedError, BlobNotFoundError
from shared.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def store(azurite, unique):
    store = AzureBlobStore.from_settings(Settings.from_env({"DataStorage": azurite.connection_string}))
    store.ensure_containers(f"c{unique}")
    store.container = f"c{unique}"
    return store


@pytest.fixture
def ledger_factory(azurite, unique):
    settings = Settings.from_env({"DataStorage": azurite.connection_string}, ledger_table=f"ledger{unique}")

    def make(clock=None):
        ledger = TableLedger.from_settings(settings)
        if clock is not None:
            ledger._clock = clock
        return ledger

    return make


def test_blocks_are_invisible_until_the_single_commit(store):
    def blocks():
        yield b"a,b\n"
        yield b"1,2\n"
        raise RuntimeError("producer failed mid-way")

    with pytest.raises(RuntimeError):
        store.write_blocks(store.container, "out.csv", blocks())
    with pytest.raises(BlobNotFoundError):
        store.properties(store.container, "out.csv")

    etag = store.write_blocks(
        store.container, "out.csv", iter([b"a,b\n", b"1,2\n"]), metadata={"model_version": "3"}
    )
    info = store.properties(store.container, "out.csv")
    assert info.etag == etag and info.size == 8 and info.metadata == {"model_version": "3"}
    assert store.read_bytes(store.container, "out.csv") == b"a,b\n1,2\n"


def test_ranged_reads_are_pinned_to_the_etag(store):
    data = bytes(range(256)) * 40
    etag = store.write_bytes(store.container, "in.bin", data)
    chunks = list(store.read_chunks(store.container, "in.bin", chunk_size=1000, etag=etag))
    assert [len(c) for c in chunks] == [1000] * 10 + [240]
    assert b"".join(chunks) == data

    reader = store.read_chunks(store.container, "in.bin", chunk_size=1000, etag=etag)
    next(reader)
    store.write_bytes(store.container, "in.bin", b"new content")
    with pytest.raises(BlobChangedError):
        list(reader)
    assert (
        list(
            store.read_chunks(store.container, "empty", etag=store.write_bytes(store.container, "empty", b""))
        )
        == []
    )


def test_parallel_ranged_reads_give_the_bytes_and_refuse_a_blob_overwritten_mid_read(store):
    import random

    data = random.Random(3).randbytes(3 << 20)
    etag = store.write_bytes(store.container, "big.bin", data)
    chunks = list(store.read_chunks(store.container, "big.bin", chunk_size=256 << 10, etag=etag, in_flight=4))
    assert b"".join(chunks) == data and len(chunks) == 12

    reader = store.read_chunks(store.container, "big.bin", chunk_size=64 << 10, etag=etag, in_flight=3)
    assert next(reader) == data[: 64 << 10]
    store.write_bytes(store.container, "big.bin", data[::-1])  # same size, new content, new eTag
    with pytest.raises(BlobChangedError):
        list(reader)  # every range is If-Match on the first eTag: the ranges after the overwrite get 412


def test_blocks_staged_in_the_background_commit_once_in_order(store):
    blocks = [bytes([i]) * (300 << 10) for i in range(9)]
    etag = store.write_blocks(store.container, "staged.bin", iter(blocks), if_none_match=True)
    assert store.read_bytes(store.container, "staged.bin") == b"".join(blocks)
    assert store.properties(store.container, "staged.bin").etag == etag


def test_a_block_that_fails_to_stage_fails_the_write_and_the_previous_output_stays(store):
    from azure.core.exceptions import ServiceRequestError

    from shared.errors import StorageUnavailableError

    etag = store.write_bytes(store.container, "kept.csv", b"the previous output\n")
    real = store._blob

    class FailingThirdStage:  # the real client; its third stage_block meets a dropped connection
        def __init__(self, client):
            self.client, self.stages = client, 0

        def __getattr__(self, name):
            return getattr(self.client, name)

        def stage_block(self, *args, **kwargs):
            self.stages += 1
            if self.stages == 3:
                raise ServiceRequestError("connection reset while staging")
            return self.client.stage_block(*args, **kwargs)

    store._blob = lambda container, name: FailingThirdStage(real(container, name))
    blocks = (bytes([i]) * (300 << 10) for i in range(8))
    with pytest.raises(StorageUnavailableError):
        store.write_blocks(store.container, "kept.csv", blocks, if_match=etag)
    store._blob = real
    assert store.read_bytes(store.container, "kept.csv") == b"the previous output\n"  # nothing committed
    assert store.properties(store.container, "kept.csv").etag == etag


def test_missing_blobs_raise_blob_not_found(store):
    with pytest.raises(BlobNotFoundError):
        list(store.read_chunks(store.container, "nope.csv"))
    assert [b.name for b in store.list_blobs(store.container)] == []
    store.write_bytes(store.container, "x/1", b"1")
    store.write_bytes(store.container, "y/2", b"2")
    assert [b.name for b in store.list_blobs(store.container, prefix="x/")] == ["x/1"]
    store.delete(store.container, "x/1")
    store.delete(store.container, "x/1")  # deleting twice is fine
    assert [b.name for b in store.list_blobs(store.container)] == ["y/2"]


def test_a_listing_gives_the_same_etag_as_the_write_and_the_properties(store):
    written = store.write_bytes(store.container, "e/1", b"1")
    listed = [b.etag for b in store.list_blobs(store.container, prefix="e/")]
    assert listed == [written] == [store.properties(store.container, "e/1").etag]
    assert written.startswith('"') and written.endswith('"')


def test_a_key_is_claimed_once_and_finished(ledger_factory):
    ledger = ledger_factory()
    claim = ledger.claim("blob:http://h/a.csv@0x1", "host-a", ttl_seconds=60, details={"event_id": "e1"})
    assert claim is not None and claim.status == "claimed"
    assert ledger.claim("blob:http://h/a.csv@0x1", "host-b", ttl_seconds=60) is None
    done = ledger.finish(claim, "succeeded", {"rows": 3})
    assert ledger.get(claim.key).status == "succeeded"
    assert ledger.get(claim.key).details == {"event_id": "e1", "rows": 3} == done.details
    assert ledger.claim(claim.key, "host-b", ttl_seconds=60) is None
    assert [r.key for r in ledger.records("succeeded")] == [claim.key]


def test_an_expired_claim_is_taken_over_and_the_old_owner_loses_it(ledger_factory):
    now = [1000.0]
    ledger = ledger_factory(clock=lambda: now[0])
    old = ledger.claim("blob:k@1", "crashed-host", ttl_seconds=10)
    now[0] += 11
    new = ledger.claim("blob:k@1", "host-b", ttl_seconds=10)
    assert new is not None and new.owner == "host-b" and new.attempts == 2
    with pytest.raises(AlreadyClaimedError):
        ledger.finish(old, "succeeded", {})
    ledger.finish(new, "succeeded", {})
    assert ledger.get("blob:k@1").owner == "host-b"


def test_racing_claims_have_exactly_one_winner(ledger_factory):
    ledgers = [ledger_factory() for _ in range(8)]
    barrier, results = threading.Barrier(8), []

    def race(ledger):
        barrier.wait()
        results.append(ledger.claim("blob:race@1", "host", ttl_seconds=60))

    threads = [threading.Thread(target=race, args=(ledger,)) for ledger in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1


def test_release_lets_the_key_be_claimed_again(ledger_factory):
    ledger = ledger_factory()
    claim = ledger.claim("blob:rel@1", "host", ttl_seconds=60)
    ledger.release(claim)
    assert ledger.get("blob:rel@1") is None
    assert ledger.claim("blob:rel@1", "host", ttl_seconds=60) is not None


def test_conditional_commits_refuse_to_overwrite_what_changed(store):
    from shared.errors import WriteConflictError

    etag = store.write_blocks(store.container, "out.csv", iter([b"v1"]), if_none_match=True)
    with pytest.raises(WriteConflictError):
        store.write_blocks(store.container, "out.csv", iter([b"again"]), if_none_match=True)
    newer = store.write_blocks(store.container, "out.csv", iter([b"v2"]), if_match=etag)
    with pytest.raises(WriteConflictError):
        store.write_blocks(store.container, "out.csv", iter([b"stale"]), if_match=etag)
    assert store.read_bytes(store.container, "out.csv") == b"v2"
    assert store.properties(store.container, "out.csv").etag == newer


def test_renew_extends_a_claim_and_finish_takes_the_renewed_claim(ledger_factory):
    now = [1000.0]
    ledger = ledger_factory(clock=lambda: now[0])
    claim = ledger.claim("blob:lease@1", "host-a", ttl_seconds=60, details={"event_id": "e1"})
    now[0] += 50
    renewed = ledger.renew(claim, ttl_seconds=60)
    assert renewed.expires_at == 1110.0 and renewed.etag and renewed.etag != claim.etag
    assert ledger.get("blob:lease@1").expires_at == 1110.0
    assert ledger.get("blob:lease@1").etag == renewed.etag
    now[0] += 40
    assert ledger.claim("blob:lease@1", "host-b", ttl_seconds=60) is None  # past the first TTL, still held
    with pytest.raises(AlreadyClaimedError):
        ledger.finish(claim, "succeeded", {})  # the pre-renewal copy is stale
    ledger.release(claim)
    assert ledger.get("blob:lease@1").owner == "host-a"
    again = ledger.renew(renewed, ttl_seconds=60)
    done = ledger.finish(again, "succeeded", {"rows": 3})
    stored = ledger.get("blob:lease@1")
    assert stored.status == done.status == "succeeded" and stored.details == {"event_id": "e1", "rows": 3}
    with pytest.raises(AlreadyClaimedError):
        ledger.renew(again, ttl_seconds=60)  # a late heartbeat after the finish
    assert ledger.get("blob:lease@1").status == "succeeded" and ledger.get("blob:lease@1").expires_at == 0.0


def test_a_renewed_claim_can_be_released(ledger_factory):
    ledger = ledger_factory()
    renewed = ledger.renew(ledger.claim("blob:lease-rel@1", "host-a", ttl_seconds=60), ttl_seconds=60)
    ledger.release(renewed)
    assert ledger.get("blob:lease-rel@1") is None
    with pytest.raises(AlreadyClaimedError):
        ledger.renew(renewed, ttl_seconds=60)


def test_renew_after_a_takeover_raises(ledger_factory):
    now = [1000.0]
    ledger = ledger_factory(clock=lambda: now[0])
    old = ledger.claim("blob:lease-lost@1", "crashed-host", ttl_seconds=60)
    now[0] += 61
    new = ledger.claim("blob:lease-lost@1", "host-b", ttl_seconds=60)
    assert new is not None and new.attempts == 2
    with pytest.raises(AlreadyClaimedError):
        ledger.renew(old, ttl_seconds=60)
    stored = ledger.get("blob:lease-lost@1")
    assert stored.owner == "host-b" and stored.expires_at == new.expires_at


class _PauseBeforeUpdate:
    """The real table client, with ``hook`` run once right before the next ``update_entity`` (a race)."""

    def __init__(self, table, hook):
        self._table, self._hook = table, hook

    def __getattr__(self, name):
        return getattr(self._table, name)

    def update_entity(self, *args, **kwargs):
        hook, self._hook = self._hook, None
        if hook:
            hook()
        return self._table.update_entity(*args, **kwargs)


def test_a_heartbeat_that_lands_between_a_takers_read_and_write_keeps_the_claim(ledger_factory):
    now = [1000.0]
    owner = ledger_factory(clock=lambda: now[0])
    claim = owner.claim("blob:lease-race@1", "slow-host", ttl_seconds=60)
    renewed = []
    taker = ledger_factory(clock=lambda: 1061.0)  # the taker saw the claim expired...
    taker._table = _PauseBeforeUpdate(
        taker._table, lambda: renewed.append(owner.renew(claim, ttl_seconds=60))
    )  # ...and the owner's heartbeat lands before the taker's eTag-matched update
    assert taker.claim("blob:lease-race@1", "host-b", ttl_seconds=60) is None
    assert renewed and owner.get("blob:lease-race@1").owner == "slow-host"
    assert owner.finish(renewed[0], "succeeded", {}).status == "succeeded"


def test_a_takeover_that_lands_between_a_heartbeats_read_and_write_wins(ledger_factory):
    now = [1000.0]
    owner = ledger_factory(clock=lambda: now[0])
    claim = owner.claim("blob:lease-race@2", "slow-host", ttl_seconds=60)
    taken = []
    taker = ledger_factory(clock=lambda: 1061.0)
    owner._table = _PauseBeforeUpdate(
        owner._table, lambda: taken.append(taker.claim("blob:lease-race@2", "host-b", ttl_seconds=60))
    )
    with pytest.raises(AlreadyClaimedError):
        owner.renew(claim, ttl_seconds=60)
    assert taken[0] is not None and owner.get("blob:lease-race@2").owner == "host-b"


def test_concurrent_takeovers_of_an_expired_claim_have_exactly_one_winner(ledger_factory):
    now = [1000.0]
    ledger_factory(clock=lambda: now[0]).claim("blob:takeover@1", "crashed-host", ttl_seconds=60)
    ledgers = [ledger_factory(clock=lambda: now[0] + 61) for _ in range(8)]
    barrier, results = threading.Barrier(8), []

    def take(ledger, owner):
        barrier.wait()
        results.append(ledger.claim("blob:takeover@1", owner, ttl_seconds=60))

    threads = [threading.Thread(target=take, args=(ledger, f"host-{i}")) for i, ledger in enumerate(ledgers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(results) == 8 and len(winners) == 1 and winners[0].attempts == 2
    stored = ledgers[0].get("blob:takeover@1")
    assert stored.owner == winners[0].owner and stored.etag == winners[0].etag
    ledgers[0].renew(winners[0], ttl_seconds=60)  # the winner's claim is a real lease
