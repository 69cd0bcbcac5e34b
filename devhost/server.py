"""The host's HTTP surface on loopback, as the Functions host serves it:

* ``POST /runtime/webhooks/eventgrid?functionName=NAME``: Event Grid and CloudEvents deliveries (arrays),
  the ``SubscriptionValidation`` handshake, and the CloudEvents ``OPTIONS`` abuse-protection handshake;
* ``POST /runtime/webhooks/blobs?functionName=Host.Functions.NAME``: Event-Grid-sourced blob triggers;
* ``/api/<route>``: HTTP functions, with auth levels checked against the local keys;
* ``POST /admin/functions/NAME``: run any function once by hand (master key);
* ``GET /admin/host/status`` and ``GET /admin/eventgrid/deliveries``: what the host and the local Event Grid did;
* ``POST /topics/NAME/api/events``: the local Event Grid's custom topics (``aeg-sas-key``).

``GET /api/health`` (the app's own function) also reports the services devhost supervises, when it does.
Served by uvicorn (a thread of its own) running a starlette app; handlers run in threads, as functions block.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import azure.functions as func
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devhost.host import FunctionHost, InvocationError, TriggerDecodeError
from shared.errors import MalformedEventError, MissingFieldError, ScorehookError, TooLargeError

if TYPE_CHECKING:
    from devhost.eventgrid import LocalEventGrid
    from devhost.triggers import QueuePoller

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_EVENTS_PER_DELIVERY",
    "MAX_EVENT_BYTES",
    "DevServer",
    "Rejection",
    "check_envelope",
    "event_size",
    "read_delivery",
]

log = logging.getLogger("devhost.server")
_VALIDATION = "microsoft.eventgrid.subscriptionvalidationevent"
_REQUIRED = {
    "eventgrid": ("id", "eventType", "subject", "eventTime", "data"),
    "cloudevents": ("id", "source", "type", "specversion"),
}
MAX_EVENTS_PER_DELIVERY = 5000  # Event Grid's own limits: events per batch, bytes per event
MAX_EVENT_BYTES = 1 << 20
MAX_BODY_BYTES = 64 << 20  # a body past this is not read into memory at all


@dataclass(frozen=True)
class Rejection:
    """A delivery (``index`` None) or one of its events that is answered without invoking the function."""

    status: int  # 400 or 413
    index: int | None
    raw: Any  # the event, or the body's bytes
    error: ScorehookError


def event_size(event: Any) -> int:
    """Bytes of ``event`` serialised as compact JSON (how its 1 MB limit is measured).

    Example:
        >>> event_size({"id": "1"})
        10
    """
    return len(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode())


def _check_event(index: int, event: Any) -> ScorehookError | None:
    if not isinstance(event, dict):
        return MalformedEventError(
            f"event[{index}] is a {type(event).__name__}, not a JSON object", index=index
        )
    schema = "cloudevents" if any(k.lower() == "specversion" for k in event) else "eventgrid"
    for name in _REQUIRED[schema]:
        if event.get(name) is None or (event.get(name) == "" and name != "subject"):
            return MissingFieldError(name, where=f"event[{index}] ({schema} schema)")
    return None


def read_delivery(body: bytes) -> tuple[list[tuple[int, dict[str, Any]]], list[Rejection]]:
    """Split a webhook body into the events to invoke (with their index) and the rejections.

    A body that is not JSON, holds no events or more than 5,000 is one rejection of the whole delivery;
    otherwise each event over 1 MB (413), not an object or missing a required field (400) is rejected
    alone and the rest of the batch is still handled.

    Example:
        >>> events, rejected = read_delivery(b'[{"id": "1", "eventType": "T", "subject": "s", '
        ...                                  b'"eventTime": "2026-01-01T00:00:00Z", "data": {}}, 42]')
        >>> [i for i, _ in events], [(r.status, r.index, r.error.reason) for r in rejected]
        ([0], [(400, 1, 'malformed_event')])
    """
    try:
        payload = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = (
            f": {exc.msg} at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        return [], [Rejection(400, None, body, MalformedEventError(f"request body is not valid JSON{where}"))]
    items = payload if isinstance(payload, list) else [payload]
    if payload is None or not items:
        message = "request body has no events: expected a JSON array of events"
        return [], [Rejection(400, None, body, MalformedEventError(message))]
    if len(items) > MAX_EVENTS_PER_DELIVERY:
        too_many = TooLargeError(
            f"the delivery holds {len(items):,} events; at most {MAX_EVENTS_PER_DELIVERY:,} are accepted",
            limit="events_per_delivery", maximum=MAX_EVENTS_PER_DELIVERY, actual=len(items),
        )  # fmt: skip
        # one record for the refused delivery, keyed by its first event's id (as any untrusted event's is)
        first = items[0] if isinstance(items[0], dict) else body
        return [], [Rejection(413, None, first, too_many)]
    events, rejected = [], []
    for index, item in enumerate(items):
        size = event_size(item)
        if size > MAX_EVENT_BYTES:
            too_big = TooLargeError(
                f"event[{index}] is {size:,} bytes as JSON; at most {MAX_EVENT_BYTES:,} are accepted",
                limit="event_bytes", maximum=MAX_EVENT_BYTES, actual=size, index=index,
            )  # fmt: skip
            rejected.append(Rejection(413, index, item, too_big))
        elif (error := _check_event(index, item)) is not None:
            rejected.append(Rejection(400, index, item, error))
        else:
            events.append((index, item))
    return events, rejected


def check_envelope(body: bytes) -> list[dict[str, Any]]:
    """Decode a webhook body into events, checking each envelope as the Event Grid extension does.

    Raises ``ValueError`` with a message that names the first problem (bad JSON, not an event, missing
    field, over a size limit): the whole body is refused (as a topic refuses a bad publish).
    """
    events, rejected = read_delivery(body)
    if rejected:
        raise ValueError(rejected[0].error.message)
    return [event for _, event in events]


def _route_regex(template: str) -> re.Pattern[str]:
    pattern = ""
    for part in re.split(r"(\{[^}]+\})", template.strip("/")):
        if part.startswith("{"):
            name = part[1:-1].lstrip("*").split(":")[0].rstrip("?")
            pattern += f"(?P<{name}>.+)" if part[1] == "*" else f"(?P<{name}>[^/]+)"
        else:
            pattern += re.escape(part)
    return re.compile(f"^{pattern}$", re.IGNORECASE)


class DevServer:
    """Serves a :class:`FunctionHost` over HTTP on 127.0.0.1 (port 0 picks a free one): a starlette app
    run by uvicorn in a thread of its own. Each request's handler runs in a daemon thread of its own (the
    functions are synchronous and may block), so one slow invocation never holds the event loop.

    Example:
        >>> server = DevServer(FunctionHost(app)).start()              # doctest: +SKIP
        >>> server.base_url; server.stop()                            # doctest: +SKIP
    """

    def __init__(
        self,
        host: FunctionHost,
        *,
        port: int = 0,
        function_key: str = "",
        master_key: str = "",
        blob_reader: Any = None,
        record_rejection: Callable[[Any, ScorehookError, str], str | None] | None = None,
        max_concurrent_requests: int | None = None,
        max_outstanding_requests: int | None = None,
        services_health: Callable[[], dict[str, dict[str, Any]]] | None = None,
    ) -> None:
        self.host = host
        self.function_key, self.master_key = function_key, master_key
        self.blob_reader = blob_reader  # (container, name) -> (bytes, uri, properties)
        self.record_rejection = record_rejection  # (raw, error, function) -> "failed/_events/..." or None
        # {"azurite": {"state": "running", ...}, ...}: what /api/health adds about the supervised services
        self.services_health = services_health
        # host.json extensions.http: invocations past maxConcurrentRequests wait for a slot; requests past
        # maxOutstandingRequests (running + waiting) get 429, which Event Grid retries.
        self._slots = threading.BoundedSemaphore(max_concurrent_requests) if max_concurrent_requests else None
        self.max_outstanding_requests = max_outstanding_requests
        self._outstanding = 0
        self._outstanding_lock = threading.Lock()
        self.eventgrid: LocalEventGrid | None = None
        self.queue_poller: QueuePoller | None = None
        self.http_routes = []
        for info in host.by_trigger("httpTrigger"):
            template = info.trigger.get("route") or info.name
            methods = {m.upper() for m in info.trigger.get("methods") or ["GET", "POST"]}
            self.http_routes.append((_route_regex(template), methods, info))
        # bound here, so the port is known (and taken) before start() and a second server fails at once
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind(("127.0.0.1", port))
        except OSError:
            self._socket.close()
            raise
        self._socket.listen(1024)
        self.port = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=_METHODS)])
        self._uvicorn = uvicorn.Server(
            uvicorn.Config(
                self.app, log_config=None, log_level="warning", access_log=False, lifespan="off",
                http="h11", timeout_graceful_shutdown=3, timeout_keep_alive=60, server_header=False,
            )
        )  # fmt: skip
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> DevServer:
        """Serve in a thread; returns once uvicorn accepts connections."""
        self._thread = threading.Thread(
            target=self._uvicorn.run, kwargs={"sockets": [self._socket]}, name="devhost-http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"devhost's HTTP server did not start on {self.base_url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let running requests finish (3 s at most), close the socket. Idle keep-alive
        connections are kept 60 s (clients such as MLflow's webhook sender pool theirs)."""
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._uvicorn.force_exit = True
                self._thread.join(2.0)
        self._socket.close()

    async def _endpoint(self, request: Request) -> Response:
        body, length = await _read_body(request)
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string") or b""
        target = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
        call = _Handler(self, request.method, target, request.headers, body, length)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[_Handler] = loop.create_future()

        def settle(error: BaseException | None) -> None:
            if done.done():
                return
            if error is None:
                done.set_result(call)
            else:
                done.set_exception(error)

        def work() -> None:
            try:
                call.dispatch()
            except BaseException as exc:  # handed to the event loop, which answers 500
                loop.call_soon_threadsafe(settle, exc)
            else:
                loop.call_soon_threadsafe(settle, None)

        threading.Thread(target=work, name="devhost-request", daemon=True).start()
        await done
        status, content, headers = call.reply
        response = Response(content, status_code=status)
        # header names as written (starlette lowercases them; http.server did not, and clients may care)
        response.raw_headers = [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
        if (
            status >= 200
            and status not in (204, 304)
            and "content-length" not in {k.lower() for k in headers}
        ):
            response.raw_headers.append((b"Content-Length", str(len(content)).encode()))
        return response

    @contextlib.contextmanager
    def invocation_slot(self) -> Iterator[bool]:
        """Holds one of the host's concurrent-request slots; yields ``False`` when the request must get
        429 because ``maxOutstandingRequests`` are already running or waiting."""
        with self._outstanding_lock:
            if (
                self.max_outstanding_requests is not None
                and self._outstanding >= self.max_outstanding_requests
            ):
                yield False
                return
            self._outstanding += 1
        try:
            if self._slots is None:
                yield True
            else:
                with self._slots:
                    yield True
        finally:
            with self._outstanding_lock:
                self._outstanding -= 1

    def reject(self, raw: Any, error: ScorehookError, function: str) -> str | None:
        """Write the failure record of an event (or body) answered without running ``function``."""
        log.warning(
            "delivery to %s rejected (%s): %s", function, error.reason, error.message,
            extra={"function": function, "event_id": raw.get("id") if isinstance(raw, dict) else None,
                   **error.log_fields()},
        )  # fmt: skip
        if self.record_rejection is None:
            return None
        try:
            return self.record_rejection(raw, error, function)
        except Exception:  # the answer to the delivery matters more than its record
            log.exception("failure record of a rejected delivery to %s could not be written", function)
            return None

    def authorized(self, level: str, headers: Any, query: dict[str, str]) -> bool:
        """Function-level routes take the function or master key; admin routes only the master key."""
        level = (level or "FUNCTION").upper()
        if level == "ANONYMOUS":
            return True
        given = headers.get("x-functions-key") or query.get("code") or ""
        if level == "ADMIN":
            return bool(self.master_key) and given == self.master_key
        return bool(given) and given in {self.function_key, self.master_key}


_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
_HEAD_KEPT = 16 << 10  # of a body over MAX_BODY_BYTES, only this much is kept (for its failure record)


async def _read_body(request: Request) -> tuple[bytes, int]:
    """(body, its length in bytes); a body over ``MAX_BODY_BYTES`` is drained, and only its head is kept."""
    chunks: list[bytes] = []
    size, over = 0, False
    async for chunk in request.stream():
        size += len(chunk)
        if over:
            continue
        chunks.append(chunk)
        if size > MAX_BODY_BYTES:
            over, chunks = True, [b"".join(chunks)[:_HEAD_KEPT]]
    return b"".join(chunks), size


def _with_services(status: int, body: bytes, services: dict[str, dict[str, Any]]) -> tuple[int, bytes]:
    """The app's health answer with devhost's services added: ``"services": {name: state}``; ``status``
    becomes ``"degraded"`` while one is not running, and the answer 503 once one was given up on.

    Example:
        >>> _with_services(200, b'{"status": "ok"}', {"mlflow": {"state": "restarting"}})
        (200, b'{"status": "degraded", "services": {"mlflow": {"state": "restarting"}}}')
    """
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return status, body
    if not isinstance(doc, dict):
        return status, body
    doc["services"] = services
    states = {s.get("state") for s in services.values()}
    if states - {"running"}:
        doc["status"] = "degraded"
    if "failed" in states and status < 400:
        status = 503
    return status, json.dumps(doc).encode()


class _Handler:
    """One request, handled synchronously (in its own thread): the routes of the module docstring.
    ``reply`` is ``(status, body, headers)`` once :meth:`dispatch` returns."""

    def __init__(
        self, dev: DevServer, command: str, path: str, headers: Any, body: bytes, length: int
    ) -> None:
        self.dev, self.command, self.path, self.headers = dev, command, path, headers
        self.body, self.length = body, length
        self.reply: tuple[int, bytes, dict[str, str]] = (500, b"", {})

    # -- plumbing -------------------------------------------------------------------------------
    def _body(self) -> bytes:
        return self.body

    def _bounded_body(self) -> tuple[bytes, int]:
        """(body, its length); of a body over ``MAX_BODY_BYTES`` only the head was kept."""
        return self.body, self.length

    def _send(self, status: int, body: Any = b"", headers: dict[str, str] | None = None) -> None:
        headers = dict(headers or {})
        ctype = headers.pop("Content-Type", "text/plain; charset=utf-8")
        if isinstance(body, dict | list):
            body, ctype = json.dumps(body).encode(), "application/json"
        elif isinstance(body, str):
            body = body.encode()
        self.reply = (status, bytes(body), {"Content-Type": ctype, **headers})  # uvicorn sends HEAD no body

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": HTTPStatus(status).phrase, "message": message})

    def _split(self) -> tuple[str, dict[str, str]]:
        parsed = urllib.parse.urlsplit(self.path)
        return parsed.path, dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))

    def dispatch(self) -> None:
        path, query = self._split()
        try:
            if path == "/runtime/webhooks/eventgrid":
                return self._eventgrid(query)
            if path == "/runtime/webhooks/blobs":
                return self._blobs(query)
            if path.startswith("/api/"):
                return self._http_function(path[len("/api/") :], query)
            if path.startswith("/admin/"):
                return self._admin(path, query)
            match = re.fullmatch(r"/topics/([^/]+)/api/events", path)
            if match and self.command == "POST":
                return self._topic(match.group(1))
            self._error(404, f"no route for {self.command} {path}")
        except Exception as exc:  # the host never dies with a request
            log.exception("request %s %s failed", self.command, path)
            self._error(500, f"{type(exc).__name__}: {exc}")

    # -- webhooks -------------------------------------------------------------------------------
    def _function(self, query: dict[str, str], trigger: str) -> Any:
        name = query.get("functionName", "").removeprefix("Host.Functions.")
        info = self.dev.host.functions.get(name)
        if info is None or info.trigger_type != trigger:
            self._error(404, f"no {trigger} function named {name!r}")
            return None
        return info

    def _eventgrid(self, query: dict[str, str]) -> None:
        info = self._function(query, "eventGridTrigger")
        if info is None:
            return
        if self.command == "OPTIONS":  # CloudEvents webhook abuse protection
            origin = self.headers.get("WebHook-Request-Origin")
            if not origin:
                return self._error(400, "OPTIONS without a WebHook-Request-Origin header")
            return self._send(
                200, b"", {"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*", "Allow": "POST"}
            )
        if self.command != "POST":
            return self._error(405, "use POST")
        self._deliver_events(info, lambda event: self.dev.host.invoke_eventgrid(info.name, event))

    def _deliver_events(self, info: Any, invoke: Any) -> None:
        """Answer one delivery: 200 (202 for blob triggers) when every event ran; 500 when any invocation
        failed (Event Grid retries the batch; invocations are idempotent); else 413 or 400 when events were
        refused at the boundary, each with its failure record."""
        body, length = self._bounded_body()
        if length > MAX_BODY_BYTES:
            error = TooLargeError(
                f"the delivery is {length:,} bytes; at most {MAX_BODY_BYTES:,} are read",
                limit="delivery_bytes", maximum=MAX_BODY_BYTES, actual=length,
            )  # fmt: skip
            events, rejected = [], [Rejection(413, None, body, error)]
        else:
            events, rejected = read_delivery(body)
        event_type_header = (self.headers.get("aeg-event-type") or "").lower()
        first = events[0][1] if events and events[0][0] == 0 else {}
        first_type = str(first.get("eventType") or first.get("type") or "").lower()
        if event_type_header == "subscriptionvalidation" or first_type == _VALIDATION:
            code = (
                (first.get("data") or {}).get("validationCode")
                if isinstance(first.get("data"), dict)
                else None
            )
            if not code:
                return self._error(400, "SubscriptionValidation event has no data.validationCode")
            return self._send(200, {"validationResponse": code})
        with self.dev.invocation_slot() as admitted:
            if not admitted:
                return self._error(429, "too many outstanding requests (host.json maxOutstandingRequests)")
            failures: list[str] = []
            ran = 0
            for index, event in events:
                try:
                    invoke(event)
                    ran += 1
                except TriggerDecodeError as exc:
                    error = MalformedEventError(
                        f"event[{index}] cannot be decoded by the azure.functions converter: "
                        f"{type(exc.cause).__name__}: {exc.cause}", index=index,
                    )  # fmt: skip
                    rejected.append(Rejection(400, index, event, error))
                except InvocationError as exc:
                    failures.append(str(exc))
                except Exception as exc:  # storage behind a blob trigger, ...: retried like a failed run
                    log.exception("delivery of event[%d] to %s failed", index, info.name)
                    failures.append(f"event[{index}]: {type(exc).__name__}: {exc}")
        records = [
            {"index": r.index, "reason": r.error.reason, "message": r.error.message,
             "record": self.dev.reject(r.raw, r.error, info.name)}
            for r in rejected
        ]  # fmt: skip
        if failures:
            return self._error(500, "; ".join(failures[:10]))
        if rejected:
            status = 413 if any(r.status == 413 for r in rejected) else 400
            return self._send(
                status,
                {"error": HTTPStatus(status).phrase, "message": "; ".join(r["message"] for r in records[:10]),
                 "rejected": records[:100], "invoked": ran},
            )  # fmt: skip
        self._send(202 if info.trigger_type == "blobTrigger" else 200, b"")

    def _blobs(self, query: dict[str, str]) -> None:
        info = self._function(query, "blobTrigger")
        if info is None:
            return
        if self.dev.blob_reader is None:
            return self._error(503, "no blob storage is configured for blob triggers")

        def invoke(event: dict[str, Any]) -> None:
            subject = event.get("subject", "")
            container, _, name = subject.removeprefix("/blobServices/default/containers/").partition(
                "/blobs/"
            )
            prefix = info.trigger.get("path", "").split("/", 1)[0]
            if container != prefix:
                log.info(
                    "blob %s/%s does not match trigger path %s", container, name, info.trigger.get("path")
                )
                return
            data, uri, properties = self.dev.blob_reader(container, name)
            self.dev.host.invoke_blob(info.name, f"{container}/{name}", uri, data, properties)

        self._deliver_events(info, invoke)

    # -- HTTP functions -------------------------------------------------------------------------
    def _http_function(self, route: str, query: dict[str, str]) -> None:
        for regex, methods, info in self.dev.http_routes:
            match = regex.match(route.strip("/"))
            if not match:
                continue
            if self.command not in methods:
                return self._error(405, f"{self.command} is not allowed on /api/{route}")
            if not self.dev.authorized(info.trigger.get("authLevel", "FUNCTION"), self.headers, query):
                return self._send(401, b"")
            if self.length > MAX_BODY_BYTES:
                return self._error(
                    413, f"the body is {self.length:,} bytes; at most {MAX_BODY_BYTES:,} are read"
                )
            request = func.HttpRequest(
                method=self.command,
                url=f"{self.dev.base_url}{self.path}",
                headers=dict(self.headers.items()),
                params=query,
                route_params={k: urllib.parse.unquote(v) for k, v in match.groupdict().items()},
                body=self._body(),
            )
            with self.dev.invocation_slot() as admitted:
                if not admitted:
                    return self._error(
                        429, "too many outstanding requests (host.json maxOutstandingRequests)"
                    )
                try:
                    response = self.dev.host.invoke_http(info.name, request)
                except InvocationError as exc:
                    return self._error(500, str(exc))
            headers = dict(response.headers)
            headers["Content-Type"] = response.mimetype + (
                f"; charset={response.charset}" if response.charset else ""
            )
            status, body = response.status_code, response.get_body()
            if route.strip("/").lower() == "health" and self.dev.services_health is not None:
                status, body = _with_services(status, body, self.dev.services_health())
            return self._send(status, body, headers)
        self._error(404, f"no HTTP function serves /api/{route}")

    # -- admin and topics -----------------------------------------------------------------------
    def _admin(self, path: str, query: dict[str, str]) -> None:
        if not self.dev.authorized("ADMIN", self.headers, query):
            return self._send(401, b"")
        if path == "/admin/host/status" and self.command == "GET":
            return self._send(
                200,
                {
                    "state": "Running",
                    "functions": sorted(self.dev.host.functions),
                    "invocations": self.dev.host.invocations,
                },
            )
        if path == "/admin/eventgrid/deliveries" and self.command == "GET":
            history = list(self.dev.eventgrid.history) if self.dev.eventgrid else []
            return self._send(
                200,
                {"deliveries": history, "pending": self.dev.eventgrid.pending() if self.dev.eventgrid else 0},
            )
        match = re.fullmatch(r"/admin/functions/([^/]+)", path)
        if match and self.command == "POST":
            return self._run_by_hand(match.group(1))
        self._error(404, f"no admin route {self.command} {path}")

    def _run_by_hand(self, name: str) -> None:
        info = self.dev.host.functions.get(name)
        if info is None:
            return self._error(404, f"no function named {name!r}")
        try:
            payload = json.loads(self._body() or b"{}")
        except json.JSONDecodeError as exc:
            return self._error(400, f"body is not JSON: {exc.msg}")
        text = payload.get("input", "") if isinstance(payload, dict) else ""
        try:
            if info.trigger_type == "timerTrigger":
                self.dev.host.invoke_timer(name)
            elif info.trigger_type == "queueTrigger":
                self.dev.host.invoke_queue(name, text, "admin", 1, None)
            elif info.trigger_type == "eventGridTrigger":
                for event in check_envelope(
                    text.encode() if isinstance(text, str) else json.dumps(text).encode()
                ):
                    self.dev.host.invoke_eventgrid(name, event)
            elif info.trigger_type == "blobTrigger" and self.dev.blob_reader is not None:
                container, _, blob = text.partition("/")
                data, uri, properties = self.dev.blob_reader(container, blob)
                self.dev.host.invoke_blob(name, text, uri, data, properties)
            else:
                return self._error(400, f"function {name} ({info.trigger_type}) cannot be run by hand here")
        except ValueError as exc:
            return self._error(400, str(exc))
        except InvocationError as exc:
            return self._error(500, str(exc))
        self._send(202, b"")

    def _topic(self, topic: str) -> None:
        if self.dev.eventgrid is None:
            return self._error(503, "the local Event Grid is not running")
        body, length = self._bounded_body()
        if length > MAX_BODY_BYTES:
            return self._error(413, f"the publish is {length:,} bytes; at most {MAX_BODY_BYTES:,} are read")
        events, rejected = read_delivery(body)
        if rejected:  # a topic refuses the whole publish, and tells the publisher why
            return self._error(
                413 if any(r.status == 413 for r in rejected) else 400, rejected[0].error.message
            )
        try:
            self.dev.eventgrid.publish_to_topic(
                topic, self.headers.get("aeg-sas-key"), [e for _, e in events]
            )
        except LookupError as exc:
            return self._error(404, str(exc))
        except PermissionError as exc:
            return self._error(401, str(exc))
        except OSError as exc:  # the local Event Grid could not persist the events: the publisher retries
            return self._error(503, f"the events could not be stored: {exc}")
        self._send(200, b"")
