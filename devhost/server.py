"""The host's HTTP surface on loopback, as the Functions host serves it:

* ``POST /runtime/webhooks/eventgrid?functionName=NAME``: Event Grid and CloudEvents deliveries (arrays),
  the ``SubscriptionValidation`` handshake, and the CloudEvents ``OPTIONS`` abuse-protection handshake;
* ``POST /runtime/webhooks/blobs?functionName=Host.Functions.NAME``: Event-Grid-sourced blob triggers;
* ``/api/<route>``: HTTP functions, with auth levels checked against the local keys;
* ``POST /admin/functions/NAME``: run any function once by hand (master key);
* ``GET /admin/host/status`` and ``GET /admin/eventgrid/deliveries``: what the host and the local Event Grid did;
* ``POST /topics/NAME/api/events``: the local Event Grid's custom topics (``aeg-sas-key``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import azure.functions as func

from devhost.host import FunctionHost, InvocationError

if TYPE_CHECKING:
    from devhost.eventgrid import LocalEventGrid
    from devhost.triggers import QueuePoller

__all__ = ["DevServer", "check_envelope"]

log = logging.getLogger("devhost.server")
_VALIDATION = "microsoft.eventgrid.subscriptionvalidationevent"
_REQUIRED = {
    "eventgrid": ("id", "eventType", "subject", "eventTime", "data"),
    "cloudevents": ("id", "source", "type", "specversion"),
}


def check_envelope(body: bytes) -> list[dict[str, Any]]:
    """Decode a webhook body into events, checking each envelope as the Event Grid extension does.

    Raises ``ValueError`` with a message that names the problem (bad JSON, not an event, missing field).
    """
    try:
        payload = json.loads(body or b"null")
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    events = payload if isinstance(payload, list) else [payload]
    if not events or payload is None:
        raise ValueError("request body has no events: expected a JSON array of events")
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise ValueError(f"event[{index}] is a {type(event).__name__}, not a JSON object")
        schema = "cloudevents" if any(k.lower() == "specversion" for k in event) else "eventgrid"
        for name in _REQUIRED[schema]:
            if event.get(name) is None or (event.get(name) == "" and name != "subject"):
                raise ValueError(f"event[{index}] ({schema} schema) is missing required field '{name}'")
    return events


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
    """Serves a :class:`FunctionHost` over HTTP on 127.0.0.1 (port 0 picks a free one)."""

    def __init__(
        self,
        host: FunctionHost,
        *,
        port: int = 0,
        function_key: str = "",
        master_key: str = "",
        blob_reader: Any = None,
    ) -> None:
        self.host = host
        self.function_key, self.master_key = function_key, master_key
        self.blob_reader = blob_reader  # (container, name) -> (bytes, uri, properties)
        self.eventgrid: LocalEventGrid | None = None
        self.queue_poller: QueuePoller | None = None
        self.http_routes = []
        for info in host.by_trigger("httpTrigger"):
            template = info.trigger.get("route") or info.name
            methods = {m.upper() for m in info.trigger.get("methods") or ["GET", "POST"]}
            self.http_routes.append((_route_regex(template), methods, info))
        handler = type("Handler", (_Handler,), {"dev": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> DevServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="devhost-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def authorized(self, level: str, headers: Any, query: dict[str, str]) -> bool:
        """Function-level routes take the function or master key; admin routes only the master key."""
        level = (level or "FUNCTION").upper()
        if level == "ANONYMOUS":
            return True
        given = headers.get("x-functions-key") or query.get("code") or ""
        if level == "ADMIN":
            return bool(self.master_key) and given == self.master_key
        return bool(given) and given in {self.function_key, self.master_key}


class _Handler(BaseHTTPRequestHandler):
    dev: DevServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    # -- plumbing -------------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: Any = b"", headers: dict[str, str] | None = None) -> None:
        headers = dict(headers or {})
        ctype = headers.pop("Content-Type", "text/plain; charset=utf-8")
        if isinstance(body, dict | list):
            body, ctype = json.dumps(body).encode(), "application/json"
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": HTTPStatus(status).phrase, "message": message})

    def _split(self) -> tuple[str, dict[str, str]]:
        parsed = urllib.parse.urlsplit(self.path)
        return parsed.path, dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))

    def _dispatch(self) -> None:
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

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

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
        try:
            events = check_envelope(self._body())
        except ValueError as exc:
            return self._error(400, str(exc))
        event_type_header = (self.headers.get("aeg-event-type") or "").lower()
        first_type = (events[0].get("eventType") or events[0].get("type") or "").lower()
        if event_type_header == "subscriptionvalidation" or first_type == _VALIDATION:
            code = (events[0].get("data") or {}).get("validationCode")
            if not code:
                return self._error(400, "SubscriptionValidation event has no data.validationCode")
            return self._send(200, {"validationResponse": code})
        for event in events:
            try:
                invoke(event)
            except InvocationError as exc:
                return self._error(500, str(exc))
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
            request = func.HttpRequest(
                method=self.command,
                url=f"{self.dev.base_url}{self.path}",
                headers=dict(self.headers.items()),
                params=query,
                route_params={k: urllib.parse.unquote(v) for k, v in match.groupdict().items()},
                body=self._body(),
            )
            try:
                response = self.dev.host.invoke_http(info.name, request)
            except InvocationError as exc:
                return self._error(500, str(exc))
            headers = dict(response.headers)
            headers["Content-Type"] = response.mimetype + (
                f"; charset={response.charset}" if response.charset else ""
            )
            return self._send(response.status_code, response.get_body(), headers)
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
        try:
            events = check_envelope(self._body())
        except ValueError as exc:
            return self._error(400, str(exc))
        try:
            self.dev.eventgrid.publish_to_topic(topic, self.headers.get("aeg-sas-key"), events)
        except LookupError as exc:
            return self._error(404, str(exc))
        except PermissionError as exc:
            return self._error(401, str(exc))
        self._send(200, b"")
