"""Drift metrics on what a profile keeps: bin counts over fixed baseline edges, category counts, bounded samples.

Conventions, pinned by tests against ``shared/reference/drift_reference_values.txt`` (scipy 1.17.1):

* **PSI** = sum((a - e) * ln(a / e)) over the same bins, e = baseline, a = current share. Empty bins:
  ``"laplace"`` (default, Azure ML numerical) e_i = (r_i + 1) / (R + B), a_i = (c_i + 1) / (C + B);
  ``"evidently"`` each side's zero shares become 1e-4 (min non-zero / 1e6 when that is <= 1e-4), no
  renormalization; ``"clip"`` shares clipped below at 1e-6, no renormalization.
* **Jensen-Shannon distance** = ``scipy.spatial.distance.jensenshannon(ref, cur, base=2)``: counts or shares
  (normalized by scipy), range [0, 1], no epsilon (0 log 0 = 0).
* **Normalized Wasserstein** = ``scipy.stats.wasserstein_distance(ref, cur) / max(std(ref, ddof=1), 0.001)``
  (Azure ML: Spark ``stddev`` is ddof=1). A constant baseline (std 0), or one value with ddof=1, divides by
  the floor 0.001, never by zero.
* **KS** = ``scipy.stats.ks_2samp(ref, cur, alternative="two-sided", method="auto")``: exact p-value when
  both samples have <= 10,000 values, asymptotic above.
* **Chi-squared** = homogeneity test ``scipy.stats.chi2_contingency`` on the 2 x k table (baseline row,
  current row; as alibi-detect and NannyML), Yates correction when dof = 1 (scipy's default). Unseen
  categories are columns of their own; categories absent on both sides are dropped; one category left gives
  (0, 1, dof 0). ``test="gof"`` is Azure ML's / Evidently's goodness of fit against the baseline shares
  (an unseen category gives statistic inf, p-value 0).
* **Data quality** rates are shares of *rows* (missing rows count in the denominator): missing rate,
  out-of-range rate (a value outside the baseline [min, max]), unseen-category rate (a category with no
  baseline count). An all-missing column gives missing 1.0, out-of-range 0.0, unseen 0.0.

Undefined inputs raise :class:`EmptyDistributionError` (no observation on a side, e.g. an all-missing
column's sample, or no rows at all): a metric is never silently 0 or NaN. Malformed inputs (bins of
different lengths, negative or non-finite counts, NaN in a sample) raise :class:`DriftInputError`.

Example:
    >>> round(psi([10, 20, 30, 40, 0], [15, 25, 25, 30, 5]), 6)
    0.148337
    >>> round(js_distance({"a": 50, "b": 30, "c": 20}, {"a": 20, "b": 30, "c": 50}), 6)
    0.309541
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.spatial.distance import jensenshannon

from shared.errors import InputError

__all__ = [
    "EVIDENTLY_FILL",
    "PSI_CLIP_EPS",
    "WASSERSTEIN_STD_FLOOR",
    "Chi2Result",
    "Counts",
    "DriftInputError",
    "EmptyDistributionError",
    "KsResult",
    "chi2_test",
    "js_distance",
    "ks_test",
    "missing_rate",
    "normalized_wasserstein",
    "out_of_range_rate",
    "psi",
    "unseen_category_rate",
]

PSI_CLIP_EPS = 1e-6
EVIDENTLY_FILL = 1e-4
WASSERSTEIN_STD_FLOOR = 0.001

Counts = Sequence[float] | npt.NDArray[np.floating] | npt.NDArray[np.integer] | Mapping[Hashable, float]
"""Counts per bin (same bins on both sides) or per category (a mapping; aligned over the union of keys)."""

_Array = npt.NDArray[np.float64]


class DriftInputError(InputError):
    """Inputs a drift metric cannot take: mismatched bins, negative or non-finite counts, NaN in a sample.

    Example:
        >>> DriftInputError("bad").reason
        'bad_drift_input'
    """

    reason = "bad_drift_input"


class EmptyDistributionError(DriftInputError):
    """A side has no observation (all missing, or no rows): the metric is undefined, report it as such.

    Example:
        >>> try:
        ...     js_distance([0, 0], [1, 2])
        ... except EmptyDistributionError as exc:
        ...     print(exc.reason, "-", exc)
        empty_distribution - baseline counts: no observation (all zero or empty)
    """

    reason = "empty_distribution"


class KsResult(NamedTuple):
    """Two-sample KS: statistic D = sup |F_ref - F_cur| and its p-value."""

    statistic: float
    pvalue: float


class Chi2Result(NamedTuple):
    """Chi-squared statistic, p-value and degrees of freedom."""

    statistic: float
    pvalue: float
    dof: int


def _counts(values: object, side: str) -> _Array:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise DriftInputError(f"{side} counts: expected a 1-D vector, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise DriftInputError(f"{side} counts: must be finite and >= 0")
    return arr


def _pair(ref: Counts, cur: Counts) -> tuple[_Array, _Array]:
    """Both sides as aligned count vectors; mappings are aligned over the union of keys (missing = 0)."""
    if isinstance(ref, Mapping) != isinstance(cur, Mapping):
        raise DriftInputError("baseline and current: both category mappings or both bin vectors")
    if isinstance(ref, Mapping) and isinstance(cur, Mapping):
        keys = [*ref, *(key for key in cur if key not in ref)]
        ref, cur = [ref.get(key, 0) for key in keys], [cur.get(key, 0) for key in keys]
    r, c = _counts(ref, "baseline"), _counts(cur, "current")
    if r.shape != c.shape:
        raise DriftInputError(f"baseline has {r.size} bins, current {c.size}: counts need the same bins")
    for arr, side in ((r, "baseline"), (c, "current")):
        if arr.sum() == 0:
            raise EmptyDistributionError(f"{side} counts: no observation (all zero or empty)")
    return r, c


def _sample(values: npt.ArrayLike, side: str) -> _Array:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise DriftInputError(f"{side} sample: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise EmptyDistributionError(f"{side} sample: empty (no non-missing value)")
    if not np.all(np.isfinite(arr)):
        raise DriftInputError(f"{side} sample: NaN or inf; drop missing values and report missing_rate")
    return arr


def _evidently_fill(shares: _Array) -> _Array:
    smallest = shares[shares != 0].min()
    return np.where(shares == 0, smallest / 1e6 if smallest <= EVIDENTLY_FILL else EVIDENTLY_FILL, shares)


def psi(
    ref_counts: Counts, cur_counts: Counts, *, empty_bins: Literal["laplace", "evidently", "clip"] = "laplace"
) -> float:
    """Population stability index of two count vectors over the same bins (or category count mappings).

    Example:
        >>> round(psi([10, 20, 30, 40, 0], [15, 25, 25, 30, 5], empty_bins="clip"), 6)
        0.610293
    """
    r, c = _pair(ref_counts, cur_counts)
    if empty_bins == "laplace":
        e, a = (r + 1) / (r.sum() + r.size), (c + 1) / (c.sum() + c.size)
    elif empty_bins == "evidently":
        e, a = _evidently_fill(r / r.sum()), _evidently_fill(c / c.sum())
    elif empty_bins == "clip":
        e, a = np.clip(r / r.sum(), PSI_CLIP_EPS, None), np.clip(c / c.sum(), PSI_CLIP_EPS, None)
    else:
        raise DriftInputError(f"unknown empty-bin rule {empty_bins!r}")
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(ref: Counts, cur: Counts, *, base: float = 2.0) -> float:
    """Jensen-Shannon distance (base 2: in [0, 1]) of counts or shares, as scipy's ``jensenshannon``.

    Example:
        >>> js_distance([1, 0], [0, 1])
        1.0
    """
    r, c = _pair(ref, cur)
    return float(jensenshannon(r, c, base=base))


def normalized_wasserstein(ref_sample: npt.ArrayLike, cur_sample: npt.ArrayLike, *, ddof: int = 1) -> float:
    """W1 distance of two samples over the baseline std (floored at 0.001; one value with ddof=1 counts as 0).

    Example:
        >>> round(normalized_wasserstein([0.1, 0.5, 0.9, 1.3, 2.0, 2.2, 3.1, 4.0], [1.0, 1.5, 2.5, 3.0, 3.5, 4.5, 5.0, 6.0]), 6)
        1.213561
        >>> round(normalized_wasserstein([5.0, 5.0], [5.01]), 9)  # constant baseline: 0.01 / 0.001
        10.0
    """
    r, c = _sample(ref_sample, "baseline"), _sample(cur_sample, "current")
    std = float(np.std(r, ddof=ddof)) if r.size > ddof else 0.0
    return float(stats.wasserstein_distance(r, c) / max(std, WASSERSTEIN_STD_FLOOR))


def ks_test(
    ref_sample: npt.ArrayLike,
    cur_sample: npt.ArrayLike,
    *,
    method: Literal["auto", "exact", "asymp"] = "auto",
) -> KsResult:
    """Two-sided two-sample Kolmogorov-Smirnov test, as ``scipy.stats.ks_2samp`` (exact p up to 10,000 values).

    Example:
        >>> ks_test([0.1, 0.5, 0.9, 1.3, 2.0, 2.2, 3.1, 4.0], [1.0, 1.5, 2.5, 3.0, 3.5, 4.5, 5.0, 6.0])
        KsResult(statistic=0.5, pvalue=0.28267...)
    """
    r, c = _sample(ref_sample, "baseline"), _sample(cur_sample, "current")
    res = stats.ks_2samp(r, c, alternative="two-sided", method=method)
    return KsResult(float(res.statistic), float(res.pvalue))


def chi2_test(
    ref_counts: Counts,
    cur_counts: Counts,
    *,
    test: Literal["homogeneity", "gof"] = "homogeneity",
    correction: bool = True,
) -> Chi2Result:
    """Chi-squared test of category counts: homogeneity (2 x k contingency, default) or goodness of fit.

    Counts, not shares: the test depends on the sample sizes. Unseen categories are their own column.

    Example:
        >>> chi2_test({"a": 50, "b": 30, "c": 20}, {"a": 40, "b": 35, "c": 25})
        Chi2Result(statistic=2.05128..., pvalue=0.35856..., dof=2)
        >>> chi2_test({"a": 50, "b": 50}, {"a": 40, "b": 50, "new": 10}, test="gof")
        Chi2Result(statistic=inf, pvalue=0.0, dof=2)
    """
    if test not in ("homogeneity", "gof"):
        raise DriftInputError(f"unknown chi-squared test {test!r}")
    r, c = _pair(ref_counts, cur_counts)
    seen = (r + c) > 0
    r, c = r[seen], c[seen]
    if r.size == 1:
        return Chi2Result(0.0, 1.0, 0)
    if test == "homogeneity":
        res = stats.chi2_contingency(np.vstack([r, c]), correction=correction)
        return Chi2Result(float(res.statistic), float(res.pvalue), int(res.dof))
    if np.any(r == 0):  # gof: a current category the baseline never saw, expected 0 and observed > 0
        return Chi2Result(float("inf"), 0.0, r.size - 1)
    res = stats.chisquare(c, f_exp=r * c.sum() / r.sum())
    return Chi2Result(float(res.statistic), float(res.pvalue), r.size - 1)


def _share(part: float, rows: float, what: str) -> float:
    if rows <= 0:
        raise EmptyDistributionError(f"{what}: no rows")
    return float(part / rows)


def missing_rate(n_missing: int, n_rows: int) -> float:
    """Share of rows whose value is missing.

    Example:
        >>> missing_rate(5, 5)
        1.0
    """
    if not 0 <= n_missing <= n_rows:
        raise DriftInputError(f"missing rate: need 0 <= n_missing <= n_rows, got {n_missing}, {n_rows}")
    return _share(n_missing, n_rows, "missing rate")


def out_of_range_rate(values: npt.ArrayLike, low: float, high: float) -> float:
    """Share of rows whose value lies outside the baseline [low, high]; NaN is missing (a row, never out of range).

    Example:
        >>> out_of_range_rate([0.0, 5.0, 11.0, float("nan")], 0.0, 10.0)
        0.25
    """
    if not low <= high:
        raise DriftInputError(f"out-of-range rate: need low <= high, got [{low}, {high}]")
    arr = np.asarray(values, dtype=float).ravel()
    return _share(int(np.count_nonzero((arr < low) | (arr > high))), arr.size, "out-of-range rate")


def unseen_category_rate(
    ref_counts: Mapping[Hashable, float], cur_counts: Mapping[Hashable, float], *, n_missing: int = 0
) -> float:
    """Share of current rows whose category has no baseline count (``n_missing`` rows count in the denominator).

    ``ref_counts`` must hold every baseline category: an "other" bucket hides what it folded.

    Example:
        >>> unseen_category_rate({"a": 8, "b": 2}, {"a": 5, "c": 3}, n_missing=2)
        0.3
    """
    if n_missing < 0 or any(n < 0 for n in (*ref_counts.values(), *cur_counts.values())):
        raise DriftInputError("unseen-category rate: counts must be >= 0")
    unseen = sum(n for key, n in cur_counts.items() if not ref_counts.get(key, 0))
    return _share(unseen, sum(cur_counts.values()) + n_missing, "unseen-category rate")
