"""The promotion policy that cannot slide, drift-window evaluation, approvals and rollbacks as records, and
the champion generation marker: real ONNX models on the fakes of ``shared/testing.py``."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from shared.deployment import DeploymentPolicy, RecentData, Validation, decide
from tests.unit.test_deployment import save_mlflow_onnx


def test_slightly_worse_versions_never_slide_below_the_best_recent_champion():
    policy = DeploymentPolicy(margin=0.01, guard_metrics=())
    history: dict[str, dict[str, float]] = {}
    champion, promoted = {"auc": 0.8521}, [0.8521]
    for version, auc in enumerate([0.8511, 0.8501, 0.8490, 0.8423, 0.8415, 0.8420], start=2):
        decision = decide({"auc": auc}, champion, Validation(ok=True), policy, history)
        best = max(promoted[-6:])
        assert (decision.action == "promote") == (auc >= best - 0.01), (version, auc, decision.reasons)
        assert decision.bar["required"] == pytest.approx(best - 0.01)
        if decision.action == "promote":
            history[str(version - 1)], champion = champion, {"auc": auc}
            promoted.append(auc)
    assert min(promoted) >= 0.8521 - 0.01  # the old rule ended at 0.8415 (0.0106 below the first)
    assert promoted == [0.8521, 0.8511, 0.8501, 0.8490, 0.8423]  # then 0.8415, 0.8420 are below 0.8421
    default = DeploymentPolicy(guard_metrics=())  # margin 0: never below the best recent champion
    assert decide({"auc": 0.8511}, {"auc": 0.8521}, Validation(ok=True), default).action == "reject"


def test_floors_hold_regardless_of_the_champion_and_errors_have_a_maximum():
    floors = DeploymentPolicy(floors={"auc": 0.85}, guard_metrics=())
    first = decide({"auc": 0.80}, None, Validation(ok=True), floors)
    assert first.action == "reject" and first.reasons == ("auc 0.8000 is below the floor 0.85",)
    better = decide({"auc": 0.84}, {"auc": 0.70}, Validation(ok=True), floors)
    assert better.action == "reject" and "below the floor" in better.reasons[0]
    assert decide({"auc": 0.86}, {"auc": 0.85}, Validation(ok=True), floors).action == "promote"
    unmeasured = decide({"rmse": 1.0}, None, Validation(ok=True), floors)
    assert unmeasured.action == "reject" and "auc was not measured" in unmeasured.reasons[0]
    rmse = DeploymentPolicy(primary_metric="rmse", guard_metrics=(), floors={"rmse": 1.0})
    assert decide({"rmse": 1.1}, {"rmse": 1.2}, Validation(ok=True), rmse).action == "reject"
    assert decide({"rmse": 0.9}, {"rmse": 1.2}, Validation(ok=True), rmse).action == "promote"


def test_floors_come_from_settings():
    from shared.settings import Settings

    settings = Settings.from_env({"SCOREHOOK_PROMOTE_MIN_AUC": "0.8", "SCOREHOOK_PROMOTE_MAX_RMSE": "2"})
    assert settings.promotion_floors() == {"auc": 0.8, "rmse": 2.0}
    assert Settings.from_env({}).promotion_margin == 0.0 and Settings.from_env({}).promote_history == 5


# -- the flow, on real models ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """ONNX models trained with 0 %, 10 %, 20 % and 30 % of the labels flipped: AUC about 0.862, 0.859,
    0.854 and 0.841 on the evaluation data (each slightly worse than the one before)."""
    from training.data import generate
    from training.train import to_onnx, train

    folder = tmp_path_factory.mktemp("policy-models")
    table = generate(4000, seed=11, include_label=True)
    labels = table.column("label").to_numpy()
    paths = {}
    for flipped in (0, 10, 20, 30):
        flip = np.random.default_rng(1).random(len(labels)) < flipped / 100
        noisy = table.set_column(table.schema.get_field_index("label"), "label",
                                 pa.array(np.where(flip, 1 - labels, labels)))  # fmt: skip
        # an MLflow model directory with its declared signature, as the deployment flow validates it
        paths[flipped] = save_mlflow_onnx(folder / f"flip{flipped}", to_onnx(train(noisy, kind="linear"), noisy.slice(0, 500)))
    return {"paths": paths, "eval": generate(3000, seed=12, include_label=True)}


class Flow:
    def __init__(self, models, policy=None, recent_data=None):
        from shared.deployment import DeploymentService
        from shared.models import GenerationMarker, ModelCache, ModelProvider
        from shared.testing import FakeBlobStore, FakeLedger, FakePublisher, FakeRegistry

        self.registry, self.ledger, self.publisher = FakeRegistry(), FakeLedger(), FakePublisher()
        self.blobs, self.models = FakeBlobStore(), models
        self.marker = GenerationMarker(self.blobs)
        provider = ModelProvider(self.registry, self.blobs, ModelCache(8), ttl_seconds=0)
        self.service = DeploymentService(
            self.registry, provider, self.ledger, self.publisher, lambda: models["eval"],
            policy or DeploymentPolicy(margin=0.006, guard_metrics=()),
            recent_data=recent_data, marker=self.marker,
        )  # fmt: skip

    def register(self, flipped, tags=None):
        from shared.registrations import ModelVersionRegistered

        version = self.registry.register("churn", self.models["paths"][flipped], tags=tags)
        return ModelVersionRegistered("churn", version.version, "mlflow", f"d-{version.version}")

    def decide(self, flipped, tags=None):
        return self.service.handle(self.register(flipped, tags))

    def champion(self):
        return self.registry.alias_version("churn", "champion")


def test_the_flow_compares_with_the_best_recent_champion_not_only_the_current_one(models):
    flow = Flow(models)
    assert flow.decide(0).status == "promote"
    second = flow.decide(10)  # 0.0024 below v1: within the margin
    assert second.status == "promote" and flow.champion() == "2"
    third = flow.decide(20)  # 0.0055 below the champion v2 (the old rule promoted it), 0.0079 below v1
    assert third.status == "reject" and flow.champion() == "2"
    assert "best of the recent champions" in third.decision.reasons[0] and "version 1" in third.decision.reasons[0]
    record = flow.ledger.get(flow.service.registration_key("churn", "3")).details
    assert record["bar"]["best_version"] == "1" and record["bar"]["history"]["1"] > record["bar"]["champion"]
    assert record["decided_by"] == "holdout" and set(record["evaluations"]) == {"holdout"}
    assert flow.service.champion_history("churn") == ["2", "1"]


def test_a_drift_triggered_candidate_is_also_judged_on_the_drift_window(models):
    from training.data import generate

    window = generate(2000, seed=77, include_label=True, drift=1.0)
    seen = []

    def recent(version):
        seen.append(version.tags["scorehook.retrain.decision"])
        return RecentData(window, {"window": "w1", "inputs": 2, "rule": "id hash"})

    flow = Flow(models, recent_data=recent)
    flow.decide(10)
    retrained = flow.decide(0, tags={"scorehook.retrain.decision": "churn/1/w1"})
    assert seen == ["churn/1/w1"]
    record = flow.ledger.get(flow.service.registration_key("churn", "2")).details
    assert record["decided_by"] == "drift_window"
    holdout, drifted = record["evaluations"]["holdout"], record["evaluations"]["drift_window"]
    assert drifted["rows"] == 2000 and drifted["window"] == "w1"
    assert holdout["challenger"]["rows"] == 3000 and drifted["challenger"]["rows"] == 2000
    assert holdout["champion"]["auc"] != drifted["champion"]["auc"]
    assert retrained.decision.action == drifted["action"]
    assert "drift window's 2000 labelled held-out rows decide" in retrained.decision.reasons[-1]
    assert flow.decide(10).decision.evaluations.keys() == {"holdout"}  # not retrained: holdout only


def test_a_drift_window_with_too_few_rows_leaves_the_decision_to_the_holdout(models):
    from training.data import generate

    flow = Flow(models, recent_data=lambda v: RecentData(generate(50, seed=5, include_label=True), {"window": "w"}))
    flow.decide(10)
    outcome = flow.decide(0, tags={"scorehook.retrain.decision": "churn/1/w"})
    assert outcome.decision.decided_by == "holdout" and outcome.status == "promote"
    assert outcome.decision.evaluations["drift_window"] == {"window": "w", "rows": 50, "decides": False}
    assert "the holdout decides" in outcome.decision.reasons[-1]


def test_rollback_twice_is_one_change_one_record_on_the_ledger_and_the_tags(models):
    flow = Flow(models)
    flow.decide(0), flow.decide(0), flow.decide(0)
    marker = flow.marker.etag("churn")
    first = flow.service.rollback("churn", reason="latency regression", by="ops@example")
    assert (first.status, first.champion, flow.champion()) == ("promote", "2", "2")
    assert flow.marker.etag("churn") != marker
    second = flow.service.rollback("churn", reason="again")
    assert second.status == "unchanged" and flow.champion() == "2" and "rollback from version 3" in second.message
    rollbacks = [r for r in flow.ledger.records("champion") if r.details["how"] == "rollback"]
    assert len(rollbacks) == 1 and rollbacks[0].details["reason"] == "latency regression"
    assert rollbacks[0].details["by"] == "ops@example" and rollbacks[0].details["from"] == "3"
    tags = flow.registry.tags[("churn", "3")]
    assert tags["scorehook.rolled_back_to"] == "2" and tags["scorehook.rolled_back_reason"] == "latency regression"
    assert flow.registry.tags[("churn", "2")]["scorehook.champion_how"] == "rollback"
    assert flow.service.champion_history("churn") == ["2", "1"]  # 3 no longer sets the bar
    to_one = flow.service.rollback("churn", to="1", reason="further")
    assert to_one.status == "promote" and flow.champion() == "1"
    assert flow.service.rollback("churn", to="1").status == "unchanged"
    assert len([r for r in flow.ledger.records("champion") if r.details["how"] == "rollback"]) == 2


def test_rollback_refuses_unknown_models_versions_and_never_champions(models):
    flow = Flow(models)
    unknown = flow.service.rollback("nope")
    assert unknown.status == "refused" and "unknown or has no champion" in unknown.message
    flow.decide(0)
    assert "no earlier champion" in flow.service.rollback("churn").message
    assert "has no version '9'" in flow.service.rollback("churn", to="9").message
    flow.decide(30)  # rejected: never champion
    refused = flow.service.rollback("churn", to="2")
    assert refused.status == "refused" and "never was the champion" in refused.message
    assert flow.champion() == "1" and not [r for r in flow.ledger.records("champion") if r.details["how"] == "rollback"]


def test_approval_is_recorded_with_who_when_and_why_once(models):
    from shared.registrations import ApprovalGranted

    flow = Flow(models, policy=DeploymentPolicy(margin=0.006, guard_metrics=(), require_approval=True))
    assert flow.decide(0).status == "hold" and flow.champion() is None
    refused = flow.service.approve(ApprovalGranted("churn", "7", "cli"))
    assert refused.status == "refused" and "no version '7'" in refused.message
    approved = flow.service.approve(ApprovalGranted("churn", "1", "cli"), by="alice", reason="reviewed")
    assert approved.status == "promote" and flow.champion() == "1"
    tags = flow.registry.tags[("churn", "1")]
    assert tags["scorehook.approved_by"] == "alice" and tags["scorehook.approval_reason"] == "reviewed"
    assert tags["scorehook.approved_at"] and tags["scorehook.decision"] == "promote"
    again = flow.service.approve(ApprovalGranted("churn", "1", "cli"), by="bob")
    assert again.status == "duplicate" and flow.registry.tags[("churn", "1")]["scorehook.approved_by"] == "alice"
    assert flow.publisher.types().count("Scorehook.Model.Promoted") == 1
    assert flow.ledger.get("approval:churn/1").details["approved_by"] == "alice"
    assert flow.marker.etag("churn") is not None
    flow.decide(30)
    rejected = flow.service.approve(ApprovalGranted("churn", "2", "cli"))
    assert rejected.status == "ignored" and "not held" in rejected.message


def test_an_approval_carries_the_correlation_id_of_the_drift_report_behind_the_held_version(models):
    from shared.ports import CORRELATION_TAG
    from shared.registrations import ApprovalGranted

    flow = Flow(models, policy=DeploymentPolicy(margin=0.006, guard_metrics=(), require_approval=True))
    held = flow.decide(0, tags={CORRELATION_TAG: "churn/3/20261201T160000Z"})
    assert held.status == "hold"
    approved = flow.service.approve(ApprovalGranted("churn", "1", "cli"), by="alice")
    assert approved.status == "promote"
    assert flow.ledger.get("approval:churn/1").details["correlation_id"] == "churn/3/20261201T160000Z"
    [promoted] = [e for e in flow.publisher.events if e[0] == "Scorehook.Model.Promoted"]
    assert promoted[2]["correlation_id"] == "churn/3/20261201T160000Z"


# -- the generation marker --------------------------------------------------------------------------------


def test_a_moved_marker_switches_the_alias_within_marker_seconds_without_a_registry_call_per_file(tiny_onnx):
    from shared.models import GenerationMarker, ModelCache, ModelProvider
    from shared.testing import FakeBlobStore, FakeRegistry

    now = [0.0]
    registry, blobs = FakeRegistry(), FakeBlobStore()
    registry.register("churn", tiny_onnx, alias="champion")
    registry.register("churn", tiny_onnx)
    marker = GenerationMarker(blobs)
    provider = ModelProvider(registry, blobs, ModelCache(), ttl_seconds=3600, clock=lambda: now[0],
                             marker=marker, marker_seconds=2)  # fmt: skip
    assert provider.resolve("models:/churn@champion").version == "1"
    resolves = registry.resolves
    for step in range(100):  # 100 files over 10 s: the marker is read every 2 s, the registry never
        now[0] = step * 0.1
        assert provider.resolve("models:/churn@champion").version == "1"
    assert registry.resolves == resolves and provider.marker_checks <= 7
    registry.set_alias("churn", "champion", "2")
    marker.bump("churn", "2")  # another instance promoted
    assert provider.resolve("models:/churn@champion").version == "1"  # checked < 2 s ago
    now[0] += 2
    assert provider.resolve("models:/churn@champion").version == "2"
    assert registry.resolves == resolves + 1
    assert provider.resolve("models:/churn/1").version == "1"  # versions are not governed by the marker


def test_an_unreadable_marker_keeps_the_cached_alias(tiny_onnx):
    from shared.errors import StorageUnavailableError
    from shared.models import GenerationMarker, ModelCache, ModelProvider
    from shared.testing import FakeBlobStore, FakeRegistry

    now = [0.0]
    registry, blobs = FakeRegistry(), FakeBlobStore()
    registry.register("churn", tiny_onnx, alias="champion")
    provider = ModelProvider(registry, blobs, ModelCache(), ttl_seconds=3600, clock=lambda: now[0],
                             marker=GenerationMarker(blobs), marker_seconds=2)  # fmt: skip
    provider.resolve("models:/churn@champion")
    now[0] = 5
    blobs.fail_next = StorageUnavailableError("storage down")
    assert provider.resolve("models:/churn@champion").version == "1"


def test_the_cli_prints_one_line_and_exits_2_on_a_refusal(models, capsys):
    import json

    from cli.app import Services, main

    flow = Flow(models)
    flow.decide(0), flow.decide(0)

    class Injected(Services):
        def deployment(self):
            return flow.service

    def run(*args: str) -> int:
        return main(list(args), services=Injected(None))

    assert run("rollback", "churn", "--reason", "smoke test failed in prod", "--json") == 0
    assert run("models", "rollback", "churn", "--json") == 0  # unchanged
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["status"], line["champion"]) for line in lines] == [("promote", "1"), ("unchanged", "1")]
    assert run("rollback", "ghost") == 2
    captured = capsys.readouterr()
    assert "unknown or has no champion" in captured.err and "refused" in captured.out  # the table
    assert run("models", "approve", "churn", "2") == 2
    assert "not held for approval (promote)" in capsys.readouterr().err
    record = next(r for r in flow.ledger.records("champion") if r.details["how"] == "rollback").details
    assert record["by"].startswith("cli") and record["reason"] == "smoke test failed in prod"


def test_the_drift_window_rows_are_the_held_out_labelled_rows_of_its_input_files():
    import gzip
    from datetime import UTC, datetime

    import pyarrow.parquet as pq

    from shared.deployment import held_out_mask
    from shared.drift.profile import Profile
    from shared.drift.store import ProfileStore, window_of
    from shared.ports import ModelVersion
    from shared.services import drift_window_rows
    from shared.settings import Settings
    from shared.testing import FakeBlobStore
    from training.data import generate

    blobs = FakeBlobStore()
    store = ProfileStore(blobs, "drift")
    window = window_of(datetime(2026, 12, 1, 13, tzinfo=UTC), 3600)
    labelled, unlabelled = generate(1000, seed=3, include_label=True), generate(500, seed=4, include_label=False)
    sink = io.BytesIO()
    pq.write_table(labelled.slice(500), sink)
    files = {"a.csv.gz": gzip.compress(_csv(labelled.slice(0, 500))), "b.parquet": sink.getvalue(),
             "c.csv": _csv(unlabelled)}  # fmt: skip
    for index, (name, data) in enumerate(files.items()):
        blobs.write_bytes("incoming", name, data)
        store.write_part("churn", "1", window, Profile([]), f"p{index}", f"http://127.0.0.1:10000/devstoreaccount1/incoming/{name}", None)
    store.compact("churn", "1", window.key)  # as the evaluation that asked for the retraining did
    version = ModelVersion("churn", "2", "src", tags={"scorehook.retrain.decision": f"churn/1/{window.key}"})
    recent = drift_window_rows(Settings.from_env({}), blobs)(version)
    expected = labelled.filter(pa.array(held_out_mask(labelled)))
    assert recent.table.num_rows == expected.num_rows and 150 < expected.num_rows < 250
    assert sorted(recent.table.column("id").to_pylist()) == sorted(expected.column("id").to_pylist())
    assert recent.details == {"window": window.key, "base_version": "1", "inputs": 3, "held_out": "crc32(id) % 5 == 0"}
    gone = ModelVersion("churn", "3", "src", tags={"scorehook.retrain.decision": "churn/1/20000101T0000"})
    assert drift_window_rows(Settings.from_env({}), blobs)(gone) is None


def _csv(table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    return sink.getvalue()


def test_the_version_tags_say_which_evaluation_decided(models):
    import json

    from training.data import generate

    window = generate(1000, seed=78, include_label=True, drift=1.0)
    flow = Flow(models, recent_data=lambda v: RecentData(window, {"window": "w2"}))
    flow.decide(10)
    flow.decide(0, tags={"scorehook.retrain.decision": "churn/1/w2"})
    tags = flow.registry.tags[("churn", "2")]
    assert tags["scorehook.decided_by"] == "drift_window"
    evaluations = json.loads(tags["scorehook.evaluations"])
    assert set(evaluations) == {"holdout", "drift_window"} and evaluations["drift_window"]["rows"] == 1000
    assert evaluations["holdout"]["challenger_auc"] > 0.8 and evaluations["drift_window"]["champion_auc"] > 0
