"""Traces and metrics for Application Insights (azure-monitor-opentelemetry), W3C trace context in and out.

:func:`configure_telemetry` runs once at start (``function_app.py``). When the host setting
``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set it calls ``configure_azure_monitor``: spans, metrics and the
``scorehook`` log records (with their correlation fields as attributes) are exported. Without it everything
here is a no-op that still carries an incoming ``traceparent`` through to what the app sends on.

* Spans: :func:`span` (an invocation, scoring a file, a model load, a drift evaluation, a deployment decision);
  its parent is the ``traceparent`` of the delivery when there is one (:func:`incoming_traceparent`: the
  CloudEvents ``traceparent`` extension attribute, a ``traceparent`` field in ``data`` or in a queue message,
  the HTTP header, or the worker's ``context.trace_context``). While a span is current, log lines carry
  ``trace_id`` and ``span_id``.
* Out: :func:`traceparent` is the current span's header value; :func:`with_traceparent` adds it to an event's
  ``data`` or a queue message body.
* Metrics (meter ``scorehook``): ``scorehook.files.scored`` (by status and model), ``scorehook.rows.scored``,
  ``scorehook.scoring.duration`` (s) and ``scorehook.scoring.rows_per_second``, ``scorehook.failures`` (by
  reason), ``scorehook.model.load.duration`` (s), ``scorehook.drift.distance`` (by model, feature, metric).

Example:
    >>> parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    >>> with span("score file", parent=parent, attributes={"blob": "incoming/a.csv"}):
    ...     traceparent().split("-")[1]
    '0af7651916cd43dd8448eb211c80319c'
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from shared.logs import bind, record_fields

__all__ = [
    "CONNECTION_STRING_SETTING",
    "configure_telemetry",
    "enabled",
    "incoming_traceparent",
    "record_drift",
    "record_failure",
    "record_model_load",
    "record_scoring",
    "scored",
    "span",
    "traceparent",
    "with_traceparent",
]

CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
# The worker configures Azure Monitor itself when one of these is true (then the app uses its providers).
WORKER_TELEMETRY_SETTINGS = ("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "PYTHON_ENABLE_OPENTELEMETRY")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
_lock = threading.Lock()
_state: dict[str, Any] = {"configured": False, "exporting": False}


@functools.cache
def _instruments() -> dict[str, Any]:
    """The tracer and the metric instruments (OpenTelemetry's proxies: no-ops until a provider is set).
    Imported on first use, so importing the app stays cheap."""
    from opentelemetry import metrics, trace

    meter = metrics.get_meter("scorehook")
    return {
        "tracer": trace.get_tracer("scorehook"),
        "files": meter.create_counter(
            "scorehook.files.scored", unit="{file}", description="Files whose scoring ended"
        ),
        "rows": meter.create_counter("scorehook.rows.scored", unit="{row}", description="Rows scored"),
        "duration": meter.create_histogram(
            "scorehook.scoring.duration", unit="s", description="Time to score one file"
        ),
        "throughput": meter.create_histogram(
            "scorehook.scoring.rows_per_second",
            unit="{row}/s",
            description="Rows per second of one scored file",
        ),
        "failures": meter.create_counter(
            "scorehook.failures", unit="{failure}", description="Failures by reason"
        ),
        "model_load": meter.create_histogram(
            "scorehook.model.load.duration", unit="s", description="Time to load one model version"
        ),
        "drift": meter.create_histogram(
            "scorehook.drift.distance",
            unit="1",
            description="Drift distance of one feature in one evaluated window",
        ),
    }


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes"}


def configure_telemetry(environ: Mapping[str, str] | None = None, **options: Any) -> bool:
    """Export to Application Insights when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set; once per process.

    Returns whether telemetry is exported. ``options`` go to ``configure_azure_monitor`` (tests add in-memory
    ``span_processors``, ``log_record_processors`` and ``metric_readers``). When the Functions worker exports
    telemetry itself (``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY``), its providers are used as they are.

    Example:
        >>> configure_telemetry()  # function_app.py, before the blueprints load   # doctest: +SKIP
        True
    """
    env = os.environ if environ is None else environ
    connection_string = (env.get(CONNECTION_STRING_SETTING) or "").strip()
    with _lock:
        if _state["configured"]:
            return bool(_state["exporting"])
        if not connection_string:
            return False
        _state["configured"] = True
        if any(_truthy(env.get(name)) for name in WORKER_TELEMETRY_SETTINGS):
            _bridge_log_handler("", "scorehook")  # the worker's exporter: our records get their fields too
            _state["exporting"] = True
            return True
        from azure.monitor.opentelemetry import configure_azure_monitor

        # The distro's default also probes the Azure VM metadata endpoint, which a Functions host never has.
        os.environ.setdefault("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "azure_app_service")

        if not env.get("OTEL_SERVICE_NAME"):
            from opentelemetry.sdk.resources import Resource

            options.setdefault("resource", Resource.create({"service.name": "scorehook"}))
        # every trace (files arrive at a few per second at most); OTEL_TRACES_SAMPLER still wins when set
        options.setdefault("sampling_ratio", 1.0)
        configure_azure_monitor(connection_string=connection_string, logger_name="scorehook", **options)
        _bridge_log_handler("scorehook")
        _state["exporting"] = True
        return True


def enabled() -> bool:
    """Whether telemetry is exported (``configure_telemetry`` found a connection string)."""
    return bool(_state["exporting"])


class _FieldsHandler(logging.Handler):
    """Wraps OpenTelemetry's ``LoggingHandler``: adds the bound correlation fields to a copy of each record
    and turns values OpenTelemetry cannot carry (dicts, mixed lists) into JSON text."""

    def __init__(self, inner: logging.Handler) -> None:
        super().__init__(inner.level)
        self.inner = inner

    def emit(self, record: logging.LogRecord) -> None:
        copy = logging.makeLogRecord(record.__dict__)
        for key, value in record_fields(record).items():
            copy.__dict__[key] = _attribute(value)
        self.inner.emit(copy)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()
        super().close()


def _attribute(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int | float):
        return value if value is not None else ""
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    return json.dumps(value, default=str, ensure_ascii=False)


def _bridge_log_handler(*names: str) -> None:
    """Wrap OpenTelemetry's logging handlers on these loggers (ours, or the worker's on the root logger)."""
    for name in names:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            kind = type(handler)
            if kind.__name__ == "LoggingHandler" and kind.__module__.startswith("opentelemetry"):
                logger.removeHandler(handler)
                logger.addHandler(_FieldsHandler(handler))


def _valid(value: Any) -> str | None:
    text = value.strip().lower() if isinstance(value, str) else ""
    return text if _TRACEPARENT.match(text) and not text.startswith("ff") else None


def incoming_traceparent(
    *, event: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None, context: Any = None
) -> str | None:
    """The W3C ``traceparent`` a delivery carries, checked (untrusted): the event's (a CloudEvents extension
    attribute, or a ``traceparent`` field of its ``data`` or of a queue message body), else the HTTP header,
    else the worker's ``context.trace_context.trace_parent``. ``None`` when none is valid.

    Example:
        >>> incoming_traceparent(event={"specversion": "1.0", "traceparent":
        ...     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
        '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
        >>> incoming_traceparent(headers={"traceparent": "not a traceparent"}) is None
        True
    """
    candidates: list[Any] = []
    if isinstance(event, Mapping):
        lowered = {str(k).lower(): v for k, v in event.items()}
        candidates.append(lowered.get("traceparent"))
        data = lowered.get("data")
        if isinstance(data, Mapping):
            candidates.append({str(k).lower(): v for k, v in data.items()}.get("traceparent"))
    if headers is not None:
        candidates.append({str(k).lower(): v for k, v in dict(headers).items()}.get("traceparent"))
    trace_context = getattr(context, "trace_context", None) if context is not None else None
    candidates.append(getattr(trace_context, "trace_parent", None) if trace_context is not None else None)
    for candidate in candidates:
        found = _valid(candidate)
        if found:
            return found
    return None


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent: str | None = None,
    kind: str = "internal",
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """A span around a block, child of ``parent`` (a ``traceparent``) or of the current span. An exception
    is recorded on it (and re-raised); log lines inside carry its ``trace_id`` and ``span_id``."""
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind, Status, StatusCode

    context = extract({"traceparent": parent}) if parent else None
    with _instruments()["tracer"].start_as_current_span(
        name, context=context, kind=SpanKind[kind.upper()], attributes=_attributes(attributes)
    ) as current:
        span_context = current.get_span_context()
        ids = (
            {
                "trace_id": format(span_context.trace_id, "032x"),
                "span_id": format(span_context.span_id, "016x"),
            }
            if span_context.is_valid
            else {}
        )
        with bind(**ids):
            try:
                yield current
            except BaseException as exc:
                current.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))
                raise


def _attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {f"scorehook.{k}" if "." not in k else k: _attribute(v)
            for k, v in (attributes or {}).items() if v is not None}  # fmt: skip


def traceparent() -> str | None:
    """The current span's ``traceparent`` header value (``None`` outside any trace).

    Example:
        >>> traceparent() is None
        True
    """
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


def with_traceparent(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` with the current ``traceparent`` (an event's ``data``, a queue message), unchanged outside a trace.

    Example:
        >>> with span("x", parent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"):
        ...     with_traceparent({"a": 1})["traceparent"][:35]
        '00-0af7651916cd43dd8448eb211c80319c'
    """
    current = traceparent()
    return {**body, "traceparent": current} if current else dict(body)


def scored(score: Callable[[Any], Any], event: Any) -> Any:
    """``score(event)`` (``ScoringService.score``) inside a ``score file`` span, with its metrics: the file
    counted by status, its rows, duration and rows/s, and a failure by reason (also when it raises).

    Example:
        >>> from types import SimpleNamespace as NS
        >>> scored(lambda e: NS(status="succeeded", model="models:/m/1", rows=3, reason=None),
        ...        NS(blob_path="incoming/a.csv", id="e-1")).rows
        3
    """
    started = time.perf_counter()
    with span("score file", attributes={"blob": getattr(event, "blob_path", None),
                                        "event_id": getattr(event, "id", None)}) as current:  # fmt: skip
        try:
            outcome = score(event)
        except Exception as exc:
            record_failure(getattr(exc, "reason", None) or "error", where="scoring")
            raise
        current.set_attributes(_attributes({"status": outcome.status, "rows": outcome.rows,
                                            "model": outcome.model, "reason": outcome.reason}))  # fmt: skip
        record_scoring(
            outcome.status, model=outcome.model, rows=outcome.rows, seconds=time.perf_counter() - started
        )
        if outcome.status == "failed":
            record_failure(outcome.reason, where="scoring")
        return outcome


# -- metrics -------------------------------------------------------------------------------------------------
def record_scoring(status: str, *, model: str | None, rows: int, seconds: float) -> None:
    """One file's scoring ended: files scored, rows, duration and rows/s (a success only for the last two)."""
    labels = {"status": status, "model": model or ""}
    _instruments()["files"].add(1, labels)
    if status == "succeeded":
        _instruments()["rows"].add(rows, {"model": model or ""})
        _instruments()["duration"].record(seconds, {"model": model or ""})
        if seconds > 0:
            _instruments()["throughput"].record(rows / seconds, {"model": model or ""})


def record_failure(reason: str | None, *, where: str, **labels: Any) -> None:
    """One failure, by reason (a ``shared.errors.FAILURE_REASONS`` code) and where it happened."""
    _instruments()["failures"].add(1, {"reason": reason or "unknown", "where": where,
                      **{k: str(v) for k, v in labels.items() if v is not None}})  # fmt: skip


def record_model_load(model: str, version: str, seconds: float) -> None:
    """A model version was loaded (downloaded and opened) in ``seconds``."""
    _instruments()["model_load"].record(seconds, {"model": model, "model_version": version})


def record_drift(report: Mapping[str, Any]) -> None:
    """The distances of every feature of one drift report (``scorehook.drift-report/v1``)."""
    model, version = str(report.get("model") or ""), str(report.get("model_version") or "")
    for feature in report.get("features") or ():
        if not isinstance(feature, Mapping):
            continue
        values = {
            str(feature.get("metric") or "distance"): feature.get("value"),
            **(feature.get("other_metrics") or {}),
        }
        for metric, value in values.items():
            if (
                isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
            ):  # distances only
                _instruments()["drift"].record(float(value), {"model": model, "model_version": version,
                                             "feature": str(feature.get("name")), "metric": metric})  # fmt: skip
