"""The power / false-alarm table of issue 11 at reduced size (``benchmarks.drift_bench.power_table``, the
full table is ``make bench-drift``), and the reported distances against the scipy oracle on the full data."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from benchmarks.drift_bench import POWER_KINDS, power_table, power_targets
from shared.drift.evaluate import DriftPolicy, compare
from shared.drift.profile import Profile


@pytest.fixture(scope="module")
def table() -> dict:
    return power_table(
        sizes=(50, 200, 1_000, 10_000),
        effects=(0.0, 0.03, 0.15, 0.25),
        replicates=6,
        baseline_rows=100_000,
        fresh_baseline=False,
    )


def test_reduced_power_table_meets_the_targets(table: dict) -> None:
    """Every target except the 95 % at 0.15 (6 windows cannot show it; the benchmark does, and here every
    kind is caught at 0.15 in at least 4 of 6 windows of 10k rows)."""
    assert [m for m in power_targets(table) if "effect 0.15" not in m] == []
    for n in ("50", "200", "1000", "10000"):
        assert table["false_alarms"][n]["flags_at_most_0.03"] == 0
        assert table["false_alarms"][n]["per_feature_rate_at_0"] == 0
    for kind in POWER_KINDS:  # every kind is caught at 0.25 from 1000 rows and mostly at 0.15 at 10k rows
        assert table["power"][kind]["0.25"]["1000"] == 1.0 and table["power"][kind]["0.15"]["10000"] >= 4 / 6


def test_power_grows_with_n(table: dict) -> None:
    """At 50 rows a 0.15 effect is mostly within noise; at 10k rows it is caught: the bound shrinks with n."""
    numeric = ("mean", "scale", "shape")
    assert sum(table["power"][k]["0.15"]["50"] for k in numeric) < sum(
        table["power"][k]["0.15"]["10000"] for k in numeric
    )


@pytest.mark.parametrize("rows", [50, 1_000, 100_000])
def test_distances_equal_the_scipy_oracle_on_the_full_data(rows: int) -> None:
    rng = np.random.default_rng(rows)
    ref = {
        "n": rng.normal(size=20_000),
        "l": rng.lognormal(size=20_000),
        "c": rng.choice(list("abcdefgh"), 20_000),
    }
    cur = {
        "n": rng.uniform(-1.7, 1.9, rows).astype(np.float32),  # shape and location change
        "l": (rng.lognormal(size=rows) * 1.3 + 4).astype(np.float32),  # skewed, scaled and shifted
        "c": rng.choice(list("abcdefghz"), rows, p=[0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]),
    }
    base = Profile.baseline(pa.table(ref))
    report = compare(base, base.blank().update(pa.table(cur)), DriftPolicy())
    for name in ("n", "l"):
        oracle = stats.wasserstein_distance(ref[name], cur[name]) / np.std(ref[name], ddof=1)
        assert report.feature(name).value == pytest.approx(oracle, abs=0.005)
        assert (
            report.feature(name).basis == "grid"
            and report.feature(name).other_metrics["w1_resolution"] <= 0.0025
        )
    levels, index = np.unique(np.concatenate([ref["c"], cur["c"]]), return_inverse=True)
    oracle = jensenshannon(
        np.bincount(index[:20_000], minlength=levels.size),
        np.bincount(index[20_000:], minlength=levels.size),
        base=2,
    )
    assert report.feature("c").value == pytest.approx(oracle, abs=0.005)
    assert set(report.feature("c").new_levels) == {"z"}  # a new 10 % level is its own category


def test_a_new_level_under_five_percent_in_a_wide_feature_is_its_own_category() -> None:
    """300 baseline levels (more than the 256 kept): a new level with 3 % share is its own category, not
    lumped with the rarest levels, and JS equals the oracle over every level."""
    rng = np.random.default_rng(3)
    levels = np.array([f"v{i:03d}" for i in range(300)])
    ref = levels[rng.integers(0, 300, 60_000)]
    values = levels[rng.integers(0, 300, 100_000)].astype(object)
    values[rng.random(values.size) < 0.03] = "brand-new"
    base = Profile.baseline(pa.table({"c": ref}))
    feature = compare(base, base.blank().update(pa.table({"c": values}))).feature("c")
    assert feature.new_levels == {"brand-new": pytest.approx(0.03, abs=0.003)}
    names, index = np.unique(np.concatenate([ref, values]), return_inverse=True)
    oracle = jensenshannon(
        np.bincount(index[: ref.size], minlength=names.size),
        np.bincount(index[ref.size :], minlength=names.size),
        base=2,
    )
    assert feature.value == pytest.approx(oracle, abs=0.005)  # ~0.13: lumped with the rarest it was ~0.04


def test_a_new_level_at_two_percent_among_thousands_is_listed_though_its_sketch_count_is_low() -> None:
    """5,000 Zipf levels (two thirds of the values outside the 256 kept): the sketch of the rest counts a new
    level up to other / 65 low, so one at exactly 2 % may show as 1.9 %; it is listed all the same."""
    rng = np.random.default_rng(4)
    levels = np.array([f"v{i:04d}" for i in range(5_000)], dtype=object)
    p = 1 / np.arange(1, 5_001) ** 0.7
    base = Profile.baseline(pa.table({"c": levels[rng.choice(5_000, 20_000, p=p / p.sum())]}))
    values = levels[rng.choice(5_000, 200_000, p=p / p.sum())]
    values[rng.permutation(values.size)[:4_000]] = "brand-new"
    feature = compare(base, base.blank().update(pa.table({"c": values}))).feature("c")
    assert set(feature.new_levels) == {"brand-new"}
    assert feature.new_levels["brand-new"] == pytest.approx(0.02, abs=0.002)
