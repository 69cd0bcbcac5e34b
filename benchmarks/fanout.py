"""Fan-out scaling: one large CSV file scored by 1, 2, 4 part-worker processes, against the single path.

``python -m benchmarks.fanout [--rows 10000000] [--workers 1,2,4] [--part-mib 64] [--no-naive]``
(``make bench-fanout``). Starts Azurite (on disk: the inputs are GBs) and an MLflow server, registers the
bench's linear ONNX model as ``champion``, then, all in the same run:

1. NAIVE on 1M rows (``naive_full_csv_1m_linear``, ``naive_warm_csv_1m_linear`` of ``make bench``, each in a
   fresh process), for the cost comparison (``--no-naive`` skips them);
2. for each worker count N, a fresh devhost (its own process, ``DEVHOST_PART_WORKERS=N``) with two routes:
   ``single/`` (no fan-out) and ``fan/`` (``fanout_bytes`` = ``part_bytes`` = ``--part-mib``); a small file
   through each warms the host's and the workers' model caches; then the cached file
   (``.local/bench/data-<rows>-s0.csv``) is uploaded under ``fan/`` (and, with the first N, under ``single/``:
   the baseline) and timed from upload finished to the output blob existing (event -> committed output).

Per run it records the CPU-seconds (``/proc/PID/stat``) of devhost, Azurite and every worker over that
interval, their peak RSS (``VmHWM``), the app's log lines (``part queued`` / ``part scored`` /
``file fanned out`` / ``file scored``: when each part was queued, started, ended and how many rows it held),
each part's owner from the ledger (which worker scored it), and the output's SHA-256 and row count
(downloaded after the run). :func:`summarize` turns that record into the figures, :func:`report` prints them:
rows/s, scaling efficiency (rows/s at N / (N x rows/s at 1)), per-part throughput, the queue overheads
(message -> part start, a free worker -> its next part, last part end -> commit), the scan's rate, GB-s and
the cost per million rows at the Flex Consumption list price (:data:`PRICES`). The raw record is written
to ``.local/bench/fanout-last.json``.

The machine has 2 cores: devhost (the planner's scan), Azurite and the N workers share them, so N > 2 cannot
scale here; the efficiency at 4 says how little the queue costs when workers wait for cores, not what 4
instances would do.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks import BENCH_DIR
from benchmarks.report import _table

MODEL_NAME = "scorehook-bench"
# Flex Consumption list prices at the time of writing (on-demand, per region they vary; an assumption to
# check against the Azure pricing page): execution time per GB-s of instance memory, executions per million.
PRICES = {"gb_s": 0.000026, "per_million_executions": 0.40, "instance_gb": 2.048}


# -- the record → figures (pure) --------------------------------------------------------------------------
def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def part_overheads(parts: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per-part seconds: ``queue_wait`` (message queued → part started, backlog included), ``pickup``
    (the later of queued and its worker's previous part end → part started: the queue's own overhead), and
    ``score`` (part started → part scored).

    Example:
        >>> parts = [{"queued": 0.0, "start": 0.5, "end": 2.0, "pid": 1}, {"queued": 0.1, "start": 2.3, "end": 4.0, "pid": 1}]
        >>> {k: [round(x, 2) for x in v] for k, v in part_overheads(parts).items()}
        {'queue_wait': [0.5, 2.2], 'pickup': [0.5, 0.3], 'score': [1.5, 1.7]}
    """
    out: dict[str, list[float]] = {"queue_wait": [], "pickup": [], "score": []}
    free_at: dict[Any, float] = {}
    for part in sorted(parts, key=lambda p: p["start"]):
        ready = max(part["queued"], free_at.get(part.get("pid"), part["queued"]))
        out["queue_wait"].append(part["start"] - part["queued"])
        out["pickup"].append(part["start"] - ready)
        out["score"].append(part["end"] - part["start"])
        free_at[part.get("pid")] = part["end"]
    return out


def _cost(gb_s: float, executions: int, rows: int) -> float:
    """Dollars per million rows: GB-s x price + executions x price, scaled to 10^6 rows."""
    dollars = gb_s * PRICES["gb_s"] + executions * PRICES["per_million_executions"] / 1e6
    return dollars / rows * 1e6


def summarize_run(run: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run (single path or N workers) from its record."""
    rows, wall = int(run["rows"]), float(run["wall_s"])
    out: dict[str, Any] = {"workers": run.get("workers", 0), "wall_s": wall, "rows_per_s": rows / wall,
                           "complete": run.get("output_rows") == rows, "sha256": run.get("sha256")}  # fmt: skip
    cpu = run.get("cpu_s", {})
    out["cpu_s_devhost"], out["cpu_s_azurite"] = cpu.get("devhost"), cpu.get("azurite")
    out["cpu_s_workers"] = sum(cpu.get("workers") or []) if cpu.get("workers") is not None else None
    rss = run.get("peak_rss_mb", {})
    out["peak_rss_mb_devhost"] = rss.get("devhost")
    out["peak_rss_mb_worker_max"] = max(rss.get("workers") or [0]) or None
    parts = run.get("parts") or []
    if not parts:  # the single path: one invocation in devhost
        seconds = float(run.get("function_s") or wall)
        gb_s = (rss.get("devhost") or 0) / 1000 * seconds
        out |= {"function_s": seconds, "gb_s": gb_s, "billed_gb_s": PRICES["instance_gb"] * seconds,
                "executions": 1}  # fmt: skip
    else:
        over = part_overheads(parts)
        per_part_rows = [p["rows"] / (p["end"] - p["start"]) for p in parts if p["end"] > p["start"]]
        per_part_mb = [p["bytes"] / 1e6 / (p["end"] - p["start"]) for p in parts if p["end"] > p["start"]]
        starts, ends = [p["start"] for p in parts], [p["end"] for p in parts]
        queued = [p["queued"] for p in parts]
        # worker → seconds it was executing parts (Flex Consumption bills an instance while it executes)
        active: dict[Any, float] = {}
        for pid in {p.get("pid") for p in parts}:
            mine = [p for p in parts if p.get("pid") == pid]
            active[pid] = sum(p["end"] - p["start"] for p in mine)
        worker_rss = dict(zip(run.get("worker_pids") or [], rss.get("workers") or [], strict=False))
        default_rss = out["peak_rss_mb_worker_max"] or 0
        scan_s = max(queued) - float(run.get("plan_start", min(queued)))
        gb_s = sum(worker_rss.get(pid, default_rss) / 1000 * s for pid, s in active.items())
        gb_s += (
            (rss.get("devhost") or 0) / 1000 * scan_s
        )  # the planner's scan (partly in workers: approximate)
        billed = PRICES["instance_gb"] * (sum(active.values()) + scan_s)
        out |= {
            "parts": len(parts), "workers_used": len(active),
            "part_rows_per_s": _median(per_part_rows), "part_mb_per_s": _median(per_part_mb),
            "part_s": _median(over["score"]),
            "queue_wait_ms": (_median(over["queue_wait"]) or 0) * 1000,
            "pickup_ms": (_median(over["pickup"]) or 0) * 1000, "pickup_p95_ms": (_p95(over["pickup"]) or 0) * 1000,
            "first_part_ms": (min(starts) - float(run["uploaded"])) * 1000,
            "commit_ms": (float(run["committed"]) - max(ends)) * 1000 if run.get("committed") else None,
            "scan_s": scan_s, "scan_mb_per_s": sum(p["bytes"] for p in parts) / 1e6 / scan_s if scan_s > 0 else None,
            "gb_s": gb_s, "billed_gb_s": billed, "executions": len(parts) + 1 + int(run.get("scan_messages", 0)),
            # cores a worker kept busy while it scored, and rows per worker CPU-second (a 1-vCPU instance's rate)
            "worker_cores": out["cpu_s_workers"] / sum(active.values()) if out["cpu_s_workers"] else None,
            "rows_per_worker_cpu_s": rows / out["cpu_s_workers"] if out["cpu_s_workers"] else None,
        }  # fmt: skip
    out["usd_per_m_rows"] = _cost(out["gb_s"], out["executions"], rows)
    out["billed_usd_per_m_rows"] = _cost(out["billed_gb_s"], out["executions"], rows)
    return out


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Every run's figures, the scaling efficiency against N = 1, byte-identity, and NAIVE's cost.

    Example:
        >>> summarize(recorded)["fanout"][1]["efficiency"]   # doctest: +SKIP
        0.93
    """
    single = summarize_run(result["single"]) if result.get("single") else None
    fanout = [summarize_run(r) for r in result.get("fanout", [])]
    base = next((f for f in fanout if f["workers"] == 1), None)
    reference = single["sha256"] if single else (fanout[0]["sha256"] if fanout else None)
    for f in fanout:
        f["efficiency"] = f["rows_per_s"] / (f["workers"] * base["rows_per_s"]) if base else None
        f["speedup_vs_single"] = f["rows_per_s"] / single["rows_per_s"] if single else None
        f["identical"] = f["sha256"] is not None and f["sha256"] == reference
        f["same_as_first_fanout"] = f["sha256"] is not None and f["sha256"] == fanout[0]["sha256"]
    naive = {}
    for name, r in (result.get("naive") or {}).items():
        if r:
            gb_s, billed = r["peak_rss_mb"] / 1000 * r["seconds"], PRICES["instance_gb"] * r["seconds"]
            naive[name] = {"seconds": r["seconds"], "rows": r["rows"], "rows_per_s": r["rows"] / r["seconds"],
                           "peak_rss_mb": r["peak_rss_mb"], "gb_s": gb_s, "usd_per_m_rows": _cost(gb_s, 1, r["rows"]),
                           "billed_usd_per_m_rows": _cost(billed, 1, r["rows"])}  # fmt: skip
    return {"single": single, "fanout": fanout, "naive": naive, "cores": result.get("cores"),
            "rows": result.get("rows"), "bytes": result.get("bytes"), "part_bytes": result.get("part_bytes")}  # fmt: skip


def projection(summary: dict[str, Any], sizes_gb: tuple[float, ...] = (10, 100),
               instances: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 100),
               scan_mb_per_s: float | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Time to score a file of ``S`` bytes at ``N`` instances, from the 1-worker run's per-part figures:

    ``T = t_first + max(S / R_scan + B / r, ceil(P / N) x (B / r + o)) + t_commit``, with ``P = ceil(S / B)``
    parts of ``B`` bytes, ``r`` the per-part rate (MB/s), ``o`` the pickup overhead (a free worker to its next
    part), ``R_scan`` the planner's scan rate (the best run's: the scan is serial, it caps every N), ``t_first``
    event to first part start, ``t_commit`` last part end to the commit; ``scan_mb_per_s`` replaces R_scan. GB-s: every part's ``B / r + o`` at the
    instance size (``PRICES``); rows per GB from the measured file.

    Example:
        >>> s = {"part_bytes": 64 << 20, "rows": 10, "bytes": 10**9, "fanout": [{"workers": 1, "part_mb_per_s": 50.0,
        ...      "pickup_ms": 100.0, "first_part_ms": 1000.0, "commit_ms": 500.0, "scan_mb_per_s": 1000.0}]}
        >>> [round(p["seconds"]) for p in projection(s, (10,), (1, 100))]
        [218, 13]
    """
    import math

    one = next((f for f in summary.get("fanout", []) if f["workers"] == 1), None)
    if not one or not one.get("part_mb_per_s"):
        return []
    block = float(summary["part_bytes"])
    part_s = block / 1e6 / one["part_mb_per_s"]
    pickup, first, commit = (
        one["pickup_ms"] / 1000,
        one["first_part_ms"] / 1000,
        (one["commit_ms"] or 0) / 1000,
    )
    scan = (scan_mb_per_s or max(f["scan_mb_per_s"] or 0 for f in summary["fanout"])) * 1e6
    rows_per_byte = float(summary["rows"]) / float(summary["bytes"])
    out = []
    for size_gb in sizes_gb:
        size = size_gb * 1e9
        parts = math.ceil(size / block)
        gb_s = parts * (part_s + pickup) * PRICES["instance_gb"]
        for n in instances:
            waves = math.ceil(parts / n)
            seconds = first + max(size / scan + part_s, waves * (part_s + pickup)) + commit
            out.append({"gb": size_gb, "instances": n, "parts": parts, "seconds": seconds,
                        "scan_bound": size / scan + part_s >= waves * (part_s + pickup),
                        "usd": gb_s * PRICES["gb_s"] + (parts + 1) * PRICES["per_million_executions"] / 1e6,
                        "usd_per_m_rows": _cost(gb_s, parts + 1, round(size * rows_per_byte))})  # fmt: skip
    return out


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return f"{value:,.{digits}f}"


def figure_items(summary: dict[str, Any]) -> list[tuple[str, Any, int]]:
    """``(name, value, digits)`` of every figure line, in print order."""
    items: list[tuple[str, Any, int]] = []
    single = summary.get("single")
    if single:
        items += [("fanout_single_rows_per_s", single["rows_per_s"], 0), ("fanout_single_wall_s", single["wall_s"], 2),
                  ("fanout_single_usd_per_m_rows", single["usd_per_m_rows"], 6)]  # fmt: skip
    fanout_first = summary["fanout"][0]["workers"] if summary.get("fanout") else 0
    for f in summary.get("fanout", []):
        n = f["workers"]
        items += [
            (f"fanout_{n}w_wall_s", f["wall_s"], 2), (f"fanout_{n}w_rows_per_s", f["rows_per_s"], 0),
            (f"fanout_{n}w_efficiency", f["efficiency"], 2), (f"fanout_{n}w_speedup_vs_single", f["speedup_vs_single"], 2),
            (f"fanout_{n}w_part_rows_per_s", f["part_rows_per_s"], 0), (f"fanout_{n}w_part_mb_per_s", f["part_mb_per_s"], 1),
            (f"fanout_{n}w_pickup_ms", f["pickup_ms"], 0), (f"fanout_{n}w_queue_wait_ms", f["queue_wait_ms"], 0),
            (f"fanout_{n}w_commit_ms", f["commit_ms"], 0), (f"fanout_{n}w_scan_mb_per_s", f["scan_mb_per_s"], 0),
            (f"fanout_{n}w_peak_rss_mb_worker", f["peak_rss_mb_worker_max"], 0),
            (f"fanout_{n}w_worker_cores", f["worker_cores"], 2), (f"fanout_{n}w_rows_per_worker_cpu_s", f["rows_per_worker_cpu_s"], 0),
            (f"fanout_{n}w_first_part_ms", f["first_part_ms"], 0), (f"fanout_{n}w_scan_s", f["scan_s"], 1),
            (f"fanout_{n}w_usd_per_m_rows", f["usd_per_m_rows"], 6),
            (f"fanout_{n}w_identical", 1.0 if f["identical"] else 0.0, 0),
            (f"fanout_{n}w_same_output_as_{fanout_first}w", 1.0 if f["same_as_first_fanout"] else 0.0, 0),
        ]  # fmt: skip
    for name, r in summary.get("naive", {}).items():
        items += [
            (f"{name}_rows_per_s", r["rows_per_s"], 0),
            (f"{name}_usd_per_m_rows", r["usd_per_m_rows"], 6),
        ]
    return items


def report(summary: dict[str, Any]) -> str:
    """The run table, the NAIVE table and one ``name: value`` line per figure."""
    runs = ([summary["single"]] if summary.get("single") else []) + summary.get("fanout", [])
    header = ["run", "wall s", "rows/s", "eff.", "parts", "part rows/s", "pickup ms p50/p95", "commit ms",
              "scan MB/s", "CPU-s dev/azu/workers", "RSS MB dev/worker", "GB-s", "$/M rows", "complete", "identical"]  # fmt: skip
    rows = []
    for r in runs:
        name = f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}" if r["workers"] else "single path"
        rows.append([
            name, _f(r["wall_s"]), _f(r["rows_per_s"], 0), _f(r.get("efficiency")), str(r.get("parts", 1)),
            _f(r.get("part_rows_per_s"), 0),
            f"{_f(r.get('pickup_ms'), 0)}/{_f(r.get('pickup_p95_ms'), 0)}" if r.get("parts") else "-",
            _f(r.get("commit_ms"), 0), _f(r.get("scan_mb_per_s"), 0),
            f"{_f(r['cpu_s_devhost'], 1)}/{_f(r['cpu_s_azurite'], 1)}/{_f(r['cpu_s_workers'], 1)}",
            f"{_f(r['peak_rss_mb_devhost'], 0)}/{_f(r['peak_rss_mb_worker_max'], 0)}", _f(r["gb_s"], 1),
            _f(r["usd_per_m_rows"], 6), _f(r["complete"]), _f(r.get("identical", True)),
        ])  # fmt: skip
    text = [f"Fan-out of {summary.get('rows') or 0:,} rows ({(summary.get('bytes') or 0) / 1e9:.2f} GB), parts of "
            f"{(summary.get('part_bytes') or 0) >> 20} MiB, {summary.get('cores')} cores"]  # fmt: skip
    text += [_table(header, rows, set(range(1, 14)))]
    if summary.get("naive"):
        naive_rows = [[n, _f(r["seconds"]), _f(r["rows_per_s"], 0), _f(r["peak_rss_mb"], 0), _f(r["gb_s"], 1),
                       _f(r["usd_per_m_rows"], 6), _f(r["billed_usd_per_m_rows"], 6)]
                      for n, r in summary["naive"].items()]  # fmt: skip
        text += ["", _table(["NAIVE", "seconds", "rows/s", "peak RSS MB", "GB-s", "$/M rows", "$/M rows billed 2 GB"],
                            naive_rows, {1, 2, 3, 4, 5, 6})]  # fmt: skip
    if (summary.get("cores") or 0) <= 2 and any(f["workers"] > 2 for f in summary.get("fanout", [])):
        text += ["", f"NOTE: {summary.get('cores')} cores are shared by devhost, Azurite and the workers: N > 2 "
                 "cannot scale on this machine (the 4-worker run shows the queue's cost, not 4 instances)."]  # fmt: skip
    projected = projection(summary)
    if projected:
        text += ["", "Projection (docs/scaling.md: T = t_first + max(S/R_scan + B/r, ceil(P/N) x (B/r + o)) + t_commit)",
                 _table(["GB", "instances", "parts", "minutes", "bound by", "$ per file (billed 2 GB)", "$/M rows"],
                        [[_f(p["gb"], 0), str(p["instances"]), str(p["parts"]), _f(p["seconds"] / 60, 1),
                          "scan" if p["scan_bound"] else "parts", _f(p["usd"], 3), _f(p["usd_per_m_rows"], 6)]
                         for p in projected], {0, 1, 2, 3, 5, 6})]  # fmt: skip
    text += [
        "",
        "\n".join(f"{name}: {'nan' if v is None else f'{v:.{d}f}'}" for name, v, d in figure_items(summary)),
    ]
    return "\n".join(text)


# -- the run on the local stack ----------------------------------------------------------------------------
def _log_records(path: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    if not path.exists():
        return records
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
            record["_t"] = datetime.fromisoformat(record["time"].replace("Z", "+00:00")).timestamp()
            records.append(record)
        except (ValueError, KeyError, TypeError):
            continue
    return records


def parts_from_log(records: list[dict[str, Any]], blob: str) -> dict[str, Any]:
    """One file's parts (queued / start / end epoch seconds, rows, bytes), its plan start and commit time.

    Example:
        >>> recs = [{"message": "part queued", "blob": "incoming/a.csv", "part": 1, "rows": 5, "bytes": 90, "_t": 1.0},
        ...         {"message": "part scored", "blob": "incoming/a.csv", "part": 1, "elapsed_ms": 500, "rows_read": 5, "_t": 2.0}]
        >>> parts_from_log(recs, "incoming/a.csv")["parts"]
        [{'part': 1, 'queued': 1.0, 'rows': 5, 'bytes': 90, 'start': 1.5, 'end': 2.0}]
    """
    parts: dict[int, dict[str, Any]] = {}
    out: dict[str, Any] = {"scan_messages": 0}
    for r in records:
        if r.get("blob") != blob:
            continue
        message = r.get("message")
        if message == "part queued":
            parts.setdefault(int(r["part"]), {"part": int(r["part"])}).update(
                {"queued": r["_t"], "rows": int(r["rows"]), "bytes": int(r["bytes"])}
            )
        elif message == "part scored":  # a redelivered part is logged again: the last one counts
            part = parts.setdefault(int(r["part"]), {"part": int(r["part"])})
            part.update({"start": r["_t"] - float(r["elapsed_ms"]) / 1000, "end": r["_t"]})
            part.setdefault("rows", int(r.get("rows_read") or 0))
        elif message == "file fanned out":
            out["plan_start"] = r["_t"] - float(r.get("plan_ms") or 0) / 1000
        elif message == "scan paused: its continuation is queued":
            out["scan_messages"] += 1
        elif message == "file scored":
            out["committed"], out["function_s"] = r["_t"], float(r["elapsed_ms"]) / 1000
    out["parts"] = [p for _, p in sorted(parts.items()) if {"queued", "start", "end"} <= p.keys()]
    return out


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) != pid:
                        continue
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if b"devhost.workers" in cmdline.read():
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return sorted(found)


def _hash_output(container: Any, name: str) -> tuple[str, int, int]:
    """(SHA-256, data rows, bytes) of a CSV output blob, streamed."""
    digest, lines, size = hashlib.sha256(), 0, 0
    for chunk in container.download_blob(name, max_concurrency=2).chunks():
        digest.update(chunk)
        lines += chunk.count(b"\n")
        size += len(chunk)
    return digest.hexdigest(), lines - 1, size


def _lines(container: Any, name: str) -> Any:
    rest = b""
    for chunk in container.download_blob(name, max_concurrency=2).chunks():
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def _differences(container: Any, a: str, b: str, examples: int = 5) -> dict[str, Any]:
    """How many lines of two CSV output blobs differ, and the first few (1-based line, expected, found)."""
    import itertools

    count, found = 0, list[list[Any]]()
    for number, (x, y) in enumerate(itertools.zip_longest(_lines(container, a), _lines(container, b)), 1):
        if x != y:
            count += 1
            if len(found) < examples:
                found.append(
                    [
                        number,
                        (x or b"").decode(errors="replace")[:200],
                        (y or b"").decode(errors="replace")[:200],
                    ]
                )
    return {"lines_differing": count, "examples": found}


def _naive_results(enabled: bool) -> dict[str, Any]:
    if not enabled:
        return {}
    from benchmarks.__main__ import Spec, _naive, _naive_warm, measure

    specs = [Spec("naive_full_csv_1m_linear", "naive", lambda: _naive("csv", 1_000_000, "linear", "full"), 1, 300),
             Spec("naive_warm_csv_1m_linear", "naive_warm", lambda: _naive_warm("csv", 1_000_000, "linear"), 1, 300)]  # fmt: skip
    out: dict[str, Any] = {}
    for spec in specs:
        try:
            out[spec.name] = measure(spec)
            print(f"{spec.name}: {out[spec.name]['seconds']:.2f} s", flush=True)
        except Exception as exc:
            print(f"{spec.name} FAILED: {exc}", file=sys.stderr)
            out[spec.name] = None
    return out


def run(path: str, rows: int, workers: list[int], part_bytes: int, naive: bool = True) -> dict[str, Any]:
    """Run every configuration on one local stack and return the raw record (see :func:`summarize`)."""
    from azure.storage.blob import BlobServiceClient

    from benchmarks.e2e import _cpu_seconds, _Devhost, _wait, app_containers, failed, teardown
    from benchmarks.fixtures import small_csv
    from benchmarks.run_one import peak_rss_mb
    from devhost.runtime import local_settings
    from devhost.services import Azurite, MlflowServer, free_port
    from shared.adapters import TableLedger
    from shared.fanout import part_key
    from shared.scoring import output_name
    from shared.settings import Settings
    from training.train import train_and_register

    size = os.path.getsize(path)
    result: dict[str, Any] = {"rows": rows, "bytes": size, "part_bytes": part_bytes,
                              "cores": len(os.sched_getaffinity(0)), "naive": _naive_results(naive), "fanout": []}  # fmt: skip
    (BENCH_DIR / "fanout").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=BENCH_DIR / "fanout"))
    azurite = mlflow = dev = None
    ok = False
    model = f"models:/{MODEL_NAME}@champion"
    routes = [
        {"name": "fan", "container": "incoming", "prefix": "fan/", "model": model,
         "fanout_bytes": part_bytes, "part_bytes": part_bytes},
        {"name": "warm", "container": "incoming", "prefix": "warm/", "model": model,
         "fanout_bytes": 100_000, "part_bytes": 128 << 10},
        {"name": "single", "container": "incoming", "prefix": "single/", "model": model},
    ]  # fmt: skip
    try:
        azurite = Azurite(data_dir=work / "azurite", log_dir=work).start()
        mlflow = MlflowServer(data_dir=work / "mlflow").start()
        train_and_register(mlflow.tracking_uri, model_name=MODEL_NAME, rows=20000, alias="champion")
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        incoming, scored, failures, _ = app_containers(service)
        tag = uuid.uuid4().hex[:6]

        for index, count in enumerate(workers):
            port = free_port()
            log_file = work / f"scorehook-{count}w.jsonl"
            settings = local_settings(azurite, mlflow.tracking_uri, port, log_file=str(log_file))
            settings["Values"] |= {"SCOREHOOK_MODEL_URI": model, "SCOREHOOK_LOG_CONSOLE": "false",
                                   "SCOREHOOK_ROUTES": json.dumps(routes), "DEVHOST_PART_WORKERS": str(count)}  # fmt: skip
            settings_path = work / f"local.settings-{count}w.json"
            settings_path.write_text(json.dumps(settings, indent=2))
            env = settings["Values"]
            dev = _Devhost(settings_path, settings["Host"]["MasterKey"], port, work / f"devhost-{count}w.log")
            ledger = TableLedger.from_settings(Settings.from_env(env), create=False)

            def failure(name: str, dev: Any = dev) -> None:
                dev.check()
                for blob in failures.list_blobs(name_starts_with=f"incoming/{name}"):
                    record = failures.download_blob(blob.name).readall().decode(errors="replace")
                    raise RuntimeError(f"{name} was not scored: {record[:1500]}")

            def score(name: str, data: Any, timeout: float, dev: Any = dev, ledger: Any = ledger,
                      log_file: Path = log_file) -> dict[str, Any]:  # fmt: skip
                pids = {"devhost": dev.process.pid, "azurite": azurite.process.pid}  # type: ignore[union-attr]
                workers_now = _children(dev.process.pid)
                t0 = time.perf_counter()
                etag = incoming.get_blob_client(name).upload_blob(data, overwrite=True, max_concurrency=2)[
                    "etag"
                ]
                t1, uploaded = time.perf_counter(), time.time()
                before = {k: _cpu_seconds(p) for k, p in pids.items()}
                before_w = {p: _cpu_seconds(p) for p in workers_now}
                output = scored.get_blob_client(output_name("incoming", name))
                checked = [t1]

                def check() -> None:
                    if time.perf_counter() - checked[0] > 1:
                        checked[0] = time.perf_counter()
                        failure(name)

                _wait(output.exists, timeout, f"the output of {name}", 0.05, check)
                wall = time.perf_counter() - t1
                cpu: dict[str, Any] = {k: _cpu_seconds(p) - before[k] for k, p in pids.items()}
                cpu["workers"] = [_cpu_seconds(p) - before_w[p] for p in workers_now]
                rss = {
                    "devhost": peak_rss_mb(dev.process.pid),
                    "workers": [peak_rss_mb(p) for p in workers_now],
                }
                key = f"blob:devstoreaccount1/incoming/{name}@{etag.strip(chr(34))}"
                record = _wait(lambda: (r := ledger.get(key)) is not None and r.status == "succeeded" and r, 30,
                               f"the ledger entry of {name}", 0.1)  # fmt: skip
                logged = _wait(lambda: (p := parts_from_log(_log_records(log_file), f"incoming/{name}"))
                               .get("committed") and p, 30, f"the log of {name}", 0.2)  # fmt: skip
                owners: dict[int, int] = {}
                for part in logged["parts"]:
                    entry = ledger.get(part_key(key, part["part"] - 1))
                    if entry is not None:
                        part["pid"] = int(entry.owner.rsplit(":", 1)[1])
                        owners[part["pid"]] = owners.get(part["pid"], 0) + 1
                return {"name": name, "rows": int(record.details.get("rows_scored", 0)), "upload_s": t1 - t0,
                        "uploaded": uploaded, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": rss,
                        "worker_pids": workers_now, "owners": owners, **logged}  # fmt: skip

            # warm: the host's model cache (single) and every worker's (a small file of many parts)
            score(f"single/{tag}-{count}w-warm.csv", small_csv(1000, seed=7), 180)
            warm = score(f"warm/{tag}-{count}w-warm.csv", small_csv(20000, seed=8), 180)
            print(f"[{count} workers] warm-up parts per worker: {warm['owners']}", flush=True)
            runs = [("single", f"single/{tag}-big.csv")] if index == 0 else []
            runs.append(("fanout", f"fan/{tag}-{count}w-big.csv"))
            for kind, name in runs:
                load = os.getloadavg()[0]
                with open(path, "rb") as data:
                    record = score(name, data, max(900, rows / 5000))
                record |= {"workers": 0 if kind == "single" else count, "load_before": load}
                if kind == "single":
                    record["parts"] = []
                t0 = time.perf_counter()
                out_name = output_name("incoming", name)
                record["sha256"], record["output_rows"], record["output_bytes"] = _hash_output(
                    scored, out_name
                )
                print(f"[{count} workers] {kind}: {record['wall_s']:.2f} s event->committed, "
                      f"{len(record['parts'])} parts, output {record['output_rows']:,} rows "
                      f"(hashed in {time.perf_counter() - t0:.1f} s; load before {load:.1f})", flush=True)  # fmt: skip
                incoming.delete_blob(name)  # the inputs are GBs: keep Azurite's store small
                reference = result.get("single")
                if reference and kind != "single" and record["sha256"] != reference["sha256"]:
                    record["difference"] = diff = _differences(scored, reference["output"], out_name)
                    where, line = {}, 2  # output line of each part's first and last row (line 1: the header)
                    for part in sorted(record["parts"], key=lambda p: p["part"]):
                        where[line] = f"first row of part {part['part']}"
                        where.setdefault(line + part["rows"] - 1, f"last row of part {part['part']}")
                        line += part["rows"]
                    for example in diff["examples"]:
                        example.append(where.get(example[0], ""))
                    print(f"[{count} workers] the output differs from the single path's: {record['difference']}",
                          flush=True)  # fmt: skip
                record["output"] = out_name
                if kind == "single":
                    result["single"] = record  # its output is kept to show a difference
                else:
                    scored.delete_blob(out_name)
                    result["fanout"].append(record)
            dev.stop()
            dev = None
        ok = True
        return result
    except BaseException:
        failed(dev, work, "fan-out bench")
        raise
    finally:
        teardown(work, ok, dev, mlflow, azurite)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.fixtures import data_file

    parser = argparse.ArgumentParser(prog="python -m benchmarks.fanout", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument(
        "--workers", default="1,2,4", help="comma-separated worker counts (the first is the base)"
    )
    parser.add_argument("--part-mib", type=int, default=64, help="part_bytes (and fanout_bytes) in MiB")
    parser.add_argument("--no-naive", action="store_true", help="skip the NAIVE 1M measurements")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.workers.split(",") if c.strip()]
    path = str(data_file(args.rows, "csv"))
    started = time.monotonic()
    print(f"fan-out bench: {args.rows:,} rows, workers {counts}, parts of {args.part_mib} MiB, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    result = run(path, args.rows, counts, args.part_mib << 20, naive=not args.no_naive)
    (BENCH_DIR / "fanout-last.json").write_text(json.dumps(result, indent=1))
    summary = summarize(result)
    print(
        f"\n(total {(time.monotonic() - started) / 60:.1f} min; raw record in .local/bench/fanout-last.json)\n"
    )
    print(report(summary), flush=True)
    bad = [f for f in summary["fanout"] if not (f["complete"] and f["identical"])]
    return 1 if bad or (summary["single"] and not summary["single"]["complete"]) else 0


if __name__ == "__main__":
    sys.exit(main())
