"""A 500-file burst through devhost's own local Event Grid: files uploaded to Azurite as fast as eight
uploaders go, announced by devhost's blob watcher, scored. Measures files/s, event→output latency (upload
acknowledged → output committed, from the output's ``scored_at`` lineage) and devhost's peak RSS, and checks
the same invariants as every run."""

from __future__ import annotations

import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from tests.reliability import figures
from tests.reliability.harness import (
    INPUT,
    OUTPUT,
    RssSampler,
    Stack,
    Version,
    check_drift,
    check_invariants,
    drift_totals,
    sample_csv,
    wait_all,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.reliability]

FILES = 500


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@pytest.mark.timeout(900)
def test_a_500_file_burst(stack: Stack) -> None:
    prefix = f"burst-{uuid.uuid4().hex[:8]}/"
    payloads = {f"{prefix}f{i:04d}.csv": (sample_csv(40 + i % 21, seed=i), 40 + i % 21) for i in range(FILES)}
    uploaded: dict[str, float] = {}
    versions: dict[str, list[Version]] = {}

    def upload(name: str) -> None:
        data, rows = payloads[name]
        etag = stack.upload(INPUT, name, data)
        uploaded[name] = time.time()
        versions[name] = [Version(etag, rows)]

    before = drift_totals(stack)
    with RssSampler(stack.dev.process.pid, interval=0.1) as rss:
        started = time.time()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(upload, payloads))
        wait_all(stack, INPUT, versions, timeout=420, prefix=prefix)
    latencies, last = [], started
    for blob in stack.blobs.get_container_client(OUTPUT).list_blobs(name_starts_with=f"{INPUT}/{prefix}",
                                                                    include=["metadata"]):  # fmt: skip
        meta = blob.metadata or {}
        name = meta.get("input_url", "").split(f"/{INPUT}/", 1)[-1]
        if name in uploaded and meta.get("scored_at"):
            done = datetime.fromisoformat(meta["scored_at"]).timestamp()
            latencies.append(max(0.0, done - uploaded[name]))
            last = max(last, done)
    result = check_invariants(stack, INPUT, versions, prefix)
    problems = result.pop("problems")
    drift = check_drift(stack, INPUT, versions, before)  # each file's profile counted exactly once in its window
    problems += drift.pop("problems")
    result.update(drift)
    deliveries = [d for d in stack.dev.deliveries() if prefix in (d.get("subject") or "") and "status" in d]
    alive = stack.alive()
    figures.add("burst", delivered=len(deliveries), **result, crashes=int(not alive))
    if latencies:
        figures.add("burst", files_per_s=round(len(latencies) / max(last - started, 1e-6), 1),
                    p50_s=round(statistics.median(latencies), 2), p99_s=round(_percentile(latencies, 0.99), 2))  # fmt: skip
    figures.add("burst", peak_rss_mb=round(rss.peak / 2**20), rss_growth_mb=round(rss.growth_mb))
    assert alive, "devhost died during the burst"
    assert not problems, f"{ {k: result[k] for k in ('files', 'outputs', 'lost', 'duplicates', 'partial_visible')} }\n  " + "\n  ".join(problems[:20])
    assert len(latencies) == FILES
    assert result["profiles"] == FILES and result["profiles_missing"] == 0
