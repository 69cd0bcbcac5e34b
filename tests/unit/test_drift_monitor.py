"""The drift use case on the fakes: profiles while scoring, windows merged once, evaluation, reports and
events, one retraining per drift wave (dedupe + cooldown), external signals, reference baselines."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from shared.drift.evaluate import DriftPolicy
from shared.drift.monitor import (
    BASELINE_ARTIFACT,
    DriftMonitor,
    NoBaselineError,
    ProfileObserver,
    UnmappedSignalError,
    baseline_from_reference,
)
from shared.drift.profile import Profile
from shared.drift.signals import DriftSignal
from shared.drift.store import ProfileStore, window_of
from shared.errors import RegistryUnavailableError
from shared.events import parse_blob_created
from shared.logs import capture_logs
from shared.models import OnnxModel
from shared.testing import FakeRetrainer

NOW = datetime(2026, 11, 23, 10, 30, tzinfo=UTC).timestamp()
WINDOW = "20261123T100000Z"


def table(rows: int, *, seed: int, shift: float = 0.0, prefix: str = "r") -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": [f"{prefix}{i}" for i in range(rows)],
            "x1": rng.normal(size=rows) + shift,
            "x2": rng.normal(size=rows),
            "color": rng.choice(["red", "green", "blue"], rows),
        }
    )


def csv_bytes(t: pa.Table) -> bytes:
    out = io.BytesIO()
    pacsv.write_csv(t, out)
    return out.getvalue()


@pytest.fixture
def drift(scoring, tiny_onnx: Path):
    """The scoring fixture with a drift monitor attached and a baseline artifact on the model version."""
    model = OnnxModel.from_file(str(tiny_onnx))
    artifact = baseline_from_reference(table(3000, seed=1, prefix="b"), model)
    scoring.registry.artifacts[("tiny", scoring.version.version, BASELINE_ARTIFACT)] = json.dumps(
        artifact
    ).encode()
    scoring.retrainer = FakeRetrainer()
    scoring.monitor = DriftMonitor(
        store=ProfileStore(scoring.blobs, "drift"), registry=scoring.registry, ledger=scoring.ledger,
        publisher=scoring.publisher, policy=DriftPolicy(), window_seconds=3600, cooldown_seconds=86400,
        retrainer=scoring.retrainer, clock=lambda: NOW,
    )  # fmt: skip
    scoring.service.drift = scoring.monitor
    return scoring


def score(s, name: str, t: pa.Table):
    return s.service.score(parse_blob_created(s.upload(name, csv_bytes(t))))


def window_rows(s) -> tuple[int, list[str]]:
    """The window's rows and inputs once compacted (what the evaluator sees)."""
    state = s.monitor.store.compact("tiny", s.version.version, WINDOW, now=NOW)
    assert state is not None and state.profile is not None
    return state.rows, state.inputs


def test_scoring_profiles_each_file_once_into_its_window(drift):
    first = score(drift, "a.csv", table(400, seed=2, prefix="a"))
    assert first.status == "succeeded" and first.details["drift_window"] == WINDOW
    score(drift, "b.csv", table(600, seed=3, prefix="b"))
    rows, inputs = window_rows(drift)
    assert rows == 1000 and [u.rsplit("/", 1)[1] for u in inputs] == ["a.csv", "b.csv"]
    profile = drift.monitor.store.window("tiny", "1", WINDOW)[0]
    assert profile.features["probability"].count == 1000  # predictions are profiled too
    assert profile.features["prediction"].rows == 1000

    assert drift.service.replay("incoming", "a.csv").status == "duplicate"  # a redelivery adds nothing
    assert window_rows(drift)[0] == 1000


def test_the_same_part_written_twice_counts_once_and_parallel_writers_lose_nothing(drift):
    monitor, version = drift.monitor, drift.version
    baseline, _ = monitor.baseline(version)
    window = window_of(datetime.fromtimestamp(NOW, UTC), 3600)

    def part(seed: int):
        return baseline.blank(model_version="1").update(table(100, seed=seed, prefix=f"p{seed}-"))

    errors: list[BaseException] = []

    def add(seed: int) -> None:
        try:
            monitor.store.write_part(
                "tiny", "1", window, part(seed), f"part-{seed}", f"http://h/a/c/{seed}.csv"
            )
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(seed,)) for seed in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    add(0)  # a redelivery of part 0
    assert not errors
    assert window_rows(drift)[0] == 600


def test_no_drift_is_reported_and_published_without_retraining(drift):
    score(drift, "a.csv", table(2000, seed=5, prefix="a"))
    [report] = drift.monitor.evaluate_due()
    assert report["decision"] == "no_drift" and report["drifted_features"] == []
    assert "action" not in report and drift.retrainer.requests == []
    assert drift.publisher.types().count("Scorehook.Drift.Evaluated") == 1
    assert "Scorehook.Drift.Detected" not in drift.publisher.types()
    assert drift.monitor.evaluate_due() == []  # unchanged window: not evaluated again
    stored = drift.monitor.store.report("tiny", "1", WINDOW)
    assert stored["source_etag"] and stored["rows"] == 2000


def test_drift_launches_exactly_one_retraining_per_wave(drift):
    score(drift, "a.csv", table(2000, seed=6, shift=1.5, prefix="a"))
    [report] = drift.monitor.evaluate_due()
    assert report["decision"] == "drift" and "x1" in report["drifted_features"]
    assert report["action"]["status"] == "launched"
    [request] = drift.retrainer.requests
    assert request.decision_id == f"tiny/1/{WINDOW}" and request.reason == "drift"
    assert [u.rsplit("/", 1)[1] for u in request.inputs] == ["a.csv"]
    assert request.report and request.report.endswith(f"reports/tiny/1/{WINDOW}.json")
    assert {"Scorehook.Drift.Detected", "Scorehook.Retraining.Started"} <= set(drift.publisher.types())
    assert any("x1: normalized_wasserstein" in r for r in report["reasons"])

    score(drift, "b.csv", table(2000, seed=7, shift=1.5, prefix="b"))  # more drifted data, same window
    [again] = drift.monitor.evaluate_due()
    assert again["action"]["status"] == "duplicate" and len(drift.retrainer.requests) == 1

    later = NOW + 3600  # the next window, still drifted, within the cooldown
    drift.monitor.clock = lambda: later
    event = drift.upload("c.csv", csv_bytes(table(2000, seed=8, shift=1.5, prefix="c")))
    event["eventTime"] = "2026-11-23T11:10:00Z"
    drift.service.score(parse_blob_created(event))
    [third] = drift.monitor.evaluate_due()
    assert third["window"][0].startswith("2026-11-23T11:00")
    assert third["action"]["status"] == "cooldown" and third["action"]["last_decision"] == request.decision_id
    assert len(drift.retrainer.requests) == 1


def test_a_transient_launch_failure_is_retried_by_the_next_tick(drift):
    score(drift, "a.csv", table(2000, seed=6, shift=1.5, prefix="a"))
    drift.retrainer.fail_next = RegistryUnavailableError("backend down")
    with pytest.raises(RegistryUnavailableError):
        drift.monitor.evaluate_due()
    [report] = drift.monitor.evaluate_due()  # claims were released: the next tick launches
    assert report["action"]["status"] == "launched" and len(drift.retrainer.requests) == 1


def test_small_undrifted_window_is_not_a_false_alarm_and_tiny_is_insufficient(drift):
    score(drift, "a.csv", table(60, seed=9, prefix="a"))
    [report] = drift.monitor.evaluate_due()
    assert report["decision"] == "no_drift", report["reasons"]
    x1 = next(f for f in report["features"] if f["name"] == "x1")
    assert x1["noise_bound"] > x1["threshold"]  # at n=60 sampling noise alone exceeds 0.1

    score(
        drift, "tiny.csv", table(10, seed=10, prefix="t")
    )  # another model version's window would be separate
    drift.monitor.store.blobs.delete("drift", f"reports/tiny/1/{WINDOW}.json")
    drift.monitor.policy = DriftPolicy(min_rows=500)
    [report] = drift.monitor.evaluate_due()
    assert report["decision"] == "insufficient_data"


def test_external_signal_enters_the_same_decision(drift):
    signal = DriftSignal(
        source="azureml_monitor", signal_id="azureml-monitor:run-1", workspace="ws", model="tiny",
        monitor="tiny-monitor_data_drift", message="The signal has failed", breaches=(), window=None,
        drift_coefficient=None, event_id="e-1",
    )  # fmt: skip
    score(drift, "a.csv", table(300, seed=11, prefix="a"))
    with capture_logs() as logs:
        outcome = drift.monitor.handle_signal(signal)
    assert outcome["action"]["status"] == "launched"
    assert any(line.get("signal") == "azureml-monitor:run-1" for line in logs)
    [request] = drift.retrainer.requests
    assert request.reason == "azureml_monitor" and request.decision_id == "azureml-monitor:run-1"
    assert [u.rsplit("/", 1)[1] for u in request.inputs] == ["a.csv"]
    assert drift.monitor.handle_signal(signal)["action"]["status"] == "duplicate"

    with pytest.raises(UnmappedSignalError):
        drift.monitor.handle_signal(DriftSignal(**{**signal.__dict__, "model": None, "signal_id": "x"}))


def test_baseline_from_reference_when_the_version_has_none(scoring, tiny_onnx):
    store = ProfileStore(scoring.blobs, "drift")
    kwargs = dict(store=store, registry=scoring.registry, ledger=scoring.ledger, publisher=scoring.publisher,
                  policy=DriftPolicy())  # fmt: skip
    model = OnnxModel.from_file(str(tiny_onnx))
    with pytest.raises(NoBaselineError):
        DriftMonitor(**kwargs).baseline(scoring.version, model)
    reference = table(500, seed=12, prefix="ref")
    calls = []
    monitor = DriftMonitor(**kwargs, reference=lambda: calls.append(1) or reference)
    profile, importance = monitor.baseline(scoring.version, model)
    assert profile.rows == 500 and importance is None
    assert {"x1", "x2", "color", "probability", "prediction"} == set(profile.features)
    assert store.baseline("tiny", "1") is not None  # kept: computed once per version
    assert (
        DriftMonitor(**kwargs, reference=lambda: calls.append(1) or reference).baseline(scoring.version)[0]
        == profile
    )
    assert calls == [1]


def test_scoring_goes_on_without_a_baseline(scoring):
    scoring.service.drift = DriftMonitor(
        store=ProfileStore(scoring.blobs, "drift"), registry=scoring.registry, ledger=scoring.ledger,
        publisher=scoring.publisher, policy=DriftPolicy(),
    )  # fmt: skip
    outcome = scoring.service.score(parse_blob_created(scoring.upload("a.csv", csv_bytes(table(50, seed=1)))))
    assert outcome.status == "succeeded" and "drift_window" not in outcome.details


def test_a_file_that_opens_a_window_closes_the_previous_one(drift):
    first = score(drift, "a.csv", table(500, seed=13, prefix="a"))
    assert "drift_window_closed" in first.details  # the first file of 10:00 closes 09:00 (which has no data)
    assert drift.monitor.evaluate_closed("tiny", "1", first.details["drift_window_closed"]) is None
    assert "drift_window_closed" not in score(drift, "b.csv", table(500, seed=14, prefix="b")).details

    event = drift.upload("c.csv", csv_bytes(table(500, seed=15, prefix="c")))
    event["eventTime"] = "2026-11-23T11:05:00Z"
    outcome = drift.service.score(parse_blob_created(event))
    assert outcome.details["drift_window"] == "20261123T110000Z"
    assert outcome.details["drift_window_closed"] == WINDOW
    report = drift.monitor.evaluate_closed("tiny", "1", WINDOW)
    assert report["rows"] == 1000 and report["decision"] == "no_drift"
    evaluated = drift.publisher.types().count("Scorehook.Drift.Evaluated")
    assert drift.monitor.evaluate_closed("tiny", "1", WINDOW)["source_etag"] == report["source_etag"]
    assert drift.publisher.types().count("Scorehook.Drift.Evaluated") == evaluated  # not evaluated twice


def test_a_failed_retraining_lifts_the_cooldown_and_is_recorded_once(drift):
    from shared.drift.signals import parse_retraining_run
    from shared.events import parse_event
    from shared.ports import RetrainFinished

    score(drift, "a.csv", table(2000, seed=6, shift=1.5, prefix="a"))
    [report] = drift.monitor.evaluate_due()
    decision = report["action"]["decision_id"]
    assert drift.ledger.get("retrain-cooldown:tiny") is not None

    failed_event = parse_event({
        "id": "e-run", "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
        "topic": "/subscriptions/s/providers/Microsoft.MachineLearningServices/workspaces/ws",
        "subject": "experiments/x/runs/job-1", "eventTime": "2026-11-23T10:40:00Z",
        "data": {"runId": "job-1", "runStatus": "Failed",
                 "runTags": {"scorehook.decision_id": decision, "scorehook.model": "tiny"}},
    })  # fmt: skip
    finished = parse_retraining_run(failed_event, allowed_workspaces=("ws",))
    assert finished == RetrainFinished(
        decision, "tiny", "job-1", "failed", {"run_status": "Failed", "workspace": "ws"}
    )
    assert drift.monitor.retraining_finished(finished)["status"] == "failed"
    assert drift.ledger.get("retrain-cooldown:tiny") is None  # the next drifted window may retrain
    assert drift.monitor.retraining_finished(finished)["duplicate"] is True
    assert drift.publisher.types().count("Scorehook.Retraining.Failed") == 1

    later = NOW + 3600
    drift.monitor.clock = lambda: later
    event = drift.upload("c.csv", csv_bytes(table(2000, seed=8, shift=1.5, prefix="c")))
    event["eventTime"] = "2026-11-23T11:10:00Z"
    drift.service.score(parse_blob_created(event))
    [again] = drift.monitor.evaluate_due()
    assert again["action"]["status"] == "launched" and len(drift.retrainer.requests) == 2

    plain = parse_event(
        {**failed_event.as_eventgrid(), "data": {"runId": "other", "runStatus": "Failed", "runTags": {}}}
    )
    assert parse_retraining_run(plain, allowed_workspaces=("ws",)) is None  # not one of ours


def test_an_unreadable_window_is_moved_aside_and_never_blocks_the_others(drift):
    score(drift, "a.csv", table(300, seed=16, prefix="a"))
    name = f"windows/tiny/1/{WINDOW}.json"
    drift.blobs.write_bytes("drift", name, b'{"profile": "half a docu')
    drift.blobs.write_bytes(
        "drift", "windows/tiny/1/20261123T090000Z.json", b"[]"
    )  # the window before: junk too
    with capture_logs() as logs:
        reports = drift.monitor.evaluate_due()  # neither crashes the timer
    assert sum(line.get("reason") == "corrupt_drift_state" for line in logs) == 2
    # the window is rebuilt from the parts still kept (a.csv's), the junk window before it has none
    assert [(r["window"][0][:13], r["rows"]) for r in reports] == [("2026-11-23T10", 300)]

    outcome = score(drift, "b.csv", table(400, seed=17, prefix="b"))
    assert outcome.status == "succeeded" and outcome.details["drift_window"] == WINDOW
    assert window_rows(drift)[0] == 700
    kept = [n for n in drift.blobs.names("drift") if n.startswith(f"corrupt/{name}.")]
    assert len(kept) == 1 and drift.blobs.read_bytes("drift", kept[0]) == b'{"profile": "half a docu'


def test_a_window_with_another_layout_is_reported_not_crashed(drift):
    from shared.drift.profile import FeatureSpec, Profile

    other = Profile([FeatureSpec("x1", "numeric", (0.0, 1.0))]).update(table(100, seed=18, prefix="o"))
    window = window_of(datetime.fromtimestamp(NOW, UTC), 3600)
    drift.monitor.store.write_part("tiny", "1", window, other, "other-part", "http://h/a/c/o.csv")
    drift.monitor.store.open_window("tiny", "1", window)  # as record() does for a window's first file
    with capture_logs() as logs:
        assert drift.monitor.evaluate_due() == []
    assert any(line.get("reason") == "layout_mismatch" for line in logs)


def test_a_broken_baseline_artifact_never_fails_scoring(drift):
    drift.registry.artifacts[("tiny", "1", BASELINE_ARTIFACT)] = b'{"format": "something else"}'
    with capture_logs() as logs:
        outcome = score(drift, "a.csv", table(100, seed=19, prefix="a"))
    assert outcome.status == "succeeded" and "drift_window" not in outcome.details
    assert any(line.get("reason") == "no_baseline" for line in logs)
    drift.registry.artifacts[("tiny", "1", BASELINE_ARTIFACT)] = b"not json"
    drift.monitor._baselines.clear()
    assert score(drift, "b.csv", table(100, seed=20, prefix="b")).status == "succeeded"


def test_a_crash_after_the_output_commit_is_finished_by_the_redelivery_with_its_profile(drift):
    """The output is committed, then the instance dies before the drift part and the ledger's "succeeded":
    the redelivery keeps that output (not rewritten), records the profile once and says succeeded."""
    from shared.scoring import idempotency_key

    now = [1000.0]
    drift.ledger.clock = lambda: now[0]
    event = parse_blob_created(drift.upload("late.csv", csv_bytes(table(300, seed=5, prefix="l"))))
    real_record = drift.monitor.record

    def die_after_commit(*args, **kwargs):
        raise KeyboardInterrupt  # a BaseException: the process is going down (no failure record)

    drift.monitor.record = die_after_commit
    with pytest.raises(KeyboardInterrupt):
        drift.service.score(event)
    output = drift.blobs.properties("scored", "incoming/late.csv.predictions.csv")
    drift.ledger.claim(idempotency_key(event), "dead-instance", ttl_seconds=900)  # a real crash keeps its claim
    drift.monitor.record = real_record
    now[0] += 901

    outcome = drift.service.score(event)
    assert outcome.status == "succeeded" and outcome.rows == 300
    assert drift.blobs.properties("scored", "incoming/late.csv.predictions.csv").etag == output.etag
    assert outcome.details["drift_profile"] == "recorded"
    assert window_rows(drift)[0] == 300
    assert drift.service.score(event).status == "duplicate"


def test_a_commit_whose_response_was_lost_is_ours_not_superseded(drift):
    """The commit lands but the client sees a conflict (its retried request, after the first one's response
    was lost, finds the blob there): this version's output is recognised, the file is succeeded."""
    from shared.errors import WriteConflictError

    blobs = drift.blobs
    real_write = blobs.write_blocks

    def commit_then_conflict(container, name, blocks, **kwargs):
        etag = real_write(container, name, blocks, **kwargs)
        if container != "scored":
            return etag
        raise WriteConflictError(f"{container}/{name} exists (the retried commit)", blob=f"{container}/{name}")

    blobs.write_blocks = commit_then_conflict
    outcome = score(drift, "lost.csv", table(200, seed=6, prefix="o"))
    blobs.write_blocks = real_write
    assert outcome.status == "succeeded" and outcome.rows == 200
    assert outcome.details["drift_profile"] == "recorded" and window_rows(drift)[0] == 200
    assert drift.ledger.get(outcome.key).status == "succeeded"


def test_the_part_is_written_while_the_output_commits_and_before_the_ledger_says_done(drift):
    """The output's commit waits until the file's part exists: it can only succeed if the part is written
    beside the commit, not after it; the ledger's succeeded comes after both."""
    blobs, ledger = drift.blobs, drift.ledger
    real_write, real_finish = blobs.write_blocks, ledger.finish
    part_seen, order = threading.Event(), []

    def output_waits_for_the_part(container, name, blocks, **kwargs):
        blocks = list(blocks)  # every row scored: the part may start now
        if container == "drift" and name.startswith("parts/"):
            etag = real_write(container, name, blocks, **kwargs)
            order.append("part")
            part_seen.set()
            return etag
        if container == "scored":
            assert part_seen.wait(10), "the part was not written while the output committed"
            order.append("output")
        return real_write(container, name, blocks, **kwargs)

    def finish(claim, status, details=None):
        order.append(f"ledger {status}")
        return real_finish(claim, status, details)

    blobs.write_blocks, ledger.finish = output_waits_for_the_part, finish
    outcome = score(drift, "beside.csv", table(300, seed=8, prefix="s"))
    blobs.write_blocks, ledger.finish = real_write, real_finish
    assert outcome.status == "succeeded" and outcome.details["drift_profile"] == "recorded"
    assert order == ["part", "output", "ledger succeeded"]
    assert window_rows(drift)[0] == 300


def test_an_output_commit_that_fails_beside_a_written_part_counts_the_file_once(drift):
    """Storage fails the output's commit after the part landed: the file is retried, its part is found
    already written, and the window counts its rows once."""
    from shared.errors import StorageUnavailableError

    blobs = drift.blobs
    real_write = blobs.write_blocks
    failed = []

    def output_fails_once(container, name, blocks, **kwargs):
        blocks = list(blocks)
        if container == "scored" and not failed:
            failed.append(name)
            raise StorageUnavailableError("storage answered 503", status=503)
        return real_write(container, name, blocks, **kwargs)

    blobs.write_blocks = output_fails_once
    event = parse_blob_created(drift.upload("flaky.csv", csv_bytes(table(250, seed=9, prefix="f"))))
    with pytest.raises(StorageUnavailableError):
        drift.service.score(event)
    assert failed and drift.blobs.names("drift") and window_rows(drift)[0] == 250  # the part landed
    again = drift.service.score(event)
    blobs.write_blocks = real_write
    assert again.status == "succeeded" and again.details["drift_profile"] == "already_recorded"
    rows, inputs = window_rows(drift)
    assert rows == 250 and [u.rsplit("/", 1)[1] for u in inputs] == ["flaky.csv"]


def test_inputs_and_predictions_profiled_in_one_update_equal_them_profiled_one_after_the_other(tiny_onnx: Path):
    """The observer adds a batch's inputs and its predictions in one update when they are the same rows
    (their numeric features counted together); the profile is what two separate updates give, and so it is
    when rows were rejected or an input column has a prediction's name."""
    model = OnnxModel.from_file(str(tiny_onnx))
    baseline = Profile.from_json(baseline_from_reference(table(3000, seed=1, prefix="b"), model))
    batch = table(1000, seed=4).to_batches()[0]
    scored = pa.record_batch({k: pa.array(v) for k, v in model.predict(batch).items()})
    assert {"probability", "prediction"} <= set(scored.schema.names)
    clash = batch.append_column("prediction", pa.array(["x"] * batch.num_rows))
    for inputs, outputs in ((batch, scored), (batch, scored.slice(0, 600)), (clash, scored)):
        obs = ProfileObserver(baseline.blank(model_version="1"), salt="k")
        obs(inputs, outputs)
        expected = baseline.blank(model_version="1").update(inputs)
        expected.update(outputs.select(["probability", "prediction"]))
        got = obs.close()
        assert got == expected and got.features["probability"].count == outputs.num_rows  # type: ignore[union-attr]


def test_a_file_profiles_the_same_inline_threaded_or_both(tiny_onnx: Path):
    """A small file is profiled in the scoring thread, a large one moves to a worker once it passes
    ``inline_rows``: the profile is the same whichever way its batches went, and so is a failure."""
    model = OnnxModel.from_file(str(tiny_onnx))
    baseline = Profile.from_json(baseline_from_reference(table(3000, seed=1, prefix="b"), model))
    batches = table(50_000, seed=3).to_batches(max_chunksize=8192)

    def observed(inline_rows: int) -> tuple[Profile, bool]:
        obs = ProfileObserver(baseline.blank(model_version="1"), salt="k", inline_rows=inline_rows)
        for batch in batches:
            scored = pa.record_batch({k: pa.array(v) for k, v in model.predict(batch).items()})
            obs(batch, scored)
        threaded = obs._thread is not None
        return obs.close(), threaded

    (inline, no_thread), (mixed, worker), (threaded, _) = (observed(n) for n in (10**9, 20_000, 0))
    assert not no_thread and worker
    assert inline.rows == 50_000 and inline == mixed == threaded

    for inline_rows in (10**9, 0):
        obs = ProfileObserver(baseline.blank(model_version="1"), salt="k", inline_rows=inline_rows)
        obs(pa.record_batch({"x1": ["not a number"]}), None)  # never raises where scoring calls it
        with pytest.raises(Exception):  # noqa: B017 - whatever the profile raised, close() raises it
            obs.close()
