"""What the reliability and security suites share: a scoring stack on the real local services (a model
trained and registered in MLflow, devhost as its own process, Azurite), event builders, and the checks of
the core promise: every file ends scored exactly once or failed with a reason, nothing lost, nothing
partial, nothing written outside the app's containers.

Outcomes are found the way an operator would find them, never through today's naming rules: an output is
a blob of the output container whose lineage metadata names the input (``input_url``, ``input_etag``); a
failure record is a JSON blob of the failed container under the input's path (or, for an event the app
cannot trust, under ``_events/``).

Example:
    >>> stack = start_stack(tmp, azurite, mlflow_uri)                      # doctest: +SKIP
    >>> etag = stack.upload("incoming", "case/a.csv", data)              # doctest: +SKIP
    >>> stack.outcome("incoming", "case/a.csv", etag)                    # doctest: +SKIP
    Outcome(kind='scored', ...)
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.scoring import blob_key
from tests.conftest import ROOT, DevhostProcess, start_devhost

ROOT_LOCAL = ROOT / ".local"
WEBHOOK = "/runtime/webhooks/eventgrid?functionName=score_blob"
ACCOUNT = "devstoreaccount1"
TOPIC = f"/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}"
INPUT, OUTPUT, FAILED, STORM = "incoming", "scored", "failed", "storm"
APP_CONTAINERS = {INPUT, OUTPUT, FAILED, STORM, "drift", "deadletter"}
# Routes of the test stack: per-route limits and missing-value policies on prefixes of ``incoming``, and a
# second input container (``storm``) that the local Event Grid does not watch, for hand-made deliveries.
ROUTES = [
    {"name": "limited", "container": INPUT, "prefix": "limited/", "max_file_bytes": 4096},
    {"name": "strict", "container": INPUT, "prefix": "strict/", "on_missing": "fail"},
    {"name": "reject", "container": INPUT, "prefix": "reject/", "on_missing": "reject_rows"},
    {"name": "default", "container": INPUT},
    {"name": "storm", "container": STORM},
]
HEADER = ["id", *(f"x{i:02d}" for i in range(1, 21)), "region", "channel", "tier"]


def train_model(tracking_uri: str, prefix: str = "rel") -> str:
    """Train the sample model (ONNX), register it and point ``champion`` at it; returns its name."""
    from training.train import train_and_register

    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    train_and_register(tracking_uri, model_name=name, rows=3000, alias="champion")
    return name


@dataclass
class Outcome:
    """What became of one version of one input: ``scored`` (outputs), ``failed`` (records) or ``none``."""

    kind: str
    outputs: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def record(self) -> dict[str, Any]:
        return self.records[-1][1] if self.records else {}


class Stack:
    """A devhost process with a trained model, its Azurite and its ledger table."""

    def __init__(self, dev: DevhostProcess, azurite: Any, model: str, ledger_table: str) -> None:
        from azure.storage.blob import BlobServiceClient

        self.dev, self.azurite, self.model, self.ledger_table = dev, azurite, model, ledger_table
        self.blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
        for container in (INPUT, OUTPUT, FAILED, STORM):
            if not self.blobs.get_container_client(container).exists():
                self.blobs.create_container(container)

    # -- driving ----------------------------------------------------------------------------------
    def upload(self, container: str, name: str, data: bytes, overwrite: bool = False) -> str:
        """Upload a blob; returns its eTag (quoted, as the SDK gives it)."""
        return str(self.blobs.get_blob_client(container, name).upload_blob(data, overwrite=overwrite)["etag"])

    def url(self, container: str, name: str) -> str:
        return f"{self.azurite.endpoints['blob']}/{container}/{urllib.parse.quote(name)}"

    def event(self, container: str, name: str, *, etag: str | None = None, size: int | None = None,
              sequencer: str | None = None, api: str = "PutBlob", **overrides: Any) -> dict[str, Any]:
        """A ``BlobCreated`` event (Event Grid schema) for a blob, from its real properties when it exists."""
        if etag is None or size is None:
            props = self.blobs.get_blob_client(container, name).get_blob_properties()
            etag, size = etag or props.etag, props.size if size is None else size
        data = {"api": api, "eTag": etag, "contentLength": size, "blobType": "BlockBlob",
                "contentType": "text/csv", "url": self.url(container, name),
                "sequencer": sequencer or f"{time.time_ns():032x}"}  # fmt: skip
        data.update(overrides.pop("data", {}))
        event = {"id": str(uuid.uuid4()), "eventType": "Microsoft.Storage.BlobCreated", "topic": TOPIC,
                 "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
                 "eventTime": "2026-12-01T10:00:00.1234567Z", "dataVersion": "", "metadataVersion": "1",
                 "data": data}  # fmt: skip
        event.update(overrides)
        return event

    def post(self, body: Any, timeout: float = 120, content_type: str = "application/json") -> int:
        """Deliver a body (events, or raw bytes) to the scoring webhook as Event Grid does; the status."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, _, _ = self.dev.request("POST", WEBHOOK, data, {
            "aeg-event-type": "Notification", "Content-Type": f"{content_type}; charset=utf-8"}, timeout=timeout)  # fmt: skip
        return status

    def alive(self) -> bool:
        """devhost's process runs and its admin status answers."""
        if self.dev.process.poll() is not None:
            return False
        try:
            status, _, _ = self.dev.request("GET", "/admin/host/status",
                                            headers={"x-functions-key": self.dev.master_key}, timeout=10)  # fmt: skip
        except OSError:
            return False
        return status == 200

    # -- observing --------------------------------------------------------------------------------
    def outputs(self, container: str, name: str, *, prefix: str | None = None) -> list[tuple[str, dict[str, str]]]:
        """Outputs whose lineage names this input (``input_url``), as (name, metadata)."""
        wanted = {self.url(container, name), urllib.parse.unquote(self.url(container, name))}
        prefix = prefix if prefix is not None else (name.rsplit("/", 1)[0] + "/" if "/" in name else "")
        found = []
        # outputs are named <input container>/<input name>.predictions.*
        for blob in self.blobs.get_container_client(OUTPUT).list_blobs(name_starts_with=f"{container}/{prefix}",
                                                                        include=["metadata"]):  # fmt: skip
            meta = dict(blob.metadata or {})
            url = meta.get("input_url", "")
            if url in wanted or urllib.parse.unquote(url) in wanted:
                found.append((blob.name, meta))
        return found

    def failure_records(self, container: str, name: str) -> list[tuple[str, dict[str, Any]]]:
        """Failure records under the input's path in the failed container (``retrying`` ones left out)."""
        client = self.blobs.get_container_client(FAILED)
        found = []
        for blob in client.list_blobs(name_starts_with=f"{container}/{name}"):
            record = self.read_json(FAILED, blob.name)
            if record is not None and "retrying" not in (record.get("status"), record.get("reason")):
                found.append((blob.name, record))
        return found

    def read_json(self, container: str, name: str) -> dict[str, Any] | None:
        try:
            record = json.loads(self.blobs.get_blob_client(container, name).download_blob().readall())
        except Exception:
            return None
        return record if isinstance(record, dict) else {"_list": record}

    def outcome(self, container: str, name: str, etag: str | None = None) -> Outcome:
        """The outcome of a blob (of the version ``etag`` when given) as of now."""
        outputs = self.outputs(container, name)
        if etag is not None:
            outputs = [(n, m) for n, m in outputs if m.get("input_etag", "").strip('"') == etag.strip('"')]
        records = self.failure_records(container, name)
        if etag is not None:
            records = [(n, r) for n, r in records
                       if str(r.get("etag", "")).strip('"') in ("", etag.strip('"'))]  # fmt: skip
        kind = "scored" if outputs else "failed" if records else "none"
        return Outcome(kind, outputs, records)

    def wait_outcome(self, container: str, name: str, etag: str | None = None, timeout: float = 90) -> Outcome:
        """Wait until the blob is scored or failed (or ``timeout``: kind ``none``)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.outcome(container, name, etag)
            if result.kind != "none" or time.monotonic() > deadline or self.dev.process.poll() is not None:
                return result
            time.sleep(0.25)

    def rejected_events(self) -> dict[str, dict[str, Any]]:
        """Every record under ``failed/_events/`` (untrusted events), by blob name."""
        client = self.blobs.get_container_client(FAILED)
        return {b.name: self.read_json(FAILED, b.name) or {}
                for b in client.list_blobs(name_starts_with="_events/")}  # fmt: skip

    def snapshot(self) -> dict[str, dict[str, str]]:
        """Every blob of the account (container → name → eTag): to see what a case wrote, and where."""
        return {c.name: {b.name: b.etag for b in self.blobs.get_container_client(c.name).list_blobs()}
                for c in self.blobs.list_containers()}  # fmt: skip

    def ledger(self) -> list[dict[str, Any]]:
        """The ledger's file entries (key, status, details)."""
        from azure.data.tables import TableClient

        table = TableClient.from_connection_string(self.azurite.connection_string, self.ledger_table)
        out = []
        for entity in table.query_entities("PartitionKey eq 'blob'"):
            out.append({"key": entity["Key"], "status": entity["Status"],
                        "details": json.loads(entity.get("Details") or "{}")})  # fmt: skip
        return out

    def rows_in_output(self, name: str) -> int:
        data = self.blobs.get_blob_client(OUTPUT, name).download_blob().readall()
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            return int(pq.read_metadata(io.BytesIO(data)).num_rows)
        return max(0, sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8")))) - 1)


def write_changes(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> list[str]:
    """``container/name`` of every blob created or changed between two snapshots."""
    changed = []
    for container, blobs in after.items():
        old = before.get(container, {})
        changed += [f"{container}/{n}" for n, etag in blobs.items() if old.get(n) != etag]
    return changed


def start_stack(tmp_path: Path, azurite: Any, mlflow_uri: str, *, model: str | None = None,
                extra: dict[str, str] | None = None, subscriptions: Path | None = None) -> Stack:  # fmt: skip
    """A devhost on the given services with the test routes, a fresh ledger table and a trained model."""
    model = model or train_model(mlflow_uri)
    ledger = f"rel{uuid.uuid4().hex[:10]}"
    dev = start_devhost(tmp_path, azurite, mlflow_uri, subscriptions=subscriptions, extra={
        "SCOREHOOK_MODEL_URI": f"models:/{model}@champion", "SCOREHOOK_ALIAS_TTL_SECONDS": "3600",
        "SCOREHOOK_LEDGER_TABLE": ledger, "SCOREHOOK_ROUTES": json.dumps(ROUTES),
        "SCOREHOOK_LOG_CONSOLE": "false", **(extra or {}),
    })  # fmt: skip
    return Stack(dev, azurite, model, ledger)


# -- data -----------------------------------------------------------------------------------------
def sample_rows(rows: int, seed: int = 1, start: int = 0) -> list[dict[str, Any]]:
    """Valid input rows of the sample model, as dicts (label left out)."""
    from training.data import generate

    return generate(rows, seed=seed, start=start, include_label=False).to_pylist()


def csv_text(rows: Iterable[dict[str, Any]], header: list[str] | None = None, newline: str = "\n") -> str:
    """CSV text of rows (values written as they are: a test controls every byte)."""
    header = header or HEADER
    lines = [",".join(header)]
    for row in rows:
        lines.append(",".join("" if row.get(c) is None else str(row.get(c)) for c in header))
    return newline.join(lines) + newline


def sample_csv(rows: int, seed: int = 1, start: int = 0) -> bytes:
    return csv_text(sample_rows(rows, seed, start)).encode()


class RssSampler:
    """Peak resident memory of a process (and its children), sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.interval, self.start_rss, self.peak = interval, self._rss(), 0
        self.peak = self.start_rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _rss(self) -> int:
        try:
            return int(self.process.memory_info().rss)
        except Exception:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start_rss) / 2**20


_SHARED: dict[str, Stack] = {}


def shared_stack(tmp_path_factory: Any, azurite: Any, mlflow_uri: str) -> Stack:
    """One stack per session for every suite that runs on the session's Azurite and MLflow."""
    if "stack" not in _SHARED:
        _SHARED["stack"] = start_stack(tmp_path_factory.mktemp("stack"), azurite, mlflow_uri)
    return _SHARED["stack"]


def stop_shared() -> None:
    from tests.conftest import stop_devhost

    stack = _SHARED.pop("stack", None)
    if stack is not None:
        stop_devhost(stack.dev)


# -- invariants -----------------------------------------------------------------------------------
@dataclass
class Version:
    """One version of one input file: its eTag and how many rows it has."""

    etag: str
    rows: int


def check_invariants(stack: Stack, container: str, files: dict[str, list[Version]], prefix: str,
                     *, expect_failed: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:  # fmt: skip
    """The core promise over a run: for each file (name → its versions, oldest first) exactly one output, of
    its newest version, with all its rows (``rows_scored`` equal to the rows in the blob), or a failure
    record with a reason from the closed set (only for files in ``expect_failed``); and the ledger's
    record of the newest version says so. Returns the figures and a list of problems (``problems``)."""
    from shared.errors import FAILURE_REASONS

    base = stack.azurite.endpoints["blob"]
    by_input: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for blob in stack.blobs.get_container_client(OUTPUT).list_blobs(name_starts_with=f"{container}/{prefix}",
                                                                    include=["metadata"]):  # fmt: skip
        meta = dict(blob.metadata or {})
        by_input.setdefault(urllib.parse.unquote(meta.get("input_url", "")), []).append((blob.name, meta))
    ledger: dict[str, str] = {}
    for _ in range(15):  # the ledger is finished just after the output commits: let in-flight files settle
        ledger = {r["key"]: r["status"] for r in stack.ledger()}
        if "claimed" not in ledger.values():
            break
        time.sleep(1.0)
    figures = {"files": len(files), "outputs": 0, "duplicates": 0, "lost": 0, "failed_with_reason": 0,
               "partial_visible": 0, "stale": 0}  # fmt: skip
    problems: list[str] = []
    for name, versions in files.items():
        newest = versions[-1]
        url = urllib.parse.unquote(f"{base}/{container}/{name}")
        outputs = by_input.get(url, [])
        figures["outputs"] += len(outputs)
        if len(outputs) > 1:
            figures["duplicates"] += len(outputs) - 1
            problems.append(f"{name}: {len(outputs)} outputs")
        records = [r for _, r in stack.failure_records(container, name)
                   if str(r.get("etag", "")).strip('"') in ("", newest.etag.strip('"'))]  # fmt: skip
        if not outputs and not records:
            figures["lost"] += 1
            problems.append(f"{name}: lost (no output, no failure record)")
            continue
        if records and not outputs:
            reason = records[-1].get("reason")
            if reason in FAILURE_REASONS:
                figures["failed_with_reason"] += 1
            if name not in expect_failed:
                problems.append(f"{name}: failed ({reason}: {records[-1].get('message')})")
            continue
        out_name, meta = outputs[0]
        if meta.get("input_etag", "").strip('"') != newest.etag.strip('"'):
            figures["stale"] += 1
            problems.append(f"{name}: the output is of an older version ({meta.get('input_etag')} != {newest.etag})")
        rows = stack.rows_in_output(out_name)
        if rows != newest.rows or meta.get("rows_scored") != str(newest.rows):
            figures["partial_visible"] += 1
            problems.append(f"{name}: output has {rows} rows, rows_scored={meta.get('rows_scored')}, input {newest.rows}")
        status = ledger.get(blob_key(ACCOUNT, container, name, newest.etag))
        if status != "succeeded":
            problems.append(f"{name}: ledger says {status!r} for the newest version")
        if name in expect_failed:
            problems.append(f"{name}: a poison file was scored")
    figures["problems"] = problems
    return figures


def _drift_store(stack: Stack) -> Any:
    from shared.adapters import AzureBlobStore
    from shared.drift.store import ProfileStore
    from shared.settings import Settings

    settings = Settings.from_env({"DataStorage": stack.azurite.connection_string})
    return ProfileStore(AzureBlobStore.from_settings(settings))


def drift_totals(stack: Stack) -> dict[tuple[str, str], tuple[int, int]]:
    """Rows and inputs counted in each of the model's drift windows ((version, window) → (rows, parts)),
    compacted here first (racing devhost's timer, as a second evaluator would)."""
    store = _drift_store(stack)
    totals = {}
    for window in store.windows(stack.model):
        state = store.compact(stack.model, window.version, window.key)
        if state is not None:
            totals[(window.version, window.key)] = (state.rows, state.parts)
    return totals


def check_drift(stack: Stack, container: str, files: dict[str, list[Version]],
                before: dict[tuple[str, str], tuple[int, int]]) -> dict[str, Any]:  # fmt: skip
    """Drift's half of the promise: every file scored exactly once has its profile counted exactly once. For
    each file's newest version the ledger says its profile is recorded (never ``missing``) and its window
    absorbed it and lists its input once; and the model's windows gained exactly the files' rows and inputs
    since ``before`` (:func:`drift_totals`): nothing lost, nothing counted twice. Returns the figures and the
    problems (``problems``)."""
    from shared.drift.store import part_tag

    base = stack.azurite.endpoints["blob"]
    store = _drift_store(stack)
    ledger = {r["key"]: r for r in stack.ledger()}
    after = drift_totals(stack)
    states = {}
    figures = {"profiles": 0, "profiles_missing": 0, "profiles_double_counted": 0,
               "profile_rows_counted": sum(r for r, _ in after.values()) - sum(r for r, _ in before.values()),
               "profile_rows_expected": sum(v[-1].rows for v in files.values())}  # fmt: skip
    problems: list[str] = []
    for name, versions in files.items():
        newest = versions[-1]
        key = blob_key(ACCOUNT, container, name, newest.etag)
        record = ledger.get(key) or {}
        details = record.get("details", {})
        status, where = details.get("drift_profile"), (str(details.get("model_version")), details.get("drift_window"))
        if status not in ("recorded", "already_recorded") or where[1] is None:
            figures["profiles_missing"] += 1
            problems.append(f"{name}: drift profile {status!r} ({details.get('drift_profile_reason')})")
            continue
        if where not in states:
            states[where] = store.compacted(stack.model, *where)
        state = states[where]
        url = f"{base}/{container}/{urllib.parse.quote(name)}"
        listed = sum(urllib.parse.unquote(u) == urllib.parse.unquote(url) for u in state.inputs) if state else 0
        if state is None or part_tag(record.get("key", key)) not in state.absorbed or listed != 1:
            figures["profiles_double_counted" if listed > 1 else "profiles_missing"] += 1
            problems.append(f"{name}: not counted once in window {where[1]} (its input listed {listed} times)")
            continue
        figures["profiles"] += 1
    gained = sum(p for _, p in after.values()) - sum(p for _, p in before.values())
    if gained != len(files) or figures["profile_rows_counted"] != figures["profile_rows_expected"]:
        problems.append(f"drift windows gained {gained} inputs and {figures['profile_rows_counted']} rows; "
                        f"the files are {len(files)} with {figures['profile_rows_expected']} rows")  # fmt: skip
    figures["problems"] = problems
    return figures


def settled(stack: Stack, container: str, files: dict[str, list[Version]], prefix: str) -> set[str]:
    """Files whose newest version has an output or a failure record, from two listings (cheap to poll)."""
    base = stack.azurite.endpoints["blob"]
    scored = set()
    for blob in stack.blobs.get_container_client(OUTPUT).list_blobs(name_starts_with=f"{container}/{prefix}",
                                                                    include=["metadata"]):  # fmt: skip
        meta = blob.metadata or {}
        scored.add((urllib.parse.unquote(meta.get("input_url", "")), meta.get("input_etag", "").strip('"')))
    failed = [b.name for b in stack.blobs.get_container_client(FAILED).list_blobs(name_starts_with=f"{container}/{prefix}")]
    done = set()
    for name, versions in files.items():
        etag = versions[-1].etag.strip('"')
        if (urllib.parse.unquote(f"{base}/{container}/{name}"), etag) in scored or any(f.startswith(f"{container}/{name}") for f in failed):
            done.add(name)
    return done


def wait_all(stack: Stack, container: str, files: dict[str, list[Version]], timeout: float,
             prefix: str | None = None) -> float:  # fmt: skip
    """Wait until every file's newest version has an outcome (or ``timeout``); returns the seconds waited."""
    started = time.monotonic()
    if prefix is None:
        prefix = next(iter(files)).rsplit("/", 1)[0] + "/" if files else ""
    pending = set(files)
    while pending and time.monotonic() - started < timeout and stack.dev.process.poll() is None:
        pending -= settled(stack, container, files, prefix)
        if pending:
            time.sleep(1.0)
    return time.monotonic() - started


def deliver(stack: Stack, events: list[dict[str, Any]], workers: int = 8, attempts: int = 8,
            retry_delays: tuple[float, ...] = (0.5, 1, 2, 4, 8)) -> dict[str, int]:  # fmt: skip
    """Post each event on its own, ``workers`` at a time, retrying what is not acknowledged (2xx) as Event
    Grid does (400/413 are final). Returns counts: ``delivered`` (requests), ``acknowledged``, ``gave_up``."""
    from concurrent.futures import ThreadPoolExecutor

    counts = {"delivered": 0, "acknowledged": 0, "gave_up": 0}
    lock = threading.Lock()

    def one(event: dict[str, Any]) -> None:
        for attempt in range(attempts):
            try:
                status = stack.post([event], timeout=120)
            except OSError:
                status = 0
            with lock:
                counts["delivered"] += 1
            if 200 <= status <= 204:
                with lock:
                    counts["acknowledged"] += 1
                return
            if status in (400, 413):
                break
            time.sleep(retry_delays[min(attempt, len(retry_delays) - 1)])
        with lock:
            counts["gave_up"] += 1

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, events))
    return counts


def restart_devhost(stack: Stack, timeout: float = 90) -> None:
    """Start devhost again with the same settings file (same port, keys and ledger) after it died."""
    import os
    import subprocess
    import sys

    dev = stack.dev
    if dev.process.poll() is None:
        dev.process.kill()
        dev.process.wait(10)
    argv = [sys.executable, "-m", "devhost", "host", "--settings", str(dev.settings_path), "--app", "function_app:app"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "e2e")])}
    dev.process = subprocess.Popen(argv, cwd=ROOT, stdout=open(dev.log, "a"), stderr=subprocess.STDOUT,  # noqa: SIM115
                                   text=True, env=env)  # fmt: skip

    def up() -> bool:
        try:
            return dev.request("GET", "/admin/host/status", headers={"x-functions-key": dev.master_key}, timeout=2)[0] == 200
        except OSError:
            return False

    dev.wait_for(up, timeout=timeout, what="devhost to restart")
