"""devhost's blob watcher paces itself: a slow scan (a container of thousands of blobs) is followed by a
pause in proportion, so the watcher never holds most of devhost's GIL (Event Grid costs an app nothing)."""

from __future__ import annotations

import itertools
import threading
import time

from devhost.eventgrid import WATCHER_PAUSE_FACTOR, LocalEventGrid


def scan_starts(scan_seconds: float, run_seconds: float) -> list[float]:
    grid = LocalEventGrid([], "http://127.0.0.1:1", blob_service=None, poll_interval=0.01)
    starts: list[float] = []

    def scan(emit: bool, containers: list[str] | None = None) -> None:
        starts.append(time.perf_counter())
        time.sleep(scan_seconds)

    grid._scan = scan  # type: ignore[method-assign]
    watcher = threading.Thread(target=grid._watch_loop, daemon=True)
    watcher.start()
    time.sleep(run_seconds)
    grid._stop.set()
    watcher.join(timeout=5)
    grid._pool.shutdown(wait=False)
    return starts


def test_a_slow_scan_is_followed_by_a_pause_in_proportion():
    starts = scan_starts(0.05, 1.2)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) >= 2
    assert min(gaps) >= 0.05 * (1 + WATCHER_PAUSE_FACTOR) * 0.9  # not every 10 ms + 50 ms
    assert len(starts) <= 1.2 / (0.05 * (1 + WATCHER_PAUSE_FACTOR)) + 1


def test_a_quick_scan_keeps_the_poll_interval():
    starts = scan_starts(0.0, 0.5)
    assert len(starts) >= 10  # every ~10 ms, give or take the machine
