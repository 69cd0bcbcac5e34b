"""devhost's delivery boundary, functionTimeout and concurrency: a DevServer on loopback serving a
FunctionApp built in the test, failure records written to the in-memory blob store (no Azurite)."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import azure.functions as func
import pytest

from devhost.host import FunctionHost, TriggerDecodeError
from devhost.hostconfig import HostConfig, parse_timespan
from devhost.server import MAX_EVENT_BYTES, MAX_EVENTS_PER_DELIVERY, DevServer, event_size, read_delivery
from shared.rejections import write_rejected_event
from shared.settings import Settings
from shared.testing import FakeBlobStore

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"id": "e-1", "eventType": "Demo.Happened", "subject": "s/1", "eventTime": "2026-01-01T00:00:00Z",
        "data": {"n": 1}, "dataVersion": "1", "topic": "t"}  # fmt: skip


class Probe:
    """A FunctionApp whose functions note what they receive; ``slow`` sleeps, ``gate`` waits on an event."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.running = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

        @self.app.function_name("on_event")
        @self.app.event_grid_trigger(arg_name="event")
        def on_event(event: func.EventGridEvent) -> None:
            self.received.append(event.id)

        @self.app.function_name("slow")
        @self.app.event_grid_trigger(arg_name="event")
        def slow(event: func.EventGridEvent) -> None:
            time.sleep(float(event.get_json()["sleep"]))
            self.received.append(event.id)

        @self.app.function_name("gate")
        @self.app.route(route="gate", methods=["POST"])
        def gate(req: func.HttpRequest) -> func.HttpResponse:
            with self.lock:
                self.running += 1
                self.peak = max(self.peak, self.running)
            self.release.wait(10)
            with self.lock:
                self.running -= 1
            return func.HttpResponse("ok")


def serve(probe: Probe, **kwargs) -> tuple[DevServer, FakeBlobStore]:
    blobs = FakeBlobStore()
    timeout = kwargs.pop("function_timeout", None)

    def record(raw, error, function):
        return write_rejected_event(blobs, "failed", raw, error, source=function)

    server = DevServer(
        FunctionHost(probe.app, function_timeout=timeout), record_rejection=record, **kwargs
    ).start()
    return server, blobs


@pytest.fixture
def probe():
    return Probe()


@pytest.fixture
def server(probe):
    dev, blobs = serve(probe, function_timeout=0.5)
    dev.blobs = blobs
    yield dev
    dev.stop()


def _json(raw: bytes) -> dict:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {"text": raw.decode()}


def post(server: DevServer, path: str, body: bytes | object) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{server.base_url}{path}", data=data, method="POST",
                                     headers={"aeg-event-type": "Notification"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json(exc.read())


def records(blobs: FakeBlobStore) -> list[dict]:
    return [json.loads(blobs.read_bytes("failed", name)) for name in blobs.names("failed")]


EVENTGRID = "/runtime/webhooks/eventgrid?functionName=on_event"


def test_a_batch_with_bad_events_runs_the_good_ones_and_records_each_bad_one(server, probe):
    batch = [
        GOOD,
        42,
        {**GOOD, "id": "e-numeric-time", "eventTime": 5},
        {**GOOD, "id": "e-bad-time", "eventTime": "yesterday"},
        {k: v for k, v in GOOD.items() if k != "eventType"} | {"id": "e-no-type"},
        {**GOOD, "id": "e-2"},
    ]
    status, body = post(server, EVENTGRID, batch)
    assert status == 400
    assert probe.received == ["e-1", "e-2"]
    assert body["invoked"] == 2
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == [
        (1, "malformed_event"), (4, "missing_field"), (2, "malformed_event"), (3, "malformed_event"),
    ]  # fmt: skip
    written = {r["event_id"]: r for r in records(server.blobs)}
    assert set(written) == {None, "e-numeric-time", "e-bad-time", "e-no-type"}
    assert all(name.startswith("_events/") for name in server.blobs.names("failed"))
    assert "TypeError" in written["e-numeric-time"]["message"]
    assert written["e-bad-time"]["source"] == "on_event"
    assert {r["record"] for r in body["rejected"]} == {f"failed/{n}" for n in server.blobs.names("failed")}


def test_a_body_that_is_not_json_gets_400_and_a_record(server, probe):
    status, body = post(server, EVENTGRID, b"[{not json")
    assert status == 400
    assert "not valid JSON" in body["message"]
    [record] = records(server.blobs)
    assert record["reason"] == "malformed_event"
    assert record["received"] == "[{not json"
    assert probe.received == []


def test_a_delivery_of_more_than_5000_events_is_refused_with_413(server, probe):
    batch = [{**GOOD, "id": f"e-{i}"} for i in range(MAX_EVENTS_PER_DELIVERY + 1)]
    status, _body = post(server, EVENTGRID, batch)
    assert status == 413
    assert probe.received == []
    [record] = records(server.blobs)
    assert (record["reason"], record["limit"], record["actual"]) == ("too_large", "events_per_delivery", 5001)
    assert record["event_id"] == "e-0"  # keyed by the first event's id, as any untrusted event's record is


def test_exactly_5000_events_are_accepted(probe):
    dev, _ = serve(probe)
    try:
        status, _ = post(dev, EVENTGRID, [{**GOOD, "id": f"e-{i}"} for i in range(MAX_EVENTS_PER_DELIVERY)])
    finally:
        dev.stop()
    assert status == 200
    assert len(probe.received) == MAX_EVENTS_PER_DELIVERY


def test_an_event_over_1_mb_is_refused_with_413_and_the_rest_still_runs(server, probe):
    big = {**GOOD, "id": "e-big", "data": {"pad": "x" * (2 << 20)}}
    fits = {**GOOD, "id": "e-fits", "data": {"pad": "x" * (MAX_EVENT_BYTES - event_size({**GOOD, "id": "e-fits",
                                                                                       "data": {"pad": ""}}))}}  # fmt: skip
    assert event_size(fits) == MAX_EVENT_BYTES
    status, body = post(server, EVENTGRID, [big, GOOD, fits])
    assert status == 413
    assert probe.received == ["e-1", "e-fits"]
    [record] = records(server.blobs)
    assert (record["event_id"], record["reason"], record["limit"]) == ("e-big", "too_large", "event_bytes")
    assert record["received_bytes"] > 2 << 20 and len(record["received"]) <= 16 << 10
    assert body["rejected"][0]["index"] == 0


def test_a_function_that_raises_gets_500_even_when_other_events_were_refused(probe):
    app = func.FunctionApp()

    @app.function_name("boom")
    @app.event_grid_trigger(arg_name="event")
    def boom(event: func.EventGridEvent) -> None:
        raise RuntimeError("storage is down")

    dev = DevServer(FunctionHost(app)).start()
    try:
        status, body = post(dev, "/runtime/webhooks/eventgrid?functionName=boom", [GOOD, 7])
    finally:
        dev.stop()
    assert status == 500
    assert "storage is down" in body["message"]


def test_the_converter_failure_is_a_trigger_decode_error_before_the_function_runs(probe):
    host = FunctionHost(probe.app)
    with pytest.raises(TriggerDecodeError, match="TypeError"):
        host.invoke_eventgrid("on_event", {**GOOD, "eventTime": 1700000000})
    assert probe.received == []


def test_function_timeout_answers_500_logs_the_invocation_and_abandons_it(server, probe, caplog):
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="devhost.host"):
        status, body = post(server, "/runtime/webhooks/eventgrid?functionName=slow",
                            [{**GOOD, "id": "e-slow", "data": {"sleep": 3}}])  # fmt: skip
    assert status == 500
    assert time.monotonic() - started < 2.5
    assert "functionTimeout of 0.5 s exceeded" in body["message"]
    [line] = [r for r in caplog.records if "functionTimeout" in r.getMessage()]
    assert line.function == "slow" and len(line.invocation_id) == 36
    assert line.invocation_id in body["message"]
    assert probe.received == []
    status, _ = post(server, "/runtime/webhooks/eventgrid?functionName=slow",
                     [{**GOOD, "id": "e-quick", "data": {"sleep": 0}}])  # fmt: skip
    assert status == 200


def test_invocations_past_max_concurrent_requests_wait_for_a_slot(probe):
    dev, _ = serve(probe, max_concurrent_requests=2)
    try:
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(post, dev, "/api/gate", b"") for _ in range(6)]
            deadline = time.monotonic() + 5
            while probe.running < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)  # would let a third request in, if the limit did not hold
            assert probe.running == 2
            probe.release.set()
            statuses = [f.result()[0] for f in futures]
    finally:
        dev.stop()
    assert statuses == [200] * 6
    assert probe.peak == 2


def test_requests_past_max_outstanding_requests_get_429(probe):
    dev, _ = serve(probe, max_concurrent_requests=1, max_outstanding_requests=2)
    try:
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(post, dev, "/api/gate", b"") for _ in range(2)]  # one runs, one waits
            deadline = time.monotonic() + 5
            while dev._outstanding < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            status, _body = post(dev, EVENTGRID, [GOOD])
            probe.release.set()
            assert [f.result()[0] for f in held] == [200, 200]
    finally:
        dev.stop()
    assert status == 429
    assert probe.received == []


def test_read_delivery_reports_each_bad_event_with_its_index():
    events, rejected = read_delivery(json.dumps([GOOD, "x", {"specversion": "1.0", "id": "c"}]).encode())
    assert [i for i, _ in events] == [0]
    assert [(r.index, r.status, r.error.reason) for r in rejected] == [(1, 400, "malformed_event"),
                                                                       (2, 400, "missing_field")]  # fmt: skip
    assert read_delivery(b"null")[1][0].error.message.startswith("request body has no events")
    assert read_delivery(b"\xff\xfe")[1][0].error.reason == "malformed_event"


def test_host_json_settings_and_their_overrides():
    config = HostConfig.load(ROOT / "host.json")
    assert config.function_timeout == parse_timespan(
        json.loads((ROOT / "host.json").read_text())["functionTimeout"]
    )
    assert (config.max_concurrent_requests, config.max_outstanding_requests) == (4, 200)
    overridden = HostConfig.load(ROOT / "host.json", {
        "AzureFunctionsJobHost__functionTimeout": "00:00:07",
        "AzureFunctionsJobHost__extensions__http__maxConcurrentRequests": "2",
    })  # fmt: skip
    assert (overridden.function_timeout, overridden.max_concurrent_requests) == (7.0, 2)
    assert HostConfig.from_dict({"functionTimeout": "-1"}).function_timeout is None
    assert HostConfig.from_dict({}, {"DEVHOST_FUNCTION_TIMEOUT": "1.5"}).function_timeout == 1.5
    assert HostConfig.from_dict({}, {"DEVHOST_FUNCTION_TIMEOUT": "1.5"}).app_settings() == {
        "AzureFunctionsJobHost__functionTimeout": "00:00:01.500"
    }
    assert parse_timespan(HostConfig.from_dict({"functionTimeout": "01:02:03"}).app_settings()[
        "AzureFunctionsJobHost__functionTimeout"]) == 3723  # fmt: skip
    with pytest.raises(ValueError, match="timespan"):
        parse_timespan("10 minutes")


AZURE_SCHEDULE = [10, 30, 60, 300, 600, 1800, 3600]  # then every hour, up to the event's time to live


def _azure_span(attempts: int) -> float:
    return sum((AZURE_SCHEDULE + [3600] * attempts)[: attempts - 1])


@pytest.mark.parametrize("name", ["score-incoming-blobs"])
def test_retry_policies_span_well_over_the_claim_lease(name):
    data = json.loads((ROOT / "devhost" / "subscriptions.json").read_text())
    [sub] = [s for s in data["subscriptions"] if s["name"] == name]
    attempts = sub["retryPolicy"]["maxDeliveryAttempts"]
    delays = data["delivery"]["retryDelaysSeconds"]
    local_span = sum(delays[min(i, len(delays) - 1)] for i in range(attempts - 1))
    lease = Settings().claim_ttl_seconds
    assert local_span >= 4 * lease, f"local retries span {local_span} s, the lease is {lease} s"
    assert (
        240 <= local_span <= 600
    )  # ~5 minutes locally: long enough to take over, short enough to dead-letter
    assert _azure_span(attempts) >= 30 * 60  # in Azure (same maxDeliveryAttempts, its own schedule)
    assert sum(delays[:2]) < lease  # the first retries still come quickly


def test_a_body_over_the_read_limit_is_drained_not_read_and_gets_413(server, probe):
    from devhost.server import MAX_BODY_BYTES

    body = b"[" + b" " * MAX_BODY_BYTES + b"]"
    status, response = post(server, EVENTGRID, body)
    assert status == 413
    assert "at most" in response["message"]
    [record] = records(server.blobs)
    assert (record["reason"], record["limit"], record["actual"]) == ("too_large", "delivery_bytes", len(body))
    assert probe.received == []
    assert post(server, EVENTGRID, [GOOD])[0] == 200  # the server still answers


def test_header_names_keep_their_case_and_head_gets_the_length_but_no_body():
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.function_name("on_cloud")
    @app.event_grid_trigger(arg_name="event")
    def on_cloud(event: func.EventGridEvent) -> None:
        pass

    @app.function_name("page")
    @app.route(route="page", methods=["GET", "HEAD"])
    def page(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("hello", headers={"X-Page-Version": "3"})

    dev = DevServer(FunctionHost(app)).start()
    try:
        options = urllib.request.Request(f"{dev.base_url}/runtime/webhooks/eventgrid?functionName=on_cloud",
                                         method="OPTIONS", headers={"WebHook-Request-Origin": "eventgrid.azure.net"})  # fmt: skip
        with urllib.request.urlopen(options, timeout=10) as response:
            assert dict(response.headers)["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
        head = urllib.request.Request(f"{dev.base_url}/api/page", method="HEAD")
        with urllib.request.urlopen(head, timeout=10) as response:
            headers, body = dict(response.headers), response.read()
        assert (headers["X-Page-Version"], headers["Content-Length"], body) == ("3", "5", b"")
    finally:
        dev.stop()
