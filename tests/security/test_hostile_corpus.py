"""The hostile corpus through the real stack: files dropped into Azurite and announced by devhost's local
Event Grid, events posted to devhost's scoring webhook. Each case must end as its rule says (scored, ignored,
or failed with its reason and location), leave no output for a failure, write nothing outside the app's
containers, finish in seconds within +512 MB of devhost memory, and leave the host alive."""

from __future__ import annotations

import csv
import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from shared.names import rejected_event_name
from tests.reliability import figures
from tests.reliability.harness import APP_CONTAINERS, FAILED, INPUT, OUTPUT, RssSampler, Stack, write_changes
from tests.security.corpus import EVENT_CASES, FILE_CASES, EventCase, FileCase, unique_folder

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.security, pytest.mark.timeout(900)]

MAX_RSS_GROWTH_MB = 512


@pytest.fixture(scope="module")
def folder() -> str:
    return unique_folder()


def _location_problems(record: dict[str, Any], location: dict[str, Any]) -> list[str]:
    problems = []
    for key, want in location.items():
        got = record.get(key)
        if isinstance(want, int) and isinstance(got, str) and got.isdigit():
            got = int(got)
        if got != want:
            problems.append(f"location {key}: want {want!r}, record has {got!r}")
    return problems


def _foreign_writes(stack: Stack, changes: list[str], allowed: list[str]) -> list[str]:
    """Changed blobs that are neither the case's own (``allowed`` prefixes) nor bookkeeping (drift profiles,
    the local Event Grid's dead letters)."""
    bad = []
    for path in changes:
        container = path.split("/", 1)[0]
        if container in ("drift", "deadletter") or container.startswith("azure-webjobs"):
            continue
        if container not in APP_CONTAINERS:
            bad.append(f"wrote outside the app's containers: {path}")
        elif not any(path.startswith(prefix) for prefix in allowed):
            bad.append(f"wrote a blob that does not belong to this case: {path}")
    return bad


def _output_ids(stack: Stack, name: str) -> list[str]:
    data = stack.blobs.get_blob_client(OUTPUT, name).download_blob().readall()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return [str(v) for v in pq.read_table(io.BytesIO(data)).column("id").to_pylist()]
    return [row["id"] for row in csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))]


def _record(case_id: str, problems: list[str]) -> None:
    figures.add("corpus", cases=1, handled=int(not problems))
    if problems:
        figures.FIGURES["corpus"].setdefault("failed", []).append(case_id)


@dataclass
class FileRun:
    """One file case as it ran: its blob, eTag, seconds to an outcome, devhost memory growth (heavy cases)."""

    name: str
    etag: str = ""
    elapsed: float = float("inf")
    rss_growth_mb: float = 0.0


def _case_paths(name: str) -> list[str]:
    return [f"{INPUT}/{name}", f"{FAILED}/{INPUT}/{name}", f"{OUTPUT}/{INPUT}/{name.rsplit('/', 1)[0]}/"]


@pytest.fixture(scope="module")
def file_runs(stack: Stack, folder: str) -> tuple[dict[str, FileRun], list[str]]:
    """Run every file case: the heavy ones (limits, bombs) one at a time with devhost's memory sampled, the
    rest uploaded at once (as a busy upstream would) and awaited together. Returns the runs and every blob
    written meanwhile."""
    runs = {c.id: FileRun(f"{c.prefix}{folder}/{c.id}/{c.name}") for c in FILE_CASES}
    before = stack.snapshot()
    for case in [c for c in FILE_CASES if c.seconds < 60]:
        run = runs[case.id]
        data = case.data()
        with RssSampler(stack.dev.process.pid) as rss:
            started = time.monotonic()
            run.etag = stack.upload(INPUT, run.name, data)
            if stack.wait_outcome(INPUT, run.name, run.etag, timeout=case.seconds + 15).kind != "none":
                run.elapsed = time.monotonic() - started
        run.rss_growth_mb = rss.growth_mb
    light = [c for c in FILE_CASES if c.seconds >= 60]
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        etags = list(pool.map(lambda c: stack.upload(INPUT, runs[c.id].name, c.data()), light))
    for case, etag in zip(light, etags, strict=True):
        runs[case.id].etag = etag
    pending = {c.id for c in light}
    while pending and time.monotonic() - started < 120 and stack.dev.process.poll() is None:
        for case_id in sorted(pending):
            run = runs[case_id]
            if stack.outcome(INPUT, run.name, run.etag).kind != "none":
                run.elapsed = time.monotonic() - started
                pending.discard(case_id)
        time.sleep(0.5)
    time.sleep(1.0)  # anything a delivery still writes
    return runs, write_changes(before, stack.snapshot())


def _check_file(stack: Stack, case: FileCase, run: FileRun, changes: list[str]) -> list[str]:
    name, etag = run.name, run.etag
    outcome = stack.outcome(INPUT, name, etag)
    problems: list[str] = []
    if case.expect == "scored":
        if outcome.kind != "scored":
            problems.append(f"want scored, got {outcome.kind} {outcome.record.get('reason')}: {outcome.record.get('message')}")
        if len(outcome.outputs) > 1:
            problems.append(f"{len(outcome.outputs)} outputs for one input")
        for out_name, meta in outcome.outputs[:1]:
            rows = stack.rows_in_output(out_name)
            if case.rows is not None and (rows != case.rows or meta.get("rows_scored") != str(case.rows)):
                problems.append(f"want {case.rows} rows, output has {rows} (rows_scored={meta.get('rows_scored')})")
            if case.rejected is not None and meta.get("rows_rejected") != str(case.rejected):
                problems.append(f"want rows_rejected={case.rejected}, metadata says {meta.get('rows_rejected')}")
            if case.ids and _output_ids(stack, out_name) != list(case.ids):
                problems.append(f"ids changed: {_output_ids(stack, out_name)} != {list(case.ids)}")
        if outcome.records:
            problems.append(f"a failure record exists for a scored file: {outcome.records[0][0]}")
    else:
        record = outcome.record
        if outcome.outputs:
            problems.append(f"an output exists for a failed file: {outcome.outputs[0][0]}")
        if not outcome.records:
            problems.append(f"want {case.expect}, got {outcome.kind} (no failure record)")
        else:
            if record.get("reason") != case.expect:
                problems.append(f"want reason {case.expect}, record says {record.get('reason')}: {record.get('message')}")
            if not str(record.get("message") or "").strip():
                problems.append("the record has no message")
            problems += _location_problems(record, case.location)
            if case.expect == "too_large" and not record.get("limit"):
                problems.append("a too_large record must name its limit")
            said = " ".join(str(record.get(k, "")) for k in ("message", "encoding", "limit")).lower()
            if case.says and case.says.lower() not in said:
                problems.append(f"the record should mention {case.says!r}: {record.get('message')}")
    if run.elapsed > case.seconds:
        problems.append(f"no outcome within {case.seconds:.0f} s" if run.elapsed == float("inf")
                        else f"took {run.elapsed:.1f} s (limit {case.seconds:.0f} s)")  # fmt: skip
    if run.rss_growth_mb > MAX_RSS_GROWTH_MB:
        problems.append(f"devhost memory grew by {run.rss_growth_mb:.0f} MB (limit {MAX_RSS_GROWTH_MB})")
    statuses = [d.get("status") for d in stack.dev.deliveries()
                if (d.get("subject") or "").endswith(f"/blobs/{name}") and "status" in d]  # fmt: skip
    if any(not 200 <= (s or 0) <= 204 for s in statuses):
        problems.append(f"deliveries answered {statuses}: a file is scored or failed at its first delivery, not retried")
    mine = [c for c in changes if any(c.startswith(p) for p in _case_paths(name)) or f"/{case.id}/" in c]
    problems += _foreign_writes(stack, mine, _case_paths(name))
    return problems


@pytest.mark.parametrize("case", FILE_CASES, ids=lambda c: c.id)
def test_hostile_file(stack: Stack, file_runs: tuple[dict[str, FileRun], list[str]], case: FileCase) -> None:
    runs, changes = file_runs
    problems = _check_file(stack, case, runs[case.id], changes)
    _record(case.id, problems)
    assert not problems, f"{case.id} ({case.note or case.expect}):\n  " + "\n  ".join(problems)


def test_the_file_corpus_wrote_only_what_its_cases_own(stack: Stack, file_runs: tuple[dict[str, FileRun], list[str]]) -> None:
    runs, changes = file_runs
    owned = [p for c in FILE_CASES for p in _case_paths(runs[c.id].name)]
    stray = [c for c in changes if not c.startswith(("drift/", "deadletter/")) and not any(c.startswith(p) for p in owned)]
    alive = stack.alive()
    if not alive:
        figures.add("corpus", crashes=1)
    assert not stray, f"written by the file corpus outside its cases' paths: {stray[:10]}"
    assert alive


def _check_event(stack: Stack, case: EventCase, spec: Any, status: int, changes: list[str]) -> list[str]:
    problems: list[str] = []
    if status not in case.statuses:
        problems.append(f"HTTP {status}, want one of {sorted(case.statuses)}")
    events_written = [c for c in changes if c.startswith(f"{FAILED}/_events/")]
    allowed = [f"{OUTPUT}/"] if case.expect == "scored" else []
    if case.expect == "ignored":
        if any(c.startswith((f"{FAILED}/", f"{OUTPUT}/")) for c in changes):
            problems.append(f"an ignored event wrote {[c for c in changes if not c.startswith('drift/')]}")
    elif case.expect == "scored":
        container, name = spec.blob
        outcome = stack.wait_outcome(container, name, timeout=60)
        if outcome.kind != "scored" or len(outcome.outputs) != 1:
            problems.append(f"want one output, got {outcome.kind} {len(outcome.outputs)} "
                            f"{outcome.record.get('reason')}: {outcome.record.get('message')}")  # fmt: skip
        for out_name, meta in outcome.outputs[:1]:
            if stack.rows_in_output(out_name) != 5 or meta.get("rows_scored") != "5":
                problems.append(f"output {out_name} is not the 5 rows (rows_scored={meta.get('rows_scored')})")
    elif spec.blob is not None:  # a file-level failure of a real blob
        container, name = spec.blob
        outcome = stack.wait_outcome(container, name, timeout=30)
        allowed.append(f"{FAILED}/{container}/{name}")
        if outcome.record.get("reason") != case.expect or outcome.outputs:
            problems.append(f"want {case.expect}, got {outcome.kind} {outcome.record.get('reason')}")
    else:
        allowed.append(f"{FAILED}/_events/")
        if case.id == "non-object-elements":  # the one valid element names a blob that does not exist
            allowed.append(f"{FAILED}/{INPUT}/")
        records = {c: stack.read_json(FAILED, c.split("/", 1)[1]) or {} for c in events_written}
        if not records:
            problems.append(f"want a {case.expect} record under failed/_events/, none was written")
        elif not any(r.get("reason") == case.expect for r in records.values()):
            problems.append(f"want reason {case.expect}, records say {[r.get('reason') for r in records.values()]}")
        keyed = case.id != "non-object-elements"  # its one valid element is an ordinary file event (blob_not_found)
        if keyed and isinstance(spec.event_id, str) and records and f"{FAILED}/{rejected_event_name(spec.event_id)}" not in records:
            problems.append(f"the record is not keyed by the event id's hash: {sorted(records)}")
        if len(records) > 1 and case.id != "non-object-elements":
            problems.append(f"{len(records)} records for one delivery")
    file_paths = tuple(f"{FAILED}/{INPUT}/{c.prefix}" for c in FILE_CASES)  # late records of file cases
    problems += _foreign_writes(stack, [c for c in changes if not (c.startswith(file_paths) and "/_events/" not in c
                                        and any(f"/{f.id}/" in c for f in FILE_CASES))], allowed)  # fmt: skip
    if not stack.alive():
        problems.append("devhost is not alive")
        figures.add("corpus", crashes=1)
    return problems


@pytest.mark.parametrize("case", EVENT_CASES, ids=lambda c: c.id)
def test_hostile_event(stack: Stack, folder: str, case: EventCase) -> None:
    spec = case.build(stack, f"{folder}/{case.id}")
    before = stack.snapshot()
    status = stack.post(spec.body, content_type=spec.content_type)
    if case.expect == "scored" and spec.blob:
        stack.wait_outcome(*spec.blob, timeout=60)
    time.sleep(0.3)
    problems = _check_event(stack, case, spec, status, write_changes(before, stack.snapshot()))
    _record(case.id, problems)
    assert not problems, f"{case.id} ({case.note or case.expect}):\n  " + "\n  ".join(problems)


def test_three_suffixes_and_two_containers_give_five_outputs(stack: Stack, folder: str) -> None:
    """``a.csv``, ``a.parquet`` and ``a.csv.gz`` of one folder, and ``a.csv`` of another input container with
    the same name: five inputs, five outputs, none lost."""
    from tests.security.corpus import _gzip, _jsonl, _parquet, _rows, _table, sample_csv

    base = f"{folder}/suffixes"
    inputs = [(INPUT, f"{base}/a.csv", sample_csv(11)), (INPUT, f"{base}/a.parquet", _parquet(_table(12))),
              (INPUT, f"{base}/a.csv.gz", _gzip(sample_csv(13))), (INPUT, f"{base}/a.jsonl", _jsonl(_rows(1))), ("storm", f"{base}/a.csv", sample_csv(14))]  # fmt: skip
    for container, name, data in inputs:
        etag = stack.upload(container, name, data)
        if container == "storm":
            stack.post([stack.event(container, name, etag=etag)])
    outcomes = {(c, n): stack.wait_outcome(c, n, timeout=60) for c, n, _ in inputs}
    names = [o.outputs[0][0] for o in outcomes.values() if o.outputs]
    rows = {key: stack.rows_in_output(o.outputs[0][0]) if o.outputs else None for key, o in outcomes.items()}
    figures.add("suffixes", delivered=len(inputs), files=len(inputs), outputs=len(set(names)),
                lost=sum(o.kind == "none" for o in outcomes.values()), duplicates=0,
                failed_with_reason=sum(o.kind == "failed" for o in outcomes.values()), partial_visible=0)  # fmt: skip
    assert all(o.kind == "scored" for o in outcomes.values()), [(k[0], k[1].rsplit("/", 1)[1], o.kind, o.record.get("message"))
                                                                for k, o in outcomes.items()]  # fmt: skip
    assert len(set(names)) == len(inputs), f"outputs collide: {names}"
    assert rows == {(INPUT, f"{base}/a.csv"): 11, (INPUT, f"{base}/a.parquet"): 12, (INPUT, f"{base}/a.csv.gz"): 13,
                    (INPUT, f"{base}/a.jsonl"): 1, ("storm", f"{base}/a.csv"): 14}  # fmt: skip


def test_the_host_survived_the_corpus(stack: Stack) -> None:
    assert stack.alive()
    status, _, _ = stack.dev.request("GET", "/api/health")
    assert status == 200
