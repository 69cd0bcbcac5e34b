"""Deciding about a new model version: validate it, evaluate it against the champion, promote / hold / reject.

The pieces here are pure (a loaded model and Arrow data in, a decision out); the flow that claims the
registration, loads the models and records the decision builds on them.

* :func:`validate_candidate`: what the MLmodel declares holds (a signature; for ONNX, the signature's inputs
  are the graph's inputs: names, element types, shapes, one ``[N, 1]`` input per column), the candidate's
  inputs are a subset of what the route's data provides (compatible types), it predicts on its input example
  (one output per row, probabilities finite and within [0, 1]), and its p95 latency on a fixed batch is
  within the budget. A failed validation names its reason code (``bad_model``, ``schema_mismatch``,
  ``wrong_type``, from ``shared.errors.FAILURE_REASONS``).
* :func:`evaluate`: metrics of a model on labelled data (binary classification: ``auc``, ``f1``,
  ``accuracy``; regression: ``rmse``, ``mae``), champion and challenger on the same data in the same run.
* :func:`decide`: the policy. The challenger must reach the bar ``max(champion, best of the last N
  champions) - margin`` on the primary metric (the champions measured on the same data in the same run, so
  a series of slightly worse versions cannot slide downhill), every absolute floor (``floors``: a minimum
  for higher-is-better metrics, a maximum for errors) holds whatever the champion, and no guard metric
  regresses by more than ``guard_tolerance``. No champion yet → the first valid version that meets the
  floors is promoted. ``hold`` instead of promote when approval is required.

Example:
    >>> policy = DeploymentPolicy(primary_metric="auc", margin=0.01)
    >>> decide({"auc": 0.86}, {"auc": 0.85}, Validation(ok=True), policy).action
    'promote'
    >>> decide({"auc": 0.80}, {"auc": 0.85}, Validation(ok=True), policy).reasons[0]
    'auc 0.8000 is worse than the champion (0.8500) by more than 0.01'
    >>> decide({"auc": 0.845}, {"auc": 0.85}, Validation(ok=True), policy, history={"1": {"auc": 0.86}}).reasons[0]
    'auc 0.8450 is worse than the best of the recent champions (0.8600, version 1) by more than 0.01'
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "HELD_OUT_RULE",
    "Decision",
    "DeploymentPolicy",
    "RecentData",
    "Validation",
    "columns_of",
    "decide",
    "evaluate",
    "held_out_mask",
    "validate_candidate",
]

LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss"})


@dataclass(frozen=True)
class DeploymentPolicy:
    """How a challenger is judged (from settings; per route later)."""

    primary_metric: str = "auc"
    margin: float = 0.0
    guard_metrics: tuple[str, ...] = ("f1",)
    guard_tolerance: float = 0.02
    require_approval: bool = False
    latency_budget_ms: float = 250.0
    latency_batch_rows: int = 1000
    latency_runs: int = 20
    history: int = 5  # how many earlier champions (besides the current one) set the bar
    floors: Mapping[str, float] = field(default_factory=dict)  # absolute: min (or max for errors) per metric
    window_min_rows: int = 200  # labelled held-out rows of a drift window needed for it to decide

    def describe(self) -> dict[str, Any]:
        """The policy as it goes into a decision record."""
        return {"primary_metric": self.primary_metric, "margin": self.margin, "history": self.history,
                "floors": dict(self.floors), "guard_metrics": list(self.guard_metrics),
                "guard_tolerance": self.guard_tolerance, "require_approval": self.require_approval}  # fmt: skip


@dataclass
class Validation:
    """The outcome of validating a candidate: ``ok`` or the reasons it is not, and what was measured."""

    ok: bool
    reasons: list[str] = field(default_factory=list)
    p95_ms: float | None = None
    smoke_rows: int = 0
    reason: str | None = None  # the code of the first failure (``shared.errors.FAILURE_REASONS``)


@dataclass(frozen=True)
class Decision:
    """promote / hold / reject, with the metrics of both models and the reasons, ready for the record."""

    action: str
    reasons: tuple[str, ...]
    challenger: Mapping[str, float]
    champion: Mapping[str, float] | None
    validation: Mapping[str, Any]
    rollout: Mapping[str, Any] | None = None
    bar: Mapping[str, Any] | None = None  # what the challenger had to reach, and from which champions
    evaluations: Mapping[str, Any] | None = None  # per evaluation data set (holdout, drift window)
    decided_by: str | None = None  # which of ``evaluations`` decided

    def to_record(self) -> dict[str, Any]:
        record = {
            "action": self.action,
            "reasons": list(self.reasons),
            "challenger_metrics": dict(self.challenger),
            "champion_metrics": dict(self.champion) if self.champion is not None else None,
            "validation": dict(self.validation),
            "rollout": dict(self.rollout) if self.rollout is not None else None,
        }
        if self.bar is not None:
            record["bar"] = dict(self.bar)
        if self.evaluations is not None:
            record["evaluations"] = dict(self.evaluations)
            record["decided_by"] = self.decided_by
        return record


_NUMERIC = {"float32", "float64", "int32", "int64"}
_ONNX_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64",
               "tensor(int32)": "int32", "tensor(string)": "object", "tensor(bool)": "bool"}  # fmt: skip


def _compatible(required: str, offered: str) -> bool:
    return required == offered or (required in _NUMERIC and offered in _NUMERIC)


def _shape(shape: Any) -> str:
    return "[" + ", ".join("N" if d is None or d == -1 or isinstance(d, str) else str(d) for d in shape) + "]"


def _declaration_findings(model: Any) -> tuple[str | None, list[str]]:
    """(reason code, reasons) for what the MLmodel declares: a signature, and for ONNX its match with the graph."""
    declared = getattr(model, "declared", None)
    if declared is None:
        where = "the MLmodel" if getattr(model, "from_mlmodel", False) else "the model (no MLmodel)"
        return "bad_model", [f"{where} declares no signature: its inputs cannot be checked"]
    graph = {g.name: g for g in getattr(model, "graph_inputs", ())}
    if getattr(model, "flavor", None) != "onnx":
        return None, []
    reasons = []
    names = {d.name for d in declared}
    reasons += [
        f"signature input {d.name!r} is not an input of the ONNX graph"
        for d in declared
        if d.name not in graph
    ]
    reasons += [f"ONNX graph input {g!r} is not in the signature" for g in graph if g not in names]
    for spec in declared:
        node = graph.get(spec.name)
        if node is None:
            continue
        element = _ONNX_TYPES.get(node.type, node.type)
        if spec.dtype != element:
            reasons.append(f"input {spec.name!r} is declared {spec.dtype}, the ONNX graph takes {node.type}")
        if len(node.shape) != 2 or node.shape[1] != 1:
            reasons.append(f"ONNX graph input {spec.name!r} is shaped {_shape(node.shape)}: one [N, 1] input per "
                           "column is the convention")  # fmt: skip
        elif spec.shape is not None and (
            len(spec.shape) != 2
            or any(
                d != (g if isinstance(g, int) else -1) for d, g in zip(spec.shape, node.shape, strict=False)
            )
        ):
            reasons.append(f"input {spec.name!r} is declared {_shape(spec.shape)}, the ONNX graph takes "
                           f"{_shape(node.shape)}")  # fmt: skip
    return ("schema_mismatch" if reasons else None), reasons


def validate_candidate(
    model: Any, example: Any, policy: DeploymentPolicy, available_inputs: Sequence[Any] | None = None
) -> Validation:
    """Check a loaded candidate: what its MLmodel declares, its inputs against ``available_inputs`` (the
    columns the route's data provides, with their dtypes: each model input must be one of them), a smoke test
    on ``example`` (an Arrow record batch with the model's input columns), and the p95 latency on a fixed batch.

    Example:
        >>> validate_candidate(model, example, DeploymentPolicy(), columns_of(holdout)).reason   # doctest: +SKIP
        'schema_mismatch'
    """
    import numpy as np
    import pyarrow as pa

    code, reasons = _declaration_findings(model)
    if reasons:
        return Validation(ok=False, reasons=reasons, reason=code)
    if available_inputs is not None:
        provided = {column.name: column.dtype for column in available_inputs}
        for column in model.inputs:
            if column.name not in provided:
                reasons.append(f"model input {column.name!r} is not in the route's data")
                code = code or "schema_mismatch"
            elif not _compatible(column.dtype, provided[column.name]):
                reasons.append(f"model input {column.name!r} is {column.dtype}, the route's data has "
                               f"{provided[column.name]}")  # fmt: skip
                code = code or "wrong_type"
    missing = [column.name for column in model.inputs if column.name not in example.schema.names]
    if missing:
        reasons.append(f"the input example lacks model inputs: {', '.join(missing)}")
        code = code or "schema_mismatch"
    if reasons:
        return Validation(ok=False, reasons=reasons, reason=code)
    try:
        predicted = model.predict(example)
    except Exception as exc:  # any failure of the model itself is a validation finding
        return Validation(
            ok=False, reasons=[f"smoke test failed: {type(exc).__name__}: {exc}"], reason="bad_model"
        )
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
    return Validation(ok=not reasons, reasons=reasons, p95_ms=round(p95, 3), smoke_rows=example.num_rows,
                      reason="bad_model" if reasons else None)  # fmt: skip


def columns_of(data: Any, exclude: Sequence[str] = ()) -> tuple[Any, ...]:
    """The columns an Arrow table or batch provides, as ``ModelInput`` (numpy dtype, ``object`` for text).

    Example:
        >>> import pyarrow as pa
        >>> columns_of(pa.table({"x": [1.5], "c": ["a"], "label": [1]}), exclude=("label",))
        (ModelInput(name='x', dtype='float64'), ModelInput(name='c', dtype='object'))
    """
    import pyarrow as pa

    from shared.models import ModelInput

    columns = []
    for item in data.schema:
        kind = item.type.value_type if pa.types.is_dictionary(item.type) else item.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            dtype = "object"
        elif pa.types.is_boolean(kind):
            dtype = "bool"
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
            dtype = kind.to_pandas_dtype().__name__
        else:
            dtype = str(kind)
        if item.name not in exclude:
            columns.append(ModelInput(item.name, dtype))
    return tuple(columns)


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


def _floor_breaches(metrics: Mapping[str, float], floors: Mapping[str, float]) -> list[str]:
    """The absolute floors ``metrics`` miss (a metric that was not measured misses its floor)."""
    breaches = []
    for metric, floor in floors.items():
        value = metrics.get(metric)
        lower = metric in LOWER_IS_BETTER
        if value is None or math.isnan(value):
            breaches.append(f"{metric} was not measured: its floor ({'max' if lower else 'min'} {floor:g}) cannot hold")
        elif (value > floor) if lower else (value < floor):
            breaches.append(f"{metric} {value:.4f} is {'above the maximum' if lower else 'below the floor'} {floor:g}")
    return breaches


def decide(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    validation: Validation,
    policy: DeploymentPolicy,
    history: Mapping[str, Mapping[str, float]] | None = None,
) -> Decision:
    """Apply the policy: reject on failed validation, a missed floor, a challenger below the bar or a guard
    regression; hold when approval is required.

    ``history``: the metrics of earlier champions (version → metrics, measured on the same data as the
    challenger), of which the best (with the champion's) sets the bar ``best - margin``."""
    record = {"ok": validation.ok, "reasons": validation.reasons, "p95_ms": validation.p95_ms,
              "reason": validation.reason}  # fmt: skip
    champion = dict(champion) if champion is not None else None
    if not validation.ok:
        return Decision("reject", tuple(validation.reasons), dict(challenger), champion, record)
    floors = _floor_breaches(challenger, policy.floors)
    reasons: list[str] = []
    if champion is None:
        if floors:
            return Decision("reject", tuple(floors), dict(challenger), None, record)
        reasons.append("no champion yet: the first valid version is promoted")
        bar = None
    else:
        metric = policy.primary_metric
        if metric not in challenger or metric not in champion:
            return Decision("reject", (f"primary metric {metric!r} is missing for one of the models",),
                            dict(challenger), champion, record)  # fmt: skip
        lower = metric in LOWER_IS_BETTER
        candidates = {version: m[metric] for version, m in (history or {}).items()
                      if metric in m and not math.isnan(m[metric])}  # fmt: skip
        best_version, best = None, champion[metric]
        for version, value in candidates.items():
            if (value < best) if lower else (value > best):
                best_version, best = version, value
        required = best + policy.margin if lower else best - policy.margin
        bar = {"metric": metric, "champion": champion[metric], "best": best, "best_version": best_version,
               "margin": policy.margin, "required": required, "history": candidates}  # fmt: skip
        reasons += floors
        if _worse_by(metric, challenger[metric], best) > policy.margin:
            against = (f"the champion ({best:.4f})" if best_version is None else
                       f"the best of the recent champions ({best:.4f}, version {best_version})")  # fmt: skip
            reasons.append(f"{metric} {challenger[metric]:.4f} is worse than {against} by more than {policy.margin:g}")
        shared_guards = [g for g in policy.guard_metrics if g in challenger and g in champion]
        reasons += [
            f"guard {guard} regresses: {challenger[guard]:.4f} against {champion[guard]:.4f} "
            f"(tolerance {policy.guard_tolerance:g})"
            for guard in shared_guards
            if _worse_by(guard, challenger[guard], champion[guard]) > policy.guard_tolerance
        ]
        if reasons:
            return Decision("reject", tuple(reasons), dict(challenger), champion, record, bar=bar)
        reasons.append(f"{metric} {challenger[metric]:.4f} reaches the bar {required:.4f} (best recent champion "
                       f"{best:.4f} - margin {policy.margin:g}), no guard regressed")  # fmt: skip
    if floors := list(policy.floors):
        reasons.append(f"the floors on {', '.join(floors)} hold")
    if policy.require_approval:
        return Decision("hold", (*reasons, "the policy requires a manual approval"), dict(challenger), champion,
                        record, bar=bar)  # fmt: skip
    return Decision("promote", tuple(reasons), dict(challenger), champion, record, bar=bar)


@dataclass
class DeploymentOutcome:
    """What the flow did with one registration (or approval, or rollback)."""

    status: str  # "promote" | "hold" | "reject" | "duplicate" | "unchanged" | "ignored" | "refused"
    key: str
    decision: Decision | None = None
    champion: str | None = None  # the champion version afterwards
    message: str | None = None  # for people: why nothing changed, or what did


@dataclass(frozen=True)
class RecentData:
    """Labelled rows of the drift window a retrained candidate came from, held out from its training."""

    table: Any
    details: Mapping[str, Any] = field(default_factory=dict)  # window, inputs, rows, the hold-out rule


RETRAIN_DECISION_TAG = "scorehook.retrain.decision"
"""Version tag of a retrained candidate: the drift decision (``model/version/window``) it answers."""
HELD_OUT_RULE = "crc32(id) % 5 == 0"
"""The rows of a drift window that retraining never fits on, so the deployment flow can judge on them."""


def held_out_mask(table: Any, key: str = "id") -> Any:
    """Which rows of ``table`` are held out from retraining (:data:`HELD_OUT_RULE`; none without ``key``).

    Example:
        >>> import pyarrow as pa
        >>> held_out_mask(pa.table({"id": ["r1", "r2", "r3", "r4", "r5", "r6"]})).tolist()
        [False, False, False, True, False, False]
    """
    import zlib

    import numpy as np
    import pyarrow as pa

    if key not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    ids = table.column(key).cast(pa.string()).to_pylist()
    return np.fromiter((i is not None and zlib.crc32(i.encode()) % 5 == 0 for i in ids), bool, len(ids))


class DeploymentService:
    """A model version registers → validate → evaluate against the champion → promote / hold / reject.

    Every registration is claimed once in the ledger under the registry's identity of the version
    (``registration:NAME/VERSION@IDENTITY``, see :meth:`registration_key`), so a duplicate delivery gives one
    decision and a model deleted and re-created gets its new v1 decided. A version the registry does not have
    (MLflow's test payload, a deleted version) is ``ignored`` with a log line: no final record. The decision is recorded in the ledger, as tags on the version, as one JSON log line,
    and published as ``Scorehook.Model.Promoted`` / ``.Held`` / ``.Rejected``. Promotion moves the ``champion``
    alias and keeps the one before as ``previous`` (for :meth:`rollback`); an older version never replaces a
    newer champion, whatever order the registrations arrive in.

    Example:
        >>> flow = DeploymentService(registry, provider, ledger, publisher, lambda: holdout)   # doctest: +SKIP
        >>> flow.handle(registration).status                                                    # doctest: +SKIP
        'promote'
    """

    def __init__(
        self,
        registry: Any,
        models: Any,
        ledger: Any,
        publisher: Any,
        evaluation_data: Any,
        policy: DeploymentPolicy | None = None,
        *,
        label: str = "label",
        claim_ttl_seconds: float = 900,
        owner: str = "scorehook",
        rollout: Any = None,
        recent_data: Any = None,
        marker: Any = None,
    ) -> None:
        self.rollout = (
            rollout  # (name, version, champion) -> RolloutResult, when an online endpoint serves the model
        )
        self.registry, self.models, self.ledger, self.publisher = registry, models, ledger, publisher
        self.evaluation_data, self.policy, self.label = evaluation_data, policy or DeploymentPolicy(), label
        self.claim_ttl_seconds, self.owner = claim_ttl_seconds, owner
        self.recent_data = recent_data  # (ModelVersion) -> RecentData | None, for drift-triggered candidates
        self.marker = marker  # a shared.models.GenerationMarker: bumped on every champion change

    def registration_key(self, name: str, version: str) -> str:
        """The ledger key of the decision about the version the registry has now under ``name``/``version``
        (``ModelNotFoundError`` when it has none).

        Example:
            >>> flow.registration_key("churn", "2")   # doctest: +SKIP
            'registration:churn/2@1764590000123'
        """
        from shared.registrations import registration_key

        found = self.registry.resolve(f"models:/{name}/{version}")
        return registration_key(name, version, found.identity)

    def handle(self, registration: Any) -> DeploymentOutcome:
        """Decide about one registered version (from either front door)."""
        from dataclasses import replace

        from shared.errors import ModelNotFoundError
        from shared.logs import bind, get_logger
        from shared.registrations import correlation_of
        from shared.telemetry import span

        with bind(
            model=registration.name, model_version=registration.version, event_id=registration.delivery_id
        ), span("deployment decision", attributes={"model": registration.name,
                                                   "model_version": registration.version}) as current:  # fmt: skip
            try:
                found = self.registry.resolve(f"models:/{registration.name}/{registration.version}")
            except ModelNotFoundError as exc:  # not registered (yet): not final, a later delivery decides
                get_logger("deployment").warning("registration ignored: the registry has no such version", extra={
                    "reason": exc.reason, "error": exc.message, "delivery_id": registration.delivery_id,
                    "origin": registration.origin,
                })  # fmt: skip
                return DeploymentOutcome("ignored", registration.idempotency_key)
            registration = replace(registration, identity=found.identity or registration.identity,
                                   correlation_id=registration.correlation_id or correlation_of(found.tags))  # fmt: skip
            with bind(correlation_id=registration.correlation_id):
                outcome = self._handle(registration, current)
            return outcome

    def _handle(self, registration: Any, current: Any) -> DeploymentOutcome:
        from shared.errors import AlreadyClaimedError, ModelError
        from shared.logs import get_logger

        if registration.correlation_id:
            current.set_attribute("scorehook.correlation_id", registration.correlation_id)
        key = registration.idempotency_key
        claim = self.ledger.claim(
            key, self.owner, self.claim_ttl_seconds, {"origin": registration.origin}
        )
        if claim is None:
            existing = self.ledger.get(key)
            if existing is not None and existing.status == "claimed":
                raise AlreadyClaimedError(f"{key} is being decided by {existing.owner}", key=key)
            get_logger("deployment").info("registration already decided", extra={
                "key": key, "decision": existing.status if existing else None,
                "delivery_id": registration.delivery_id})  # fmt: skip
            return DeploymentOutcome("duplicate", key)
        try:
            champion = self.registry.alias_version(registration.name, "champion")
            if champion is not None and _newer(champion, registration.version):
                decision = Decision("reject", (f"version {registration.version} is older than the champion "
                                               f"(version {champion})",), {}, None, {})  # fmt: skip
            else:
                decision = self._decide(registration, champion, ModelError)
            if decision.action == "promote" and self.rollout is not None:
                decision = self._roll_out(registration, champion, decision)
            if decision.action == "promote":
                before, champion = champion, self._promote(registration.name, registration.version, champion)
                if champion == registration.version:
                    self._champion_changed(registration.name, champion, "promote", before,
                                           by=f"{registration.origin}:{registration.delivery_id}")  # fmt: skip
            self._record(registration, claim, decision)
            current.set_attribute("scorehook.decision", decision.action)
            get_logger("deployment").info("deployment decision", extra={
                "decision": decision.action, "reasons": list(decision.reasons), "champion": champion,
                "reason": decision.validation.get("reason"), "key": key, "identity": registration.identity,
                "challenger_metrics": dict(decision.challenger), "origin": registration.origin,
            })  # fmt: skip
            return DeploymentOutcome(decision.action, key, decision, champion)
        except BaseException:
            self.ledger.release(claim)
            raise

    def _decide(self, registration: Any, champion: str | None, model_error: type[Exception]) -> Decision:
        from dataclasses import replace

        data = self.evaluation_data()
        example = data.slice(0, 20).combine_chunks().to_batches()[0]
        try:
            version, candidate = self.models.get(f"models:/{registration.name}/{registration.version}")
        except model_error as exc:
            failed = Validation(ok=False, reasons=[f"the model does not load: {exc}"], reason="bad_model")
            return decide({}, None, failed, self.policy)
        # what the route's data provides: the labelled evaluation data is a sample of it
        validation = validate_candidate(
            candidate, example, self.policy, columns_of(data, exclude=(self.label,))
        )
        if not validation.ok:
            return decide({}, None, validation, self.policy)
        incumbent = self.models.get(f"models:/{registration.name}/{champion}")[1] if champion else None
        earlier = self._earlier_champions(registration.name, champion, model_error) if incumbent else {}
        holdout = self._evaluate_all(candidate, incumbent, earlier, data)
        decision = decide(holdout[0], holdout[1], validation, self.policy, holdout[2])
        evaluations = {"holdout": _evaluation(decision, holdout[2])}
        recent = self._recent(version) if self.recent_data is not None else None
        if recent is None:
            return replace(decision, evaluations=evaluations, decided_by="holdout")
        rows = recent.table.num_rows
        if rows < self.policy.window_min_rows:
            evaluations["drift_window"] = {**recent.details, "rows": rows, "decides": False}
            note = (f"the drift window has {rows} labelled held-out rows (fewer than {self.policy.window_min_rows}):"
                    " the holdout decides")  # fmt: skip
            return replace(decision, reasons=(*decision.reasons, note), evaluations=evaluations, decided_by="holdout")
        window = self._evaluate_all(candidate, incumbent, earlier, recent.table)
        on_window = decide(window[0], window[1], validation, self.policy, window[2])
        evaluations["drift_window"] = {**recent.details, "rows": rows, **_evaluation(on_window, window[2])}
        note = f"the drift window's {rows} labelled held-out rows decide (the holdout said {decision.action})"
        return replace(on_window, reasons=(*on_window.reasons, note), evaluations=evaluations,
                       decided_by="drift_window")  # fmt: skip

    def _evaluate_all(self, candidate: Any, incumbent: Any, earlier: Mapping[str, Any], data: Any) -> tuple:
        """(challenger, champion, earlier champions) metrics on the same data, in the same run."""
        challenger = evaluate(candidate, data, self.label)
        champion = evaluate(incumbent, data, self.label) if incumbent is not None else None
        history = {version: evaluate(model, data, self.label) for version, model in earlier.items()}
        return challenger, champion, history

    def _recent(self, version: Any) -> RecentData | None:
        """The drift window's labelled rows for a retrained candidate (``None`` for any other, or when they
        cannot be read: then the holdout decides, and the log says why)."""
        from shared.errors import ScorehookError
        from shared.logs import get_logger

        if not (getattr(version, "tags", None) or {}).get(RETRAIN_DECISION_TAG):
            return None
        try:
            return self.recent_data(version)
        except ScorehookError as exc:
            get_logger("deployment").warning("drift window rows not read: the holdout decides", extra={
                "model": version.name, "model_version": version.version, "reason": exc.reason, "error": str(exc)})  # fmt: skip
            return None

    def _earlier_champions(self, name: str, champion: str | None, model_error: type[Exception]) -> dict[str, Any]:
        """The loaded models of up to ``policy.history`` earlier champions (newest first), the current one
        and rolled-back ones excluded; one that no longer loads is left out (logged)."""
        from shared.logs import get_logger

        found: dict[str, Any] = {}
        for version in self.champion_history(name):
            if len(found) >= self.policy.history:
                break
            if version == champion or version in found:
                continue
            try:
                found[version] = self.models.get(f"models:/{name}/{version}")[1]
            except model_error as exc:
                get_logger("deployment").warning("earlier champion not evaluated", extra={
                    "model": name, "model_version": version, "error": str(exc)})  # fmt: skip
        return found

    def _champion_records(self, name: str) -> list[Any]:
        """The ledger's champion changes of ``name``, oldest first."""
        records = [r for r in self.ledger.records("champion") if r.details.get("model") == name]
        return sorted(records, key=lambda r: (r.details.get("at", ""), r.key))

    def champion_history(self, name: str) -> list[str]:
        """Versions that were champion of ``name``, newest first, without the rolled-back ones (and the
        ``previous`` alias of a champion promoted before the ledger kept this history).

        Example:
            >>> flow.champion_history("churn")   # doctest: +SKIP
            ['3', '2', '1']
        """
        records = self._champion_records(name)
        rolled_back = {r.details.get("from") for r in records if r.details.get("how") == "rollback"}
        history = [str(r.details["version"]) for r in reversed(records)]
        if not records:
            history = [v for v in (self.registry.alias_version(name, "champion"),
                                   self.registry.alias_version(name, "previous")) if v]  # fmt: skip
        return [v for v in dict.fromkeys(history) if v not in rolled_back]

    def _champion_changed(self, name: str, version: str, how: str, before: str | None, *,
                          by: str | None = None, reason: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Record that ``version`` became the champion (ledger + tags), then move the generation marker."""
        from datetime import UTC, datetime

        at = datetime.now(UTC).isoformat()
        details = {"model": name, "version": version, "how": how, "from": before, "by": by, "reason": reason,
                   "at": at}  # fmt: skip
        claim = self.ledger.claim(f"champion:{name}/{version}/{at}", self.owner, self.claim_ttl_seconds, details)
        if claim is not None:
            self.ledger.finish(claim, "champion", details)
        self.registry.set_tags(name, version, {"scorehook.champion_since": at, "scorehook.champion_how": how})
        if self.marker is not None:
            self.marker.bump(name, version, {"how": how})
        return details

    def _roll_out(self, registration: Any, champion: str | None, decision: Decision) -> Decision:
        """Stage the new version on the online endpoint; a rolled-back rollout turns the decision into a reject."""
        from dataclasses import replace

        result = self.rollout(registration.name, registration.version, champion)
        record = {
            "status": result.status,
            "reason": result.reason,
            "steps": [s.label for s in result.applied],
        }
        if result.status == "completed":
            return replace(decision, rollout=record)
        return replace(decision, action="reject", reasons=(*decision.reasons, f"staged rollout rolled back: {result.reason}"),
                       rollout=record)  # fmt: skip

    def _promote(self, name: str, version: str, champion: str | None) -> str:
        current = self.registry.alias_version(name, "champion")
        if current is not None and _newer(current, version):
            return current  # a newer version was promoted meanwhile: it stays
        if current is not None and current != version:
            self.registry.set_alias(name, "previous", current)
        self.registry.set_alias(name, "champion", version)
        return version

    def _record(self, registration: Any, claim: Any, decision: Decision) -> None:
        from datetime import UTC, datetime

        from shared.errors import ModelNotFoundError, TransientError
        from shared.logs import get_logger

        record = {
            **decision.to_record(), "model": registration.name, "version": registration.version,
            "identity": registration.identity, "correlation_id": getattr(registration, "correlation_id", None),
            "trigger": {"origin": registration.origin, "delivery_id": registration.delivery_id,
                        "workspace": registration.workspace},
            "decided_at": datetime.now(UTC).isoformat(),
        }  # fmt: skip
        self.ledger.finish(claim, decision.action, record)
        try:
            self._tag(registration, decision)
        except ModelNotFoundError as exc:  # announced, but not in this registry: the ledger keeps the record
            get_logger("deployment").warning("decision not tagged", extra={"error": exc.message})
        event_type = {"promote": "Promoted", "hold": "Held", "reject": "Rejected"}[decision.action]
        try:
            self.publisher.publish(
                f"Scorehook.Model.{event_type}", f"models/{registration.name}:{registration.version}",
                {"model_name": registration.name, "version": registration.version, **decision.to_record(),
                 "correlation_id": record["correlation_id"]},
            )  # fmt: skip
        except TransientError as exc:  # recorded already; a lost notification must not undo the decision
            get_logger("deployment").error("decision not published", extra={"error": str(exc)})

    def _tag(self, registration: Any, decision: Decision) -> None:
        import json

        reason = decision.validation.get("reason")
        self.registry.set_tags(registration.name, registration.version, {
            **({"scorehook.reject_reason": reason} if reason else {}),
            "scorehook.reasons": "; ".join(decision.reasons),
            "scorehook.metrics": json.dumps({"challenger": dict(decision.challenger),
                                             "champion": decision.champion}, default=float),
            **({"scorehook.decided_by": decision.decided_by or "", "scorehook.evaluations": json.dumps({
                name: {k: e.get(k) for k in ("action", "rows", "decides")} | {
                    f"{side}_{self.policy.primary_metric}": (e.get(side) or {}).get(self.policy.primary_metric)
                    for side in ("challenger", "champion")}
                for name, e in decision.evaluations.items()}, default=float)} if decision.evaluations else {}),
            "scorehook.decision": decision.action,  # last: readers take it as "the record is complete"
        })  # fmt: skip

    def _known_version(self, name: str, version: str) -> str | None:
        """Why ``name`` version ``version`` cannot be acted on (unknown model or version), else ``None``."""
        from shared.errors import ModelNotFoundError

        try:
            self.registry.resolve(f"models:/{name}/{version}")
        except ModelNotFoundError:
            return f"model {name!r} has no version {version!r} in the registry"
        return None

    def _decision_of(self, name: str, version: str) -> Any:
        """The ledger's decision record of one version (whatever its key), if any; filtered by status, so the
        table is not scanned for every scored file. The record under the registry's identity of the version
        comes first: a model deleted and re-created has the old version's record too."""
        from shared.errors import ModelNotFoundError

        try:
            record = self.ledger.get(self.registration_key(name, version))
        except ModelNotFoundError:
            record = None
        if record is not None and "action" in record.details:
            return record
        for status in ("hold", "promote", "reject"):
            for record in self.ledger.records(status):
                details = record.details
                if details.get("model") == name and str(details.get("version")) == version and "action" in details:
                    return record
        return None

    def approve(self, approval: Any, *, by: str | None = None, reason: str | None = None) -> DeploymentOutcome:
        """A person approved a held version: promote it, once, unless a newer champion exists. The approval is
        recorded in the ledger (``approval:NAME/VERSION``) and on the version's tags, with who, when and why.
        A second approval changes nothing (``duplicate``); an unknown model or version is ``refused``, a
        version that is not held ``ignored`` (both with a message).

        Example:
            >>> flow.approve(ApprovalGranted("churn", "4", "cli"), by="ops", reason="checked").status  # doctest: +SKIP
            'promote'
        """
        from datetime import UTC, datetime

        name, version = approval.name, str(approval.version)
        key = f"approval:{name}/{version}"
        problem = self._known_version(name, version)
        if problem:
            return DeploymentOutcome("refused", key, message=problem)
        done = self.ledger.get(key)
        if done is not None and done.status != "claimed":
            return DeploymentOutcome("duplicate", key, None, self.registry.alias_version(name, "champion"),
                                     f"version {version} of {name} was approved already ({done.details.get('at')})")  # fmt: skip
        held = self._decision_of(name, version)
        if held is None or held.status != "hold":
            status = held.status if held is not None else "not decided yet"
            return DeploymentOutcome("ignored", key, message=f"version {version} of {name} is not held for approval ({status})")
        by = by or f"mlflow-tag:{approval.delivery_id}"
        claim = self.ledger.claim(key, self.owner, self.claim_ttl_seconds, {"delivery_id": approval.delivery_id})
        if claim is None:
            return DeploymentOutcome("duplicate", key, message=f"version {version} of {name} is being approved")
        before = self.registry.alias_version(name, "champion")
        champion = self._promote(name, version, before)
        promoted = champion == version
        at = datetime.now(UTC).isoformat()
        correlation = held.details.get("correlation_id")  # the drift report the held version came from
        record = {"model": name, "version": version, "approved_by": by, "reason": reason, "at": at,
                  "champion_before": before, "champion_after": champion, "correlation_id": correlation}  # fmt: skip
        self.ledger.finish(claim, "promote" if promoted else "reject", record)
        self.registry.set_tags(name, version, {
            "scorehook.approved": "true", "scorehook.approved_at": at, "scorehook.approved_by": by,
            "scorehook.approval_reason": reason or "",
            "scorehook.decision": "promote" if promoted else "reject",
        })  # fmt: skip
        if promoted:
            if before != version:
                self._champion_changed(name, version, "approve", before, by=by, reason=reason)
            self.publisher.publish("Scorehook.Model.Promoted", f"models/{name}:{version}",
                                   {"model_name": name, "version": version, "approved": True, "approved_by": by,
                                    "correlation_id": correlation})  # fmt: skip
            return DeploymentOutcome("promote", key, None, champion, f"version {version} of {name} is the champion")
        return DeploymentOutcome("reject", key, None, champion,
                                 f"approved, but version {champion} is newer and stays the champion")  # fmt: skip

    def rollback(
        self, name: str, to: str | None = None, *, reason: str | None = None, by: str | None = None
    ) -> DeploymentOutcome:
        """Make an earlier champion the champion again: ``to``, or the newest earlier one not rolled back.

        Idempotent: running it again changes nothing (``unchanged``) — without ``to`` once the current champion
        came from a rollback, with ``to`` once ``to`` is the champion. The change is recorded once in the ledger
        (``champion:...`` with ``how: rollback``, claimed per champion reign) and on both versions' tags, with
        when and why, and the rolled-back version no longer counts among the recent champions of the policy.
        An unknown model or version, or a version that never was champion, is ``refused`` with a message.

        Example:
            >>> flow.rollback("churn", reason="bad latency").champion   # doctest: +SKIP
            '2'
        """
        from datetime import UTC, datetime

        current = self.registry.alias_version(name, "champion")
        if current is None:
            return DeploymentOutcome("refused", f"rollback:{name}",
                                     message=f"model {name!r} is unknown or has no champion: nothing to roll back")  # fmt: skip
        records = self._champion_records(name)
        reign = records[-1] if records and str(records[-1].details.get("version")) == current else None
        history = self.champion_history(name)
        if to is None:
            if reign is not None and reign.details.get("how") == "rollback":
                return DeploymentOutcome("unchanged", f"rollback:{name}", None, current,
                                         f"version {current} is the champion since the rollback from version "
                                         f"{reign.details.get('from')} at {reign.details.get('at')}; "
                                         "use --to VERSION to go further back")  # fmt: skip
            earlier = [v for v in history if v != current]
            if not earlier:
                return DeploymentOutcome("refused", f"rollback:{name}", None, current,
                                         f"model {name!r} has no earlier champion than version {current}")  # fmt: skip
            target = earlier[0]
        else:
            target = str(to)
            problem = self._known_version(name, target)
            if problem:
                return DeploymentOutcome("refused", f"rollback:{name}", None, current, problem)
            if target == current:
                return DeploymentOutcome("unchanged", f"rollback:{name}", None, current,
                                         f"version {target} is the champion already")  # fmt: skip
            was_champion = {str(r.details.get("version")) for r in records} | set(history)
            if target not in was_champion:
                return DeploymentOutcome("refused", f"rollback:{name}", None, current,
                                         f"version {target} of {name} never was the champion: approve it instead")  # fmt: skip
        key = f"rollback:{name}/{reign.key if reign is not None else current}"
        claim = self.ledger.claim(key, self.owner, self.claim_ttl_seconds, {"model": name, "from": current})
        if claim is None:
            return DeploymentOutcome("unchanged", key, None, self.registry.alias_version(name, "champion"),
                                     f"version {current} was rolled back already")  # fmt: skip
        try:
            self.registry.set_alias(name, "champion", target)
            if self.registry.alias_version(name, "previous") in (None, target):
                self.registry.set_alias(name, "previous", current)
            by = by or "scorehook"
            at = datetime.now(UTC).isoformat()
            self.registry.set_tags(name, current, {"scorehook.rolled_back_at": at, "scorehook.rolled_back_to": target,
                                                   "scorehook.rolled_back_reason": reason or ""})  # fmt: skip
            change = self._champion_changed(name, target, "rollback", current, by=by, reason=reason)
        except BaseException:
            self.ledger.release(claim)
            raise
        self.ledger.finish(claim, "rolled_back", change)
        self.publisher.publish("Scorehook.Model.Promoted", f"models/{name}:{target}",
                               {"model_name": name, "version": target, "rollback_from": current, "reason": reason})  # fmt: skip
        return DeploymentOutcome("promote", key, None, target, f"version {target} of {name} is the champion again "
                                 f"(rolled back from version {current})")  # fmt: skip


def _evaluation(decision: Decision, history: Mapping[str, Any]) -> dict[str, Any]:
    """One evaluation data set's part of a decision record."""
    return {"action": decision.action, "reasons": list(decision.reasons), "challenger": dict(decision.challenger),
            "champion": dict(decision.champion) if decision.champion is not None else None,
            "earlier_champions": {v: dict(m) for v, m in history.items()},
            "bar": dict(decision.bar) if decision.bar is not None else None}  # fmt: skip


def _newer(a: str, b: str) -> bool:
    """Whether version ``a`` is newer than version ``b`` (registry versions are integers)."""
    try:
        return int(a) > int(b)
    except ValueError:
        return False
