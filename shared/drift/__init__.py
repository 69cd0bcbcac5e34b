"""Drift monitoring: metrics comparing a current window with the training baseline (see ``metrics``)."""

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
