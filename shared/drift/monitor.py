"""The drift use case: profile while scoring, evaluate windows, and launch one retraining per drift wave.

Scoring asks :meth:`DriftMonitor.observer` for a :class:`ProfileObserver` (a blank profile in the
baseline's layout, updated on a worker thread beside scoring) and hands it back to :meth:`DriftMonitor.record`
once the output is committed: the file's profile is merged into its window (by event time) exactly once.

A timer calls :meth:`DriftMonitor.evaluate_due`: every recent window that changed since its last report is
compared with the baseline (``shared.drift.evaluate``); the report is stored, logged and published
(``Scorehook.Drift.Evaluated``, plus ``Scorehook.Drift.Detected`` when drifted). A drifted window, or an
external signal (Azure ML monitor breach, legacy dataset drift), asks for a retraining:

* dedupe: one retraining per decision id (``model/version/window`` or the signal's id), a ledger claim;
* cooldown: none for the same model within ``cooldown_seconds`` of the last one (a ledger claim that
  expires), so one drift wave spanning several windows gives one retraining;
* the :class:`~shared.ports.Retrainer` submits it and returns; the new version arrives through the
  registry events and the deployment flow decides.

Baselines: the ``baseline/drift-profile.json`` artifact of the version's training run; for versions
without one, a baseline computed once from the reference dataset (features as the model reads them,
predictions from the model) and kept in the drift container.

Example:
    >>> monitor.evaluate_due()                      # doctest: +SKIP
    [{'decision': 'drift', 'model': 'scorehook-sample', 'action': {'status': 'launched', ...}, ...}]
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.drift.evaluate import PREDICTION_FEATURES, DriftPolicy, compare
from shared.drift.profile import Profile, row_keys
from shared.drift.store import ProfileStore, Window, window_of
from shared.errors import InputError, ModelNotFoundError, TransientError
from shared.logs import bind, get_logger
from shared.ports import (
    EventPublisher,
    Ledger,
    ModelRegistry,
    ModelVersion,
    Retrainer,
    RetrainFinished,
    RetrainRequest,
)

__all__ = [
    "BASELINE_ARTIFACT",
    "DriftMonitor",
    "NoBaselineError",
    "ProfileObserver",
    "UnmappedSignalError",
    "baseline_from_reference",
]

log = get_logger("scorehook.drift")
BASELINE_ARTIFACT = "baseline/drift-profile.json"
_OWNER = "drift-monitor"


class NoBaselineError(InputError):
    """A model version has no baseline profile and no reference dataset is configured to compute one."""

    reason = "no_baseline"


class UnmappedSignalError(InputError):
    """An external drift signal names no model this app serves."""

    reason = "unmapped_signal"


class ProfileObserver:
    """Adds scored batches to a profile on a worker thread, beside scoring; errors never fail scoring.

    Rows are identified by the profile's key column when the file has it, else by position (salted with
    the input's identity), so a redelivered file profiles the same way.

    Example:
        >>> import pyarrow as pa
        >>> from shared.drift.profile import FeatureSpec
        >>> obs = ProfileObserver(Profile([FeatureSpec("x", "numeric", (0.0, 1.0))]), salt="file-1")
        >>> obs(pa.record_batch({"x": [0.2, 0.7]}), None); obs.close().rows
        2
    """

    def __init__(self, profile: Profile, salt: str) -> None:
        self.profile, self.salt = profile, salt
        self.error: BaseException | None = None
        self._inputs = self._outputs = 0
        self._stopped = False
        self._queue: queue.Queue[tuple[Any, Any] | None] = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._run, name="drift-profile", daemon=True)
        self._thread.start()

    def __call__(self, inputs: Any, outputs: Any | None) -> None:
        """Queue one raw input batch and its scored output batch (None when every row was rejected)."""
        if self.error is None:
            self._queue.put((inputs, outputs))

    def _keys(self, batch: Any, offset: int) -> Any:
        if self.profile.key in batch.schema.names:
            return row_keys(batch.column(self.profile.key))
        return row_keys(offset=offset, rows=batch.num_rows, salt=self.salt)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self.error is not None:
                continue
            inputs, outputs = item
            try:
                keys = self._keys(inputs, self._inputs)
                self.profile.update(inputs, keys=keys)
                self._inputs += inputs.num_rows
                if outputs is not None:
                    names = [n for n in outputs.schema.names if n in PREDICTION_FEATURES]
                    same_rows = outputs.num_rows == inputs.num_rows  # nothing rejected: the same rows
                    out_keys = keys if same_rows else self._keys(outputs, self._outputs)
                    self.profile.update(outputs.select(names), keys=out_keys)
                    self._outputs += outputs.num_rows
            except Exception as exc:  # monitoring must not fail scoring; close() reports it
                self.error = exc

    def stop(self) -> None:
        """Let the worker finish the queued batches and end (idempotent)."""
        if not self._stopped:
            self._stopped = True
            self._queue.put(None)
        self._thread.join()

    def close(self) -> Profile:
        """Wait for the queued batches; returns the profile (raises what the worker raised)."""
        self.stop()
        if self.error is not None:
            raise self.error
        return self.profile


def baseline_from_reference(table: Any, model: Any) -> dict[str, Any]:
    """A baseline artifact from a reference table: the model's inputs (strings categorical, others numeric)
    and its predictions on the table.

    Example:
        >>> baseline_from_reference(holdout_table, onnx_model)["format"]   # doctest: +SKIP
        'scorehook.profile'
    """
    import pyarrow as pa

    inputs = [i for i in model.inputs if i.name in table.column_names]
    if not inputs:
        raise NoBaselineError("the reference dataset has none of the model's input columns")
    features = table.select([i.name for i in inputs])
    predicted = model.predict(features.combine_chunks().to_batches()[0] if features.num_rows else features)
    columns = {name: features.column(name) for name in features.column_names}
    if "probability" in predicted:
        columns["probability"] = pa.array(predicted["probability"], pa.float64())
    columns["prediction"] = pa.array(predicted["prediction"]).cast(pa.string())
    numeric = [i.name for i in inputs if not i.is_string] + (
        ["probability"] if "probability" in columns else []
    )
    categorical = [i.name for i in inputs if i.is_string] + ["prediction"]
    profile = Profile.baseline(pa.table(columns), numeric=numeric, categorical=categorical)
    return {**profile.to_json(), "source": "reference"}


class DriftMonitor:
    """Profiles, evaluations and retraining decisions; every dependency is a port (see the module docstring)."""

    def __init__(
        self,
        *,
        store: ProfileStore,
        registry: ModelRegistry,
        ledger: Ledger,
        publisher: EventPublisher,
        policy: DriftPolicy,
        window_seconds: int = 3600,
        cooldown_seconds: float = 86400,
        lookback_windows: int = 2,
        retrainer: Retrainer | None = None,
        reference: Callable[[], Any] | None = None,
        load_model: Callable[[ModelVersion], Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.registry, self.ledger, self.publisher = store, registry, ledger, publisher
        self.policy, self.window_seconds, self.cooldown_seconds = policy, window_seconds, cooldown_seconds
        self.lookback_windows, self.retrainer, self.reference = lookback_windows, retrainer, reference
        self.load_model, self.clock = load_model, clock
        self._baselines: dict[tuple[str, str], tuple[Profile, dict[str, float] | None]] = {}
        self._lock = threading.Lock()

    # -- baselines ----------------------------------------------------------------------------
    def baseline(self, version: ModelVersion, model: Any = None) -> tuple[Profile, dict[str, float] | None]:
        """The version's baseline profile and feature importance (cached per process)."""
        key = (version.name, version.version)
        with self._lock:
            if key in self._baselines:
                return self._baselines[key]
        raw = self.registry.read_artifact(version, BASELINE_ARTIFACT)
        try:
            artifact = json.loads(raw) if raw else self.store.baseline(*key)
        except ValueError as exc:
            raise NoBaselineError(
                f"{version.uri}: {BASELINE_ARTIFACT} is not JSON: {exc}", model=version.uri
            ) from exc
        if artifact is None:
            if self.reference is None:
                raise NoBaselineError(
                    f"{version.uri} has no {BASELINE_ARTIFACT} and SCOREHOOK_DRIFT_REFERENCE_DATA is not set",
                    model=version.uri,
                )
            if model is None and self.load_model is not None:
                model = self.load_model(version)
            if model is None:
                raise NoBaselineError(f"{version.uri}: cannot compute a baseline without the model")
            artifact = baseline_from_reference(self.reference(), model)
            self.store.save_baseline(*key, artifact)
            log.info("baseline computed from the reference dataset", extra={"model": version.uri})
        try:
            result = (Profile.from_json(artifact), artifact.get("importance"))
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise NoBaselineError(
                f"{version.uri}: the baseline is not a drift profile ({type(exc).__name__}: {exc})",
                model=version.uri,
            ) from exc
        with self._lock:
            self._baselines[key] = result
        return result

    # -- while scoring ------------------------------------------------------------------------
    def observer(self, version: ModelVersion, model: Any, salt: str) -> ProfileObserver:
        """A profile observer for one file scored by ``version`` (raises ``NoBaselineError``)."""
        baseline, _ = self.baseline(version, model)
        return ProfileObserver(baseline.blank(model_version=version.version), salt)

    def record(
        self, version: ModelVersion, when: datetime, observer: ProfileObserver, part_id: str, input_url: str
    ) -> tuple[Window, Window | None]:
        """Merge one scored file's profile into its window, once per ``part_id``; returns the window and,
        when this file opened it, the previous window (now closed: time to evaluate it once more)."""
        window = window_of(when, self.window_seconds)
        _, opened = self.store.add_part(
            version.name, version.version, window, observer.close(), part_id, input_url
        )
        previous = window_of(window.start - timedelta(seconds=1), self.window_seconds) if opened else None
        return window, previous

    def evaluate_closed(self, model: str, version: str, key: str) -> dict[str, Any] | None:
        """Evaluate a window that just closed, unless its latest report already covers its data."""
        etag = self.store.window_etag(model, version, key)
        if etag is None:
            return None
        last = self.store.report(model, version, key)
        if last is not None and last.get("source_etag") == etag:
            return last
        return self.evaluate(model, version, key)

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate_due(self) -> list[dict[str, Any]]:
        """Evaluate every recent window that changed since its last report (the timer's work)."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        oldest = now - timedelta(seconds=self.window_seconds * (self.lookback_windows + 1))
        reports = []
        for stored in self.store.windows():
            window = Window.from_key(stored.key, self.window_seconds)
            if window.end <= oldest:
                continue
            last = self.store.report(stored.model, stored.version, stored.key)
            if last is not None and last.get("source_etag") == stored.etag:
                continue
            try:
                reports.append(self.evaluate(stored.model, stored.version, stored.key))
            except InputError as exc:
                log.warning("drift window not evaluated", extra={**exc.log_fields(), "window": stored.key})
        return reports

    def evaluate(self, model: str, version: str, key: str) -> dict[str, Any]:
        """Evaluate one window now: report stored, logged and published; a retraining asked on drift."""
        with bind(model=model, model_version=version, window=key):
            found = self.store.window(model, version, key)
            if found is None:
                raise InputError(f"no drift window {model}/{version}/{key}", reason="no_window")
            profile, inputs, etag = found
            model_version = self.registry.resolve(f"models:/{model}/{version}")
            baseline, importance = self.baseline(model_version)
            report = compare(baseline, profile, self.policy, importance=importance, model=model)
            doc = report.to_json() | {
                "evaluated_at": datetime.fromtimestamp(self.clock(), UTC).isoformat(),
                "inputs": len(inputs),
            }
            name = self.store.save_report(model, version, key, doc)  # without source_etag: not final yet
            doc["report"] = (
                self.store.blobs.properties(self.store.container, name).url
                or f"{self.store.container}/{name}"
            )
            if report.drifted:
                doc["action"] = self.request_retraining(
                    model_version, f"{model}/{version}/{key}", "drift", inputs, doc["report"]
                )
            doc["source_etag"] = etag  # the window counts as evaluated once the action is recorded
            self.store.save_report(model, version, key, doc)
            summary = {
                k: doc[k] for k in ("model", "model_version", "window", "rows", "decision", "drifted_share",
                                    "prediction_drift", "drifted_features", "reasons", "report")
            }  # fmt: skip
            if "action" in doc:
                summary["action"] = doc["action"]
            log.info("drift evaluated", extra=summary)
            subject = f"models/{model}/versions/{version}/windows/{key}"
            self._publish("Scorehook.Drift.Evaluated", subject, summary)
            if report.drifted:
                self._publish("Scorehook.Drift.Detected", subject, summary)
            return doc

    # -- external signals ---------------------------------------------------------------------
    def handle_signal(self, signal: Any) -> dict[str, Any]:
        """An external drift signal (``shared.drift.signals.DriftSignal``) enters the same decision."""
        if signal.model is None:
            raise UnmappedSignalError(
                f"drift signal {signal.signal_id} (monitor {signal.monitor!r}) maps to no model: "
                "set SCOREHOOK_DRIFT_MONITOR_MODELS",
                signal=signal.signal_id,
            )
        with bind(model=signal.model, signal=signal.signal_id):
            champion = self.registry.alias_version(signal.model, "champion")
            if champion is None:
                raise ModelNotFoundError(f"{signal.model} has no champion to retrain", model=signal.model)
            version = self.registry.resolve(f"models:/{signal.model}/{champion}")
            recent = sorted(
                (w for w in self.store.windows(signal.model) if w.version == champion), key=lambda w: w.key
            )
            found = self.store.window(signal.model, champion, recent[-1].key) if recent else None
            inputs = found[1] if found else []
            summary = {
                "model": signal.model, "model_version": champion, "source": signal.source,
                "signal": signal.signal_id, "monitor": signal.monitor, "signal_message": signal.message,
                "breaches": list(signal.breaches), "drift_coefficient": signal.drift_coefficient,
            }  # fmt: skip
            summary["action"] = self.request_retraining(
                version, signal.signal_id, signal.source, inputs, None
            )
            log.info("external drift signal", extra=summary)
            self._publish(
                "Scorehook.Drift.Detected", f"models/{signal.model}/signals/{signal.signal_id}", summary
            )
            return summary

    # -- retraining ---------------------------------------------------------------------------
    def request_retraining(
        self, version: ModelVersion, decision_id: str, reason: str, inputs: list[str], report: str | None
    ) -> dict[str, Any]:
        """Launch one retraining for ``decision_id`` unless deduplicated or cooling down; the outcome."""
        if self.retrainer is None:
            return {"status": "not_configured", "why": "SCOREHOOK_RETRAIN_LAUNCHER is none"}
        claim = self.ledger.claim(f"retrain:{decision_id}", _OWNER, 900, {"model": version.uri})
        if claim is None:
            existing = self.ledger.get(f"retrain:{decision_id}")
            return {"status": "duplicate", "decision_id": decision_id,
                    "existing": dict(existing.details) if existing else {}}  # fmt: skip
        cooldown = self.ledger.claim(
            f"retrain-cooldown:{version.name}", _OWNER, self.cooldown_seconds, {"decision_id": decision_id}
        )
        if cooldown is None:
            last = self.ledger.get(f"retrain-cooldown:{version.name}")
            outcome = {"status": "cooldown", "decision_id": decision_id,
                       "last_decision": last.details.get("decision_id") if last else None,
                       "until": last.expires_at if last else None}  # fmt: skip
            self.ledger.finish(claim, "skipped", outcome)
            return outcome
        request = RetrainRequest(
            model=version.name, model_version=version.version, decision_id=decision_id, reason=reason,
            inputs=tuple(inputs), report=report,
        )  # fmt: skip
        try:
            run = self.retrainer.launch(request)
        except TransientError:
            self.ledger.release(cooldown)
            self.ledger.release(claim)
            raise
        except InputError as exc:
            self.ledger.release(cooldown)
            self.ledger.finish(claim, "failed", exc.to_record())
            return {"status": "failed", "decision_id": decision_id, **exc.to_record()}
        outcome = {"status": "launched", "decision_id": decision_id, "run_id": run.run_id,
                   "launcher": run.launcher, "inputs": len(inputs), **dict(run.details)}  # fmt: skip
        self.ledger.finish(claim, "succeeded", outcome)
        log.info("retraining launched", extra=outcome)
        self._publish(
            "Scorehook.Retraining.Started", f"models/{version.name}/versions/{version.version}",
            {"model": version.name, "model_version": version.version, "reason": reason, **outcome},
        )  # fmt: skip
        return outcome

    def retraining_finished(self, finished: RetrainFinished) -> dict[str, Any]:
        """Record how a retraining ended (once per run). A failed one lifts the model's cooldown, so the
        next drifted window may try again; a successful one leaves the rest to the registry event."""
        outcome = {"decision_id": finished.decision_id, "model": finished.model, "run_id": finished.run_id,
                   "status": finished.status, **dict(finished.details)}  # fmt: skip
        claim = self.ledger.claim(f"retrain-run:{finished.run_id}", _OWNER, 900, outcome)
        if claim is None:
            return {**outcome, "duplicate": True}
        self.ledger.finish(claim, finished.status, outcome)
        with bind(model=finished.model, decision_id=finished.decision_id):
            if finished.status == "failed":
                self.ledger.forget(f"retrain-cooldown:{finished.model}")
                log.warning("retraining failed: cooldown lifted", extra=outcome)
                self._publish("Scorehook.Retraining.Failed", f"models/{finished.model}", outcome)
            else:
                log.info("retraining finished", extra=outcome)
                self._publish("Scorehook.Retraining.Completed", f"models/{finished.model}", outcome)
        return outcome

    def _publish(self, event_type: str, subject: str, data: Mapping[str, Any]) -> None:
        try:
            self.publisher.publish(event_type, subject, data)
        except TransientError as exc:
            log.warning("event not published", extra={"event_type": event_type, **exc.log_fields()})
