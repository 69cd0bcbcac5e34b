"""Typed events (``shared.events``): both wire schemas, strict checks, lenient extras, round trips."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.errors import (
    BadNameError,
    InputError,
    MalformedEventError,
    MissingFieldError,
    UnsupportedEventError,
)
from shared.events import (
    BLOB_CREATED,
    BlobCreated,
    Event,
    SubscriptionValidation,
    parse_blob_created,
    parse_event,
    parse_events,
)

EVENTS = Path(__file__).resolve().parent.parent / "events"
_DELETE = object()


def load(name: str) -> Any:
    """A fresh copy of a fixture file from ``tests/events``."""
    return json.loads((EVENTS / name).read_text())


def one(name: str) -> dict[str, Any]:
    """The only event of a fixture file (they are arrays, as Event Grid delivers them)."""
    (event,) = load(name)
    return event


def fields_of(event: Event, *, without: tuple[str, ...] = ("schema",)) -> dict[str, Any]:
    return {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name not in without}


def test_both_schemas_parse_to_the_same_typed_blob_created():
    (eventgrid,) = parse_events((EVENTS / "blob_created_eventgrid.json").read_bytes())
    (cloudevent,) = parse_events((EVENTS / "blob_created_cloudevents.json").read_text())

    assert isinstance(eventgrid, BlobCreated) and isinstance(cloudevent, BlobCreated)
    assert (eventgrid.schema, cloudevent.schema) == ("eventgrid", "cloudevents")
    assert fields_of(eventgrid) == fields_of(cloudevent)
    assert (eventgrid.account, eventgrid.container, eventgrid.blob_name) == (
        "my-storage-account",
        "test-container",
        "new-file.txt",
    )
    assert eventgrid.blob_path == "test-container/new-file.txt"
    assert (eventgrid.api, eventgrid.content_type) == ("PutBlockList", "text/plain")
    assert eventgrid.blob_type == "BlockBlob"
    assert eventgrid.content_length == 524288
    assert eventgrid.etag == '"0x8D4BCC2E4835CD0"'
    assert eventgrid.sequencer == "00000000000004420000000000028963"
    assert eventgrid.source.endswith("/storageAccounts/my-storage-account")
    assert eventgrid.data["storageDiagnostics"] == {"batchId": "b68529f3-68cd-4744-baa4-3c0498ec19f0"}


@pytest.mark.parametrize(
    "stamp",
    ["2017-06-26T18:41:00.9584103Z", "2017-06-26T20:41:00.9584103+02:00", "2017-06-26T18:41:00.958410"],
)
def test_timestamps_with_seven_digits_or_offsets_become_utc_microseconds(stamp: str):
    raw = one("blob_created_eventgrid.json") | {"eventTime": stamp}

    event = parse_event(raw)

    assert event.time == datetime(2017, 6, 26, 18, 41, 0, 958410, tzinfo=UTC)
    assert event.time is not None and event.time.tzinfo is UTC


def test_unknown_top_level_fields_are_kept_in_extensions_not_rejected():
    eventgrid = one("blob_created_eventgrid.json") | {"deadLetterReason": "MaxDeliveryAttemptsExceeded"}
    cloudevent = one("blob_created_cloudevents.json") | {"traceparent": "00-0af7-01", "datacontenttype": "x"}

    parsed_eventgrid, parsed_cloudevent = parse_event(eventgrid), parse_event(cloudevent)

    assert parsed_eventgrid.extensions == {"deadLetterReason": "MaxDeliveryAttemptsExceeded"}
    assert parsed_cloudevent.extensions == {"traceparent": "00-0af7-01", "datacontenttype": "x"}
    assert parsed_cloudevent.as_cloudevent()["traceparent"] == "00-0af7-01"
    assert isinstance(parsed_cloudevent, BlobCreated) and parsed_cloudevent.blob_name == "new-file.txt"


def _without(raw: dict[str, Any], path: str, replacement: Any) -> dict[str, Any]:
    *parents, leaf = path.split(".")
    target = raw
    for key in parents:
        target = target[key]
    if replacement is _DELETE:
        del target[leaf]
    else:
        target[leaf] = replacement
    return raw


@pytest.mark.parametrize(
    ("fixture", "field", "replacement"),
    [
        ("blob_created_eventgrid.json", "id", _DELETE),
        ("blob_created_eventgrid.json", "id", ""),
        ("blob_created_eventgrid.json", "eventType", _DELETE),
        ("blob_created_eventgrid.json", "subject", _DELETE),
        ("blob_created_eventgrid.json", "eventTime", _DELETE),
        ("blob_created_eventgrid.json", "data", _DELETE),
        ("blob_created_eventgrid.json", "data.url", _DELETE),
        ("blob_created_eventgrid.json", "data.eTag", ""),
        ("blob_created_cloudevents.json", "id", _DELETE),
        ("blob_created_cloudevents.json", "source", _DELETE),
        ("blob_created_cloudevents.json", "type", None),
        ("blob_created_cloudevents.json", "specversion", ""),
        ("blob_created_cloudevents.json", "data.eTag", _DELETE),
        ("subscription_validation.json", "data.validationCode", _DELETE),
    ],
)
def test_a_missing_required_field_is_named(fixture: str, field: str, replacement: Any):
    raw = _without(one(fixture), field, replacement)

    with pytest.raises(MissingFieldError) as caught:
        parse_event(raw)

    assert caught.value.field == field
    assert f"required field {field!r} is missing" in str(caught.value)
    assert isinstance(caught.value, InputError)  # final: recorded, never retried


def test_the_missing_url_fixture_is_rejected():
    with pytest.raises(MissingFieldError, match=r"BlobCreated event 831e1650-\S+: required field 'data.url'"):
        parse_events(load("blob_created_missing_url.json"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'[{"id": "a", ', "not valid JSON: Expecting property name enclosed in "),
        (b'[{"id": "a", ', "at line 1 column 14 (char 13)"),
        ("", "not valid JSON: Expecting value at line 1 column 1 (char 0)"),
        (b"\xff[]", "not UTF-8 JSON"),
        ("42", "must be a JSON array of events or an event object, not a number"),
        ('["just text"]', "event[0]: an event must be a JSON object, not a string"),
    ],
)
def test_a_body_that_is_not_json_events_is_malformed(body: bytes | str, message: str):
    with pytest.raises(MalformedEventError) as caught:
        parse_events(body)

    assert message in str(caught.value)


def test_an_error_in_an_array_names_the_element_and_keeps_its_class():
    good = one("blob_created_eventgrid.json")
    body = [good, one("subscription_validation.json"), one("blob_created_missing_url.json")]

    with pytest.raises(MissingFieldError) as caught:
        parse_events(json.dumps(body))

    assert str(caught.value).startswith("event[2]: BlobCreated event")
    assert caught.value.field == "data.url"
    assert caught.value.to_record()["index"] == 2


def test_a_single_object_body_is_one_event():
    events = parse_events(json.dumps(one("subscription_validation.json")).encode())

    assert [type(event) for event in events] == [SubscriptionValidation]


def test_subject_and_url_naming_different_blobs_is_a_bad_event():
    with pytest.raises(BadNameError) as caught:
        parse_events(load("blob_created_subject_mismatch.json"))

    assert "test-container/'new-file.txt'" in str(caught.value)
    assert "testcontainer/'new-file.txt'" in str(caught.value)


def test_a_subject_that_is_not_a_blob_subject_is_a_bad_event():
    raw = one("blob_created_eventgrid.json") | {"subject": "/containers/test-container/new-file.txt"}

    with pytest.raises(BadNameError, match="is not /blobServices/default/containers/"):
        parse_event(raw)


@pytest.mark.parametrize(
    ("fixture", "origin"),
    [("blob_created_azurite_eventgrid.json", "topic"), ("blob_created_cloudevents.json", "source")],
)
def test_topic_account_disagreeing_with_url_account_is_a_bad_event(fixture: str, origin: str):
    raw = one(fixture)
    raw[origin] = raw[origin].rsplit("/", 1)[0] + "/otheraccount"

    with pytest.raises(BadNameError) as caught:
        parse_event(raw)

    assert f"{origin} names storage account 'otheraccount'" in str(caught.value)
    assert caught.value.details["topic_account"] == "otheraccount"


def test_path_style_azurite_url_gives_account_container_and_decoded_blob_name():
    (event,) = parse_events(load("blob_created_azurite_eventgrid.json"))

    assert isinstance(event, BlobCreated)
    assert (event.account, event.container) == ("devstoreaccount1", "incoming")
    assert event.blob_name == "data/batch 1.csv"
    assert event.blob_path == "incoming/data/batch 1.csv"
    assert event.url == "http://127.0.0.1:10000/devstoreaccount1/incoming/data/batch%201.csv"
    assert event.time == datetime(2026, 11, 23, 10, 15, 42, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://acct.blob.core.windows.net/c/dir/a%2Bb.csv", ("acct", "c", "dir/a+b.csv")),
        ("https://acct.dfs.core.windows.net/c/dir/a%2Bb.csv", ("acct", "c", "dir/a+b.csv")),
        ("https://acct.blob.core.chinacloudapi.cn/c/dir/a%2Bb.csv", ("acct", "c", "dir/a+b.csv")),
        ("http://acct.blob.localhost:10000/c/dir/a%2Bb.csv", ("acct", "c", "dir/a+b.csv")),
        ("http://localhost:10000/acct/c/dir/a%2Bb.csv", ("acct", "c", "dir/a+b.csv")),
        ("http://azurite:10000/acct/c/dir/a%2Bb.csv", ("acct", "c", "dir/a+b.csv")),
        ("http://[::1]:10000/acct/c/dir/a%2Bb.csv", ("acct", "c", "dir/a+b.csv")),
    ],
)
def test_host_style_and_path_style_urls(url: str, expected: tuple[str, str, str]):
    raw = {
        "id": "e",
        "eventType": BLOB_CREATED,
        "eventTime": "2026-01-01T00:00:00Z",
        "subject": "/blobServices/default/containers/c/blobs/dir/a+b.csv",
        "data": {"url": url, "eTag": "1"},
    }

    event = parse_blob_created(raw)

    assert (event.account, event.container, event.blob_name) == expected
    assert event.source == "" and "topic" not in event.as_eventgrid()  # no topic: published by the SDK


@pytest.mark.parametrize(
    "url",
    [
        "ftp://acct.blob.core.windows.net/c/b",
        "https://acct.blob.core.windows.net/c",
        "http://127.0.0.1:10000/acct/c",
    ],
)
def test_a_url_that_names_no_blob_is_a_bad_event(url: str):
    raw = one("blob_created_eventgrid.json")
    raw["data"]["url"] = url

    with pytest.raises(BadNameError, match="is not a blob URL") as caught:
        parse_event(raw)

    assert caught.value.details["field"] == "data.url"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", 7, "field 'id' must be a string, not a number"),
        ("eventTime", "yesterday", "field 'eventTime' is not an ISO 8601 time: 'yesterday'"),
        ("data.contentLength", "a lot", "field 'data.contentLength' must be an integer, not a string"),
        ("data.url", ["x"], "field 'data.url' must be a string, not an array"),
        ("data", "not an object", "field 'data' must be an object, not a string"),
    ],
)
def test_a_field_of_the_wrong_type_is_malformed(field: str, value: Any, message: str):
    raw = _without(one("blob_created_eventgrid.json"), field, value)

    with pytest.raises(MalformedEventError) as caught:
        parse_event(raw)

    assert message in str(caught.value)


def test_optional_blob_fields_may_be_absent_and_content_length_may_be_a_numeric_string():
    raw = one("blob_created_eventgrid.json")
    raw["data"] = {"url": raw["data"]["url"], "eTag": "0x1", "contentLength": "12"}

    event = parse_blob_created(raw)

    assert (event.api, event.content_type, event.blob_type, event.sequencer) == (None, None, None, None)
    assert event.content_length == 12


def test_subscription_validation_is_parsed_with_its_code():
    (event,) = parse_events(load("subscription_validation.json"))

    assert isinstance(event, SubscriptionValidation)
    assert event.validation_code == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
    assert event.validation_url is not None and event.validation_url.startswith(
        "https://rp-eastus2.eventgrid.azure.net:553/"
    )
    assert (event.subject, event.data_version) == ("", "1")  # an empty subject is allowed in the envelope


def test_generic_events_keep_their_data_as_it_came():
    raw = {
        "id": "e",
        "eventType": "Demo.Thing",
        "subject": "s",
        "eventTime": "2026-01-01T00:00:00Z",
        "data": "[1, 2]",
        "dataVersion": 2,
    }

    event = parse_event(raw)

    assert type(event) is Event
    assert (event.data, event.data_version) == ("[1, 2]", "2")


def test_strict_blob_created_parser_rejects_other_types():
    with pytest.raises(UnsupportedEventError) as caught:
        parse_blob_created(one("subscription_validation.json"))

    assert f"expected {BLOB_CREATED}, not 'Microsoft.EventGrid.SubscriptionValidationEvent'" in str(
        caught.value
    )
    assert caught.value.details == {"event_type": "Microsoft.EventGrid.SubscriptionValidationEvent"}


def test_event_types_and_attribute_names_match_case_insensitively():
    raw = one("blob_created_cloudevents.json")
    raw["specVersion"] = raw.pop("specversion")  # as in an Azure spec example
    raw["type"] = "microsoft.storage.blobcreated"

    event = parse_blob_created(raw)

    assert event.schema == "cloudevents"
    assert event.extensions == {}
    assert (event.account, event.blob_name) == ("my-storage-account", "new-file.txt")


@pytest.mark.parametrize(
    "fixture",
    [
        "blob_created_eventgrid.json",
        "blob_created_cloudevents.json",
        "blob_created_azurite_eventgrid.json",
        "subscription_validation.json",
    ],
)
def test_round_trips_through_both_schemas(fixture: str):
    event = parse_event(one(fixture))

    via_cloudevent = parse_event(json.loads(json.dumps(event.as_cloudevent())))
    via_eventgrid = parse_event(json.loads(json.dumps(event.as_eventgrid())))

    assert type(via_cloudevent) is type(event) is type(via_eventgrid)
    assert fields_of(via_cloudevent) == fields_of(event)
    envelope_only = ("schema", "extensions")  # the Event Grid schema has no extension attributes
    assert fields_of(via_eventgrid, without=envelope_only) == fields_of(event, without=envelope_only)
    assert (via_cloudevent.schema, via_eventgrid.schema) == ("cloudevents", "eventgrid")


def test_wire_shapes_of_both_schemas():
    event = parse_event(one("blob_created_cloudevents.json") | {"traceparent": "00-ab-cd-01"})

    eventgrid, cloudevent = event.as_eventgrid(), event.as_cloudevent()

    assert sorted(eventgrid) == sorted(
        ["id", "topic", "subject", "eventType", "eventTime", "data", "dataVersion", "metadataVersion"]
    )
    assert (eventgrid["eventTime"], eventgrid["metadataVersion"]) == ("2017-06-26T18:41:00.958410Z", "1")
    assert eventgrid["topic"] == event.source and eventgrid["eventType"] == BLOB_CREATED
    assert sorted(cloudevent) == sorted(
        ["specversion", "id", "source", "subject", "type", "time", "data", "traceparent"]
    )
    assert (cloudevent["specversion"], cloudevent["time"]) == ("1.0", "2017-06-26T18:41:00.958410Z")


@pytest.mark.parametrize("version", ["0.3", "1", 1.0, None, "1.0 "])
def test_cloudevents_other_than_specversion_1_0_are_unsupported(version):
    from shared.errors import InputError

    with pytest.raises(InputError, match="specversion"):
        parse_event({"specversion": version, "id": "c-1", "source": "/s", "type": "Demo.Thing"})
