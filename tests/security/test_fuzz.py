"""Property-based fuzzing of what the outside world hands the app: any JSON (and any bytes) given to the event
parsers ends as a typed event or an ``InputError``, never another exception; any headers and body given to
the MLflow webhook verifier end verified or as an ``InputError``. Names the parsers accept pass the one
name check before any I/O.

The example count comes from ``SCOREHOOK_FUZZ_EXAMPLES`` (``make test``: a small number; ``make
reliability``: more)."""

from __future__ import annotations

import json
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import InputError
from shared.events import BlobCreated, Event, parse_blob_created, parse_event, parse_events
from shared.registrations import sign_mlflow_delivery, verify_mlflow_signature

pytestmark = [pytest.mark.security]

EXAMPLES = int(os.environ.get("SCOREHOOK_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
ACCOUNT_URL = "http://127.0.0.1:10000/devstoreaccount1"

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)
_names = st.text(st.characters(codec="utf-8"), min_size=0, max_size=60) | st.sampled_from(
    ["../../etc/passwd", "a/./b.csv", "a//b.csv", "a\\b.csv", "%2e%2e/x.csv", "..%2F..%2Fx", "x.csv.", "\u0000.csv",
     "d\u00e9j\u00e0 vu.csv", "a" * 1100, "/".join(["s"] * 300), "incoming/../failed/x.json"]
)  # fmt: skip
_text = st.text(max_size=30)
_time = st.one_of(st.just("2026-12-01T10:00:00.1234567Z"), st.integers(), st.floats(), _text, st.none(),
                  st.just("2026-13-45T99:99:99Z"), st.just("2026-12-01T10:00:00+25:00"))  # fmt: skip


@st.composite
def blob_events(draw: st.DrawFn) -> dict:
    """Event Grid / CloudEvents ``BlobCreated`` events, each field sometimes hostile, missing or mistyped."""
    container = draw(st.sampled_from(["incoming", "failed", "scored", "Incoming", "in", "a" * 70, ""]) | _text)
    name = draw(_names)
    url_name = draw(st.sampled_from([name, name.replace("/", "%2F"), "other.csv"]) | _names)
    data = {
        "api": draw(st.sampled_from(["PutBlob", "CreateFile", "FlushWithClose", "CopyBlob"]) | _text),
        "eTag": draw(st.sampled_from(['"0x8D1"', "0x8D1", ""]) | _json),
        "contentLength": draw(st.integers(min_value=-5, max_value=2**63) | _json),
        "url": draw(st.sampled_from([f"{ACCOUNT_URL}/{container}/{url_name}", f"https://evil.example/{container}/{url_name}",
                                     f"file:///{url_name}", f"{ACCOUNT_URL}/{container}/{url_name}?sig=x"]) | _json),
        "sequencer": draw(st.sampled_from(["0" * 32, ""]) | _json),
    }  # fmt: skip
    for key in draw(st.lists(st.sampled_from(sorted(data)), max_size=2, unique=True)):
        del data[key]
    subject = f"/blobServices/default/containers/{container}/blobs/{name}"
    if draw(st.booleans()):
        event = {"id": draw(_text | _json), "eventType": "Microsoft.Storage.BlobCreated", "subject": subject,
                 "eventTime": draw(_time), "topic": draw(_text), "dataVersion": "", "data": data}  # fmt: skip
    else:
        event = {"specversion": draw(st.sampled_from(["1.0", "0.3", "2", ""]) | _json), "id": draw(_text | _json),
                 "type": "Microsoft.Storage.BlobCreated", "source": draw(_text), "subject": subject,
                 "time": draw(_time), "data": data}  # fmt: skip
    for key in draw(st.lists(st.sampled_from(sorted(event)), max_size=2)):
        event[key] = draw(_json)
    return event


def _typed_or_input_error(call, *args, **kwargs) -> object:  # type: ignore[no-untyped-def]
    try:
        return call(*args, **kwargs)
    except InputError:
        return None


@FUZZ
@given(_json)
def test_any_json_is_an_event_or_an_input_error(value: object) -> None:
    for parser in (parse_events, parse_event, parse_blob_created):
        result = _typed_or_input_error(parser, value)
        assert result is None or isinstance(result, Event | list)
        if isinstance(result, list):
            assert all(isinstance(e, Event) for e in result)


@FUZZ
@given(st.binary(max_size=300) | _json.map(lambda v: json.dumps(v).encode()))
def test_any_body_is_events_or_an_input_error(body: bytes) -> None:
    result = _typed_or_input_error(parse_events, body)
    assert result is None or all(isinstance(e, Event) for e in result)


@FUZZ
@given(blob_events())
def test_hostile_blob_events_parse_to_blob_created_or_an_input_error(event: dict) -> None:
    result = _typed_or_input_error(parse_blob_created, event)
    assert result is None or isinstance(result, BlobCreated)
    batch = _typed_or_input_error(parse_events, json.dumps([event, event]).encode())
    assert batch is None or all(isinstance(e, Event) for e in batch)


@FUZZ
@given(blob_events())
def test_what_the_parser_accepts_passes_the_name_check_or_is_a_bad_event(event: dict) -> None:
    """The one name check (``shared.names.check_blob_event``) is total too: a checked name or ``bad_event``."""
    from shared.names import check_blob_event
    from shared.settings import Settings

    parsed = _typed_or_input_error(parse_blob_created, event)
    if parsed is None:
        return
    try:
        check_blob_event(parsed, Settings.from_env({}))
    except InputError:
        return
    segments = parsed.blob_name.split("/")
    assert ".." not in segments and "." not in segments and "\\" not in parsed.blob_name
    assert all(ord(c) >= 0x20 for c in parsed.blob_name) and len(parsed.blob_name) <= 1024


_header_values = st.text(max_size=60) | st.sampled_from(["v1,", "v1,AAAA", "v2,x", "", "1e9", "-1", "99999999999999999999"])
_header_names = st.sampled_from(["X-MLflow-Delivery-Id", "x-mlflow-timestamp", "X-MLFLOW-SIGNATURE", "Content-Type"]) | _text


@FUZZ
@given(st.dictionaries(_header_names, _header_values, max_size=5), st.binary(max_size=200), st.text(max_size=20))
def test_the_webhook_verifier_verifies_or_raises_an_input_error(headers: dict, body: bytes, secret: str) -> None:
    result = _typed_or_input_error(verify_mlflow_signature, secret, headers, body)
    assert result is None or (isinstance(result, tuple) and len(result) == 2)


@FUZZ
@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=40), st.binary(max_size=200),
       st.integers(min_value=-600, max_value=600), st.sampled_from(["ok", "body", "id", "sig", "secret"]))  # fmt: skip
def test_only_a_true_signature_of_this_body_is_verified(secret: str, delivery: str, body: bytes, skew: int, tamper: str) -> None:
    now = time.time()
    stamp = str(int(now) + skew)
    headers = {"X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": stamp,
               "X-MLflow-Signature": sign_mlflow_delivery(secret, delivery, stamp, body)}  # fmt: skip
    used_secret, used_body = secret, body
    if tamper == "body":
        used_body = body + b"x"
    elif tamper == "id":
        headers["X-MLflow-Delivery-Id"] = delivery + "x"
    elif tamper == "sig":
        headers["X-MLflow-Signature"] = headers["X-MLflow-Signature"][:-2] + "AA"
    elif tamper == "secret":
        used_secret = secret + "x"
    result = _typed_or_input_error(verify_mlflow_signature, used_secret, headers, used_body, now=now)
    if tamper == "ok" and abs(now - int(stamp)) <= 300:
        assert result == (delivery, int(stamp))
    else:
        assert result is None
