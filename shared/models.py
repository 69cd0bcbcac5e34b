"""Loaded models and the per-process model cache.

An MLflow model directory with an ``onnx`` flavor (or a bare ``.onnx`` file) runs on onnxruntime
directly; the model's inputs (one per column, shaped ``(N, 1)``) define the columns it needs.
onnxruntime and pyarrow are imported on first use, never at import time.

Example:
    >>> cache = ModelCache(max_versions=2)
    >>> cache.get("m/1", lambda: "loaded once")
    'loaded once'
    >>> cache.get("m/1", lambda: "not called")
    'loaded once'
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import ModelError

__all__ = ["ModelCache", "ModelInput", "OnnxModel", "load_model_dir"]

_NUMERIC = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
}


@dataclass(frozen=True)
class ModelInput:
    """One input column of a model: its name and numpy dtype (``object`` for strings)."""

    name: str
    dtype: str

    @property
    def is_string(self) -> bool:
        return self.dtype == "object"


class OnnxModel:
    """An ONNX model on onnxruntime, fed column by column from Arrow record batches.

    Example:
        >>> model = OnnxModel.from_file("model.onnx")   # doctest: +SKIP
        >>> model.predict(batch)                         # doctest: +SKIP
        {'prediction': array([0, 1, ...]), 'probability': array([0.12, 0.93, ...], dtype=float32)}
    """

    flavor = "onnx"

    def __init__(self, session: Any) -> None:
        self._session = session
        inputs = []
        for node in session.get_inputs():
            if node.type == "tensor(string)":
                inputs.append(ModelInput(node.name, "object"))
            elif node.type in _NUMERIC:
                inputs.append(ModelInput(node.name, _NUMERIC[node.type]))
            else:
                raise ModelError(
                    f"ONNX input {node.name!r} has unsupported type {node.type}", input=node.name
                )
        self.inputs: tuple[ModelInput, ...] = tuple(inputs)
        self.output_names = [o.name for o in session.get_outputs()]

    @classmethod
    def from_file(cls, path: str | Path, threads: int | None = None) -> OnnxModel:
        """Load an ONNX file with session options tuned for a small instance."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelError(f"ONNX model {path} does not load: {exc}", path=str(path)) from exc
        return cls(session)

    def feeds(self, batch: Any) -> dict[str, Any]:
        """The onnxruntime feed dict for an Arrow record batch: each column as an ``(N, 1)`` array."""
        import numpy as np

        feeds = {}
        for column in self.inputs:
            array = batch.column(batch.schema.get_field_index(column.name))
            if column.is_string:
                values = np.asarray(array.to_pylist(), dtype=object)
            else:
                values = array.to_numpy(zero_copy_only=False).astype(column.dtype, copy=False)
            feeds[column.name] = values.reshape(-1, 1)
        return feeds

    def predict(self, batch: Any) -> dict[str, Any]:
        """Predicted label and, for classifiers, the probability of the positive class."""
        outputs = self._session.run(None, self.feeds(batch))
        result = {"prediction": outputs[0].reshape(-1)}
        if len(outputs) > 1 and getattr(outputs[1], "ndim", 0) == 2:
            result["probability"] = outputs[1][:, -1]
        return result


def load_model_dir(path: str | Path) -> OnnxModel:
    """Load a downloaded MLflow model directory (``onnx`` flavor) or a bare ``.onnx`` file."""
    path = Path(path)
    if path.is_file() and path.suffix == ".onnx":
        return OnnxModel.from_file(path)
    mlmodel = path / "MLmodel"
    if not mlmodel.exists():
        raise ModelError(f"{path} is neither an .onnx file nor an MLflow model directory", path=str(path))
    import yaml

    flavors = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {})
    if "onnx" in flavors:
        return OnnxModel.from_file(path / flavors["onnx"].get("data", "model.onnx"))
    raise ModelError(
        f"model at {path} has no onnx flavor (flavors: {sorted(flavors)})", flavors=sorted(flavors)
    )


class ModelCache:
    """Loaded models per process: one load per key even under concurrent callers (single-flight),
    at most ``max_versions`` kept (least recently used evicted)."""

    def __init__(self, max_versions: int = 4) -> None:
        self.max_versions = max_versions
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.loads = 0

    def get(self, key: str, load: Callable[[], Any]) -> Any:
        """The model for ``key``, calling ``load()`` only if no other caller has loaded it."""
        with self._guard:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._guard:
                if key in self._models:
                    return self._models[key]
            model = load()
            with self._guard:
                self.loads += 1
                self._models[key] = model
                self._locks.pop(key, None)
                while len(self._models) > self.max_versions:
                    self._models.popitem(last=False)
            return model

    def clear(self) -> None:
        with self._guard:
            self._models.clear()
