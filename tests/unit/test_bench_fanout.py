"""The fan-out benchmark's pure parts (``benchmarks.fanout``): figures and report from a recorded run, no timing."""

from __future__ import annotations

import doctest

import pytest

from benchmarks import fanout
from benchmarks.fanout import PRICES, parts_from_log, summarize


def _parts(pids: list[int], queued: float, seconds: float, rows: int = 1000) -> list[dict]:
    """Parts scored one after another on each worker (round robin), 0.1 s pickup each."""
    parts, free = [], {p: queued for p in pids}
    for index, pid in enumerate(pids * 2):
        start = free[pid] + 0.1
        parts.append({"part": index + 1, "queued": queued, "start": start, "end": start + seconds, "rows": rows,
                      "bytes": 64 << 20, "pid": pid})  # fmt: skip
        free[pid] = start + seconds
    return parts


def _run(workers: int, wall: float, sha: str = "abc") -> dict:
    pids = list(range(100, 100 + workers))
    parts = _parts(pids, queued=10.0, seconds=2.0)
    return {"workers": workers, "rows": 4000, "wall_s": wall, "output_rows": 4000, "sha256": sha,
            "uploaded": 9.0, "plan_start": 9.5, "committed": max(p["end"] for p in parts) + 0.25, "parts": parts,
            "worker_pids": pids, "cpu_s": {"devhost": 1.0, "azurite": 2.0, "workers": [3.0] * workers},
            "peak_rss_mb": {"devhost": 500.0, "workers": [400.0] * workers}}  # fmt: skip


@pytest.fixture
def recorded() -> dict:
    single = {"rows": 4000, "wall_s": 10.0, "function_s": 8.0, "output_rows": 4000, "sha256": "abc", "parts": [],
              "cpu_s": {"devhost": 9.0, "azurite": 1.0}, "peak_rss_mb": {"devhost": 600.0}}  # fmt: skip
    naive = {"naive_full_csv_1m_linear": {"seconds": 20.0, "rows": 1_000_000, "peak_rss_mb": 1500.0}}
    return {"rows": 4000, "bytes": 4 * (64 << 20), "part_bytes": 64 << 20, "cores": 2, "single": single,
            "fanout": [_run(1, 12.0), _run(2, 7.5), _run(4, 7.0, sha="other")], "naive": naive}  # fmt: skip


def test_scaling_efficiency_is_rows_per_second_at_n_over_n_times_one_worker(recorded):
    summary = summarize(recorded)
    one, two, four = summary["fanout"]
    assert one["efficiency"] == pytest.approx(1.0)
    assert two["efficiency"] == pytest.approx((4000 / 7.5) / (2 * 4000 / 12.0))
    assert four["efficiency"] == pytest.approx((4000 / 7.0) / (4 * 4000 / 12.0))
    assert two["speedup_vs_single"] == pytest.approx(10.0 / 7.5)


def test_queue_overheads_and_part_throughput_come_from_the_part_times(recorded):
    two = summarize(recorded)["fanout"][1]
    assert two["parts"] == 4 and two["workers_used"] == 2
    assert two["pickup_ms"] == pytest.approx(100.0)  # each worker free → its next part: 0.1 s
    assert two["commit_ms"] == pytest.approx(250.0)
    assert two["first_part_ms"] == pytest.approx(1100.0)  # uploaded at 9.0, first part starts at 10.1
    assert two["part_rows_per_s"] == pytest.approx(500.0) and two["part_s"] == pytest.approx(2.0)
    assert two["queue_wait_ms"] > two["pickup_ms"]  # backlog: the second parts waited for a worker


def test_only_the_same_hash_and_every_row_count_as_identical_and_complete(recorded):
    recorded["fanout"][1]["output_rows"] = 3999
    one, two, four = summarize(recorded)["fanout"]
    assert one["identical"] and two["identical"] and not four["identical"]
    assert one["complete"] and not two["complete"]


def test_cost_per_million_rows_is_gb_seconds_times_the_list_price(recorded):
    summary = summarize(recorded)
    naive = summary["naive"]["naive_full_csv_1m_linear"]
    assert naive["gb_s"] == pytest.approx(1.5 * 20.0)
    assert naive["usd_per_m_rows"] == pytest.approx(
        30.0 * PRICES["gb_s"] + PRICES["per_million_executions"] / 1e6
    )
    single = summary["single"]
    assert single["gb_s"] == pytest.approx(0.6 * 8.0)  # devhost's RSS over the in-function time
    one = summary["fanout"][0]
    # one worker executing two parts of 2 s each, the planner's scan 9.5 → 10.0 (devhost's RSS)
    assert one["gb_s"] == pytest.approx(0.4 * 4.0 + 0.5 * 0.5)
    assert one["billed_gb_s"] == pytest.approx(PRICES["instance_gb"] * (4.0 + 0.5))
    assert one["executions"] == 2 + 1


def test_the_report_prints_the_table_the_note_and_one_line_per_figure(recorded):
    text = fanout.report(summarize(recorded))
    assert "single path" in text and "4 workers" in text and "NAIVE" in text
    assert "N > 2" in text  # 2 cores: the honest note
    lines = dict(
        line.split(": ", 1)
        for line in text.splitlines()
        if line.startswith(("fanout_", "naive_")) and ": " in line
    )
    assert float(lines["fanout_2w_efficiency"]) == pytest.approx(0.8, abs=0.005)
    assert lines["fanout_4w_identical"] == "0" and lines["fanout_1w_identical"] == "1"


def test_parts_are_read_back_from_the_apps_log_lines():
    blob = "incoming/fan/a.csv"
    records = [
        {"message": "file fanned out", "blob": blob, "plan_ms": 2000, "_t": 12.0},
        {"message": "part queued", "blob": blob, "part": 1, "rows": 10, "bytes": 100, "_t": 10.5},
        {"message": "part queued", "blob": blob, "part": 2, "rows": 7, "bytes": 60, "_t": 11.0},
        {
            "message": "part queued",
            "blob": "incoming/other.csv",
            "part": 3,
            "rows": 1,
            "bytes": 1,
            "_t": 11.0,
        },
        {"message": "part scored", "blob": blob, "part": 2, "elapsed_ms": 1000, "_t": 13.0},
        {"message": "part scored", "blob": blob, "part": 1, "elapsed_ms": 1500, "_t": 13.5},
        {"message": "file scored", "blob": blob, "elapsed_ms": 4000, "_t": 14.0},
    ]
    found = parts_from_log(records, blob)
    assert found["plan_start"] == 10.0 and found["committed"] == 14.0 and found["function_s"] == 4.0
    assert [(p["part"], p["start"], p["end"], p["rows"]) for p in found["parts"]] == [
        (1, 12.0, 13.5, 10),
        (2, 12.0, 13.0, 7),
    ]


def test_the_modules_examples_hold():
    assert doctest.testmod(fanout).failed == 0


def test_the_engine_measurement_reports_plain_json(tiny_onnx, tmp_path) -> None:
    """What ``benchmarks.run_one`` prints must be JSON: the engine's stats carry the fan-out's header bytes,
    which broke every ``engine_*`` figure of ``make bench``."""
    import json

    from benchmarks.measures import engine

    path = tmp_path / "data.csv"
    path.write_bytes(b"id,x1,x2,color\n" + b"".join(b"%d,0.5,%d,red\n" % (i, i % 7) for i in range(3000)))
    result = engine(str(path), "csv", str(tiny_onnx))
    assert json.loads(json.dumps(result))["rows"] == 3000 and result["detail"]["bytes_out"] > 0
