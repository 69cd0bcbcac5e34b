"""What happened and why: a read-only view over the ledger, the blob store, the registry and the drift store.

Plain Python on the ports (no printing, no ``azure.functions``): the CLI (``scorehook status``, ``trace``,
``models``, ``drift``, ``deadletters``) and the ops page read the same answers. Every answer is a dataclass
with ``to_dict()`` (JSON-ready).

Example:
    >>> from shared.testing import FakeBlobStore, FakeLedger
    >>> view = OpsView(FakeLedger(), FakeBlobStore())
    >>> view.status().files.counts["scored"]
    0
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.errors import ScorehookError, TransientError

__all__ = [
    "FILE_STATES",
    "DeadLetterView",
    "DriftFeature",
    "DriftReportView",
    "DriftView",
    "FileState",
    "FilesSection",
    "ModelState",
    "ModelVersionView",
    "ModelsView",
    "OpsView",
    "Status",
    "Timeline",
    "TimelineEvent",
]

#: the states of a file (the newest version of one input blob), exclusive: ``failed_resolved`` is a file that
#: failed once and was scored since (a later version, or a replay of the same one)
FILE_STATES = (
    "scored",
    "failed_open",
    "failed_resolved",
    "retrying",
    "dead_lettered",
    "in_progress",
    "superseded",
)

_DEAD_LETTER_PREFIX = "deadletter:"


class _Serialisable:
    def to_dict(self) -> dict[str, Any]:
        """The answer as JSON-ready dicts and lists."""
        return _plain(dataclasses.asdict(self))  # type: ignore[call-overload]


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _parse(at: Any) -> datetime | None:
    """An ISO time (or epoch seconds) as an aware datetime; ``None`` when absent or unreadable."""
    if at is None or at == "":
        return None
    if isinstance(at, int | float):
        return datetime.fromtimestamp(at, UTC)
    try:
        parsed = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(at: Any) -> str | None:
    parsed = _parse(at)
    return parsed.isoformat() if parsed else None


def _latest(*times: Any) -> str | None:
    parsed = [p for p in (_parse(t) for t in times) if p is not None]
    return max(parsed).isoformat() if parsed else None


# -- answers ------------------------------------------------------------------------------------------------
@dataclass
class FileState(_Serialisable):
    """The state of one input blob (its newest version), with what the ops person needs next."""

    blob: str
    state: str  # one of FILE_STATES
    etag: str | None = None
    route: str | None = None
    updated_at: str | None = None
    reason: str | None = None
    message: str | None = None
    failure: str | None = None  # container/name of the failure record
    output: str | None = None
    rows: int | None = None
    model: str | None = None  # name/version that scored it
    latency_ms: float | None = None  # claim to done
    attempts: int = 0
    retries: int = 0
    versions: int = 0


@dataclass
class FilesSection(_Serialisable):
    counts: dict[str, int]
    problems: list[FileState]  # failed_open, retrying, dead_lettered: newest first


@dataclass
class ModelState(_Serialisable):
    name: str
    champion: str | None = None
    previous: str | None = None
    champion_since: str | None = None
    champion_how: str | None = None  # promote | approve | rollback
    last_decision: dict[str, Any] | None = None  # version, action, at
    drift: dict[str, Any] | None = None  # the latest report: version, window, decision, evaluated_at, action
    error: str | None = None  # the registry could not be asked


@dataclass
class Status(_Serialisable):
    """``scorehook status``: files, deliveries, decisions and retrains apart; models; times."""

    generated_at: str
    files: FilesSection
    deliveries: dict[str, int]
    decisions: dict[str, int]
    retrains: dict[str, int]
    cooldowns: list[dict[str, Any]]
    dead_letters: dict[str, int]
    models: list[ModelState]
    times: dict[str, str | None]
    routes: list[str]
    stream_dead_letters: dict[str, int] = field(default_factory=dict)  # records of failed/_stream/...


@dataclass
class TimelineEvent(_Serialisable):
    at: str | None
    kind: str  # received, claimed, retry, model_resolved, scored, committed, drift_profile, failed, ...
    summary: str
    status: str = "ok"  # ok | warning | error
    since_previous_ms: float | None = None
    version: str | None = None  # the blob's eTag, or the model version
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Timeline(_Serialisable):
    subject: str  # container/name, or model NAME[/VERSION]
    kind: str  # "blob" | "model"
    state: str | None
    events: list[TimelineEvent]

    @property
    def found(self) -> bool:
        return bool(self.events)


@dataclass
class ModelVersionView(_Serialisable):
    version: str
    aliases: list[str]
    decision: str | None = None  # promote | hold | reject (the ledger's), or approved/rolled back
    decided_at: str | None = None
    decided_by: str | None = None  # holdout | drift_window
    reasons: list[str] = field(default_factory=list)
    challenger_metrics: dict[str, Any] = field(default_factory=dict)
    champion_metrics: dict[str, Any] | None = None
    validation_reason: str | None = None
    origin: str | None = None  # what announced it (webhook, queue, ...)
    retrained_from: str | None = None  # model/version/window of the drift decision that retrained it
    approved: dict[str, Any] | None = None
    champion_changes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ModelsView(_Serialisable):
    name: str
    champion: str | None
    previous: str | None
    versions: list[ModelVersionView]
    error: str | None = None


@dataclass
class DriftFeature(_Serialisable):
    name: str
    kind: str | None
    metric: str | None
    value: float | None
    threshold: float | None
    drifted: bool
    status: str | None = None
    noise_bound: float | None = None  # the distance drifts above threshold + noise_bound


@dataclass
class DriftReportView(_Serialisable):
    model: str
    version: str | None
    window: str | None
    evaluated_at: str | None
    decision: str | None
    rows: int | None
    drifted_share: float | None
    drifted_features: list[str]
    reasons: list[str]
    features: list[DriftFeature]
    retraining: dict[str, Any] | None  # the action asked, and how the run really ended
    report: str | None


@dataclass
class DriftView(_Serialisable):
    model: str
    reports: list[DriftReportView]  # oldest window first


@dataclass
class DeadLetterView(_Serialisable):
    location: str
    time: str | None
    subscription: str | None
    reason: str | None
    event_type: str | None
    subject: str | None
    event_id: str | None
    attempts: int | None
    last_http_status: int | None
    problem: str | None
    replayed: str  # yes | no | replaying | n/a
    blob: str | None


# -- the view ------------------------------------------------------------------------------------------------
class OpsView:
    """Read-only answers over the ports. ``registry``, ``drift_store`` and ``dead_letters_service`` are
    optional: without them the models, drift and dead-letter parts are empty.

    Example:
        >>> view = OpsView.for_scoring(build_scoring_service(settings))   # doctest: +SKIP
        >>> view.blob_timeline("incoming/a.csv").events[0].kind           # doctest: +SKIP
        'received'
    """

    def __init__(
        self,
        ledger: Any,
        blobs: Any,
        *,
        registry: Any = None,
        drift_store: Any = None,
        dead_letters_service: Any = None,
        failed_container: str = "failed",
        routes: Iterable[Any] = (),
        clock: Any = None,
    ) -> None:
        self.ledger, self.blobs, self.registry = ledger, blobs, registry
        self.drift_store, self.dead_letter_service = drift_store, dead_letters_service
        self.failed_container = failed_container
        self.routes = tuple(routes)
        from shared.stream_deadletters import StreamDeadLetterService

        self.stream_dead_letters = StreamDeadLetterService(blobs, ledger, failed_container)
        self._clock = clock or (lambda: datetime.now(UTC))

    @classmethod
    def for_scoring(cls, scoring: Any, *, registry: Any = None) -> OpsView:
        """The view on a scoring service's ports (its registry, drift store and dead letters too).

        Example:
            >>> OpsView.for_scoring(service).status().files.counts   # doctest: +SKIP
            {'scored': 6, 'failed_open': 1, ...}
        """
        from shared.deadletters import DeadLetterService
        from shared.drift.store import ProfileStore

        settings = scoring.settings
        drift = getattr(scoring, "drift", None)
        store = drift.store if drift is not None else ProfileStore(scoring.blobs, settings.drift_container)
        if registry is None:
            registry = getattr(getattr(scoring, "models", None), "registry", None)
        return cls(
            scoring.ledger, scoring.blobs, registry=registry, drift_store=store,
            dead_letters_service=DeadLetterService.for_scoring(scoring), failed_container=settings.failed_container,
            routes=scoring.routes,
        )  # fmt: skip

    # -- reading the sources ---------------------------------------------------------------------------
    def _records(self) -> list[Any]:
        return list(self.ledger.records())

    @staticmethod
    def _is_file(record: Any) -> bool:
        details = record.details
        return "blob" in details and "route" in details and not record.key.startswith(_DEAD_LETTER_PREFIX)

    def _failure_records(
        self, prefix: str | None = None, records: Iterable[Any] = ()
    ) -> list[dict[str, Any]]:
        """The failure records of the failed container (optionally of one blob), ``location`` added. A record a
        ledger record of ``records`` already tells (its ``failure``, reason and time) is not read again."""
        told = {
            str(r.details["failure"]): r
            for r in records
            if r.status == "failed" and r.details.get("failure") and r.details.get("failed_at")
        }
        found = []
        for info in self.blobs.list_blobs(self.failed_container, prefix=prefix):
            if info.name.startswith("_"):
                continue  # events rejected before any file was named: not a file's failure
            location = f"{self.failed_container}/{info.name}"
            if (
                location in told
                and info.metadata.get("kind", "file") == "file"
                and "dead_letter" not in info.metadata
            ):
                d = told[location].details
                found.append({"blob": d.get("blob"), "etag": d.get("etag"), "reason": d.get("reason"),
                              "message": d.get("message"), "failed_at": d.get("failed_at"), "location": location})  # fmt: skip
                continue
            try:
                doc = json.loads(self.blobs.read_bytes(self.failed_container, info.name))
            except (ScorehookError, FileNotFoundError, ValueError):
                continue
            if isinstance(doc, dict) and isinstance(doc.get("blob"), str):
                doc.pop("event", None)
                found.append({**doc, "location": location})
        return found

    def _dead_letters(self) -> list[tuple[Any, str, str | None]]:
        """(dead letter, replay status, blob it names) for every dead letter."""
        service = self.dead_letter_service
        if service is None:
            return []
        found = []
        for letter in service.dead_letters():
            target = service._replay_target(letter)
            blob = target.blob_path if target is not None else None
            found.append((letter, service.replay_status(letter), blob))
        return found

    # -- files -----------------------------------------------------------------------------------------
    def _file_states(self, records: list[Any], failures: list[dict[str, Any]],
                     letters: list[tuple[Any, str, str | None]]) -> list[FileState]:  # fmt: skip
        by_blob: dict[str, list[Any]] = {}
        for record in records:
            if self._is_file(record):
                by_blob.setdefault(str(record.details["blob"]), []).append(record)
        failed_by_blob: dict[str, list[dict[str, Any]]] = {}
        for doc in failures:
            failed_by_blob.setdefault(doc["blob"], []).append(doc)
        letters_by_blob: dict[str, list[tuple[Any, str]]] = {}
        for letter, replayed, blob in letters:
            if blob:
                letters_by_blob.setdefault(blob, []).append((letter, replayed))
        states = []
        for blob in sorted(set(by_blob) | set(failed_by_blob) | set(letters_by_blob)):
            states.append(self._file_state(blob, by_blob.get(blob, []), failed_by_blob.get(blob, []),
                                           letters_by_blob.get(blob, [])))  # fmt: skip
        return states

    @staticmethod
    def _record_time(record: Any) -> str | None:
        d = record.details
        return _latest(d.get("finished_at"), d.get("failed_at"), d.get("scored_at"), d.get("claimed_at"),
                       *[r.get("failed_at") for r in d.get("retries", []) if isinstance(r, Mapping)])  # fmt: skip

    def _file_state(self, blob: str, records: list[Any], failures: list[dict[str, Any]],
                    letters: list[tuple[Any, str]]) -> FileState:  # fmt: skip
        floor = datetime.min.replace(tzinfo=UTC)
        ordered = sorted(records, key=lambda r: (_parse(self._record_time(r)) or floor,
                                                 r.details.get("input_sequencer") or ""))  # fmt: skip
        failed_docs = [f for f in failures if "dead_letter" not in f or f.get("reason") != "dead_lettered"]
        dead_docs = [f for f in failures if "dead_letter" in f]
        state = FileState(blob=blob, state="in_progress", versions=len(ordered))
        latest = ordered[-1] if ordered else None
        if latest is not None:
            d = latest.details
            state.etag, state.route = d.get("etag") or d.get("input_etag"), d.get("route")
            state.updated_at, state.attempts = self._record_time(latest), latest.attempts
            state.retries = len(d.get("retries", []))
        if latest is not None and latest.status == "succeeded":
            d = latest.details
            last_failure = _latest(*[f.get("failed_at") for f in failed_docs],
                                   *[r.details.get("failed_at") for r in ordered if r.status == "failed"])  # fmt: skip
            state.state = "failed_resolved" if last_failure else "scored"
            state.output, state.rows = d.get("output"), _int(d.get("rows_scored"))
            state.model = f"{d.get('model_name')}/{d.get('model_version')}" if d.get("model_name") else None
            state.latency_ms = _float(d.get("elapsed_ms") or d.get("scoring_ms"))
            if last_failure:
                state.reason = next((f.get("reason") for f in reversed(failed_docs)), None)
            return state
        if latest is not None and latest.status == "failed":
            d = latest.details
            state.state, state.reason, state.message = "failed_open", d.get("reason"), d.get("message")
            state.failure = d.get("failure")
            state.latency_ms = _float(d.get("elapsed_ms"))
            return state
        if latest is not None and latest.status == "superseded":
            state.state = "superseded"
            state.message = latest.details.get("why")
            return state
        open_letters = [(letter, replayed) for letter, replayed in letters if replayed != "yes"]
        if open_letters or (dead_docs and latest is None):
            letter = open_letters[-1][0] if open_letters else None
            state.state = "dead_lettered"
            state.reason = (
                letter.reason if letter is not None else dead_docs[-1].get("dead_letter", {}).get("reason")
            )
            state.message = letter.message() if letter is not None else dead_docs[-1].get("message")
            state.failure = next((f["location"] for f in reversed(dead_docs)), None)
            state.updated_at = _latest(state.updated_at, letter.time if letter is not None else None)
            return state
        if latest is not None and (latest.status == "retrying" or latest.details.get("retries")):
            d = latest.details
            state.state = "retrying"
            retries = d.get("retries") or [{}]
            state.reason, state.message = d.get("reason") or retries[-1].get("reason"), d.get("message")
            return state
        if latest is None and failed_docs:  # only a failure record (its ledger record was forgotten)
            doc = sorted(failed_docs, key=lambda f: str(f.get("failed_at") or ""))[-1]
            state.state, state.reason, state.message = "failed_open", doc.get("reason"), doc.get("message")
            state.failure, state.updated_at, state.etag = (
                doc["location"],
                _iso(doc.get("failed_at")),
                doc.get("etag"),
            )
            state.route = doc.get("route")
        return state

    def files(self) -> list[FileState]:
        """Every known input blob's state, by name."""
        records = self._records()
        return self._file_states(records, self._failure_records(records=records), self._dead_letters())

    def recent_files(self, limit: int = 50) -> list[FileState]:
        """The most recently changed files first.

        Example:
            >>> [f.blob for f in view.recent_files(2)]   # doctest: +SKIP
            ['incoming/b.csv', 'incoming/a.csv']
        """
        return sorted(self.files(), key=lambda f: f.updated_at or "", reverse=True)[:limit]

    # -- status ----------------------------------------------------------------------------------------
    def status(self, problems: int = 20) -> Status:
        """Files by state, deliveries, decisions and retrains apart; champions, drift and times per model.

        Example:
            >>> view.status().files.counts["failed_open"]   # doctest: +SKIP
            1
        """
        records = self._records()
        letters = self._dead_letters()
        files = self._file_states(records, self._failure_records(records=records), letters)
        counts = dict.fromkeys(FILE_STATES, 0)
        for f in files:
            counts[f.state] = counts.get(f.state, 0) + 1
        trouble = [f for f in files if f.state in ("failed_open", "retrying", "dead_lettered")]
        trouble.sort(key=lambda f: f.updated_at or "", reverse=True)
        deliveries: dict[str, int] = {}
        decisions: dict[str, int] = {}
        retrains: dict[str, int] = {}
        cooldowns: list[dict[str, Any]] = []
        replays: dict[str, int] = {}
        times: dict[str, str | None] = {"last_scored_at": None, "last_failure_at": None, "last_decision_at": None,
                                        "last_champion_change_at": None, "last_drift_evaluation_at": None}  # fmt: skip
        for r in records:
            key, d = r.key, r.details
            if self._is_file(r):
                if r.status == "succeeded":
                    times["last_scored_at"] = _latest(
                        times["last_scored_at"], d.get("finished_at") or d.get("scored_at")
                    )
                elif r.status == "failed":
                    times["last_failure_at"] = _latest(times["last_failure_at"], d.get("failed_at"))
            elif key.startswith("delivery:"):
                _bump(deliveries, r.status)
            elif key.startswith("registration:"):
                _bump(decisions, r.status if r.status != "claimed" else "deciding")
                times["last_decision_at"] = _latest(times["last_decision_at"], d.get("decided_at"))
            elif key.startswith("approval:"):
                _bump(decisions, "approved" if r.status == "promote" else f"approved_{r.status}")
                times["last_decision_at"] = _latest(times["last_decision_at"], d.get("at"))
            elif key.startswith("rollback:"):
                _bump(decisions, "rolled_back" if r.status == "rolled_back" else f"rollback_{r.status}")
            elif key.startswith("champion:"):
                times["last_champion_change_at"] = _latest(times["last_champion_change_at"], d.get("at"))
            elif key.startswith("retrain-cooldown:"):
                until = r.expires_at
                if until and until > self._clock().timestamp():
                    cooldowns.append({"model": key.removeprefix("retrain-cooldown:"),
                                      "decision_id": d.get("decision_id"),
                                      "until": datetime.fromtimestamp(until, UTC).isoformat()})  # fmt: skip
            elif key.startswith("retrain-run:"):
                _bump(retrains, f"run_{r.status}")
            elif key.startswith("retrain:"):
                _bump(
                    retrains, {"succeeded": "launched", "skipped": "skipped_cooldown"}.get(r.status, r.status)
                )
            elif key.startswith(_DEAD_LETTER_PREFIX):
                _bump(replays, r.status)
        times["last_failure_at"] = _latest(times["last_failure_at"],
                                           *[f.updated_at for f in files if f.state == "failed_open"])  # fmt: skip
        models = [self._model_state(name, records) for name in self._model_names(records)]
        for m in models:
            if m.drift:
                times["last_drift_evaluation_at"] = _latest(
                    times["last_drift_evaluation_at"], m.drift.get("evaluated_at")
                )
        dead = {"total": len(letters), "open": sum(1 for _, s, _ in letters if s in ("no", "replaying")),
                "replayed": sum(1 for _, s, _ in letters if s == "yes"),
                "not_replayable": sum(1 for _, s, _ in letters if s == "n/a")}  # fmt: skip
        return Status(
            generated_at=self._clock().isoformat(), files=FilesSection(counts, trouble[:problems]),
            deliveries=deliveries, decisions=decisions, retrains=retrains, cooldowns=cooldowns,
            dead_letters=dead, models=models, times=times, routes=[r.name for r in self.routes],
            stream_dead_letters=self.stream_dead_letters.counts(),
        )  # fmt: skip

    # -- models ----------------------------------------------------------------------------------------
    def _model_names(self, records: list[Any]) -> list[str]:
        from shared.models import parse_model_reference

        names: set[str] = set()
        for route in self.routes:
            try:
                names.add(parse_model_reference(route.model)[0])
            except ScorehookError:
                continue
        for r in records:
            if r.key.startswith(("registration:", "champion:", "approval:", "rollback:")):
                model = r.details.get("model")
                if isinstance(model, str) and model:
                    names.add(model)
        if self.drift_store is not None:
            for window in self.drift_store.windows():
                names.add(window.model)
        return sorted(names)

    def _aliases(self, name: str) -> tuple[str | None, str | None, str | None]:
        """(champion, previous, error) from the registry."""
        if self.registry is None:
            return None, None, None
        try:
            return (
                self.registry.alias_version(name, "champion"),
                self.registry.alias_version(name, "previous"),
                None,
            )
        except (TransientError, ScorehookError) as exc:
            return None, None, f"[{exc.reason}] {exc}"

    def _model_state(self, name: str, records: list[Any]) -> ModelState:
        champion, previous, error = self._aliases(name)
        state = ModelState(name, champion, previous, error=error)
        changes = sorted((r.details for r in records if r.key.startswith("champion:") and r.details.get("model") == name),
                         key=lambda d: str(d.get("at", "")))  # fmt: skip
        if changes:
            state.champion_since, state.champion_how = changes[-1].get("at"), changes[-1].get("how")
        decided = sorted((r for r in records if r.key.startswith("registration:") and r.details.get("model") == name
                          and "action" in r.details), key=lambda r: str(r.details.get("decided_at", "")))  # fmt: skip
        if decided:
            d = decided[-1].details
            state.last_decision = {
                "version": d.get("version"),
                "action": d.get("action"),
                "at": d.get("decided_at"),
            }
        reports = self._reports(name, last=1, records=records)
        if reports:
            latest = reports[-1]
            state.drift = {"version": latest.version, "window": latest.window, "decision": latest.decision,
                           "drifted_share": latest.drifted_share, "drifted_features": latest.drifted_features,
                           "evaluated_at": latest.evaluated_at,
                           "retraining": (latest.retraining or {}).get("status")}  # fmt: skip
        return state

    def models_view(self, name: str) -> ModelsView:
        """Versions of one model: aliases, decisions with metrics and reasons, approvals, champion changes.

        Example:
            >>> view.models_view("churn").versions[-1].reasons[0]   # doctest: +SKIP
            'roc_auc 0.91 beats the champion 0.88 by more than the margin 0.01'
        """
        records = self._records()
        champion, previous, error = self._aliases(name)
        versions: dict[str, ModelVersionView] = {}

        def view(version: Any) -> ModelVersionView:
            key = str(version)
            if key not in versions:
                versions[key] = ModelVersionView(key, [])
            return versions[key]

        for r in records:
            d = r.details
            if d.get("model") != name:
                continue
            if r.key.startswith("registration:") and "action" in d:
                v = view(d.get("version"))
                if v.decided_at and str(d.get("decided_at", "")) < v.decided_at:
                    continue  # an older record of a deleted and re-created version
                v.decision, v.decided_at, v.decided_by = (
                    d.get("action"),
                    d.get("decided_at"),
                    d.get("decided_by"),
                )
                v.reasons = list(d.get("reasons") or [])
                v.challenger_metrics = dict(d.get("challenger_metrics") or {})
                v.champion_metrics = d.get("champion_metrics")
                v.validation_reason = (d.get("validation") or {}).get("reason")
                v.origin = (d.get("trigger") or {}).get("origin")
            elif r.key.startswith("approval:") and r.status != "claimed":
                view(d.get("version")).approved = {
                    k: d.get(k) for k in ("approved_by", "reason", "at", "champion_before", "champion_after")
                }
            elif r.key.startswith("champion:"):
                view(d.get("version")).champion_changes.append(
                    {k: d.get(k) for k in ("at", "how", "from", "by", "reason")}
                )
        for alias, version in (("champion", champion), ("previous", previous)):
            if version:
                view(version).aliases.append(alias)
        if self.registry is not None and error is None:
            for v in versions.values():
                try:
                    tags = self.registry.resolve(f"models:/{name}/{v.version}").tags or {}
                except ScorehookError:
                    continue
                v.retrained_from = tags.get("scorehook.retrain.decision")
        for v in versions.values():
            v.champion_changes.sort(key=lambda c: str(c.get("at") or ""))
        ordered = sorted(versions.values(), key=lambda v: (_int(v.version) or 0, v.version))
        return ModelsView(name, champion, previous, ordered, error)

    def models(self) -> list[ModelState]:
        """Every model the app knows (routes, ledger, drift store): champion, previous, drift."""
        records = self._records()
        return [self._model_state(name, records) for name in self._model_names(records)]

    # -- drift -----------------------------------------------------------------------------------------
    def _reports(
        self, model: str, last: int | None = None, records: list[Any] | None = None
    ) -> list[DriftReportView]:
        """A model's drift reports, oldest window first (only the ``last`` ones are read)."""
        if self.drift_store is None:
            return []
        store = self.drift_store
        keys = []
        for info in store.blobs.list_blobs(store.container, f"reports/{model}/"):
            parts = info.name.removesuffix(".json").split("/")
            if len(parts) == 4:
                keys.append((parts[3], _int(parts[2]) or 0, parts[2]))
        keys.sort()
        if last:
            keys = keys[-last:]
        runs = {str(r.details.get("run_id")): r for r in (records if records is not None else self._records())
                if r.key.startswith("retrain-run:")}  # fmt: skip
        found = []
        for window, _, version in keys:
            doc = store.report(model, version, window)
            if isinstance(doc, dict) and doc.get("model") == model:
                found.append(_report_view(doc, runs))
        return sorted(found, key=lambda r: (r.window or "", r.evaluated_at or ""))

    def drift_view(self, model: str, last: int | None = None) -> DriftView:
        """A model's drift reports (oldest window first), features with their distances, retraining outcome.

        Example:
            >>> [f.name for f in view.drift_view("churn").reports[-1].features]   # doctest: +SKIP
            ['tenure_months', 'monthly_charges', 'plan', 'prediction']
        """
        return DriftView(model, self._reports(model, last=last))

    # -- dead letters ------------------------------------------------------------------------------------
    def dead_letters(self) -> list[DeadLetterView]:
        """Every dead letter, with whether it was replayed and the blob it names."""
        return [
            DeadLetterView(
                letter.location, letter.time, letter.subscription, letter.reason, letter.event_type, letter.subject,
                letter.event_id, letter.attempts, letter.last_status, letter.problem, replayed, blob,
            )
            for letter, replayed, blob in self._dead_letters()
        ]  # fmt: skip

    # -- timelines -------------------------------------------------------------------------------------
    def blob_timeline(self, blob: str) -> Timeline:
        """Everything that happened to one input blob (``container/name``), in time order, with durations:
        received, claimed, retries, model resolved, scored, committed, drift profile, failures, dead letters.

        Example:
            >>> [e.kind for e in view.blob_timeline("incoming/a.csv").events]   # doctest: +SKIP
            ['received', 'claimed', 'model_resolved', 'scored', 'committed', 'drift_profile', 'done']
        """
        container, _, name = blob.partition("/")
        records = [r for r in self._records() if self._is_file(r) and r.details.get("blob") == blob]
        failures = self._failure_records(prefix=f"{container}/{name}.", records=records)
        failures = [f for f in failures if f.get("blob") == blob]
        letters = [t for t in self._dead_letters() if t[2] == blob]
        events: list[TimelineEvent] = []
        recorded_failures = set()
        for r in records:
            events.extend(_file_events(r))
            if r.details.get("failure"):
                recorded_failures.add(r.details["failure"])
        for doc in failures:
            if doc["location"] in recorded_failures and "dead_letter" not in doc:
                continue
            if "dead_letter" in doc and doc.get("reason") == "dead_lettered":
                continue  # shown from the dead letter itself
            events.append(TimelineEvent(_iso(doc.get("failed_at")), "failed",
                                        f"failed [{doc.get('reason')}] {doc.get('message') or ''}".strip(), "error",
                                        version=doc.get("etag", "").strip('"') or None,
                                        details={"reason": doc.get("reason"), "message": doc.get("message"),
                                                 "location": doc["location"]}))  # fmt: skip
        for letter, replayed, _ in letters:
            events.append(TimelineEvent(_iso(letter.time), "dead_lettered", letter.message(), "error",
                                        details={"location": letter.location, "reason": letter.reason,
                                                 "attempts": letter.attempts, "replayed": replayed}))  # fmt: skip
        files = self._file_states(records, failures, letters)
        return Timeline(blob, "blob", files[0].state if files else None, _ordered(events))

    def model_timeline(self, model: str, version: str | None = None) -> Timeline:
        """A model's (or one version's) story in time order: deliveries, decisions with reasons, approvals,
        champion changes, drift evaluations and the retraining they asked for, and how that run ended.

        Example:
            >>> [e.kind for e in view.model_timeline("churn", "2").events]   # doctest: +SKIP
            ['decision', 'champion', 'drift', 'retraining']
        """
        records = self._records()
        events: list[TimelineEvent] = []

        def mine(d: Mapping[str, Any]) -> bool:
            return d.get("model") == model and (version is None or str(d.get("version")) == str(version))

        for r in records:
            d = r.details
            if r.key.startswith("delivery:") and mine(d):
                events.append(TimelineEvent(_iso(d.get("queued_at")), "delivery",
                                            f"{d.get('kind')} of version {d.get('version')} {r.status}",
                                            version=str(d.get("version")), details={"key": r.key}))  # fmt: skip
            elif r.key.startswith("registration:") and mine(d) and "action" in d:
                reasons = list(d.get("reasons") or [])
                events.append(TimelineEvent(
                    _iso(d.get("decided_at")), "decision",
                    f"version {d.get('version')}: {d.get('action')}" + (f" ({reasons[0]})" if reasons else ""),
                    "ok" if d.get("action") == "promote" else "warning", version=str(d.get("version")),
                    details={"action": d.get("action"), "reasons": reasons, "decided_by": d.get("decided_by"),
                             "challenger_metrics": d.get("challenger_metrics"),
                             "champion_metrics": d.get("champion_metrics"), "trigger": d.get("trigger"),
                             "validation_reason": (d.get("validation") or {}).get("reason")},
                ))  # fmt: skip
            elif r.key.startswith("approval:") and mine(d) and r.status != "claimed":
                events.append(TimelineEvent(_iso(d.get("at")), "approval",
                                            f"version {d.get('version')} approved by {d.get('approved_by')}"
                                            + (f": {d.get('reason')}" if d.get("reason") else ""),
                                            version=str(d.get("version")), details=dict(d)))  # fmt: skip
            elif r.key.startswith("champion:") and mine(d):
                how = d.get("how")
                events.append(TimelineEvent(_iso(d.get("at")), "champion",
                                            f"version {d.get('version')} champion ({how}"
                                            + (f" from {d.get('from')}" if d.get("from") else "") + ")"
                                            + (f": {d.get('reason')}" if d.get("reason") else ""),
                                            "warning" if how == "rollback" else "ok", version=str(d.get("version")),
                                            details={k: d.get(k) for k in ("how", "from", "by", "reason")}))  # fmt: skip
        for report in self._reports(model, records=records):
            if version is not None and report.version != str(version):
                continue
            events.append(TimelineEvent(
                report.evaluated_at, "drift",
                f"window {report.window} of version {report.version}: {report.decision}"
                + (f" ({', '.join(report.drifted_features)})" if report.drifted_features else ""),
                "warning" if report.decision == "drift" else "ok", version=report.version,
                details={"drifted_share": report.drifted_share, "rows": report.rows, "report": report.report},
            ))  # fmt: skip
            if report.retraining:
                run = report.retraining
                events.append(TimelineEvent(
                    run.get("finished_at") or report.evaluated_at, "retraining",
                    f"retraining {run.get('status')}" + (f": run {run.get('run_id')}" if run.get("run_id") else "")
                    + (f", ended {run.get('outcome')}" if run.get("outcome") else ""),
                    "error" if "failed" in (run.get("status"), run.get("outcome")) else "ok",
                    version=report.version, details=dict(run),
                ))  # fmt: skip
        subject = f"{model}/{version}" if version else model
        return Timeline(subject, "model", None, _ordered(events))


# -- helpers -------------------------------------------------------------------------------------------------
def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _report_view(doc: Mapping[str, Any], runs: Mapping[str, Any]) -> DriftReportView:
    features = []
    for f in doc.get("features") or []:
        if isinstance(f, Mapping):
            features.append(DriftFeature(str(f.get("name")), f.get("kind"), f.get("metric"), _float(f.get("value")),
                                         _float(f.get("threshold")), bool(f.get("drifted")), f.get("status"),
                                         _float(f.get("noise_bound"))))  # fmt: skip
    action = doc.get("action")
    retraining = None
    if isinstance(action, Mapping):
        retraining = {k: action.get(k) for k in ("status", "run_id", "launcher", "decision_id", "why", "reason")
                      if action.get(k) is not None}  # fmt: skip
        run = runs.get(str(action.get("run_id"))) if action.get("run_id") else None
        if run is not None:
            retraining["outcome"] = run.status
            retraining["finished_at"] = run.details.get("finished_at")
            if run.details.get("registered_version"):
                retraining["registered_version"] = run.details.get("registered_version")
    return DriftReportView(
        model=str(doc.get("model")), version=_str(doc.get("model_version")), window=_str(doc.get("window")),
        evaluated_at=_iso(doc.get("evaluated_at")), decision=doc.get("decision"), rows=_int(doc.get("rows")),
        drifted_share=_float(doc.get("drifted_share")), drifted_features=list(doc.get("drifted_features") or []),
        reasons=list(doc.get("reasons") or []), features=features, retraining=retraining, report=doc.get("report"),
    )  # fmt: skip


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _file_events(record: Any) -> list[TimelineEvent]:
    """The events one ledger record of one blob version tells."""
    d = record.details
    etag = d.get("etag") or d.get("input_etag")
    events = []

    def add(at: Any, kind: str, summary: str, status: str = "ok", **details: Any) -> None:
        events.append(TimelineEvent(_iso(at), kind, summary, status, version=etag,
                                    details={k: v for k, v in details.items() if v is not None}))  # fmt: skip

    if d.get("event_time"):
        add(
            d["event_time"],
            "received",
            f"event {d.get('event_id')} (eTag {etag})",
            event_id=d.get("event_id"),
        )
    for retry in d.get("retries") or []:
        if isinstance(retry, Mapping):
            add(retry.get("failed_at"), "retry", f"attempt {retry.get('attempt')} failed [{retry.get('reason')}]: "
                f"{retry.get('message')}", "warning", reason=retry.get("reason"), attempt=retry.get("attempt"))  # fmt: skip
    if d.get("claimed_at"):
        add(
            d["claimed_at"],
            "claimed",
            f"claimed (attempt {record.attempts}) for route {d.get('route')}",
            attempt=record.attempts,
            owner=record.owner,
        )
    if d.get("model_name") or d.get("model_resolved_at"):
        add(d.get("model_resolved_at"), "model_resolved", f"model {d.get('model_name')} version {d.get('model_version')}",
            model=d.get("model_name"), model_version=d.get("model_version"), model_ms=_float(d.get("model_ms")))  # fmt: skip
    if record.status == "succeeded":
        add(d.get("scored_at"), "scored", f"{d.get('rows_scored')} rows scored ({d.get('rows_rejected', 0)} rejected) "
            f"in {d.get('scoring_ms')} ms", rows_read=_int(d.get("rows_read")), rows_scored=_int(d.get("rows_scored")),
            rows_rejected=_int(d.get("rows_rejected")), read_ms=_float(d.get("read_ms")),
            predict_ms=_float(d.get("predict_ms")), scoring_ms=_float(d.get("scoring_ms")))  # fmt: skip
        add(d.get("committed_at"), "committed", f"output {d.get('output')}", output=d.get("output"))
        if d.get("drift_profile"):
            missing = d.get("drift_profile") == "missing"
            add(d.get("finished_at"), "drift_profile", f"drift profile {d.get('drift_profile')} in window "
                f"{d.get('drift_window')}" + (f" [{d.get('drift_profile_reason')}]" if missing else ""),
                "warning" if missing else "ok", window=d.get("drift_window"), closed=d.get("drift_window_closed"))  # fmt: skip
        add(
            d.get("finished_at"),
            "done",
            f"succeeded in {d.get('elapsed_ms')} ms",
            elapsed_ms=_float(d.get("elapsed_ms")),
        )
    elif record.status == "failed":
        add(d.get("failed_at"), "failed", f"failed [{d.get('reason')}] {d.get('message')}", "error",
            reason=d.get("reason"), message=d.get("message"), location=d.get("failure"))  # fmt: skip
    elif record.status == "superseded":
        add(d.get("finished_at") or d.get("claimed_at"), "superseded", str(d.get("why")), "warning")
    elif record.status == "retrying":
        add(
            d.get("failed_at"),
            "waiting",
            f"waiting for a redelivery after [{d.get('reason')}]",
            "warning",
            reason=d.get("reason"),
        )
    elif record.status == "claimed":
        add(None, "in_progress", f"claimed by {record.owner}, not finished", "warning")
    return events


def _ordered(events: list[TimelineEvent]) -> list[TimelineEvent]:
    """Events in time order (an event without a time stays after the one before it), with the milliseconds
    since the previous timed event."""
    floor = datetime.min.replace(tzinfo=UTC)
    last = floor
    keyed = []
    for index, event in enumerate(events):
        last = _parse(event.at) or last
        keyed.append((last, index, event))
    keyed.sort(key=lambda k: (k[0], k[1]))
    result: list[TimelineEvent] = []
    previous: datetime | None = None
    for _, _, event in keyed:
        at = _parse(event.at)
        if at is not None and previous is not None:
            event.since_previous_ms = round((at - previous).total_seconds() * 1000, 1)
        previous = at or previous
        result.append(event)
    return result
