"""Compare a window's profile with the baseline: per-feature metrics, a noise bound, and one decision.

A feature is **drifted** only when its distance exceeds the practical threshold (normalized Wasserstein
0.1 for numeric features, Jensen-Shannon distance 0.1 for categorical ones, as Azure ML's defaults) by more
than what sampling noise alone gives at this window's size: ``distance > threshold + noise_bound``, so the
distance is above the threshold even after the largest noise expected (it also exceeds each of the two).
Numeric distances come from the fine grids of both profiles (``basis`` = ``grid``): every value sits
within half a cell of where it is, so the normalized Wasserstein distance is within one cell width over the
baseline std (reported as ``other_metrics["w1_resolution"]``, <= 0.0025 for grids sized by
``shared.drift.profile.grid_for``) of ``scipy.stats.wasserstein_distance(ref, cur) / std(ref, ddof=1)`` on
the full data, at any n, and KS within the largest cell share. The noise bound is calibrated per feature
and per evaluation: ``resamples`` draws of both sides (sizes as observed) from the pooled data
(numeric: on the pooled grid's atoms, value by value for small sides, see ``_grid_null``;
categorical: on the pooled category shares) give the distance's null distribution; a fit to it gives the
bound and a p-value: a (zero-inflated) log-normal of the numeric distances, a gamma of the squared
categorical ones (see ``_gamma_tail``) and of numeric ones with at most ``FEW_ATOMS`` distinct values
(0/1 data), each the one that matches the far tail of 100,000 resamples at 50 to 1,000 rows. A heavy tail
(Pareto, log-normal) adds the single big jump to the log-normal: the chance that the smaller side draws one
of the far values, and the distance that value alone forces (``_with_jumps``). The bound's level is Holm's
step-down over the window's features (``_holm``): ``alpha / features`` for the feature most clearly beyond its threshold (Bonferroni, the level of every feature when
nothing drifted), then ``alpha / (features - 1)`` for the next, and so on while each is drifted; the
family-wise level stays ``alpha``. The bound shrinks as both
sides grow (numeric: about 0.08 at 1,000 rows, 0.03 at 10k and 0.02 at 1M against a 16k-row baseline), so a
0.03-sd shift at 1M rows stays quiet and a 0.15 effect is caught from 10k rows.

**Small windows are tested at a stricter level**: ``alpha x rows / full_alpha_rows`` below
``full_alpha_rows`` (1,000) rows, so 0.0025 family-wise at 50 rows. Below that size sampling noise alone
exceeds the practical threshold (the distance of 50 undrifted rows is often above 0.1), so the threshold no
longer protects and the level is the only guard against a false page, while the monitor looks at a growing
window again at every tick. The price is power at tiny n only: at 50 rows a 1-sd mean shift and a moved
category mix are still caught, a 0.5-sd shift mostly waits for the window to grow. ``full_alpha_rows=0``
tests every size at ``alpha``.

A version-1 baseline has no grid: its numeric features fall back to the bounded samples (``basis`` =
``sample``, 2048 values a side, the bound no longer shrinking with n) and the report's ``reasons`` say so.

Categoricals compare the vocabulary (the baseline's top 256 levels), every value either side's sketch of
unseen values names (each its own category, so a new level is never lumped with the rarest ones) and the
rest; ``new_levels`` / ``vanished_levels`` list levels with a share of at least 2 % that appeared or went.
Their decision takes the distance less its noise bias (``other_metrics["js_debiased"]``, see
``_categorical``; ``noise_bound`` includes the bias, so ``distance > threshold + noise_bound`` still reads
true): with hundreds of levels the JS of a sample is far above the true one.

Data quality per feature: missing rate, out-of-range rate (numeric, outside the baseline [min, max]) and
unseen-category rate (categorical, outside the baseline's vocabulary). A rate breaches when it rose by more
than ``quality_threshold`` over the baseline's rate and a one-sided binomial test against the baseline rate
plus ``quality_threshold`` (the baseline rate Laplace-smoothed; out-of-range: 2 / (N + 1), the chance a new
value falls outside N baseline values; unseen: plus the baseline's ``other_excess`` when its vocabulary had
to leave levels out, the share its own counts understate) is significant at the same corrected ``alpha``: a rise smaller than
the threshold is never a breach, however large n is. The missing rate breaches when it fell as far too
(the same test the other way, against the baseline rate minus ``quality_threshold``): a column upstream
stopped leaving empty is a change of the data. A feature with no values at all in the window (``status``
``no_values``) has no distance, but its missing-rate breach counts in the dataset's share.

Dataset level: the share of drifted input features (distribution or quality), weighted by the model's
feature importance when the baseline has it, against ``drift_share``; prediction drift (the
``probability``/``prediction`` features) is decided the same way and reported on its own. The dataset has
drifted when the share reaches ``drift_share`` or the predictions drifted.

PSI (Laplace empty-bin rule, the coarse baseline bins), JS distance over those bins for numeric features, KS
(from the grids, asymptotic p-value) and chi-squared (homogeneity) are reported for every feature; they do
not decide.

Example:
    >>> import pyarrow as pa, numpy as np
    >>> rng = np.random.default_rng(1)
    >>> base = Profile.baseline(pa.table({"id": [f"b{i}" for i in range(5000)], "x": rng.normal(size=5000)}))
    >>> same = base.blank().update(pa.table({"id": [f"c{i}" for i in range(60)], "x": rng.normal(size=60)}))
    >>> moved = base.blank().update(pa.table({"id": [f"d{i}" for i in range(5000)], "x": rng.normal(1, 1, 5000)}))
    >>> compare(base, same).decision, compare(base, moved).decision
    ('no_drift', 'drift')
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy import optimize, stats
from scipy.spatial.distance import jensenshannon

from shared.drift.metrics import (
    WASSERSTEIN_STD_FLOOR,
    DriftInputError,
    chi2_test,
    js_distance,
    ks_test,
    normalized_wasserstein,
    psi,
)
from shared.drift.profile import TAIL_SIZE, CategoricalStats, NumericStats, Profile
from shared.errors import ConfigurationError

__all__ = [
    "PREDICTION_FEATURES",
    "REPORT_FORMAT",
    "DriftPolicy",
    "DriftReport",
    "FeatureDrift",
    "compare",
    "grid_distances",
]

REPORT_FORMAT = "scorehook.drift-report/v1"
PREDICTION_FEATURES = ("probability", "prediction")
"""Features that are model outputs: decided as prediction drift, not counted in the feature share."""


@dataclass(frozen=True)
class DriftPolicy:
    """When a window counts as drifted. Defaults: Azure ML's thresholds, 5 % family-wise noise level.

    Example:
        >>> DriftPolicy().numeric_threshold, DriftPolicy(drift_share=0.5).drift_share
        (0.1, 0.5)
    """

    numeric_threshold: float = 0.1
    categorical_threshold: float = 0.1
    quality_threshold: float = 0.05
    drift_share: float = 0.2
    alpha: float = 0.05
    min_rows: int = 50
    resamples: int = 200
    full_alpha_rows: int = 1000

    def alpha_at(self, rows: int) -> float:
        """The family-wise level a window of ``rows`` rows is tested at: ``alpha`` from ``full_alpha_rows``
        rows, in proportion below (see the module docstring).

        Example:
            >>> round(DriftPolicy().alpha_at(50), 6), DriftPolicy().alpha_at(5_000)
            (0.0025, 0.05)
        """
        return self.alpha * min(1.0, rows / self.full_alpha_rows) if self.full_alpha_rows > 0 else self.alpha

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ConfigurationError(
                "SCOREHOOK_DRIFT_ALPHA must be in (0, 1)", setting="SCOREHOOK_DRIFT_ALPHA"
            )
        if not 0 < self.drift_share <= 1:
            raise ConfigurationError(
                "SCOREHOOK_DRIFT_SHARE must be in (0, 1]", setting="SCOREHOOK_DRIFT_SHARE"
            )
        if self.full_alpha_rows < 0:
            raise ConfigurationError("SCOREHOOK_DRIFT_FULL_ALPHA_ROWS must be >= 0",
                                     setting="SCOREHOOK_DRIFT_FULL_ALPHA_ROWS")  # fmt: skip
        if self.min_rows < 1 or self.resamples < 20:
            raise ConfigurationError("SCOREHOOK_DRIFT_MIN_ROWS must be >= 1 (and resamples >= 20)",
                                     setting="SCOREHOOK_DRIFT_MIN_ROWS")  # fmt: skip


@dataclass
class FeatureDrift:
    """One feature's result: the deciding metric and its noise bound, the other metrics, quality rates."""

    name: str
    kind: str
    role: str
    rows: int
    status: str = "evaluated"
    metric: str = ""
    value: float | None = None
    threshold: float | None = None
    noise_bound: float | None = None
    p_value: float | None = None
    drifted: bool = False
    other_metrics: dict[str, float | None] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)
    quality_breaches: list[str] = field(default_factory=list)
    importance: float | None = None
    reasons: list[str] = field(default_factory=list)
    basis: str = ""
    """What the distance was computed from: ``grid`` (numeric, fine histogram), ``sample`` (numeric, a
    version-1 layout: the bounded samples), ``counts`` (categorical: vocabulary, sketch and the rest)."""
    new_levels: dict[str, float] = field(default_factory=dict)
    """Categorical: values unseen in the baseline with at least a 2 % share of the window's values (the
    sketch's count, which may be up to its error low: listed when the count plus that error reaches 2 %)."""
    vanished_levels: dict[str, float] = field(default_factory=dict)
    """Categorical: baseline values with at least a 2 % share that the window (>= 50 values) never has."""

    @property
    def flagged(self) -> bool:
        """Drifted in distribution or in data quality."""
        return self.drifted or bool(self.quality_breaches)


@dataclass
class DriftReport:
    """The result of one evaluation (JSON-ready through :meth:`to_json`)."""

    model: str | None
    model_version: str | None
    window: tuple[str, str] | None
    rows: int
    baseline_rows: int
    decision: str
    drifted_share: float
    prediction_drift: bool
    policy: DriftPolicy
    features: list[FeatureDrift]
    reasons: list[str]

    @property
    def drifted(self) -> bool:
        """True when the decision is ``drift``."""
        return self.decision == "drift"

    def feature(self, name: str) -> FeatureDrift:
        """One feature's result by name."""
        return next(f for f in self.features if f.name == name)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``format`` = ``scorehook.drift-report/v1``)."""
        return {
            "format": REPORT_FORMAT,
            "model": self.model,
            "model_version": self.model_version,
            "window": list(self.window) if self.window else None,
            "rows": self.rows,
            "baseline_rows": self.baseline_rows,
            "decision": self.decision,
            "drifted_share": self.drifted_share,
            "prediction_drift": self.prediction_drift,
            "drifted_features": [f.name for f in self.features if f.flagged],
            "reasons": self.reasons,
            "policy": asdict(self.policy),
            "features": [{**asdict(f), "flagged": f.flagged} for f in self.features],
        }


def compare(
    baseline: Profile,
    current: Profile,
    policy: DriftPolicy | None = None,
    *,
    importance: Mapping[str, float] | None = None,
    model: str | None = None,
) -> DriftReport:
    """Evaluate ``current`` against ``baseline`` (same layout) under ``policy``; see the module docstring."""
    policy = policy or DriftPolicy()
    if baseline.specs != current.specs:
        raise DriftInputError(
            "the window's profile and the baseline have different layouts (was the baseline replaced?)",
            reason="layout_mismatch",
        )
    rows = current.rows
    window = current.window
    names = [n for n, s in current.features.items() if s.rows]
    features = max(len(names), 1)
    seed_text = f"{model}|{current.model_version}|{window}"
    results: list[FeatureDrift] = []
    pending: list[tuple[FeatureDrift, Pending]] = []
    for name, cur in current.features.items():
        base = baseline.features[name]
        role = "prediction" if name in PREDICTION_FEATURES else "input"
        result = FeatureDrift(name, cur.spec.kind, role, cur.rows)
        if importance and role == "input":
            result.importance = float(importance.get(name, 0.0))
        rng = np.random.default_rng(
            int.from_bytes(hashlib.sha256(f"{seed_text}|{name}".encode()).digest()[:8])
        )
        corrected = policy.alpha_at(cur.rows) / features
        to_decide: Pending | None = None
        if cur.rows < policy.min_rows:
            result.status = "insufficient_data"
            result.reasons.append(f"{name}: {cur.rows} rows < min_rows {policy.min_rows}")
        elif isinstance(cur, NumericStats) and isinstance(base, NumericStats):
            to_decide = _numeric(result, base, cur, policy, corrected, rng)
        elif isinstance(cur, CategoricalStats) and isinstance(base, CategoricalStats):
            to_decide = _categorical(result, base, cur, policy, corrected, rng)
        results.append(result)
        if to_decide is not None:
            pending.append((result, to_decide))
    _holm(pending, policy, features)

    # a feature without values (all missing) has no distance, but its missing-rate breach is drift all the same
    inputs = [f for f in results if f.role == "input" and (f.status == "evaluated" or f.quality_breaches)]
    weights = [(f.importance if f.importance is not None else 1.0) for f in inputs]
    total = sum(weights)
    share = sum(w for f, w in zip(inputs, weights, strict=True) if f.flagged) / total if total else 0.0
    prediction_drift = any(
        f.flagged
        for f in results
        if f.role == "prediction" and (f.status == "evaluated" or f.quality_breaches)
    )
    reasons = [r for f in results if f.flagged for r in f.reasons]
    coarse = [f.name for f in results if f.basis == "sample"]
    if coarse:
        reasons.append(
            f"{', '.join(coarse)}: the baseline profile has no fine grid (profile version 1), so these "
            f"distances come from the bounded samples ({baseline.sample_size} values a side) and their noise "
            "bound does not shrink with n: re-register the baseline to get the grid"
        )
    if rows < policy.min_rows or not inputs:
        decision = "insufficient_data"
        reasons = [f"{rows} rows in the window, fewer than min_rows {policy.min_rows}"]
    elif share >= policy.drift_share or prediction_drift:
        decision = "drift"
        what = "importance-weighted share" if importance else "share"
        reasons.insert(
            0,
            f"{what} of drifted features {share:.3f} >= {policy.drift_share}"
            if share >= policy.drift_share
            else f"prediction drift (feature share {share:.3f} < {policy.drift_share})",
        )
    else:
        decision = "no_drift"
        reasons.insert(0, f"share of drifted features {share:.3f} < {policy.drift_share}, predictions stable")
    return DriftReport(
        model=model,
        model_version=current.model_version,
        window=window,  # type: ignore[arg-type]
        rows=rows,
        baseline_rows=baseline.rows,
        decision=decision,
        drifted_share=round(share, 6),
        prediction_drift=prediction_drift,
        policy=policy,
        features=results,
        reasons=reasons,
    )


@dataclass(frozen=True)
class _Tail:
    """A feature's fitted null distribution of its distance: ``bound(level)`` is its ``1 - level`` point and
    ``sf(x)`` the chance that noise alone gives a distance above ``x``. ``kind``: ``lognormal`` (zero-inflated:
    ``zero`` share of exact zeros, then log-normal ``a``, ``b`` = mean, sd of the logs), ``gamma`` (of the
    squared distance: shape ``a``, scale ``b``; with ``shift``, the distance is decided less its noise bias,
    ``sqrt(x**2 - shift)`` against ``offset`` (the threshold) plus that quantity's bound, and the bound and
    ``sf`` are given on the distance's own scale, see ``_categorical``) or ``empirical`` (too few positive
    draws: the largest draw).
    With ``jumps`` (see ``_with_jumps``) the null is a mixture: with chance ``chances[j]`` the distance is
    ``jumps[j]`` plus one of the fitted law."""

    kind: str
    a: float = 0.0
    b: float = 0.0
    zero: float = 0.0
    shift: float = 0.0
    offset: float = 0.0
    draws: np.ndarray | None = None
    jumps: np.ndarray | None = None
    chances: np.ndarray | None = None

    def bound(self, level: float) -> float:
        regular = self._regular_bound(level)
        if self.jumps is None or self.chances is None or self.sf(regular) <= level:
            return regular
        top = regular + float(self.jumps.max())  # there every term's sf is at most the fitted law's level
        return float(optimize.brentq(lambda x: self.sf(x) - level, regular, top, xtol=1e-6))

    def sf(self, x: float) -> float:
        if self.jumps is None or self.chances is None:
            return float(self._regular_sf(np.asarray([x]))[0])
        parts = self._regular_sf(np.concatenate([[x], x - self.jumps]))
        return float((1 - self.chances.sum()) * parts[0] + self.chances @ parts[1:])

    def _regular_bound(self, level: float) -> float:
        if self.kind == "lognormal":
            return math.exp(self.a + self.b * float(stats.norm.isf(min(level / (1 - self.zero), 0.5))))
        if self.kind == "gamma":
            debiased = math.sqrt(max(float(stats.gamma.isf(level, self.a, scale=self.b)) - self.shift, 0.0))
            return (
                math.sqrt((self.offset + debiased) ** 2 + self.shift) - self.offset
                if self.shift
                else debiased
            )
        assert self.draws is not None
        return float(self.draws.max(initial=0.0))

    def _regular_sf(self, x: np.ndarray) -> np.ndarray:
        positive = x > 0
        safe = np.where(positive, x, 1.0)
        if self.kind == "lognormal":
            tail = (1 - self.zero) * stats.norm.sf((np.log(safe) - self.a) / self.b)
        elif self.kind == "gamma":
            if self.shift:  # the debiased excess over the threshold that a distance ``x`` over it means
                excess = np.sqrt(np.clip((safe + self.offset) ** 2 - self.shift, 0, None)) - self.offset
                positive &= excess > 0
                safe = np.where(excess > 0, excess, 1.0)
            tail = stats.gamma.sf(safe * safe + self.shift, self.a, scale=self.b)
        else:
            assert self.draws is not None
            above = self.draws.size - np.searchsorted(np.sort(self.draws), x, side="left")
            return (above + 1) / (self.draws.size + 1)
        return np.where(positive, tail, 1.0)


Pending = tuple[_Tail, float, float]
"""A feature's distance decision to be made: its fitted null, its distance and its threshold."""


def _lognormal_tail(null: np.ndarray) -> _Tail:
    """A zero-inflated log-normal fitted to the ``null`` distances: discrete or tied data give exact zeros in
    the null, which a plain log-normal would turn into an absurdly wide tail."""
    positive = null[null > 0]
    if positive.size < 10:
        return _Tail("empirical", draws=null)
    logs = np.log(positive)
    return _Tail(
        "lognormal", float(logs.mean()), max(float(logs.std(ddof=1)), 1e-9), 1 - positive.size / null.size
    )


def _gamma_tail(null: np.ndarray) -> _Tail:
    """A gamma fitted by its moments to the squared ``null`` distances (Satterthwaite): a Jensen-Shannon
    divergence under no change is close to a weighted chi-squared, which the gamma matches where a log-normal
    of the distances does not (its left tail in log space widened the upper one: 0.41 where the 99.2 % point
    is 0.19 for 50 rows of a 3-level feature).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> tail = _gamma_tail(np.sqrt(rng.chisquare(2, 400)) / 10)
        >>> round(tail.bound(0.01), 2), round(tail.sf(0.3), 2)
        (0.32, 0.02)
    """
    squares = null * null
    if np.count_nonzero(squares) < 10:
        return _Tail("empirical", draws=null)
    mean, var = float(squares.mean()), float(squares.var(ddof=1))
    if not var > 0:
        return _Tail("empirical", draws=null)
    return _Tail("gamma", mean * mean / var, var / mean)


def _row_dot(matrix: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``matrix @ weights`` without BLAS: OpenBLAS's threads spin on every core after each call, and an
    evaluation's resample matrices took the other core from scoring and storage (twice the CPU, 1.7 vs 0.86 s)."""
    return np.einsum("ij,j->i", matrix, weights)


def _w1_null(a: np.ndarray, b: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """W1 distances of ``resamples`` pairs of bootstrap samples (sizes of ``a`` and ``b``) of the pooled data."""
    pooled = np.sort(np.concatenate([a, b]))
    size, gaps = pooled.size, np.diff(pooled)
    rows = (np.arange(resamples) * size)[:, None]

    def cdfs(n: int) -> np.ndarray:
        picks = rng.integers(0, size, (resamples, n)) + rows
        counts = np.bincount(picks.ravel(), minlength=resamples * size).reshape(resamples, size)
        return np.cumsum(counts[:, :-1], axis=1) / n

    return _row_dot(np.abs(cdfs(a.size) - cdfs(b.size)), gaps)


def _binomial_breach(
    result: FeatureDrift,
    what: str,
    hits: int,
    n: int,
    base_rate: float,
    null_rate: float,
    policy: DriftPolicy,
    corrected: float,
    low_null_rate: float | None = None,
) -> None:
    """A rate risen more than the quality threshold beyond noise is a breach; with ``low_null_rate`` (the
    baseline's rate smoothed down) a rate fallen as far is one too."""
    rate = hits / n if n else 0.0
    result.quality[what] = round(rate, 6)
    result.quality[f"baseline_{what}"] = round(base_rate, 6)
    if n and rate - base_rate > policy.quality_threshold:  # and more than the threshold beyond noise:
        p_value = float(stats.binom.sf(hits - 1, n, min(null_rate + policy.quality_threshold, 1.0)))
        if p_value < corrected:
            result.quality_breaches.append(what)
            result.reasons.append(
                f"{result.name}: {what} {rate:.4f} vs baseline {base_rate:.4f} "
                f"(+{rate - base_rate:.4f} > {policy.quality_threshold}, binomial p={p_value:.2g})"
            )
    elif n and low_null_rate is not None and base_rate - rate > policy.quality_threshold:
        p_value = float(stats.binom.cdf(hits, n, max(low_null_rate - policy.quality_threshold, 0.0)))
        if p_value < corrected:
            result.quality_breaches.append(what)
            result.reasons.append(
                f"{result.name}: {what} {rate:.4f} vs baseline {base_rate:.4f} "
                f"(-{base_rate - rate:.4f}, a fall of more than {policy.quality_threshold}, binomial p={p_value:.2g})"
            )


def _missing_breach(
    result: FeatureDrift,
    base: NumericStats | CategoricalStats,
    cur: NumericStats | CategoricalStats,
    policy: DriftPolicy,
    corrected: float,
) -> None:
    """The missing rate against the baseline's, risen or fallen (Laplace-smoothed for the test: a clean
    baseline is not 0, an always-missing one not 1)."""
    base_rows = max(base.rows, 1)
    _binomial_breach(
        result, "missing_rate", cur.missing, cur.rows, base.missing / base_rows,
        (base.missing + 1) / (base_rows + 2), policy, corrected, base.missing / (base_rows + 2),
    )  # fmt: skip


def _numeric(
    result: FeatureDrift,
    base: NumericStats,
    cur: NumericStats,
    policy: DriftPolicy,
    corrected: float,
    rng: np.random.Generator,
) -> Pending | None:
    _missing_breach(result, base, cur, policy, corrected)
    base_oor = base.out_of_range / base.count if base.count else 0.0
    _binomial_breach(
        result, "out_of_range_rate", cur.out_of_range, cur.count, base_oor,
        max(base_oor, 2 / (base.count + 1)), policy, corrected,
    )  # fmt: skip
    result.metric, result.threshold = "normalized_wasserstein", policy.numeric_threshold
    if base.spec.grid and cur.count and base.count:
        return _numeric_grid(result, base, cur, policy, corrected, rng)
    a, b = base.sample_values, cur.sample_values
    if cur.count == 0 or a.size == 0:  # nothing to measure a distance on (not a version-1 baseline's doing)
        result.status = "no_values" if cur.count == 0 else "no_baseline_sample"
        return None
    result.basis = "sample"
    value = normalized_wasserstein(a, b, ddof=1)
    std = float(np.std(a, ddof=1)) if a.size > 1 else 0.0
    null = _w1_null(a, b, policy.resamples, rng) / max(std, WASSERSTEIN_STD_FLOOR)
    tail = _lognormal_tail(null)
    result.value, result.p_value = round(value, 6), tail.sf(value)
    ks = ks_test(a, b)
    result.other_metrics = {
        "psi": round(psi(base.counts, cur.counts), 6) if base.counts.sum() else None,
        "js_distance_bins": round(js_distance(base.counts, cur.counts), 6) if base.counts.sum() else None,
        "ks_statistic": round(ks.statistic, 6),
        "ks_pvalue": ks.pvalue,
        **_moments(base, cur),
    }
    return tail, value, policy.numeric_threshold


def _moments(base: NumericStats, cur: NumericStats) -> dict[str, float | None]:
    """Mean and std of both sides: reported beside the distances, never deciding."""
    return {"mean": cur.mean, "baseline_mean": base.mean, "std": cur.std(), "baseline_std": base.std()}


NULL_GROUPS = 1024
"""A large side's bootstrap draws are multinomial over at most this many groups of equal pooled mass."""
NULL_ATOMS = 4096
"""The bootstrap runs on at most this many atoms of the pooled grid histogram (merged by mass beyond)."""
EXACT_DRAWS = 2000
"""Sides of at most this many rows are drawn value by value in the bootstrap."""


def _joint_atoms(base: NumericStats, cur: NumericStats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted positions and both sides' counts on them: the shared cell midpoints, and each side's own
    underflow and overflow atoms (at the exact mean of their values)."""
    pb, cb = base.atoms()
    pc, cc = cur.atoms()
    under = sorted([(pb[0], cb[0], 0), (pc[0], 0, cc[0])])
    over = sorted([(pb[-1], cb[-1], 0), (pc[-1], 0, cc[-1])])
    pos = np.concatenate([[u[0] for u in under], pb[1:-1], [o[0] for o in over]])
    rb = np.concatenate([[u[1] for u in under], cb[1:-1], [o[1] for o in over]]).astype(np.float64)
    rc = np.concatenate([[u[2] for u in under], cc[1:-1], [o[2] for o in over]]).astype(np.float64)
    return pos, rb, rc


def grid_distances(base: NumericStats, cur: NumericStats) -> tuple[float, float]:
    """(W1, KS statistic) of two grid profiles of the same layout, W1 not normalized.

    Each value sits at its cell's midpoint (within half a cell of where it is), the outer cells' values at
    their mean: W1 is within one cell width of ``scipy.stats.wasserstein_distance`` on the values (exact
    beyond the grid while the baseline has nothing there), KS within the largest cell share.

    Example:
        >>> from shared.drift.profile import FeatureSpec
        >>> spec = FeatureSpec("x", "numeric", (0.0, 1.0), grid=(0.0, 0.001, 1000))
        >>> a, b = NumericStats.empty(spec), NumericStats.empty(spec)
        >>> a.add(np.linspace(0, 1, 1001), None, 0); b.add(np.linspace(0, 1, 1001) + 3.0, None, 0)
        >>> [round(v, 3) for v in grid_distances(a, b)]
        [3.0, 1.0]
    """
    pos, rb, rc = _joint_atoms(base, cur)
    diff = np.cumsum(rb)[:-1] / rb.sum() - np.cumsum(rc)[:-1] / rc.sum()
    return float(np.einsum("i,i->", np.abs(diff), np.diff(pos))), float(np.abs(diff).max(initial=0.0))


def _grid_null(
    pos: np.ndarray, rb: np.ndarray, rc: np.ndarray, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """W1 of ``resamples`` pairs of draws (both sides' sizes) from the pooled histogram, on its atoms (at
    most ``NULL_ATOMS``, merged by equal mass beyond). A side of at most ``EXACT_DRAWS`` rows is drawn value
    by value (small windows: their noise lives in the tails, which a coarse grouping would narrow); a
    larger one by a multinomial over at most ``NULL_GROUPS`` groups of equal mass, each group's count spread
    over its atoms in proportion (the within-group noise of a large side is negligible)."""
    pooled = rb + rc
    keep = pooled > 0
    pos, pooled = pos[keep], pooled[keep]
    if pooled.size > NULL_ATOMS:
        pos, pooled = _merge_by_mass(pos, pooled, NULL_ATOMS)
    share = pooled / pooled.sum()
    cumulative = np.cumsum(share)
    group = np.minimum(((cumulative - share) * NULL_GROUPS).astype(np.int64), NULL_GROUPS - 1)
    group_share = np.bincount(group, weights=share)
    present = np.flatnonzero(group_share > 0)
    column = np.searchsorted(present, group)
    # an atom's share of its group, summed up to and including it: a group's draws spread in proportion
    within = np.cumsum(share) - np.concatenate([[0.0], np.cumsum(group_share[present])])[column]
    within = within / group_share[group]

    def side(n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(CDF per resample on the atoms, None) for a side drawn value by value; (the mass before each group,
        each group's mass) per resample for a grouped side, its CDF being ``before[:, column] + mass[:, column]
        * within``."""
        if n <= EXACT_DRAWS:
            picks = np.searchsorted(cumulative, rng.random((resamples, n)) * cumulative[-1], side="right")
            picks = np.minimum(picks, share.size - 1) + (np.arange(resamples) * share.size)[:, None]
            counts = np.bincount(picks.ravel(), minlength=resamples * share.size).reshape(
                resamples, share.size
            )
            return np.cumsum(counts, axis=1) / n, None
        mass = rng.multinomial(n, group_share[present] / group_share[present].sum(), size=resamples) / n
        return np.cumsum(mass, axis=1) - mass, mass

    def cdf(before: np.ndarray, mass: np.ndarray | None) -> np.ndarray:
        return before if mass is None else before[:, column] + mass[:, column] * within

    (before_b, mass_b), (before_c, mass_c) = side(int(rb.sum())), side(int(rc.sum()))
    if mass_b is not None and mass_c is not None:  # both grouped: subtract per group, spread once
        diff = cdf(before_b - before_c, mass_b - mass_c)
    else:
        diff = cdf(before_b, mass_b) - cdf(before_c, mass_c)
    return _row_dot(np.abs(diff[:, :-1]), np.diff(pos))


def _merge_by_mass(pos: np.ndarray, weight: np.ndarray, most: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``most`` atoms: consecutive atoms merged into groups of equal mass, at their weighted mean."""
    before = (np.cumsum(weight) - weight) / weight.sum()
    group = np.minimum((before * most).astype(np.int64), most - 1)
    total = np.bincount(group, weights=weight)
    present = total > 0
    return np.bincount(group, weights=weight * pos)[present] / total[present], total[present]


JUMP_FLOOR = 1e-3
"""Jumps (normalized) below this are left in the fitted law (every light tail's are)."""


def _with_jumps(tail: _Tail, pos: np.ndarray, pooled: np.ndarray, n: int, scale: float) -> _Tail:
    """``tail`` with the single big jump of a heavy tail: a draw of the smaller side (``n`` values) whose
    largest value lands at pooled atom ``k`` is at least ``sum_{j<k} (1/n - S_j)+ * gap_j`` from the pooled
    law (its CDF stays at ``(n - 1)/n`` below that value, ``S_j`` the pooled share above atom ``j``), with
    chance ``(1 - S_k)^n - (1 - S_k - share_k)^n``; the smallest likewise. A Pareto or log-normal with sd 2
    makes the null such a mixture (draws with one of the few extreme values far out), whose far tail a
    log-normal fitted to 200 draws put up to 3x too low: 2-4 % false alarms at 50-1,000 rows without drift.
    The jumps' distance is added to a draw of the fitted law (which has smaller jumps of its own: a slight
    overestimate).

    Example:
        >>> t = _with_jumps(_Tail("lognormal", math.log(0.2), 0.3), np.array([0.0, 1.0, 100.0]),
        ...                 np.array([500.0, 499.0, 1.0]), 50, 1.0)
        >>> round(t.bound(0.05), 2) > round(_Tail("lognormal", math.log(0.2), 0.3).bound(0.05), 2)
        True
    """
    keep = pooled > 0
    pos, share = pos[keep], pooled[keep] / pooled[keep].sum()
    if pos.size < 2 or n < 1:
        return tail
    below = np.cumsum(share)  # pooled share at or below each atom
    above = np.clip(1 - below, 0.0, 1.0)
    gaps = np.diff(pos) / scale
    rise = np.concatenate([[0.0], np.cumsum(np.clip(1 / n - above[:-1], 0, None) * gaps)])
    fall = np.concatenate([np.cumsum((np.clip(1 / n - below[:-1], 0, None) * gaps)[::-1])[::-1], [0.0]])
    high = (1 - above) ** n - np.clip(1 - above - share, 0.0, 1.0) ** n
    low = np.clip(1 - below + share, 0.0, 1.0) ** n - (1 - below) ** n
    jumps, chances = np.concatenate([rise, fall]), np.concatenate([high, low])
    big = jumps > JUMP_FLOOR
    if not big.any():
        return tail
    return replace(tail, jumps=jumps[big], chances=chances[big])


FEW_ATOMS = 5
"""A numeric feature with at most this many distinct values (pooled) has its null fitted by the gamma of the
squared distances, as a categorical: its W1 is a weighted sum of a few absolute normals (one for 0/1 data,
whose square is exactly a gamma), where the log-normal put the bound 1.6x (95 % point) to 3.5x (99.98 %) too
high (0/1 data at 10k rows: 0.041 for a true 0.025, a 0.15 effect caught 65 % of the time instead of 95 %).
From 10 values on the log-normal matches (and the gamma falls short in the far tail)."""

KS_EXACT_ROWS = 1000
"""Up to this effective size the KS p-value is the exact one (``kstwo``); beyond, the asymptotic Kolmogorov
law (``kstwobign``), within a few percent of it: ``kstwo`` took up to 100 ms per feature at 100k rows."""


def _ks_pvalue(ks: float, effective: int) -> float:
    """Two-sample KS p-value at effective size ``effective`` (reported, never deciding).

    Example:
        >>> round(_ks_pvalue(0.02, 10_000), 4), round(_ks_pvalue(0.1, 200), 4)
        (0.0007, 0.0341)
    """
    if effective <= KS_EXACT_ROWS:
        return float(stats.kstwo.sf(ks, effective))
    return float(stats.kstwobign.sf(ks * math.sqrt(effective)))


def _numeric_grid(
    result: FeatureDrift,
    base: NumericStats,
    cur: NumericStats,
    policy: DriftPolicy,
    corrected: float,
    rng: np.random.Generator,
) -> Pending | None:
    """Distance and bound from the fine grids: resolution and noise both shrink with n."""
    result.basis = "grid"
    std = base.std(1) or 0.0
    scale = max(std, WASSERSTEIN_STD_FLOOR)
    pos, rb, rc = _joint_atoms(base, cur)
    w1, ks = grid_distances(base, cur)
    value = w1 / scale
    null = _grid_null(pos, rb, rc, policy.resamples, rng) / scale
    pooled = rb + rc
    few = np.count_nonzero(pooled) <= FEW_ATOMS  # a 0/1 or small-integer feature
    tail = _gamma_tail(null) if few else _lognormal_tail(null)
    if tail.kind == "lognormal":
        tail = _with_jumps(tail, pos, pooled, int(min(base.count, cur.count)), scale)
    result.value, result.p_value = round(value, 6), tail.sf(value)
    effective = max(round(base.count * cur.count / (base.count + cur.count)), 1)
    result.other_metrics = {
        "psi": round(psi(base.counts, cur.counts), 6),
        "js_distance_bins": round(js_distance(base.counts, cur.counts), 6),
        "ks_statistic": round(ks, 6),
        "ks_pvalue": _ks_pvalue(ks, effective),
        "w1_resolution": round(base.spec.grid[1] / scale, 6),  # type: ignore[misc]
        **_moments(base, cur),
    }
    return tail, value, policy.numeric_threshold


LEVEL_SHARE = 0.02
"""New or vanished categorical levels at least this share of the values are listed in the report."""


def _categorical(
    result: FeatureDrift,
    base: CategoricalStats,
    cur: CategoricalStats,
    policy: DriftPolicy,
    corrected: float,
    rng: np.random.Generator,
) -> Pending | None:
    """Quality rates, levels listed, and the JS distance to decide. A sample's JS is biased up: its square is
    about the true one's plus a noise term whose mean grows with the levels over the rows (200 Zipf levels
    at 10k rows: the no-change JS is 0.073, a true 0.15 reads 0.167). The decision takes the distance less
    that bias, ``sqrt(JS**2 - mean(null JS**2))`` (``other_metrics["js_debiased"]``), against the threshold
    plus the same quantity's bound; the reported ``noise_bound`` is that rule on the reported JS (``JS >
    threshold + noise_bound`` exactly when it holds). Before, with both the distance and the bound biased,
    0 of 20 windows with a true 0.15 at 10k rows were caught (now 20 of 20), and no false alarm at any n
    either way."""
    _missing_breach(result, base, cur, policy, corrected)
    base_present, cur_present = base.rows - base.missing, cur.rows - cur.missing
    base_other = base.other / base_present if base_present else 0.0
    _binomial_breach(
        result, "unseen_rate", cur.other, cur_present, base_other,
        min((base.other + 1) / (base_present + 2) + base.other_excess, 1.0), policy, corrected,
    )  # fmt: skip
    result.metric, result.threshold = "jensen_shannon_distance", policy.categorical_threshold
    result.basis = "counts"
    # categories: the vocabulary, every value either sketch names (its own category), and the rest
    base_tail, cur_tail = base.tail(), cur.tail()
    vocabulary = set(base.spec.vocabulary)
    names = [v for v in dict.fromkeys([*base_tail, *cur_tail]) if v not in vocabulary]
    r_named = np.asarray([base_tail.get(v, 0) for v in names], float)
    c_named = np.asarray([cur_tail.get(v, 0) for v in names], float)
    r = np.concatenate([base.counts, r_named, [max(base.other - r_named.sum(), 0.0)]]).astype(float)
    c = np.concatenate([cur.counts, c_named, [max(cur.other - c_named.sum(), 0.0)]]).astype(float)
    if cur_present:  # a sketch count is up to `slack` low: a level at 2 % may show as 1.95 %
        slack = (cur.other - int(cur.tail_counts.sum())) / (TAIL_SIZE + 1)
        result.new_levels = {
            v: round(n / cur_present, 6)
            for v, n in zip(names, c_named.tolist(), strict=True)
            if v not in base_tail and n > 0 and (n + slack) / cur_present >= LEVEL_SHARE
        }
    if cur_present >= 50 and base_present:
        result.vanished_levels = {
            v: round(int(n) / base_present, 6)
            for v, n, now in zip(base.spec.vocabulary, base.counts.tolist(), cur.counts.tolist(), strict=True)
            if now == 0 and n / base_present >= LEVEL_SHARE
        }
    if c.sum() == 0 or r.sum() == 0:
        result.status = "no_values" if c.sum() == 0 else "no_baseline_counts"
        return None
    value = js_distance(r, c)
    pooled = (r + c) / (r + c).sum()
    draws_r = rng.multinomial(int(r.sum()), pooled, size=policy.resamples)
    draws_c = rng.multinomial(int(c.sum()), pooled, size=policy.resamples)
    null = np.nan_to_num(jensenshannon(draws_r, draws_c, base=2, axis=1))
    tail, decided = _gamma_tail(null), value
    result.value, result.p_value = round(value, 6), tail.sf(value)
    if tail.kind == "gamma":  # decide on the distance less its noise bias (the null's mean square)
        tail = replace(tail, shift=tail.a * tail.b, offset=policy.categorical_threshold)
        decided = math.sqrt(max(value * value - tail.shift, 0.0))
    chi2 = chi2_test(r, c)
    result.other_metrics = {
        "js_debiased": round(decided, 6),
        "psi": round(psi(r, c), 6),
        "chi2_pvalue": chi2.pvalue,
        "unseen_share": round(cur.other / cur_present, 6) if cur_present else 0.0,
    }
    return tail, value, policy.categorical_threshold


def _holm(pending: list[tuple[FeatureDrift, Pending]], policy: DriftPolicy, features: int) -> None:
    """Decide the features' distances with Holm's step-down over the ``features`` of the window: ranked by
    the chance that noise alone exceeds their distance minus their threshold, the i-th (from 0) is drifted when
    ``distance > threshold + bound`` at level ``alpha_at(rows) / (features - i)`` and every one before it was;
    the first that is not stops the rest, which report their bound at that step's level. Without drift
    anywhere this is Bonferroni's ``alpha / features`` (the first step); with several features drifted, each
    one found lets the next be tested less strictly, the family-wise level staying ``alpha``."""

    def excess(item: tuple[FeatureDrift, Pending]) -> float:
        tail, value, threshold = item[1]
        return tail.sf(value - threshold) if value > threshold else 1.0

    stopped: int | None = None
    for i, (result, (tail, value, threshold)) in enumerate(sorted(pending, key=excess)):
        step = i if stopped is None else stopped
        bound = tail.bound(policy.alpha_at(result.rows) / max(features - step, 1))
        result.noise_bound = round(bound, 6)
        if stopped is None and value > threshold + bound:
            result.drifted = True
            result.reasons.append(
                f"{result.name}: {result.metric} {value:.4f} > threshold {threshold} + noise bound {bound:.4f} "
                f"at n={result.rows}"
            )
        elif stopped is None:
            stopped = i
