"""Deciding about a new model version: validate it, evaluate it against the champion, promote / hold / reject.

The pieces here are pure (a loaded model and Arrow data in, a decision out); the flow that claims the
registration, loads the models and records the decision builds on them.

* :func:`validate_candidate`: the candidate takes the inputs the route needs (same names, compatible
  types), predicts on its input example (one output per row, probabilities finite and within [0, 1]), and
  its p95 latency on a fixed batch is within the budget.
* :func:`evaluate`: metrics of a model on labelled data (binary classification: ``auc``, ``f1``,
  ``accuracy``; regression: ``rmse``, ``mae``), champion and challenger on the same data in the same run.
* :func:`decide`: the policy. No champion yet → promote when validation passed. Otherwise promote when the
  challenger is not worse than the champion by more than ``margin`` on the primary metric and no guard
  metric regresses by more than ``guard_tolerance``; ``hold`` instead of promote when approval is required.

Example:
    >>> policy = DeploymentPolicy(primary_metric="auc", margin=0.01)
    >>> decide({"auc": 0.86}, {"auc": 0.85}, Validation(ok=True), policy).action
    'promote'
    >>> decide({"auc": 0.80}, {"auc": 0.85}, Validation(ok=True), policy).reasons[0]
    'auc 0.8000 is worse than the champion (0.8500) by more than 0.01'
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Decision", "DeploymentPolicy", "Validation", "decide", "evaluate", "validate_candidate"]

LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss"})


@dataclass(frozen=True)
class DeploymentPolicy:
    """How a challenger is judged (from settings; per route later)."""

    primary_metric: str = "auc"
    margin: float = 0.01
    guard_metrics: tuple[str, ...] = ("f1",)
    guard_tolerance: float = 0.02
    require_approval: bool = False
    latency_budget_ms: float = 250.0
    latency_batch_rows: int = 1000
    latency_runs: int = 20


@dataclass
class Validation:
    """The outcome of validating a candidate: ``ok`` or the reasons it is not, and what was measured."""

    ok: bool
    reasons: list[str] = field(default_factory=list)
    p95_ms: float | None = None
    smoke_rows: int = 0


@dataclass(frozen=True)
class Decision:
    """promote / hold / reject, with the metrics of both models and the reasons, ready for the record."""

    action: str
    reasons: tuple[str, ...]
    challenger: Mapping[str, float]
    champion: Mapping[str, float] | None
    validation: Mapping[str, Any]

    def to_record(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reasons": list(self.reasons),
            "challenger_metrics": dict(self.challenger),
            "champion_metrics": dict(self.champion) if self.champion is not None else None,
            "validation": dict(self.validation),
        }


def _compatible(required: str, offered: str) -> bool:
    numeric = {"float32", "float64", "int32", "int64"}
    return required == offered or (required in numeric and offered in numeric)


def validate_candidate(
    model: Any, example: Any, policy: DeploymentPolicy, required_inputs: Sequence[Any] | None = None
) -> Validation:
    """Check a loaded candidate: inputs compatible with ``required_inputs``, a smoke test on ``example``
    (an Arrow record batch with the model's input columns), and the p95 latency on a fixed batch."""
    import numpy as np
    import pyarrow as pa

    reasons: list[str] = []
    offered = {column.name: column.dtype for column in model.inputs}
    for column in required_inputs or ():
        if column.name not in offered:
            reasons.append(f"input {column.name!r} the route needs is not a model input")
        elif not _compatible(column.dtype, offered[column.name]):
            reasons.append(f"input {column.name!r} is {offered[column.name]}, the route needs {column.dtype}")
    missing = [name for name in offered if name not in example.schema.names]
    if missing:
        reasons.append(f"the input example lacks model inputs: {', '.join(missing)}")
    if reasons:
        return Validation(ok=False, reasons=reasons)
    try:
        predicted = model.predict(example)
    except Exception as exc:  # any failure of the model itself is a validation finding
        return Validation(ok=False, reasons=[f"smoke test failed: {type(exc).__name__}: {exc}"])
    prediction = np.asarray(predicted.get("prediction"))
    if prediction.shape[0] != example.num_rows:
        reasons.append(f"smoke test gave {prediction.shape[0]} predictions for {example.num_rows} rows")
    if "probability" in predicted:
        probability = np.asarray(predicted["probability"], dtype=float)
        if not np.all(np.isfinite(probability)) or probability.min() < 0 or probability.max() > 1:
            reasons.append("smoke test gave probabilities that are not finite values in [0, 1]")
    repeats = -(-policy.latency_batch_rows // max(example.num_rows, 1))
    batch = pa.concat_batches([example] * repeats).slice(0, policy.latency_batch_rows)
    timings = []
    for _ in range(policy.latency_runs):
        started = time.perf_counter()
        model.predict(batch)
        timings.append((time.perf_counter() - started) * 1000)
    p95 = float(np.percentile(timings, 95))
    if p95 > policy.latency_budget_ms:
        reasons.append(
            f"p95 latency {p95:.1f} ms on {policy.latency_batch_rows} rows exceeds the budget of "
            f"{policy.latency_budget_ms:g} ms"
        )
    return Validation(ok=not reasons, reasons=reasons, p95_ms=round(p95, 3), smoke_rows=example.num_rows)


def _auc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve as the Mann-Whitney statistic (ties get average ranks)."""
    from scipy.stats import rankdata

    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if not n_pos or not n_neg:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def evaluate(model: Any, data: Any, label: str = "label") -> dict[str, float]:
    """Metrics of ``model`` on labelled Arrow data (a table or batch holding the inputs and ``label``).

    Example:
        >>> evaluate(model, holdout)   # doctest: +SKIP
        {'auc': 0.861, 'f1': 0.766, 'accuracy': 0.774, 'rows': 4000.0}
    """
    import numpy as np
    import pyarrow as pa

    batch = data.combine_chunks().to_batches()[0] if isinstance(data, pa.Table) else data
    truth = batch.column(label).to_numpy(zero_copy_only=False)
    predicted = model.predict(batch)
    prediction = np.asarray(predicted["prediction"]).astype(float)
    metrics: dict[str, float] = {"rows": float(len(truth))}
    if "probability" in predicted or set(np.unique(truth)) <= {0, 1}:
        truth = truth.astype(int)
        hard = prediction.astype(int)
        tp = int(((hard == 1) & (truth == 1)).sum())
        fp = int(((hard == 1) & (truth == 0)).sum())
        fn = int(((hard == 0) & (truth == 1)).sum())
        metrics["accuracy"] = float((hard == truth).mean())
        metrics["f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        scores = np.asarray(predicted.get("probability", prediction), dtype=float)
        metrics["auc"] = _auc(truth, scores)
    else:
        error = prediction - truth.astype(float)
        metrics["rmse"] = float(np.sqrt(np.mean(error**2)))
        metrics["mae"] = float(np.mean(np.abs(error)))
    return metrics


def _worse_by(metric: str, challenger: float, champion: float) -> float:
    """How much worse the challenger is (positive = worse), whichever direction the metric improves."""
    return challenger - champion if metric in LOWER_IS_BETTER else champion - challenger


def decide(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    validation: Validation,
    policy: DeploymentPolicy,
) -> Decision:
    """Apply the policy: reject on failed validation or a regression, hold when approval is required."""
    record = {"ok": validation.ok, "reasons": validation.reasons, "p95_ms": validation.p95_ms}
    if not validation.ok:
        return Decision("reject", tuple(validation.reasons), dict(challenger), champion, record)
    reasons: list[str] = []
    if champion is None:
        reasons.append("no champion yet: the first valid version is promoted")
    else:
        metric = policy.primary_metric
        if metric not in challenger or metric not in champion:
            return Decision("reject", (f"primary metric {metric!r} is missing for one of the models",),
                            dict(challenger), dict(champion), record)  # fmt: skip
        worse = _worse_by(metric, challenger[metric], champion[metric])
        if worse > policy.margin:
            reasons.append(
                f"{metric} {challenger[metric]:.4f} is worse than the champion ({champion[metric]:.4f}) "
                f"by more than {policy.margin:g}"
            )
        shared_guards = [g for g in policy.guard_metrics if g in challenger and g in champion]
        reasons += [
            f"guard {guard} regresses: {challenger[guard]:.4f} against {champion[guard]:.4f} "
            f"(tolerance {policy.guard_tolerance:g})"
            for guard in shared_guards
            if _worse_by(guard, challenger[guard], champion[guard]) > policy.guard_tolerance
        ]
        if reasons:
            return Decision("reject", tuple(reasons), dict(challenger), dict(champion), record)
        reasons.append(f"{metric} {challenger[metric]:.4f} against the champion's {champion[metric]:.4f}: not worse "
                       f"by more than {policy.margin:g}, no guard regressed")  # fmt: skip
    if policy.require_approval:
        return Decision("hold", (*reasons, "the policy requires a manual approval"), dict(challenger),
                        dict(champion) if champion is not None else None, record)  # fmt: skip
    return Decision(
        "promote", tuple(reasons), dict(challenger), dict(champion) if champion is not None else None, record
    )
