"""Figures with their targets (from issue 4), the measurement table, and the final ``name: value`` lines."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Results = dict[str, dict[str, Any] | None]  # measurement name → result (None: failed)


@dataclass
class Figure:
    name: str
    value: float | None
    target: str = ""
    met: bool | None = None  # None: no target, or not measured
    digits: int = 2


def _get(results: Results, name: str, key: str = "seconds") -> float | None:
    result = results.get(name)
    if result is None:
        return None
    value = result.get(key, result.get("detail", {}).get(key))
    return None if value is None else float(value)


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def figures(results: Results, s: str) -> list[Figure]:
    """Every figure whose measurements were planned (``results`` has their names), required ones first.

    ``s`` is the size label of the main files (``1m``, or ``100k`` with ``--quick``).
    """
    out: list[Figure] = []
    sec = lambda name: _get(results, name)  # noqa: E731
    rss = lambda name: _get(results, name, "peak_rss_mb")  # noqa: E731
    e2e = lambda key: _get(results, "e2e", key)  # noqa: E731

    def add(
        name: str, needs: list[str], value: Any, target: str = "info", check: Any = None, digits: int = 2
    ):
        if all(n in results for n in needs):
            met = None if value is None or check is None else bool(check(value))
            out.append(Figure(name, value, target, met, digits))

    def speedup(name: str, baseline: str, engine: str, at_least: float | None) -> None:
        target = f">= {at_least:g}x" if at_least else "info"
        check = (lambda v: v >= at_least) if at_least else None
        add(name, [baseline, engine], _div(sec(baseline), sec(engine)), target, check)

    def over_limit(name: str, kind: str, parse: str, checked: bool = True) -> None:
        engine, infer = f"engine_csv_{s}_{kind}", f"limit_infer_csv_{s}_{kind}"
        limit = None if sec(parse) is None or sec(infer) is None else max(sec(parse), sec(infer))
        target, check = ("<= 1.25", lambda v: v <= 1.25) if checked else ("info", None)
        add(name, [engine, parse, infer], _div(sec(engine), limit), target, check)

    # NAIVE as the issue defines and calibrates it (about 45-50k rows/s on 1M rows): the usual Functions
    # sample reads the whole file with pandas, adds the predictions and writes the frame back with to_csv.
    speedup(f"csv_{s}_linear_speedup_vs_naive", f"naive_full_csv_{s}_linear", f"engine_csv_{s}_linear", 10)
    speedup(f"csv_{s}_gbm_speedup_vs_naive", f"naive_full_csv_{s}_gbm", f"engine_csv_{s}_gbm", 6)
    speedup(
        f"parquet_{s}_linear_speedup_vs_naive",
        f"naive_full_parquet_{s}_linear",
        f"engine_parquet_{s}_linear",
        20,
    )
    over_limit(f"csv_{s}_engine_over_limit", "linear", f"limit_parse_csv_{s}")
    # Issue 15: the engine against its CPU floor, the in-function time against its slowest floor, and NAIVE on
    # a warm worker writing the engine's columns (the like-for-like headline).
    engine_main, floor = sec(f"engine_csv_{s}_linear"), sec(f"limit_cpu_csv_{s}_linear")
    add(f"csv_{s}_engine_over_cpu_floor", [f"engine_csv_{s}_linear", f"limit_cpu_csv_{s}_linear"],
        _div(engine_main, floor), "<= 1.15", lambda v: v <= 1.15)  # fmt: skip
    floors = [e2e("download_s"), engine_main, floor]
    e2e_limit = None if None in floors else max(floors)  # type: ignore[type-var]
    add(f"e2e_{s}_over_limit", ["e2e", f"engine_csv_{s}_linear", f"limit_cpu_csv_{s}_linear"],
        _div(e2e("big_function_s"), e2e_limit), "<= 1.3", lambda v: v <= 1.3)  # fmt: skip
    # what bounds it on one machine: storage (Azurite) runs on the same cores; its CPU and the host's, while
    # the big file was scored, over the cores, is the floor no overlap can beat
    spent = [e2e("big_devhost_cpu_s"), e2e("big_azurite_cpu_s"), e2e("cores")]
    shared_floor = None if None in spent else (spent[0] + spent[1]) / spent[2]  # type: ignore[operator]
    add(f"e2e_{s}_over_cpu_with_storage", ["e2e"], _div(e2e("big_function_s"), shared_floor))
    add(f"e2e_{s}_cpu_s_devhost", ["e2e"], e2e("big_devhost_cpu_s"))
    add(f"e2e_{s}_cpu_s_azurite", ["e2e"], e2e("big_azurite_cpu_s"))
    speedup(f"csv_{s}_linear_speedup_vs_naive_warm", f"naive_warm_csv_{s}_linear", f"engine_csv_{s}_linear", None)
    speedup(f"csv_{s}_gbm_speedup_vs_naive_warm", f"naive_warm_csv_{s}_gbm", f"engine_csv_{s}_gbm", None)
    speedup(f"parquet_{s}_linear_speedup_vs_naive_warm", f"naive_warm_parquet_{s}_linear",
            f"engine_parquet_{s}_linear", None)  # fmt: skip
    rss_main = rss(f"engine_csv_{s}_linear")
    add(f"peak_rss_mb_{s}", [f"engine_csv_{s}_linear"], rss_main, "<= 600 MB", lambda v: v <= 600, 0)
    within = f"<= 1.10 x {s} = {1.1 * rss_main:.0f} MB" if rss_main else f"<= 1.10 x {s}"
    add("peak_rss_mb_10m", ["engine_csv_10m_linear"], rss("engine_csv_10m_linear"), within,
        lambda v: rss_main is not None and v <= 1.1 * rss_main, 0)  # fmt: skip
    engine_rate = _div(_get(results, f"engine_csv_{s}_linear", "rows"), sec(f"engine_csv_{s}_linear"))
    rows_target = f"report (engine alone: {engine_rate:,.0f})" if engine_rate else "report"
    add(f"e2e_{s}_rows_per_s", ["e2e"], e2e("rows_per_s"), rows_target, None, 0)
    add("e2e_1k_p50_ms", ["e2e"], e2e("p50_ms"), "< 150 ms", lambda v: v < 150, 1)
    add("e2e_1k_p95_ms", ["e2e"], e2e("p95_ms"), "report", None, 1)
    # Extra figures: a stricter NAIVE that writes only id + prediction (as the engine does), other limits.
    speedup(
        f"csv_{s}_linear_speedup_vs_naive_keys_only", f"naive_csv_{s}_linear", f"engine_csv_{s}_linear", None
    )
    speedup(f"csv_{s}_gbm_speedup_vs_naive_keys_only", f"naive_csv_{s}_gbm", f"engine_csv_{s}_gbm", None)
    speedup(
        f"parquet_{s}_linear_speedup_vs_naive_keys_only",
        f"naive_parquet_{s}_linear",
        f"engine_parquet_{s}_linear",
        None,
    )
    over_limit(f"csv_{s}_gbm_engine_over_limit", "gbm", f"limit_parse_csv_{s}")
    over_limit(f"csv_{s}_engine_over_stream_limit", "linear", f"limit_parse_stream_csv_{s}", False)
    if s != "100k":
        speedup("csv_100k_linear_speedup_vs_naive", "naive_csv_100k_linear", "engine_csv_100k_linear", None)
    add(f"naive_peak_rss_mb_{s}", [f"naive_csv_{s}_linear"], rss(f"naive_csv_{s}_linear"), digits=0)
    add("e2e_1k_until_scoring_starts_p50_ms", ["e2e"], e2e("wait_p50_ms"), digits=1)
    add("e2e_1k_in_function_p50_ms", ["e2e"], e2e("function_p50_ms"), digits=1)
    add("e2e_cold_first_file_ms", ["e2e"], e2e("cold_ms"), digits=0)
    add("e2e_devhost_peak_rss_mb", ["e2e"], rss("e2e"), digits=0)
    return out


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        cells = zip(row, widths, strict=True)
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(cells)).rstrip()

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, rows)])


def measurement_table(results: Results, notes: dict[str, str], ratios: dict[str, str]) -> str:
    rows = []
    for name, result in results.items():
        if result is None:
            rows.append([name, "", "FAILED", "", "", "", notes.get(name, "")])
            continue
        seconds, n = result["seconds"], result["rows"]
        rows.append([name, f"{n:,}", f"{seconds:.2f}", f"{n / seconds:,.0f}" if seconds else "",
                     f"{result['peak_rss_mb']:,.0f}", ratios.get(name, ""), notes.get(name, "")])  # fmt: skip
    return _table(
        ["measurement", "rows", "seconds", "rows/s", "peak RSS MB", "ratio", "notes"], rows, {1, 2, 3, 4}
    )


def figure_table(figs: list[Figure]) -> str:
    status = {True: "met", False: "NOT MET", None: ""}
    rows = [
        [f.name, "nan" if f.value is None else f"{f.value:,.{f.digits}f}", f.target,
         "FAILED" if f.value is None else status[f.met]]
        for f in figs
    ]  # fmt: skip
    return _table(["figure", "value", "target", "status"], rows, {1})


def figure_lines(figs: list[Figure]) -> str:
    return "\n".join(f"{f.name}: {'nan' if f.value is None else f'{f.value:.{f.digits}f}'}" for f in figs)


def print_figures(figs: list[Figure], json_path: str | None = None, measurements: Any = None) -> None:
    """The figure table, then the ``name: value`` lines; ``measurements`` also written to ``json_path``.

    Example:
        >>> print_figures([Figure("x_over_y", 0.93, ">= 0.9", True)])
        <BLANKLINE>
        figure    value  target  status
        --------  -----  ------  ------
        x_over_y   0.93  >= 0.9  met
        <BLANKLINE>
        x_over_y: 0.93
    """
    print()
    print(figure_table(figs))
    print()
    print(figure_lines(figs), flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps(measurements, indent=1, default=str))


def arm_parser(
    prog: str, description: str, *, files: int, rounds: int, rounds_help: str
) -> argparse.ArgumentParser:
    """The command line of an A/B benchmark of scored files (``--files --rows --rounds --json``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description.split("\n")[0])
    parser.add_argument("--files", type=int, default=files, help=f"files per arm and round (default {files})")
    parser.add_argument("--rows", type=int, default=1000, help="rows per file (default 1000)")
    parser.add_argument("--rounds", type=int, default=rounds, help=f"{rounds_help} (default {rounds})")
    parser.add_argument("--json", help="also write every measurement to this file")
    return parser
