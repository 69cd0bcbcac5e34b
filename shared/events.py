"""Typed Event Grid events, from either wire schema: Event Grid or CloudEvents 1.0.

``parse_event`` reads one event (schema detected by a ``specversion`` key, in any casing), checks the
envelope and returns the most specific class for its type: ``BlobCreated``, ``SubscriptionValidation``
or a plain ``Event``. Attribute names and event types are matched case-insensitively; times may carry
7 fractional digits and any offset (they become UTC; no offset is read as UTC); unknown top-level
attributes are kept in ``Event.extensions``, never rejected. ``parse_events`` decodes a webhook body (an
array or one object).

Errors (``shared.errors``): ``MalformedEventError`` (not JSON, not an object, a field of the wrong
type), ``MissingFieldError`` (a required field absent or empty), ``UnsupportedEventError`` (wrong type for
a strict parser), ``BadNameError`` (``bad_event``: the event disagrees with itself: subject, URL, topic).

Example:
    >>> event = parse_event({
    ...     "id": "e-1", "eventType": "Microsoft.Storage.BlobCreated",
    ...     "eventTime": "2026-01-02T03:04:05.1234567Z",
    ...     "subject": "/blobServices/default/containers/incoming/blobs/data/batch 1.csv",
    ...     "data": {"eTag": "0x1", "url": "http://127.0.0.1:10000/devstoreaccount1/incoming/data/batch%201.csv"}})
    >>> type(event).__name__, event.account, event.blob_path, event.time.isoformat()
    ('BlobCreated', 'devstoreaccount1', 'incoming/data/batch 1.csv', '2026-01-02T03:04:05.123456+00:00')
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from shared.errors import (
    BadNameError,
    EventError,
    MalformedEventError,
    MissingFieldError,
    UnsupportedEventError,
)

__all__ = [
    "BLOB_CREATED",
    "SUBSCRIPTION_VALIDATION",
    "BlobCreated",
    "Event",
    "SubscriptionValidation",
    "parse_blob_created",
    "parse_event",
    "parse_events",
]

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
SUBSCRIPTION_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"

# Envelope attributes of each schema: (wire name, Event attribute or None, required). ``dataversion`` is
# Scorehook's CloudEvents extension that carries the Event Grid ``dataVersion`` across (when not empty).
_ENVELOPES: dict[str, tuple[tuple[str, str | None, bool], ...]] = {
    "eventgrid": (
        ("id", "id", True),
        ("eventType", "type", True),
        ("topic", "source", False),
        ("subject", "subject", True),
        ("eventTime", "time", True),
        ("data", "data", True),
        ("dataVersion", "data_version", False),
        ("metadataVersion", None, False),
    ),
    "cloudevents": (
        ("id", "id", True),
        ("type", "type", True),
        ("source", "source", True),
        ("subject", "subject", False),
        ("time", "time", False),
        ("data", "data", False),
        ("dataversion", "data_version", False),
        ("specversion", None, True),
    ),
}
_SCHEMA_NAMES = {"eventgrid": "Event Grid event", "cloudevents": "CloudEvents event"}
_BLOB_SUBJECT = re.compile(r"/?blobServices/default/containers/(?P<container>[^/]+)/blobs/(?P<blob>.+)", re.S)
_TOPIC_ACCOUNT = re.compile(r"/storageAccounts/(?P<account>[^/]+)", re.IGNORECASE)
_HOST_STYLE_SERVICES = ("blob", "dfs")  # {account}.blob.core.windows.net, {account}.dfs.core.windows.net, ...
_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


class _Fields:
    """Case-insensitive, type-checked reads of one JSON object's fields."""

    def __init__(self, raw: Mapping[str, Any], where: str, prefix: str = "") -> None:
        self.values = {str(key).lower(): value for key, value in raw.items()}
        self.where, self.prefix = where, prefix

    def value(self, name: str, *, required: bool = False, empty_ok: bool = False) -> Any:
        value = self.values.get(name.lower())
        if required and (value is None or (value == "" and not empty_ok)):
            raise MissingFieldError(self.prefix + name, where=self.where)
        return value

    def text(self, name: str) -> str | None:
        value = self.value(name)
        if value is not None and not isinstance(value, str):
            raise self.wrong_type(name, "a string", value)
        return value

    def required_text(self, name: str) -> str:
        self.value(name, required=True)
        return self.text(name) or ""

    def integer(self, name: str) -> int | None:
        value = self.value(name)
        if isinstance(value, str) and value.strip().isdecimal():
            return int(value)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.wrong_type(name, "an integer", value)
        return value

    def wrong_type(self, name: str, expected: str, value: Any) -> MalformedEventError:
        return MalformedEventError(
            f"{self.where}: field {self.prefix + name!r} must be {expected}, not {_json_type(value)}",
            field=self.prefix + name,
        )


def _parse_time(value: Any, reader: _Fields, name: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        parsed = value
    elif not isinstance(value, str):
        raise reader.wrong_type(name, "an ISO 8601 time string", value)
    else:
        try:
            # Python 3.11 reads 'Z', offsets and 7+ fraction digits (truncated to microseconds).
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise MalformedEventError(
                f"{reader.where}: field {name!r} is not an ISO 8601 time: {value!r}", field=name
            ) from None
    if parsed is None:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True)
class Event:
    """The common envelope of an event, whichever schema it came in.

    ``source`` is the Event Grid ``topic`` or the CloudEvents ``source`` ("" when an Event Grid event has
    no topic); ``time`` is UTC (``None`` only for a CloudEvent without ``time``); ``data`` is a dict for
    the typed events and whatever the wire carried otherwise; ``extensions`` holds every other top-level
    attribute, as received.
    """

    id: str
    type: str
    source: str
    subject: str
    time: datetime | None
    data: Any = field(default_factory=dict)
    schema: str = "eventgrid"
    data_version: str = ""
    extensions: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_event(cls, event: Event) -> Event:
        """This class built from a parsed envelope (the typed subclasses check and parse ``data``)."""
        return cls(**_envelope_of(event))

    def as_eventgrid(self) -> dict[str, Any]:
        """The event in the Event Grid schema, JSON-ready (``topic`` and ``eventTime`` left out when unknown).

        Example:
            >>> Event(id="e-1", type="Demo.Thing", source="/t", subject="s", data={},
            ...       time=datetime(2026, 1, 2, tzinfo=UTC)).as_eventgrid()["eventTime"]
            '2026-01-02T00:00:00.000000Z'
        """
        body = {
            "id": self.id,
            "topic": self.source,
            "subject": self.subject,
            "eventType": self.type,
            "eventTime": _format_time(self.time) if self.time else None,
            "data": self.data,
            "dataVersion": self.data_version,
            "metadataVersion": "1",
        }
        return {key: value for key, value in body.items() if value is not None and (key != "topic" or value)}

    def as_cloudevent(self) -> dict[str, Any]:
        """The event in the CloudEvents 1.0 schema, JSON-ready, with its extension attributes.

        Example:
            >>> body = Event(id="e-1", type="Demo.Thing", source="/t", subject="", time=None, data={"a": 1},
            ...              extensions={"traceparent": "00-ab-cd-01"}).as_cloudevent()
            >>> body["specversion"], body["traceparent"], sorted(body)
            ('1.0', '00-ab-cd-01', ['data', 'id', 'source', 'specversion', 'traceparent', 'type'])
        """
        body = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "subject": self.subject or None,
            "type": self.type,
            "time": _format_time(self.time) if self.time else None,
            "data": self.data,
            "dataversion": self.data_version or None,
        }
        return {**self.extensions, **{key: value for key, value in body.items() if value is not None}}


def _envelope_of(event: Event) -> dict[str, Any]:
    return {f.name: getattr(event, f.name) for f in fields(Event)}


def _data_object(event: Event, where: str) -> _Fields:
    if not isinstance(event.data, Mapping):
        raise MalformedEventError(
            f"{where}: field 'data' must be an object, not {_json_type(event.data)}", field="data"
        )
    return _Fields(event.data, where, prefix="data.")


@dataclass(frozen=True, kw_only=True)
class BlobCreated(Event):
    """A ``Microsoft.Storage.BlobCreated`` event, with its blob named by account, container and blob name.

    ``url`` and ``eTag`` are required in ``data``; ``api``, ``contentType``, ``contentLength``, ``blobType``
    and ``sequencer`` are optional (``None`` when absent). The account comes from the URL: host style
    ``https://{account}.blob.core.windows.net/{container}/{blob}`` when the host's second label is ``blob``
    or ``dfs`` (any cloud suffix, also ``{account}.blob.localhost``); otherwise path style, as Azurite
    serves it on an IP address, ``localhost`` or a container host name: ``http://{host}/{account}/...``.
    ``blob_name`` is URL-decoded. The subject must name the same container and blob as the URL, and a
    ``/storageAccounts/{name}`` in the topic (source) the same account; otherwise ``BadNameError``.
    """

    api: str | None = None
    etag: str = ""
    content_type: str | None = None
    content_length: int | None = None
    blob_type: str | None = None
    url: str = ""
    sequencer: str | None = None
    account: str = ""
    container: str = ""
    blob_name: str = ""

    @property
    def blob_path(self) -> str:
        """``container/blob_name``, e.g. ``incoming/data/batch 1.csv``."""
        return f"{self.container}/{self.blob_name}"

    @classmethod
    def from_event(cls, event: Event) -> BlobCreated:
        where = f"BlobCreated event {event.id}"
        data = _data_object(event, where)
        url = data.required_text("url")
        account, container, blob_name = _split_blob_url(url, where)
        _check_subject(event, url, container, blob_name, where)
        origin = "topic" if event.schema == "eventgrid" else "source"
        topic_account = _TOPIC_ACCOUNT.search(event.source)
        if topic_account and topic_account["account"].lower() != account.lower():
            raise BadNameError(
                f"{where}: {origin} names storage account {topic_account['account']!r} "
                f"but data.url names {account!r}",
                topic_account=topic_account["account"],
                url_account=account,
            )
        return cls(
            **_envelope_of(event),
            etag=data.required_text("eTag"),
            url=url,
            api=data.text("api"),
            content_type=data.text("contentType"),
            blob_type=data.text("blobType"),
            content_length=data.integer("contentLength"),
            sequencer=data.text("sequencer"),
            account=account,
            container=container,
            blob_name=blob_name,
        )


def _split_blob_url(url: str, where: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    labels = (parts.hostname or "").split(".")
    segments = parts.path.lstrip("/").split("/")
    host_style = len(labels) > 2 and labels[1].lower() in _HOST_STYLE_SERVICES
    account = labels[0] if host_style else segments.pop(0)  # path style: http://host:port/{account}/...
    if parts.scheme not in ("http", "https") or len(segments) < 2 or not (account and all(segments[:2])):
        raise BadNameError(
            f"{where}: data.url {url!r} is not a blob URL "
            "(https://{account}.blob.core.windows.net/{container}/{blob} or http://host:port/{account}/{container}/{blob})",
            field="data.url",
        )
    return account.lower(), unquote(segments[0]), unquote("/".join(segments[1:]))


def _check_subject(event: Event, url: str, container: str, blob_name: str, where: str) -> None:
    if not event.subject:
        raise MissingFieldError("subject", where=where)
    match = _BLOB_SUBJECT.fullmatch(event.subject)
    if not match:
        raise BadNameError(
            f"{where}: subject {event.subject!r} is not "
            "/blobServices/default/containers/{container}/blobs/{blob}",
            subject=event.subject,
        )
    if unquote(match["container"]) != container or blob_name not in (match["blob"], unquote(match["blob"])):
        raise BadNameError(
            f"{where}: subject names blob {match['container']}/{match['blob']!r} "
            f"but data.url names {container}/{blob_name!r}",
            subject=event.subject,
            url=url,
        )


@dataclass(frozen=True, kw_only=True)
class SubscriptionValidation(Event):
    """The Event Grid subscription handshake: answer ``{"validationResponse": validation_code}``."""

    validation_code: str = ""
    validation_url: str | None = None

    @classmethod
    def from_event(cls, event: Event) -> SubscriptionValidation:
        data = _data_object(event, f"SubscriptionValidation event {event.id}")
        return cls(
            **_envelope_of(event),
            validation_code=data.required_text("validationCode"),
            validation_url=data.text("validationUrl"),
        )


_TYPED: dict[str, type[Event]] = {
    BLOB_CREATED.lower(): BlobCreated,
    SUBSCRIPTION_VALIDATION.lower(): SubscriptionValidation,
}


def _parse_envelope(obj: Any) -> Event:
    if not isinstance(obj, Mapping):
        raise MalformedEventError(f"an event must be a JSON object, not {_json_type(obj)}")
    schema = "cloudevents" if any(str(key).lower() == "specversion" for key in obj) else "eventgrid"
    reader = _Fields(obj, where=_SCHEMA_NAMES[schema])
    values: dict[str, Any] = {}
    for wire, attribute, required in _ENVELOPES[schema]:
        value = reader.value(wire, required=required, empty_ok=wire in ("subject", "data"))
        if attribute == "time":
            values[attribute] = _parse_time(value, reader, wire)
        elif attribute == "data":
            values[attribute] = {} if value is None else value
        elif attribute == "data_version" and isinstance(value, int | float) and not isinstance(value, bool):
            values[attribute] = str(value)  # AML samples send dataVersion as a number
        elif attribute:
            values[attribute] = reader.text(wire) or ""
        elif value is not None and not isinstance(value, str):
            raise reader.wrong_type(wire, "a string", value)
    if schema == "cloudevents":
        version = reader.value("specversion")
        if version != "1.0":
            raise UnsupportedEventError(
                f"CloudEvents event {values.get('id')!r}: specversion must be '1.0', not {version!r}",
                field="specversion",
            )
    known = {wire.lower() for wire, _, _ in _ENVELOPES[schema]}
    extensions = {key: value for key, value in obj.items() if str(key).lower() not in known}
    return Event(**values, schema=schema, extensions=extensions)


def parse_event(obj: Mapping[str, Any]) -> Event:
    """One event (a JSON object in either schema) as the most specific ``Event`` class for its type.

    Example:
        >>> event = parse_event({"specVersion": "1.0", "id": "v-1", "source": "/subscriptions/s", "data":
        ...     {"validationCode": "512d"}, "type": "microsoft.eventgrid.subscriptionvalidationevent"})
        >>> type(event).__name__, event.schema, event.validation_code, event.time
        ('SubscriptionValidation', 'cloudevents', '512d', None)
    """
    event = _parse_envelope(obj)
    typed = _TYPED.get(event.type.lower())
    return typed.from_event(event) if typed else event


def parse_events(body: bytes | str | list[Any] | dict[str, Any]) -> list[Event]:
    """Every event of a webhook body: JSON text or already decoded, an array of events or one object.

    An error about one element of an array names it (``event[2]: ...``) and keeps its class.

    Example:
        >>> parse_events(b'[{"id": "a", "eventType": "Demo.Thing", "subject": "", "data": {}}]')
        Traceback (most recent call last):
        ...
        shared.errors.MissingFieldError: event[0]: Event Grid event: required field 'eventTime' is missing
    """
    payload: Any = body
    if isinstance(body, bytes | bytearray | str):
        try:
            payload = json.loads(body)
        except json.JSONDecodeError as exc:
            raise MalformedEventError(
                f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})"
            ) from exc
        except UnicodeDecodeError as exc:
            raise MalformedEventError(f"body is not UTF-8 JSON: {exc.reason} at byte {exc.start}") from exc
    if isinstance(payload, Mapping):
        return [parse_event(payload)]
    if not isinstance(payload, list):
        raise MalformedEventError(
            f"body must be a JSON array of events or an event object, not {_json_type(payload)}"
        )
    events = []
    for index, item in enumerate(payload):
        try:
            events.append(parse_event(item))
        except EventError as exc:
            exc.message = f"event[{index}]: {exc.message}"
            exc.args = (exc.message,)
            exc.details["index"] = index
            raise
    return events


def parse_blob_created(obj: Mapping[str, Any]) -> BlobCreated:
    """One ``Microsoft.Storage.BlobCreated`` event; any other type raises ``UnsupportedEventError``.

    Example:
        >>> parse_blob_created({"id": "a", "eventType": "Demo.Thing", "subject": "", "data": {},
        ...                     "eventTime": "2026-01-02T03:04:05Z"})
        Traceback (most recent call last):
        ...
        shared.errors.UnsupportedEventError: event a: expected Microsoft.Storage.BlobCreated, not 'Demo.Thing'
    """
    event = _parse_envelope(obj)
    if event.type.lower() != BLOB_CREATED.lower():
        raise UnsupportedEventError(
            f"event {event.id}: expected {BLOB_CREATED}, not {event.type!r}", event_type=event.type
        )
    return BlobCreated.from_event(event)
