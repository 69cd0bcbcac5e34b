"""Drift metrics against the scipy reference values (../shared/reference/drift_reference_values.txt) and the
edge cases of issue 6: empty bins, unseen categories, constant features, all-missing columns, n = 1.

The reference script prints and draws 2 M normals at import, so its inputs are replicated here (same names);
the numbers asserted are parsed from its .txt output."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import shared.drift
from shared.drift import metrics
from shared.drift.metrics import (
    Chi2Result,
    DriftInputError,
    EmptyDistributionError,
    chi2_test,
    js_distance,
    ks_test,
    missing_rate,
    normalized_wasserstein,
    out_of_range_rate,
    psi,
    unseen_category_rate,
)
from shared.errors import InputError

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "drift_reference_values.txt"

# The inputs of drift_reference_values.py.
a = [0.1, 0.5, 0.9, 1.3, 2.0, 2.2, 3.1, 4.0]
b = [1.0, 1.5, 2.5, 3.0, 3.5, 4.5, 5.0, 6.0]
p, q = [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]
ref_c, cur_c = [50, 30, 20], [40, 35, 25]
t2 = [[60, 40], [50, 50]]
ref_counts, cur_counts = [10, 20, 30, 40, 0], [15, 25, 25, 30, 5]
N, SHIFT = 1_000_000, 0.01

_NUMBER = re.compile(r"=\s*([-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?)")


def _reference_lines() -> dict[str, list[str]]:
    return {line: _NUMBER.findall(line) for line in REFERENCE.read_text().splitlines() if line.strip()}


# The script prints %.12g everywhere except its large-n demo (%.5f, %.3g, %.4f): there, half a printed digit.
SHORT_PRINT = ("n=1e6", "n=1e3")


def _tolerance(printed: str, short: bool) -> float:
    if not short:
        return 1e-9
    mantissa, _, exponent = printed.partition("e")
    return 0.5 * 10.0 ** (int(exponent or 0) - len(mantissa.partition(".")[2]))


def _large_n() -> list[float]:
    rs = np.random.RandomState(0)
    x, y = rs.normal(0, 1, N), rs.normal(SHIFT, 1, N)
    full, first = ks_test(x, y), ks_test(x[:1000], y[:1000])
    return [N, SHIFT, full.statistic, full.pvalue, normalized_wasserstein(x, y, ddof=0), 1000, *first]


def _ours() -> dict[str, list[float]]:
    """Line prefix in the .txt -> our values for every number printed on that line, in order."""
    w_pop, w_samp = normalized_wasserstein(a, b, ddof=0), normalized_wasserstein(a, b)
    yates, plain = chi2_test(*t2), chi2_test(*t2, correction=False)
    large = _large_n()
    return {
        "KS exact": list(ks_test(a, b)),
        "KS asymp": list(ks_test(a, b, method="asymp")),
        "W1=": [w_pop * float(np.std(a)), w_pop, w_samp],
        "JS base2=": [
            js_distance(p, q),
            js_distance(p, q, base=math.e),
            js_distance([50, 30, 20], [20, 30, 50]),
        ],
        "JS disjoint": [js_distance([1, 0], [0, 1]), *[js_distance([1, 0], [0, 1], base=math.e)] * 2],
        "chisquare GOF": list(chi2_test(ref_c, cur_c, test="gof"))[:2],
        "chi2_contingency 2x3": list(chi2_test(ref_c, cur_c)),
        "chi2_contingency 2x2": [yates.statistic, yates.pvalue, plain.statistic, plain.pvalue],
        "PSI evidently-eps": [psi(ref_counts, cur_counts, empty_bins="evidently")],
        "PSI azure-laplace": [psi(ref_counts, cur_counts)],
        "PSI clip-1e-6": [psi(ref_counts, cur_counts, empty_bins="clip")],
        "PSI no-empty": [psi([10, 20, 30, 40], [15, 25, 25, 35], empty_bins="clip")],
        "KL(a||e)+KL(e||a)": [psi([10, 20, 30, 40], [15, 25, 25, 35], empty_bins="evidently")],
        "n=1e6": large[:5],
        "n=1e3": large[5:],
    }


def test_every_reference_value_is_reproduced() -> None:
    lines, ours = _reference_lines(), _ours()
    for line, printed in lines.items():
        prefixes = [prefix for prefix in ours if line.startswith(prefix)]
        assert len(prefixes) == 1, f"reference line not covered exactly once: {line!r}"
        values = ours[prefixes[0]]
        assert len(values) == len(printed), line
        for value, text in zip(values, printed, strict=True):
            assert value == pytest.approx(
                float(text), rel=0, abs=_tolerance(text, prefixes[0] in SHORT_PRINT)
            ), (line, text, value)
    assert len(lines) == len(ours) == 15


def test_defaults_are_the_pinned_conventions() -> None:
    # PSI default is Laplace; JS base 2; Wasserstein ddof=1; KS auto = exact here; chi2 homogeneity + Yates
    assert psi(ref_counts, cur_counts) == pytest.approx(0.148337495708, abs=1e-9)
    assert js_distance(p, q) == pytest.approx(0.309540953677, abs=1e-9)
    assert normalized_wasserstein(a, b) == pytest.approx(1.21356060482, abs=1e-9)
    assert ks_test(a, b).pvalue == pytest.approx(0.282672882673, abs=1e-9)
    assert chi2_test(*t2).statistic == pytest.approx(1.63636363636, abs=1e-9)
    assert (metrics.PSI_CLIP_EPS, metrics.EVIDENTLY_FILL, metrics.WASSERSTEIN_STD_FLOOR) == (
        1e-6,
        1e-4,
        0.001,
    )


def test_psi_is_the_jeffreys_divergence_and_symmetric() -> None:
    e, k = np.array([10, 20, 30, 40]) / 100, np.array([15, 25, 25, 35]) / 100
    assert psi(e, k, empty_bins="clip") == pytest.approx(stats.entropy(k, e) + stats.entropy(e, k), abs=1e-12)
    assert psi(ref_counts, cur_counts) == pytest.approx(psi(cur_counts, ref_counts), abs=1e-12)
    assert psi(ref_counts, ref_counts) == 0.0


def test_empty_bins_give_finite_psi_by_each_rule() -> None:
    # Laplace by hand: (c + 1) / (n + B)
    e, k = np.array([11, 21, 31, 41, 1]) / 105, np.array([16, 26, 26, 31, 6]) / 105
    assert psi(ref_counts, cur_counts) == pytest.approx(float(np.sum((k - e) * np.log(k / e))), abs=1e-12)
    # Evidently's second branch: smallest non-zero share <= 1e-4 -> zeros become smallest / 1e6
    e2, k2 = [1e-4, 0.9999, 1e-10], [0.5, 0.5, 1e-4]
    by_hand = sum((x - y) * math.log(x / y) for x, y in zip(k2, e2, strict=True))
    assert psi([1, 9999, 0], [5000, 5000, 0], empty_bins="evidently") == pytest.approx(by_hand, rel=1e-12)
    # a bin empty on both sides adds nothing under clip and Evidently's fill (Laplace moves every share)
    for rule in ("clip", "evidently"):
        with_empty = psi([10, 0, 30], [20, 0, 20], empty_bins=rule)
        assert with_empty == pytest.approx(psi([10, 30], [20, 20], empty_bins=rule), abs=1e-15)
        assert with_empty > 0


def _laplace(r: list[int], c: list[int]) -> float:
    e, k = (np.array(r) + 1) / (sum(r) + len(r)), (np.array(c) + 1) / (sum(c) + len(c))
    return float(np.sum((k - e) * np.log(k / e)))


def test_js_needs_no_epsilon_and_ignores_bins_empty_on_both_sides() -> None:
    assert js_distance([1, 0], [0, 1]) == 1.0
    assert js_distance([5, 0, 5], [2, 0, 8]) == pytest.approx(js_distance([5, 5], [2, 8]), abs=1e-15)
    assert js_distance([0.1, 0.9], [1, 9]) == 0.0  # shares and counts alike


def test_unseen_categories_are_their_own_bin() -> None:
    ref, cur = {"red": 50, "green": 30, "blue": 20}, {"red": 40, "green": 35, "purple": 25}
    aligned_ref, aligned_cur = [50, 30, 20, 0], [40, 35, 0, 25]
    assert js_distance(ref, cur) == js_distance(aligned_ref, aligned_cur)
    assert psi(ref, cur) == pytest.approx(_laplace(aligned_ref, aligned_cur), abs=1e-12)
    expected = stats.chi2_contingency(np.vstack([aligned_ref, aligned_cur]))
    assert chi2_test(ref, cur) == Chi2Result(expected.statistic, expected.pvalue, 3)
    assert chi2_test(ref, cur).pvalue < 1e-6
    assert chi2_test(ref, cur, test="gof") == Chi2Result(math.inf, 0.0, 3)
    assert unseen_category_rate(ref, cur) == 0.25
    assert unseen_category_rate(ref, {"red": 10}) == 0.0


def test_category_absent_on_both_sides_is_dropped_and_one_category_is_no_shift() -> None:
    assert chi2_test([50, 0, 30], [40, 0, 35]) == chi2_test([50, 30], [40, 35])
    assert chi2_test({"a": 5}, {"a": 500}) == Chi2Result(0.0, 1.0, 0)
    assert chi2_test({"a": 5}, {"a": 500}, test="gof") == Chi2Result(0.0, 1.0, 0)
    assert chi2_test(ref_c, cur_c, test="gof").dof == 2


def test_constant_feature_divides_by_the_floor_never_by_zero() -> None:
    const = [3.0] * 50
    assert normalized_wasserstein(const, const) == 0.0
    assert normalized_wasserstein(const, [3.5] * 10) == pytest.approx(0.5 / 0.001)
    assert normalized_wasserstein([3.0, 3.0 + 1e-6], [3.0]) == pytest.approx(
        0.5e-6 / 0.001
    )  # tiny std: floor
    assert ks_test(const, const) == (0.0, 1.0)
    assert ks_test(const, [4.0] * 5).statistic == 1.0


def test_n_equal_one() -> None:
    assert ks_test([1.0], [2.0]) == (1.0, 1.0)  # exact p-value: one value each is no evidence
    assert normalized_wasserstein(a, [2.0]) == pytest.approx(
        float(np.mean(np.abs(np.array(a) - 2.0)) / np.std(a, ddof=1)), abs=1e-12
    )
    # a one-value baseline has no spread under ddof=1: the floor applies (ddof=0 gives 0 too)
    assert normalized_wasserstein([1.0], [1.5]) == normalized_wasserstein([1.0], [1.5], ddof=0) == 500.0
    assert js_distance([1], [1]) == 0.0
    expected = stats.chi2_contingency([[1, 0], [0, 1]])
    assert chi2_test({"a": 1}, {"b": 1}) == Chi2Result(expected.statistic, expected.pvalue, 1)
    assert missing_rate(0, 1) == 0.0 and missing_rate(1, 1) == 1.0
    assert out_of_range_rate([11.0], 0.0, 10.0) == 1.0


def test_all_missing_column() -> None:
    # the data-quality rates are defined (missing 1.0, nothing out of range or unseen) ...
    assert missing_rate(200, 200) == 1.0
    assert out_of_range_rate([float("nan")] * 4, 0.0, 1.0) == 0.0
    assert out_of_range_rate([None, None], 0.0, 1.0) == 0.0
    assert unseen_category_rate({"a": 3}, {}, n_missing=7) == 0.0
    # ... the distribution metrics are not: an empty sample or all-zero counts raise, never a silent 0 / NaN
    for call in (
        lambda: normalized_wasserstein(a, []),
        lambda: ks_test([], b),
        lambda: psi([1, 2], [0, 0]),
        lambda: js_distance({"a": 3}, {}),
        lambda: chi2_test([0, 0], [1, 2]),
    ):
        with pytest.raises(EmptyDistributionError) as info:
            call()
        assert info.value.reason == "empty_distribution"
        assert isinstance(info.value, InputError)


def test_no_rows_at_all_has_no_rate() -> None:
    for call in (
        lambda: missing_rate(0, 0),
        lambda: out_of_range_rate([], 0.0, 1.0),
        lambda: unseen_category_rate({"a": 1}, {}),
    ):
        with pytest.raises(EmptyDistributionError, match="no rows"):
            call()


def test_rates_partition_the_rows() -> None:
    values = [-1.0, 0.0, 0.5, 1.0, 2.0, float("nan"), float("inf"), float("-inf")]
    assert out_of_range_rate(values, 0.0, 1.0) == 4 / 8  # bounds inclusive; NaN is missing, inf is out
    assert missing_rate(1, 8) + out_of_range_rate(values, 0.0, 1.0) + 3 / 8 == 1.0
    assert (
        unseen_category_rate({"a": 8, "b": 0}, {"a": 5, "b": 2, "c": 3}, n_missing=2) == 5 / 12
    )  # b has count 0: unseen


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: psi([1, 2, 3], [1, 2]), "same bins"),
        (lambda: psi([1, -2], [1, 2]), ">= 0"),
        (lambda: js_distance([1, float("nan")], [1, 2]), "finite"),
        (lambda: js_distance({"a": 1}, [1]), "both category mappings"),
        (lambda: js_distance([[1, 2]], [[1, 2]]), "1-D"),
        (lambda: psi([1, 2], [1, 2], empty_bins="zero"), "empty-bin rule"),  # type: ignore[arg-type]
        (lambda: chi2_test([1, 2], [1, 2], test="g"), "chi-squared test"),  # type: ignore[arg-type]
        (lambda: normalized_wasserstein([1.0, float("nan")], [1.0]), "missing_rate"),
        (lambda: ks_test([1.0], [[1.0]]), "1-D"),
        (lambda: missing_rate(3, 2), "n_missing <= n_rows"),
        (lambda: out_of_range_rate([1.0], 2.0, 1.0), "low <= high"),
        (lambda: unseen_category_rate({"a": 1}, {"a": -1}), ">= 0"),
    ],
)
def test_malformed_inputs_raise_a_drift_input_error(call, message: str) -> None:
    with pytest.raises(DriftInputError, match=message) as info:
        call()
    assert not isinstance(info.value, EmptyDistributionError)
    assert info.value.to_record()["reason"] == "bad_drift_input"


def test_package_reexports_the_public_names() -> None:
    from shared.drift import evaluate, monitor, offline, profile, signals, store

    modules = (metrics, profile, evaluate, store, signals, monitor, offline)
    assert sorted(shared.drift.__all__) == sorted(name for module in modules for name in module.__all__)
    for module in modules:
        assert all(getattr(shared.drift, name) is getattr(module, name) for name in module.__all__)
