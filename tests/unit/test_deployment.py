"""Validation, evaluation and the promote / hold / reject policy, on real ONNX models trained here."""

from __future__ import annotations

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


def test_a_valid_candidate_passes_validation(good, data):
    validation = validate_candidate(good, _example(data), DeploymentPolicy(), required_inputs=good.inputs)
    assert validation.ok and validation.reasons == [] and validation.smoke_rows == 20
    assert 0 < validation.p95_ms < DeploymentPolicy().latency_budget_ms


def test_a_broken_signature_is_rejected_at_validation(good, data):
    required = [*good.inputs, ModelInput("customer_age", "float32")]
    changed = [ModelInput("region", "float32") if c.name == "region" else c for c in good.inputs]
    validation = validate_candidate(good, _example(data), DeploymentPolicy(), required_inputs=required)
    assert not validation.ok and "'customer_age'" in validation.reasons[0]
    validation = validate_candidate(good, _example(data), DeploymentPolicy(), required_inputs=changed)
    assert not validation.ok and "'region' is object, the route needs float32" in validation.reasons[0]
    decision = decide({}, None, validation, DeploymentPolicy())
    assert decision.action == "reject" and decision.reasons == tuple(validation.reasons)


def test_an_example_without_the_model_inputs_fails_the_smoke_test(good, data):
    validation = validate_candidate(good, _example(data).drop_columns(["x05"]), DeploymentPolicy())
    assert not validation.ok and "x05" in validation.reasons[0]


def test_a_slow_candidate_is_over_its_latency_budget(good, data):
    validation = validate_candidate(
        good, _example(data), DeploymentPolicy(latency_budget_ms=1e-6, latency_runs=3)
    )
    assert not validation.ok and "exceeds the budget" in validation.reasons[0]


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
