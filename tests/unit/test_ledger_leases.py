"""FakeLedger leases: claims expire after their TTL unless renewed; a lost claim cannot be renewed or finished."""

from __future__ import annotations

import threading

import pytest

from shared.errors import AlreadyClaimedError, TransientError
from shared.ports import Ledger
from shared.testing import FakeLedger


@pytest.fixture
def clock():
    return [1000.0]


@pytest.fixture
def ledger(clock):
    return FakeLedger(clock=lambda: clock[0])


def test_the_fake_ledger_implements_the_port():
    assert isinstance(FakeLedger(), Ledger)


def test_renew_extends_a_claim_beyond_its_first_ttl(ledger, clock):
    claim = ledger.claim("k", "host-a", ttl_seconds=60)
    clock[0] += 50
    renewed = ledger.renew(claim, ttl_seconds=60)
    assert renewed.expires_at == clock[0] + 60 and renewed.etag != claim.etag
    assert (renewed.key, renewed.owner, renewed.attempts, renewed.status) == ("k", "host-a", 1, "claimed")
    clock[0] += 40  # 90 s after the claim: past the first TTL, inside the renewed one
    assert ledger.claim("k", "host-b", ttl_seconds=60) is None
    assert ledger.get("k").owner == "host-a"


def test_a_heartbeat_keeps_a_long_job_and_its_end_frees_the_key_within_one_ttl(ledger, clock):
    claim = ledger.claim("k", "host-a", ttl_seconds=60)
    for _ in range(30):  # 10 minutes of scoring, a heartbeat every 20 s
        clock[0] += 20
        claim = ledger.renew(claim, ttl_seconds=60)
        assert ledger.claim("k", "host-b", ttl_seconds=60) is None
    clock[0] += 61  # host-a died: no more heartbeats
    taken = ledger.claim("k", "host-b", ttl_seconds=60)
    assert taken is not None and taken.owner == "host-b" and taken.attempts == 2


def test_renew_after_a_takeover_raises_and_the_old_owner_cannot_finish(ledger, clock):
    old = ledger.claim("k", "host-a", ttl_seconds=60)
    clock[0] += 61
    new = ledger.claim("k", "host-b", ttl_seconds=60)
    with pytest.raises(AlreadyClaimedError) as caught:
        ledger.renew(old, ttl_seconds=60)
    assert isinstance(caught.value, TransientError) and caught.value.details["key"] == "k"
    with pytest.raises(AlreadyClaimedError):
        ledger.finish(old, "succeeded", {})
    ledger.release(old)  # a lost claim is left alone
    assert ledger.get("k") == new


def test_finish_and_release_take_the_renewed_claim_and_refuse_the_stale_copy(ledger):
    claim = ledger.claim("k", "host-a", ttl_seconds=60, details={"event_id": "e1"})
    renewed = ledger.renew(claim, ttl_seconds=60)
    with pytest.raises(AlreadyClaimedError):
        ledger.finish(claim, "succeeded", {})
    ledger.release(claim)
    assert ledger.get("k") == renewed
    done = ledger.finish(renewed, "succeeded", {"rows": 3})
    assert ledger.get("k").status == "succeeded" and done.details == {"event_id": "e1", "rows": 3}

    other = ledger.renew(ledger.claim("j", "host-a", ttl_seconds=60), ttl_seconds=60)
    ledger.release(other)
    assert ledger.get("j") is None


@pytest.mark.parametrize("end", ["finish", "release", "forget"])
def test_a_claim_that_ended_cannot_be_renewed(ledger, end):
    claim = ledger.claim("k", "host-a", ttl_seconds=60)
    if end == "finish":
        claim = ledger.finish(claim, "failed", {"reason": "bad_file_format"})
    elif end == "release":
        ledger.release(claim)
    else:
        ledger.forget("k")
    with pytest.raises(AlreadyClaimedError):
        ledger.renew(claim, ttl_seconds=60)
    assert ledger.get("k") is None or ledger.get("k").status == "failed"


def test_a_renewed_expired_claim_that_nobody_took_is_still_ours(ledger, clock):
    claim = ledger.claim("k", "host-a", ttl_seconds=60)
    clock[0] += 70  # a long pause (GC, a slow network), but no one took the key over
    renewed = ledger.renew(claim, ttl_seconds=60)
    assert ledger.claim("k", "host-b", ttl_seconds=60) is None
    assert ledger.finish(renewed, "succeeded", {}).status == "succeeded"


def test_concurrent_takeovers_of_an_expired_claim_have_one_winner(ledger, clock):
    ledger.claim("k", "crashed", ttl_seconds=60)
    clock[0] += 61
    barrier, results = threading.Barrier(8), []

    def take(owner):
        barrier.wait()
        results.append(ledger.claim("k", owner, ttl_seconds=60))

    threads = [threading.Thread(target=take, args=(f"host-{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0].attempts == 2 and ledger.get("k") == winners[0]


def test_the_table_ledger_implements_the_port():
    from shared.adapters.ledger import TableLedger

    assert isinstance(TableLedger(table=None), Ledger)
