"""shared.opsview on the fakes: file states, sections, timelines, models and dead letters."""

from __future__ import annotations

import json

import pytest

from shared.events import parse_blob_created
from shared.opsview import OpsView

GOOD = b"id,x1,x2,color\n007,0.5,1.0,red\n008,-1.5,0.2,blue\n"
BAD = b"id,x1,x2,color\n007,zero,1.0,red\n"
EG_FACTS = {"deadLetterReason": "MaxDeliveryAttemptsExceeded", "deliveryAttempts": 5,
            "lastDeliveryOutcome": "GenericError", "lastHttpStatusCode": 500,
            "publishTime": "2026-12-01T10:00:00Z", "lastDeliveryAttemptTime": "2026-12-01T10:00:19Z"}  # fmt: skip


def _score(scoring, name: str, data: bytes):
    return scoring.service.score(parse_blob_created(scoring.upload(name, data)))


@pytest.fixture
def states(scoring):
    """One file in each state: scored, failed, fixed and rescored, retrying, dead-lettered."""
    from shared.errors import StorageUnavailableError

    assert _score(scoring, "scored.csv", GOOD).status == "succeeded"
    assert _score(scoring, "failed.csv", BAD).status == "failed"
    assert _score(scoring, "fixed.csv", BAD).status == "failed"
    assert _score(scoring, "fixed.csv", GOOD).status == "succeeded"  # a new version of the same blob
    event = scoring.upload("retrying.csv", GOOD)
    scoring.blobs.fail_next = StorageUnavailableError("storage is down")
    with pytest.raises(StorageUnavailableError):
        scoring.service.score(parse_blob_created(event))
    dead = scoring.upload("dead.csv", GOOD)
    scoring.blobs.write_bytes("deadletter", "t/SCORE-INCOMING-BLOBS/2026/12/01/10/1.json",
                              json.dumps([{**dead, **EG_FACTS}]).encode())  # fmt: skip
    return OpsView.for_scoring(scoring.service, registry=scoring.registry)


def test_every_file_is_in_exactly_one_state_and_cooldowns_are_not_files(scoring, states):
    claim = scoring.ledger.claim("retrain-cooldown:tiny", "drift-monitor", 3600, {"decision_id": "tiny/1/w"})
    assert claim is not None
    status = states.status()
    by_blob = {f.blob: f.state for f in states.files()}
    assert by_blob == {"incoming/scored.csv": "scored", "incoming/failed.csv": "failed_open",
                       "incoming/fixed.csv": "failed_resolved", "incoming/retrying.csv": "retrying",
                       "incoming/dead.csv": "dead_lettered"}  # fmt: skip
    counts = status.files.counts
    assert (counts["scored"], counts["failed_open"], counts["failed_resolved"], counts["retrying"],
            counts["dead_lettered"], counts["in_progress"]) == (1, 1, 1, 1, 1, 0)  # fmt: skip
    assert [c["model"] for c in status.cooldowns] == ["tiny"] and status.retrains == {}
    assert {f.blob for f in status.files.problems} == {
        "incoming/failed.csv",
        "incoming/retrying.csv",
        "incoming/dead.csv",
    }
    failed = next(f for f in status.files.problems if f.blob == "incoming/failed.csv")
    assert failed.reason == "bad_value" and failed.failure.startswith("failed/incoming/failed.csv.")
    assert status.dead_letters == {"total": 1, "open": 1, "replayed": 0, "not_replayable": 0}
    (model,) = status.models
    assert (model.name, model.champion, model.previous) == ("tiny", "1", None)
    assert status.times["last_scored_at"] and status.times["last_failure_at"]
    json.dumps(status.to_dict())  # JSON-ready


def test_the_timeline_of_a_scored_file_is_in_order_with_durations(states):
    timeline = states.blob_timeline("incoming/scored.csv")
    kinds = [e.kind for e in timeline.events]
    assert kinds == ["received", "claimed", "model_resolved", "scored", "committed", "done"]
    assert timeline.state == "scored"
    scored = next(e for e in timeline.events if e.kind == "scored")
    assert scored.details["rows_scored"] == 2
    assert all(e.since_previous_ms is not None and e.since_previous_ms >= 0 for e in timeline.events[2:])
    resolved = next(e for e in timeline.events if e.kind == "model_resolved")
    assert resolved.details["model_version"] == "1"


def test_a_fixed_file_shows_its_failure_then_its_success(states):
    timeline = states.blob_timeline("incoming/fixed.csv")
    kinds = [e.kind for e in timeline.events]
    assert kinds.index("failed") < kinds.index("done")
    failed = next(e for e in timeline.events if e.kind == "failed")
    assert failed.details["reason"] == "bad_value" and failed.details["location"].startswith("failed/")
    assert timeline.state == "failed_resolved"


def test_a_retried_file_shows_its_attempt_and_a_replayed_one_resolves(scoring, states):
    timeline = states.blob_timeline("incoming/retrying.csv")
    retry = next(e for e in timeline.events if e.kind == "retry")
    assert retry.details["reason"] == "storage_unavailable" and retry.status == "warning"
    assert scoring.service.replay("incoming", "failed.csv").status == "failed"  # still bad
    assert {f.blob: f.state for f in states.files()}["incoming/failed.csv"] == "failed_open"
    scoring.blobs.write_bytes("incoming", "failed.csv", GOOD)
    assert scoring.service.replay("incoming", "failed.csv").status == "succeeded"
    assert {f.blob: f.state for f in states.files()}["incoming/failed.csv"] == "failed_resolved"


def test_dead_letters_are_listed_with_the_blob_they_name_and_resolve_once_replayed(scoring, states):
    from shared.deadletters import DeadLetterService

    (letter,) = states.dead_letters()
    assert (letter.blob, letter.replayed, letter.reason) == (
        "incoming/dead.csv",
        "no",
        "MaxDeliveryAttemptsExceeded",
    )
    assert [e.kind for e in states.blob_timeline("incoming/dead.csv").events] == ["dead_lettered"]
    assert [r.status for r in DeadLetterService.for_scoring(scoring.service).replay()] == ["succeeded"]
    assert {f.blob: f.state for f in states.files()}["incoming/dead.csv"] == "scored"
    assert states.dead_letters()[0].replayed == "yes"


def test_models_view_and_timeline_tell_why_a_version_was_promoted_and_rolled_back(scoring, tiny_onnx):
    from shared.deployment import DeploymentOutcome  # noqa: F401  (the records below are the flow's shapes)

    ledger, registry = scoring.ledger, scoring.registry
    registry.register("tiny", tiny_onnx, tags={"scorehook.retrain.decision": "tiny/1/20261201T1000"})
    for key, status, details in [
        ("registration:tiny/2@2", "promote", {"model": "tiny", "version": "2", "action": "promote",
                                              "reasons": ["roc_auc 0.91 beats 0.88"], "decided_at": "2026-12-01T11:00:00+00:00",
                                              "challenger_metrics": {"roc_auc": 0.91}, "champion_metrics": {"roc_auc": 0.88},
                                              "trigger": {"origin": "mlflow-webhook"}}),
        ("champion:tiny/2/a", "champion", {"model": "tiny", "version": "2", "how": "promote", "from": "1",
                                           "at": "2026-12-01T11:00:01+00:00"}),
        ("champion:tiny/1/b", "champion", {"model": "tiny", "version": "1", "how": "rollback", "from": "2",
                                           "reason": "latency", "at": "2026-12-01T12:00:00+00:00"}),
    ]:  # fmt: skip
        ledger.finish(ledger.claim(key, "test", 60), status, details)
    registry.set_alias("tiny", "previous", "2")
    view = OpsView.for_scoring(scoring.service, registry=registry)

    models = view.models_view("tiny")
    assert (models.champion, models.previous) == ("1", "2")
    v2 = next(v for v in models.versions if v.version == "2")
    assert (
        v2.decision == "promote" and v2.reasons == ["roc_auc 0.91 beats 0.88"] and v2.aliases == ["previous"]
    )
    assert v2.retrained_from == "tiny/1/20261201T1000" and v2.challenger_metrics == {"roc_auc": 0.91}
    timeline = view.model_timeline("tiny")
    assert [(e.kind, e.version) for e in timeline.events] == [
        ("decision", "2"),
        ("champion", "2"),
        ("champion", "1"),
    ]
    assert timeline.events[-1].status == "warning" and "rollback from 2" in timeline.events[-1].summary
    assert timeline.events[1].since_previous_ms == 1000.0
    status = view.status()
    assert status.models[0].champion_how == "rollback" and status.decisions == {"promote": 1}


def test_drift_reports_carry_features_and_the_retraining_s_real_outcome(scoring):
    from shared.drift.store import ProfileStore

    store = ProfileStore(scoring.blobs, "drift")
    feature = {"name": "x1", "kind": "numeric", "metric": "normalized_wasserstein", "value": 0.4, "threshold": 0.1,
               "drifted": True, "status": "evaluated"}  # fmt: skip
    for window, decision in (("20261201T0900", "no_drift"), ("20261201T1000", "drift")):
        doc = {"model": "tiny", "model_version": "1", "window": window, "decision": decision, "rows": 500,
               "drifted_share": 0.5 if decision == "drift" else 0.0, "drifted_features": ["x1"] if decision == "drift" else [],
               "reasons": ["x1: 0.4 > threshold 0.1 + noise bound 0.01"], "features": [feature],
               "evaluated_at": f"2026-12-01T{window[-4:-2]}:05:00+00:00"}  # fmt: skip
        if decision == "drift":
            doc["action"] = {"status": "launched", "run_id": "run-7", "decision_id": f"tiny/1/{window}"}
        store.save_report("tiny", "1", window, doc)
    ledger = scoring.ledger
    ledger.finish(ledger.claim("retrain-run:run-7", "drift-monitor", 60), "failed",
                  {"run_id": "run-7", "model": "tiny", "status": "failed", "finished_at": "2026-12-01T10:20:00+00:00"})  # fmt: skip
    view = OpsView.for_scoring(scoring.service, registry=scoring.registry)

    drift = view.drift_view("tiny")
    assert [r.decision for r in drift.reports] == ["no_drift", "drift"]
    latest = drift.reports[-1]
    assert latest.features[0].metric == "normalized_wasserstein" and latest.features[0].drifted
    assert latest.retraining == {"status": "launched", "run_id": "run-7", "decision_id": "tiny/1/20261201T1000",
                                 "outcome": "failed", "finished_at": "2026-12-01T10:20:00+00:00"}  # fmt: skip
    assert [r.window for r in view.drift_view("tiny", last=1).reports] == ["20261201T1000"]
    (model,) = view.status().models
    assert model.drift["decision"] == "drift" and model.drift["retraining"] == "launched"
    timeline = view.model_timeline("tiny", "1")
    assert [e.kind for e in timeline.events] == ["drift", "drift", "retraining"]
    assert timeline.events[-1].status == "error" and "ended failed" in timeline.events[-1].summary
