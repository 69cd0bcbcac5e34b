"""training.train: a linear and a tree pipeline, their ONNX export checked against scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest

from training.data import CATEGORICAL, FEATURES, NUMERIC, generate
from training.train import (
    LINEAR_TOLERANCE,
    TREE_AGREEMENT,
    OnnxValidationError,
    evaluate,
    to_onnx,
    train,
    validate_onnx,
)


@pytest.fixture(scope="module")
def linear():
    return train(generate(5000, seed=0), seed=0, kind="linear")


@pytest.fixture(scope="module")
def holdout():
    return generate(3000, seed=1)


def _run(onnx_model: bytes, table) -> tuple[np.ndarray, np.ndarray]:
    """Feed onnxruntime as scoring does: (N, 1) float32 per numeric, (N, 1) object per string column."""
    frame = table.to_pandas()
    feeds = {c: frame[c].to_numpy(np.float32).reshape(-1, 1) for c in NUMERIC}
    feeds |= {c: frame[c].to_numpy(object).reshape(-1, 1) for c in CATEGORICAL}
    session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    assert (first.name, first.type, first.shape[1]) == ("x01", "tensor(float)", 1)
    assert "id" not in {i.name for i in session.get_inputs()}
    label, proba = session.run(["label", "probabilities"], feeds)
    return label, proba


def _sklearn(pipeline, table) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # unknown categories at high drift
        return pipeline.predict_proba(table.select(list(FEATURES)).to_pandas())


def test_linear_model_reaches_auc(linear, holdout) -> None:
    metrics = evaluate(linear, holdout)
    assert metrics["auc"] >= 0.75 and 0.6 < metrics["accuracy"] <= 1 and 0 < metrics["f1"] <= 1


def test_linear_onnx_matches_sklearn(linear, holdout) -> None:
    model = to_onnx(linear, holdout)
    label, proba = _run(model, holdout)
    ref = _sklearn(linear, holdout)
    assert proba.shape == (3000, 2) and proba.dtype == np.float32
    assert np.max(np.abs(proba - ref)) <= LINEAR_TOLERANCE
    assert np.array_equal(label, ref.argmax(1))


def test_onnx_handles_drift_and_unseen_categories(linear) -> None:
    drifted = generate(3000, seed=2, drift=1.0)
    assert "offshore" in drifted.column("region").to_pylist()
    _, proba = _run(to_onnx(linear, generate(100)), drifted)
    assert np.max(np.abs(proba - _sklearn(linear, drifted))) <= LINEAR_TOLERANCE


def test_validation_rejects_a_different_model(linear, holdout) -> None:
    other = train(generate(2000, seed=9), seed=9)
    with pytest.raises(OnnxValidationError):
        validate_onnx(to_onnx(other, holdout), linear, holdout)


def test_gbm_trains_and_converts(holdout) -> None:
    gbm = train(generate(3000, seed=0), seed=0, kind="gbm")
    assert type(gbm[-1]).__name__ == "GradientBoostingClassifier"
    label, _ = _run(to_onnx(gbm, holdout), holdout)
    assert np.mean(label == _sklearn(gbm, holdout).argmax(1)) >= TREE_AGREEMENT
    assert evaluate(gbm, holdout)["auc"] >= 0.75


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        train(100, kind="forest")
