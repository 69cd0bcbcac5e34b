"""Overlapping blob I/O with scoring: ranges fetched ahead of the parser, blocks staged behind the encoder.

The blob adapter reads an input blob through :func:`prefetched_ranges`: a few ranges of a few MiB are in
flight on a small thread pool while the parser consumes the earlier ones, so the download overlaps with
parsing and no single connection's latency paces the file. At most ``in_flight`` ranges are requested or
held unconsumed at any time, whatever the object's size. The output goes the other way through
:func:`calls_behind`: blocks are staged from a background pool (a bounded queue) while the engine goes on.

Example:
    >>> data = bytes(range(10))
    >>> b"".join(prefetched_ranges(lambda offset, n: data[offset:offset + n], 10, range_bytes=3))
    b'\\x00\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\x08\\t'
"""

from __future__ import annotations

import collections
import io
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from shared.errors import BlobChangedError

__all__ = ["ChunkStream", "calls_behind", "prefetched_ranges"]

T = TypeVar("T")
R = TypeVar("R")


def prefetched_ranges(
    fetch: Callable[[int, int], bytes],
    size: int,
    start: int = 0,
    *,
    range_bytes: int = 8 << 20,
    in_flight: int = 3,
    where: str = "the blob",
) -> Iterator[bytes]:
    """The bytes ``[start, size)`` in order, as ranges of ``range_bytes`` fetched by ``fetch(offset, length)``
    on up to ``in_flight`` threads: while the consumer works on one range, the next ``in_flight - 1`` are
    fetched, so at most ``in_flight`` ranges are in memory at once (the consumer's included).

    An error of any range (``fetch`` raising, e.g. a stale eTag) surfaces when the consumer reaches that
    range, after the ranges before it; the ranges after it are cancelled, nothing more is fetched. A range
    shorter than asked for means the object changed under us: :class:`BlobChangedError`. Closing the
    iterator early cancels what is pending and waits for the running fetches (no thread outlives it).

    Example:
        >>> data = b"abcdefgh"
        >>> [bytes(r) for r in prefetched_ranges(lambda o, n: data[o:o + n], 8, 2, range_bytes=4)]
        [b'cdef', b'gh']
    """
    if range_bytes <= 0 or in_flight <= 0:
        raise ValueError("range_bytes and in_flight must be positive")
    offsets = iter(range(start, size, range_bytes))

    def checked(offset: int) -> bytes:
        length = min(range_bytes, size - offset)
        data = fetch(offset, length)
        if len(data) != length:
            raise BlobChangedError(
                f"{where} changed while it was read: the range at {offset} gave {len(data)} of {length} bytes",
                blob=where, offset=offset,
            )  # fmt: skip
        return data

    if in_flight == 1 or size - start <= range_bytes:  # nothing to overlap: no threads
        for offset in offsets:
            yield checked(offset)
        return
    pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="scorehook-range")
    pending: collections.deque[Future[bytes]] = collections.deque()
    try:
        for offset in offsets:
            pending.append(pool.submit(checked, offset))
            if len(pending) >= in_flight:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def calls_behind(
    items: Iterable[T], call: Callable[[T], R], *, workers: int = 2, pending: int = 2
) -> list[R]:
    """``call(item)`` for every item, on ``workers`` threads, while the items are still being produced: the
    producer (the caller's thread, iterating ``items``) runs at most ``pending`` calls ahead of the finished
    ones and waits beyond that (bounded memory). The results come back in item order once every call has
    finished. The first error, of a call or of the producer, is raised after the calls still queued were
    cancelled and the running ones waited for: a caller that commits after this returns never commits
    over a failed call.

    Example:
        >>> calls_behind(iter([1, 2, 3]), lambda n: n * 10)
        [10, 20, 30]
    """
    if workers <= 0 or pending <= 0:
        raise ValueError("workers and pending must be positive")
    results: list[R] = []
    running: collections.deque[Future[R]] = collections.deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scorehook-stage")
    try:
        for item in items:
            while len(running) >= pending:
                results.append(running.popleft().result())
            running.append(pool.submit(call, item))
        while running:
            results.append(running.popleft().result())
        return results
    finally:
        for future in running:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


class ChunkStream(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (ranged blob downloads).

    Example:
        >>> io.BufferedReader(ChunkStream(iter([b"ab", b"cd"]))).read()
        b'abcd'
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")  # the rest of the current chunk, never copied but once, into the reader

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
