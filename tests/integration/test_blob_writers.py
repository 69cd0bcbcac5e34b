"""Two writers of one blob against real Azurite: their blocks never mix, the loser never commits the
winner's bytes under its own metadata."""

from __future__ import annotations

import threading

import pytest

from shared.adapters import AzureBlobStore
from shared.errors import WriteConflictError
from shared.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def store(azurite, unique):
    store = AzureBlobStore.from_settings(Settings.from_env({"DataStorage": azurite.connection_string}))
    store.ensure_containers(f"w{unique}")
    store.container = f"w{unique}"
    return store


def _writer(store, name, tag, staged, go, results, **conditions):
    def blocks():
        yield f"{tag}-block-0\n".encode() * 150_000  # over 1 MiB: staged at once (a smaller one is held back)
        staged.set()
        go.wait(10)  # the other writer stages (and maybe commits) meanwhile
        yield f"{tag}-block-1\n".encode() * 1000

    try:
        store.write_blocks(store.container, name, blocks(), metadata={"writer": tag}, **conditions)
        results[tag] = "committed"
    except WriteConflictError as exc:
        results[tag] = f"conflict: {exc.message}"


@pytest.mark.parametrize("conditions", [{}, {"if_none_match": True}])
def test_interleaved_writers_of_one_blob_never_mix_their_blocks(store, conditions):
    name = "shared.csv"
    a_staged, b_done, results = threading.Event(), threading.Event(), {}
    writer_a = threading.Thread(target=_writer, args=(store, name, "A", a_staged, b_done, results), kwargs=conditions)
    writer_a.start()
    assert a_staged.wait(10)
    # B stages the same block positions as A, and commits first
    go_now = threading.Event()
    go_now.set()
    _writer(store, name, "B", threading.Event(), go_now, results, **conditions)
    b_done.set()
    writer_a.join(20)

    info = store.properties(store.container, name)
    data = store.read_bytes(store.container, name).decode()
    writer = info.metadata["writer"]
    # whatever committed last, the blob holds exactly that writer's bytes, under that writer's metadata
    assert set(data.splitlines()) == {f"{writer}-block-0", f"{writer}-block-1"}
    assert results["B"] == "committed"
    # B's commit discarded A's staged blocks: A fails with a conflict instead of committing B's bytes
    assert results["A"].startswith("conflict") and writer == "B"


def test_many_concurrent_writers_leave_one_whole_output(store):
    results: dict[str, str] = {}
    go = threading.Event()
    go.set()
    threads = [
        threading.Thread(target=_writer, args=(store, "many.csv", f"W{i}", threading.Event(), go, results))
        for i in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    writer = store.properties(store.container, "many.csv").metadata["writer"]
    lines = set(store.read_bytes(store.container, "many.csv").decode().splitlines())
    assert lines == {f"{writer}-block-0", f"{writer}-block-1"} and results[writer] == "committed"


@pytest.mark.parametrize("conditions", [{}, {"if_none_match": True}])
def test_a_one_block_writer_racing_a_staging_writer_leaves_one_whole_blob(store, conditions):
    """A one-block write is a single Put Blob racing another writer's staged blocks: the blob ends holding
    exactly one writer's bytes under that writer's metadata, and a conditional race has one winner."""
    name = "single.csv"
    a_staged, b_done, results = threading.Event(), threading.Event(), {}
    writer_a = threading.Thread(target=_writer, args=(store, name, "A", a_staged, b_done, results), kwargs=conditions)
    writer_a.start()
    assert a_staged.wait(10)
    try:
        store.write_blocks(store.container, name, iter([b"B-only\n" * 100]), metadata={"writer": "B"},
                           content_type="text/csv", **conditions)  # fmt: skip
        results["B"] = "committed"
    except WriteConflictError as exc:
        results["B"] = f"conflict: {exc.message}"
    b_done.set()
    writer_a.join(20)
    info = store.properties(store.container, name)
    writer = info.metadata["writer"]
    want = {"B-only"} if writer == "B" else {"A-block-0", "A-block-1"}
    assert set(store.read_bytes(store.container, name).decode().splitlines()) == want
    assert results[writer] == "committed"
    if conditions:
        assert sorted(r.split(":")[0] for r in results.values()) == ["committed", "conflict"]


def test_empty_and_one_block_writes_keep_metadata_and_conditions(store):
    empty = store.write_blocks(store.container, "empty.csv", iter([b"", b""]), metadata={"k": "v"}, if_none_match=True)
    assert store.read_bytes(store.container, "empty.csv") == b""
    assert store.properties(store.container, "empty.csv").metadata == {"k": "v"}
    with pytest.raises(WriteConflictError):
        store.write_blocks(store.container, "empty.csv", iter([b"x"]), if_none_match=True)
    store.write_blocks(store.container, "empty.csv", iter([b"one"]), metadata={"k": "w"}, if_match=empty)
    assert store.read_bytes(store.container, "empty.csv") == b"one"
    assert store.properties(store.container, "empty.csv").metadata == {"k": "w"}
