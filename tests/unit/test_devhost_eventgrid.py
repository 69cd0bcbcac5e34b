"""devhost's blob watcher paces itself: a costly scan (a container of thousands of blobs) is followed by a
pause in proportion to its CPU, so the watcher never holds most of devhost's GIL (Event Grid costs an app
nothing); a scan that only waited (storage down, the SDK retrying) delays nothing."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import pytest

from devhost import eventgrid
from devhost.eventgrid import WATCHER_PAUSE_FACTOR, LocalEventGrid


def busy(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU (as a listing's parse would)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def scan_starts(scan: Callable[[int], None], run_seconds: float) -> list[float]:
    grid = LocalEventGrid([], "http://127.0.0.1:1", blob_service=None, poll_interval=0.01)
    starts: list[float] = []

    def fake_scan(emit: bool, containers: list[str] | None = None) -> None:
        starts.append(time.perf_counter())
        scan(len(starts))

    grid._scan = fake_scan  # type: ignore[method-assign]
    watcher = threading.Thread(target=grid._watch_loop, daemon=True)
    watcher.start()
    time.sleep(run_seconds)
    grid._stop.set()
    watcher.join(timeout=5)
    grid._pool.shutdown(wait=False)
    return starts


def test_a_costly_scan_is_followed_by_a_pause_in_proportion():
    starts = scan_starts(lambda _: busy(0.05), 1.2)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) >= 2
    assert min(gaps) >= 0.05 * (1 + WATCHER_PAUSE_FACTOR) * 0.9  # not every 10 ms + 50 ms
    assert len(starts) <= 1.2 / (0.05 * (1 + WATCHER_PAUSE_FACTOR)) + 1


def test_a_quick_scan_keeps_the_poll_interval():
    starts = scan_starts(lambda _: None, 0.5)
    assert len(starts) >= 10  # every ~10 ms, give or take the machine


def test_a_scan_that_waited_on_storage_does_not_delay_the_next():
    """A scan during an outage blocks for seconds in retries, holding no GIL: the files uploaded after
    storage is back are seen at the poll interval, not after four times the outage."""

    def outage(scan: int) -> None:
        if scan == 1:
            time.sleep(1.0)
        elif scan == 2:
            raise ConnectionError("storage down")

    starts = scan_starts(outage, 1.6)
    assert len(starts) >= 3
    assert starts[1] - starts[0] < 1.3  # 1 s of waiting, then the poll interval
    assert starts[2] - starts[1] < 0.3  # a failed scan is not a reason to wait either


def test_the_pause_has_a_ceiling(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(eventgrid, "WATCHER_MAX_PAUSE", 0.2)
    starts = scan_starts(lambda scan: busy(0.2) if scan == 1 else None, 1.2)
    assert len(starts) >= 2
    assert starts[1] - starts[0] < 0.7  # 0.2 s of CPU, then the ceiling (not 4 x 0.2 s)
