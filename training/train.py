"""Training pipeline: fit a scikit-learn pipeline on the synthetic data, export it to ONNX (validated against
scikit-learn), profile the training data, and log + register everything in MLflow.

Model kinds (``KINDS``):

- ``linear``: ``StandardScaler`` on the numeric columns, ``OneHotEncoder(handle_unknown="ignore")`` on the
  categorical ones, ``LogisticRegression``. ONNX probabilities must match within ``LINEAR_TOLERANCE``.
- ``gbm``: numeric passthrough + dense one-hot, ``GradientBoostingClassifier`` (60 trees, depth 3,
  subsample 0.5; about 3 s for 16k rows on 2 cores). ``HistGradientBoostingClassifier`` is NOT used:
  skl2onnx 1.20 with protobuf 7 fails to convert it ("AttributeProto.ints: Expected an int, got a
  boolean"). ONNX labels must agree with scikit-learn on at least ``TREE_AGREEMENT`` of the rows
  (float32 split thresholds; measured: no disagreement on 200k rows, generated values carry 6 decimals).

The ONNX model has one input per feature column, shaped ``[None, 1]``: ``float32`` for numeric columns
(callers cast float64 data to float32), string for categorical ones (numpy object arrays); ``id`` is not an
input. Outputs: ``label`` (int64, ``[N]``) and ``probabilities`` (float32, ``[N, 2]``, no ZipMap).

The MLflow signature is tensor-based with exactly those inputs, because MLflow 3.17's ONNX pyfunc feeds
column-based (DataFrame) input as 1-D arrays (``Invalid rank``) and pandas 3 string columns as non-numpy
arrays; with the tensor signature ``pyfunc.predict({"x01": float32 (N, 1), ..., "region": object (N, 1)})``
works and so does the logged input example. The scikit-learn copy (``sklearn-model``) has a column-based
signature (double / string columns).

The drift baseline (:func:`drift_baseline`, artifact ``baseline/drift-profile.json``) is a
``shared.drift.profile.Profile`` of the training split plus the model's outputs on it (``probability``,
``prediction``, the scoring output columns) and the model's feature importance; the legacy
``baseline/profile.json`` (:func:`baseline_profile`) is kept alongside.

scikit-learn, skl2onnx, onnxruntime and mlflow are imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.data import CATEGORICAL, FEATURES, KEY, LABEL, NUMERIC, SCHEMA, generate

__all__ = [
    "KINDS",
    "LINEAR_TOLERANCE",
    "MIN_LABELLED_ROWS",
    "TREE_AGREEMENT",
    "NotEnoughLabelsError",
    "OnnxValidationError",
    "baseline_profile",
    "drift_baseline",
    "evaluate",
    "feature_importance",
    "onnx_feeds",
    "to_onnx",
    "train",
    "train_and_register",
    "validate_onnx",
]

KINDS = ("linear", "gbm")
LINEAR_TOLERANCE = 1e-4
"""Largest allowed absolute difference of ONNX vs scikit-learn probabilities for the linear model."""
TREE_AGREEMENT = 0.995
"""Smallest allowed share of equal labels (ONNX vs scikit-learn) for tree models."""
PROFILE_BINS = 10
HOLDOUT = 0.2
MIN_LABELLED_ROWS = 200
"""Fewest complete labelled rows ``train_and_register(data=...)`` trains on."""
MIN_CLASS_ROWS = 5
"""Fewest rows of each label in given data (so the stratified holdout holds both classes)."""


class OnnxValidationError(ValueError):
    """The exported ONNX model disagrees with its scikit-learn source beyond the stated tolerance."""


class NotEnoughLabelsError(ValueError):
    """Data given for training has no ``label`` column, too few complete labelled rows, or one class only."""


def _frame(data: Any) -> Any:
    """A pandas DataFrame from a pyarrow Table or a DataFrame."""
    return data.to_pandas() if isinstance(data, pa.Table) else data


def _pipeline(kind: str, seed: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if kind == "linear":
        prep = [
            ("num", StandardScaler(), list(NUMERIC)),
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
        ]
        model = LogisticRegression(max_iter=1000)
    elif kind == "gbm":
        onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        prep = [("num", "passthrough", list(NUMERIC)), ("cat", onehot, list(CATEGORICAL))]
        model = GradientBoostingClassifier(
            n_estimators=60, max_depth=3, learning_rate=0.15, subsample=0.5, random_state=seed
        )
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return Pipeline([("prep", ColumnTransformer(prep)), ("model", model)])


def train(data: pa.Table | Any | int, *, seed: int = 0, kind: str = "linear") -> Any:
    """Fit a ``kind`` pipeline on a labelled table/DataFrame, or on ``data`` generated rows when an int.

    Example:
        >>> pipe = train(2000, seed=1)
        >>> pipe.classes_.tolist(), pipe.feature_names_in_[0]
        ([0, 1], 'x01')
    """
    if isinstance(data, int):
        data = generate(data, seed=seed, include_label=True)
    frame = _frame(data)
    return _pipeline(kind, seed).fit(frame[list(FEATURES)], frame[LABEL].to_numpy())


def evaluate(pipeline: Any, data: pa.Table | Any) -> dict[str, float]:
    """AUC, F1 and accuracy of ``pipeline`` on labelled ``data``.

    Example:
        >>> sorted(evaluate(train(2000), generate(500, seed=9)))
        ['accuracy', 'auc', 'f1']
    """
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    frame = _frame(data)
    y, proba = frame[LABEL].to_numpy(), pipeline.predict_proba(frame[list(FEATURES)])[:, 1]
    pred = (proba >= 0.5).astype(int)
    return {
        "auc": float(roc_auc_score(y, proba)),
        "f1": float(f1_score(y, pred)),
        "accuracy": float(accuracy_score(y, pred)),
    }


def onnx_feeds(data: pa.Table | Any, columns: tuple[str, ...] = FEATURES) -> dict[str, np.ndarray]:
    """onnxruntime inputs: float32 ``(N, 1)`` per numeric column, object ``(N, 1)`` per string column.

    Example:
        >>> {k: (v.dtype.name, v.shape) for k, v in onnx_feeds(generate(4)).items() if k in ("x01", "tier")}
        {'x01': ('float32', (4, 1)), 'tier': ('object', (4, 1))}
    """
    frame = _frame(data)
    return {
        c: (
            frame[c].to_numpy(np.float32)
            if c in NUMERIC or frame[c].dtype.kind in "fiub"
            else frame[c].to_numpy(object)
        ).reshape(-1, 1)
        for c in columns
    }


def validate_onnx(onnx_model: bytes, pipeline: Any, sample: pa.Table | Any) -> dict[str, float]:
    """Compare ONNX (onnxruntime) with scikit-learn on ``sample``; raise :class:`OnnxValidationError` if off.

    Linear models: max |probability difference| <= ``LINEAR_TOLERANCE``; other models: label agreement
    >= ``TREE_AGREEMENT``. Returns ``{"onnx_max_abs_diff", "onnx_label_agreement", "onnx_rows"}``.

    Example:
        >>> pipe = train(2000)
        >>> validate_onnx(to_onnx(pipe, generate(300)), pipe, generate(300))["onnx_label_agreement"]
        1.0
    """
    import onnxruntime as ort

    frame = _frame(sample)
    columns = tuple(pipeline.feature_names_in_)
    session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    label, proba = session.run(["label", "probabilities"], onnx_feeds(frame, columns))
    ref = pipeline.predict_proba(frame[list(columns)])
    n = len(frame)
    stats = {
        "onnx_max_abs_diff": float(np.max(np.abs(proba - ref))) if n else 0.0,
        "onnx_label_agreement": float(np.mean(label == pipeline.classes_[ref.argmax(1)])) if n else 1.0,
        "onnx_rows": float(n),
    }
    linear = type(pipeline[-1]).__name__ == "LogisticRegression"
    if linear and stats["onnx_max_abs_diff"] > LINEAR_TOLERANCE:
        raise OnnxValidationError(
            f"ONNX probabilities differ by {stats['onnx_max_abs_diff']:.2e} "
            f"> {LINEAR_TOLERANCE:.0e} on {len(frame)} rows"
        )
    if not linear and stats["onnx_label_agreement"] < TREE_AGREEMENT:
        raise OnnxValidationError(
            f"ONNX labels agree on {stats['onnx_label_agreement']:.4%} "
            f"< {TREE_AGREEMENT:.1%} of {len(frame)} rows"
        )
    return stats


def to_onnx(pipeline: Any, sample: pa.Table | Any, *, validate_rows: int = 5000) -> bytes:
    """Convert a fitted pipeline to ONNX bytes and validate it on up to ``validate_rows`` rows of ``sample``.

    Example:
        >>> pipe = train(2000)
        >>> import onnx; [i.name for i in onnx.load_from_string(to_onnx(pipe, generate(100))).graph.output]
        ['label', 'probabilities']
    """
    from skl2onnx import to_onnx as skl_to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    frame = _frame(sample.slice(0, validate_rows) if isinstance(sample, pa.Table) else sample[:validate_rows])
    columns = list(pipeline.feature_names_in_)
    inputs = [
        (
            c,
            FloatTensorType([None, 1])
            if c in NUMERIC or frame[c].dtype.kind in "fiub"
            else StringTensorType([None, 1]),
        )
        for c in columns
    ]
    model = skl_to_onnx(pipeline, initial_types=inputs, options={type(pipeline[-1]): {"zipmap": False}})
    model.doc_string = "scorehook: " + type(pipeline[-1]).__name__
    data = model.SerializeToString()
    validate_onnx(data, pipeline, frame)
    return data


def baseline_profile(data: pa.Table | Any, *, bins: int = PROFILE_BINS) -> dict[str, Any]:
    """A JSON-ready profile of the feature columns (``id`` and ``label`` are skipped, a label rate is kept).

    Numeric: ``edges`` (``bins + 1`` quantile edges: min, deciles, max), ``counts`` per bin (bin ``i`` is
    ``[edges[i], edges[i+1])``, the first bin open to -inf and the last to +inf, so later data always falls
    in a bin), ``min``, ``max``, ``mean``, ``std`` (population, ``std_ddof: 0``), ``missing_rate``.
    Categorical: ``counts`` and ``frequencies`` (share of non-missing rows), ``missing_rate``.

    Example:
        >>> p = baseline_profile(generate(1000))
        >>> p["rows"], sum(p["numeric"]["x01"]["counts"]), len(p["numeric"]["x01"]["edges"])
        (1000, 1000, 11)
    """
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    rows = table.num_rows
    profile: dict[str, Any] = {
        "format": "scorehook.baseline/v1",
        "rows": rows,
        "bins": bins,
        "std_ddof": 0,
        "numeric": {},
        "categorical": {},
    }
    for field in table.schema:
        if field.name in (KEY, LABEL):
            continue
        column = table.column(field.name)
        if pa.types.is_floating(field.type) or pa.types.is_integer(field.type):
            values = column.to_numpy().astype(np.float64)
            present = values[~np.isnan(values)]
            entry: dict[str, Any] = {
                "missing_rate": float(1 - len(present) / rows) if rows else 0.0,
                "std_ddof": 0,
            }
            if len(present):
                edges = np.quantile(present, np.linspace(0, 1, bins + 1))
                counts = np.bincount(np.searchsorted(edges[1:-1], present, side="right"), minlength=bins)
                entry |= {
                    "edges": edges.tolist(),
                    "counts": counts.tolist(),
                    "min": float(present.min()),
                    "max": float(present.max()),
                    "mean": float(present.mean()),
                    "std": float(present.std(ddof=0)),
                }
            else:
                entry |= dict.fromkeys(("edges", "min", "max", "mean", "std")) | {"counts": [0] * bins}
            profile["numeric"][field.name] = entry
        elif pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            present = rows - column.null_count
            pairs = [
                (v["values"], v["counts"])
                for v in column.value_counts().to_pylist()
                if v["values"] is not None
            ]
            freq = dict(sorted(pairs, key=lambda kv: (-kv[1], kv[0])))
            profile["categorical"][field.name] = {
                "counts": freq,
                "frequencies": {k: n / present for k, n in freq.items()},
                "missing_rate": column.null_count / rows if rows else 0.0,
            }
    if LABEL in table.column_names and rows:
        profile["label_rate"] = float(np.mean(table.column(LABEL).to_numpy()))
    return profile


def feature_importance(pipeline: Any) -> dict[str, float] | None:
    """Importance per original feature, normalised to sum 1: ``|coef_|`` (summed over classes) or
    ``feature_importances_`` of the final estimator, one-hot columns summed back to their categorical feature.

    ``None`` when the estimator has neither, the preprocessing layout is not recognised, or all weights are 0.

    Example:
        >>> imp = feature_importance(train(3000))
        >>> round(sum(imp.values()), 9), imp["x01"] > imp["x20"], len(imp) == len(FEATURES)
        (1.0, True, True)
    """
    model = pipeline[-1]
    if hasattr(model, "coef_"):
        weights = np.abs(np.atleast_2d(np.asarray(model.coef_, np.float64))).sum(axis=0)
    elif hasattr(model, "feature_importances_"):
        weights = np.asarray(model.feature_importances_, np.float64)
    else:
        return None
    prep = pipeline[0] if len(pipeline) > 1 else None
    owners: list[str] = []  # the original feature of each model input column
    if prep is None:
        owners = [str(c) for c in getattr(pipeline, "feature_names_in_", ())]
    else:
        for name, transformer, columns in getattr(prep, "transformers_", ()):
            if transformer == "drop" or name == "remainder":
                continue
            columns = list(columns)
            if hasattr(transformer, "categories_"):
                drops = getattr(transformer, "drop_idx_", None)
                sizes = [
                    len(cats) - (0 if drops is None or drops[i] is None else 1)
                    for i, cats in enumerate(transformer.categories_)
                ]
                owners += [c for c, n in zip(columns, sizes, strict=True) for _ in range(n)]
            else:
                owners += columns
    if len(owners) != weights.size or not np.all(np.isfinite(weights)):
        return None
    names = [str(c) for c in getattr(pipeline, "feature_names_in_", FEATURES)]
    totals = dict.fromkeys(names, 0.0)
    for owner, weight in zip(owners, weights.tolist(), strict=True):
        if owner not in totals:
            return None
        totals[owner] += weight
    total = sum(totals.values())
    return {k: v / total for k, v in totals.items()} if total > 0 else None


def drift_baseline(pipeline: Any, table: pa.Table | Any) -> dict[str, Any]:
    """The drift baseline of ``pipeline`` on ``table`` (its training data) as JSON: a
    ``shared.drift.profile.Profile`` of the features plus the outputs ``probability`` (positive class,
    float64, numeric) and ``prediction`` (predicted label as a string, categorical), rows identified by
    ``id`` (by position when there is none), and ``importance`` ({feature: weight}, sum 1) when the model
    has one (see :func:`feature_importance`).

    Example:
        >>> from shared.drift.profile import Profile
        >>> d = drift_baseline(train(2000), generate(1000))
        >>> p = Profile.from_json(d)
        >>> p.rows, p.features["prediction"].spec.vocabulary, "probability" in p.features, "x01" in d["importance"]
        (1000, ('0', '1'), True, True)
    """
    from shared.drift.profile import Profile

    table = table if isinstance(table, pa.Table) else pa.Table.from_pandas(table, preserve_index=False)
    frame = table.select(list(FEATURES)).to_pandas()
    proba = np.asarray(pipeline.predict_proba(frame), np.float64)
    labels = pipeline.classes_[proba.argmax(axis=1)]
    columns = [KEY] if KEY in table.column_names else []
    outputs = table.select([*columns, *FEATURES])
    outputs = outputs.append_column("probability", pa.array(proba[:, 1], pa.float64()))
    outputs = outputs.append_column("prediction", pa.array([str(v) for v in labels.tolist()], pa.string()))
    profile = Profile.baseline(
        outputs,
        numeric=[*NUMERIC, "probability"],
        categorical=[*CATEGORICAL, "prediction"],
        key=KEY,
    ).to_json()
    importance = feature_importance(pipeline)
    if importance is not None:
        profile["importance"] = importance
    return profile


def _labelled(data: pa.Table) -> pa.Table:
    """The complete labelled rows of ``data`` in ``SCHEMA`` types (``id`` kept when present).

    Raises :class:`NotEnoughLabelsError` without a label column, with fewer than ``MIN_LABELLED_ROWS``
    complete labelled rows or fewer than ``MIN_CLASS_ROWS`` of either label, ``ValueError`` when a feature
    column is absent.
    """
    if not isinstance(data, pa.Table):
        raise ValueError(f"data must be a pyarrow Table, got {type(data).__name__}")
    if LABEL not in data.column_names:
        raise NotEnoughLabelsError(f"data has no {LABEL!r} column: training needs labelled rows")
    missing = [c for c in FEATURES if c not in data.column_names]
    if missing:
        raise ValueError(f"data lacks feature column(s) {', '.join(missing)}")
    names = [c for c in SCHEMA.names if c in data.column_names]
    schema = pa.schema([SCHEMA.field(c).with_nullable(True) for c in names])
    table = data.select(names).cast(schema)
    complete = pc.is_valid(table.column(LABEL))
    for name in FEATURES:  # NaN and infinities are missing too
        column = table.column(name)
        valid = pc.is_finite(column) if name in NUMERIC else pc.is_valid(column)
        complete = pc.and_(complete, pc.fill_null(valid, False))
    table = table.filter(complete)
    if table.num_rows < MIN_LABELLED_ROWS:
        raise NotEnoughLabelsError(
            f"not enough labelled rows to train: {table.num_rows} complete rows with a {LABEL!r} "
            f"(of {data.num_rows}), need at least {MIN_LABELLED_ROWS}"
        )
    counts = {v["values"]: v["counts"] for v in table.column(LABEL).value_counts().to_pylist()}
    if len(counts) < 2 or min(counts.values()) < MIN_CLASS_ROWS:
        raise NotEnoughLabelsError(
            f"labels must include both classes with at least {MIN_CLASS_ROWS} rows each, got {counts}"
        )
    return table


def _requirements(*packages: str) -> list[str]:
    """Exact pins of the installed ``packages`` (the app runs mlflow-skinny, not the full mlflow)."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in packages]


@contextlib.contextmanager
def _mlflow_uris(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking and registry URIs at ``uri``, then restore what was set before.

    ``mlflow.set_*_uri`` also export ``MLFLOW_*_URI`` environment variables, so those hold the previous
    explicit settings; unset ones are unset again (MLflow then falls back to its defaults, as before).
    """
    import mlflow

    before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before["MLFLOW_TRACKING_URI"])  # type: ignore[arg-type]
        mlflow.set_registry_uri(before["MLFLOW_REGISTRY_URI"])  # type: ignore[arg-type]
        if before["MLFLOW_REGISTRY_URI"] is None:
            os.environ.pop("MLFLOW_REGISTRY_URI", None)


def train_and_register(
    tracking_uri: str,
    *,
    model_name: str = "scorehook-sample",
    rows: int = 20000,
    seed: int = 0,
    kind: str = "linear",
    alias: str | None = None,
    out_dir: str | Path | None = None,
    experiment: str = "scorehook-training",
    data: pa.Table | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Generate ``rows`` labelled rows (or take ``data``), train on 80 %, evaluate on 20 %, and log one
    MLflow run.

    ``data``: labelled rows to use instead (every feature and ``label`` required; rows with a missing
    label or feature are dropped; at least ``MIN_LABELLED_ROWS`` must remain, with both labels, else
    :class:`NotEnoughLabelsError`, a ``ValueError``); ``seed`` then only seeds the split and the model, ``rows`` is ignored.
    The run holds: the ONNX model (``model``, registered as ``model_name``), the scikit-learn pipeline
    (``sklearn-model``, skops format, not registered), ``baseline/profile.json`` (legacy profile of the
    training split), ``baseline/drift-profile.json`` (:func:`drift_baseline` of the training split), params
    and metrics (``auc``, ``f1``, ``accuracy`` on the holdout, ONNX agreement, ``train_seconds``). The run and
    the new version get tags ``scorehook.kind``, ``scorehook.training_rows`` (rows fitted on) and ``tags``;
    the version gets ``alias`` if given. With ``out_dir``, ``model.onnx``, ``profile.json`` and
    ``drift-profile.json`` are written there too.
    Points MLflow's process-wide tracking and registry URIs at ``tracking_uri`` for the call, then restores
    them.

    Example:
        >>> train_and_register("http://127.0.0.1:5000", alias="champion")  # doctest: +SKIP
        {'name': 'scorehook-sample', 'version': '1', 'run_id': '...',
         'model_uri': 'models:/scorehook-sample/1', 'alias': 'champion', 'metrics': {'auc': 0.85, ...}}
    """
    import mlflow
    import mlflow.onnx
    import mlflow.sklearn
    import onnx
    import skops.io
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec
    from sklearn.model_selection import train_test_split

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    table = generate(rows, seed=seed, include_label=True) if data is None else _labelled(data)
    rows = table.num_rows
    fit_idx, hold_idx = train_test_split(
        np.arange(rows), test_size=HOLDOUT, random_state=seed, stratify=table.column(LABEL).to_numpy()
    )
    fit, hold = table.take(np.sort(fit_idx)), table.take(np.sort(hold_idx))
    started = time.perf_counter()
    pipeline = train(fit, seed=seed, kind=kind)
    train_seconds = time.perf_counter() - started
    onnx_bytes = to_onnx(pipeline, hold)
    metrics = evaluate(pipeline, hold) | validate_onnx(onnx_bytes, pipeline, hold)
    metrics |= {"train_seconds": train_seconds}
    profile = baseline_profile(fit)
    drift_profile = drift_baseline(pipeline, fit)
    feeds = onnx_feeds(hold.slice(0, 5))
    signature = ModelSignature(
        inputs=Schema([TensorSpec(v.dtype, (-1, 1), k) for k, v in feeds.items()]),
        outputs=Schema(
            [
                TensorSpec(np.dtype("int64"), (-1,), "label"),
                TensorSpec(np.dtype("float32"), (-1, 2), "probabilities"),
            ]
        ),
    )
    opsets = onnx.load_from_string(onnx_bytes).opset_import
    opset = max(o.version for o in opsets if o.domain in ("", "ai.onnx"))
    sk_signature = ModelSignature(
        inputs=Schema([ColSpec("double" if c in NUMERIC else "string", c) for c in FEATURES]),
        outputs=Schema([TensorSpec(np.dtype("int64"), (-1,))]),
    )
    params = {
        "kind": kind,
        "seed": seed,
        "rows": rows,
        "training_rows": fit.num_rows,
        "holdout_rows": hold.num_rows,
        "model_class": type(pipeline[-1]).__name__,
        "features": len(FEATURES),
        "onnx_opset": opset,
    }
    estimator = pipeline[-1].get_params().items()
    params |= {f"model.{k}": v for k, v in estimator if isinstance(v, int | float | str)}
    version_tags = {"scorehook.kind": kind, "scorehook.training_rows": str(fit.num_rows)}
    version_tags |= {str(k): str(v) for k, v in (tags or {}).items()}

    with _mlflow_uris(tracking_uri):
        client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{model_name}-{kind}-seed{seed}") as run:
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            mlflow.set_tags(version_tags)
            mlflow.log_dict(profile, "baseline/profile.json")
            mlflow.log_dict(drift_profile, "baseline/drift-profile.json")
            info = mlflow.onnx.log_model(
                onnx.load_from_string(onnx_bytes),
                name="model",
                signature=signature,
                input_example=feeds,
                onnx_execution_providers=["CPUExecutionProvider"],
                save_as_external_data=False,
                pip_requirements=_requirements("mlflow-skinny", "onnx", "onnxruntime"),
            )
            sk_types = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
            sk_info = mlflow.sklearn.log_model(
                pipeline,
                name="sklearn-model",
                serialization_format="skops",
                skops_trusted_types=sk_types,
                signature=sk_signature,
                input_example=hold.slice(0, 5).select(list(FEATURES)).to_pandas(),
                pip_requirements=_requirements("mlflow-skinny", "scikit-learn", "skops"),
            )
        # registered with its tags at creation: model_version.created reaches the deployment flow at once, and
        # the flow must see e.g. scorehook.retrain.decision (tags set afterwards would race it)
        version = str(mlflow.register_model(info.model_uri, model_name, tags=version_tags).version)
        if alias:
            client.set_registered_model_alias(model_name, alias, version)
    result: dict[str, Any] = {
        "name": model_name,
        "version": version,
        "run_id": run.info.run_id,
        "model_uri": f"models:/{model_name}/{version}",
        "sklearn_model_uri": sk_info.model_uri,
        "alias": alias,
        "metrics": metrics,
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.onnx").write_bytes(onnx_bytes)
        (out / "profile.json").write_text(json.dumps(profile, indent=1))
        (out / "drift-profile.json").write_text(json.dumps(drift_profile))
        result |= {
            "onnx_path": str(out / "model.onnx"),
            "profile_path": str(out / "profile.json"),
            "drift_profile_path": str(out / "drift-profile.json"),
        }
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m training.train --tracking-uri URI [--name N] [--rows R] [--seed S] [--kind K] [--alias A]
    [--out DIR]``: train, register and print the result as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n")[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--name", default="scorehook-sample")
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", choices=KINDS, default="linear")
    parser.add_argument("--alias", default=None, help="e.g. champion")
    parser.add_argument("--out", default=None, help="also write model.onnx and profile.json here")
    args = parser.parse_args(argv)
    result = train_and_register(
        args.tracking_uri,
        model_name=args.name,
        rows=args.rows,
        seed=args.seed,
        kind=args.kind,
        alias=args.alias,
        out_dir=args.out,
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
