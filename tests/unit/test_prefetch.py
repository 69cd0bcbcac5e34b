"""The prefetching range reader and the background stager (shared.prefetch), with fakes."""

from __future__ import annotations

import random
import threading
import time

import pytest

from shared.errors import BlobChangedError, StorageUnavailableError
from shared.prefetch import calls_behind, prefetched_ranges
from shared.testing import FakeBlobStore

DATA = bytes(random.Random(7).randbytes(10_000))


def _threads(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


class _Ranges:
    """A fake ranged store: records what is fetched, and how far ahead of the consumer each fetch starts."""

    def __init__(self, data: bytes, fail_at: int | None = None, delay: float = 0.0) -> None:
        self.data, self.fail_at, self.delay = data, fail_at, delay
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.consumed = 0
        self.held: list[int] = []  # ranges started and not yet done with (the consumer's one included)

    def fetch(self, offset: int, length: int) -> bytes:
        with self.lock:
            self.started.append(offset)
        time.sleep(self.delay * random.random())
        if offset == self.fail_at:
            raise StorageUnavailableError(f"range at {offset}: storage answered 503", status=503)
        return self.data[offset : offset + length]

    def read(self, chunks, pause: float = 0.0) -> list[bytes]:
        out = []
        for chunk in chunks:
            with self.lock:
                self.consumed += 1
            out.append(chunk)
            time.sleep(pause)  # the consumer works on its range while the reader fetches the next ones
            with self.lock:
                self.held.append(len(self.started) - self.consumed + 1)
        return out


def test_ranges_arrive_in_order_whatever_order_they_finish_in():
    ranges = _Ranges(DATA, delay=0.01)
    chunks = ranges.read(prefetched_ranges(ranges.fetch, len(DATA), range_bytes=700, in_flight=4))
    assert b"".join(chunks) == DATA
    assert [len(c) for c in chunks] == [700] * 14 + [200]
    assert sorted(ranges.started) == list(range(0, len(DATA), 700))  # each range fetched once


def test_at_most_in_flight_ranges_are_fetched_ahead_of_a_slow_consumer():
    ranges = _Ranges(DATA)
    chunks = ranges.read(prefetched_ranges(ranges.fetch, len(DATA), range_bytes=500, in_flight=3), pause=0.01)
    assert b"".join(chunks) == DATA
    # the reader does run ahead (the download overlaps with the consumer), and never holds more than 3 ranges
    assert max(ranges.held) == 3
    assert not _threads("scorehook-range")


def test_a_failed_range_surfaces_after_the_ranges_before_it_and_stops_the_read():
    ranges = _Ranges(DATA, fail_at=3000)
    got: list[bytes] = []
    with pytest.raises(StorageUnavailableError):
        for chunk in prefetched_ranges(ranges.fetch, len(DATA), range_bytes=1000, in_flight=3):
            got.append(chunk)
            time.sleep(0.005)
    assert b"".join(got) == DATA[:3000]
    assert max(ranges.started) < 3000 + 3 * 1000  # nothing is fetched past the window of the failure
    assert not _threads("scorehook-range")  # no thread outlives the read


def test_a_short_range_means_the_blob_changed():
    with pytest.raises(BlobChangedError) as raised:
        list(prefetched_ranges(lambda offset, n: DATA[offset : offset + n // 2], 4000, range_bytes=1000,
                               in_flight=2, where="incoming/a.csv"))  # fmt: skip
    assert raised.value.details["blob"] == "incoming/a.csv"


def test_closing_the_reader_early_cancels_the_rest():
    ranges = _Ranges(DATA)
    reader = prefetched_ranges(ranges.fetch, len(DATA), range_bytes=100, in_flight=4)
    assert next(reader) == DATA[:100]
    reader.close()
    assert len(ranges.started) <= 5 and not _threads("scorehook-range")


def test_a_blob_overwritten_mid_read_is_refused_by_the_next_range():
    blobs = FakeBlobStore()
    etag = blobs.write_bytes("incoming", "a.csv", DATA)
    reader = blobs.read_chunks("incoming", "a.csv", chunk_size=1000, etag=etag, in_flight=3)
    assert next(reader) == DATA[:1000]
    blobs.write_bytes("incoming", "a.csv", b"new content, same name")
    with pytest.raises(BlobChangedError):
        list(reader)
    assert not _threads("scorehook-range")
    # and a stale eTag is refused before any byte is read
    with pytest.raises(BlobChangedError):
        next(blobs.read_chunks("incoming", "a.csv", etag=etag, in_flight=3))


def test_staged_calls_run_behind_the_producer_and_return_in_order():
    produced, running, most = [], [0], [0]
    lock = threading.Lock()

    def items():
        for i in range(12):
            produced.append(i)
            yield i

    def stage(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01 * random.random())
        with lock:
            running[0] -= 1
        return i * 10

    assert calls_behind(items(), stage, workers=2, pending=2) == [i * 10 for i in range(12)]
    assert most[0] == 2  # two stages at once, never more
    assert not _threads("scorehook-stage")


def test_a_failed_stage_fails_the_whole_call_and_stops_the_producer():
    produced: list[int] = []

    def items():
        for i in range(100):
            produced.append(i)
            yield i

    def stage(i: int) -> int:
        if i == 3:
            raise StorageUnavailableError("stage block 3: storage answered 500", status=500)
        return i

    with pytest.raises(StorageUnavailableError):
        calls_behind(items(), stage, workers=2, pending=2)
    assert len(produced) <= 3 + 2 + 1  # the producer stops within the bounded queue
    assert not _threads("scorehook-stage")


def test_a_producer_error_waits_for_the_running_stages_and_propagates():
    finished: list[int] = []

    def items():
        yield 1
        yield 2
        raise ValueError("the engine found a bad row")

    def stage(i: int) -> int:
        time.sleep(0.02)
        finished.append(i)
        return i

    with pytest.raises(ValueError, match="bad row"):
        calls_behind(items(), stage, workers=2, pending=2)
    assert sorted(finished) == [1, 2] and not _threads("scorehook-stage")  # nothing runs on after the error


def test_a_file_overwritten_while_its_ranges_are_prefetched_is_superseded_and_nothing_is_committed(
    scoring, monkeypatch
):
    import shared.scoring
    from shared.events import parse_blob_created

    monkeypatch.setattr(shared.scoring, "_READ_CHUNK", 64)  # many small ranges, three in flight
    rows = b"".join(b"%03d,0.5,1.0,red\n" % i for i in range(200))
    raw = scoring.upload("big.csv", b"id,x1,x2,color\n" + rows)
    original = scoring.blobs.read_chunks

    def overwritten_after_the_first_range(*args, **kwargs):
        reader = original(*args, **kwargs)
        yield next(reader)
        scoring.blobs.write_bytes("incoming", "big.csv", b"id,x1,x2,color\n" + rows[::-1])
        yield from reader

    scoring.blobs.read_chunks = overwritten_after_the_first_range
    outcome = scoring.service.score(parse_blob_created(raw))
    assert outcome.status == "superseded"
    assert scoring.blobs.names("scored") == []  # no partial output
    assert scoring.ledger.get(outcome.key).status == "superseded"
