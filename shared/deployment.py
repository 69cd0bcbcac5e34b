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

__all__ = [
    "Decision",
    "DeploymentPolicy",
    "Validation",
    "columns_of",
    "decide",
    "evaluate",
    "validate_candidate",
]

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

    def to_record(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reasons": list(self.reasons),
            "challenger_metrics": dict(self.challenger),
            "champion_metrics": dict(self.champion) if self.champion is not None else None,
            "validation": dict(self.validation),
            "rollout": dict(self.rollout) if self.rollout is not None else None,
        }


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


def decide(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    validation: Validation,
    policy: DeploymentPolicy,
) -> Decision:
    """Apply the policy: reject on failed validation or a regression, hold when approval is required."""
    record = {"ok": validation.ok, "reasons": validation.reasons, "p95_ms": validation.p95_ms,
              "reason": validation.reason}  # fmt: skip
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


@dataclass
class DeploymentOutcome:
    """What the flow did with one registration (or approval, or rollback)."""

    status: str  # "promote" | "hold" | "reject" | "duplicate"
    key: str
    decision: Decision | None = None
    champion: str | None = None  # the champion version afterwards


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
    ) -> None:
        self.rollout = (
            rollout  # (name, version, champion) -> RolloutResult, when an online endpoint serves the model
        )
        self.registry, self.models, self.ledger, self.publisher = registry, models, ledger, publisher
        self.evaluation_data, self.policy, self.label = evaluation_data, policy or DeploymentPolicy(), label
        self.claim_ttl_seconds, self.owner = claim_ttl_seconds, owner

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

        from shared.errors import AlreadyClaimedError, ModelError, ModelNotFoundError
        from shared.logs import bind, get_logger

        with bind(
            model=registration.name, model_version=registration.version, event_id=registration.delivery_id
        ):
            try:
                found = self.registry.resolve(f"models:/{registration.name}/{registration.version}")
            except ModelNotFoundError as exc:  # not registered (yet): not final, a later delivery decides
                get_logger("deployment").warning("registration ignored: the registry has no such version", extra={
                    "reason": exc.reason, "error": exc.message, "delivery_id": registration.delivery_id,
                    "origin": registration.origin,
                })  # fmt: skip
                return DeploymentOutcome("ignored", registration.idempotency_key)
            registration = replace(registration, identity=found.identity or registration.identity)
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
                    champion = self._promote(registration.name, registration.version, champion)
                self._record(registration, claim, decision)
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
        data = self.evaluation_data()
        example = data.slice(0, 20).combine_chunks().to_batches()[0]
        try:
            _, candidate = self.models.get(f"models:/{registration.name}/{registration.version}")
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
        challenger_metrics = evaluate(candidate, data, self.label)
        champion_metrics = evaluate(incumbent, data, self.label) if incumbent else None
        return decide(challenger_metrics, champion_metrics, validation, self.policy)

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
            "identity": registration.identity,
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
                {"model_name": registration.name, "version": registration.version, **decision.to_record()},
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
            "scorehook.decision": decision.action,  # last: readers take it as "the record is complete"
        })  # fmt: skip

    def approve(self, approval: Any) -> DeploymentOutcome:
        """A person approved a held version: promote it (once), unless a newer champion exists."""
        key = f"approval:{approval.name}/{approval.version}"
        from shared.errors import ModelNotFoundError

        try:
            held = self.ledger.get(self.registration_key(approval.name, approval.version))
        except ModelNotFoundError:
            held = None
        if held is None or held.status != "hold":
            return DeploymentOutcome("ignored", key)
        claim = self.ledger.claim(
            key, self.owner, self.claim_ttl_seconds, {"delivery_id": approval.delivery_id}
        )
        if claim is None:
            return DeploymentOutcome("duplicate", key)
        before = self.registry.alias_version(approval.name, "champion")
        champion = self._promote(approval.name, approval.version, before)
        promoted = champion == approval.version
        self.ledger.finish(claim, "promote" if promoted else "reject", {"approved_by": approval.delivery_id})
        self.registry.set_tags(approval.name, approval.version, {"scorehook.decision": "promote" if promoted else "reject",
                                                                  "scorehook.approved": "true"})  # fmt: skip
        if promoted:
            self.publisher.publish("Scorehook.Model.Promoted", f"models/{approval.name}:{approval.version}",
                                   {"model_name": approval.name, "version": approval.version, "approved": True})  # fmt: skip
        return DeploymentOutcome("promote" if promoted else "reject", key, None, champion)

    def rollback(self, name: str) -> DeploymentOutcome:
        """Make the previous champion the champion again (and the current one ``previous``)."""
        from shared.errors import ModelNotFoundError

        previous = self.registry.alias_version(name, "previous")
        current = self.registry.alias_version(name, "champion")
        if previous is None:
            raise ModelNotFoundError(f"model {name!r} has no previous champion to roll back to", model=name)
        self.registry.set_alias(name, "champion", previous)
        if current is not None:
            self.registry.set_alias(name, "previous", current)
        self.publisher.publish("Scorehook.Model.Promoted", f"models/{name}:{previous}",
                               {"model_name": name, "version": previous, "rollback_from": current})  # fmt: skip
        return DeploymentOutcome("promote", f"rollback:{name}", None, previous)


def _newer(a: str, b: str) -> bool:
    """Whether version ``a`` is newer than version ``b`` (registry versions are integers)."""
    try:
        return int(a) > int(b)
    except ValueError:
        return False
