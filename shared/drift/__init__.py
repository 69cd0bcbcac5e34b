"""Drift monitoring: mergeable profiles of the baseline and of scored windows (``profile``), and the metrics
that compare them (``metrics``)."""

from shared.drift.metrics import (
    EVIDENTLY_FILL,
    PSI_CLIP_EPS,
    WASSERSTEIN_STD_FLOOR,
    Chi2Result,
    Counts,
    DriftInputError,
    EmptyDistributionError,
    KsResult,
    chi2_test,
    js_distance,
    ks_test,
    missing_rate,
    normalized_wasserstein,
    out_of_range_rate,
    psi,
    unseen_category_rate,
)
from shared.drift.profile import (
    CategoricalStats,
    FeatureSpec,
    NumericStats,
    Profile,
    row_keys,
    specs_from_baseline,
)

__all__ = [
    "EVIDENTLY_FILL",
    "PSI_CLIP_EPS",
    "WASSERSTEIN_STD_FLOOR",
    "CategoricalStats",
    "Chi2Result",
    "Counts",
    "DriftInputError",
    "EmptyDistributionError",
    "FeatureSpec",
    "KsResult",
    "NumericStats",
    "Profile",
    "chi2_test",
    "js_distance",
    "ks_test",
    "missing_rate",
    "normalized_wasserstein",
    "out_of_range_rate",
    "psi",
    "row_keys",
    "specs_from_baseline",
    "unseen_category_rate",
]
