"""training.train: a linear and a tree pipeline, their ONNX export checked against scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest

from training.data import CATEGORICAL, FEATURES, NUMERIC, generate
from training.train import (
    LINEAR_TOLERANCE,
    TREE_AGREEMENT,
    OnnxValidationError,
    evaluate,
    to_onnx,
    train,
    validate_onnx,
)


@pytest.fixture(scope="module")
def linear():
    return train(generate(5000, seed=0), seed=0, kind="linear")


@pytest.fixture(scope="module")
def holdout():
    return generate(3000, seed=1)


def _run(onnx_model: bytes, table) -> tuple[np.ndarray, np.ndarray]:
    """Feed onnxruntime as scoring does: (N, 1) float32 per numeric, (N, 1) object per string column."""
    frame = table.to_pandas()
    feeds = {c: frame[c].to_numpy(np.float32).reshape(-1, 1) for c in NUMERIC}
    feeds |= {c: frame[c].to_numpy(object).reshape(-1, 1) for c in CATEGORICAL}
    session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    assert (first.name, first.type, first.shape[1]) == ("x01", "tensor(float)", 1)
    assert "id" not in {i.name for i in session.get_inputs()}
    label, proba = session.run(["label", "probabilities"], feeds)
    return label, proba


def _sklearn(pipeline, table) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # unknown categories at high drift
        return pipeline.predict_proba(table.select(list(FEATURES)).to_pandas())


def test_linear_model_reaches_auc(linear, holdout) -> None:
    metrics = evaluate(linear, holdout)
    assert metrics["auc"] >= 0.75 and 0.6 < metrics["accuracy"] <= 1 and 0 < metrics["f1"] <= 1


def test_linear_onnx_matches_sklearn(linear, holdout) -> None:
    model = to_onnx(linear, holdout)
    label, proba = _run(model, holdout)
    ref = _sklearn(linear, holdout)
    assert proba.shape == (3000, 2) and proba.dtype == np.float32
    assert np.max(np.abs(proba - ref)) <= LINEAR_TOLERANCE
    assert np.array_equal(label, ref.argmax(1))


def test_onnx_handles_drift_and_unseen_categories(linear) -> None:
    drifted = generate(3000, seed=2, drift=1.0)
    assert "offshore" in drifted.column("region").to_pylist()
    _, proba = _run(to_onnx(linear, generate(100)), drifted)
    assert np.max(np.abs(proba - _sklearn(linear, drifted))) <= LINEAR_TOLERANCE


def test_validation_rejects_a_different_model(linear, holdout) -> None:
    other = train(generate(2000, seed=9), seed=9)
    with pytest.raises(OnnxValidationError):
        validate_onnx(to_onnx(other, holdout), linear, holdout)


def test_gbm_trains_and_converts(holdout) -> None:
    gbm = train(generate(3000, seed=0), seed=0, kind="gbm")
    assert type(gbm[-1]).__name__ == "GradientBoostingClassifier"
    label, _ = _run(to_onnx(gbm, holdout), holdout)
    assert np.mean(label == _sklearn(gbm, holdout).argmax(1)) >= TREE_AGREEMENT
    assert evaluate(gbm, holdout)["auc"] >= 0.75


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        train(100, kind="forest")


# --- drift baseline (issue 6) ---


@pytest.fixture(scope="module")
def drift_json(linear):
    from training.train import drift_baseline

    return drift_baseline(linear, generate(4000, seed=0))


def test_drift_baseline_round_trips_with_prediction_features(drift_json, linear) -> None:
    import json

    from shared.drift.profile import Profile

    profile = Profile.from_json(json.loads(json.dumps(drift_json)))
    assert profile.to_json() == {k: v for k, v in drift_json.items() if k != "importance"}
    assert list(profile.features) == [*NUMERIC, "probability", *CATEGORICAL, "prediction"]
    assert profile.rows == 4000 and profile.key == "id"
    probability, prediction = profile.features["probability"], profile.features["prediction"]
    assert probability.spec.kind == "numeric" and 0 <= probability.min <= probability.max <= 1
    assert prediction.spec.kind == "categorical" and set(prediction.spec.vocabulary) == {"0", "1"}
    frame = generate(4000, seed=0).select(list(FEATURES)).to_pandas()
    assert prediction.counts.sum() == 4000 and prediction.other == 0
    share_1 = prediction.counts[prediction.spec.vocabulary.index("1")] / 4000
    assert share_1 == pytest.approx(np.mean(linear.predict(frame) == 1))
    assert probability.mean == pytest.approx(linear.predict_proba(frame)[:, 1].mean())


def test_drift_baseline_importance_ranks_informative_features(drift_json) -> None:
    importance = drift_json["importance"]
    assert set(importance) == set(FEATURES)
    assert sum(importance.values()) == pytest.approx(1.0)
    assert all(w >= 0 for w in importance.values())
    assert min(importance["x01"], importance["x02"]) > 5 * importance["x20"]


def test_gbm_importance_sums_to_one_and_ranks_x01() -> None:
    from training.train import feature_importance

    importance = feature_importance(train(generate(3000, seed=0), seed=0, kind="gbm"))
    assert importance is not None and sum(importance.values()) == pytest.approx(1.0)
    assert importance["x01"] > importance["x20"] and importance["x02"] > importance["x20"]


def test_importance_omitted_without_coefficients() -> None:
    from sklearn.dummy import DummyClassifier
    from sklearn.pipeline import Pipeline

    from training.train import drift_baseline

    table = generate(500, seed=4)
    frame = table.to_pandas()
    dummy = Pipeline([("model", DummyClassifier(strategy="prior"))]).fit(
        frame[list(FEATURES)], frame["label"]
    )
    assert "importance" not in drift_baseline(dummy, table)


def test_drift_baseline_without_id_uses_positions(linear) -> None:
    from shared.drift.profile import Profile
    from training.train import drift_baseline

    table = generate(300, seed=5).drop_columns(["id", "label"])
    assert Profile.from_json(drift_baseline(linear, table)).rows == 300


# --- train_and_register(data=...) validation: raised before any MLflow call, so no server is needed ---

_NO_SERVER = "http://127.0.0.1:9"  # nothing listens here; validation must fail first


def test_train_and_register_rejects_unlabelled_data() -> None:
    from training.train import NotEnoughLabelsError, train_and_register

    with pytest.raises(NotEnoughLabelsError, match="no 'label' column"):
        train_and_register(_NO_SERVER, data=generate(1000, include_label=False))
    assert issubclass(NotEnoughLabelsError, ValueError)


def test_train_and_register_rejects_too_few_labelled_rows() -> None:
    import pyarrow as pa

    from training.train import MIN_LABELLED_ROWS, NotEnoughLabelsError, train_and_register

    table = generate(1000, seed=2)
    labels = pa.array(
        [v if i < MIN_LABELLED_ROWS - 1 else None for i, v in enumerate(table["label"].to_pylist())]
    )
    table = table.set_column(table.schema.get_field_index("label"), "label", labels)
    with pytest.raises(NotEnoughLabelsError, match=f"{MIN_LABELLED_ROWS - 1} complete rows"):
        train_and_register(_NO_SERVER, data=table)


def test_train_and_register_rejects_one_class_and_missing_features() -> None:
    import pyarrow.compute as pc

    from training.train import NotEnoughLabelsError, train_and_register

    table = generate(2000, seed=3)
    one_class = table.filter(pc.equal(table["label"], 1))
    with pytest.raises(NotEnoughLabelsError, match="both classes"):
        train_and_register(_NO_SERVER, data=one_class)
    with pytest.raises(ValueError, match="x05"):
        train_and_register(_NO_SERVER, data=table.drop_columns(["x05"]))


# --- training.retrain file reading (no server) ---


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet", "jsonl"])
def test_retrain_reads_every_format(tmp_path, fmt) -> None:
    from training.data import SCHEMA, write_file
    from training.retrain import read_table

    path = write_file(tmp_path / f"in.{fmt}", 50, fmt=fmt, seed=6, include_label=True)
    table = read_table(path)
    assert table.column_names == SCHEMA.names
    assert table.cast(SCHEMA).equals(generate(50, seed=6))


def test_retrain_unlabelled_file_gets_null_labels(tmp_path) -> None:
    from training.data import write_file
    from training.retrain import read_table

    table = read_table(write_file(tmp_path / "in.csv", 20, include_label=False))
    assert table.column("label").null_count == 20 and table.num_rows == 20


def test_retrain_rejects_unknown_suffix(tmp_path) -> None:
    from training.retrain import read_table

    (tmp_path / "in.txt").write_text("a,b\n")
    with pytest.raises(ValueError, match="unsupported input format"):
        read_table(tmp_path / "in.txt")


# --- training.retrain: the Azure ML step's command line and local (mounted) inputs (no server) ---


def _pipeline_train_argv(values: dict[str, str], tracking_uri: str) -> list[str]:
    """The ``train`` step's command of ``infra/ml/retrain-pipeline.yml`` as loaded by azure-ai-ml, with its
    ``${{inputs.*}}`` / ``${{parent.inputs.*}}`` placeholders replaced by ``values`` and ``$MLFLOW_TRACKING_URI``
    by ``tracking_uri`` (as Azure ML and then the shell do), split like the shell; without ``python -m ...``."""
    import re
    import shlex

    from azure.ai.ml import load_job

    from shared.adapters.azureml_retrain import DEFAULT_PIPELINE_YAML

    command = load_job(DEFAULT_PIPELINE_YAML).jobs["train"].command
    placeholder = re.compile(r"\$\{\{\s*(?:parent\.)?inputs\.(\w+)\s*\}\}")
    assert set(placeholder.findall(command)) <= set(values), command
    command = placeholder.sub(lambda m: values[m.group(1)], command)
    assert "${{" not in command
    command = command.replace("$MLFLOW_TRACKING_URI", tracking_uri)
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "training.retrain"]
    return argv[3:]


@pytest.fixture
def mounted(tmp_path):
    """An Azure ML-like mounted folder: two small labelled CSV files (one name with a space), one unlabelled
    file, a non-data file; and a drift report file."""
    from training.data import write_file

    root = tmp_path / "INPUT_recent_data"
    write_file(root / "d1" / "a b.csv", 30, seed=31, include_label=True)
    write_file(root / "d2" / "b.csv", 20, seed=32, include_label=True)
    write_file(root / "d2" / "scored.csv", 15, seed=33, include_label=False)
    (root / "d2" / "notes.txt").write_text("not data")
    report = tmp_path / "INPUT_drift_report" / "2024-05-01.json"
    report.parent.mkdir()
    report.write_text("{}")
    return root, report


def test_retrain_parser_accepts_the_pipeline_yaml_command(mounted, capsys) -> None:
    import json

    from shared.adapters.azureml_retrain import recent_data
    from training.data import write_file
    from training.retrain import main, parser

    root, report = mounted
    acct = "https://acct.blob.core.windows.net/incoming/churn"
    folder, files = recent_data([f"{acct}/d1/a b.csv", f"{acct}/d2/b.csv"])  # as the launcher binds them
    assert (folder, files) == (f"{acct}/", "d1/a%20b.csv,d2/b.csv")
    values = {
        "drift_report": str(report),
        "recent_data": str(root),
        "recent_files": files,
        "model_name": "churn%20model",
        "base_version": "4",
        "decision_id": "churn/4/2024-05-01",
        "reason": "x1%3A%20wasserstein%200.31%20%3E%200.1",
    }
    argv = _pipeline_train_argv(values, "azureml://eastus.api.azureml.ms/mlflow/v1.0/x")

    args = parser().parse_args(argv)
    assert args.tracking_uri == "azureml://eastus.api.azureml.ms/mlflow/v1.0/x"
    assert (args.name, args.base_version, args.decision_id) == ("churn%20model", "4", "churn/4/2024-05-01")
    assert args.reason == values["reason"]
    assert (args.drift_report, args.recent_data, args.recent_files) == (str(report), str(root), files)
    assert args.input is None and args.kind == "linear"

    # the whole command runs up to training: 50 labelled rows are too few (exit 2), values unquoted
    assert main(argv) == 2
    result = json.loads(capsys.readouterr().out.strip())
    assert result["reason"] == "not_enough_labels" and result["decision_id"] == "churn/4/2024-05-01"
    assert (result["labelled_rows"], result["inputs"]) == (50, 2)

    write_file(root / "d3" / "c.csv", 5, include_label=True)  # "*" (the YAML default) reads every data file
    assert main([*argv[: argv.index("--recent-files")], "--recent-files", "*"]) == 2
    assert json.loads(capsys.readouterr().out)["inputs"] == 4


def test_retrain_load_local_inputs_keeps_labelled_rows(mounted) -> None:
    import pyarrow as pa

    from training.data import SCHEMA
    from training.retrain import load_local_inputs, local_files

    root, _ = mounted
    listed = local_files(root, "d1/a%20b.csv, d2/b.csv")
    assert [p.relative_to(root).as_posix() for p in listed] == ["d1/a b.csv", "d2/b.csv"]
    table = load_local_inputs(listed)
    assert table.column_names == SCHEMA.names
    expected = pa.concat_tables([generate(30, seed=31), generate(20, seed=32)])
    assert table.cast(SCHEMA).equals(expected)

    every = local_files(root, "*")
    assert [p.relative_to(root).as_posix() for p in every] == ["d1/a b.csv", "d2/b.csv", "d2/scored.csv"]
    assert load_local_inputs(every).num_rows == 50  # the unlabelled file contributes nothing
    assert load_local_inputs([]).num_rows == 0


@pytest.mark.parametrize(
    ("files", "error", "match"),
    [
        ("../x.csv", ValueError, "inside --recent-data"),
        ("/etc/x.csv", ValueError, "inside --recent-data"),
        ("d2/notes.txt", ValueError, "unsupported input format"),
        ("d2/missing.csv", FileNotFoundError, "not a file"),
        (" , ", ValueError, "names no file"),
    ],
)
def test_retrain_local_files_rejects_bad_entries(mounted, files, error, match) -> None:
    from training.retrain import local_files

    with pytest.raises(error, match=match):
        local_files(mounted[0], files)


def test_retrain_needs_exactly_one_source_and_a_tracking_uri(mounted, capsys, monkeypatch) -> None:
    import json

    from training.retrain import main

    root, _ = mounted
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    base = ["--tracking-uri", "http://127.0.0.1:1", "--name", "m"]
    cases = {
        "neither was given": base,
        "both were given": [*base, "--input", "http://h/a/c/f.csv", "--recent-data", str(root)],
    }
    for given, argv in cases.items():
        assert main(argv) == 1
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == 1
        result = json.loads(lines[0])
        assert result["status"] == "failed" and result["reason"] == "error"
        assert "exactly one source" in result["error"] and given in result["error"]

    local = ["--name", "m", "--decision-id", "m/3/w1", "--recent-data", str(root)]
    assert main(["--tracking-uri", "", *local]) == 1  # "$MLFLOW_TRACKING_URI" unset in the shell
    assert "MLFLOW_TRACKING_URI" in json.loads(capsys.readouterr().out)["error"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert main(local) == 2  # the tracking URI from the environment; too few labels, a plain id unchanged
    assert json.loads(capsys.readouterr().out)["decision_id"] == "m/3/w1"
