"""The hostile corpus: files and events an attacker, an unlucky upstream system or a careless exporter sends,
each with the rule it must meet.

A case states its **expected outcome** (a reason from ``shared.errors.FAILURE_REASONS``, ``"scored"`` or
``"ignored"``) and, where the issue asks for one, its **location** in the failure record: ``line`` (1-based
physical line of the file), ``row`` (1-based data row, the header not counted) and ``column`` (its name).

Files land in ``incoming/`` (or under a route prefix: ``limited/`` has ``max_file_bytes: 4096``, ``strict/``
``on_missing: fail``, ``reject/`` ``on_missing: reject_rows``; see ``tests/reliability/harness.ROUTES``) and
are announced by devhost's own local Event Grid. Events are posted to the scoring webhook as Event Grid
would post them.

Example:
    >>> len(FILE_CASES) + len(EVENT_CASES) >= 60
    True
    >>> {c.expect for c in FILE_CASES + EVENT_CASES} - {"scored", "ignored"} <= set(FAILURE_REASONS)
    True
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.errors import FAILURE_REASONS
from tests.reliability.harness import HEADER, TOPIC, Stack, csv_text, sample_csv, sample_rows

__all__ = ["EVENT_CASES", "FILE_CASES", "EventCase", "EventSpec", "FileCase"]

MIB = 1 << 20


@dataclass(frozen=True)
class FileCase:
    """A file dropped into the input container, and what must become of it."""

    id: str
    name: str  # leaf name (its extension decides the format)
    data: Callable[[], bytes]
    expect: str  # a failure reason, or "scored"
    location: dict[str, Any] = field(default_factory=dict)
    prefix: str = ""  # a route prefix: "limited/", "strict/", "reject/"
    rows: int | None = None  # rows the output must have when scored
    rejected: int | None = None  # rows_rejected metadata when scored
    ids: tuple[str, ...] = ()  # ids that must come back byte for byte, in order
    says: str = ""  # the message (or encoding) must mention this, case-insensitively
    seconds: float = 60.0  # scored or failed within this many seconds of the upload
    note: str = ""


@dataclass
class EventSpec:
    """What an event case posts, and what it names."""

    body: Any  # a list of events, one event, or raw bytes
    event_id: str | None = None  # the id the record must be keyed by (failed/_events/<sha256(id)>.json)
    blob: tuple[str, str] | None = None  # (container, name) of a real blob the event names (scored cases)
    content_type: str = "application/json"


@dataclass(frozen=True)
class EventCase:
    """An event delivery to the scoring webhook, and what must become of it."""

    id: str
    build: Callable[[Stack, str], EventSpec]  # (stack, unique folder) -> what to post
    expect: str  # a failure reason, "scored" or "ignored"
    statuses: frozenset[int] = frozenset({200})  # acceptable HTTP answers
    note: str = ""


# -- file builders ------------------------------------------------------------------------------
def _rows(n: int = 40, seed: int = 3) -> list[dict[str, Any]]:
    return sample_rows(n, seed=seed)


def _csv(rows: list[dict[str, Any]], header: list[str] | None = None, newline: str = "\n") -> bytes:
    return csv_text(rows, header, newline).encode()


def _with(n: int, changes: dict[int, dict[str, Any]], seed: int = 3) -> list[dict[str, Any]]:
    """``n`` valid rows with some values replaced: {1-based row: {column: raw text}}."""
    rows = _rows(n, seed)
    for row, values in changes.items():
        rows[row - 1].update(values)
    return rows


def _jsonl(rows: list[Any]) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def _parquet(table: Any) -> bytes:
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _table(n: int = 30, seed: int = 3) -> Any:
    from training.data import generate

    return generate(n, seed=seed, include_label=False)


def _parquet_with(n: int, column: str, array: Callable[[Any], Any]) -> bytes:
    table = _table(n)
    index = table.schema.get_field_index(column)
    return _parquet(table.set_column(index, column, array(table.column(column))))


def _stray_quote(rows: int, at: int) -> bytes:
    data = _with(rows, {at: {"id": f'"r{at:08d}'}}, seed=4)
    return _csv(data)


@functools.lru_cache(maxsize=1)
def _gzip_bomb() -> bytes:
    """About 510 KB of gzip that inflates to a header and one 512 MiB line."""
    out = io.BytesIO()
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    out.write(compressor.compress((",".join(HEADER) + "\n").encode()))
    chunk = b"a" * MIB
    for _ in range(512):
        out.write(compressor.compress(chunk))
    out.write(compressor.flush())
    return out.getvalue()


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _huge_field(size: int, row: int, column: str = "region", quoted: bool = False) -> bytes:
    head = _csv(_rows(row - 1, seed=5)) if row > 1 else (",".join(HEADER) + "\n").encode()
    bad = _rows(1, seed=6)[0]
    bad[column] = f'"{"x" * size}"' if quoted else "x" * size
    tail = _csv(_rows(3, seed=7)).split(b"\n", 1)[1]
    return head + csv_text([bad]).encode().split(b"\n", 1)[1] + tail


def _edit_line(rows: int, row: int, edit: Callable[[str], str]) -> bytes:
    """``rows`` valid rows with data row ``row`` (1-based) rewritten by ``edit``."""
    lines = csv_text(_rows(rows)).split("\n")
    lines[row] = edit(lines[row])
    return "\n".join(lines).encode()


def _ids_csv(ids: tuple[str, ...]) -> bytes:
    rows = _rows(len(ids))
    for row, value in zip(rows, ids, strict=True):
        row["id"] = value
    return _csv(rows)


def _ids_parquet(ids: tuple[str, ...]) -> bytes:
    import pyarrow as pa

    table = _table(len(ids))
    return _parquet(table.set_column(0, "id", pa.array(list(ids), pa.string())))


IDS = ("00123", "NA", "NaN", "1e5", "null", "-0", "0x1F", "TRUE", "\u00e9t\u00e9", "007 ")


def _multiline_then_bad() -> bytes:
    rows = _with(30, {10: {"id": '"r-multi\nline"'}, 20: {"x05": "abc"}})
    return _csv(rows)


def _label(values: dict[int, str], n: int = 12) -> bytes:
    rows = _rows(n)
    for i, row in enumerate(rows, 1):
        row["label"] = values.get(i, str(i % 2))
    return _csv(rows, [*HEADER, "label"])


def _repetitive_gzip(rows: int = 200_000) -> bytes:
    one = csv_text(_rows(1)).split("\n", 1)[1]
    return _gzip(((",".join(HEADER) + "\n") + one * rows).encode())


def _utf8_header_broken() -> bytes:
    text = _csv(_rows(5))
    return text.replace(b"region", b"r\xe9gion", 1)


def _latin1_at(row: int) -> bytes:
    rows = _with(60, {row: {"id": "r-caf\u00e9"}})
    return csv_text(rows).encode("latin-1")


def _parquet_dupe() -> bytes:
    import pyarrow as pa

    table = _table(10)
    return _parquet(table.append_column(pa.field("x01", pa.float64()), table.column("x01")))


F = FileCase
FILE_CASES: list[FileCase] = [
    # --- baselines: every format scores ---
    F("valid-csv", "a.csv", lambda: sample_csv(50), "scored", rows=50),
    F("valid-csv-gz", "a.csv.gz", lambda: _gzip(sample_csv(50)), "scored", rows=50),
    F("valid-jsonl", "a.jsonl", lambda: _jsonl(_rows(25)), "scored", rows=25),
    F("valid-parquet", "a.parquet", lambda: _parquet(_table(30)), "scored", rows=30),
    # --- record boundaries, sizes and bombs ---
    F("stray-quote", "q.csv", lambda: _stray_quote(200, 50), "bad_file_format", {"line": 51, "row": 50}),
    F("stray-quote-6mb", "q.csv", lambda: _stray_quote(30_000, 100), "bad_file_format", {"line": 101, "row": 100},
      seconds=30, note="the record-boundary search must not rescan: 90 s on main"),
    F("huge-field-20mib", "h.csv", lambda: _huge_field(20 * MIB, 3), "too_large", {"line": 4, "row": 3}, seconds=30),
    F("huge-quoted-field-20mib", "h.csv", lambda: _huge_field(20 * MIB, 2, "id", quoted=True), "too_large",
      {"line": 3, "row": 2}, seconds=30, note="pyarrow: 'straddling object straddles two block boundaries'"),
    F("huge-header-17mib", "h.csv", lambda: ("x" * (17 * MIB) + "," + ",".join(HEADER) + "\n").encode() + sample_csv(3).split(b"\n", 1)[1],
      "too_large", {"line": 1}, seconds=30),
    F("huge-jsonl-line", "h.jsonl", lambda: _jsonl([_rows(1)[0], {**_rows(2)[1], "id": "x" * (17 * MIB)}]),
      "too_large", {"line": 2, "row": 2}, seconds=30),
    F("many-columns", "wide.csv", lambda: _csv(_rows(3), [*HEADER, *(f"c{i}" for i in range(2500))]), "too_large",
      says="column"),
    F("gzip-bomb-512mib-line", "bomb.csv.gz", _gzip_bomb, "too_large", seconds=30,
      note="510 KB inflating to one 512 MiB line: refused while streaming, memory bounded"),
    F("gzip-ratio-bomb", "ratio.csv.gz", _repetitive_gzip, "too_large", seconds=30, says="ratio"),
    F("truncated-gzip", "t.csv.gz", lambda: _gzip(sample_csv(400))[:-300], "bad_file_format"),
    F("not-gzip", "n.csv.gz", lambda: sample_csv(5), "bad_file_format"),
    F("over-route-file-size", "big.csv", lambda: sample_csv(200), "too_large", prefix="limited/"),
    # --- formats ---
    F("corrupt-parquet", "c.parquet", lambda: b"PAR1" + bytes(range(256)) * 20 + b"PAR1", "bad_file_format"),
    F("truncated-parquet", "t.parquet", lambda: _parquet(_table(200))[:-100], "bad_file_format"),
    F("parquet-bytes-named-csv", "p.csv", lambda: _parquet(_table(20)), "not_utf8"),
    F("unknown-extension-xlsx", "a.xlsx", lambda: sample_csv(5), "unsupported_format"),
    F("unknown-extension-txt", "a.txt", lambda: sample_csv(5), "unsupported_format"),
    F("no-extension", "data", lambda: sample_csv(5), "unsupported_format"),
    F("bz2-extension", "a.csv.bz2", lambda: sample_csv(5), "unsupported_format"),
    # --- encodings ---
    F("utf16-bom", "u.csv", lambda: csv_text(_rows(10)).encode("utf-16"), "not_utf8", says="utf-16"),
    F("utf16-le-no-bom", "u.csv", lambda: csv_text(_rows(10)).encode("utf-16-le"), "not_utf8", says="utf-16",
      note="no BOM, but the UTF-16 layout (every other byte NUL) is plain to see"),
    F("latin1-at-row-37", "l.csv", lambda: _latin1_at(37), "not_utf8", {"line": 38, "row": 37}),
    F("latin1-in-header", "l.csv", _utf8_header_broken, "not_utf8", {"line": 1}),
    F("bom-crlf-valid", "b.csv", lambda: "\ufeff".encode() + _csv(_rows(20), newline="\r\n"), "scored", rows=20),
    F("crlf-valid", "b.csv", lambda: _csv(_rows(20), newline="\r\n"), "scored", rows=20),
    F("bom-only", "b.csv", lambda: "\ufeff".encode(), "empty_file"),
    # --- values ---
    F("inf", "v.csv", lambda: _csv(_with(20, {5: {"x03": "inf"}})), "invalid_value", {"line": 6, "row": 5, "column": "x03"}),
    F("minus-inf", "v.csv", lambda: _csv(_with(20, {2: {"x10": "-inf"}})), "invalid_value", {"line": 3, "row": 2, "column": "x10"}),
    F("infinity", "v.csv", lambda: _csv(_with(20, {8: {"x20": "Infinity"}})), "invalid_value", {"line": 9, "row": 8, "column": "x20"}),
    F("overflow-to-inf", "v.csv", lambda: _csv(_with(20, {3: {"x04": "1e999"}})), "invalid_value",
      {"line": 4, "row": 3, "column": "x04"}, note="1e999 parses to inf"),
    F("missing-tokens-pass", "m.csv", lambda: _csv(_with(16, {2: {"x01": ""}, 3: {"x02": "NaN"}, 4: {"x03": "nan"},
      5: {"x04": "null"}, 6: {"x05": "NULL"}, 7: {"x06": "NA"}, 8: {"x07": "N/A"}, 9: {"x08": "n/a"}})), "scored", rows=16,
      note="missing values reach the model as NaN by default (on_missing: pass)"),
    F("missing-category-pass", "m.csv", lambda: _csv(_with(10, {4: {"region": ""}, 6: {"tier": "null"}})), "scored", rows=10),
    F("jsonl-null-pass", "m.jsonl", lambda: _jsonl(_with(8, {3: {"x05": None}})), "scored", rows=8),
    F("jsonl-absent-key-pass", "m.jsonl", lambda: _jsonl([{k: v for k, v in r.items() if not (i == 2 and k == "x06")}
                                                           for i, r in enumerate(_rows(8))]), "scored", rows=8),
    F("missing-strict-fails", "m.csv", lambda: _csv(_with(10, {3: {"x04": ""}})), "missing_value",
      {"line": 4, "row": 3, "column": "x04"}, prefix="strict/"),
    F("missing-reject-rows", "m.csv", lambda: _csv(_with(10, {2: {"x01": ""}, 7: {"x09": "NaN"}})), "scored",
      prefix="reject/", rows=8, rejected=2),
    F("missing-reject-every-row", "m.csv", lambda: _csv(_with(3, {1: {"x01": ""}, 2: {"x01": "NaN"}, 3: {"x02": ""}})),
      "missing_value", prefix="reject/"),
    F("bad-value", "v.csv", lambda: _csv(_with(20, {9: {"x02": "abc"}})), "bad_value", {"line": 10, "row": 9, "column": "x02"}),
    F("multiline-field-then-bad-value", "v.csv", _multiline_then_bad, "bad_value", {"line": 22, "row": 20, "column": "x05"},
      note="a quoted newline in row 10: physical lines and data rows differ from there on"),
    F("ragged-row-too-many", "r.csv", lambda: _edit_line(20, 12, lambda line: line + ",extra"), "bad_file_format",
      {"line": 13, "row": 12}),
    F("ragged-row-too-few", "r.csv", lambda: _edit_line(20, 6, lambda line: line.rsplit(",", 3)[0]), "bad_file_format",
      {"line": 7, "row": 6}),
    # --- schema ---
    F("duplicate-column", "s.csv", lambda: _csv([{**r, "dup": r["x01"]} for r in _rows(5)], [*HEADER, "dup"]).replace(b",dup\n", b",x01\n", 1),
      "schema_mismatch", {"column": "x01"}),
    F("case-different-name", "s.csv", lambda: _csv(_rows(5)).replace(b"x01,", b"X01,", 1), "schema_mismatch", {"column": "x01"}),
    F("missing-column", "s.csv", lambda: _csv(_rows(5), [c for c in HEADER if c != "x20"]), "schema_mismatch", {"column": "x20"}),
    F("extra-columns-ignored", "s.csv", lambda: _csv([{**r, "zz": "1", "note": "x"} for r in _rows(7)], [*HEADER, "zz", "note"]),
      "scored", rows=7),
    F("reordered-columns", "s.csv", lambda: _csv(_rows(7), list(reversed(HEADER))), "scored", rows=7),
    F("jsonl-string-for-number", "s.jsonl", lambda: _jsonl(_with(6, {5: {"x01": "0.5"}})), "wrong_type", {"column": "x01"}),
    F("jsonl-ints-are-floats", "s.jsonl", lambda: _jsonl(_with(6, {k: {"x03": k} for k in range(1, 7)})), "scored", rows=6),
    F("parquet-string-declared-numeric", "s.parquet", lambda: _parquet_with(10, "x01", lambda c: c.cast("string")),
      "wrong_type", {"column": "x01"}),
    F("parquet-float32-widens", "s.parquet", lambda: _parquet_with(10, "x02", lambda c: c.cast("float32")), "scored", rows=10),
    F("parquet-dictionary-strings", "s.parquet", lambda: _parquet_with(10, "region", lambda c: c.dictionary_encode()), "scored", rows=10),
    F("parquet-large-string", "s.parquet", lambda: _parquet_with(10, "tier", lambda c: c.cast("large_string")), "scored", rows=10),
    F("parquet-duplicate-column", "s.parquet", _parquet_dupe, "schema_mismatch", {"column": "x01"}),
    F("parquet-missing-column", "s.parquet", lambda: _parquet(_table(5).drop_columns(["x07"])), "schema_mismatch", {"column": "x07"}),
    F("label-bad-value", "lab.csv", lambda: _label({4: "yes"}), "bad_value", {"line": 5, "row": 4, "column": "label"}),
    F("label-valid", "lab.csv", lambda: _label({}), "scored", rows=12),
    # --- empty ---
    F("zero-bytes-csv", "e.csv", lambda: b"", "empty_file"),
    F("header-only", "e.csv", lambda: (",".join(HEADER) + "\n").encode(), "empty_file"),
    F("header-only-no-newline", "e.csv", lambda: ",".join(HEADER).encode(), "empty_file"),
    F("zero-bytes-jsonl", "e.jsonl", lambda: b"", "empty_file"),
    F("blank-lines-jsonl", "e.jsonl", lambda: b"\n\n\n", "empty_file"),
    F("zero-row-parquet", "e.parquet", lambda: _parquet(_table(0)), "empty_file"),
    F("empty-gzip", "e.csv.gz", lambda: _gzip(b""), "empty_file"),
    # --- JSON lines errors ---
    F("jsonl-bad-row-7", "j.jsonl", lambda: _jsonl([*_rows(6), b'{"id": "r7", "x01": ', *_rows(3)]), "bad_file_format",
      {"line": 7, "row": 7}),
    F("jsonl-array-row-3", "j.jsonl", lambda: _jsonl([*_rows(2), [1, 2, 3], *_rows(2)]), "bad_file_format", {"line": 3, "row": 3}),
    # --- ids come back byte for byte ---
    F("ids-byte-for-byte-csv", "i.csv", lambda: _ids_csv(IDS), "scored", rows=len(IDS), ids=IDS),
    F("ids-byte-for-byte-jsonl", "i.jsonl", lambda: _jsonl([{**r, "id": i} for r, i in zip(_rows(len(IDS)), IDS, strict=True)]),
      "scored", rows=len(IDS), ids=IDS),
    F("ids-byte-for-byte-parquet", "i.parquet", lambda: _ids_parquet(IDS), "scored", rows=len(IDS), ids=IDS),
]


# -- event builders -----------------------------------------------------------------------------
def _ev(stack: Stack, container: str, name: str, **kw: Any) -> dict[str, Any]:
    return stack.event(container, name, etag=kw.pop("etag", '"0x8DEADBEEF"'), size=kw.pop("size", 100), **kw)


def _raw_names(subject_name: str, url_name: str | None = None, container: str = "incoming",
               url_container: str | None = None) -> Callable[[Stack, str], EventSpec]:  # fmt: skip
    """An event whose subject names ``subject_name`` and whose URL path is ``url_name`` (given raw)."""

    def build(stack: Stack, folder: str) -> EventSpec:
        event = _ev(stack, container, f"{folder}/x.csv")
        base = stack.azurite.endpoints["blob"]
        event["subject"] = f"/blobServices/default/containers/{container}/blobs/{subject_name.format(f=folder)}"
        event["data"]["url"] = f"{base}/{url_container or container}/{(url_name or subject_name).format(f=folder)}"
        return EventSpec([event], event["id"])

    return build


def _mutate(change: Callable[[dict[str, Any], Stack, str], Any], container: str = "incoming") -> Callable[[Stack, str], EventSpec]:
    def build(stack: Stack, folder: str) -> EventSpec:
        event = _ev(stack, container, f"{folder}/x.csv")
        replaced = change(event, stack, folder)
        body = replaced if replaced is not None else [event]
        return EventSpec(body, event["id"])

    return build


def _real(name: str, data: Callable[[], bytes] = lambda: sample_csv(5), cloud: bool = False,
          encoded: bool = True) -> Callable[[Stack, str], EventSpec]:  # fmt: skip
    """An event for a real blob (uploaded under a container the local Event Grid does not watch)."""

    def build(stack: Stack, folder: str) -> EventSpec:
        blob = f"{folder}/{name}"
        stack.upload("storm", blob, data())
        event = stack.event("storm", blob)
        if not encoded:
            event["data"]["url"] = f"{stack.azurite.endpoints['blob']}/storm/{blob}"
        if cloud:
            event = {"specversion": "1.0", "id": event["id"], "type": event["eventType"], "source": TOPIC,
                     "subject": event["subject"], "time": event["eventTime"], "data": event["data"]}  # fmt: skip
            return EventSpec([event], event["id"], ("storm", blob), "application/cloudevents-batch+json")
        return EventSpec([event], event["id"], ("storm", blob))

    return build


def _set(path: str, value: Any) -> Callable[[dict[str, Any], Stack, str], None]:
    def change(event: dict[str, Any], _stack: Stack, _folder: str) -> None:
        target = event
        *parents, leaf = path.split(".")
        for part in parents:
            target = target[part]
        if value is _DELETE:
            target.pop(leaf, None)
        else:
            target[leaf] = value

    return change


_DELETE = object()


def _cloud_03(event: dict[str, Any], _stack: Stack, _folder: str) -> list[dict[str, Any]]:
    return [{"specversion": "0.3", "id": event["id"], "type": event["eventType"], "source": TOPIC,
             "subject": event["subject"], "time": event["eventTime"], "data": event["data"]}]  # fmt: skip


def _big_event(event: dict[str, Any], _stack: Stack, _folder: str) -> None:
    event["data"]["storageDiagnostics"] = {"batchId": "b", "padding": "p" * (2 * MIB)}


def _batch_6000(event: dict[str, Any], stack: Stack, folder: str) -> list[dict[str, Any]]:
    events = [event]
    for i in range(5999):
        events.append({**event, "id": f"{event['id']}-{i}"})
    return events


def _non_object(event: dict[str, Any], _stack: Stack, _folder: str) -> list[Any]:
    return [event, 5, "x", None]


def _own(container: str) -> Callable[[Stack, str], EventSpec]:
    def build(stack: Stack, folder: str) -> EventSpec:
        event = _ev(stack, container, f"incoming/{folder}/x.csv.0x1.json")
        return EventSpec([event], event["id"])

    return build


def _foreign_account(stack: Stack, folder: str) -> EventSpec:
    event = _ev(stack, "incoming", f"{folder}/x.csv")
    event["topic"] = TOPIC.replace("devstoreaccount1", "evilaccount")
    event["data"]["url"] = event["data"]["url"].replace("/devstoreaccount1/", "/evilaccount/")
    return EventSpec([event], event["id"])


def _create_file_zero(stack: Stack, folder: str) -> EventSpec:
    event = _ev(stack, "incoming", f"{folder}/lake.csv", size=0, api="CreateFile")
    return EventSpec([event], event["id"])


def _put_zero(stack: Stack, folder: str) -> EventSpec:
    stack.upload("storm", f"{folder}/zero.csv", b"")
    event = stack.event("storm", f"{folder}/zero.csv")
    return EventSpec([event], event["id"], ("storm", f"{folder}/zero.csv"))


E = EventCase
BAD = frozenset({200, 400})  # recorded and acknowledged, or refused at the boundary: never retried
EVENT_CASES: list[EventCase] = [
    # --- names ---
    E("dotdot-raw", _raw_names("{f}/../../../etc/passwd"), "bad_event", BAD),
    E("dotdot-url-only", _raw_names("{f}/etc/passwd", "{f}/../../../etc/passwd"), "bad_event", BAD),
    E("dotdot-percent-2f", _raw_names("{f}/..%2F..%2F..%2Fhome/site/wwwroot/local.settings.json",
                                      "{f}/..%2F..%2F..%2Fhome/site/wwwroot/local.settings.json"), "bad_event", BAD),
    E("dotdot-percent-2e", _raw_names("{f}/%2E%2E/%2E%2E/x.csv", "{f}/%2E%2E/%2E%2E/x.csv"), "bad_event", BAD),
    E("dot-segment", _raw_names("{f}/./x.csv"), "bad_event", BAD),
    E("empty-segment", _raw_names("{f}//x.csv"), "bad_event", BAD),
    E("backslash", _raw_names("{f}\\..\\..\\x.csv", "{f}%5C..%5C..%5Cx.csv"), "bad_event", BAD),
    E("control-char", _raw_names("{f}/a\u0001b.csv", "{f}/a%01b.csv"), "bad_event", BAD),
    E("newline-in-name", _raw_names("{f}/a\nb.csv", "{f}/a%0Ab.csv"), "bad_event", BAD),
    E("nul-in-url", _raw_names("{f}/a.csv", "{f}/a%00.csv"), "bad_event", BAD),
    E("name-over-1024", _raw_names("{f}/" + "n" * 1100 + ".csv"), "bad_event", BAD),
    E("over-254-segments", _raw_names("{f}/" + "s/" * 300 + "x.csv"), "bad_event", BAD),
    E("trailing-dot", _raw_names("{f}/x.csv."), "bad_event", BAD),
    E("uppercase-container", _raw_names("{f}/x.csv", container="Incoming"), "bad_event", BAD),
    # --- sources ---
    E("foreign-host", _mutate(_set("data.url", "https://evil.example.com/devstoreaccount1/incoming/x.csv")), "bad_event", BAD),
    E("foreign-account", _foreign_account, "bad_event", BAD),
    E("file-scheme", _mutate(_set("data.url", "file:///etc/passwd")), "bad_event", BAD),
    E("url-with-query", _mutate(lambda e, s, f: e["data"].update(url=e["data"]["url"] + "?sv=2020&sig=x")), "bad_event", BAD),
    E("url-with-credentials", _mutate(lambda e, s, f: e["data"].update(url=e["data"]["url"].replace("http://", "http://u:p@"))),
      "bad_event", BAD),
    E("subject-url-blob-mismatch", _raw_names("{f}/a.csv", "{f}/b.csv"), "bad_event", BAD),
    E("subject-url-container-mismatch", _raw_names("{f}/a.csv", url_container="scored"), "bad_event", BAD),
    # --- valid names score end to end ---
    E("unicode-name-raw-url", _real("donn\u00e9es/\u00e9t\u00e9 \u6f22\u5b57.csv", encoded=False), "scored"),
    E("unicode-name-encoded-url", _real("donn\u00e9es/r\u00e9sum\u00e9.csv"), "scored"),
    E("space-and-percent-name", _real("a b%20c+d.csv"), "scored"),
    E("cloudevents-1.0", _real("ce.csv", cloud=True), "scored"),
    # --- the app's own containers and containers no route serves: ignored, no record ---
    E("own-failed-container", _own("failed"), "ignored"),
    E("own-scored-container", _own("scored"), "ignored"),
    E("unserved-container", _own("other"), "ignored"),
    # --- the envelope ---
    E("specversion-0.3", _mutate(_cloud_03), "unsupported_event", BAD),
    E("malformed-eventTime", _mutate(_set("eventTime", "yesterday at noon")), "malformed_event", BAD),
    E("numeric-eventTime", _mutate(_set("eventTime", 1764583200)), "malformed_event", BAD),
    E("non-object-elements", _mutate(_non_object), "malformed_event", BAD),
    E("numeric-id", _mutate(_set("id", 12345)), "malformed_event", BAD),
    E("missing-url", _mutate(_set("data.url", _DELETE)), "missing_field", BAD),
    E("data-not-object", _mutate(_set("data", "not-an-object")), "malformed_event", BAD),
    E("event-over-1mb", _mutate(_big_event), "too_large", frozenset({413})),
    E("batch-of-6000", _mutate(_batch_6000), "too_large", frozenset({413})),
    E("not-json", lambda s, f: EventSpec(b'{"id": "x", "eventType": ', None), "malformed_event", frozenset({400})),
    E("datalake-createfile-zero", _create_file_zero, "ignored"),
    E("putblob-zero-length", _put_zero, "empty_file"),
]

assert len({c.id for c in FILE_CASES}) == len(FILE_CASES) and len({c.id for c in EVENT_CASES}) == len(EVENT_CASES)
assert all(c.expect in FAILURE_REASONS or c.expect in ("scored", "ignored") for c in FILE_CASES + EVENT_CASES)


def unique_folder() -> str:
    return f"corpus-{uuid.uuid4().hex[:8]}"
