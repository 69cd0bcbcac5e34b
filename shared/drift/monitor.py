"""The drift use case: profile while scoring, evaluate windows, and launch one retraining per drift wave.

Scoring asks :meth:`DriftMonitor.observer` for a :class:`ProfileObserver` (a blank profile in the
baseline's layout, updated on a worker thread beside scoring) and hands it back to :meth:`DriftMonitor.record`
once every row is scored, while the output commits (before the ledger says done): the file's profile is written as its own immutable part of its window (by
event time), named by the input's idempotency key, so a redelivery adds nothing. No shared blob is
read-modify-written while scoring (see ``shared.drift.store``).

A timer calls :meth:`DriftMonitor.evaluate_due` (and the window-closed message
:meth:`DriftMonitor.evaluate_closed`): every recent window is compacted (its new parts merged into one
document), and a window whose compacted state its last report does not cover is compared with the baseline
(``shared.drift.evaluate``); the report is stored, logged and published (``Scorehook.Drift.Evaluated``).
``Scorehook.Drift.Detected`` goes out once per drift wave of a model version (a wave: consecutive drifted
evaluations; a ``no_drift`` one ends it). A drifted window, or an external signal (Azure ML monitor breach,
legacy dataset drift), asks for a retraining:

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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import tenacity

from shared.drift.evaluate import PREDICTION_FEATURES, DriftPolicy, compare
from shared.drift.profile import Profile, row_keys
from shared.drift.store import MAX_ATTEMPTS, CompactedWindow, ProfileStore, Window, window_of
from shared.errors import InputError, ModelNotFoundError, ScorehookError, TransientError, WriteConflictError
from shared.logs import bind, get_logger
from shared.names import normalize_etag
from shared.ports import (
    CORRELATION_TAG,
    TRACEPARENT_TAG,
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
    "RecordedProfile",
    "UnmappedSignalError",
    "baseline_from_reference",
]

log = get_logger("scorehook.drift")
BASELINE_ARTIFACT = "baseline/drift-profile.json"
WAVE_CLAIM_SECONDS = 120.0
"""A wave start whose ``.Detected`` was not confirmed within this long is announced by the next evaluation."""
_OWNER = "drift-monitor"


@dataclass(frozen=True)
class RecordedProfile:
    """What :meth:`DriftMonitor.record` did with one scored file's profile.

    ``status``: ``recorded`` (its part written now), ``already_recorded`` (an earlier attempt wrote it) or
    ``missing`` (not written: ``reason`` says why; counted in the window's ``inputs_missing_profiles``).
    ``closed``: the previous window, when this file opened ``window``.
    """

    window: Window
    closed: Window | None
    status: str
    reason: str | None = None


def _covers(report: Mapping[str, Any] | None, state: CompactedWindow) -> bool:
    """Whether a stored report was made from exactly this compacted state (eTags in one form)."""
    return report is not None and bool(state.etag) and normalize_etag(report.get("source_etag")) == state.etag


def _fields(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ScorehookError):
        return {k: v for k, v in exc.log_fields().items() if k != "blob"}
    return {"error_type": type(exc).__name__, "error": str(exc)[:1000]}


class NoBaselineError(InputError):
    """A model version has no baseline profile and no reference dataset is configured to compute one."""

    reason = "no_baseline"


class UnmappedSignalError(InputError):
    """An external drift signal names no model this app serves."""

    reason = "unmapped_signal"


INLINE_ROWS = 20_000
"""A file's first rows up to this many are profiled in the scoring thread itself; beyond, on a worker."""


class ProfileObserver:
    """Adds scored batches to a profile; errors never fail scoring. A small file's batches are added where
    they are scored (a thread of its own cost a small file more in hand-offs than its profile costs); once
    the file passes ``INLINE_ROWS`` rows the rest go to a worker thread, beside scoring.

    Rows are identified by the profile's key column when the file has it, else by position (salted with
    the input's identity), so a redelivered file profiles the same way.

    Example:
        >>> import pyarrow as pa
        >>> from shared.drift.profile import FeatureSpec
        >>> obs = ProfileObserver(Profile([FeatureSpec("x", "numeric", (0.0, 1.0))]), salt="file-1")
        >>> obs(pa.record_batch({"x": [0.2, 0.7]}), None); obs.close().rows
        2
    """

    def __init__(self, profile: Profile, salt: str, inline_rows: int = INLINE_ROWS) -> None:
        self.profile, self.salt, self.inline_rows = profile, salt, inline_rows
        self.error: BaseException | None = None
        self._inputs = self._outputs = 0
        self._stopped = False
        self._queue: queue.Queue[tuple[Any, Any] | None] = queue.Queue(maxsize=8)
        self._thread: threading.Thread | None = None

    def __call__(self, inputs: Any, outputs: Any | None) -> None:
        """Add (or queue) one raw input batch and its scored output batch (None when every row was rejected)."""
        if self.error is not None:
            return
        if self._thread is None:
            if self._inputs + inputs.num_rows <= self.inline_rows:
                self._add(inputs, outputs)
                return
            self._thread = threading.Thread(target=self._run, name="drift-profile", daemon=True)
            self._thread.start()
        self._queue.put((inputs, outputs))

    def _keys(self, batch: Any, offset: int) -> Any:
        if not self.profile.sample_size:  # rows need identities only to be sampled
            return None
        if self.profile.key in batch.schema.names:
            return row_keys(batch.column(self.profile.key))
        return row_keys(offset=offset, rows=batch.num_rows, salt=self.salt)

    def _add(self, inputs: Any, outputs: Any | None) -> None:
        try:
            keys = self._keys(inputs, self._inputs)
            names = [] if outputs is None else [n for n in outputs.schema.names if n in PREDICTION_FEATURES]
            same_rows = outputs is not None and outputs.num_rows == inputs.num_rows  # nothing rejected
            # the same rows: one update of the inputs and the predictions (their numeric features counted together)
            together = bool(names) and same_rows and not set(names) & set(inputs.schema.names)
            batch = inputs
            if together:
                import pyarrow as pa

                batch = pa.RecordBatch.from_arrays(
                    [*inputs.columns, *(outputs.column(n) for n in names)], [*inputs.schema.names, *names]
                )
            self.profile.update(batch, keys=keys)
            self._inputs += inputs.num_rows
            if outputs is not None:
                if names and not together:
                    out_keys = keys if same_rows else self._keys(outputs, self._outputs)
                    self.profile.update(outputs.select(names), keys=out_keys)
                self._outputs += outputs.num_rows
        except Exception as exc:  # monitoring must not fail scoring; close() reports it
            self.error = exc

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self.error is None:
                self._add(*item)

    def stop(self) -> None:
        """Let the worker (if one started) finish the queued batches and end (idempotent)."""
        if not self._stopped:
            self._stopped = True
            if self._thread is not None:
                self._queue.put(None)
        if self._thread is not None:
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
        part_attempts: int = 4,
        part_retry_seconds: float = 0.1,
    ) -> None:
        self.store, self.registry, self.ledger, self.publisher = store, registry, ledger, publisher
        self.policy, self.window_seconds, self.cooldown_seconds = policy, window_seconds, cooldown_seconds
        self.lookback_windows, self.retrainer, self.reference = lookback_windows, retrainer, reference
        self.load_model, self.clock = load_model, clock
        self.part_attempts, self.part_retry_seconds = max(1, part_attempts), part_retry_seconds
        self._baselines: dict[tuple[str, str], tuple[Profile, dict[str, float] | None]] = {}
        self._opened: set[tuple[str, str, str]] = set()
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
        self, version: ModelVersion, when: datetime, observer: ProfileObserver, part_id: str, input_url: str,
        input_etag: str | None = None,
    ) -> RecordedProfile:  # fmt: skip
        """Write one scored file's profile as its own part of its window (once per ``part_id``: a redelivery
        writes nothing new), and open the window when this file is its first. Never raises: a profile that
        cannot be written (the observer failed, storage kept failing after bounded retries) is logged with the
        input's URL, eTag, reason and window, and leaves a ``missing/`` marker the report counts.

        Example:
            >>> monitor.record(version, event.time, observer, key, event.url, event.etag).status  # doctest: +SKIP
            'recorded'
        """
        window = window_of(when, self.window_seconds)
        model, number = version.name, version.version
        status, failure = "recorded", None
        try:
            written = self._write_part(
                model, number, window, observer.close(), part_id, input_url, input_etag
            )
            status = "recorded" if written else "already_recorded"
        except Exception as exc:  # monitoring never fails scoring: counted and logged below
            status, failure = "missing", exc
        reason = None
        if failure is not None:
            reason = str(getattr(failure, "reason", "unexpected_error"))
            where = {"input_url": input_url, "etag": normalize_etag(input_etag), "window": window.key,
                     "model": model, "model_version": number, "reason": reason,
                     "error_type": type(failure).__name__, "error": str(failure)[:1000]}  # fmt: skip
            try:
                where["marker"] = f"{self.store.container}/" + self.store.mark_missing(
                    model, number, window, part_id, input_url, input_etag, reason, str(failure)
                )
            except Exception as exc:  # the ledger record (drift_profile: missing) is the trace left
                where["marker_error"] = f"{type(exc).__name__}: {exc}"[:500]
            log.error("drift profile not recorded", extra=where)
        elif window.end.timestamp() <= self.clock() - self.window_seconds * (self.lookback_windows + 1):
            log.info("late input: its drift window is past the lookback and is no longer evaluated",
                     extra={"input_url": input_url, "window": window.key})  # fmt: skip
        return RecordedProfile(window, self._open(version, window, input_url), status, reason)

    def _write_part(
        self, model: str, version: str, window: Window, part: Profile, part_id: str, input_url: str,
        input_etag: str | None,
    ) -> bool:  # fmt: skip
        """The part written with bounded retries on transient storage errors (a conflict = already there)."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientError),
            stop=tenacity.stop_after_attempt(self.part_attempts),
            wait=tenacity.wait_exponential(multiplier=self.part_retry_seconds, max=2.0),
            reraise=True,
        )
        return bool(retrying(self.store.write_part, model, version, window, part, part_id, input_url, input_etag))

    def _open(self, version: ModelVersion, window: Window, input_url: str) -> Window | None:
        """The previous window when this file opened ``window`` (its ``opened`` marker created here), tried
        once per window per process; None otherwise (a failure is logged and tried again by the next file)."""
        key = (version.name, version.version, window.key)
        with self._lock:
            if key in self._opened:
                return None
        try:
            created = self.store.open_window(version.name, version.version, window, input_url)
        except Exception as exc:
            log.warning("drift window not marked open; the next file tries again",
                        extra={"input_url": input_url, "window": window.key, **_fields(exc)})  # fmt: skip
            return None
        with self._lock:
            if len(self._opened) > 10_000:
                self._opened.clear()
            self._opened.add(key)
        return window_of(window.start - timedelta(seconds=1), self.window_seconds) if created else None

    def evaluate_closed(self, model: str, version: str, key: str) -> dict[str, Any] | None:
        """Compact a window that just closed and evaluate it, unless its latest report already covers it
        (that report is returned); None when the window has no data."""
        with bind(model=model, model_version=version, window=key):
            state = self.store.compact(model, version, key, now=self.clock())
            if state is None or state.profile is None:
                return None
            last = self.store.report(model, version, key)
            if _covers(last, state):
                return last
            return self._evaluate(state)

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate_due(self) -> list[dict[str, Any]]:
        """Compact every recent window, and evaluate those whose compacted state the last report does not
        cover (the timer's work). An unchanged window costs two listings and a report read: nothing is
        written, evaluated or published again."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        oldest = now - timedelta(seconds=self.window_seconds * (self.lookback_windows + 1))
        last_visit = now - timedelta(seconds=self.window_seconds * self.lookback_windows)
        reports = []
        for stored in self.store.windows():
            window = Window.from_key(stored.key, self.window_seconds)
            if window.end <= oldest:
                continue
            with bind(model=stored.model, model_version=stored.version, window=stored.key):
                try:
                    state = self.store.compact(stored.model, stored.version, stored.key,
                                               final=window.end <= last_visit, now=self.clock())  # fmt: skip
                    if state is None or state.profile is None:
                        continue
                    if _covers(self.store.report(stored.model, stored.version, stored.key), state):
                        continue
                    reports.append(self._evaluate(state))
                except InputError as exc:
                    log.warning(
                        "drift window not evaluated", extra={**exc.log_fields(), "window": stored.key}
                    )
        return reports

    def evaluate(self, model: str, version: str, key: str) -> dict[str, Any]:
        """Compact and evaluate one window now, changed or not: report stored, logged and published."""
        with bind(model=model, model_version=version, window=key):
            state = self.store.compact(model, version, key, now=self.clock())
            if state is None or state.profile is None:
                raise InputError(f"no drift window {model}/{version}/{key}", reason="no_window")
            return self._evaluate(state)

    def _evaluate(self, state: CompactedWindow) -> dict[str, Any]:
        """Compare a compacted window with its baseline: report stored, logged, ``.Evaluated`` published,
        a retraining asked on drift, ``.Detected`` published when this evaluation starts a drift wave."""
        from shared.telemetry import record_drift, span

        model, version, key = state.model, state.version, state.key
        assert state.profile is not None
        correlation_id = f"{model}/{version}/{key}"  # the report's id, and the decision id of its retraining
        with bind(model=model, model_version=version, window=key, correlation_id=correlation_id), span(
            "drift evaluation", attributes={"model": model, "model_version": version, "window": key}
        ) as current:
            model_version = self.registry.resolve(f"models:/{model}/{version}")
            baseline, importance = self.baseline(model_version)
            report = compare(baseline, state.profile, self.policy, importance=importance, model=model)
            doc = report.to_json() | {
                "evaluated_at": datetime.fromtimestamp(self.clock(), UTC).isoformat(),
                "inputs": state.parts, "inputs_missing_profiles": state.inputs_missing_profiles,
                "correlation_id": correlation_id,
            }  # fmt: skip
            record_drift(doc)
            current.set_attribute("scorehook.decision", str(doc.get("decision")))
            name = self.store.save_report(model, version, key, doc)  # without source_etag: not final yet
            doc["report"] = (
                self.store.blobs.properties(self.store.container, name).url
                or f"{self.store.container}/{name}"
            )
            if report.drifted:
                doc["action"] = self.request_retraining(
                    model_version, correlation_id, "drift", state.inputs, doc["report"]
                )
            wave, announce = self._wave_step(model, version, key, doc["decision"])
            if wave is not None:
                doc["wave"] = wave
            doc["source_etag"] = state.etag  # the window counts as evaluated once the action is recorded
            self.store.save_report(model, version, key, doc)
            summary = {
                k: doc[k] for k in ("model", "model_version", "window", "rows", "decision", "drifted_share",
                                    "prediction_drift", "drifted_features", "reasons", "report",
                                    "inputs", "inputs_missing_profiles", "correlation_id")
            }  # fmt: skip
            for extra in ("action", "wave"):
                if extra in doc:
                    summary[extra] = doc[extra]
            log.info("drift evaluated", extra=summary)
            subject = f"models/{model}/versions/{version}/windows/{key}"
            self._publish("Scorehook.Drift.Evaluated", subject, summary)
            if announce and self._publish("Scorehook.Drift.Detected", subject, summary):
                self._wave_announced(model, version, wave)
            return doc

    # -- drift waves: one Detected per wave per model version -------------------------------------
    def _wave_step(self, model: str, version: str, key: str, decision: str) -> tuple[int | None, bool]:
        """Move the model version's wave on after an evaluation; returns the wave number (when drifting) and
        whether this evaluation must announce it. A drifted evaluation outside a wave starts one (claimed by
        a conditional write, so two evaluators never both announce); a ``no_drift`` one ends it; others
        leave it as it is. A wave whose announcement was never confirmed is announced again by the next
        drifted evaluation once ``WAVE_CLAIM_SECONDS`` passed."""
        for _ in range(MAX_ATTEMPTS):
            doc, etag = self.store.wave(model, version)
            state = doc or {"state": "clear", "wave": 0}
            number, now = int(state.get("wave") or 0), self.clock()
            if decision == "drift":
                if state.get("state") == "drift":
                    stale = (
                        not state.get("announced")
                        and now - float(state.get("claimed_at") or 0) > WAVE_CLAIM_SECONDS
                    )
                    if not stale:
                        return number, False
                    new = {**state, "claimed_at": now}
                else:
                    number += 1
                    new = {"state": "drift", "wave": number, "started": key, "started_at": now,
                           "claimed_at": now, "announced": False}  # fmt: skip
            elif decision == "no_drift" and state.get("state") == "drift":
                new = {**state, "state": "clear", "ended": key, "ended_at": now}
            else:
                return None, False
            try:
                self.store.save_wave(model, version, new, etag)
            except WriteConflictError:
                continue
            if new["state"] == "clear":
                log.info("drift wave ended", extra={"wave": number, "ended": key})
                return None, False
            return number, True
        raise WriteConflictError(f"drift wave of {model}/{version} kept changing", model=model)

    def _wave_announced(self, model: str, version: str, wave: int | None) -> None:
        """Note that the wave's ``.Detected`` went out (best effort: at worst it is announced once more)."""
        try:
            doc, etag = self.store.wave(model, version)
            if doc is not None and doc.get("state") == "drift" and doc.get("wave") == wave:
                self.store.save_wave(model, version, {**doc, "announced": True}, etag)
        except TransientError as exc:
            log.warning("drift wave announcement not noted", extra={"wave": wave, **exc.log_fields()})

    # -- external signals ---------------------------------------------------------------------
    def handle_signal(self, signal: Any) -> dict[str, Any]:
        """An external drift signal (``shared.drift.signals.DriftSignal``) enters the same decision."""
        if signal.model is None:
            raise UnmappedSignalError(
                f"drift signal {signal.signal_id} (monitor {signal.monitor!r}) maps to no model: "
                "set SCOREHOOK_DRIFT_MONITOR_MODELS",
                signal=signal.signal_id,
            )
        with bind(model=signal.model, signal=signal.signal_id, correlation_id=signal.signal_id):
            champion = self.registry.alias_version(signal.model, "champion")
            if champion is None:
                raise ModelNotFoundError(f"{signal.model} has no champion to retrain", model=signal.model)
            version = self.registry.resolve(f"models:/{signal.model}/{champion}")
            recent = sorted(
                (w for w in self.store.windows(signal.model) if w.version == champion), key=lambda w: w.key
            )
            state = (
                self.store.compact(signal.model, champion, recent[-1].key, now=self.clock())
                if recent
                else None
            )
            inputs = state.inputs if state else []
            summary = {
                "model": signal.model, "model_version": champion, "source": signal.source,
                "signal": signal.signal_id, "monitor": signal.monitor, "signal_message": signal.message,
                "breaches": list(signal.breaches), "drift_coefficient": signal.drift_coefficient,
                "correlation_id": signal.signal_id,
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
        """Launch one retraining for ``decision_id`` unless deduplicated or cooling down; the outcome.

        ``decision_id`` is the drift report's id: the job and the version it registers are tagged with it
        (``scorehook.correlation_id``), and so are this outcome and its ledger record."""
        from shared.telemetry import traceparent

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
        trace = traceparent()
        request = RetrainRequest(
            model=version.name, model_version=version.version, decision_id=decision_id, reason=reason,
            inputs=tuple(inputs), report=report,
            tags={CORRELATION_TAG: decision_id, **({TRACEPARENT_TAG: trace} if trace else {})},
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
        outcome = {"status": "launched", "decision_id": decision_id, "correlation_id": decision_id,
                   "run_id": run.run_id, "launcher": run.launcher, "inputs": len(inputs), **dict(run.details)}  # fmt: skip
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
                   "status": finished.status, **dict(finished.details),
                   "finished_at": datetime.fromtimestamp(self.clock(), UTC).isoformat()}  # fmt: skip
        claim = self.ledger.claim(f"retrain-run:{finished.run_id}", _OWNER, 900, outcome)
        if claim is None:
            return {**outcome, "duplicate": True}
        self.ledger.finish(claim, finished.status, outcome)
        with bind(model=finished.model, decision_id=finished.decision_id, correlation_id=finished.decision_id):
            if finished.status == "failed":
                self.ledger.forget(f"retrain-cooldown:{finished.model}")
                log.warning("retraining failed: cooldown lifted", extra=outcome)
                self._publish("Scorehook.Retraining.Failed", f"models/{finished.model}", outcome)
            else:
                log.info("retraining finished", extra=outcome)
                self._publish("Scorehook.Retraining.Completed", f"models/{finished.model}", outcome)
        return outcome

    def _publish(self, event_type: str, subject: str, data: Mapping[str, Any]) -> bool:
        try:
            self.publisher.publish(event_type, subject, data)
        except TransientError as exc:
            log.warning("event not published", extra={"event_type": event_type, **exc.log_fields()})
            return False
        return True
