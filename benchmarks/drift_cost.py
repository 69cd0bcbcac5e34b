"""``python -m benchmarks.drift_cost [--files 100] [--rows 1000] [--rounds 6] [--json FILE]``: what drift
monitoring costs one scored file in CPU, measured in one process (issue 11, item 5; a companion of
``benchmarks.drift_burst``).

On the real local stack (Azurite, an MLflow server, the sample model registered as ``champion`` with its
drift baseline), two ``ScoringService`` instances are built from the same app settings by
``shared.services.build_scoring_service``, one with ``SCOREHOOK_DRIFT_ENABLED=false`` and one with it
``true``, in this one process (no devhost: its blob watcher and Event Grid emulation, half of its GIL time in
a burst, are not in these figures). Each round scores ``--files`` uploaded CSV files of ``--rows`` rows
through each service, four at a time (devhost's ``maxConcurrentRequests``), order alternating; the CPU
seconds of the whole process (every thread: scoring, the drift part writers, the SDK's pools) per file are
the figure. Round 0 warms up and is not counted. ``drift_cpu_ms_per_file`` = median(on) - median(off):
the part's Put Blob, its encoding, the profile. The drift timer never fires (no tick is in the figures).
The per-thread CPU split (scoring threads of each arm, the part writers) is printed at the end.
"""

from __future__ import annotations

import collections
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import BENCH_DIR, ROOT

ARMS = ("off", "on")
WORKERS = 4
NEVER = "0 0 0 29 2 *"


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's live threads, by name without its pool number."""
    tick = os.sysconf("SC_CLK_TCK")
    by: collections.Counter[str] = collections.Counter()
    for thread in threading.enumerate():
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        by[thread.name.rsplit("_", 1)[0]] += (int(fields[11]) + int(fields[12])) / tick
    return dict(by)


def run(files: int = 100, rows: int = 1000, rounds: int = 6) -> dict[str, Any]:
    """Start the local services, build both services in this process and score alternating rounds."""
    from devhost.services import Azurite, MlflowServer
    from shared.events import parse_blob_created
    from shared.services import build_scoring_service
    from shared.settings import Settings
    from tests.conftest import stop_devhost
    from tests.reliability.harness import INPUT, sample_csv, start_stack, train_model

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    (BENCH_DIR / "drift-cost").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=BENCH_DIR / "drift-cost"))
    payloads = [sample_csv(rows, seed=1000 + i) for i in range(files)]
    cpu: dict[str, list[float]] = {arm: [] for arm in ARMS}
    with Azurite(log_dir=work) as azurite, MlflowServer(data_dir=work / "mlflow") as mlflow:
        model = train_model(mlflow.tracking_uri, prefix="cost")
        # devhost writes the app settings and the routes; it is stopped at once and scores nothing here
        stack = start_stack(work, azurite, mlflow.tracking_uri, model=model, extra={"SCOREHOOK_DRIFT_SCHEDULE": NEVER})
        env = dict(stack.dev.env)
        stop_devhost(stack.dev)
        quiet = {"SCOREHOOK_RETRAIN_LAUNCHER": "none", "SCOREHOOK_EVENTS_TOPIC_ENDPOINT": ""}
        services = {
            arm: build_scoring_service(Settings.from_env({**env, **quiet, "SCOREHOOK_DRIFT_ENABLED": "true" if arm == "on" else "false"}))
            for arm in ARMS
        }
        pools = {arm: ThreadPoolExecutor(WORKERS, thread_name_prefix=f"score-{arm}") for arm in ARMS}
        uploaded = 0
        for index in range(rounds + 1):
            for arm in ARMS if index % 2 == 0 else ARMS[::-1]:
                events = []
                for data in payloads:
                    uploaded += 1
                    name = f"drift-cost/{arm}/{uploaded:06d}.csv"
                    stack.upload(INPUT, name, data)
                    events.append(parse_blob_created(stack.event(INPUT, name)))
                started = time.process_time()
                outcomes = list(pools[arm].map(services[arm].score, events))  # type: ignore[attr-defined]
                spent = (time.process_time() - started) * 1000 / files
                failed = [o.status for o in outcomes if o.status != "succeeded"]
                if failed:
                    raise RuntimeError(f"round {index}, drift {arm}: {len(failed)} files not scored: {failed[:3]}")
                print(f"round {index}{' (warm-up)' if index == 0 else ''}, drift {arm}: {spent:.2f} ms of CPU per file",
                      flush=True)  # fmt: skip
                if index:
                    cpu[arm].append(spent)
        threads = _thread_cpu()
        for pool in pools.values():
            pool.shutdown()
    off, on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    print("CPU seconds by thread: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(threads.items(), key=lambda i: -i[1])))
    return {
        "files": files,
        "rows": rows,
        "rounds": rounds,
        "cpu_ms_per_file_drift_off": off,
        "cpu_ms_per_file_drift_on": on,
        "drift_cpu_ms_per_file": on - off,
        "in_process_drift_on_over_off": off / on if on else None,
        "rounds_cpu_ms": cpu,
        "thread_cpu_s": threads,
    }


def figures(result: dict[str, Any]) -> list[Any]:
    from benchmarks.report import Figure

    return [
        Figure("drift_cpu_ms_per_file", result["drift_cpu_ms_per_file"]),
        Figure("cpu_ms_per_file_drift_off", result["cpu_ms_per_file_drift_off"]),
        Figure("cpu_ms_per_file_drift_on", result["cpu_ms_per_file_drift_on"]),
        Figure("in_process_drift_on_over_off", result["in_process_drift_on_over_off"], "", None, 3),
    ]


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from benchmarks.report import arm_parser, print_figures

    parser = arm_parser("python -m benchmarks.drift_cost", __doc__ or "", files=100, rounds=6,
                        rounds_help="counted rounds, arm order alternating")  # fmt: skip
    args = parser.parse_args(argv)
    result = run(args.files, args.rows, max(args.rounds, 1))
    print_figures(figures(result), args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
