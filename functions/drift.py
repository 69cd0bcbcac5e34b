"""Drift monitoring: a timer evaluates the recent windows; external drift signals enter the same decision."""

from __future__ import annotations

import json

import azure.functions as func

from functions._runtime import drift_monitor, event_as_dict
from shared.errors import InputError
from shared.events import parse_event
from shared.logs import bind, get_logger
from shared.settings import get_settings
from shared.telemetry import incoming_traceparent, span

bp = func.Blueprint()
_log = get_logger("functions.drift")


@bp.function_name("evaluate_drift")
@bp.timer_trigger(arg_name="timer", schedule="%SCOREHOOK_DRIFT_SCHEDULE%", run_on_startup=False)
def evaluate_drift(timer: func.TimerRequest, context: func.Context) -> None:
    """Compact every recent drift window (merge its new profile parts) and evaluate those its last report
    does not cover (a missed tick is caught up by the next one; an unchanged window is left alone)."""
    with (
        bind(invocation_id=context.invocation_id, function="evaluate_drift"),
        span("evaluate_drift", parent=incoming_traceparent(context=context)),
    ):
        reports = drift_monitor().evaluate_due()
        _log.info(
            "drift windows evaluated",
            extra={"evaluated": len(reports), "drifted": sum(r["decision"] == "drift" for r in reports),
                   "inputs_missing_profiles": sum(r.get("inputs_missing_profiles", 0) for r in reports)},
        )  # fmt: skip


@bp.function_name("evaluate_drift_window")
@bp.queue_trigger(arg_name="msg", queue_name="drift-evaluations", connection="DataStorage")
def evaluate_drift_window(msg: func.QueueMessage, context: func.Context) -> None:
    """A window just closed (scoring opened the next one): compact it and evaluate it once more, unless its
    last report already covers it. A lost compaction race or a storage error raises: the message comes back."""
    with bind(invocation_id=context.invocation_id, function="evaluate_drift_window"):
        try:
            body = json.loads(msg.get_body())
            parent = incoming_traceparent(event=body if isinstance(body, dict) else None, context=context)
            model, version, window = str(body["model"]), str(body["version"]), str(body["window"])
        except (ValueError, KeyError, TypeError) as exc:
            _log.warning("drift evaluation message rejected", extra={"error": str(exc)})
            return
        try:
            with span("evaluate_drift_window", parent=parent, kind="consumer"):
                report = drift_monitor().evaluate_closed(model, version, window)
        except InputError as exc:
            _log.warning("closed drift window not evaluated", extra=exc.log_fields())
            return
        _log.info("closed drift window evaluated",
                  extra={"window": window, "decision": report["decision"] if report else "no data"})  # fmt: skip


@bp.function_name("on_drift_signal")
@bp.event_grid_trigger(arg_name="event")
def on_drift_signal(event: func.EventGridEvent, context: func.Context) -> None:
    """Azure ML ``RunStatusChanged`` with a model-monitor breach tag, or legacy ``DatasetDriftDetected``; and
    ``RunCompleted`` / ``RunStatusChanged`` (failed) of our own retraining jobs, which record how they ended.

    A bad or unmapped signal is logged and acknowledged; a transient failure raises so Event Grid retries.
    """
    from shared.drift.signals import parse_drift_signal, parse_retraining_run

    raw = event_as_dict(event)
    with (
        bind(invocation_id=context.invocation_id, function="on_drift_signal", event_id=event.id),
        span("on_drift_signal", parent=incoming_traceparent(event=raw, context=context), kind="consumer"),
    ):
        settings = get_settings()
        try:
            parsed = parse_event(raw)
            finished = parse_retraining_run(parsed, allowed_workspaces=settings.allowed_workspaces)
            if finished is not None:  # one of our retraining jobs ended
                drift_monitor().retraining_finished(finished)
                return
            signal = parse_drift_signal(
                parsed,
                allowed_workspaces=settings.allowed_workspaces,
                models=dict(_pairs(settings.drift_monitor_models)),
                default_model=_model_name(settings.model_uri),
            )
            if signal is None:
                _log.info("run status change without a drift breach: ignored")
                return
            drift_monitor().handle_signal(signal)
        except InputError as exc:
            _log.warning("drift signal rejected", extra=exc.log_fields())


def _pairs(text: str | None) -> list[tuple[str, str]]:
    """``monitor=model,other=model2`` as pairs."""
    pairs = (item.partition("=") for item in (text or "").split(",") if "=" in item)
    return [(k.strip(), v.strip()) for k, _, v in pairs]


def _model_name(reference: str) -> str | None:
    """The model name of ``models:/name@alias`` or ``models:/name/3`` (None for an ONNX blob reference)."""
    from shared.models import parse_model_reference

    return parse_model_reference(reference)[0] if reference.startswith("models:/") else None
