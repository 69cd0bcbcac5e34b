"""Drift windows on real Azurite: parts created with If-None-Match, compaction under the window's eTag by
racing compactors, unquoted listing eTags compared in one form, the wave document's conditional writes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from shared.adapters import AzureBlobStore
from shared.drift.profile import FeatureSpec, Profile
from shared.drift.store import ProfileStore, window_of
from shared.errors import WriteConflictError
from shared.settings import Settings

pytestmark = pytest.mark.integration

W = window_of(datetime(2026, 11, 23, 10, 30, tzinfo=UTC), 3600)


def part(rows: int, seed: int) -> Profile:
    ids = [f"s{seed}-{i}" for i in range(rows)]
    return Profile([FeatureSpec("x", "numeric", (0.0, 0.5, 1.0))], model_version="1").update(
        pa.table({"id": ids, "x": [(i % 10) / 10 for i in range(rows)]})
    )


@pytest.fixture
def store(azurite, unique):
    blobs = AzureBlobStore.from_settings(Settings.from_env({"DataStorage": azurite.connection_string}))
    blobs.ensure_containers(f"drift{unique}")
    return ProfileStore(blobs, f"drift{unique}", retention_seconds=0)


def test_racing_writers_with_duplicates_and_compactors_count_each_input_once(store):
    inputs = list(range(24))
    created: list[bool] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer(chunk: list[int]) -> None:
        try:
            for i in chunk:
                ok = store.write_part(
                    "m", "1", W, part(3 + i % 5, i), f"blob:u{i}@0x{i}", f"http://h/c/{i}.csv"
                )
                with lock:
                    created.append(ok)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    def compactor() -> None:
        try:
            for _ in range(4):
                ProfileStore(store.blobs, store.container, retention_seconds=0).compact("m", "1", W.key)
        except BaseException as exc:
            errors.append(exc)

    deliveries = inputs * 2
    threads = [threading.Thread(target=writer, args=(deliveries[k::4],)) for k in range(4)]
    threads += [threading.Thread(target=compactor) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert created.count(True) >= len(inputs)  # a part pruned before its duplicate came is written again
    state = store.compact("m", "1", W.key)
    assert state.parts == len(inputs) and state.rows == sum(3 + i % 5 for i in inputs)
    assert state.inputs_missing_profiles == 0
    assert not list(store.blobs.list_blobs(store.container, "parts/"))  # retention 0: all pruned


def test_listing_etags_and_stored_etags_compare_equal_and_an_idle_compaction_writes_nothing(store):
    store.write_part("m", "1", W, part(10, 1), "k1", "http://h/c/1.csv")
    store.open_window("m", "1", W)
    state = store.compact("m", "1", W.key)
    [listed] = list(store.windows("m"))
    assert '"' not in listed.etag and listed.etag == state.etag  # Azurite lists it unquoted
    again = ProfileStore(store.blobs, store.container).compact("m", "1", W.key)  # a fresh process
    assert again.changed is False and again.etag == state.etag
    assert store.open_window("m", "1", W) is False  # the window was opened once


def test_the_wave_document_is_written_conditionally(store):
    store.save_wave("m", "1", {"state": "drift", "wave": 1}, None)
    with pytest.raises(WriteConflictError):
        store.save_wave("m", "1", {"state": "drift", "wave": 1}, None)  # another evaluator started it
    doc, etag = store.wave("m", "1")
    store.save_wave("m", "1", {**doc, "state": "clear"}, etag)
    with pytest.raises(WriteConflictError):
        store.save_wave("m", "1", {**doc, "announced": True}, etag)  # stale eTag
