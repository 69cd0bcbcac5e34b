"""Dead letters against the in-memory fakes: parsing any blob, where each record goes, idempotency, replay."""

from __future__ import annotations

import hashlib
import json

import pytest

from shared.deadletters import DeadLetterService, parse_dead_letters
from shared.events import parse_blob_created
from shared.logs import capture_logs
from shared.scoring import idempotency_key, output_name

GOOD = b"id,x1,x2,color\n007,0.5,1.0,red\n008,-1.5,0.2,blue\n"
DL_NAME = "devstoreaccount1/SCORE-INCOMING-BLOBS/2026/12/01/10/{id}.json"
EG_FACTS = {
    "deadLetterReason": "MaxDeliveryAttemptsExceeded",
    "deliveryAttempts": 5,
    "lastDeliveryOutcome": "GenericError",
    "lastHttpStatusCode": 500,
    "publishTime": "2026-12-01T10:00:00.1234567Z",
    "lastDeliveryAttemptTime": "2026-12-01T10:00:19.7654321Z",
}


def _events_name(event_id: str) -> str:
    return f"_events/{hashlib.sha256(event_id.encode()).hexdigest()}.json"


def _dead_letter(scoring, events: list, name: str | None = None) -> str:
    """Write a dead-letter blob as Event Grid does; returns its name in the dead-letter container."""
    first = events[0] if events and isinstance(events[0], dict) else {}
    name = name or DL_NAME.format(id=first.get("id", "x"))
    scoring.blobs.write_bytes("deadletter", name, json.dumps(events).encode())
    return name


def _service(scoring) -> DeadLetterService:
    return DeadLetterService.for_scoring(scoring.service)


def _record(scoring, name: str) -> dict:
    return json.loads(scoring.blobs.read_bytes("failed", name))


# -- parsing ----------------------------------------------------------------------------------------


def test_both_schemas_are_read_with_their_dead_letter_facts():
    eventgrid = {"id": "e-1", "eventType": "Microsoft.Storage.BlobCreated", "subject": "s", "data": {}, **EG_FACTS}
    cloud = {"specversion": "1.0", "id": "c-1", "type": "Demo.Thing", "source": "/t", "data": {},
             "deadletterreason": "TimeToLiveExceeded", "deliveryattempts": "3", "lastdeliveryoutcome": "TimedOut",
             "lasthttpstatuscode": 408, "publishtime": "2026-12-01T09:00:00Z",
             "lastdeliveryattempttime": "2026-12-01T09:30:00Z"}  # fmt: skip
    letters = parse_dead_letters("deadletter", DL_NAME.format(id="e-1"), json.dumps([eventgrid, cloud]).encode())

    assert [(d.index, d.event_id, d.event_type) for d in letters] == [
        (0, "e-1", "Microsoft.Storage.BlobCreated"),
        (1, "c-1", "Demo.Thing"),
    ]
    first, second = letters
    assert (first.reason, first.attempts, first.last_outcome, first.last_status) == (
        "MaxDeliveryAttemptsExceeded", 5, "GenericError", 500,
    )  # fmt: skip
    assert first.time == EG_FACTS["lastDeliveryAttemptTime"] and first.subscription == "SCORE-INCOMING-BLOBS"
    assert "deadLetterReason" not in first.event and first.event["id"] == "e-1"
    assert (second.reason, second.attempts, second.last_outcome, second.last_status, second.time) == (
        "TimeToLiveExceeded", 3, "TimedOut", 408, "2026-12-01T09:30:00Z",
    )  # fmt: skip
    assert not any(k.startswith(("deadletter", "delivery", "last", "publish")) for k in second.event)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe[\x00]\x00", "not UTF-8"),
        (b"42", "not an array of events (int)"),
        (b'"text"', "not an array of events (str)"),
        (b"null", "not an array of events (NoneType)"),
        (b"[]", "empty array"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_a_blob_that_is_not_an_array_of_events_is_one_problem(data, problem):
    letters = parse_dead_letters("deadletter", "t/S/2026/x.json", data)
    assert len(letters) == 1 and letters[0].index == -1
    assert problem in letters[0].problem


def test_elements_that_are_not_objects_are_problems_and_a_lone_object_is_one_event():
    letters = parse_dead_letters("deadletter", "t/S/x.json", b'[1, null, [], {"id": "a", "deliveryAttempts": true}]')
    assert [d.problem for d in letters] == [
        "element 0 is not an event object (int)",
        "element 1 is not an event object (null)",
        "element 2 is not an event object (list)",
        None,
    ]
    assert letters[3].attempts is None  # a boolean is not a count
    (lone,) = parse_dead_letters("deadletter", "t/S/x.json", b'{"id": "b", "deadLetterReason": "BadRequest"}')
    assert (lone.event_id, lone.reason, lone.problem) == ("b", "BadRequest", None)


def test_parsing_never_raises_on_any_bytes_or_json():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=20)  # fmt: skip
    keys = st.sampled_from(["id", "eventType", "type", "subject", "data", "deadLetterReason", "deliveryattempts",
                            "lastHttpStatusCode", "publishTime", "eventTime", "specversion"])  # fmt: skip
    events = st.lists(st.dictionaries(keys, values, max_size=8) | values, max_size=4)

    @hypothesis.settings(max_examples=200, deadline=None)
    @hypothesis.given(st.binary(max_size=200) | events.map(lambda e: json.dumps(e).encode()))
    def check(data: bytes) -> None:
        for letter in parse_dead_letters("deadletter", "t/S/x.json", data):
            assert json.loads(json.dumps(letter.facts()))["dead_letter_blob"] == "deadletter/t/S/x.json"
            assert isinstance(letter.message(), str) and (letter.problem is None) == isinstance(letter.event, dict)

    check()


# -- recording --------------------------------------------------------------------------------------


def test_a_dead_lettered_file_gets_its_failure_record_with_the_dead_letter_facts(scoring):
    event = scoring.upload("batch/a.csv", GOOD)
    name = _dead_letter(scoring, [{**event, **EG_FACTS}])
    with capture_logs() as logs:
        (recorded,) = _service(scoring).record_blob(name)

    etag = event["data"]["eTag"].strip('"')
    assert recorded.record == f"failed/incoming/batch/a.csv.{etag}.json" and recorded.kind == "file"
    record = _record(scoring, f"incoming/batch/a.csv.{etag}.json")
    assert record["reason"] == "dead_lettered" and record["blob"] == "incoming/batch/a.csv"
    assert "MaxDeliveryAttemptsExceeded" in record["message"] and "5 attempt(s)" in record["message"]
    assert record["dead_letter"] == {
        "reason": "MaxDeliveryAttemptsExceeded", "attempts": 5, "last_outcome": "GenericError",
        "last_http_status": 500, "published_at": EG_FACTS["publishTime"],
        "last_attempt_at": EG_FACTS["lastDeliveryAttemptTime"], "subscription": "SCORE-INCOMING-BLOBS",
        "topic": "devstoreaccount1", "dead_letter_blob": f"deadletter/{name}", "index": 0,
    }  # fmt: skip
    assert record["event"]["id"] == event["id"] and record["failed_at"] == EG_FACTS["lastDeliveryAttemptTime"]
    assert scoring.blobs.properties("failed", f"incoming/batch/a.csv.{etag}.json").metadata["reason"] == "dead_lettered"
    assert logs and all(line["event_id"] == event["id"] for line in logs)
    assert any(line.get("blob") == "incoming/batch/a.csv" for line in logs)


def test_recording_the_same_dead_letter_blob_twice_writes_the_same_records(scoring):
    event = scoring.upload("a.csv", GOOD)
    name = _dead_letter(scoring, [{**event, **EG_FACTS}, {**event, "id": "bad-1", "eventTime": 5, **EG_FACTS}, 7])
    service = _service(scoring)
    first = service.record_blob(name)
    snapshot = {n: scoring.blobs.read_bytes("failed", n) for n in scoring.blobs.names("failed")}
    second = service.record_blob(name)

    assert [r.record for r in first] == [r.record for r in second] and len(snapshot) == 3
    assert {n: scoring.blobs.read_bytes("failed", n) for n in scoring.blobs.names("failed")} == snapshot


def test_an_existing_record_with_another_reason_is_kept_and_gets_the_dead_letter_facts(scoring):
    event = scoring.upload("a.csv", b"id,x1,color\n1,0.5,red\n")  # x2 missing: schema_mismatch
    outcome = scoring.service.score(parse_blob_created(event))
    assert outcome.reason == "schema_mismatch"
    failure = outcome.failure.removeprefix("failed/")
    before = _record(scoring, failure)

    (recorded,) = _service(scoring).record_blob(_dead_letter(scoring, [{**event, **EG_FACTS}]))

    after = _record(scoring, failure)
    assert recorded.kind == "file-merged" and after["reason"] == "schema_mismatch"
    assert after["dead_letter"]["reason"] == "MaxDeliveryAttemptsExceeded"
    assert {k: v for k, v in after.items() if k != "dead_letter"} == before


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"eventTime": 12345}, "malformed_event"),  # the converter error of azure-functions 1.26
        ({"eventTime": "yesterday"}, "malformed_event"),
        ({"data": "not an object"}, "malformed_event"),
        ({"eventType": "Demo.Other"}, "unsupported_event"),
        ({"subject": "/blobServices/default/containers/incoming/blobs/../../etc/passwd",
          "data_url": "http://127.0.0.1:10000/devstoreaccount1/incoming/../../etc/passwd"}, "bad_event"),
        ({"subject": "/blobServices/default/containers/incoming/blobs/a.csv",
          "data_url": "http://10.0.0.5:10000/devstoreaccount1/incoming/a.csv"}, "bad_event"),
        ({"subject": "/blobServices/default/containers/other/blobs/a.csv",
          "data_url": "http://127.0.0.1:10000/devstoreaccount1/other/a.csv"}, "unknown_source"),
        ({"subject": "/blobServices/default/containers/failed/blobs/a.csv.1.json",
          "data_url": "http://127.0.0.1:10000/devstoreaccount1/failed/a.csv.1.json"}, "unknown_source"),
    ],
)  # fmt: skip
def test_an_untrusted_or_unserved_event_is_recorded_under_the_fixed_namespace(scoring, change, problem):
    event = scoring.upload("a.csv", GOOD)
    event = {**event, "id": f"evt-{problem}", **{k: v for k, v in change.items() if k != "data_url"}}
    if "data_url" in change:
        event["data"] = {**event["data"], "url": change["data_url"]}
    (recorded,) = _service(scoring).record_blob(_dead_letter(scoring, [{**event, **EG_FACTS}]))

    assert recorded.record == f"failed/{_events_name(event['id'])}" and recorded.kind == "event"
    assert scoring.blobs.names("failed") == [_events_name(event["id"])]  # nothing under a name the sender chose
    record = _record(scoring, _events_name(event["id"]))
    assert record["reason"] == "dead_lettered" and record["event_problem"]["reason"] == problem
    assert record["dead_letter"]["attempts"] == 5 and record["event_id"] == event["id"]
    assert record["received"]["id"] == event["id"]


def test_a_blob_that_is_not_an_array_of_events_is_itself_recorded(scoring):
    scoring.blobs.write_bytes("deadletter", "t/S/2026/x.json", b"\x00garbage")
    (recorded,) = _service(scoring).record_blob("t/S/2026/x.json")
    expected = _events_name("deadletter:deadletter/t/S/2026/x.json#-1")
    assert recorded.record == f"failed/{expected}"
    record = _record(scoring, expected)
    assert record["reason"] == "dead_lettered" and "not JSON" in record["event_problem"]["message"]
    assert record["dead_letter"]["dead_letter_blob"] == "deadletter/t/S/2026/x.json"


def test_a_settled_file_gets_no_failure_record(scoring):
    event = scoring.upload("a.csv", GOOD)
    name = _dead_letter(scoring, [{**event, **EG_FACTS}])
    service = _service(scoring)
    claim = scoring.ledger.claim(idempotency_key(parse_blob_created(event)), "slow-host", 900)
    (early,) = service.record_blob(name)  # the dead letter arrives while another instance still scores the file
    assert early.kind == "file" and _record(scoring, early.record[7:])["ledger_status"] == "claimed"
    scoring.ledger.release(claim)
    assert scoring.service.score(parse_blob_created(event)).status == "succeeded"

    (recorded,) = service.record_blob(name)  # processed again (a redelivery): the stale file record goes
    assert recorded.kind == "settled" and scoring.blobs.names("failed") == [_events_name(event["id"])]
    assert _record(scoring, _events_name(event["id"]))["file_status"] == "succeeded"


def test_the_function_use_case_checks_the_event_and_ignores_other_containers(scoring):
    event = scoring.upload("a.csv", GOOD)
    name = _dead_letter(scoring, [{**event, **EG_FACTS}])
    service = _service(scoring)

    def announce(container: str, blob: str) -> dict:
        return parse_blob_created({
            "id": f"dl-{container}", "eventType": "Microsoft.Storage.BlobCreated", "eventTime": "2026-12-01T10:00:20Z",
            "subject": f"/blobServices/default/containers/{container}/blobs/{blob}",
            "data": {"eTag": "0x1", "url": f"http://127.0.0.1:10000/devstoreaccount1/{container}/{blob}"},
        })  # fmt: skip

    with capture_logs() as logs:
        assert service.record_event(announce("incoming", "a.csv")) == []
    assert scoring.blobs.names("failed") == [] and "not for the dead-letter container" in logs[0]["message"]
    assert service.record_event(announce("deadletter", "devstoreaccount1/S/../../x.json")) == []
    assert scoring.blobs.names("failed") == [_events_name("dl-deadletter")]
    assert service.record_event(announce("deadletter", "gone.json")) == []
    (recorded,) = service.record_event(announce("deadletter", name))
    assert recorded.kind == "file"


# -- replay -----------------------------------------------------------------------------------------


def test_replay_scores_the_file_once_and_marks_the_dead_letter(scoring):
    event = scoring.upload("batch/a.csv", GOOD)
    service = _service(scoring)
    service.record_blob(_dead_letter(scoring, [{**event, **EG_FACTS}]))
    letter = next(service.dead_letters())
    assert service.replay_status(letter) == "no"

    (replayed,) = service.replay()

    assert (replayed.status, replayed.output) == ("succeeded", f"scored/{output_name('incoming', 'batch/a.csv')}")
    assert scoring.blobs.names("scored") == [output_name("incoming", "batch/a.csv")]
    assert scoring.blobs.names("failed") == []  # the dead_lettered record no longer says what happened
    assert service.replay_status(letter) == "yes"
    assert scoring.ledger.get(letter.key).details["outcome"] == "succeeded"
    assert service.replay() == []  # replayed once
    assert scoring.publisher.types() == ["Scorehook.Scoring.Completed"]


def test_replay_of_a_file_already_scored_is_a_duplicate(scoring):
    event = scoring.upload("a.csv", GOOD)
    scoring.service.score(parse_blob_created(event))
    service = _service(scoring)
    _dead_letter(scoring, [{**event, **EG_FACTS}])
    assert [r.status for r in service.replay()] == ["duplicate"]
    assert scoring.blobs.names("scored") == [output_name("incoming", "a.csv")]


def test_replay_while_the_file_is_claimed_leaves_the_dead_letter_for_later(scoring):
    event = scoring.upload("a.csv", GOOD)
    _dead_letter(scoring, [{**event, **EG_FACTS}])
    stranded = scoring.ledger.claim(idempotency_key(parse_blob_created(event)), "crashed-host", 900)
    service = _service(scoring)

    (first,) = service.replay()
    assert (first.status, first.reason) == ("error", "already_claimed")
    assert service.replay_status(first.dead_letter) == "no" and scoring.blobs.names("scored") == []

    scoring.ledger.release(stranded)  # the dead instance's claim expired
    assert [r.status for r in service.replay()] == ["succeeded"]


def test_only_served_blob_created_events_are_replayed(scoring):
    event = scoring.upload("a.csv", GOOD)
    _dead_letter(scoring, [{**event, "id": "t-1", "eventType": "Demo.Other", **EG_FACTS},
                           {**event, "id": "t-2", "eventTime": 5, **EG_FACTS}, "junk"])  # fmt: skip
    service = _service(scoring)
    assert service.replay() == []
    assert {service.replay_status(d) for d in service.dead_letters()} == {"n/a"}


def _cli(scoring, *args: str) -> int:
    from cli.app import Services, main

    class Injected(Services):
        def scoring(self):
            return scoring.service

    return main(list(args), services=Injected(None))


def test_the_cli_lists_and_replays(scoring, capsys):
    event = scoring.upload("a.csv", GOOD)
    _dead_letter(scoring, [{**event, **EG_FACTS}])

    assert _cli(scoring, "deadletters", "--json", "--container", "deadletter") == 0
    (listed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed["subscription"] == "SCORE-INCOMING-BLOBS" and listed["reason"] == "MaxDeliveryAttemptsExceeded"
    assert listed["event_type"] == "Microsoft.Storage.BlobCreated" and listed["replayed"] == "no"
    assert listed["subject"] == event["subject"] and listed["time"] == EG_FACTS["lastDeliveryAttemptTime"]
    assert listed["blob"] == "incoming/a.csv"

    assert _cli(scoring, "deadletters", "--replay", "--json") == 0
    (replayed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert replayed["status"] == "succeeded" and replayed["output"] == f"scored/{output_name('incoming', 'a.csv')}"

    assert _cli(scoring, "deadletters") == 0
    text = capsys.readouterr().out
    assert "SCORE-INCOMING-BLOBS" in text and "MaxDeliveryAttemptsExceeded" in text
    row = next(line for line in text.splitlines() if "MaxDeliveryAttemptsExceeded" in line)
    assert "incoming/a.csv" in row and " yes " in f"{row} "


def test_an_unexpected_error_of_one_file_does_not_stop_the_replay_of_the_others(scoring):
    first, second = scoring.upload("a.csv", GOOD), scoring.upload("b.csv", GOOD)
    _dead_letter(scoring, [{**first, **EG_FACTS}], name="t/S/2026/12/01/10/1.json")
    _dead_letter(scoring, [{**second, **EG_FACTS}], name="t/S/2026/12/01/10/2.json")
    failures = [RuntimeError("socket closed")]

    def commit_fails_once(container: str, name: str) -> None:  # the first file meets an unwrapped error
        if name == output_name("incoming", "a.csv") and failures:
            raise failures.pop()

    scoring.blobs.before_commit = commit_fails_once
    service = _service(scoring)

    assert [(r.blob, r.status, r.reason) for r in service.replay()] == [
        ("incoming/a.csv", "error", "RuntimeError"), ("incoming/b.csv", "succeeded", None),
    ]  # fmt: skip
    assert [r.status for r in service.replay()] == ["succeeded"]  # a.csv was left for the next replay
    assert scoring.blobs.names("scored") == [output_name("incoming", "a.csv"), output_name("incoming", "b.csv")]


def test_a_cloudevents_dead_letter_is_recorded_and_replayed_like_an_eventgrid_one(scoring):
    event = parse_blob_created(scoring.upload("ce/a.csv", GOOD)).as_cloudevent()
    facts = {"deadletterreason": "TimeToLiveExceeded", "deliveryattempts": 7, "lastdeliveryoutcome": "TimedOut",
             "lastHttpStatusCode": 408, "publishtime": "2026-12-01T09:00:00Z",
             "lastdeliveryattempttime": "2026-12-01T10:00:00Z"}  # fmt: skip
    service = _service(scoring)
    (recorded,) = service.record_blob(_dead_letter(scoring, [{**event, **facts}]))

    assert recorded.kind == "file" and recorded.blob == "incoming/ce/a.csv"
    record = _record(scoring, recorded.record.removeprefix("failed/"))
    assert (record["dead_letter"]["reason"], record["dead_letter"]["attempts"]) == ("TimeToLiveExceeded", 7)
    assert record["dead_letter"]["last_http_status"] == 408 and record["failed_at"] == "2026-12-01T10:00:00Z"
    assert [r.status for r in service.replay()] == ["succeeded"]
    assert scoring.blobs.names("scored") == [output_name("incoming", "ce/a.csv")]


def test_a_file_dead_lettered_after_transient_failures_is_taken_over_by_the_replay(scoring):
    from shared.errors import StorageUnavailableError

    event = scoring.upload("a.csv", GOOD)
    for _ in range(2):  # every delivery meets storage trouble, then Event Grid gives up
        scoring.blobs.fail_next = StorageUnavailableError("storage is down")
        with pytest.raises(StorageUnavailableError):
            scoring.service.score(parse_blob_created(event))
    service = _service(scoring)
    (recorded,) = service.record_blob(_dead_letter(scoring, [{**event, **EG_FACTS}]))
    assert _record(scoring, recorded.record[7:])["ledger_status"] == "retrying"

    assert [r.status for r in service.replay()] == ["succeeded"]
    assert scoring.blobs.names("scored") == [output_name("incoming", "a.csv")] and scoring.blobs.names("failed") == []


def test_an_event_for_the_dead_letter_function_that_does_not_parse_is_recorded_by_its_id(scoring):
    from shared.errors import MalformedEventError

    raw = {"id": "dl-bad", "eventType": "Microsoft.Storage.BlobCreated", "eventTime": 7, "subject": "x", "data": {}}
    where = _service(scoring).reject_raw_event(raw, MalformedEventError("field 'eventTime' must be a string"))
    assert where == f"failed/{_events_name('dl-bad')}"
    record = _record(scoring, _events_name("dl-bad"))
    assert (record["reason"], record["source"], record["received"]) == ("malformed_event", "on_deadletter", raw)


def test_the_cli_text_listing_escapes_control_characters_of_untrusted_names(scoring, capsys):
    _dead_letter(scoring, [{"id": "x", "eventType": "Demo.Thing", "subject": "a\x1b[2Jb\nc[bold]", **EG_FACTS}])
    assert _cli(scoring, "deadletters") == 0
    out = capsys.readouterr().out
    assert "a\\x1b[2Jb\\nc[bold]" in out and "\x1b" not in out and "n/a" in out


def test_an_event_rejected_at_delivery_keeps_its_record_and_gets_the_dead_letter_facts(scoring):
    from shared.errors import MalformedEventError
    from shared.rejections import write_rejected_event

    event = {**scoring.upload("a.csv", GOOD), "id": "conv-1", "eventTime": 12345}  # a converter error: 400
    write_rejected_event(scoring.blobs, "failed", event, MalformedEventError("eventTime must be a string"),
                         source="devhost")  # fmt: skip
    before = _record(scoring, _events_name("conv-1"))
    facts = {**EG_FACTS, "deadLetterReason": "BadRequest", "deliveryAttempts": 1, "lastHttpStatusCode": 400}

    (recorded,) = _service(scoring).record_blob(_dead_letter(scoring, [{**event, **facts}]))

    after = _record(scoring, _events_name("conv-1"))
    assert recorded.record == f"failed/{_events_name('conv-1')}"
    assert after["reason"] == "malformed_event" and {k: v for k, v in after.items() if k != "dead_letter"} == before
    assert (after["dead_letter"]["reason"], after["dead_letter"]["last_http_status"]) == ("BadRequest", 400)
