"""``python -m benchmarks.drift_bench [--quick] [--evidently-python PATH] [--json FILE] [--power-replicates N]``:
the drift figures of issues 6 and 11, measured in one run (``make bench-drift``).

1. **Profile cost while scoring**: ``score_file`` on the cached 1M-row CSV with the linear ONNX model, with
   and without the production drift hook (``ProfileObserver`` on a blank profile of the model's baseline,
   ``close()`` included), the order rotating, median of ``--repeats`` runs each: ``profile_share_1m`` =
   with / without - 1 in wall time (target < 5 %), ``profile_cpu_share_1m`` the same in process CPU time.
   ``profile_update_1m_s`` is ``Profile.update`` alone over the same input and output batches, on one
   thread (the work the observer's thread does beside scoring). A diagnostic third arm runs the hook with
   the BLAS thread pool limited to one thread (``*_blas1``; production does not limit it).
2. **Evaluation time**: Scorehook evaluates from stored profiles (the two JSON strings parsed, the profiles
   rebuilt and ``compare``d, as the timer does); Evidently's ``DataDriftPreset`` runs on the same raw
   rows as pandas frames (reference: the 16k training rows of the baseline; current: a 1M-row window
   generated with drift 1.0). Both tools' drifted columns and dataset-drift verdicts are printed, and the
   same comparison runs on ``--windows`` windows of 50 undrifted rows, where every detection is a false
   alarm.

3. **Power and false alarms** (issue 11): :func:`power_table`, the detection rate of ``compare`` per
   scenario kind (:data:`POWER_KINDS`) x effect (0, 0.03, 0.15, 0.2, 0.25) x window size (50 .. 1M rows),
   each window against a fresh 200k-row baseline, and the false alarms (per-feature rate at effect 0,
   flags at effects <= 0.03); ``power_targets_missed`` counts the issue's targets not met.
   ``profile_part_bytes_1k`` is the stored JSON of one 1k-row file's profile (a window part).

Evidently 0.7.23 (``benchmarks/requirements-drift.txt``) needs pandas < 3 while the project pins pandas
3.1.1, so it runs in its own venv (``.local/bench-evidently``, built by ``make bench-drift``) as a
subprocess of this file (``python benchmarks/drift_bench.py evidently JSON``) that reads the same rows from
Parquet files; only the stdlib is imported at module level so that mode needs nothing from the project.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

MARKER = "DRIFT_BENCH_EVIDENTLY "
TRAIN_ROWS = 20000  # split 80/20 as training.train.train_and_register does: the baseline has 16k rows
WINDOW_ROWS = 50
SEED_CURRENT, SEED_SMALL = 1, 2  # not the training seed: no current row repeats a training row's draws


# -- inputs (cached under .local/bench/drift/) --------------------------------------------------------------
def _atomic(path: Path, write: Any) -> Path:
    if not path.exists():
        print(f"generating {path.name} (cached for later runs)", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        write(tmp)
        tmp.replace(path)
    return path


def model_and_baseline(base: Path) -> tuple[Path, Path, Path]:
    """The linear ONNX model trained on the 80 % split of 20k rows, its drift baseline artifact (JSON, as
    ``train_and_register`` stores it) and those 16k training rows (features only, Parquet, for Evidently)."""
    onnx, artifact, reference = (
        base / "linear-16k.onnx",
        base
        / "baseline-16k-v2.json",  # the profile format's version: a v1 artifact would be compared coarsely
        base / "reference-16k.parquet",
    )
    if onnx.exists() and artifact.exists() and reference.exists():
        return onnx, artifact, reference
    import numpy as np
    import pyarrow.parquet as pq
    from sklearn.model_selection import train_test_split

    from training.data import LABEL, generate
    from training.train import HOLDOUT, drift_baseline, to_onnx, train

    print("training the linear model and its drift baseline (cached for later runs)", flush=True)
    table = generate(TRAIN_ROWS, seed=0, include_label=True)
    fit_idx, hold_idx = train_test_split(
        np.arange(TRAIN_ROWS), test_size=HOLDOUT, random_state=0, stratify=table.column(LABEL).to_numpy()
    )
    fit, hold = table.take(np.sort(fit_idx)), table.take(np.sort(hold_idx))
    pipeline = train(fit, seed=0, kind="linear")
    _atomic(onnx, lambda p: p.write_bytes(to_onnx(pipeline, hold)))
    _atomic(artifact, lambda p: p.write_text(json.dumps(drift_baseline(pipeline, fit))))
    _atomic(reference, lambda p: pq.write_table(fit.drop_columns([LABEL]), p))
    return onnx, artifact, reference


def current_file(base: Path, rows: int) -> Path:
    """The drifted window: ``rows`` generated rows at drift 1.0 (Parquet, 64k-row groups)."""
    from benchmarks.fixtures import label as _label
    from training.data import write_file

    path = base / f"current-{_label(rows)}-d1-s{SEED_CURRENT}.parquet"
    return _atomic(path, lambda p: write_file(p, rows, fmt="parquet", seed=SEED_CURRENT, drift=1.0))


def small_file(base: Path, windows: int) -> Path:
    """``windows`` windows of 50 undrifted rows, one after another in one Parquet file."""
    from training.data import write_file

    path = base / f"small-{WINDOW_ROWS}x{windows}-s{SEED_SMALL}.parquet"
    return _atomic(path, lambda p: write_file(p, WINDOW_ROWS * windows, fmt="parquet", seed=SEED_SMALL))


# -- 1. profile cost while scoring -------------------------------------------------------------------------
def _score(path: Path, fmt: str, model: Any, observe: Any = None) -> int:
    from shared.engine import score_file

    source = open(path, "rb") if isinstance(path, Path) else path  # noqa: SIM115 (closed below)
    try:
        blocks = score_file(
            source,
            fmt=fmt,
            model=model,
            model_version="1",
            key_columns=("id",),
            output_format="csv",
            observe=observe,
        )
        return sum(len(b) for b in blocks)
    finally:
        source.close()


def _profiled(path: Any, fmt: str, model: Any, baseline: Any, salt: str) -> Any:
    """Score with the production drift hook; the file's profile (``close()`` waits for the worker)."""
    from shared.drift.monitor import ProfileObserver

    observer = ProfileObserver(baseline.blank(model_version="1"), salt)
    _score(path, fmt, model, observer)
    return observer.close()


ARMS = ("plain", "observed", "observed_blas1")


def profile_cost(csv: Path, model: Any, baseline: Any, repeats: int, sample: Any) -> dict[str, Any]:
    """Wall and process CPU seconds of each arm, ``repeats`` times, the arms' order rotating each repeat.

    ``observed_blas1`` is ``observed`` with the BLAS thread pool limited to one thread (threadpoolctl): a
    diagnostic, production does not limit it (``NumericStats.add``'s ``d @ d`` is a BLAS dot).
    """
    from threadpoolctl import threadpool_limits

    from shared.drift.evaluate import PREDICTION_FEATURES

    def arm(name: str, path: Any) -> None:
        if name == "plain":
            _score(path, "csv", model)
        elif name == "observed":
            _profiled(path, "csv", model, baseline, str(path))
        else:
            with threadpool_limits(limits=1, user_api="blas"):
                _profiled(path, "csv", model, baseline, str(path))

    for name in ARMS:  # warm-up: lazy imports, first-call costs
        arm(name, sample())
    wall: dict[str, list[float]] = {a: [] for a in ARMS}
    cpu: dict[str, list[float]] = {a: [] for a in ARMS}
    for i in range(repeats):  # rotating order: a drift of the machine's load hits every arm
        for name in ARMS[i % 3 :] + ARMS[: i % 3]:
            w0, c0 = time.perf_counter(), time.process_time()
            arm(name, csv)
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
        print(
            f"  repeat {i + 1}/{repeats}: "
            + ", ".join(f"{a} {wall[a][-1]:.2f} s wall / {cpu[a][-1]:.2f} s CPU" for a in ARMS),
            flush=True,
        )

    batches: list[tuple[Any, Any]] = []  # the same batches the observer sees, kept for the update alone
    _score(csv, "csv", model, lambda inputs, outputs: batches.append((inputs, outputs)))
    from shared.drift.profile import row_keys

    def update_all() -> Any:  # what ProfileObserver's worker does, on this thread
        profile, outputs_seen = baseline.blank(model_version="1"), 0
        for inputs, outputs in batches:
            profile.update(inputs)  # keys from the id column
            if outputs is not None:
                names = [n for n in outputs.schema.names if n in PREDICTION_FEATURES or n == profile.key]
                predicted = outputs.select(names)
                keys = (
                    None if profile.key in names else row_keys(offset=outputs_seen, rows=predicted.num_rows)
                )
                profile.update(predicted, keys=keys)
                outputs_seen += outputs.num_rows
        return profile

    updates, update_cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        profile = update_all()
        updates.append(time.perf_counter() - w0)
        update_cpu.append(time.process_time() - c0)
    t0 = time.perf_counter()
    stored = json.dumps(profile.to_json())
    to_json = time.perf_counter() - t0
    rows = sum(b[0].num_rows for b in batches)
    batches.clear()
    return {
        "rows": rows,
        "wall": wall,
        "cpu": cpu,
        "update": updates,
        "update_cpu": update_cpu,
        "to_json_s": to_json,
        "profile_bytes": len(stored),
    }


# -- 2. evaluation: Scorehook from stored profiles -----------------------------------------------------------
def _flagged(report: Any) -> list[str]:
    return [f.name for f in report.features if f.role == "input" and f.flagged]


def scorehook_eval(baseline_json: str, current_json: str, repeats: int) -> dict[str, Any]:
    """``compare`` from the two stored JSON strings (parsing and rebuilding the profiles timed)."""
    from shared.drift.evaluate import DriftPolicy, compare
    from shared.drift.profile import Profile

    times, report = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        artifact = json.loads(baseline_json)
        baseline, current = Profile.from_json(artifact), Profile.from_json(json.loads(current_json))
        report = compare(baseline, current, DriftPolicy(), importance=artifact.get("importance"))
        times.append(time.perf_counter() - t0)
    assert report is not None
    return {
        "seconds": times,
        "rows": report.rows,
        "drifted": _flagged(report),
        "dataset_drift": report.drifted,
        "decision": report.decision,
        "prediction_drift": report.prediction_drift,
        "share": report.drifted_share,
    }


def scorehook_windows(small: Path, windows: int, model: Any, baseline_json: str) -> list[dict[str, Any]]:
    """Each 50-row window scored with the drift hook, stored as JSON, then evaluated like the big one."""
    import io

    import pyarrow.parquet as pq

    from shared.drift.profile import Profile

    table, baseline, out = pq.read_table(small), Profile.from_json(json.loads(baseline_json)), []
    for i in range(windows):
        sink = io.BytesIO()
        pq.write_table(table.slice(i * WINDOW_ROWS, WINDOW_ROWS), sink)
        sink.seek(0)
        profile = _profiled(sink, "parquet", model, baseline, f"window-{i}")
        out.append(scorehook_eval(baseline_json, json.dumps(profile.to_json()), 1))
    return out


# -- 2. evaluation: Evidently, in its own venv ---------------------------------------------------------------
def evidently_main(args: dict[str, Any]) -> dict[str, Any]:
    """Runs under the Evidently venv: DataDriftPreset on the raw rows, timed from in-memory frames."""
    os.environ.setdefault("DO_NOT_TRACK", "1")  # no usage telemetry from the benchmark
    import evidently
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric, categorical = args["numeric"], args["categorical"]
    columns = numeric + categorical
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)  # id excluded
    reference = pd.read_parquet(args["reference"], columns=columns)
    small = pd.read_parquet(args["small"], columns=columns)

    def run(current: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
        result = snapshot.dict()
        seconds = time.perf_counter() - t0
        count, drifted, methods = None, [], {}
        for metric in result["metrics"]:
            config = metric["config"]
            if config["type"].endswith("DriftedColumnsCount"):
                count, share, drift_share = (
                    metric["value"]["count"],
                    metric["value"]["share"],
                    config["drift_share"],
                )
            elif config["type"].endswith("ValueDrift"):  # stattests: p-values drift below, distances at/above
                method, value, threshold = config["method"], metric["value"], config["threshold"]
                methods[config["column"]] = method
                if (value < threshold) if "p_value" in method else (value >= threshold):
                    drifted.append(config["column"])
        return {
            "seconds": seconds,
            "rows": len(current),
            "count": count,
            "drifted": drifted,
            "dataset_drift": share >= drift_share,
            "share": share,
            "methods": methods,
        }

    rows = args["window_rows"]
    run(small.iloc[:rows])  # warm-up: lazy imports and first-call costs
    windows = [
        run(small.iloc[i * rows : (i + 1) * rows].reset_index(drop=True)) for i in range(args["windows"])
    ]
    current = pd.read_parquet(args["current"], columns=columns)
    big = [run(current) for _ in range(args["repeats"])]
    return {"version": evidently.__version__, "pandas": pd.__version__, "big": big, "windows": windows}


def evidently_run(python: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    argv = [python, str(Path(__file__).resolve()), "evidently", json.dumps(args)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    found = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    if proc.returncode or not found:
        raise RuntimeError(
            f"Evidently run failed (exit code {proc.returncode})\n{(proc.stdout + proc.stderr)[-3000:]}"
        )
    return json.loads(found[-1][len(MARKER) :])


# -- 3. power and false alarms of the decision (synthetic, the production profile and compare) ----------------
POWER_KINDS = ("mean", "scale", "shape", "mix", "new_level", "missing")
"""One feature per kind, all in one profile (the Bonferroni correction sees 6 features): ``mean`` N(0,1) ->
N(d,1); ``scale`` -> N(0, (1 + d sqrt(pi/2))^2); ``shape`` -> a mixture with a bimodal law of the same mean
and sd (N(+-0.98, 0.199^2), W1 0.39 from N(0,1)), its weight set so the true W1/sd is d; ``mix`` a 3-level categorical moved
toward its rarest level, ``new_level`` a new level taking a share, both until JS = d; ``missing`` N(0,1)
with 2 % missing values, d more in the window. True effect = d for every kind."""
POWER_EFFECTS = (0.0, 0.03, 0.15, 0.2, 0.25)
POWER_SIZES = (50, 200, 1_000, 10_000, 100_000, 1_000_000)
_LEVELS = ("a", "b", "c")
_LEVEL_P = (0.5, 0.3, 0.2)


def _js_solve(target: float, toward: Any) -> float:
    """The weight t in [0, 1] of ``toward`` in (1 - t) p + t toward whose JS distance from p is ``target``."""
    import numpy as np
    from scipy.spatial.distance import jensenshannon

    p = np.array([*_LEVEL_P, 0.0])
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if jensenshannon(p, (1 - mid) * p + mid * toward, base=2) < target else (lo, mid)
    return (lo + hi) / 2


_MODE = 0.98


def _bimodal_w1() -> float:
    """W1 between N(0,1) and the bimodal N(+-0.98, 0.199^2) of mean 0 and sd 1 (quadrature)."""
    import numpy as np
    from scipy import stats

    x = np.linspace(-8, 8, 200_001)
    sd = float(np.sqrt(1 - _MODE**2))
    mix = 0.5 * (stats.norm.cdf(x, -_MODE, sd) + stats.norm.cdf(x, _MODE, sd))
    return float(np.abs(stats.norm.cdf(x) - mix).sum() * (x[1] - x[0]))


def _power_table(rows: int, effect: float, rng: Any, shape_w1: float, float32: bool) -> Any:
    import numpy as np
    import pyarrow as pa

    d = effect
    z = rng.standard_normal((4, rows))
    shape = z[2].copy()
    if d:
        pick = rng.random(rows) < d / shape_w1
        shape[pick] = rng.choice([-_MODE, _MODE], int(pick.sum())) + float(np.sqrt(1 - _MODE**2)) * z[3][pick]
    mix_p = np.array([*_LEVEL_P, 0.0])
    new_p = mix_p.copy()
    if d:
        t = _js_solve(d, np.array([0.0, 0.0, 1.0, 0.0]))
        mix_p = (1 - t) * mix_p + t * np.array([0.0, 0.0, 1.0, 0.0])
        s = _js_solve(d, np.array([0.0, 0.0, 0.0, 1.0]))
        new_p = (1 - s) * new_p + s * np.array([0.0, 0.0, 0.0, 1.0])
    names = np.array([*_LEVELS, "new"])
    missing = z[3].copy()
    missing[rng.random(rows) < 0.02 + d] = np.nan
    dtype = np.float32 if float32 else np.float64
    return pa.table({
        "mean": (z[0] + d).astype(dtype),
        "scale": (z[1] * (1 + d * np.sqrt(np.pi / 2))).astype(dtype),
        "shape": shape.astype(dtype),
        "mix": names[rng.choice(4, rows, p=mix_p / mix_p.sum())],
        "new_level": names[rng.choice(4, rows, p=new_p / new_p.sum())],
        "missing": missing.astype(dtype),
    })  # fmt: skip


def power_table(
    sizes: tuple[int, ...] = POWER_SIZES,
    effects: tuple[float, ...] = POWER_EFFECTS,
    replicates: int = 100,
    baseline_rows: int = 200_000,
    seed: int = 20261201,
    fresh_baseline: bool = True,
    progress: Any = None,
) -> dict[str, Any]:
    """Detection rates of ``compare`` (default policy) per kind x effect x window size, over ``replicates``
    windows (each against a freshly drawn baseline of ``baseline_rows`` unless ``fresh_baseline`` is False),
    scored as float32 like scoring batches. Also, per size: the per-feature false-alarm rate at effect 0 and
    the number of flags at every effect <= 0.03 (both should be 0), and the largest |distance - scipy| seen.

    Example:
        >>> t = power_table(sizes=(1000,), effects=(0.0, 0.25), replicates=2, baseline_rows=20000)
        >>> t["power"]["mean"]["0.25"]["1000"], t["false_alarms"]["1000"]["flags_at_most_0.03"]
        (1.0, 0)
    """
    import numpy as np
    import pyarrow as pa

    from shared.drift.evaluate import DriftPolicy, compare
    from shared.drift.profile import Profile

    rng = np.random.default_rng(seed)
    shape_w1 = _bimodal_w1()
    policy = DriftPolicy()
    hits = {k: {str(e): dict.fromkeys(map(str, sizes), 0) for e in effects} for k in POWER_KINDS}
    small = {str(n): {"flags_at_0": 0, "features_at_0": 0, "flags_at_most_0.03": 0} for n in sizes}
    base = None
    for n in sizes:
        for e in effects:
            for _ in range(replicates):
                if base is None or fresh_baseline:
                    base = Profile.baseline(_power_table(baseline_rows, 0.0, rng, shape_w1, False))
                current = base.blank().update(_power_table(n, e, rng, shape_w1, True))
                report = compare(base, current, policy)
                flagged = {f.name for f in report.features if f.flagged}
                for kind in POWER_KINDS:
                    hits[kind][str(e)][str(n)] += kind in flagged
                if e == 0:
                    small[str(n)]["flags_at_0"] += len(flagged)
                    small[str(n)]["features_at_0"] += len(POWER_KINDS)
                if e <= 0.03:
                    small[str(n)]["flags_at_most_0.03"] += len(flagged)
            if progress:
                progress(n, e)
    power = {
        k: {e: {n: v / replicates for n, v in row.items()} for e, row in by.items()} for k, by in hits.items()
    }
    false_alarms = {
        n: {"per_feature_rate_at_0": v["flags_at_0"] / max(v["features_at_0"], 1),
            "flags_at_most_0.03": v["flags_at_most_0.03"]}
        for n, v in small.items()
    }  # fmt: skip
    del pa
    return {"replicates": replicates, "baseline_rows": baseline_rows, "fresh_baseline": fresh_baseline,
            "power": power, "false_alarms": false_alarms}  # fmt: skip


def power_targets(table: dict[str, Any]) -> list[str]:
    """The issue's targets the table misses (empty: all met): no flag at effects <= 0.03 at any size, a
    per-feature false-alarm rate <= 1 % at n = 50, 200, 1000, detection >= 95 % at 0.15 for n >= 10k and
    >= 99 % at 0.25 for n >= 1000 (every kind)."""
    misses = []
    for n, fa in table["false_alarms"].items():
        if fa["flags_at_most_0.03"]:
            misses.append(f"n={n}: {fa['flags_at_most_0.03']} flags at effects <= 0.03")
        if int(n) <= 1000 and fa["per_feature_rate_at_0"] > 0.01:
            misses.append(f"n={n}: per-feature false-alarm rate {fa['per_feature_rate_at_0']:.3f} > 0.01")
    for kind, by in table["power"].items():
        for effect, need, smallest in (("0.15", 0.95, 10_000), ("0.25", 0.99, 1_000)):
            for n, rate in by.get(effect, {}).items():
                if int(n) >= smallest and rate < need:
                    misses.append(f"{kind} effect {effect} n={n}: detection {rate:.2f} < {need}")
    return misses


def power_lines(table: dict[str, Any]) -> list[str]:
    """The power table (detection rate per kind and effect, one column per size) and the false alarms."""
    sizes = list(next(iter(next(iter(table["power"].values())).values())))
    head = f"{'kind':<10} {'effect':>6} " + " ".join(f"{n:>8}" for n in sizes)
    lines = [f"power: detection rate over {table['replicates']} windows per cell, baseline "
             f"{table['baseline_rows']:,} rows", head]  # fmt: skip
    for kind, by in table["power"].items():
        for effect, row in by.items():
            lines.append(f"{kind:<10} {effect:>6} " + " ".join(f"{row[n]:>8.2f}" for n in sizes))
    lines.append("false alarms: per-feature rate at effect 0 / flags at effects <= 0.03")
    lines.append(f"{'':<17} " + " ".join(f"{n:>8}" for n in sizes))
    fa = table["false_alarms"]
    lines.append(f"{'rate at 0':<17} " + " ".join(f"{fa[n]['per_feature_rate_at_0']:>8.3f}" for n in sizes))
    lines.append(f"{'flags <= 0.03':<17} " + " ".join(f"{fa[n]['flags_at_most_0.03']:>8d}" for n in sizes))
    return lines


# -- the run -----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["evidently"]:  # the Evidently half, in its own venv
        print(MARKER + json.dumps(evidently_main(json.loads(argv[1]))), flush=True)
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import BENCH_DIR, ROOT
    from benchmarks.fixtures import data_file, label
    from benchmarks.measures import _sample
    from benchmarks.report import Figure, print_figures

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.drift_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="100k rows instead of 1M, 5 small windows")
    parser.add_argument("--repeats", type=int, default=5, help="rotating scoring runs per arm (>= 3)")
    parser.add_argument("--windows", type=int, default=0, help="50-row windows (default 20, 5 with --quick)")
    parser.add_argument("--evidently-repeats", type=int, default=1, help="Evidently runs on the big window")
    parser.add_argument(
        "--evidently-python", default=str(ROOT / ".local" / "bench-evidently" / "bin" / "python")
    )
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument("--burst-files", type=int, default=500, help="files of the drift on/off burst (0: skip)")
    parser.add_argument("--burst-rounds", type=int, default=3, help="rounds of the burst, each drift off and on (default 3)")
    parser.add_argument(
        "--power-replicates",
        type=int,
        default=0,
        help="windows per power-table cell (default 100, 10 --quick)",
    )
    args = parser.parse_args(argv)
    rows, windows = (100_000, args.windows or 5) if args.quick else (1_000_000, args.windows or 20)
    s, base = label(rows), BENCH_DIR / "drift"
    started = time.monotonic()
    print(
        f"Scorehook drift benchmark ({'quick' if args.quick else 'full'} run): {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, "
        + ", ".join(f"{p} {version(p)}" for p in ("pyarrow", "onnxruntime", "numpy", "scipy")),
        flush=True,
    )
    loads = [os.getloadavg()[0]]
    onnx, artifact_path, reference = model_and_baseline(base)
    csv = data_file(rows, "csv")
    current, small = current_file(base, rows), small_file(base, windows)

    from shared.drift.profile import Profile
    from shared.models import OnnxModel
    from training.data import CATEGORICAL, NUMERIC

    model = OnnxModel.from_file(onnx)
    baseline_json = artifact_path.read_text()
    baseline = Profile.from_json(json.loads(baseline_json))

    print(
        f"\n[1/3] profile cost while scoring: {csv.name}, linear ONNX, {args.repeats} rotating repeats of 3 arms "
        f"(load before {loads[-1]:.1f})",
        flush=True,
    )
    cost = profile_cost(csv, model, baseline, max(args.repeats, 1), lambda: _sample(str(csv), "csv"))

    loads.append(os.getloadavg()[0])
    print(
        f"[2/3] Scorehook evaluation from stored profiles: {current.name} vs {baseline.rows:,} baseline rows, "
        f"and {windows} windows of {WINDOW_ROWS} undrifted rows (load before {loads[-1]:.1f})",
        flush=True,
    )
    stored_current = json.dumps(_profiled(current, "parquet", model, baseline, current.name).to_json())
    ours = scorehook_eval(baseline_json, stored_current, 3)
    ours_small = scorehook_windows(small, windows, model, baseline_json)

    import io

    from benchmarks.fixtures import small_csv

    part = _profiled(io.BytesIO(small_csv(1000, seed=5)), "csv", model, baseline, "part-1k")
    part_bytes = len(json.dumps(part.to_json()))

    loads.append(os.getloadavg()[0])
    replicates = args.power_replicates or (10 if args.quick else 100)
    sizes = POWER_SIZES[:-1] if args.quick else POWER_SIZES
    print(
        f"[power] detection and false alarms: {len(POWER_KINDS)} kinds x {len(POWER_EFFECTS)} effects x "
        f"{len(sizes)} sizes, {replicates} windows each (load before {loads[-1]:.1f})",
        flush=True,
    )
    power = power_table(sizes=sizes, replicates=replicates)
    power_misses = power_targets(power)

    loads.append(os.getloadavg()[0])
    print(
        f"[3/3] Evidently DataDriftPreset on the same rows ({args.evidently_python}) "
        f"(load before {loads[-1]:.1f})",
        flush=True,
    )
    try:
        ev = evidently_run(
            args.evidently_python,
            {
                "reference": str(reference),
                "current": str(current),
                "small": str(small),
                "numeric": list(NUMERIC),
                "categorical": list(CATEGORICAL),
                "window_rows": WINDOW_ROWS,
                "windows": windows,
                "repeats": max(args.evidently_repeats, 1),
            },
            timeout=900,
        )
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"FAILED: {exc}\n(run `make bench-drift`, which builds the Evidently venv)", flush=True)
        ev = None

    med = statistics.median
    wall, cpu = {a: med(x) for a, x in cost["wall"].items()}, {a: med(x) for a, x in cost["cpu"].items()}
    share = wall["observed"] / wall["plain"] - 1
    update, ours_s = med(cost["update"]), med(ours["seconds"])
    figs = [
        Figure(f"profile_share_{s}", share, "< 0.05", share < 0.05, 3),
        Figure(f"scoring_{s}_s", wall["plain"]),
        Figure(f"scoring_with_profile_{s}_s", wall["observed"]),
        Figure(f"profile_update_{s}_s", update),
        Figure(f"profile_update_over_scoring_{s}", update / wall["plain"], digits=3),
        Figure(f"profile_cpu_share_{s}", cpu["observed"] / cpu["plain"] - 1, digits=3),
        Figure(f"profile_share_{s}_blas1", wall["observed_blas1"] / wall["plain"] - 1, "diagnostic", None, 3),
        Figure(
            f"profile_cpu_share_{s}_blas1", cpu["observed_blas1"] / cpu["plain"] - 1, "diagnostic", None, 3
        ),
        Figure("scorehook_eval_s", ours_s, digits=3),
    ]
    if ev:
        ev_s = med(r["seconds"] for r in ev["big"])
        figs += [
            Figure("evidently_eval_s", ev_s),
            Figure("eval_speedup_vs_evidently", ev_s / ours_s, "report", None, 1),
        ]
    truth = ["x01", "x02", "x05", "x11", "region", "channel"]  # moved by training.data at drift 1.0
    ev_big = ev["big"][0] if ev else None
    figs += [
        Figure(
            f"scorehook_drifted_columns_{s}",
            len(ours["drifted"]),
            f"truth: {len(truth)}",
            sorted(ours["drifted"]) == sorted(truth),
            0,
        ),
        Figure(
            f"scorehook_dataset_drift_{s}", int(ours["dataset_drift"]), "truth: 1", ours["dataset_drift"], 0
        ),
    ]
    if ev_big:
        figs += [
            Figure(f"evidently_drifted_columns_{s}", ev_big["count"], f"truth: {len(truth)}", None, 0),
            Figure(f"evidently_dataset_drift_{s}", int(ev_big["dataset_drift"]), "truth: 1", None, 0),
        ]
    ours_cols = [len(w["drifted"]) for w in ours_small]
    figs += [
        Figure(f"scorehook_drifted_columns_{WINDOW_ROWS}", ours_cols[0], "truth: 0", ours_cols[0] == 0, 0),
        Figure(
            f"scorehook_drifted_columns_{WINDOW_ROWS}_mean",
            statistics.fmean(ours_cols),
            "truth: 0",
            not any(ours_cols),
        ),
        Figure(
            f"scorehook_dataset_drift_{WINDOW_ROWS}_windows",
            sum(w["dataset_drift"] for w in ours_small),
            f"truth: 0 of {windows}",
            not any(w["dataset_drift"] for w in ours_small),
            0,
        ),
    ]
    if ev:
        ev_cols = [w["count"] for w in ev["windows"]]
        figs += [
            Figure(f"evidently_drifted_columns_{WINDOW_ROWS}", ev_cols[0], "truth: 0", None, 0),
            Figure(f"evidently_drifted_columns_{WINDOW_ROWS}_mean", statistics.fmean(ev_cols), "truth: 0"),
            Figure(
                f"evidently_dataset_drift_{WINDOW_ROWS}_windows",
                sum(w["dataset_drift"] for w in ev["windows"]),
                f"truth: 0 of {windows}",
                None,
                0,
            ),
            Figure(f"evidently_eval_{WINDOW_ROWS}_s", med(w["seconds"] for w in ev["windows"]), digits=3),
        ]
    figs.append(Figure(f"scorehook_eval_{WINDOW_ROWS}_s", med(w["seconds"][0] for w in ours_small), digits=3))
    figs += [
        Figure("profile_part_bytes_1k", part_bytes, "report", None, 0),
        Figure("power_targets_missed", len(power_misses), "0", not power_misses, 0),
    ]

    burst = None  # issue 11: the burst through devhost, drift on vs off (benchmarks/drift_burst.py)
    if args.burst_files:
        from benchmarks import drift_burst

        print(f"[+] burst of {args.burst_files} x 1k-row files through devhost, drift off and on, "
              f"{args.burst_rounds} round(s)", flush=True)
        burst = drift_burst.run(args.burst_files, rounds=max(args.burst_rounds, 1))
        figs += drift_burst.figures(burst)

    elapsed = time.monotonic() - started
    print(f"\nDrift benchmark (total {elapsed / 60:.1f} min)\n")
    if max(loads) > 1.5:
        print(
            f"WARNING: the machine was busy (1-min load average up to {max(loads):.1f} on {os.cpu_count()} cores "
            "before a step): other processes competed for the cores, timings are pessimistic.\n"
        )
    fmt_runs = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    print(
        f"scoring {cost['rows']:,} rows, wall s (CPU s): "
        + "; ".join(f"{a} {fmt_runs(cost['wall'][a])} ({fmt_runs(cost['cpu'][a])})" for a in ARMS)
        + f"; Profile.update alone {fmt_runs(cost['update'])} ({fmt_runs(cost['update_cpu'])}); "
        f"profile to JSON {cost['to_json_s']:.3f} s ({cost['profile_bytes']:,} bytes)"
    )
    print(
        "  observed_blas1 (diagnostic): the same hook with the BLAS pool limited to 1 thread (threadpoolctl)"
    )
    print(
        f"evaluation on {rows:,} drifted rows vs {baseline.rows:,}: Scorehook {fmt_runs(ours['seconds'])} s "
        f"(from stored JSON, {len(baseline.features)} features incl. predictions)"
        + (
            f"; Evidently {evidently_label(ev)} {fmt_runs(r['seconds'] for r in ev['big'])} s "
            f"({len(ev_big['methods'])} columns: {method_summary(ev_big['methods'])})"
            if ev and ev_big
            else ""
        )
    )
    print(f"  truly drifted: {', '.join(truth)}")
    print(
        f"  Scorehook: {ours['decision']} (share {ours['share']:.3f} of 0.2, importance-weighted; prediction "
        f"drift {ours['prediction_drift']}), flagged {', '.join(ours['drifted']) or 'none'}"
    )
    if ev_big:
        print(
            f"  Evidently: dataset drift {ev_big['dataset_drift']} (share {ev_big['share']:.3f} of 0.5), "
            f"drifted {', '.join(ev_big['drifted']) or 'none'}"
        )
    print(
        f"{windows} windows of {WINDOW_ROWS} undrifted rows (every flag is a false alarm): drifted columns per window "
        f"Scorehook {ours_cols}" + (f", Evidently {[int(c) for c in ev_cols]}" if ev else "")
    )
    print()
    print("\n".join(power_lines(power)))
    print("power targets: " + ("all met" if not power_misses else "; ".join(power_misses)))
    print_figures(figs)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "profile_cost": cost,
                    "scorehook": ours,
                    "scorehook_windows": ours_small,
                    "evidently": ev,
                    "burst": burst,
                    "power": power,
                    "power_misses": power_misses,
                    "figures": {f.name: f.value for f in figs},
                },
                indent=1,
            )
        )
    return 0 if ev else 1


def evidently_label(ev: dict[str, Any]) -> str:
    return f"{ev['version']} (pandas {ev['pandas']})"


def method_summary(methods: dict[str, str]) -> str:
    counts: dict[str, int] = {}
    for method in methods.values():
        counts[method] = counts.get(method, 0) + 1
    return ", ".join(f"{n} x {m}" for m, n in counts.items())


if __name__ == "__main__":
    sys.exit(main())
