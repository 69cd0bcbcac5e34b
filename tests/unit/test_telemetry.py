"""Telemetry: what reaches Application Insights (captured by in-memory OpenTelemetry exporters added to the
providers, with a dummy connection string whose ingestion endpoint is a closed loopback port), W3C trace
context in and out, one correlation_id from a drift report to a deployment decision, and where log records go."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from shared.events import parse_blob_created
from shared.logs import bind, capture_logs, configure_logging, get_logger
from shared.ports import CORRELATION_TAG, TRACEPARENT_TAG
from shared.registrations import from_message, from_mlflow_webhook, sign_mlflow_delivery, to_message
from shared.telemetry import (
    CONNECTION_STRING_SETTING,
    configure_telemetry,
    incoming_traceparent,
    scored,
    span,
)
from tests.unit.test_drift_monitor import NOW, WINDOW, csv_bytes, table

ROOT = Path(__file__).resolve().parents[2]
DUMMY = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
# Nothing but the loopback endpoint: no statsbeat, no control plane, no live metrics, no IMDS resource probe.
QUIET = {
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
}
INSTRUMENTATIONS = (
    "azure_sdk",
    "django",
    "fastapi",
    "flask",
    "httpx",
    "psycopg2",
    "requests",
    "urllib",
    "urllib3",
)


@pytest.fixture(scope="module")
def exported():
    """Azure Monitor configured once for this module, with in-memory exporters beside its own."""
    from opentelemetry import metrics, trace
    from opentelemetry._logs import get_logger_provider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans, logs, reader = InMemorySpanExporter(), InMemoryLogRecordExporter(), InMemoryMetricReader()
    configure_logging("INFO", console=False, worker=False)  # what the app does when its blueprints load
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**QUIET, CONNECTION_STRING_SETTING: DUMMY}.items():
            patch.setenv(key, value)
        assert configure_telemetry(
            span_processors=[SimpleSpanProcessor(spans)],
            log_record_processors=[SimpleLogRecordProcessor(logs)],
            metric_readers=[reader],
            enable_live_metrics=False,
            disable_offline_storage=True,
            instrumentation_options={name: {"enabled": False} for name in INSTRUMENTATIONS},
        )
        yield SimpleNamespace(spans=spans, logs=logs, reader=reader)
        app = logging.getLogger("scorehook")
        for handler in [h for h in app.handlers if type(h).__name__ == "_FieldsHandler"]:
            app.removeHandler(handler)
        for provider in (trace.get_tracer_provider(), get_logger_provider(), metrics.get_meter_provider()):
            getattr(provider, "shutdown", lambda: None)()


@pytest.fixture
def drift(scoring, tiny_onnx):
    """The scoring fakes with a drift monitor, a baseline artifact on the model version and a fake retrainer."""
    from shared.drift.evaluate import DriftPolicy
    from shared.drift.monitor import BASELINE_ARTIFACT, DriftMonitor, baseline_from_reference
    from shared.drift.store import ProfileStore
    from shared.models import OnnxModel
    from shared.testing import FakeRetrainer

    artifact = baseline_from_reference(table(3000, seed=1, prefix="b"), OnnxModel.from_file(str(tiny_onnx)))
    scoring.registry.artifacts[("tiny", "1", BASELINE_ARTIFACT)] = json.dumps(artifact).encode()
    scoring.retrainer = FakeRetrainer()
    scoring.monitor = scoring.service.drift = DriftMonitor(
        store=ProfileStore(scoring.blobs, "drift"), registry=scoring.registry, ledger=scoring.ledger,
        publisher=scoring.publisher, policy=DriftPolicy(), window_seconds=3600, cooldown_seconds=86400,
        retrainer=scoring.retrainer, clock=lambda: NOW,
    )  # fmt: skip
    return scoring


def _logs(exported) -> list:
    return [getattr(item, "log_record", item) for item in exported.logs.get_finished_logs()]


def _metrics(exported) -> dict[str, list]:
    found: dict[str, list] = {}
    data = exported.reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def test_spans_logs_and_metrics_of_a_scored_file_are_exported_with_the_callers_trace(exported, scoring):
    event = parse_blob_created(scoring.upload("a.csv", csv_bytes(table(50, seed=1))))
    with bind(invocation_id="inv-1", event_id=event.id), span("score_blob", parent=PARENT, kind="consumer"):
        outcome = scored(scoring.service.score, event)
    bad = parse_blob_created(scoring.upload("bad.csv", b"id,x1\nr1,1.0\n"))
    with span("score_blob", parent=PARENT):
        failed = scored(scoring.service.score, bad)
    assert (outcome.status, failed.status) == ("succeeded", "failed")

    spans = {(s.name, s.attributes.get("scorehook.blob")): s for s in exported.spans.get_finished_spans()}
    file_span, load = spans[("score file", "incoming/a.csv")], spans[("model load", None)]
    assert {format(s.context.trace_id, "032x") for s in (file_span, load)} == {TRACE_ID}
    outer = next(
        s for s in exported.spans.get_finished_spans() if s.context.span_id == file_span.parent.span_id
    )
    assert outer.name == "score_blob"
    assert format(outer.parent.span_id, "016x") == "00f067aa0ba902b7"  # the delivery's span is the parent
    assert (
        file_span.attributes["scorehook.rows"] == 50
        and file_span.attributes["scorehook.status"] == "succeeded"
    )
    assert load.attributes["scorehook.model"] == "tiny"

    [line] = [
        r for r in _logs(exported) if r.body == "file scored" and r.attributes.get("event_id") == event.id
    ]
    assert line.attributes["invocation_id"] == "inv-1" and line.attributes["blob"] == "incoming/a.csv"
    assert line.attributes["trace_id"] == TRACE_ID and format(line.trace_id, "032x") == TRACE_ID

    points = _metrics(exported)
    assert sum(p.value for p in points["scorehook.rows.scored"]) >= 50
    statuses = {p.attributes["status"]: p.value for p in points["scorehook.files.scored"]}
    assert statuses["succeeded"] >= 1 and statuses["failed"] >= 1
    reasons = {p.attributes["reason"] for p in points["scorehook.failures"]}
    assert failed.reason in reasons
    assert points["scorehook.model.load.duration"][0].count >= 1
    assert points["scorehook.scoring.rows_per_second"][0].sum > 0


def test_an_entry_point_continues_the_trace_of_the_delivery(exported):
    import azure.functions as func

    from functions.deployment import deploy_model_version, mlflow_webhook

    request = func.HttpRequest(
        "POST", "http://h/api/mlflow-webhook", headers={"traceparent": PARENT}, body=b"{}"
    )
    assert mlflow_webhook._function.get_user_function()(request).status_code == 401
    message = func.QueueMessage(body=json.dumps({"traceparent": PARENT.replace("00f0", "11f0")}).encode())
    context = SimpleNamespace(invocation_id="inv-q", trace_context=None)
    deploy_model_version._function.get_user_function()(message, context)

    lines = {r.body: r for r in _logs(exported) if format(r.trace_id, "032x") == TRACE_ID}
    assert lines["webhook delivery"].attributes["outcome"] == "refused"
    assert lines["unreadable deployment message dropped"].attributes["invocation_id"] == "inv-q"
    webhook = next(s for s in exported.spans.get_finished_spans() if s.name == "mlflow_webhook")
    assert format(webhook.context.trace_id, "032x") == TRACE_ID and webhook.kind.name == "SERVER"


def test_one_correlation_id_from_the_drift_report_to_the_deployment_decision(exported, drift, tiny_onnx):
    from shared.adapters.retrain_local import retrain_command
    from shared.deployment import DeploymentService

    drift.service.score(parse_blob_created(drift.upload("a.csv", csv_bytes(table(2000, seed=6, shift=1.5)))))
    with span("evaluate_drift", parent=PARENT):
        [report] = drift.monitor.evaluate_due()
    correlation = report["correlation_id"]
    assert report["decision"] == "drift" and correlation == f"tiny/1/{WINDOW}"
    assert (
        drift.monitor.store.report("tiny", "1", WINDOW)["correlation_id"] == correlation
    )  # the stored report

    [request] = drift.retrainer.requests  # the retraining trigger: job tags and its ledger record
    assert (
        request.tags[CORRELATION_TAG] == correlation
        and request.tags[TRACEPARENT_TAG].split("-")[1] == TRACE_ID
    )
    assert drift.ledger.get(f"retrain:{correlation}").details["correlation_id"] == correlation
    assert f"{CORRELATION_TAG}={correlation}" in retrain_command(
        request, "http://127.0.0.1:5000", "DataStorage"
    )

    # what training.retrain registers: a version carrying the request's tags
    version = drift.registry.register(
        "tiny", tiny_onnx, tags={**request.tags, "scorehook.retrain.decision": correlation}
    )
    body = json.dumps({"entity": "model_version", "action": "created",
                       "data": {"name": "tiny", "version": version.version, "tags": dict(version.tags)}}).encode()  # fmt: skip
    now = str(int(time.time()))
    headers = {"X-MLflow-Delivery-Id": "d-1", "X-MLflow-Timestamp": now,
               "X-MLflow-Signature": sign_mlflow_delivery("s", "d-1", now, body)}  # fmt: skip
    registration = from_message(to_message(from_mlflow_webhook("s", headers, body)))  # webhook → queue → flow
    assert registration.correlation_id == correlation

    labelled = table(300, seed=9).append_column(
        "label", __import__("pyarrow").array([i % 2 for i in range(300)])
    )
    service = DeploymentService(
        drift.registry, drift.provider, drift.ledger, drift.publisher, lambda: labelled
    )
    with capture_logs() as lines:
        outcome = service.handle(registration)
    assert drift.ledger.get(outcome.key).details["correlation_id"] == correlation  # the decision record
    [decision_line] = [line for line in lines if line["message"] == "deployment decision"]
    assert decision_line["correlation_id"] == correlation
    decided = [e for e in drift.publisher.events if e[0].startswith("Scorehook.Model.")]
    assert decided[-1][2]["correlation_id"] == correlation

    by_name = {s.name: s for s in exported.spans.get_finished_spans()}
    assert by_name["deployment decision"].attributes["scorehook.correlation_id"] == correlation
    assert format(by_name["drift evaluation"].context.trace_id, "032x") == TRACE_ID
    distances = _metrics(exported)["scorehook.drift.distance"]
    assert {p.attributes["feature"] for p in distances} >= {"x1", "x2"}


class _Topic(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_published_events_and_queue_messages_carry_the_current_traceparent():
    from shared.adapters.publisher import EventGridPublisher
    from shared.registrations import ApprovalGranted

    server = HTTPServer(("127.0.0.1", 0), _Topic)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        publisher = EventGridPublisher(f"http://127.0.0.1:{server.server_port}/api/events", "key")
        with span("deployment decision", parent=PARENT):
            publisher.publish("Scorehook.Model.Promoted", "models/m:2", {"model_name": "m"})
            message = json.loads(to_message(ApprovalGranted("m", "2", "d-9")))
        publisher.publish("Scorehook.Model.Held", "models/m:3", {"model_name": "m"})  # outside any trace
    finally:
        server.shutdown()
    inside, outside = (json.loads(body)[0]["data"] for body in _Topic.bodies)
    assert inside["traceparent"].split("-")[1] == TRACE_ID and inside["model_name"] == "m"
    assert "traceparent" not in outside
    assert message["traceparent"].split("-")[1] == TRACE_ID
    assert from_message(json.dumps(message)) == ApprovalGranted("m", "2", "d-9")


def test_the_incoming_traceparent_of_a_cloudevent_an_event_grid_event_and_a_header_is_checked():
    from azure.functions.eventgrid import EventGridEventInConverter
    from azure.functions.meta import Datum

    from functions._runtime import event_as_dict

    cloud = json.loads((ROOT / "tests/events/blob_created_cloudevents.json").read_text())
    cloud = (cloud[0] if isinstance(cloud, list) else cloud) | {"traceparent": PARENT}
    decoded = EventGridEventInConverter.decode(
        Datum(type="json", value=json.dumps(cloud)), trigger_metadata={}
    )
    assert incoming_traceparent(event=event_as_dict(decoded)) == PARENT  # as the worker hands it over
    assert incoming_traceparent(event={"id": "e", "data": {"traceparent": PARENT.upper()}}) == PARENT
    zero = f"00-{'0' * 32}-00f067aa0ba902b7-01"
    assert incoming_traceparent(headers={"TraceParent": zero}, event={"traceparent": "x" * 10_000}) is None
    worker = SimpleNamespace(trace_context=SimpleNamespace(trace_parent=PARENT))
    assert incoming_traceparent(headers={}, context=worker) == PARENT


# -- where log records go ------------------------------------------------------------------------------------
class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_under_the_functions_worker_the_root_handler_gets_the_apps_records():
    root, seen = logging.getLogger(), _Collect()
    root.addHandler(seen)  # the worker's handler
    try:
        configure_logging("INFO", worker=True)
        app = logging.getLogger("scorehook")
        assert app.propagate and not [h for h in app.handlers if getattr(h, "_scorehook", False)]
        assert not [h for h in root.handlers if getattr(h, "_scorehook", False)]
        with bind(event_id="e-7"):
            get_logger("scoring").info("file scored", extra={"rows": 4})
        [record] = [r for r in seen.records if r.name == "scorehook.scoring"]
        assert record.getMessage() == "file scored" and record.rows == 4
    finally:
        root.removeHandler(seen)
        configure_logging("INFO", console=False, worker=False)


def test_locally_devhost_warnings_and_the_app_share_one_json_stream(monkeypatch):
    import warnings

    out = io.StringIO()
    monkeypatch.delenv("WEBSITE_INSTANCE_ID", raising=False)
    configure_logging("INFO", stream=out, renderer="json")  # auto-detected: not under the worker
    logging.captureWarnings(True)
    try:
        with bind(correlation_id="tiny/1/w"):
            get_logger("deployment").info("deployment decision", extra={"decision": "promote"})
        logging.getLogger("devhost.server").warning("port %s busy", 7071)
        warnings.warn("careful", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
        configure_logging("INFO", console=False, worker=False)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["logger"], line["level"]) for line in lines] == [
        ("scorehook.deployment", "info"), ("devhost.server", "warning"), ("py.warnings", "warning")]  # fmt: skip
    assert lines[0]["correlation_id"] == "tiny/1/w" and lines[1]["message"] == "port 7071 busy"
    assert "careful" in lines[2]["message"]


def test_the_console_renderer_is_readable_and_keeps_the_fields():
    out = io.StringIO()
    configure_logging("INFO", stream=out, renderer="console", worker=False)
    try:
        with bind(model="tiny"):
            get_logger("scoring").warning("no drift profile for this file", extra={"reason": "no_baseline"})
    finally:
        configure_logging("INFO", console=False, worker=False)
    text = out.getvalue()
    assert "no drift profile for this file" in text and "model=tiny" in text and "reason=no_baseline" in text
    assert not text.lstrip().startswith("{")


def test_devhost_tracebacks_and_warnings_become_structured_lines(tmp_path):
    log = tmp_path / "devhost.jsonl"
    code = (
        "import os, sys, threading, warnings\n"
        "from devhost.logconfig import configure_devhost_logging\n"
        "configure_devhost_logging(log_file=sys.argv[1], stream=open(os.devnull, 'w'))\n"
        "warnings.warn('careful')\n"
        "t = threading.Thread(target=lambda: 1 / 0, name='relay-1'); t.start(); t.join()\n"
        "raise RuntimeError('boom')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCOREHOOK_", "WEBSITE_"))}
    done = subprocess.run([sys.executable, "-c", code, str(log)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    by_logger = {line["logger"]: line for line in lines}
    assert "careful" in by_logger["py.warnings"]["message"]
    thread, crash = (line for line in lines if line["logger"] == "devhost")
    assert thread["thread_name"] == "relay-1" and thread["error_type"] == "ZeroDivisionError"
    assert crash["level"] == "critical" and "RuntimeError: boom" in crash["exception"]


def test_when_the_worker_exports_the_app_adds_its_fields_to_the_workers_log_handler():
    """``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY``: the worker configured Azure Monitor (a logging handler
    on the root logger) before loading the app; the app does not configure it again, and the records it
    logs reach that handler with their bound fields. A fresh process: the providers are set once."""
    code = (
        "import json, logging\n"
        "from opentelemetry._logs import set_logger_provider\n"
        "from opentelemetry.instrumentation.logging.handler import LoggingHandler\n"
        "from opentelemetry.sdk._logs import LoggerProvider\n"
        "from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor\n"
        "exporter, provider = InMemoryLogRecordExporter(), LoggerProvider()\n"
        "provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))\n"
        "set_logger_provider(provider)\n"
        "logging.getLogger().addHandler(LoggingHandler(logger_provider=provider))  # what the worker does\n"
        "from shared.logs import bind, configure_logging, get_logger\n"
        "from shared.telemetry import configure_telemetry\n"
        f"print(configure_telemetry({{'{CONNECTION_STRING_SETTING}': '{DUMMY}',"
        " 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY': 'true'}))\n"
        "configure_logging('INFO', worker=True)\n"
        "with bind(correlation_id='tiny/1/w', event_id='e-1'):\n"
        "    get_logger('deployment').info('deployment decision', extra={'decision': 'promote', 'm': {'auc': 1}})\n"
        "[record] = [getattr(r, 'log_record', r) for r in exporter.get_finished_logs()]\n"
        "print(json.dumps({'body': record.body, **dict(record.attributes)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCOREHOOK_", "APPLICATIONINSIGHTS_"))}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    configured, exported = done.stdout.splitlines()
    record = json.loads(exported)
    assert configured == "True" and record["body"] == "deployment decision"
    assert (record["correlation_id"], record["event_id"], record["decision"]) == (
        "tiny/1/w",
        "e-1",
        "promote",
    )
    assert json.loads(record["m"]) == {"auc": 1}  # a dict travels as JSON text
