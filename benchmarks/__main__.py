"""``python -m benchmarks [--quick] [--only PATTERN,...] [--list] [--fanout-rows N]``: run the benchmarks,
print the table, the fan-out table, the figures against their targets, and one ``name: value`` line per
figure (last)."""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from typing import Any

from benchmarks import ROOT
from benchmarks.fixtures import data_file, label, model_files
from benchmarks.report import Results, figure_lines, figure_table, figures, measurement_table
from benchmarks.run_one import MARKER


@dataclass
class Spec:
    """One measurement: a ``measures`` function run in ``repeat`` fresh processes (the best run counts)."""

    name: str
    kind: str
    args: Callable[[], dict[str, Any]]  # called just before running: generates data / trains models once
    repeat: int = 1
    timeout: float = 300


def _naive(fmt: str, rows: int, kind: str, output: str) -> dict[str, Any]:
    path = str(data_file(rows, fmt))
    return {"path": path, "fmt": fmt, "sklearn": model_files(kind)["sklearn"], "output": output}


def _naive_warm(fmt: str, rows: int, kind: str) -> dict[str, Any]:
    return {"path": str(data_file(rows, fmt)), "fmt": fmt, "sklearn": model_files(kind)["sklearn"]}


def _engine(fmt: str, rows: int, kind: str) -> dict[str, Any]:
    return {"path": str(data_file(rows, fmt)), "fmt": fmt, "onnx": model_files(kind)["onnx"]}


def _parse(rows: int, stream: bool) -> dict[str, Any]:
    return {"path": str(data_file(rows, "csv")), "stream": stream}


def _infer(rows: int, kind: str) -> dict[str, Any]:
    return {"path": str(data_file(rows, "csv")), "onnx": model_files(kind)["onnx"]}


def _e2e(rows: int, small_files: int) -> dict[str, Any]:
    return {"path": str(data_file(rows, "csv")), "rows": rows, "small_files": small_files}


def plan(quick: bool) -> tuple[str, list[Spec]]:
    """The size label of the main files and the measurements, in table order."""
    n = 100_000 if quick else 1_000_000
    s, best = label(n), 1 if quick else 3
    specs = []
    for fmt, kind in (("csv", "linear"), ("csv", "gbm"), ("parquet", "linear")):
        specs += [
            Spec(f"naive_{fmt}_{s}_{kind}", "naive", partial(_naive, fmt, n, kind, "id")),
            Spec(f"naive_full_{fmt}_{s}_{kind}", "naive", partial(_naive, fmt, n, kind, "full")),
            Spec(f"naive_warm_{fmt}_{s}_{kind}", "naive_warm", partial(_naive_warm, fmt, n, kind)),
        ]
        if fmt == "csv" and kind == "linear":
            specs += [
                Spec(f"limit_parse_csv_{s}", "limit_parse", partial(_parse, n, False), best, 120),
                Spec(f"limit_parse_stream_csv_{s}", "limit_parse", partial(_parse, n, True), best, 120),
                Spec(f"limit_cpu_csv_{s}_linear", "limit_cpu", partial(_infer, n, kind), best, 180),
            ]
        if fmt == "csv":
            specs.append(
                Spec(f"limit_infer_csv_{s}_{kind}", "limit_infer", partial(_infer, n, kind), best, 120)
            )
        specs.append(Spec(f"engine_{fmt}_{s}_{kind}", "engine", partial(_engine, fmt, n, kind), best, 120))
    if not quick:
        specs += [
            Spec("naive_csv_100k_linear", "naive", partial(_naive, "csv", 100_000, "linear", "id"), 3, 120),
            Spec("engine_csv_100k_linear", "engine", partial(_engine, "csv", 100_000, "linear"), 3, 120),
            Spec("engine_csv_10m_linear", "engine", partial(_engine, "csv", 10_000_000, "linear"), 1, 300),
        ]
    specs.append(Spec("e2e", "e2e", partial(_e2e, n, 10 if quick else 30), 1, 600))
    return s, specs


def run_child(kind: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one measurement in a fresh ``python -m benchmarks.run_one`` process and return its result."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    argv = [sys.executable, "-m", "benchmarks.run_one", kind, json.dumps(args)]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # run_one exits on SIGTERM through its finally blocks (e2e stops its services)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        raise RuntimeError(f"timed out after {timeout:.0f} s\n{err[-2000:]}") from None
    found = [line for line in out.splitlines() if line.startswith(MARKER)]
    if proc.returncode or not found:
        raise RuntimeError(f"exit code {proc.returncode}\n{(out + err)[-3000:]}")
    return json.loads(found[-1][len(MARKER) :])


def measure(spec: Spec) -> dict[str, Any]:
    """The best of ``spec.repeat`` runs (least wall time); peak RSS is the largest seen in any run."""
    args = spec.args()
    runs = [run_child(spec.kind, args, spec.timeout) for _ in range(spec.repeat)]
    best = min(runs, key=lambda r: r["seconds"])
    return best | {"peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "runs": [r["seconds"] for r in runs]}


def _engine_of(name: str) -> str:
    return name.replace("naive_full_", "engine_").replace("naive_warm_", "engine_").replace("naive_", "engine_")


def annotate(results: Results, s: str) -> tuple[dict[str, str], dict[str, str]]:
    """Per-measurement notes (stage times) and ratios (against the matching engine run)."""
    notes, ratios = {}, {}
    sec = lambda name: (results.get(name) or {}).get("seconds")  # noqa: E731
    for name, r in results.items():
        if r is None:
            continue
        d = r.get("detail", {})
        best = f" (best of {len(r['runs'])})" if len(r.get("runs", [])) > 1 else ""
        if name.startswith("naive"):
            notes[name] = (
                "load {load:.2f} + read {read:.2f} + predict {predict:.2f} + write {write:.2f} s".format(**d)
            )
            if "warm" in name:  # the model was loaded before the clock
                notes[name] = "(load {load:.2f} before) read {read:.2f} + predict {predict:.2f} + write {write:.2f} s".format(**d)
            notes[name] += "; writes " + (
                "whole frame + prediction" if "full" in name
                else "the engine's columns, model loaded before the clock" if "warm" in name
                else "id + prediction"
            )  # fmt: skip
            if sec(_engine_of(name)):
                ratios[name] = f"engine {r['seconds'] / sec(_engine_of(name)):.1f}x faster"
        elif name.startswith("engine"):
            notes[name] = (
                f"read {d.get('read_seconds', 0):.2f} | predict {d.get('predict_seconds', 0):.2f} | "
                f"write {d.get('write_seconds', 0):.2f} s (overlapping){best}"
            )
            if name == "engine_csv_10m_linear" and results.get(f"engine_csv_{s}_linear"):
                ratios[name] = (
                    f"RSS {r['peak_rss_mb'] / results[f'engine_csv_{s}_linear']['peak_rss_mb']:.2f}x of {s}"  # type: ignore[index]
                )
        elif name.startswith("limit"):
            engine = f"engine_csv_{s}_{'gbm' if name.endswith('gbm') else 'linear'}"
            if name.startswith("limit_cpu"):
                notes[name] = (
                    "CPU-s parse {parse_cpu:.2f} + predict {predict_cpu:.2f} + encode {encode_cpu:.2f} "
                    "(each alone) / {cores} cores".format(**d) + best
                )
            elif name.startswith("limit_parse_stream"):
                notes[name] = "open_csv in 1 MiB blocks, 1 thread" + best
            elif name.startswith("limit_parse"):
                notes[name] = "read_csv of the whole file, multithreaded" + best
            else:
                notes[name] = "session.run only, 64k-row batches" + best
            if sec(engine):
                ratios[name] = f"engine/this {sec(engine) / r['seconds']:.2f}"
        elif name == "e2e":
            in_function = f" ({d['big_function_s']:.2f} s in the function)" if d.get("big_function_s") else ""
            if d.get("download_s"):
                in_function += f"; download alone {d['download_s']:.2f} s"
            if d.get("big_devhost_cpu_s") is not None:
                in_function += (f"; CPU-s meanwhile devhost {d['big_devhost_cpu_s']:.2f} + "
                                f"azurite {d['big_azurite_cpu_s']:.2f}")  # fmt: skip
            notes[name] = (
                f"upload {d['upload']:.1f} s; {label(r['rows'])} file{in_function}; cold first file {d['cold_ms']:.0f} ms; "
                f"{len(d['small_ms'])} x 1k: p50 {d['p50_ms']:.0f} / p95 {d['p95_ms']:.0f} ms; RSS = devhost"
            )
            if sec(f"engine_csv_{s}_linear"):
                ratios[name] = f"{sec(f'engine_csv_{s}_linear') / r['seconds']:.2f}x engine rows/s"
    return notes, ratios


FANOUT_WORKERS = "1,2,4"
FANOUT_PART_MIB = 16


def run_fanout(rows: int, timeout: float = 1500) -> tuple[str, bool]:
    """The fan-out bench (``benchmarks.fanout``, its own services) on the cached ``rows``-row CSV with 1, 2
    and 4 part workers and parts of ``FANOUT_PART_MIB`` MiB, NAIVE left to the main table: (its report, ok).
    Not ok: it failed, timed out, or an output differed from the single path's."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    argv = [sys.executable, "-m", "benchmarks.fanout", "--rows", str(rows), "--workers", FANOUT_WORKERS,
            "--part-mib", str(FANOUT_PART_MIB), "--no-naive"]  # fmt: skip
    try:
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return f"fan-out bench FAILED: timed out after {timeout:.0f} s\n{str(exc.stderr or '')[-2000:]}", False
    out = done.stdout
    start = out.find("Fan-out of ")
    if start < 0:
        return f"fan-out bench FAILED (exit {done.returncode})\n{(out + done.stderr)[-3000:]}", False
    return out[start:].rstrip(), done.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="100k rows instead of 1M, no 10M, 10 small files"
    )
    parser.add_argument("--only", default="", help="comma-separated measurement names or patterns (engine_*)")
    parser.add_argument("--list", action="store_true", help="list the measurements and exit")
    parser.add_argument(
        "--fanout-rows", type=int, default=1_000_000,
        help="rows of the fan-out table's file (1, 2, 4 part workers; 0 or --quick/--only: none)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    s, specs = plan(args.quick)
    if args.only:
        patterns = [p.strip() for p in args.only.split(",") if p.strip()]
        specs = [x for x in specs if any(fnmatch.fnmatchcase(x.name, p) for p in patterns)]
    if args.list or not specs:
        print("\n".join(x.name for x in specs) or "no measurement matches --only")
        return 0 if specs else 2

    started = time.monotonic()
    print(
        f"Scorehook benchmarks ({'quick' if args.quick else 'full'} run): {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, "
        + ", ".join(
            f"{p} {version(p)}" for p in ("pyarrow", "onnxruntime", "mlflow-skinny", "pandas", "scikit-learn")
        ),
        flush=True,
    )
    results: Results = {}
    loads = []
    for i, spec in enumerate(specs, 1):
        t0, load = time.monotonic(), os.getloadavg()[0]
        loads.append(load)
        try:
            results[spec.name] = r = measure(spec)
            line = f"{r['seconds']:8.2f} s  {r['rows'] / r['seconds']:>11,.0f} rows/s  {r['peak_rss_mb']:6,.0f} MB"
        except Exception as exc:
            results[spec.name] = None
            line = f"FAILED: {exc}"
        took = time.monotonic() - t0
        print(
            f"[{i:2d}/{len(specs)}] {spec.name:<30} {line}  ({took:.0f} s, load before {load:.1f})",
            flush=True,
        )

    fanout_text, fanout_ok = "", True
    if args.fanout_rows > 0 and not (args.quick or args.only):
        t0, load = time.monotonic(), os.getloadavg()[0]
        fanout_text, fanout_ok = run_fanout(args.fanout_rows)
        print(f"[fan-out] {args.fanout_rows:,} rows, workers {FANOUT_WORKERS}: "
              f"{'done' if fanout_ok else 'FAILED'} ({time.monotonic() - t0:.0f} s, load before {load:.1f})",
              flush=True)  # fmt: skip
    notes, ratios = annotate(results, s)
    figs = figures(results, s)
    elapsed = time.monotonic() - started
    print(f"\nMeasurements (each in a fresh process; total {elapsed / 60:.1f} min)\n")
    if max(loads) > 2.0:  # this run's own previous measurement accounts for up to about 1
        print(
            f"WARNING: the machine was busy (1-min load average up to {max(loads):.1f} on {os.cpu_count()} cores"
            " before a measurement): other processes competed for the cores, figures are pessimistic.\n"
        )
    print(measurement_table(results, notes, ratios))
    fanout_lines = ""
    if fanout_text:  # its table here, its name: value lines with the others at the end
        table, _, fanout_lines = fanout_text.rpartition("\n\n") if fanout_ok else (fanout_text, "", "")
        print(f"\nFan-out (issue 15; the full 10M-row run: make bench-fanout)\n\n{table}")
    print("\nFigures against the targets of issue 4 (speedups: NAIVE wall / ENGINE wall, same run)\n")
    print(figure_table(figs))
    print()
    print(figure_lines(figs), flush=True)
    if fanout_lines:
        print(fanout_lines, flush=True)
    return 1 if any(r is None for r in results.values()) or not fanout_ok else 0


if __name__ == "__main__":
    sys.exit(main())
