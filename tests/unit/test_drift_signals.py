"""Azure ML drift alarms (model-monitor breaches, legacy dataset drift) become one typed ``DriftSignal``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from shared.drift.signals import BREACH_TAG, DriftSignal, parse_drift_signal
from shared.errors import EventSourceError, MalformedEventError, MissingFieldError, UnsupportedEventError
from shared.events import Event, parse_events

EVENTS = Path(__file__).resolve().parents[1] / "events"
WORKSPACES = ("scorehook-ws",)
MODELS = {"credit_card_fraud_monitor": "fraud-model", "myDriftMonitor": "churn-model"}
BREACH_FILES = [
    "azureml_run_status_changed_breach.json",
    "azureml_run_status_changed_breach_cloudevents.json",
]
DRIFT_FILES = ["azureml_dataset_drift_detected.json", "azureml_dataset_drift_detected_cloudevents.json"]
EXPECTED_BREACHES = (
    {"group": "amount", "metric_value": 0.3125, "metric_name": "NormalizedWassersteinDistance", "threshold_value": 0.1},
    {"group": "merchant_category", "metric_value": 0.2, "metric_name": "JensenShannonDistance", "threshold_value": 0.1},
)  # fmt: skip


def _from_file(name: str) -> Event:
    [event] = parse_events((EVENTS / name).read_bytes())
    return event


def _raw(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())[0]


def _parse(event: Event | dict[str, Any], **kwargs: Any) -> DriftSignal | None:
    if isinstance(event, dict):
        [event] = parse_events([event])
    kwargs.setdefault("allowed_workspaces", WORKSPACES)
    return parse_drift_signal(event, **kwargs)


def _with_tag(text: Any) -> dict[str, Any]:
    raw = _raw(BREACH_FILES[0])
    raw["data"]["runTags"][BREACH_TAG] = text
    return raw


@pytest.mark.parametrize("name", BREACH_FILES, ids=["eventgrid-camel", "cloudevents-Pascal"])
def test_monitor_breach_in_both_schemas_gives_the_same_signal_with_its_breaches(name):
    signal = _parse(_from_file(name), models=MODELS)
    assert signal == DriftSignal(
        source="azureml_monitor",
        signal_id="azureml-monitor:credit_card_fraud_monitor_run_42",
        workspace="scorehook-ws",
        model="fraud-model",
        monitor="credit_card_fraud_monitor_data_drift",
        message=_raw(BREACH_FILES[0])["data"]["runTags"][BREACH_TAG].strip(),
        breaches=EXPECTED_BREACHES,
        event_id="5f0d2b0e-1c2a-4f7e-9f7e-2a4e5b6c7d8e",
    )


def test_breach_text_with_a_plain_json_list_of_objects_is_read_too():
    text = "The signal 'credit_card_fraud_monitor_data_drift' has failed ... are \n" + json.dumps(
        list(EXPECTED_BREACHES)
    )
    assert _parse(_with_tag(text)).breaches == EXPECTED_BREACHES


@pytest.mark.parametrize(
    "text",
    [
        "Signal credit_card_fraud_monitor_data_drift has failed due to one or more features violating metric "
        "thresholds. …",
        "The signal 'credit_card_fraud_monitor_data_drift' has failed ... are \n['not json', '{\"group\": 1}']",
        "The signal 'credit_card_fraud_monitor_data_drift' has failed ... are \n[1, 2]",
        "The signal 'credit_card_fraud_monitor_data_drift' has failed ... are \n['{\"group\": \"a\"'",
        "The signal 'credit_card_fraud_monitor_data_drift' has failed ... are \n[__import__('os')]",
    ],
    ids=["no-list", "bad-item", "not-objects", "unclosed", "code"],
)
def test_breach_text_without_a_readable_list_still_gives_a_signal_with_no_breaches(text):
    signal = _parse(_with_tag(text), models=MODELS)
    assert signal is not None
    assert (signal.breaches, signal.monitor, signal.model, signal.message) == (
        (), "credit_card_fraud_monitor_data_drift", "fraud-model", text.strip())  # fmt: skip


def test_breach_text_without_a_signal_name_falls_back_to_the_experiment_name():
    signal = _parse(_with_tag("thresholds breached"), models=MODELS)
    assert (signal.monitor, signal.model) == ("credit_card_fraud_monitor", "fraud-model")


@pytest.mark.parametrize("tag", [None, "", "  "], ids=["null", "empty", "blank"])
def test_plain_run_status_change_is_no_drift_signal(tag):
    assert _parse(_from_file("azureml_run_status_changed_plain.json")) is None
    assert _parse(_with_tag(tag)) is None


def test_plain_run_status_change_from_another_workspace_is_still_refused():
    with pytest.raises(EventSourceError):
        _parse(_from_file("azureml_run_status_changed_plain.json"), allowed_workspaces=("other-ws",))


@pytest.mark.parametrize("name", DRIFT_FILES, ids=["eventgrid-Pascal", "cloudevents-camel"])
def test_legacy_dataset_drift_gives_coefficient_window_and_monitor(name):
    signal = _parse(_from_file(name), models=MODELS)
    assert signal is not None
    assert signal.source == "azureml_dataset_drift"
    assert signal.signal_id == (
        "azureml-datadrift:01d29aa4-e6a4-470a-9ef3-66660d21f8ef:01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380"
    )
    assert (signal.workspace, signal.monitor, signal.model, signal.breaches) == (
        "scorehook-ws", "myDriftMonitor", "churn-model", ())  # fmt: skip
    assert signal.drift_coefficient == pytest.approx(0.83503490684792081)
    assert signal.window == ("2019-07-04T00:00:00+00:00", "2019-07-05T00:00:00+00:00")
    assert "myDriftMonitor" in signal.message and "0.835035" in signal.message
    assert signal.event_id == "831e1650-001e-001b-66ab-eeb76e069631"


def test_legacy_dataset_drift_without_times_or_coefficient_has_none():
    raw = _raw(DRIFT_FILES[0])
    for key in ("DriftCoefficient", "EndTime"):
        del raw["data"][key]
    signal = _parse(raw)
    assert (signal.drift_coefficient, signal.window) == (None, None)


def test_legacy_coefficient_sent_as_a_string_is_a_number():
    raw = _raw(DRIFT_FILES[0])
    raw["data"]["DriftCoefficient"] = "83.5"
    assert _parse(raw).drift_coefficient == 83.5


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [("DriftCoefficient", "high", "data.driftCoefficient"), ("DriftCoefficient", True, "data.driftCoefficient"),
     ("StartTime", "yesterday", "data.startTime"), ("RunId", 17, "data.runId")],
)  # fmt: skip
def test_legacy_fields_of_the_wrong_type_are_malformed(key, value, field):
    raw = _raw(DRIFT_FILES[0])
    raw["data"][key] = value
    with pytest.raises(MalformedEventError) as caught:
        _parse(raw)
    assert caught.value.details["field"] == field


def test_lower_cased_keys_everywhere_give_the_same_signal():
    def lower(value: Any) -> Any:
        return {k.lower(): lower(v) for k, v in value.items()} if isinstance(value, dict) else value

    for name in BREACH_FILES + DRIFT_FILES:
        raw = _raw(name)
        lowered = {k.lower(): lower(v) if k == "data" else v for k, v in raw.items()}
        assert _parse(lowered, models=MODELS) == _parse(raw, models=MODELS), name


def test_event_type_is_matched_case_insensitively():
    raw = _raw(BREACH_FILES[0])
    raw["eventType"] = raw["eventType"].lower()
    assert _parse(raw).signal_id == "azureml-monitor:credit_card_fraud_monitor_run_42"


@pytest.mark.parametrize(
    ("name", "key", "field"),
    [(BREACH_FILES[0], "runId", "data.runId"), (BREACH_FILES[1], "RunId", "data.runId"),
     (DRIFT_FILES[0], "RunId", "data.runId"), (DRIFT_FILES[0], "DataDriftId", "data.dataDriftId"),
     (DRIFT_FILES[1], "dataDriftId", "data.dataDriftId")],
)  # fmt: skip
@pytest.mark.parametrize("absent", ["deleted", "empty"])
def test_missing_required_field_is_named(name, key, field, absent):
    raw = _raw(name)
    if absent == "deleted":
        del raw["data"][key]
    else:
        raw["data"][key] = ""
    with pytest.raises(MissingFieldError) as caught:
        _parse(raw)
    assert caught.value.field == field
    assert field in str(caught.value)


@pytest.mark.parametrize("name", BREACH_FILES + DRIFT_FILES)
def test_event_from_a_workspace_not_allowed_is_refused(name):
    with pytest.raises(EventSourceError, match="scorehook-ws"):
        _parse(_from_file(name), allowed_workspaces=("prod-ws",))


def test_event_without_a_workspace_topic_is_refused():
    raw = _raw(BREACH_FILES[0])
    raw["topic"] = "/subscriptions/s/resourceGroups/rg"
    with pytest.raises(EventSourceError):
        _parse(raw)


def test_workspace_is_matched_case_insensitively():
    assert _parse(_from_file(DRIFT_FILES[0]), allowed_workspaces=("ScoreHook-WS",)) is not None


@pytest.mark.parametrize(
    "name",
    ["model_registered_eventgrid.json", "blob_created_eventgrid.json"],
    ids=["ModelRegistered", "BlobCreated"],
)
def test_other_event_types_are_unsupported(name):
    with pytest.raises(UnsupportedEventError):
        _parse(_from_file(name))


def test_run_completed_is_unsupported_even_with_the_breach_tag():
    raw = _with_tag("The signal 'x' has failed due to one or more features violating metric thresholds.")
    raw["eventType"] = "Microsoft.MachineLearningServices.RunCompleted"
    with pytest.raises(UnsupportedEventError):
        _parse(raw)


def test_data_that_is_not_an_object_is_malformed():
    raw = _raw(BREACH_FILES[0])
    raw["data"] = ["not", "an", "object"]
    with pytest.raises(MalformedEventError):
        _parse(raw)


def test_breach_tag_that_is_not_a_string_is_malformed():
    with pytest.raises(MalformedEventError):
        _parse(_with_tag({"nested": True}))


def test_model_exact_monitor_name_wins_over_a_prefix_key():
    models = {
        "credit_card_fraud_monitor": "fraud",
        "credit_card_fraud_monitor_data_drift": "fraud-drift-only",
    }
    assert _parse(_from_file(BREACH_FILES[0]), models=models).model == "fraud-drift-only"


def test_model_prefix_needs_an_underscore_boundary_and_longest_key_wins():
    event = _from_file(BREACH_FILES[0])
    assert _parse(event, models={"credit_card": "a", "credit_card_fraud": "b"}).model == "b"
    # "credit_card_fraud_mon" is a prefix of the text but not of a whole "_"-separated part
    assert _parse(event, models={"credit_card_fraud_mon": "x"}).model is None


def test_model_keys_are_matched_case_insensitively():
    assert _parse(_from_file(DRIFT_FILES[0]), models={"MYDRIFTMONITOR": "churn"}).model == "churn"


def test_model_falls_back_to_the_default_then_none():
    for name in BREACH_FILES + DRIFT_FILES:
        event = _from_file(name)
        assert _parse(event, models={"unrelated": "m"}, default_model="fallback").model == "fallback"
        assert _parse(event, models={"unrelated": "m"}).model is None
        assert _parse(event).model is None


def test_signal_id_dedupes_repeated_deliveries_of_one_monitor_run():
    first = _raw(BREACH_FILES[0])
    again = copy.deepcopy(first)
    again["id"] = "another-delivery"
    assert _parse(first).signal_id == _parse(again).signal_id
