"""External drift signals from Azure ML, as one typed input: ``DriftSignal``.

* **Model monitor (v2), the canonical signal**: ``Microsoft.MachineLearningServices.RunStatusChanged`` whose
  run carries the tag ``azureml_modelmonitor_threshold_breached``. The monitor component writes it as
  ``"The signal '<signal>' has failed due to one or more features violating metric thresholds.\\n... are
  \\n['{"group":...,"metric_value":...,"metric_name":...,"threshold_value":...}', ...]\\n"`` (a Python list of
  Spark ``toJSON`` rows). ``breaches`` is that list as dicts (a plain JSON list of objects is read too);
  empty when the text has no readable list. A run status change without the tag is no drift signal:
  ``parse_drift_signal`` returns ``None``.
* **Dataset drift monitor (v1, legacy)**: ``Microsoft.MachineLearningServices.DatasetDriftDetected``, with
  the drift coefficient (as sent; the docs call it a 0-100 magnitude, the doc example sends 0.835) and the
  target window.

Both Event Grid schemas arrive as ``shared.events.Event``; ``data`` keys are read case-insensitively (the
docs show PascalCase, the REST spec camelCase). The event's topic must name an allowed workspace
(``EventSourceError``), as for model registrations. Required: ``data.runId`` for a breach;
``data.dataDriftId`` and ``data.runId`` for dataset drift (``MissingFieldError``). Any other event type is
an ``UnsupportedEventError``.

``signal_id`` is the dedupe key: ``azureml-monitor:{runId}`` (one signal per monitor run, however many
status changes it reports) and ``azureml-datadrift:{dataDriftId}:{runId}``.

**Model resolution** (``models`` maps a monitor name to the model it watches): the names tried are the
signal name from the tag text, then the run's ``experimentName`` (breach), or ``dataDriftName`` (legacy).
A key matches a name when equal to it, or when the name starts with ``key + "_"`` (monitor signals are
named ``<monitor>_<signal>``), case-insensitively; the longest matching key wins; the first name with a
match decides. Without a match: ``default_model``, else ``None`` (the caller rejects the signal).

Example:
    >>> from shared.events import parse_event
    >>> event = parse_event({"id": "e1", "eventType": "Microsoft.MachineLearningServices.DatasetDriftDetected",
    ...     "subject": "datadrifts/d1/runs/r1", "eventTime": "2026-01-01T00:00:00Z",
    ...     "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws",
    ...     "data": {"DataDriftId": "d1", "DataDriftName": "churn_drift", "RunId": "r1", "DriftCoefficient": 0.8,
    ...              "StartTime": "2026-01-01T00:00:00Z", "EndTime": "2026-01-02T00:00:00Z"}})
    >>> signal = parse_drift_signal(event, allowed_workspaces=("ws",), models={"churn": "churn-model"})
    >>> signal.signal_id, signal.model, signal.drift_coefficient, signal.window
    ('azureml-datadrift:d1:r1', 'churn-model', 0.8, ('2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z'))
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.errors import MalformedEventError, MissingFieldError, UnsupportedEventError
from shared.events import Event
from shared.ports import RetrainFinished
from shared.registrations import _lower, allowed_workspace

__all__ = [
    "BREACH_TAG",
    "DATASET_DRIFT_DETECTED",
    "RUN_COMPLETED",
    "RUN_STATUS_CHANGED",
    "DriftSignal",
    "parse_drift_signal",
    "parse_retraining_run",
]

RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
DATASET_DRIFT_DETECTED = "Microsoft.MachineLearningServices.DatasetDriftDetected"
BREACH_TAG = "azureml_modelmonitor_threshold_breached"

_SIGNAL_NAME = re.compile(r"\bsignal\s+(?:'(?P<quoted>[^']+)'|(?P<bare>\S+))\s+has\s+failed", re.IGNORECASE)
_MAX_LIST_CHARS = 256 * 1024  # a tag value longer than this is not parsed for breaches


@dataclass(frozen=True)
class DriftSignal:
    """A drift alarm raised outside Scorehook, for the drift decision to weigh.

    ``source`` is ``"azureml_monitor"`` or ``"azureml_dataset_drift"``; ``monitor`` the signal name (or the
    experiment name when the text names none) or the legacy ``dataDriftName``; ``message`` the breach text
    or a summary; ``breaches`` the offending features (``group``, ``metric_value``, ``metric_name``,
    ``threshold_value``) when the text lists them; ``window`` and ``drift_coefficient`` only for the legacy
    event; ``event_id`` the delivering event's id.
    """

    source: str
    signal_id: str
    workspace: str
    model: str | None
    monitor: str | None
    message: str
    breaches: tuple[dict[str, Any], ...] = ()
    window: tuple[str, str] | None = None
    drift_coefficient: float | None = None
    event_id: str = ""


def parse_drift_signal(
    event: Event,
    *,
    allowed_workspaces: tuple[str, ...],
    models: Mapping[str, str] | None = None,
    default_model: str | None = None,
) -> DriftSignal | None:
    """The drift signal an Azure ML event carries, or ``None`` for a run status change without a breach.

    Example:
        >>> from shared.events import parse_event
        >>> event = parse_event({"specversion": "1.0", "id": "e2", "type": RUN_STATUS_CHANGED,
        ...     "source": "/subscriptions/s/providers/Microsoft.MachineLearningServices/workspaces/ws",
        ...     "data": {"RunId": "run-7", "RunStatus": "Failed", "RunTags": {BREACH_TAG:
        ...         "The signal 'fraud_monitor_data_drift' has failed due to one or more features violating"
        ...         ' metric thresholds. [{"group": "amount", "metric_value": 0.3,'
        ...         ' "metric_name": "NormalizedWassersteinDistance", "threshold_value": 0.1}]'}}})
        >>> signal = parse_drift_signal(event, allowed_workspaces=("ws",), models={"fraud_monitor": "fraud"})
        >>> signal.signal_id, signal.monitor, signal.model, signal.breaches[0]["group"]
        ('azureml-monitor:run-7', 'fraud_monitor_data_drift', 'fraud', 'amount')
    """
    kind = event.type.lower()
    if kind not in (RUN_STATUS_CHANGED.lower(), DATASET_DRIFT_DETECTED.lower()):
        raise UnsupportedEventError(
            f"expected {RUN_STATUS_CHANGED} or {DATASET_DRIFT_DETECTED}, got {event.type!r}",
            event_type=event.type,
        )
    workspace = allowed_workspace(event, allowed_workspaces)
    if not isinstance(event.data, Mapping):
        raise MalformedEventError(
            f"event {event.id}: field 'data' must be an object, not {type(event.data).__name__}", field="data"
        )
    data = _lower(event.data)
    if kind == RUN_STATUS_CHANGED.lower():
        return _monitor_breach(event, data, workspace, models or {}, default_model)
    return _dataset_drift(event, data, workspace, models or {}, default_model)


def parse_retraining_run(event: Event, *, allowed_workspaces: tuple[str, ...]) -> RetrainFinished | None:
    """How one of our retraining jobs ended: ``RunCompleted`` (succeeded) or ``RunStatusChanged`` to
    Failed/Canceled (failed) of a run tagged ``scorehook.decision_id``; ``None`` for any other run event.

    Example:
        >>> from shared.events import parse_event
        >>> event = parse_event({"id": "e3", "eventType": RUN_COMPLETED, "subject": "experiments/x/runs/r9",
        ...     "topic": "/subscriptions/s/providers/Microsoft.MachineLearningServices/workspaces/ws",
        ...     "eventTime": "2026-01-01T00:00:00Z", "data": {"runId": "r9", "runTags": {
        ...         "scorehook.decision_id": "churn/3/20260101T000000Z", "scorehook.model": "churn"}}})
        >>> parse_retraining_run(event, allowed_workspaces=("ws",))
        RetrainFinished(decision_id='churn/3/20260101T000000Z', model='churn', run_id='r9', status='succeeded', details={'run_status': 'Completed', 'workspace': 'ws'})
    """
    kind = event.type.lower()
    if kind not in (RUN_COMPLETED.lower(), RUN_STATUS_CHANGED.lower()) or not isinstance(event.data, Mapping):
        return None
    data = _lower(event.data)
    tags = _lower(data.get("runtags"))
    decision, model = tags.get("scorehook.decision_id"), tags.get("scorehook.model")
    if not isinstance(decision, str) or not isinstance(model, str):
        return None
    workspace = allowed_workspace(event, allowed_workspaces)
    run_status = "Completed" if kind == RUN_COMPLETED.lower() else str(data.get("runstatus") or "")
    if run_status.lower() not in ("completed", "failed", "canceled", "cancelled"):
        return None
    run_id = str(_text(data, "runId", f"{event.type} event", required=True))
    status = "succeeded" if run_status.lower() == "completed" else "failed"
    return RetrainFinished(
        decision, model, run_id, status, {"run_status": run_status, "workspace": workspace}
    )


def _monitor_breach(
    event: Event, data: dict[str, Any], workspace: str, models: Mapping[str, str], default: str | None
) -> DriftSignal | None:
    where = "RunStatusChanged event"
    tag = _lower(data.get("runtags")).get(BREACH_TAG)
    if tag is None or (isinstance(tag, str) and not tag.strip()):
        return None
    if not isinstance(tag, str):
        raise MalformedEventError(
            f"{where}: run tag {BREACH_TAG!r} must be a string, not {type(tag).__name__}",
            field=f"data.runTags.{BREACH_TAG}",
        )
    run_id = _text(data, "runId", where, required=True)
    match = _SIGNAL_NAME.search(tag)
    signal_name = (match["quoted"] or match["bare"]) if match else None
    experiment = _text(data, "experimentName", where)
    return DriftSignal(
        source="azureml_monitor", signal_id=f"azureml-monitor:{run_id}", workspace=workspace,
        model=_resolve_model(models, (signal_name, experiment), default), monitor=signal_name or experiment,
        message=tag.strip(), breaches=_breaches(tag), event_id=event.id,
    )  # fmt: skip


def _dataset_drift(
    event: Event, data: dict[str, Any], workspace: str, models: Mapping[str, str], default: str | None
) -> DriftSignal:
    where = "DatasetDriftDetected event"
    drift_id = _text(data, "dataDriftId", where, required=True)
    run_id = _text(data, "runId", where, required=True)
    name = _text(data, "dataDriftName", where)
    coefficient = _number(data, "driftCoefficient", where)
    start, end = _time_text(data, "startTime", where), _time_text(data, "endTime", where)
    window = (start, end) if start and end else None
    summary = f"dataset drift monitor {name or drift_id!r} (run {run_id}) detected drift"
    if coefficient is not None:
        summary += f", drift coefficient {coefficient:g}"
    if window:
        summary += f", window {start} .. {end}"
    return DriftSignal(
        source="azureml_dataset_drift", signal_id=f"azureml-datadrift:{drift_id}:{run_id}", workspace=workspace,
        model=_resolve_model(models, (name,), default), monitor=name, message=summary, window=window,
        drift_coefficient=coefficient, event_id=event.id,
    )  # fmt: skip


def _text(data: dict[str, Any], name: str, where: str, *, required: bool = False) -> str | None:
    value = data.get(name.lower())
    if value in (None, ""):
        if required:
            raise MissingFieldError(f"data.{name}", where=where)
        return None
    if not isinstance(value, str):
        raise MalformedEventError(
            f"{where}: field 'data.{name}' must be a string, not {type(value).__name__}", field=f"data.{name}"
        )
    return value


def _number(data: dict[str, Any], name: str, where: str) -> float | None:
    value = data.get(name.lower())
    if value in (None, ""):
        return None
    number = math.nan
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            number = float(value)
        except ValueError:
            pass
    if not math.isfinite(number):
        raise MalformedEventError(
            f"{where}: field 'data.{name}' must be a number, not {value!r}", field=f"data.{name}"
        )
    return number


def _time_text(data: dict[str, Any], name: str, where: str) -> str | None:
    value = _text(data, name, where)
    if value is not None:
        try:
            datetime.fromisoformat(value.strip())
        except ValueError:
            raise MalformedEventError(
                f"{where}: field 'data.{name}' is not an ISO 8601 time: {value!r}", field=f"data.{name}"
            ) from None
    return value


def _breaches(text: str) -> tuple[dict[str, Any], ...]:
    """The offending features listed in a breach text, or ``()`` when it has no readable list.

    Example:
        >>> _breaches("... are \\n['{\\"group\\":\\"age\\",\\"metric_value\\":0.4}']\\n")
        ({'group': 'age', 'metric_value': 0.4},)
        >>> _breaches("The signal 'x' has failed due to one or more features violating metric thresholds. …")
        ()
    """
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start or end - start > _MAX_LIST_CHARS:
        return ()
    listed = text[start : end + 1]
    try:
        items = json.loads(listed)
    except ValueError:
        try:  # the monitor formats a Python list of JSON strings
            items = ast.literal_eval(listed)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return ()
    if not isinstance(items, list):
        return ()
    rows = []
    for item in items:
        if isinstance(item, str):
            try:
                item = json.loads(item)
            except ValueError:
                return ()
        if not isinstance(item, dict):
            return ()
        rows.append(item)
    return tuple(rows)


def _resolve_model(
    models: Mapping[str, str], names: tuple[str | None, ...], default: str | None
) -> str | None:
    keys = sorted(models, key=len, reverse=True)
    for name in names:
        if not name:
            continue
        for key in keys:
            if name.lower() == key.lower() or name.lower().startswith(key.lower() + "_"):
                return models[key]
    return default
