"""Duplicate/reorder storms: every event delivered 1-N times, shuffled, concurrently, to devhost's scoring
webhook; some files overwritten, with the older version's event arriving last. Every file must end scored
exactly once, with its newest version's rows (checked through the output's lineage ``input_etag``), nothing
lost, nothing partial.

The small storm runs in ``make test``; the big one (>= 100 files, up to 10 copies) in ``make reliability``.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import pytest

from tests.reliability import figures
from tests.reliability.harness import (
    STORM,
    Stack,
    Version,
    check_drift,
    check_invariants,
    deliver,
    drift_totals,
    sample_csv,
    wait_all,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def run_storm(stack: Stack, *, section: str, files: int, max_copies: int, overwrite_every: int, workers: int,
              seed: int) -> dict[str, Any]:  # fmt: skip
    """Upload ``files`` files to the ``storm`` container (not watched by the local Event Grid: every delivery
    is ours), overwrite every ``overwrite_every``-th, and deliver the storm. Returns the invariants' figures."""
    rng = random.Random(seed)
    prefix = f"{section}-{uuid.uuid4().hex[:8]}/"
    versions: dict[str, list[Version]] = {}
    first: list[dict[str, Any]] = []
    last: list[dict[str, Any]] = []
    for i in range(files):
        name = f"{prefix}f{i:04d}.csv"
        rows = 20 + (i * 7) % 41
        etag = stack.upload(STORM, name, sample_csv(rows, seed=i))
        versions[name] = [Version(etag, rows)]
        old = stack.event(STORM, name, etag=etag, size=0)
        if overwrite_every and i % overwrite_every == 0:
            newer = rows + 5
            etag2 = stack.upload(STORM, name, sample_csv(newer, seed=10_000 + i), overwrite=True)
            versions[name].append(Version(etag2, newer))
            new = stack.event(STORM, name, etag=etag2, size=0)
            first += [new] * rng.randint(1, max_copies)
            last += [old] * rng.randint(1, max_copies)  # the older event arrives after the newer one
        else:
            first += [old] * rng.randint(1, max_copies)
    rng.shuffle(first)
    rng.shuffle(last)
    before = drift_totals(stack)
    started = time.monotonic()
    counts = deliver(stack, first, workers=workers)
    late = deliver(stack, last, workers=workers)
    waited = wait_all(stack, STORM, versions, timeout=120, prefix=prefix)
    result = check_invariants(stack, STORM, versions, prefix)
    problems = result.pop("problems")
    drift = check_drift(stack, STORM, versions, before)  # each file's profile counted exactly once in its window
    problems += drift.pop("problems")
    result.update(drift)
    alive = stack.alive()
    figures.add(section, delivered=counts["delivered"] + late["delivered"], **{k: v for k, v in result.items()},
                crashes=int(not alive), gave_up=counts["gave_up"] + late["gave_up"],
                seconds=round(time.monotonic() - started, 1), events=len(first) + len(last))  # fmt: skip
    result.update(problems=problems, alive=alive, gave_up=counts["gave_up"] + late["gave_up"], waited=waited)
    return result


def _assert_promise(result: dict[str, Any]) -> None:
    assert result["alive"], "devhost died during the storm"
    summary = {k: result[k] for k in ("files", "outputs", "duplicates", "lost", "partial_visible", "stale", "gave_up",
                                      "profiles", "profiles_missing", "profiles_double_counted")}  # fmt: skip
    assert not result["problems"], f"{summary}\n  " + "\n  ".join(result["problems"][:20])
    assert result["outputs"] == result["files"] and result["gave_up"] == 0, summary
    assert result["profiles"] == result["files"] and result["profiles_missing"] == 0, summary


def test_small_storm(stack: Stack) -> None:
    """30 files, each event 1-4 times, every 5th overwritten (older event last), 6 concurrent senders."""
    _assert_promise(run_storm(stack, section="storm-small", files=30, max_copies=4, overwrite_every=5, workers=6, seed=1))


@pytest.mark.reliability
@pytest.mark.timeout(900)
def test_big_storm(stack: Stack) -> None:
    """120 files, each event 1-10 times, every 6th overwritten (older event last), 10 concurrent senders."""
    _assert_promise(run_storm(stack, section="storm-big", files=120, max_copies=10, overwrite_every=6, workers=10, seed=2))
