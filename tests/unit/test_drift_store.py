"""Contention-free drift windows on the fakes: one immutable part per input, a compactor under the window's
eTag, pruning, missing profiles counted, and one ``Drift.Detected`` per drift wave."""

from __future__ import annotations

import json
import math
import threading
from dataclasses import replace
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from shared.drift.evaluate import DriftPolicy
from shared.drift.monitor import DriftMonitor, ProfileObserver
from shared.drift.profile import FeatureSpec, Profile
from shared.drift.store import ProfileStore, part_tag, window_of
from shared.errors import StorageUnavailableError
from shared.events import parse_blob_created
from shared.logs import capture_logs
from shared.testing import FakeBlobStore
from tests.unit.test_drift_monitor import NOW, WINDOW, csv_bytes, drift, score, table

__all__ = ["drift"]  # the fixture, shared with test_drift_monitor

W = window_of(datetime.fromtimestamp(NOW, UTC), 3600)
LAYOUT = [FeatureSpec("x", "numeric", (0.0, 0.5, 1.0))]


def part(rows: int, seed: int) -> Profile:
    ids = [f"s{seed}-{i}" for i in range(rows)]
    return Profile(LAYOUT, model_version="1").update(
        pa.table({"id": ids, "x": [(i % 10) / 10 for i in range(rows)]})
    )


class AzureLikeBlobs(FakeBlobStore):
    """Lists eTags unquoted, as ``list_blobs`` does on Azure and Azurite (properties and writes quote them)."""

    def list_blobs(self, container, prefix=None):
        for info in super().list_blobs(container, prefix):
            yield replace(info, etag=info.etag.strip('"'))


class FailingParts(AzureLikeBlobs):
    """Part writes fail with a transient error ``failures`` times (None: always)."""

    def __init__(self, failures: int | None = None) -> None:
        super().__init__()
        self.failures, self.part_writes = failures, 0

    def write_blocks(self, container, name, blocks, **kwargs):
        if name.startswith("parts/"):
            self.part_writes += 1
            if self.failures is None or self.part_writes <= self.failures:
                raise StorageUnavailableError("storage answered 503")
        return super().write_blocks(container, name, blocks, **kwargs)


def attach(s, blobs: FakeBlobStore, **kwargs) -> DriftMonitor:
    """The drift fixture's monitor, on its own drift blob store."""
    s.monitor = DriftMonitor(
        store=ProfileStore(blobs, "drift", clock=lambda: NOW), registry=s.registry, ledger=s.ledger,
        publisher=s.publisher, policy=DriftPolicy(), window_seconds=3600, cooldown_seconds=86400,
        retrainer=s.retrainer, clock=lambda: NOW, part_retry_seconds=0.0, **kwargs,
    )  # fmt: skip
    s.service.drift = s.monitor
    return s.monitor


def snapshot(blobs: FakeBlobStore) -> dict[str, str]:
    return {info.name: info.etag for info in blobs.list_blobs("drift")}


# -- the scoring path ---------------------------------------------------------------------------------
def test_concurrent_writers_with_duplicates_and_compactors_count_every_input_exactly_once():
    store = ProfileStore(AzureLikeBlobs())
    inputs = list(range(40))
    deliveries = inputs * 3  # every input delivered three times
    written: list[bool] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer(chunk: list[int]) -> None:
        try:
            for i in chunk:
                ok = store.write_part(
                    "m", "1", W, part(5 + i % 7, i), f"blob:u{i}@0x{i}", f"http://h/a/c/{i}.csv"
                )
                with lock:
                    written.append(ok)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    def compactor() -> None:
        try:
            for _ in range(5):
                store.compact("m", "1", W.key, now=NOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(deliveries[k::6],)) for k in range(6)]
    threads += [threading.Thread(target=compactor) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert written.count(True) == len(inputs)  # If-None-Match: each part is written once
    state = store.compact("m", "1", W.key, now=NOW)
    assert state.parts == len(inputs) and state.inputs_missing_profiles == 0
    assert state.rows == sum(5 + i % 7 for i in inputs)
    assert sorted(state.inputs) == sorted(f"http://h/a/c/{i}.csv" for i in inputs)


def test_a_crash_between_the_part_and_the_ledger_is_redelivered_and_counted_once(drift):
    monitor = attach(drift, AzureLikeBlobs())
    finish = drift.ledger.finish
    crashed: list[bool] = []

    def crash_once(claim, status, details):
        if status == "succeeded" and not crashed:
            crashed.append(True)
            raise StorageUnavailableError("the instance died before the ledger said done")
        return finish(claim, status, details)

    drift.ledger.finish = crash_once
    event = drift.upload("a.csv", csv_bytes(table(300, seed=2, prefix="a")))
    with pytest.raises(StorageUnavailableError):
        drift.service.score(parse_blob_created(event))
    state = monitor.store.compact("tiny", "1", WINDOW, now=NOW)
    assert state.parts == 1 and state.rows == 300  # the profile was written before the crash

    again = drift.service.score(parse_blob_created(event))  # the redelivery
    assert again.status in ("succeeded", "superseded")
    state = monitor.store.compact("tiny", "1", WINDOW, now=NOW)
    assert state.parts == 1 and state.rows == 300 and state.inputs_missing_profiles == 0


def test_record_twice_with_the_same_key_writes_one_part(drift):
    monitor = attach(drift, AzureLikeBlobs())
    baseline, _ = monitor.baseline(drift.version)

    def observer(seed: int) -> ProfileObserver:
        obs = ProfileObserver(baseline.blank(model_version="1"), salt="k")
        obs(pa.record_batch(table(50, seed=seed, prefix="r").to_batches()[0]), None)
        return obs

    when = datetime.fromtimestamp(NOW, UTC)
    first = monitor.record(
        drift.version, when, observer(1), "blob:u@0x1", "http://h/a/incoming/r.csv", '"0x1"'
    )
    second = monitor.record(
        drift.version, when, observer(1), "blob:u@0x1", "http://h/a/incoming/r.csv", "0x1"
    )
    assert (first.status, second.status) == ("recorded", "already_recorded")
    # the first file of a window closes the one before
    assert first.closed is not None and second.closed is None
    assert monitor.store.compact("tiny", "1", WINDOW, now=NOW).rows == 50


def same(a: Profile, b: Profile) -> bool:
    """Equal profiles, but for the last bits of the moments (Chan's combination rounds by merge order)."""

    def close(x: object, y: object) -> bool:
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(close(x[k], y[k]) for k in x)
        if isinstance(x, float) and isinstance(y, float):
            return math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-300)
        return x == y

    return close(a.to_json(), b.to_json())


def whole(*parts: Profile) -> Profile:
    """The profile of all the parts' rows together, as the window holds them."""
    out = parts[0].blank(seed=parts[0].seed, model_version="1", window=W.iso())
    for p in parts:
        out.absorb(p)
    return out


def test_a_part_of_another_layout_is_set_aside_and_every_input_is_counted_once():
    blobs = AzureLikeBlobs()
    store = ProfileStore(blobs)
    store.write_part("m", "1", W, part(10, 1), "k1", "http://h/a/c/1.csv")
    odd = Profile([FeatureSpec("x", "numeric", (0.0, 2.0))], model_version="1").update(
        pa.table({"id": ["o"], "x": [1.0]})
    )
    store.write_part("m", "1", W, odd, "k2", "http://h/a/c/2.csv")
    store.write_part("m", "1", W, part(5, 3), "k3", "http://h/a/c/3.csv")
    with capture_logs() as logs:
        state = store.compact("m", "1", W.key, now=NOW)
    # the window takes the layout of its first part by name; the parts of the other layout are set aside
    assert state.parts + state.inputs_missing_profiles == 3 and state.inputs_missing_profiles >= 1
    missing = {m["input"] for m in state.missing.values()}
    assert missing.isdisjoint(state.inputs) and missing | set(state.inputs) == {
        f"http://h/a/c/{i}.csv" for i in (1, 2, 3)
    }
    logged = {line.get("input") for line in logs if "set aside" in line["message"]}
    assert logged == missing
    assert state.rows == (15 if missing == {"http://h/a/c/2.csv"} else 1)


def test_instances_writing_and_compacting_one_window_concurrently_count_each_input_once():
    blobs = AzureLikeBlobs()
    instances = [ProfileStore(blobs) for _ in range(3)]
    inputs = list(range(60))
    deliveries = inputs * 3  # each input delivered three times, to any instance
    errors: list[BaseException] = []

    def writer(store: ProfileStore, chunk: list[int]) -> None:
        try:
            for i in chunk:
                store.write_part("m", "1", W, part(3 + i % 5, i), f"blob:u{i}@0x{i}", f"http://h/a/c/{i}.csv")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    def compactor(store: ProfileStore) -> None:
        try:
            while not done.wait(0.002):  # a tick now and then, between the writes of every instance
                store.compact("m", "1", W.key, now=NOW)
        except BaseException as exc:
            errors.append(exc)

    done = threading.Event()
    writers = [threading.Thread(target=writer, args=(instances[k % 3], deliveries[k::9])) for k in range(9)]
    compactors = [threading.Thread(target=compactor, args=(store,)) for store in instances]
    for t in writers + compactors:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in compactors:
        t.join()
    assert not errors
    for store in instances:  # each instance's last compaction, whatever it still held, changes nothing
        store.compact("m", "1", W.key, now=NOW)
    state = ProfileStore(blobs).compact("m", "1", W.key, now=NOW)
    assert state.parts == len(inputs) and state.inputs_missing_profiles == 0
    assert same(state.profile, whole(*(part(3 + i % 5, i) for i in inputs)))
    assert sorted(state.inputs) == sorted(f"http://h/a/c/{i}.csv" for i in inputs)


def test_two_compactors_racing_never_lose_each_others_parts():
    blobs = AzureLikeBlobs()
    store = ProfileStore(blobs)
    for i in range(2):
        store.write_part("m", "1", W, part(10, i), f"k{i}", f"http://h/a/c/{i}.csv")
    raced: list[int] = []

    def race(container: str, name: str) -> None:  # another evaluator commits first, with a newer part
        if name.startswith("windows/") and not raced:
            raced.append(1)
            store.write_part("m", "1", W, part(7, 9), "k9", "http://h/a/c/9.csv")
            ProfileStore(blobs).compact("m", "1", W.key, now=NOW)

    blobs.before_commit = race
    with capture_logs() as logs:
        state = store.compact("m", "1", W.key, now=NOW)
    assert raced and any("another evaluator" in line["message"] for line in logs)
    assert state.parts == 3 and state.rows == 27
    assert json.loads(blobs.read_bytes("drift", f"windows/m/1/{W.key}.json"))["parts"] == 3


class CountingReads(AzureLikeBlobs):
    """Counts the reads of profile parts."""

    def __init__(self) -> None:
        super().__init__()
        self.part_reads: list[str] = []

    def read_bytes(self, container, name):
        if name.startswith("parts/"):
            self.part_reads.append(name)
        return super().read_bytes(container, name)


def test_a_compactor_parses_the_parts_its_process_wrote_without_reading_them_back():
    blobs = CountingReads()
    here, elsewhere = ProfileStore(blobs), ProfileStore(blobs)
    for i in range(6):
        (here if i % 3 else elsewhere).write_part("m", "1", W, part(4 + i, i), f"k{i}", f"http://h/a/c/{i}.csv")
    state = here.compact("m", "1", W.key, now=NOW)
    # the two parts the other instance wrote are read; the four written here come from memory
    assert sorted(blobs.part_reads) == sorted(here.part_name("m", "1", W.key, part_tag(f"k{i}")) for i in (0, 3))
    assert state.parts == 6 and same(state.profile, whole(*(part(4 + i, i) for i in range(6))))
    blobs.part_reads.clear()
    again = ProfileStore(blobs)
    for i in range(6, 8):
        here.write_part("m", "1", W, part(4 + i, i), f"k{i}", f"http://h/a/c/{i}.csv")
    assert same(here.compact("m", "1", W.key, now=NOW).profile, whole(*(part(4 + i, i) for i in range(8))))
    assert blobs.part_reads == [] and here._own == {}  # absorbed: nothing kept
    assert same(again.compact("m", "1", W.key, now=NOW).profile, here.compacted("m", "1", W.key).profile)


def test_a_part_changed_in_storage_after_its_write_is_read_from_storage():
    blobs = CountingReads()
    store = ProfileStore(blobs)
    store.write_part("m", "1", W, part(10, 1), "k1", "http://h/a/c/1.csv")
    name = store.part_name("m", "1", W.key, part_tag("k1"))
    replaced = json.loads(blobs.read_bytes("drift", name))
    replaced["profile"] = part(3, 2).to_json()  # rewritten by hand: the listing shows another eTag
    blobs.write_bytes("drift", name, json.dumps(replaced).encode())
    blobs.part_reads.clear()
    state = store.compact("m", "1", W.key, now=NOW)
    assert blobs.part_reads == [name] and state.rows == 3


def test_a_part_whose_counts_do_not_decode_is_set_aside_and_counted():
    blobs = AzureLikeBlobs()
    grid = [FeatureSpec("x", "numeric", (0.0, 0.5, 1.0), grid=(0.0, 0.01, 100))]
    good = Profile(grid, model_version="1").update(pa.table({"id": ["a", "b"], "x": [0.2, 0.7]}))
    store = ProfileStore(blobs)
    store.write_part("m", "1", W, good, "k1", "http://h/a/c/1.csv")
    name = store.part_name("m", "1", W.key, part_tag("k2"))
    damaged = json.loads(blobs.read_bytes("drift", store.part_name("m", "1", W.key, part_tag("k1"))))
    damaged["input"], damaged["profile"]["features"]["x"]["cells"]["z"] = "http://h/a/c/2.csv", "bm90IHpsaWI="
    blobs.write_bytes("drift", name, json.dumps(damaged).encode())  # valid JSON, base64 of b"not zlib"
    with capture_logs() as logs:
        state = store.compact("m", "1", W.key, now=NOW)
    assert state.parts == 1 and state.rows == 2 and state.inputs_missing_profiles == 1
    assert [m["input"] for m in state.missing.values()] == ["http://h/a/c/2.csv"]
    assert any("undecodable counts" in str(line.get("error")) for line in logs if "set aside" in line["message"])
    assert f"corrupt/{name}" in blobs.names("drift")


def test_absorbed_parts_are_pruned_and_a_redelivery_after_pruning_is_not_counted_again():
    blobs = AzureLikeBlobs()
    store = ProfileStore(blobs, retention_seconds=600)
    store.write_part("m", "1", W, part(10, 1), "k1", "http://h/a/c/1.csv")
    store.write_part("m", "1", W, part(20, 2), "k2", "http://h/a/c/2.csv")
    assert store.compact("m", "1", W.key, now=NOW).parts == 2
    assert len([n for n in blobs.names("drift") if n.startswith("parts/")]) == 2  # kept for the retention
    assert store.compact("m", "1", W.key, now=NOW + 601).changed is False
    assert [n for n in blobs.names("drift") if n.startswith("parts/")] == []  # pruned

    assert store.write_part("m", "1", W, part(10, 1), "k1", "http://h/a/c/1.csv") is True  # written anew
    state = store.compact("m", "1", W.key, now=NOW + 700)
    assert state.parts == 2 and state.rows == 30 and state.changed is False  # recognised: absorbed already
    assert [n for n in blobs.names("drift") if n.startswith("parts/")] == []


def test_the_last_visit_of_a_window_prunes_every_absorbed_part(drift):
    blobs = AzureLikeBlobs()
    monitor = attach(drift, blobs)
    monitor.store.retention_seconds = 86400
    score(drift, "a.csv", table(100, seed=3, prefix="a"))
    assert monitor.evaluate_due()
    monitor.clock = lambda: NOW + 2 * 3600  # 12:30: retained, the timer visits the window again
    monitor.evaluate_due()
    assert any(n.startswith("parts/") for n in blobs.names("drift"))
    monitor.clock = lambda: NOW + 2.5 * 3600  # 13:00: its last lookback slot, the timer will not come back
    monitor.evaluate_due()
    assert not any(n.startswith("parts/") for n in blobs.names("drift"))
    assert monitor.store.compacted("tiny", "1", WINDOW).rows == 100


# -- missing profiles ---------------------------------------------------------------------------------
def test_a_failing_part_write_is_logged_with_the_input_and_counted_in_the_report(drift):
    blobs = FailingParts()
    monitor = attach(drift, blobs, part_attempts=3)
    with capture_logs() as logs:
        outcome = score(drift, "a.csv", table(200, seed=4, prefix="a"))
    assert outcome.status == "succeeded"  # scoring never fails because of drift
    assert outcome.details["drift_profile"] == "missing"
    assert outcome.details["drift_profile_reason"] == "storage_unavailable"
    assert blobs.part_writes == 3  # bounded retries
    [line] = [r for r in logs if r["message"] == "drift profile not recorded"]
    assert line["blob"] == "incoming/a.csv" and line["input_url"].endswith("/incoming/a.csv")
    assert line["etag"] == drift.blobs.properties("incoming", "a.csv").etag.strip('"')
    assert line["window"] == WINDOW and line["reason"] == "storage_unavailable" and line["level"] == "error"
    assert drift.ledger.get(outcome.key).details["drift_profile"] == "missing"

    blobs.failures = 0  # storage is back: the next file's profile is written
    score(drift, "b.csv", table(100, seed=5, prefix="b"))
    [report] = monitor.evaluate_due()
    assert report["inputs"] == 1 and report["rows"] == 100 and report["inputs_missing_profiles"] == 1
    state = monitor.store.compacted("tiny", "1", WINDOW)
    [missing] = state.missing.values()
    assert missing["input"].endswith("/incoming/a.csv") and missing["reason"] == "storage_unavailable"


def test_a_transient_part_failure_is_retried_and_recorded(drift):
    blobs = FailingParts(failures=2)
    attach(drift, blobs, part_attempts=4)
    outcome = score(drift, "a.csv", table(100, seed=6, prefix="a"))
    assert outcome.details["drift_profile"] == "recorded" and blobs.part_writes == 3


def test_a_failed_observer_is_counted_as_missing(drift):
    monitor = attach(drift, AzureLikeBlobs())
    baseline, _ = monitor.baseline(drift.version)
    obs = ProfileObserver(baseline.blank(model_version="1"), salt="k")
    obs(pa.record_batch({"x1": ["not a number"]}), None)  # the worker fails on this batch
    with capture_logs() as logs:
        recorded = monitor.record(drift.version, datetime.fromtimestamp(NOW, UTC), obs, "blob:u@0x1",
                                  "http://h/a/incoming/bad.csv", '"0x1"')  # fmt: skip
    assert recorded.status == "missing" and recorded.reason
    assert any(
        r["message"] == "drift profile not recorded" and r["input_url"].endswith("bad.csv") for r in logs
    )
    state = monitor.store.compact("tiny", "1", WINDOW, now=NOW)
    assert state.profile is None and state.inputs_missing_profiles == 1


def test_a_corrupt_part_is_set_aside_and_counted_and_never_blocks_the_window(drift):
    blobs = AzureLikeBlobs()
    monitor = attach(drift, blobs)
    score(drift, "a.csv", table(200, seed=7, prefix="a"))
    bad = f"parts/tiny/1/{WINDOW}/{part_tag('blob:broken@0x9')}.json"
    blobs.write_bytes("drift", bad, json.dumps({"format": "scorehook.drift-part", "input": "http://h/x.csv",
                                               "profile": {"half": "a profile"}}).encode())  # fmt: skip
    with capture_logs() as logs:
        [report] = monitor.evaluate_due()
    assert report["rows"] == 200 and report["inputs"] == 1 and report["inputs_missing_profiles"] == 1
    [line] = [r for r in logs if r["message"].startswith("unreadable drift profile part")]
    assert line["part"] == f"drift/{bad}" and line["input"] == "http://h/x.csv"
    assert bad not in blobs.names("drift") and f"corrupt/{bad}" in blobs.names("drift")


def test_a_corrupt_part_that_could_not_be_set_aside_is_not_counted_again(drift):
    class StuckDelete(AzureLikeBlobs):
        stuck = True

        def delete(self, container, name):
            if self.stuck and name.startswith("parts/"):
                raise StorageUnavailableError("storage answered 503")
            super().delete(container, name)

    blobs = StuckDelete()
    monitor = attach(drift, blobs)
    score(drift, "a.csv", table(200, seed=7, prefix="a"))
    bad = f"parts/tiny/1/{WINDOW}/{part_tag('blob:broken@0x9')}.json"
    blobs.write_bytes("drift", bad, b"{not json")
    [report] = monitor.evaluate_due()
    assert report["inputs_missing_profiles"] == 1 and bad in blobs.names("drift")
    before = snapshot(blobs)
    blobs.stuck = False
    assert monitor.evaluate_due() == []  # the same corrupt part: set aside now, nothing counted or evaluated
    assert bad not in blobs.names("drift")
    assert blobs.properties("drift", f"windows/tiny/1/{WINDOW}.json").etag == before[
        f"windows/tiny/1/{WINDOW}.json"
    ].join('""')
    assert monitor.store.compacted("tiny", "1", WINDOW).inputs_missing_profiles == 1


# -- one evaluation per change, one alert per wave ----------------------------------------------------
def test_two_ticks_over_an_unchanged_drifted_window_write_and_publish_once(drift):
    blobs = AzureLikeBlobs()  # unquoted eTags in listings, quoted elsewhere, as on Azure
    monitor = attach(drift, blobs)
    score(drift, "a.csv", table(2000, seed=8, shift=1.5, prefix="a"))
    [report] = monitor.evaluate_due()
    assert report["decision"] == "drift" and report["wave"] == 1
    assert drift.publisher.types().count("Scorehook.Drift.Detected") == 1
    before, events = snapshot(blobs), len(drift.publisher.events)

    assert monitor.evaluate_due() == []  # the second tick: nothing evaluated, written or announced
    assert snapshot(blobs) == before and len(drift.publisher.events) == events
    assert monitor.evaluate_closed("tiny", "1", WINDOW)["source_etag"] == report["source_etag"]
    assert snapshot(blobs) == before and len(drift.publisher.events) == events

    score(drift, "b.csv", table(500, seed=9, shift=1.5, prefix="b"))  # new data: one new evaluation
    [again] = monitor.evaluate_due()
    assert again["rows"] == 2500 and again["wave"] == 1
    assert drift.publisher.types().count("Scorehook.Drift.Evaluated") == 2
    assert drift.publisher.types().count("Scorehook.Drift.Detected") == 1  # the same wave
    assert monitor.evaluate_due() == []


def _at(drift, monitor, hour: int, name: str, t: pa.Table) -> None:
    """Score ``t`` in the window ``hour`` hours after 10:00, with the clock there."""
    later = NOW + hour * 3600
    monitor.clock = monitor.store.clock = lambda: later
    event = drift.upload(name, csv_bytes(t))
    event["eventTime"] = f"2026-11-23T{10 + hour}:10:00Z"
    drift.service.score(parse_blob_created(event))


def test_one_detected_per_wave_and_a_new_wave_after_no_drift_alerts_again(drift):
    monitor = attach(drift, AzureLikeBlobs())
    detected = lambda: drift.publisher.types().count("Scorehook.Drift.Detected")  # noqa: E731
    _at(drift, monitor, 0, "a.csv", table(2000, seed=10, shift=1.5, prefix="a"))
    assert [r["decision"] for r in monitor.evaluate_due()] == ["drift"] and detected() == 1
    _at(drift, monitor, 1, "b.csv", table(2000, seed=11, shift=1.5, prefix="b"))  # the next window: same wave
    assert [r["decision"] for r in monitor.evaluate_due()] == ["drift"] and detected() == 1
    _at(drift, monitor, 2, "c.csv", table(2000, seed=12, prefix="c"))  # back to normal: the wave ends
    assert [r["decision"] for r in monitor.evaluate_due()] == ["no_drift"] and detected() == 1
    _at(drift, monitor, 3, "d.csv", table(2000, seed=13, shift=1.5, prefix="d"))  # a new wave
    [report] = monitor.evaluate_due()
    assert report["decision"] == "drift" and report["wave"] == 2 and detected() == 2
    waves = [e[2]["wave"] for e in drift.publisher.events if e[0] == "Scorehook.Drift.Detected"]
    assert waves == [1, 2]


def test_two_concurrent_evaluators_announce_a_wave_once(drift):
    blobs = AzureLikeBlobs()
    monitor = attach(drift, blobs)
    score(drift, "a.csv", table(2000, seed=14, shift=1.5, prefix="a"))
    other = DriftMonitor(store=ProfileStore(blobs, "drift", clock=lambda: NOW), registry=drift.registry,
                         ledger=drift.ledger, publisher=drift.publisher, policy=DriftPolicy(),
                         retrainer=drift.retrainer, clock=lambda: NOW)  # fmt: skip
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def evaluate(m: DriftMonitor) -> None:
        try:
            start.wait()
            m.evaluate("tiny", "1", WINDOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=evaluate, args=(m,)) for m in (monitor, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert drift.publisher.types().count("Scorehook.Drift.Evaluated") == 2  # both really evaluated
    assert drift.publisher.types().count("Scorehook.Drift.Detected") == 1
    assert len(drift.retrainer.requests) == 1


def test_an_unconfirmed_announcement_is_made_again_by_a_later_drifted_evaluation(drift):
    from shared.errors import PublishError

    monitor = attach(drift, AzureLikeBlobs())
    publish = drift.publisher.publish

    def down(event_type, subject, data):
        if event_type == "Scorehook.Drift.Detected":
            raise PublishError("topic unavailable")
        publish(event_type, subject, data)

    drift.publisher.publish = down
    score(drift, "a.csv", table(2000, seed=15, shift=1.5, prefix="a"))
    assert (
        monitor.evaluate_due()[0]["wave"] == 1 and "Scorehook.Drift.Detected" not in drift.publisher.types()
    )
    drift.publisher.publish = publish
    monitor.clock = lambda: NOW + 300  # past the claim of the failed announcement
    score(drift, "b.csv", table(300, seed=16, shift=1.5, prefix="b"))
    assert monitor.evaluate_due()[0]["wave"] == 1
    assert drift.publisher.types().count("Scorehook.Drift.Detected") == 1


# -- compatibility ------------------------------------------------------------------------------------
def test_an_old_style_window_and_quoted_report_are_read_as_compacted_and_not_re_evaluated(drift):
    blobs = AzureLikeBlobs()
    monitor = attach(drift, blobs)
    baseline, _ = monitor.baseline(drift.version)
    old = baseline.blank(model_version="1").update(table(300, seed=17, prefix="o"))
    old.window = W.iso()
    doc = {"model": "tiny", "profile": old.to_json(), "parts": [part_tag("blob:old@0x1")],
           "inputs": ["http://h/a/incoming/old.csv"]}  # fmt: skip
    etag = blobs.write_bytes("drift", f"windows/tiny/1/{WINDOW}.json", json.dumps(doc).encode())
    monitor.store.save_report("tiny", "1", WINDOW, {"decision": "no_drift", "source_etag": etag})  # quoted
    assert monitor.evaluate_due() == []  # the old report covers the old window

    score(drift, "a.csv", table(200, seed=18, prefix="a"))
    [report] = monitor.evaluate_due()
    assert report["rows"] == 500 and report["inputs"] == 2
    old_again = baseline.blank(model_version="1").update(table(300, seed=17, prefix="o"))
    monitor.store.write_part("tiny", "1", W, old_again, "blob:old@0x1", "http://h/a/incoming/old.csv")
    assert monitor.store.compact("tiny", "1", WINDOW, now=NOW).rows == 500  # absorbed before: not again
