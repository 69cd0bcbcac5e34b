"""E2E: files uploaded to Azurite, scored by devhost (local Event Grid → ``score_blob``), output committed.

Starts Azurite and an MLflow server, registers a linear ONNX model as ``champion``, starts devhost as its
own process (``python -m devhost host --settings FILE``), then measures, from the moment an upload
returns to the moment the output blob exists in ``scored``:

1. one small file with a cold model cache (``cold_ms``; it also warms the cache),
2. the big file (``rows`` rows) → rows/s,
3. ``small_files`` files of ``small_rows`` rows, one after another (a random 0-300 ms pause before each,
   so arrivals do not fall into step with devhost's blob watcher), polling every 10 ms → p50/p95 ms.

Then, with the host idle, the big blob is downloaded alone through the app's own read path (same SDK
calls, range size, ranges in flight and eTag condition), twice: ``download_s`` is the faster run, the I/O
floor of the in-function time (``big_function_s``, from the app's "file scored" log line).

For the small files the time is also split, from the app's "file scored" log lines: ``wait_p50_ms`` runs
from upload finished to scoring started (blob watcher polling, event delivery, claim), ``function_p50_ms``
is the app's own ``elapsed_ms`` (resolve model, read, score, commit the output, ledger).

Everything started here is stopped at the end, also on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks import BENCH_DIR, ROOT

MODEL_NAME = "scorehook-bench"


def _wait(predicate: Any, timeout: float, what: str, interval: float, alive: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        if alive is not None:
            alive()
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class _Devhost:
    """devhost as a subprocess (as ``func start`` would run), reached over HTTP."""

    def __init__(self, settings_path: Path, master_key: str, port: int, log: Path) -> None:
        self.log, self.master_key = log, master_key
        self.base_url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "devhost", "host", "--settings", str(settings_path)]
        with log.open("w") as out:
            self.process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        _wait(self._up, 90, "devhost to start", 0.2, self.check)

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"devhost exited ({self.process.returncode}): {self.log.read_text()[-3000:]}")

    def admin(self, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.base_url}{path}", headers={"x-functions-key": self.master_key}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def _up(self) -> bool:
        try:
            return bool(self.admin("/admin/host/status"))
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def failed(dev: _Devhost | None, work: Path, what: str) -> None:
    """Say where a failed run's logs are (they are kept), with devhost's last lines."""
    if dev is not None:
        print(f"devhost log tail:\n{dev.log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
    print(f"{what} logs kept in {work}", file=sys.stderr)


def teardown(work: Path, ok: bool, *services: Any) -> None:
    """Stop every service started (None: not started), then remove the run's directory if the run passed."""
    for service in services:
        if service is not None:
            try:
                service.stop()
            except Exception as exc:
                print(f"could not stop {service}: {exc}", file=sys.stderr)
    if ok:
        shutil.rmtree(work, ignore_errors=True)  # kept, with the logs, when the run fails


def _scored(log_file: Path) -> dict[str, tuple[float, float]]:
    """Input blob → (epoch seconds when scoring started, in-function ms), from the app's "file scored" lines.

    The start is the line's time minus its ``elapsed_ms`` (ms precision; the outcome event is published in
    between, so the start is slightly late and the wait before it slightly short).
    """
    found: dict[str, tuple[float, float]] = {}
    if not log_file.exists():
        return found
    for line in log_file.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
            if record.get("message") == "file scored":
                ended = datetime.fromisoformat(record["time"].replace("Z", "+00:00")).timestamp()
                elapsed = float(record["elapsed_ms"])
                found[str(record["blob"]).split("/", 1)[-1]] = (ended - elapsed / 1000, elapsed)
        except (ValueError, KeyError, TypeError):
            continue
    return found


def _cpu_seconds(pid: int) -> float:
    """User + system CPU-seconds of a process so far (``/proc/PID/stat``, its threads included)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


APP_CONTAINERS = ("incoming", "scored", "failed", "deadletter")


def app_containers(service: Any) -> list[Any]:
    """Create the app's containers on ``service`` (a ``BlobServiceClient``) where missing; their clients, in
    ``APP_CONTAINERS`` order."""
    from azure.core.exceptions import ResourceExistsError

    for name in APP_CONTAINERS:
        try:
            service.create_container(name)
        except ResourceExistsError:
            pass
    return [service.get_container_client(name) for name in APP_CONTAINERS]


def _download_only(service: Any, container: str, name: str, runs: int = 2) -> list[float]:
    """Seconds to read the blob through the app's own read path (``AzureBlobStore.read_chunks`` with the
    range size, the ranges in flight and the If-Match eTag ``score_blob`` uses), bytes discarded; once the
    host is idle, ``runs`` times."""
    from shared.adapters.blob import AzureBlobStore
    from shared.scoring import _READ_CHUNK, _READS_IN_FLIGHT

    store = AzureBlobStore(service)
    etag = store.properties(container, name).etag
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _chunk in store.read_chunks(container, name, _READ_CHUNK, etag, in_flight=_READS_IN_FLIGHT):
            pass
        times.append(time.perf_counter() - t0)
    return times


def run(path: str, rows: int, small_files: int = 30, small_rows: int = 1000) -> dict[str, Any]:
    """Run the e2e measurement; ``seconds`` is the big file's upload-to-output time."""
    import numpy as np
    from azure.storage.blob import BlobServiceClient

    from benchmarks.fixtures import small_csv
    from benchmarks.run_one import peak_rss_mb
    from devhost.runtime import local_settings
    from devhost.services import Azurite, MlflowServer, free_port
    from shared.scoring import output_name
    from training.train import train_and_register

    (BENCH_DIR / "e2e").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=BENCH_DIR / "e2e"))
    azurite = mlflow = dev = None
    ok = False
    try:
        azurite = Azurite(log_dir=work).start()
        mlflow = MlflowServer(data_dir=work / "mlflow").start()
        train_and_register(mlflow.tracking_uri, model_name=MODEL_NAME, rows=20000, alias="champion")
        port = free_port()
        settings = local_settings(azurite, mlflow.tracking_uri, port, log_file=str(work / "scorehook.jsonl"))
        settings["Values"] |= {
            "SCOREHOOK_MODEL_URI": f"models:/{MODEL_NAME}@champion",
            "SCOREHOOK_LOG_CONSOLE": "false",
        }
        settings_path = work / "local.settings.json"
        settings_path.write_text(json.dumps(settings, indent=2))
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        dev = _Devhost(settings_path, settings["Host"]["MasterKey"], port, work / "devhost.log")
        incoming, scored, failures, deadletter = app_containers(service)

        def failure(name: str) -> None:
            dev.check()
            for blob in failures.list_blobs(name_starts_with=f"incoming/{name}"):
                record = failures.download_blob(blob.name).readall().decode(errors="replace")
                raise RuntimeError(f"{name} was not scored: {record[:1500]}")
            if any(True for _ in deadletter.list_blobs()):  # the function kept failing: give up now
                raise RuntimeError(f"the delivery for {name} was dead-lettered (score_blob kept failing)")

        uploaded: dict[str, float] = {}  # blob name → epoch seconds when its upload returned

        pids = {"devhost": dev.process.pid, "azurite": azurite.process.pid}  # type: ignore[union-attr]
        cpu: dict[str, float] = {}  # CPU-seconds each process spent from upload finished to output exists

        def latency(name: str, data: Any, timeout: float, interval: float) -> tuple[float, float]:
            """(upload seconds, seconds from upload finished to output blob exists)."""
            t0 = time.perf_counter()
            incoming.upload_blob(name, data, overwrite=True, max_concurrency=2)
            t1, uploaded[name] = time.perf_counter(), time.time()
            before = {k: _cpu_seconds(pid) for k, pid in pids.items()}
            output = scored.get_blob_client(output_name(incoming.container_name, name))
            checked = [t1]

            def check() -> None:  # failure records are looked for once a second, not on every poll
                if time.perf_counter() - checked[0] > 1:
                    checked[0] = time.perf_counter()
                    failure(name)

            _wait(output.exists, timeout, f"the output of {name}", interval, check)
            done = time.perf_counter()
            cpu.update({k: _cpu_seconds(pid) - before[k] for k, pid in pids.items()})
            return t1 - t0, done - t1

        tag = uuid.uuid4().hex[:6]
        _, cold = latency(f"bench/{tag}-cold.csv", small_csv(small_rows, seed=999), 180, 0.01)
        big = f"bench/{tag}-big-{rows}.csv"
        with open(path, "rb") as data:
            upload, big_seconds = latency(big, data, max(300, rows / 2000), 0.05)
        big_cpu = dict(cpu)
        small = [small_csv(small_rows, seed=1000 + i) for i in range(small_files)]
        names = [f"bench/{tag}-small-{i:03d}.csv" for i in range(small_files)]
        pauses = np.random.default_rng(0).uniform(
            0, 0.3, small_files
        )  # arrivals out of step with the watcher
        times = []
        for n, d, pause in zip(names, small, pauses, strict=True):
            time.sleep(pause)
            times.append(latency(n, d, 60, 0.01)[1] * 1000)
        download = _download_only(service, incoming.container_name, big)
        scored_log = _scored(work / "scorehook.jsonl")
        function_ms = [scored_log[n][1] for n in names if n in scored_log]
        wait_ms = [(scored_log[n][0] - uploaded[n]) * 1000 for n in names if n in scored_log]
        detail = {
            "upload": upload,
            "rows_per_s": rows / big_seconds,
            "cold_ms": cold * 1000,
            "small_rows": small_rows,
            "small_ms": [round(t, 1) for t in times],
            "p50_ms": float(np.percentile(times, 50)),
            "p95_ms": float(np.percentile(times, 95)),
            "big_function_s": scored_log[big][1] / 1000 if big in scored_log else None,
            "big_devhost_cpu_s": big_cpu["devhost"],
            "big_azurite_cpu_s": big_cpu["azurite"],
            "cores": len(os.sched_getaffinity(0)),
            "download_s": min(download),
            "download_runs": [round(t, 3) for t in download],
            "function_p50_ms": float(np.percentile(function_ms, 50)) if function_ms else None,
            "wait_p50_ms": float(np.percentile(wait_ms, 50)) if wait_ms else None,
        }
        devhost_rss = peak_rss_mb(dev.process.pid)  # the host process that did the scoring
        ok = True
        return {"seconds": big_seconds, "rows": rows, "peak_rss_mb": devhost_rss, "detail": detail}
    except BaseException:
        failed(dev, work, "e2e")
        raise
    finally:
        teardown(work, ok, dev, mlflow, azurite)
