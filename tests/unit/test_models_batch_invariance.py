"""A row's prediction must not depend on the batch it is scored in: a fanned-out file's parts end in batches of
any size, and their output must be byte-identical to the single path's (issue 15). onnxruntime computes a
1-row batch with other kernels than a larger one, whose float rounding differs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from shared.models import OnnxModel

FEATURES = [f"x{i:02d}" for i in range(24)]


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, len(FEATURES))).astype(np.float32)
    y = (x @ rng.normal(size=len(FEATURES)) > 0).astype(int)
    classifier = LogisticRegression(max_iter=500).fit(x, y)
    onx = to_onnx(classifier, initial_types=[("X", FloatTensorType([None, len(FEATURES)]))],
                  options={id(classifier): {"zipmap": False}})  # fmt: skip
    # one (N, 1) input per column, as the engine feeds them: a Concat in front of the classifier
    from onnx import helper

    graph = onx.graph
    concat = helper.make_node("Concat", FEATURES, ["X"], axis=1)
    inputs = [helper.make_tensor_value_info(n, 1, [None, 1]) for n in FEATURES]  # 1 = FLOAT
    model = helper.make_model(
        helper.make_graph([concat, *graph.node], "wide", inputs, list(graph.output), list(graph.initializer)),
        opset_imports=onx.opset_import,
    )
    path = tmp_path_factory.mktemp("wide") / "wide.onnx"
    path.write_bytes(model.SerializeToString())
    return OnnxModel.from_file(path)


def test_a_row_scores_the_same_alone_as_in_any_batch(wide_model: OnnxModel) -> None:
    rng = np.random.default_rng(2)
    table = pa.table({n: rng.normal(size=300).astype(np.float32) for n in FEATURES})
    whole = wide_model.predict(table.to_batches()[0])
    for size in (1, 2, 3, 7):
        for start in range(0, 300 - size, 11):
            part = wide_model.predict(table.slice(start, size).to_batches()[0])
            assert part["probability"].tobytes() == whole["probability"][start : start + size].tobytes(), (size, start)
            assert (part["prediction"] == whole["prediction"][start : start + size]).all()
