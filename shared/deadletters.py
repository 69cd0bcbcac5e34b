"""Dead letters: the events Event Grid gave up on, turned into failure records and replayable.

In Azure, a delivery Event Grid cannot complete (a 400 or 413 answer, a converter error before the function
runs, ``maxDeliveryAttempts`` or the event's time to live exhausted) ends in the dead-letter container as a
blob ``<topic>/<SUBSCRIPTION>/<yyyy/mm/dd/hh>/<id>.json`` holding a JSON array of the events, each with
``deadLetterReason``, ``deliveryAttempts``, ``lastDeliveryOutcome``, ``lastHttpStatusCode``, ``publishTime``
and ``lastDeliveryAttemptTime`` (lowercase names for CloudEvents). devhost's local Event Grid writes the same.

* :func:`parse_dead_letters` reads such a blob tolerantly: any JSON, any garbage, both schemas. It never
  raises; what is not an array of events comes back as a :class:`DeadLetter` with a ``problem``.
* :class:`DeadLetterService` records every dead letter as a failure record with reason ``dead_lettered``
  (:meth:`~DeadLetterService.record_blob`), lists them (:meth:`~DeadLetterService.dead_letters`) and replays
  the ``BlobCreated`` ones through the scoring use case (:meth:`~DeadLetterService.replay`).

Where a record goes: a ``BlobCreated`` whose names pass :func:`shared.names.check_blob_event` and that a route
serves gets the file's own failure record (``failed/<container>/<blob>.<etag>.json``); when that record
already holds another reason, it is kept and the dead-letter facts are added under ``dead_letter``. A file the
ledger says is settled (scored, or superseded by a newer version) gets no failure record. Everything else
(untrusted, malformed, foreign, other event types, a blob that is not an array of events) goes under the
fixed namespace ``failed/_events/<sha256>.json`` (:mod:`shared.rejections`). Records carry the dead letter's
own times, so processing one dead-letter blob twice writes the same records.

Replay marks each dead letter in the ledger under ``deadletter:<dead-letter blob>#<index>`` (status
``replayed``): a claim first, so two replays at once run a file once; the scoring use case claims the file
itself, so a replay of a file already scored is a duplicate.

Example:
    >>> letters = parse_dead_letters("deadletter", "acct/SCORE-INCOMING-BLOBS/2026/12/01/10/e-1.json",
    ...     b'[{"id": "e-1", "eventType": "Demo.Thing", "subject": "s", "data": {},'
    ...     b' "deadLetterReason": "MaxDeliveryAttemptsExceeded", "deliveryAttempts": 5}]')
    >>> d = letters[0]
    >>> d.event_id, d.subscription, d.reason, d.attempts, sorted(d.event)
    ('e-1', 'SCORE-INCOMING-BLOBS', 'MaxDeliveryAttemptsExceeded', 5, ['data', 'eventType', 'id', 'subject'])
    >>> parse_dead_letters("deadletter", "x.json", b"not json")[0].problem
    'the dead-letter blob is not JSON: Expecting value at line 1 column 1'
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.errors import (
    AlreadyClaimedError,
    BlobNotFoundError,
    EventSourceError,
    InputError,
    MalformedEventError,
    ScorehookError,
    UnsupportedEventError,
)
from shared.events import BLOB_CREATED, BlobCreated, parse_blob_created
from shared.logs import bind, get_logger
from shared.names import ascii_metadata, check_blob_event, rejected_event_name
from shared.ports import BlobStore, Ledger
from shared.rejections import EXCERPT_BYTES, rejected_event_record, write_rejected_event
from shared.routes import Route, load_routes, match_route, serves_container

if TYPE_CHECKING:
    from shared.scoring import ScoringService
    from shared.settings import Settings

__all__ = [
    "DEAD_LETTER_FIELDS",
    "MAX_DEAD_LETTER_BYTES",
    "REASON",
    "DeadLetter",
    "DeadLetterService",
    "Recorded",
    "Replayed",
    "parse_dead_letters",
]

# Event Grid events are at most 1 MB: a blob beyond this is not a dead letter.
MAX_DEAD_LETTER_BYTES = 64 << 20
REASON = "dead_lettered"
REPLAYED = "replayed"
REPLAY_TTL_SECONDS = 900  # a replay mark held this long by a replay that died is taken over
LEDGER_PREFIX = "deadletter:"
SETTLED = ("succeeded", "superseded")  # ledger states of a file that needs no failure record
# Dead-letter attribute (lowercase wire name) -> field of DeadLetter.
DEAD_LETTER_FIELDS: dict[str, str] = {
    "deadletterreason": "reason",
    "deliveryattempts": "attempts",
    "lastdeliveryoutcome": "last_outcome",
    "lasthttpstatuscode": "last_status",
    "publishtime": "published_at",
    "lastdeliveryattempttime": "last_attempt_at",
}
_TEXT_LIMIT = 512
_OWNER = f"{socket.gethostname()}:{os.getpid()}"
_log = get_logger("deadletters")


def _text(value: Any) -> str | None:
    """An untrusted scalar as bounded text (``None`` stays ``None``)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:_TEXT_LIMIT]


def _bounded(value: Any) -> Any:
    """``value`` when its JSON is small, else the start of its JSON text."""
    text = json.dumps(value, default=str)
    return value if len(text) <= EXCERPT_BYTES else text[:EXCERPT_BYTES]


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value.strip())
    return None


@dataclass(frozen=True)
class DeadLetter:
    """One element of a dead-letter blob: the event as it was delivered, and why Event Grid gave up on it.

    ``event`` is the element without its dead-letter attributes (an object for a real event; whatever the
    blob held otherwise). ``problem`` says why this is not a readable event at all (the blob is not JSON, not
    an array, an element is not an object); ``index`` is ``-1`` for a problem of the whole blob.
    """

    container: str
    blob: str
    index: int
    event: Any = None
    reason: str | None = None
    attempts: int | None = None
    last_outcome: str | None = None
    last_status: int | None = None
    published_at: str | None = None
    last_attempt_at: str | None = None
    problem: str | None = None
    problem_reason: str = "malformed_event"

    @property
    def location(self) -> str:
        """``container/blob#index`` of this dead letter."""
        return f"{self.container}/{self.blob}#{self.index}"

    @property
    def key(self) -> str:
        """The ledger key its replay is marked under."""
        return f"{LEDGER_PREFIX}{self.location}"

    @property
    def topic(self) -> str | None:
        """The topic name, the first segment of the blob path (Azure's layout)."""
        parts = self.blob.split("/")
        return parts[0] if len(parts) > 2 else None

    @property
    def subscription(self) -> str | None:
        """The event subscription's name (upper case in Azure), the second segment of the blob path."""
        parts = self.blob.split("/")
        return parts[1] if len(parts) > 2 else None

    def _attribute(self, *names: str) -> str | None:
        if not isinstance(self.event, Mapping):
            return None
        lowered = {str(k).lower(): v for k, v in self.event.items()}
        for name in names:
            value = lowered.get(name)
            if isinstance(value, str) and value:
                return value[:_TEXT_LIMIT]
        return None

    @property
    def event_id(self) -> str | None:
        return self._attribute("id")

    @property
    def event_type(self) -> str | None:
        return self._attribute("eventtype", "type")

    @property
    def subject(self) -> str | None:
        return self._attribute("subject")

    @property
    def time(self) -> str | None:
        """When Event Grid gave up: the last attempt's time, else the publish time."""
        return self.last_attempt_at or self.published_at

    @property
    def is_blob_created(self) -> bool:
        return (self.event_type or "").lower() == BLOB_CREATED.lower()

    def facts(self) -> dict[str, Any]:
        """The dead-letter facts a failure record carries (JSON-ready)."""
        return {
            "reason": self.reason,
            "attempts": self.attempts,
            "last_outcome": self.last_outcome,
            "last_http_status": self.last_status,
            "published_at": self.published_at,
            "last_attempt_at": self.last_attempt_at,
            "subscription": self.subscription,
            "topic": self.topic,
            "dead_letter_blob": f"{self.container}/{self.blob}",
            "index": self.index,
        }

    def message(self) -> str:
        """What happened, for a person."""
        if self.problem:
            return f"dead-letter {self.location}: {self.problem}"
        attempts = f"after {self.attempts} attempt(s)" if self.attempts is not None else "after its attempts"
        last = ", ".join(
            part
            for part in (
                f"last outcome {self.last_outcome}" if self.last_outcome else "",
                f"HTTP {self.last_status}" if self.last_status is not None else "",
            )
            if part
        )
        return (
            f"Event Grid gave up delivering event {self.event_id or '(no id)'} to subscription "
            f"{self.subscription or '(unknown)'} {attempts}: {self.reason or 'no reason given'}"
            + (f" ({last})" if last else "")
        )


def _element(container: str, blob: str, index: int, raw: Any) -> DeadLetter:
    if not isinstance(raw, Mapping):
        kind = type(raw).__name__ if raw is not None else "null"
        return DeadLetter(
            container, blob, index, raw, problem=f"element {index} is not an event object ({kind})"
        )
    values: dict[str, Any] = {}
    event: dict[str, Any] = {}
    for key, value in raw.items():
        attribute = DEAD_LETTER_FIELDS.get(str(key).lower())
        if attribute is None:
            event[key] = value
        elif attribute in ("attempts", "last_status"):
            values[attribute] = _integer(value)
        else:
            values[attribute] = _text(value)
    return DeadLetter(container, blob, index, event, **values)


def parse_dead_letters(container: str, blob: str, data: bytes) -> list[DeadLetter]:
    """Every dead letter of one dead-letter blob; never raises.

    A JSON array gives one :class:`DeadLetter` per element (a lone object is read as one event); anything
    else (not UTF-8, not JSON, a scalar, an empty array) gives one ``DeadLetter`` with a ``problem``.

    Example:
        >>> [d.problem for d in parse_dead_letters("deadletter", "t/S/x.json", b'[1, {"id": "a"}]')]
        ['element 0 is not an event object (int)', None]
    """

    def whole(problem: str, reason: str = "malformed_event") -> list[DeadLetter]:
        excerpt = data[:1024].decode("utf-8", "replace")
        return [DeadLetter(container, blob, -1, excerpt, problem=problem, problem_reason=reason)]

    if len(data) > MAX_DEAD_LETTER_BYTES:
        return whole(f"the dead-letter blob has {len(data)} bytes (at most {MAX_DEAD_LETTER_BYTES} are read)",
                     "too_large")  # fmt: skip
    try:
        payload = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        return whole(f"the dead-letter blob is not UTF-8: {exc.reason} at byte {exc.start}")
    except json.JSONDecodeError as exc:
        return whole(f"the dead-letter blob is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except RecursionError:
        return whole("the dead-letter blob is JSON nested too deeply to read")
    if isinstance(payload, Mapping):
        payload = [payload]
    if not isinstance(payload, list):
        return whole(f"the dead-letter blob is not an array of events ({type(payload).__name__})")
    if not payload:
        return whole("the dead-letter blob holds an empty array")
    return [_element(container, blob, index, item) for index, item in enumerate(payload)]


@dataclass
class Recorded:
    """Where one dead letter's failure record went."""

    dead_letter: DeadLetter
    record: str | None  # container/name of the record, None when nothing was written
    kind: str  # "file" | "file-merged" | "event" | "settled"
    blob: str | None = None  # the input blob, when the dead letter names a served file
    problem: dict[str, Any] | None = None  # why the event was not trusted as a served BlobCreated


@dataclass
class Replayed:
    """What a replay did with one dead letter."""

    dead_letter: DeadLetter
    status: str  # a scoring outcome ("succeeded", "failed", "duplicate", "superseded"), or "error"
    blob: str | None = None
    output: str | None = None
    failure: str | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"dead_letter": self.dead_letter.location, "event_id": self.dead_letter.event_id,
                "blob": self.blob, "status": self.status, "output": self.output, "failure": self.failure,
                "reason": self.reason, **self.details}  # fmt: skip


class DeadLetterService:
    """Records, lists and replays dead letters; every dependency is a port.

    ``scoring`` (optional) is the scoring use case replays go through; built from it with
    :meth:`for_scoring`, the service shares its blob store, ledger, settings and routes. ``container`` is
    the dead-letter container (default: the ``SCOREHOOK_DEADLETTER_CONTAINER`` setting).
    """

    def __init__(
        self,
        blobs: BlobStore,
        ledger: Ledger,
        settings: Settings,
        *,
        scoring: ScoringService | None = None,
        routes: tuple[Route, ...] | None = None,
        container: str | None = None,
    ) -> None:
        self.blobs, self.ledger, self.settings, self.scoring = blobs, ledger, settings, scoring
        self.routes = routes if routes is not None else (scoring.routes if scoring else load_routes(settings))
        self.container = container or settings.dead_letter_container

    @classmethod
    def for_scoring(cls, scoring: ScoringService, container: str | None = None) -> DeadLetterService:
        """The service on the scoring use case's ports.

        Example:
            >>> DeadLetterService.for_scoring(scoring_service()).replay()   # doctest: +SKIP
        """
        return cls(scoring.blobs, scoring.ledger, scoring.settings, scoring=scoring, routes=scoring.routes,
                   container=container)  # fmt: skip

    # -- reading ------------------------------------------------------------------------------
    def read(self, name: str) -> list[DeadLetter]:
        """The dead letters of one blob of the dead-letter container (``BlobNotFoundError`` when it is gone)."""
        data = bytearray()
        for chunk in self.blobs.read_chunks(self.container, name):
            data += chunk
            if len(data) > MAX_DEAD_LETTER_BYTES:
                break
        return parse_dead_letters(self.container, name, bytes(data))

    def dead_letters(self) -> Iterator[DeadLetter]:
        """Every dead letter in the dead-letter container, oldest blob path first."""
        for info in self.blobs.list_blobs(self.container):
            try:
                yield from self.read(info.name)
            except BlobNotFoundError:
                continue  # deleted while listed

    def replay_status(self, dead_letter: DeadLetter) -> str:
        """``yes``, ``replaying`` (a replay holds its mark now), ``no``, or ``n/a`` (not a replayable event)."""
        if self._replay_target(dead_letter) is None:
            return "n/a"
        record = self.ledger.get(dead_letter.key)
        if record is None:
            return "no"
        return "yes" if record.status == REPLAYED else "replaying"

    # -- recording ----------------------------------------------------------------------------
    def record_event(self, event: BlobCreated) -> list[Recorded]:
        """Record every dead letter of the blob a ``BlobCreated`` announces (the dead-letter function).

        The event's names are checked first; an event for another container is ignored (one log line).
        A storage failure raises ``TransientError``: the delivery is retried.
        """
        with bind(event_id=event.id, dead_letter_blob=f"{event.container}/{event.blob_name}"):
            try:
                check_blob_event(event, self.settings)
            except InputError as exc:
                self.reject_raw_event(event.as_eventgrid(), exc)
                return []
            if event.container != self.container:
                _log.info("event ignored: not for the dead-letter container",
                          extra={"container": event.container, "dead_letter_container": self.container})  # fmt: skip
                return []
            try:
                return self.record_blob(event.blob_name)
            except BlobNotFoundError:
                _log.warning("dead-letter blob is gone: nothing to record")
                return []

    def reject_raw_event(self, raw: Any, exc: InputError) -> str | None:
        """Record an event for the dead-letter function that cannot be trusted (does not parse, bad names)
        under the fixed namespace keyed by its id; a record that cannot be written raises (retried)."""
        location = write_rejected_event(
            self.blobs, self.settings.failed_container, raw, exc, source="on_deadletter", raise_errors=True
        )
        _log.warning("dead-letter event rejected", extra={**exc.log_fields(), "failure": location})
        return location

    def record_blob(self, name: str) -> list[Recorded]:
        """Write the failure record of every dead letter in one dead-letter blob (idempotent)."""
        return [self.record(dead_letter) for dead_letter in self.read(name)]

    def record(self, dead_letter: DeadLetter) -> Recorded:
        """Write the failure record of one dead letter (see the module docstring for where it goes)."""
        with bind(event_id=dead_letter.event_id, dead_letter=dead_letter.location):
            if dead_letter.problem:
                return self._record_problem(dead_letter)
            try:
                event, route = self._served_blob_created(dead_letter)
            except InputError as exc:
                return self._record_untrusted(dead_letter, exc)
            with bind(blob=event.blob_path):
                return self._record_file(dead_letter, event, route)

    def _served_blob_created(self, dead_letter: DeadLetter) -> tuple[BlobCreated, Route]:
        """The dead letter as a checked ``BlobCreated`` that a route serves, or the ``InputError`` why not."""
        if not dead_letter.is_blob_created:
            raise UnsupportedEventError(
                f"event type {dead_letter.event_type!r} is not replayed (only {BLOB_CREATED})",
                event_type=dead_letter.event_type,
            )
        try:
            event = parse_blob_created(dead_letter.event)
        except InputError:
            raise
        except Exception as exc:  # whatever the element holds, the parser's surprise is a malformed event
            raise MalformedEventError(f"the event cannot be read: {type(exc).__name__}: {exc}") from exc
        check_blob_event(event, self.settings)
        if event.account not in self.settings.allowed_storage_accounts or not serves_container(
            self.routes, event.account, event.container
        ):
            raise EventSourceError(f"no route serves {event.account}/{event.container}",
                                   account=event.account, container=event.container)  # fmt: skip
        return event, match_route(self.routes, event.account, event.container, event.blob_name)

    def _replay_target(self, dead_letter: DeadLetter) -> BlobCreated | None:
        if dead_letter.problem:
            return None
        try:
            return self._served_blob_created(dead_letter)[0]
        except InputError:
            return None

    def _error(self, dead_letter: DeadLetter) -> InputError:
        return InputError(dead_letter.message(), reason=REASON)

    def _base(self, dead_letter: DeadLetter) -> dict[str, Any]:
        return {"failed_at": dead_letter.time, "dead_letter": dead_letter.facts()}

    def _record_problem(self, dead_letter: DeadLetter) -> Recorded:
        name = rejected_event_name(f"{LEDGER_PREFIX}{dead_letter.location}")
        problem = {"reason": dead_letter.problem_reason, "message": dead_letter.problem}
        record = {**self._base(dead_letter), "kind": "event", "source": "on_deadletter", "event_id": None,
                  **self._error(dead_letter).to_record(), "event_problem": problem,
                  "received": _bounded(dead_letter.event)}  # fmt: skip
        self._write(name, record)
        _log.warning("dead-letter blob holds no readable event",
                     extra={"reason": REASON, "problem": dead_letter.problem, "record": self._where(name)})  # fmt: skip
        return Recorded(dead_letter, self._where(name), "event", problem=problem)

    def _record_untrusted(self, dead_letter: DeadLetter, exc: InputError) -> Recorded:
        problem = {"reason": exc.reason, "message": exc.message}
        name, record = rejected_event_record(
            dead_letter.event, self._error(dead_letter), source="on_deadletter",
            **self._base(dead_letter), event_problem=problem,
        )  # fmt: skip
        self._write(name, self._merged(name, record))
        _log.warning("dead-lettered event recorded",
                     extra={"reason": REASON, "dead_letter_reason": dead_letter.reason, "event_problem": exc.reason,
                            "error": exc.message, "event_type": dead_letter.event_type,
                            "record": self._where(name)})  # fmt: skip
        return Recorded(dead_letter, self._where(name), "event", problem=problem)

    def _record_file(self, dead_letter: DeadLetter, event: BlobCreated, route: Route) -> Recorded:
        from shared.scoring import failure_name, idempotency_key

        state = self.ledger.get(idempotency_key(event))
        if state is not None and state.status in SETTLED:
            # The file is scored (or a newer version is): no failure record for it, the dead letter is still kept.
            name, record = rejected_event_record(
                dead_letter.event, self._error(dead_letter), source="on_deadletter", **self._base(dead_letter),
                blob=event.blob_path, file_status=state.status,
            )  # fmt: skip
            self._write(name, self._merged(name, record))
            self._drop_dead_letter_record(event)  # written while the file was still being scored
            _log.info("dead-lettered event of a settled file recorded",
                      extra={"file_status": state.status, "dead_letter_reason": dead_letter.reason,
                             "record": self._where(name)})  # fmt: skip
            return Recorded(dead_letter, self._where(name), "settled", blob=event.blob_path)
        name = failure_name(event.container, event.blob_name, event.etag)
        record = {
            "failed_at": dead_letter.time,
            "blob": event.blob_path,
            "url": event.url,
            "etag": event.etag,
            "route": route.name,
            "ledger_status": state.status if state is not None else None,  # "claimed": may still run
            **self._error(dead_letter).to_record(),
            "dead_letter": dead_letter.facts(),
            "event": event.as_eventgrid(),
        }
        merged = self._merged(name, record)
        self._write(name, merged)
        kind = "file" if merged is record else "file-merged"
        _log.warning("dead-lettered file recorded",
                     extra={"reason": merged.get("reason"), "dead_letter_reason": dead_letter.reason,
                            "attempts": dead_letter.attempts, "last_http_status": dead_letter.last_status,
                            "failure": self._where(name)})  # fmt: skip
        return Recorded(dead_letter, self._where(name), kind, blob=event.blob_path)

    def _merged(self, name: str, record: dict[str, Any]) -> dict[str, Any]:
        """``record``, or the existing record with another reason, kept, with the dead-letter facts added."""
        try:
            existing = json.loads(self.blobs.read_bytes(self.settings.failed_container, name))
        except BlobNotFoundError:
            return record
        except ValueError:
            return record  # an unreadable record is replaced
        if not isinstance(existing, dict) or existing.get("reason") in (None, REASON):
            return record
        return {**existing, "dead_letter": record["dead_letter"]}

    def _write(self, name: str, record: dict[str, Any]) -> None:
        self.blobs.write_bytes(
            self.settings.failed_container, name, json.dumps(record, indent=2, default=str).encode(),
            content_type="application/json",
            metadata=ascii_metadata({"reason": record.get("reason") or REASON, "kind": record.get("kind", "file"),
                                     "event_id": record.get("event_id") or ""}),
        )  # fmt: skip

    def _where(self, name: str) -> str:
        return f"{self.settings.failed_container}/{name}"

    # -- replay -------------------------------------------------------------------------------
    def replay(self) -> list[Replayed]:
        """Score again every dead-lettered ``BlobCreated`` not replayed yet; each is marked ``replayed``.

        A transient failure (the file held by a live claim, storage or registry down) leaves the dead letter
        unmarked, so the next replay tries again.
        """
        if self.scoring is None:
            raise TypeError("replay needs the scoring use case (DeadLetterService.for_scoring)")
        done: list[Replayed] = []
        for dead_letter in self.dead_letters():
            event = self._replay_target(dead_letter)
            if event is None:
                continue
            claim = self.ledger.claim(dead_letter.key, _OWNER, REPLAY_TTL_SECONDS,
                                      {"blob": event.blob_path, "dead_letter": dead_letter.location,
                                       "event_id": dead_letter.event_id, **dead_letter.facts()})  # fmt: skip
            if claim is None:
                continue  # replayed already, or another replay holds it right now
            with bind(event_id=event.id, blob=event.blob_path, dead_letter=dead_letter.location):
                done.append(self._replay_one(dead_letter, event, claim))
        return done

    def _replay_one(self, dead_letter: DeadLetter, event: BlobCreated, claim: Any) -> Replayed:
        assert self.scoring is not None
        try:
            outcome = self.scoring.score(event)
        except Exception as exc:  # one file's trouble never stops the replay of the others
            self.ledger.release(claim)
            fields = exc.log_fields() if isinstance(exc, ScorehookError) else {"error_type": type(exc).__name__,
                                                                               "error": str(exc)}  # fmt: skip
            _log.warning("dead letter not replayed: retry later", extra=fields)
            reason = exc.reason if isinstance(exc, ScorehookError) else type(exc).__name__
            return Replayed(
                dead_letter, "error", event.blob_path, reason=reason, details={"message": str(exc)}
            )
        except BaseException:
            self.ledger.release(claim)
            raise
        try:
            self.ledger.finish(claim, REPLAYED, {"outcome": outcome.status, "output": outcome.output,
                                                 "failure": outcome.failure, "reason": outcome.reason})  # fmt: skip
        except AlreadyClaimedError:
            # Another replay took the mark over (this one outlived it): the file is claimed by scoring itself,
            # so the next replay of this dead letter is a duplicate and marks it.
            _log.warning(
                "dead letter replayed but its replay mark was lost", extra={"status": outcome.status}
            )
        if outcome.status == "succeeded":
            self._drop_dead_letter_record(event)
        _log.info("dead letter replayed", extra={"status": outcome.status, "output": outcome.output,
                                                 "failure": outcome.failure})  # fmt: skip
        return Replayed(
            dead_letter, outcome.status, event.blob_path, outcome.output, outcome.failure, outcome.reason
        )

    def _drop_dead_letter_record(self, event: BlobCreated) -> None:
        """Once the file is scored, its ``dead_lettered`` failure record no longer says what happened to it."""
        from shared.scoring import failure_name

        name = failure_name(event.container, event.blob_name, event.etag)
        try:
            existing = json.loads(self.blobs.read_bytes(self.settings.failed_container, name))
        except (BlobNotFoundError, ValueError):
            return
        if isinstance(existing, dict) and existing.get("reason") == REASON:
            self.blobs.delete(self.settings.failed_container, name)
