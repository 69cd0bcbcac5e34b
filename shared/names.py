"""Names from events are untrusted: one place checks them before any I/O, and derives every name the app
writes from checked names only.

* :func:`check_blob_event` - the one check of what a ``BlobCreated`` event names: the URL's host is one of
  the configured account's blob or dfs endpoints (:func:`blob_endpoints`), the container is a valid
  container name, the blob name has no ``.``/``..`` or empty segments, no backslash, no control
  characters, and fits Azure's limits (1,024 characters, 254 segments). Anything else is ``bad_event``.
* :func:`rejected_event_name` - where the failure record of an event the app cannot trust goes: a fixed
  namespace (``_events/``, which no container name can start with) keyed by a hash of the event id.
* :func:`normalize_etag` - the one form an eTag is compared and stored in (listings give them unquoted,
  properties and upload responses quoted).
* :func:`ascii_metadata` - blob metadata values percent-encoded to printable ASCII (HTTP headers carry
  them), so any valid blob name can be written as lineage.

Example:
    >>> check_blob_name("incoming", "2026/11/../../etc/passwd")
    Traceback (most recent call last):
    ...
    shared.errors.BadNameError: blob name '2026/11/../../etc/passwd' has a '..' segment (segment 3)
    >>> name = rejected_event_name("evt-1")
    >>> name[:8], len(name), name == rejected_event_name("evt-1")
    ('_events/', 77, True)
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from shared.errors import BadNameError

if TYPE_CHECKING:
    from shared.events import BlobCreated
    from shared.settings import Settings

__all__ = [
    "MAX_BLOB_NAME",
    "MAX_SEGMENTS",
    "REJECTED_EVENTS_PREFIX",
    "Endpoint",
    "ascii_metadata",
    "blob_endpoints",
    "block_ids",
    "check_blob_event",
    "check_blob_name",
    "check_container_name",
    "normalize_etag",
    "rejected_event_name",
]

MAX_BLOB_NAME = 1024
MAX_SEGMENTS = 254
REJECTED_EVENTS_PREFIX = "_events/"
_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
_AZURITE = "127.0.0.1:10000"
_DEFAULT_SUFFIX = "core.windows.net"
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def _control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cs") or char in "\u2028\u2029"


def check_container_name(container: str) -> None:
    """Azure's container rule: 3-63 characters, lowercase letters, digits and single hyphens.

    Example:
        >>> check_container_name("Incoming")
        Traceback (most recent call last):
        ...
        shared.errors.BadNameError: container name 'Incoming' is not a valid container name (3-63 lowercase letters, digits, single hyphens)
    """
    if not _CONTAINER.fullmatch(container or ""):
        raise BadNameError(
            f"container name {container!r} is not a valid container name "
            "(3-63 lowercase letters, digits, single hyphens)",
            container=container,
        )


def check_blob_name(container: str, name: str) -> None:
    """A blob name safe to hand to the Storage SDK (which collapses ``..`` segments client-side).

    Example:
        >>> check_blob_name("incoming", "2026/11/batch 1.csv")
        >>> check_blob_name("incoming", "a\\\\b.csv")
        Traceback (most recent call last):
        ...
        shared.errors.BadNameError: blob name 'a\\\\b.csv' has a backslash
    """
    check_container_name(container)
    where = f"blob name {name!r}"
    if not name:
        raise BadNameError("blob name is empty", container=container)
    if len(name) > MAX_BLOB_NAME:
        raise BadNameError(f"blob name has {len(name)} characters (Azure allows {MAX_BLOB_NAME})",
                           container=container, limit="blob_name_chars")  # fmt: skip
    bad = next((c for c in name if _control(c)), None)
    if bad is not None:
        raise BadNameError(f"{where} has a control character (U+{ord(bad):04X})", container=container)
    if "\\" in name:
        raise BadNameError(f"{where} has a backslash", container=container)
    segments = name.split("/")
    if len(segments) > MAX_SEGMENTS:
        raise BadNameError(f"{where} has {len(segments)} path segments (Azure allows {MAX_SEGMENTS})",
                           container=container, limit="blob_name_segments")  # fmt: skip
    for index, segment in enumerate(segments, 1):
        if segment in (".", ".."):
            raise BadNameError(f"{where} has a {segment!r} segment (segment {index})", container=container)
        if not segment:
            raise BadNameError(f"{where} has an empty segment (segment {index})", container=container)
    if name.endswith("."):
        raise BadNameError(f"{where} ends with a dot", container=container)


@dataclass(frozen=True)
class Endpoint:
    """One blob (or dfs) endpoint of an allowed account: ``host`` with port, and for path-style endpoints
    (Azurite, a custom BlobEndpoint) the path prefix naming the account."""

    account: str
    host: str
    path: str = ""

    def owns(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or parts.netloc.lower() != self.host:
            return False
        return not self.path or parts.path.startswith(self.path + "/")


def _connection_values(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            values[key.strip().lower()] = value.strip()
    return values


def _host_endpoints(account: str, suffix: str) -> list[Endpoint]:
    return [Endpoint(account, f"{account}.{service}.{suffix}".lower()) for service in ("blob", "dfs")]


def blob_endpoints(settings: Settings) -> list[Endpoint]:
    """The endpoints whose URLs an event may name: the configured account's blob and dfs endpoints, and the
    same endpoints for every other allowed account. Without any storage setting (unit tests), Azurite's
    default ``127.0.0.1:10000`` and the public cloud's host names.

    Example:
        >>> from shared.settings import Settings
        >>> s = Settings.from_env({"DataStorage__blobServiceUri": "https://acct.blob.core.windows.net",
        ...                        "SCOREHOOK_ALLOWED_STORAGE_ACCOUNTS": "acct"})
        >>> [e.host for e in blob_endpoints(s)]
        ['acct.blob.core.windows.net', 'acct.dfs.core.windows.net']
    """
    return list(_endpoints(settings))


def _endpoint_style(url: str) -> tuple[str, str | None]:
    """(endpoint suffix, path-style host or None) of a configured blob endpoint URL."""
    netloc = urlsplit(url).netloc.lower()
    labels = netloc.split(".")
    if len(labels) > 2 and labels[1] in ("blob", "dfs"):
        return ".".join(labels[2:]), None
    return _DEFAULT_SUFFIX, netloc


@lru_cache(maxsize=8)
def _endpoints(settings: Settings) -> tuple[Endpoint, ...]:
    """The endpoints of :func:`blob_endpoints`, computed once per settings object (checked for every event)."""
    accounts = [a.lower() for a in settings.allowed_storage_accounts]
    suffix, path_host = _DEFAULT_SUFFIX, None
    if settings.data_connection_string:
        values = _connection_values(settings.data_connection_string)
        if values.get("usedevelopmentstorage", "").lower() == "true":
            path_host = _AZURITE
        elif values.get("blobendpoint"):
            suffix, path_host = _endpoint_style(values["blobendpoint"])
        else:
            suffix = values.get("endpointsuffix", _DEFAULT_SUFFIX).lower()
    elif settings.data_blob_service_uri:
        suffix, path_host = _endpoint_style(settings.data_blob_service_uri)
    else:
        return tuple(
            endpoint
            for account in accounts
            for endpoint in (Endpoint(account, _AZURITE, f"/{account}"), *_host_endpoints(account, suffix))
        )
    endpoints: list[Endpoint] = []
    for account in accounts:
        endpoints += [Endpoint(account, path_host, f"/{account}")] if path_host else _host_endpoints(account, suffix)
    return tuple(endpoints)


def check_blob_event(event: BlobCreated, settings: Settings) -> None:
    """The one check of what a ``BlobCreated`` names, before any I/O: endpoint, container, blob name.

    Raises ``BadNameError`` (``bad_event``). Which account is allowed at all, and which routes serve it, is
    decided after this (``unknown_source``).
    """
    parts = urlsplit(event.url)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise BadNameError(f"data.url {event.url!r} carries a query, fragment or credentials", url=event.url)
    if not any(endpoint.owns(event.url) for endpoint in _endpoints(settings)):
        raise BadNameError(
            f"data.url {event.url!r} is not on an endpoint of the allowed storage accounts "
            f"({', '.join(settings.allowed_storage_accounts)})",
            url=event.url,
        )
    check_blob_name(event.container, event.blob_name)


def rejected_event_name(event_id: str | None, body: bytes | str = b"") -> str:
    """Where the failure record of an untrusted event goes, inside the failed container: a fixed namespace,
    keyed by a hash of the event id (of the body when the event has no usable id)."""
    seed = event_id if isinstance(event_id, str) and event_id else body
    digest = hashlib.sha256(seed.encode("utf-8", "surrogatepass") if isinstance(seed, str) else seed).hexdigest()
    return f"{REJECTED_EVENTS_PREFIX}{digest}.json"


def ascii_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """Metadata values as printable ASCII (percent-encoded otherwise): HTTP headers carry them.

    Example:
        >>> ascii_metadata({"input_url": "http://h/a/incoming/d\\u00e9j\\u00e0.csv", "rows": 3})
        {'input_url': 'http://h/a/incoming/d%C3%A9j%C3%A0.csv', 'rows': '3'}
    """
    out: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        text = str(value)
        if not (text.isascii() and text.isprintable()):
            text = quote(text, safe=_HEADER_SAFE, errors="backslashreplace")
        out[key] = text
    return out


def block_ids() -> Iterator[str]:
    """Block ids for one commit: a random prefix per commit, then a counter, all of one length (Azure's rule),
    so two writers of one blob never stage over each other's blocks.

    Example:
        >>> first, second = block_ids(), block_ids()
        >>> a, b = next(first), next(first)
        >>> len(a) == len(b) and a != b and a != next(second)
        True
    """
    prefix = uuid.uuid4().hex
    index = 0
    while True:
        yield base64.b64encode(f"{prefix}-{index:08d}".encode()).decode()
        index += 1


def normalize_etag(etag: str | None) -> str:
    """An eTag in the one form Scorehook compares and stores: no quotes, no weak prefix, no spaces
    (``list_blobs`` gives ``0x8D…``, ``get_blob_properties`` and uploads ``"0x8D…"``); ``""`` for none.

    Example:
        >>> normalize_etag('"0x8D1"'), normalize_etag("0x8D1"), normalize_etag('W/"0x8D1"'), normalize_etag(None)
        ('0x8D1', '0x8D1', '0x8D1', '')
    """
    text = (etag or "").strip()
    if text[:2] in ("W/", "w/"):
        text = text[2:]
    return text.strip().strip('"')
