"""Validation, evaluation and the promote / hold / reject policy, on real ONNX models trained here."""

from __future__ import annotations

import contextlib

import numpy as np
import pyarrow as pa
import pytest

from shared.deployment import DeploymentPolicy, Validation, decide, evaluate, validate_candidate
from shared.models import ModelInput, OnnxModel


@pytest.fixture(scope="module")
def data():
    from training.data import generate

    return {
        "train": generate(4000, seed=11, include_label=True),
        "eval": generate(3000, seed=12, include_label=True),
    }


def _onnx(table: pa.Table) -> OnnxModel:
    from training.train import to_onnx, train

    pipeline = train(table, kind="linear")
    return OnnxModel.from_file(to_onnx(pipeline, table.slice(0, 500)))


def _graph_signature(onnx_bytes: bytes):
    """The signature MLflow users write for a skl2onnx model: one (-1, 1) tensor per graph input."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    dtypes = {"float32": np.dtype("float32"), "float64": np.dtype("float64"), "int64": np.dtype("int64"),
              "object": np.dtype("O")}  # fmt: skip
    inputs = OnnxModel.from_file(onnx_bytes).inputs
    return ModelSignature(inputs=Schema([TensorSpec(dtypes[i.dtype], (-1, 1), i.name) for i in inputs]))


def save_mlflow_onnx(folder, onnx_bytes: bytes, signature="graph"):
    """An MLflow model directory written by ``mlflow.onnx.save_model`` (``signature=None``: none declared)."""
    import mlflow.onnx
    import onnx

    mlflow.onnx.save_model(onnx.load_from_string(onnx_bytes), str(folder),
                           signature=_graph_signature(onnx_bytes) if signature == "graph" else signature)  # fmt: skip
    return folder


def save_broken_onnx(folder, data: bytes):
    """A valid MLflow model directory whose ``model.onnx`` is replaced by ``data``."""
    from training.data import generate
    from training.train import to_onnx, train

    table = generate(300, seed=5, include_label=True)
    save_mlflow_onnx(folder, to_onnx(train(table, kind="linear"), table.slice(0, 100)))
    (folder / "model.onnx").write_bytes(data)
    return folder


def _subset_model(table: pa.Table, columns=("x01", "x02", "x03")) -> bytes:
    """A logistic regression on a few numeric columns of the route's data, one (N, 1) input per column."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    features = np.column_stack([table.column(c).to_numpy() for c in columns]).astype(np.float32)
    model = LogisticRegression().fit(features, table.column("label").to_numpy())
    # a Concat node joins the per-column inputs: skl2onnx takes one input per initial type
    import onnx
    from onnx import helper

    inner = to_onnx(model, initial_types=[("features", FloatTensorType([None, len(columns)]))],
                    options={id(model): {"zipmap": False}}, target_opset=17)  # fmt: skip
    graph = inner.graph
    concat = helper.make_node("Concat", list(columns), ["features"], axis=1)
    inputs = [helper.make_tensor_value_info(c, onnx.TensorProto.FLOAT, [None, 1]) for c in columns]
    merged = helper.make_graph(
        [concat, *graph.node], "subset", inputs, list(graph.output), list(graph.initializer)
    )
    return helper.make_model(merged, opset_imports=list(inner.opset_import)).SerializeToString()


@pytest.fixture(scope="module")
def good(data):
    return _onnx(data["train"])


@pytest.fixture(scope="module")
def noise(data):
    """Trained on shuffled labels: as good as a coin."""
    labels = np.random.default_rng(0).permutation(data["train"].column("label").to_numpy())
    return _onnx(
        data["train"].set_column(data["train"].schema.get_field_index("label"), "label", pa.array(labels))
    )


def _example(data, rows=20):
    return data["eval"].slice(0, rows).combine_chunks().to_batches()[0]


def test_evaluate_matches_scikit_learn(good, data):
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    metrics = evaluate(good, data["eval"])
    batch = data["eval"].combine_chunks().to_batches()[0]
    predicted = good.predict(batch)
    truth = data["eval"].column("label").to_numpy()
    assert metrics["auc"] == pytest.approx(roc_auc_score(truth, predicted["probability"]), abs=1e-9)
    assert metrics["f1"] == pytest.approx(f1_score(truth, predicted["prediction"]), abs=1e-9)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(truth, predicted["prediction"]), abs=1e-9)
    assert metrics["rows"] == 3000 and metrics["auc"] > 0.75


@pytest.fixture(scope="module")
def declared(data, tmp_path_factory):
    """The good model as an MLflow model directory with the signature of its graph, loaded."""
    from shared.models import load_model_dir
    from training.train import to_onnx, train

    onnx_bytes = to_onnx(train(data["train"], kind="linear"), data["train"].slice(0, 500))
    return load_model_dir(save_mlflow_onnx(tmp_path_factory.mktemp("declared") / "m", onnx_bytes))


def _route(data):
    from shared.deployment import columns_of

    return columns_of(data["eval"], exclude=("label",))


def test_a_valid_candidate_passes_validation(declared, data):
    validation = validate_candidate(declared, _example(data), DeploymentPolicy(), _route(data))
    assert (
        validation.ok
        and validation.reasons == []
        and validation.smoke_rows == 20
        and validation.reason is None
    )
    assert 0 < validation.p95_ms < DeploymentPolicy().latency_budget_ms


def test_a_model_without_a_declared_signature_is_a_bad_model(good, data, tmp_path):
    from shared.models import load_model_dir
    from training.train import to_onnx, train

    validation = validate_candidate(good, _example(data), DeploymentPolicy(), _route(data))  # a bare .onnx
    assert (validation.ok, validation.reason) == (
        False,
        "bad_model",
    ) and "no signature" in validation.reasons[0]
    onnx_bytes = to_onnx(train(data["train"].slice(0, 800), kind="linear"), data["train"].slice(0, 100))
    unsigned = load_model_dir(save_mlflow_onnx(tmp_path / "m", onnx_bytes, signature=None))
    assert unsigned.from_mlmodel and unsigned.declared is None
    validation = validate_candidate(unsigned, _example(data), DeploymentPolicy(), _route(data))
    assert validation.reason == "bad_model" and validation.reasons == [
        "the MLmodel declares no signature: its inputs cannot be checked"
    ]


def test_a_signature_that_does_not_match_the_onnx_graph_is_a_schema_mismatch(declared, data):
    from dataclasses import replace

    from shared.models import DeclaredInput

    cases = {
        "extra": ((*declared.declared, DeclaredInput("c9", "float32", (-1, 1))),
                  "signature input 'c9' is not an input of the ONNX graph"),
        "missing": (declared.declared[1:], f"ONNX graph input {declared.declared[0].name!r} is not in the signature"),
        "type": (tuple(replace(d, dtype="float64") if d.name == "x01" else d for d in declared.declared),
                 "input 'x01' is declared float64, the ONNX graph takes tensor(float)"),
        "shape": (tuple(replace(d, shape=(-1, 3)) if d.name == "x01" else d for d in declared.declared),
                  "input 'x01' is declared [N, 3], the ONNX graph takes [N, 1]"),
    }  # fmt: skip
    original = declared.declared
    try:
        for name, (inputs, reason) in cases.items():
            declared.declared = inputs
            validation = validate_candidate(declared, _example(data), DeploymentPolicy(), _route(data))
            assert (validation.ok, validation.reason) == (False, "schema_mismatch"), name
            assert reason in validation.reasons, (name, validation.reasons)
    finally:
        declared.declared = original


def test_a_graph_input_that_is_not_one_column_is_a_schema_mismatch(data, tmp_path):
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    from shared.models import load_model_dir

    features = np.column_stack([data["train"].column(c).to_numpy() for c in ("x01", "x02")]).astype(
        np.float32
    )
    model = LogisticRegression().fit(features, data["train"].column("label").to_numpy())
    onx = to_onnx(
        model, initial_types=[("x01", FloatTensorType([None, 2]))], options={id(model): {"zipmap": False}}
    )
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype("float32"), (-1, 2), "x01")]))
    loaded = load_model_dir(save_mlflow_onnx(tmp_path / "m", onx.SerializeToString(), signature=signature))
    validation = validate_candidate(loaded, _example(data), DeploymentPolicy(), _route(data))
    assert validation.reason == "schema_mismatch" and "one [N, 1] input per column" in validation.reasons[0]


def test_a_candidate_needing_a_subset_of_the_routes_columns_is_valid(data, tmp_path):
    from shared.models import load_model_dir

    subset = load_model_dir(save_mlflow_onnx(tmp_path / "m", _subset_model(data["train"])))
    assert [i.name for i in subset.inputs] == ["x01", "x02", "x03"]
    validation = validate_candidate(subset, _example(data), DeploymentPolicy(), _route(data))
    assert validation.ok, validation.reasons


def test_a_model_input_the_route_does_not_provide_or_types_differently_is_refused(declared, data):
    route = [c for c in _route(data) if c.name != "x02"]
    validation = validate_candidate(declared, _example(data), DeploymentPolicy(), route)
    assert (validation.reason, validation.reasons) == (
        "schema_mismatch",
        ["model input 'x02' is not in the route's data"],
    )
    retyped = [ModelInput("region", "float64") if c.name == "region" else c for c in _route(data)]
    validation = validate_candidate(declared, _example(data), DeploymentPolicy(), retyped)
    assert validation.reason == "wrong_type" and validation.reasons == [
        "model input 'region' is object, the route's data has float64"
    ]
    decision = decide({}, None, validation, DeploymentPolicy())
    assert decision.action == "reject" and decision.validation["reason"] == "wrong_type"


def test_an_example_without_the_model_inputs_fails_the_smoke_test(declared, data):
    validation = validate_candidate(declared, _example(data).drop_columns(["x05"]), DeploymentPolicy())
    assert not validation.ok and "x05" in validation.reasons[0] and validation.reason == "schema_mismatch"


def test_a_slow_candidate_is_over_its_latency_budget(declared, data):
    validation = validate_candidate(
        declared, _example(data), DeploymentPolicy(latency_budget_ms=1e-6, latency_runs=3)
    )
    assert not validation.ok and "exceeds the budget" in validation.reasons[0]


def _pickle_bomb(marker) -> bytes:
    """A pickle that, if ever unpickled, creates ``marker``."""
    import pickle

    class Bomb:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    return pickle.dumps(Bomb())


@pytest.mark.parametrize("kind", ["random", "empty", "truncated", "unknown-operator", "pickle"])
def test_an_unloadable_onnx_file_is_a_bad_model_and_nothing_is_unpickled(kind, tmp_path):
    from onnx import TensorProto, helper

    from shared.errors import ModelError
    from shared.models import load_model_dir
    from training.data import generate
    from training.train import to_onnx, train

    marker = tmp_path / "unpickled"
    table = generate(300, seed=5, include_label=True)
    valid = to_onnx(train(table, kind="linear"), table.slice(0, 100))
    unknown = helper.make_model(helper.make_graph(
        [helper.make_node("NoSuchOperator", ["x"], ["y"], domain="")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])]))  # fmt: skip
    data = {"random": np.random.default_rng(3).bytes(4096), "empty": b"", "truncated": valid[: len(valid) // 2],
            "unknown-operator": unknown.SerializeToString(), "pickle": _pickle_bomb(marker)}[kind]  # fmt: skip
    folder = save_broken_onnx(tmp_path / "m", data)
    with pytest.raises(ModelError) as info:
        load_model_dir(folder)
    assert info.value.reason == "bad_model" and "does not load" in info.value.message
    assert not marker.exists()


def test_a_pickle_based_flavor_loads_only_from_an_allow_listed_registry(tmp_path):
    from shared.errors import ModelError
    from shared.models import load_model_dir

    marker = tmp_path / "unpickled"
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(_pickle_bomb(marker))
    (folder / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n    model_path: model.pkl\n"
        "  sklearn:\n    pickled_model: model.pkl\n    serialization_format: cloudpickle\n"
        'signature:\n  inputs: \'[{"type": "double", "name": "x01"}]\'\n'
    )
    with pytest.raises(ModelError, match="pickle-based flavor"):
        load_model_dir(folder)
    assert not marker.exists()
    # from an allow-listed registry it is handed to mlflow, which unpickles
    with contextlib.suppress(ModelError):
        load_model_dir(folder, allow_pickle=True)
    assert marker.exists()


def test_only_registries_named_in_the_setting_allow_pickle():
    from shared.adapters.mlflow_registry import MlflowRegistry
    from shared.settings import Settings

    env = {
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
        "SCOREHOOK_PICKLE_REGISTRIES": "http://127.0.0.1:5000/",
    }
    assert MlflowRegistry.from_settings(Settings.from_env(env)).allows_pickle
    other = {**env, "MLFLOW_TRACKING_URI": "http://127.0.0.1:5001"}
    assert not MlflowRegistry.from_settings(Settings.from_env(other)).allows_pickle
    assert not MlflowRegistry.from_settings(
        Settings.from_env({"MLFLOW_TRACKING_URI": "http://x"})
    ).allows_pickle


def test_a_better_challenger_is_promoted_and_a_worse_one_rejected_with_its_metrics(good, noise, data):
    policy = DeploymentPolicy()
    good_metrics, noise_metrics = evaluate(good, data["eval"]), evaluate(noise, data["eval"])
    ok = Validation(ok=True)
    promoted = decide(good_metrics, noise_metrics, ok, policy)
    assert promoted.action == "promote" and promoted.champion == noise_metrics
    rejected = decide(noise_metrics, good_metrics, ok, policy)
    assert rejected.action == "reject" and "is worse than the champion" in rejected.reasons[0]
    record = rejected.to_record()
    assert (
        record["challenger_metrics"]["auc"] == noise_metrics["auc"]
        and record["champion_metrics"] == good_metrics
    )


def test_no_champion_promotes_a_valid_first_version_and_approval_holds():
    assert decide({"auc": 0.7}, None, Validation(ok=True), DeploymentPolicy()).action == "promote"
    held = decide({"auc": 0.9}, {"auc": 0.8}, Validation(ok=True), DeploymentPolicy(require_approval=True))
    assert held.action == "hold" and held.reasons[-1] == "the policy requires a manual approval"


def test_guards_and_lower_is_better_metrics():
    policy = DeploymentPolicy(primary_metric="auc", guard_metrics=("f1",), guard_tolerance=0.02)
    guarded = decide({"auc": 0.90, "f1": 0.60}, {"auc": 0.85, "f1": 0.70}, Validation(ok=True), policy)
    assert guarded.action == "reject" and guarded.reasons[0].startswith("guard f1 regresses")
    rmse = DeploymentPolicy(primary_metric="rmse", guard_metrics=(), margin=0.1)
    assert decide({"rmse": 1.05}, {"rmse": 1.0}, Validation(ok=True), rmse).action == "promote"
    assert decide({"rmse": 1.2}, {"rmse": 1.0}, Validation(ok=True), rmse).action == "reject"


class Flow:
    """The deployment flow on the in-memory fakes, with real ONNX models registered in a fake registry."""

    def __init__(self, data, paths):
        from shared.deployment import DeploymentService
        from shared.models import ModelCache, ModelProvider
        from shared.testing import FakeBlobStore, FakeLedger, FakePublisher, FakeRegistry

        self.registry, self.ledger, self.publisher, self.paths = (
            FakeRegistry(),
            FakeLedger(),
            FakePublisher(),
            paths,
        )
        # as build_deployment_service: a version is resolved afresh for every decision
        provider = ModelProvider(self.registry, FakeBlobStore(), ModelCache(), ttl_seconds=0)
        self.service = DeploymentService(
            self.registry, provider, self.ledger, self.publisher, lambda: data["eval"]
        )

    def register(self, kind: str):
        from shared.registrations import ModelVersionRegistered

        version = self.registry.register("churn", self.paths[kind])
        return ModelVersionRegistered("churn", version.version, "mlflow", f"delivery-{version.version}")


@pytest.fixture
def flow(data, model_dirs):
    return Flow(data, model_dirs)


@pytest.fixture(scope="module")
def model_dirs(data, tiny_onnx, tmp_path_factory):
    from training.train import to_onnx, train

    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for kind, table in (("good", data["train"]), ("noise", None)):
        if table is None:
            labels = np.random.default_rng(0).permutation(data["train"].column("label").to_numpy())
            table = data["train"].set_column(
                data["train"].schema.get_field_index("label"), "label", pa.array(labels)
            )
        paths[kind] = save_mlflow_onnx(
            folder / kind, to_onnx(train(table, kind="linear"), table.slice(0, 500))
        )
    # other inputs (x1, x2, color): the route's data does not provide them
    paths["broken"] = save_mlflow_onnx(folder / "broken", tiny_onnx.read_bytes())
    paths["unsigned"] = save_mlflow_onnx(
        folder / "unsigned", (folder / "good" / "model.onnx").read_bytes(), None
    )
    paths["random"] = save_broken_onnx(folder / "random", np.random.default_rng(1).bytes(2048))
    paths["subset"] = save_mlflow_onnx(folder / "subset", _subset_model(data["train"]))
    return paths


def test_the_first_valid_version_is_promoted_and_a_better_one_replaces_it(flow):
    first = flow.service.handle(flow.register("noise"))
    assert (first.status, first.champion) == ("promote", "1")
    second = flow.service.handle(flow.register("good"))
    assert (second.status, second.champion) == ("promote", "2")
    assert flow.registry.alias_version("churn", "champion") == "2"
    assert flow.registry.alias_version("churn", "previous") == "1"
    assert flow.publisher.types() == ["Scorehook.Model.Promoted", "Scorehook.Model.Promoted"]
    assert flow.registry.tags[("churn", "2")]["scorehook.decision"] == "promote"
    record = flow.ledger.get(flow.service.registration_key("churn", "2"))
    assert (
        record.status == "promote"
        and record.details["champion_metrics"]["auc"] < record.details["challenger_metrics"]["auc"]
    )


def test_a_worse_version_is_rejected_with_the_metrics_in_the_record(flow):
    flow.service.handle(flow.register("good"))
    outcome = flow.service.handle(flow.register("noise"))
    assert outcome.status == "reject" and flow.registry.alias_version("churn", "champion") == "1"
    record = flow.ledger.get(flow.service.registration_key("churn", "2")).details
    assert record["action"] == "reject" and "worse than the champion" in record["reasons"][0]
    assert set(record["challenger_metrics"]) >= {"auc", "f1"} and set(record["champion_metrics"]) >= {
        "auc",
        "f1",
    }
    assert flow.publisher.types()[-1] == "Scorehook.Model.Rejected"


def test_a_version_with_a_broken_signature_is_rejected_at_validation(flow):
    flow.service.handle(flow.register("good"))
    outcome = flow.service.handle(flow.register("broken"))
    assert (
        outcome.status == "reject"
        and outcome.decision.reasons[0] == "model input 'x1' is not in the route's data"
    )
    assert flow.registry.alias_version("churn", "champion") == "1"
    assert flow.registry.tags[("churn", "2")]["scorehook.reject_reason"] == "schema_mismatch"


@pytest.mark.parametrize(("kind", "reason", "text"), [
    ("unsigned", "bad_model", "declares no signature"),
    ("random", "bad_model", "does not load"),
    ("broken", "schema_mismatch", "is not in the route's data"),
])  # fmt: skip
def test_broken_candidates_are_rejected_with_their_reason_and_the_alias_stays(flow, kind, reason, text):
    flow.service.handle(flow.register("good"))
    outcome = flow.service.handle(flow.register(kind))
    assert outcome.status == "reject" and text in outcome.decision.reasons[0]
    assert flow.registry.alias_version("churn", "champion") == "1"
    record = flow.ledger.get(flow.service.registration_key("churn", "2")).details
    assert record["validation"]["reason"] == reason and record["identity"] == "2"
    assert flow.registry.tags[("churn", "2")]["scorehook.reject_reason"] == reason
    assert flow.publisher.types() == ["Scorehook.Model.Promoted", "Scorehook.Model.Rejected"]


def test_a_candidate_needing_only_a_subset_of_the_routes_columns_is_evaluated(flow):
    flow.service.handle(flow.register("noise"))
    outcome = flow.service.handle(flow.register("subset"))
    assert outcome.decision.validation["ok"] and outcome.status == "promote", outcome.decision.reasons
    assert flow.registry.alias_version("churn", "champion") == "2"


def test_a_delivery_for_a_version_the_registry_does_not_have_is_ignored_then_the_real_one_decided(flow):
    from shared.logs import capture_logs
    from shared.registrations import ModelVersionRegistered

    test_payload = ModelVersionRegistered("example_model", "1", "mlflow", "delivery-test")
    with capture_logs() as logs:
        assert flow.service.handle(test_payload).status == "ignored"
    line = next(r for r in logs if r["message"] == "registration ignored: the registry has no such version")
    assert (line["model"], line["model_version"], line["reason"]) == ("example_model", "1", "model_not_found")
    assert line["delivery_id"] == "delivery-test" and list(flow.ledger.records()) == []
    version = flow.registry.register("example_model", flow.paths["good"])
    real = flow.service.handle(
        ModelVersionRegistered("example_model", version.version, "mlflow", "delivery-real")
    )
    assert (real.status, real.champion) == ("promote", "1")


def test_a_deleted_and_recreated_model_gets_its_new_v1_decided(flow):
    first = flow.register("good")
    assert flow.service.handle(first).status == "promote"
    flow.registry.delete_model("churn")
    again = flow.register("broken")  # version 1 again, other bytes, another identity
    assert again.version == first.version == "1"
    outcome = flow.service.handle(again)
    assert (
        outcome.status == "reject" and "is not in the route's data" in outcome.decision.reasons[0]
    )  # not the cached v1
    assert len([r for r in flow.ledger.records() if r.key.startswith("registration:churn/1@")]) == 2
    assert flow.service.handle(again).status == "duplicate"


def test_a_duplicate_delivery_gives_one_decision(flow):
    registration = flow.register("good")
    assert flow.service.handle(registration).status == "promote"
    assert flow.service.handle(registration).status == "duplicate"
    assert flow.publisher.types() == ["Scorehook.Model.Promoted"]


def test_an_older_version_arriving_late_never_replaces_a_newer_champion(flow):
    v1, v2, v3 = flow.register("noise"), flow.register("good"), flow.register("good")
    assert flow.service.handle(v1).status == "promote"
    assert flow.service.handle(v3).status == "promote"
    late = flow.service.handle(v2)
    assert late.status == "reject" and "older than the champion" in late.decision.reasons[0]
    assert flow.registry.alias_version("churn", "champion") == "3"


def test_rollback_restores_the_previous_champion(flow):
    flow.service.handle(flow.register("noise"))
    flow.service.handle(flow.register("good"))
    outcome = flow.service.rollback("churn")
    assert outcome.champion == "1" and flow.registry.alias_version("churn", "champion") == "1"
    assert flow.registry.alias_version("churn", "previous") == "2"
    assert flow.publisher.events[-1][2] == {"model_name": "churn", "version": "1", "rollback_from": "2",
                                            "reason": None}  # fmt: skip
    again = flow.service.rollback("churn")  # a second run changes nothing (it used to swap back)
    assert again.status == "unchanged" and flow.registry.alias_version("churn", "champion") == "1"


def test_a_promotion_is_rolled_out_on_the_online_endpoint_and_a_failed_rollout_rejects(flow):
    from shared.rollout import FakeOnlineEndpoints, roll_out_version

    endpoints = FakeOnlineEndpoints(deployments=(), traffic={})
    flow.service.rollout = lambda name, version, champion: roll_out_version(
        endpoints, "churn-ep", name, version, champion, steps=(10, 100)
    )
    first = flow.service.handle(flow.register("good"))
    assert first.status == "promote" and endpoints.traffic == {"churn-v1": 100}
    second = flow.service.handle(flow.register("good"))
    assert second.status == "promote" and second.decision.rollout["status"] == "completed"
    assert endpoints.traffic == {"churn-v2": 100}  # blue kept at 0 % (dropped from traffic, still deployed)
    assert "churn-v1" in endpoints.deployments
    endpoints.unhealthy = {"churn-v3"}
    third = flow.service.handle(flow.register("good"))
    assert third.status == "reject" and "staged rollout rolled back" in third.decision.reasons[-1]
    assert flow.registry.alias_version("churn", "champion") == "2" and endpoints.traffic == {"churn-v2": 100}
    assert "churn-v3" not in endpoints.deployments
    assert (
        flow.ledger.get(flow.service.registration_key("churn", "3")).details["rollout"]["status"]
        == "rolled_back"
    )


def test_a_held_version_is_promoted_by_its_approval_once(flow):
    from shared.deployment import DeploymentPolicy
    from shared.registrations import ApprovalGranted

    flow.service.handle(flow.register("good"))
    flow.service.policy = DeploymentPolicy(require_approval=True)
    held = flow.service.handle(flow.register("good"))
    assert held.status == "hold" and flow.registry.alias_version("churn", "champion") == "1"
    assert flow.publisher.types()[-1] == "Scorehook.Model.Held"
    assert flow.service.approve(ApprovalGranted("churn", "1", "d-x")).status == "ignored"  # not held
    approved = flow.service.approve(ApprovalGranted("churn", "2", "d-1"))
    assert approved.status == "promote" and flow.registry.alias_version("churn", "champion") == "2"
    assert flow.service.approve(ApprovalGranted("churn", "2", "d-2")).status == "duplicate"
    assert flow.publisher.types()[-1] == "Scorehook.Model.Promoted"
    assert flow.registry.tags[("churn", "2")]["scorehook.approved"] == "true"
