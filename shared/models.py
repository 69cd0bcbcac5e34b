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

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import InputError, ModelError, ModelNotFoundError, TransientError
from shared.logs import get_logger

__all__ = [
    "BLOB_SCHEME",
    "DeclaredInput",
    "GenerationMarker",
    "GraphInput",
    "ModelCache",
    "ModelInput",
    "ModelProvider",
    "OnnxModel",
    "PyfuncModel",
    "load_model_dir",
    "parse_model_reference",
    "read_signature",
]

_log = get_logger("models")

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


@dataclass(frozen=True)
class DeclaredInput:
    """One input the MLmodel's signature declares: its name, numpy dtype (``object`` for strings) and, for a
    tensor spec, its shape (``-1`` for a variable dimension; ``None`` for a column spec)."""

    name: str
    dtype: str
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class GraphInput:
    """One input of an ONNX graph as onnxruntime reports it: ``tensor(float)`` and a shape whose variable
    dimensions are ``None`` or a symbolic name."""

    name: str
    type: str
    shape: tuple[Any, ...]


_TENSOR_DTYPES = {"float32": "float32", "float64": "float64", "int64": "int64", "int32": "int32",
                  "str": "object", "object": "object", "bool": "bool"}  # fmt: skip


def read_signature(mlmodel: dict[str, Any]) -> tuple[DeclaredInput, ...] | None:
    """The inputs an MLmodel's ``signature`` declares (tensor or column specs), or ``None`` without one.

    Read from the YAML alone: nothing is imported or loaded. ``ModelError`` when the signature is not JSON.

    Example:
        >>> read_signature({"signature": {"inputs": '[{"name": "x", "type": "tensor", '
        ...                  '"tensor-spec": {"dtype": "float32", "shape": [-1, 1]}}]'}})
        (DeclaredInput(name='x', dtype='float32', shape=(-1, 1)),)
        >>> read_signature({"flavors": {}}) is None
        True
    """
    import json

    signature = mlmodel.get("signature")
    raw = signature.get("inputs") if isinstance(signature, dict) else None
    if not raw:
        return None
    try:
        specs = json.loads(raw) if isinstance(raw, str) else raw
        declared = []
        for spec in specs:
            if spec.get("type") == "tensor":
                tensor = spec.get("tensor-spec") or {}
                dtype = _TENSOR_DTYPES.get(str(tensor.get("dtype")), str(tensor.get("dtype")))
                shape = tuple(int(d) for d in tensor.get("shape") or ())
                declared.append(DeclaredInput(str(spec.get("name", "")), dtype, shape))
            else:
                declared.append(
                    DeclaredInput(
                        str(spec.get("name", "")),
                        _MLFLOW_TYPES.get(str(spec.get("type")), str(spec.get("type"))),
                    )
                )
    except (ValueError, TypeError, AttributeError) as exc:
        raise ModelError(f"the MLmodel's signature is not readable: {exc}") from exc
    return tuple(declared)


class OnnxModel:
    """An ONNX model on onnxruntime, fed column by column from Arrow record batches.

    Example:
        >>> model = OnnxModel.from_file("model.onnx")   # doctest: +SKIP
        >>> model.predict(batch)                         # doctest: +SKIP
        {'prediction': array([0, 1, ...]), 'probability': array([0.12, 0.93, ...], dtype=float32)}
    """

    flavor = "onnx"
    #: the MLmodel's declared inputs when loaded from an MLflow model directory (``None``: none declared)
    declared: tuple[DeclaredInput, ...] | None = None
    from_mlmodel = False

    def __init__(self, session: Any) -> None:
        self._session = session
        inputs = []
        self.graph_inputs = tuple(
            GraphInput(node.name, node.type, tuple(node.shape or ())) for node in session.get_inputs()
        )
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
    def from_file(cls, path: str | Path | bytes, threads: int | None = None) -> OnnxModel:
        """Load an ONNX model (a path, or the model's bytes) with session options tuned for a small instance:
        one intra-op thread by default, so the other core parses the next batch."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            model = path if isinstance(path, bytes) else str(path)
            session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            where = "from bytes" if isinstance(path, bytes) else str(path)
            raise ModelError(f"ONNX model {where} does not load: {exc}", path=where) from exc
        return cls(session)

    def feeds(self, batch: Any) -> dict[str, Any]:
        """The onnxruntime feed dict for an Arrow record batch: each column as an ``(N, 1)`` array."""
        import numpy as np

        feeds = {}
        for column in self.inputs:
            array = batch.column(batch.schema.get_field_index(column.name))
            if column.is_string and hasattr(array, "dictionary"):
                # a few distinct strings, repeated: build them once, then index
                distinct = np.asarray(array.dictionary.to_pylist(), dtype=object)
                values = distinct[array.indices.fill_null(0).to_numpy(zero_copy_only=False)]
            elif column.is_string:
                values = array.to_numpy(zero_copy_only=False).astype(object, copy=False)
            else:
                values = array.to_numpy(zero_copy_only=False).astype(column.dtype, copy=False)
            feeds[column.name] = values.reshape(-1, 1)
        return feeds

    def predict(self, batch: Any) -> dict[str, Any]:
        """Predicted label and, for classifiers, the probability of the positive class.

        A row's result does not depend on its batch: onnxruntime runs a 1-row batch through other kernels
        (matrix-vector) than larger ones, whose float rounding differs, so a lone row is scored as a 2-row
        batch of itself (a fanned-out file's parts end in batches of any size, and must write the same bytes
        as the single path)."""
        import numpy as np

        feeds = self.feeds(batch)
        lone = batch.num_rows == 1
        if lone:
            feeds = {name: np.concatenate([values, values]) for name, values in feeds.items()}
        outputs = self._session.run(None, feeds)
        if lone:
            outputs = [output[:1] for output in outputs]
        result = {"prediction": outputs[0].reshape(-1)}
        if len(outputs) > 1 and getattr(outputs[1], "ndim", 0) == 2:
            result["probability"] = outputs[1][:, -1]
        return result


_MLFLOW_TYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32", "string": "object",
                 "boolean": "bool"}  # fmt: skip


class PyfuncModel:
    """An MLflow model without an ONNX flavor, run through ``mlflow.pyfunc`` (slower: pandas in between).

    Its inputs come from the model signature, which must be column-based.
    """

    flavor = "python_function"
    declared: tuple[DeclaredInput, ...] | None = None
    from_mlmodel = True
    graph_inputs: tuple[GraphInput, ...] = ()

    def __init__(self, model: Any) -> None:
        self._model = model
        schema = model.metadata.get_input_schema()
        if schema is None or not schema.has_input_names():
            raise ModelError(
                "the MLflow model has no column-based input signature: Scorehook cannot map columns"
            )
        self.inputs = tuple(
            ModelInput(
                spec.name, _MLFLOW_TYPES.get(str(getattr(spec.type, "name", spec.type)).lower(), "object")
            )
            for spec in schema.inputs
        )

    def predict(self, batch: Any) -> dict[str, Any]:
        import numpy as np
        import pyarrow as pa

        columns = [batch.column(c.name) for c in self.inputs]
        plain = [c.cast(pa.string()) if pa.types.is_dictionary(c.type) else c for c in columns]
        frame = pa.record_batch(plain, names=[c.name for c in self.inputs]).to_pandas()
        lone = len(frame) == 1  # a lone row as a 2-row batch of itself, as OnnxModel.predict does (BLAS too)
        predicted = self._model.predict(frame.iloc[[0, 0]].reset_index(drop=True) if lone else frame)
        values = predicted.to_numpy() if hasattr(predicted, "to_numpy") else np.asarray(predicted)
        return {"prediction": values.reshape(2 if lone else len(frame), -1)[:1 if lone else None, 0]}


def _pickle_free(flavors: dict[str, Any]) -> bool:
    """Whether ``mlflow.pyfunc`` can load the model without unpickling: a scikit-learn model saved with skops."""
    loader = (flavors.get("python_function") or {}).get("loader_module")
    sklearn = flavors.get("sklearn") or {}
    return loader == "mlflow.sklearn" and sklearn.get("serialization_format") == "skops"


def load_model_dir(
    path: str | Path, threads: int | None = None, *, allow_pickle: bool = False
) -> OnnxModel | PyfuncModel:
    """Load a downloaded MLflow model directory or a bare ``.onnx`` file.

    An ``onnx`` flavor runs on onnxruntime directly (protobuf only, nothing is unpickled); any other MLflow
    model through ``mlflow.pyfunc``, which unpickles for most flavors: those load only with ``allow_pickle``
    (a registry on the allow-list), except scikit-learn models saved with skops. The MLmodel's signature is
    kept as the model's ``declared`` inputs (``None`` when it has none).
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".onnx":
        return OnnxModel.from_file(path, threads)
    mlmodel = path / "MLmodel"
    if not mlmodel.exists():
        raise ModelError(f"{path} is neither an .onnx file nor an MLflow model directory", path=str(path))
    import yaml

    try:
        document = yaml.safe_load(mlmodel.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelError(f"the MLmodel of {path} is not readable YAML: {exc}", path=str(path)) from exc
    if not isinstance(document, dict) or not isinstance(document.get("flavors", {}), dict):
        raise ModelError(f"the MLmodel of {path} is not a mapping with flavors", path=str(path))
    flavors = document.get("flavors", {})
    declared = read_signature(document)
    if "onnx" in flavors:
        data = str((flavors["onnx"] or {}).get("data", "model.onnx"))
        target = (path / data).resolve()
        if path.resolve() not in target.parents:
            raise ModelError(
                f"the onnx flavor's data {data!r} is outside the model directory", path=str(path)
            )
        onnx_model = OnnxModel.from_file(target, threads)  # onnxruntime parses protobuf: nothing is unpickled
        onnx_model.declared, onnx_model.from_mlmodel = declared, True
        return onnx_model
    if "python_function" not in flavors:
        raise ModelError(
            f"model at {path} has neither an onnx nor a python_function flavor", flavors=sorted(flavors)
        )
    if not allow_pickle and not _pickle_free(flavors):
        raise ModelError(
            f"model at {path} is a pickle-based flavor ({', '.join(sorted(flavors))}): it loads only from an "
            "allow-listed registry", flavors=sorted(flavors),
        )  # fmt: skip
    import mlflow.pyfunc

    try:
        pyfunc = PyfuncModel(mlflow.pyfunc.load_model(str(path)))
        pyfunc.declared = declared
        return pyfunc
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"MLflow model at {path} does not load: {exc}") from exc


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


_REFERENCE = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def parse_model_reference(reference: str) -> tuple[str, str | None, str | None]:
    """Split a registry reference into (name, alias, version).

    Example:
        >>> parse_model_reference("models:/churn@champion")
        ('churn', 'champion', None)
        >>> parse_model_reference("models:/churn/3")
        ('churn', None, '3')
    """
    match = _REFERENCE.match(reference.strip())
    if not match:
        raise ModelNotFoundError(
            f"model reference {reference!r} is not models:/NAME@ALIAS or models:/NAME/VERSION",
            reference=reference,
        )
    return match["name"], match["alias"], match["version"]


BLOB_SCHEME = "blob://"


class GenerationMarker:
    """A tiny blob per model whose eTag changes whenever its champion changes (promotion, approval, rollback).

    Every instance reads the marker's eTag (one HEAD request, at most every few seconds per model) instead of
    asking the registry for each file; a new eTag makes its aliases of that model resolve again at once.
    Writers move the alias first, then :meth:`bump` the marker, so a changed marker always means a moved alias.

    Example:
        >>> from shared.testing import FakeBlobStore
        >>> marker = GenerationMarker(FakeBlobStore())
        >>> marker.etag("churn") is None
        True
        >>> marker.bump("churn", "3") == marker.etag("churn")
        True
    """

    def __init__(self, blobs: Any, container: str = "scorehook-models") -> None:
        self.blobs, self.container = blobs, container

    @staticmethod
    def blob_name(model: str) -> str:
        """The marker's blob name: the model name percent-encoded (no ``/`` or ``..`` segment can appear)."""
        from urllib.parse import quote

        return f"generations/{quote(model, safe='')}.json"

    def bump(self, model: str, version: str, details: dict[str, Any] | None = None) -> str:
        """Write the marker (a new eTag): ``model``'s champion is now ``version``. Returns the eTag."""
        import json
        import time

        body = {"model": model, "champion": version, "at": time.time(), **(details or {})}
        etag = self.blobs.write_bytes(self.container, self.blob_name(model), json.dumps(body).encode(),
                                      content_type="application/json")  # fmt: skip
        return str(etag).strip('"')

    def etag(self, model: str) -> str | None:
        """The marker's current eTag, ``None`` when the model was never promoted through Scorehook."""
        try:
            return self.blobs.properties(self.container, self.blob_name(model)).etag.strip('"')
        except InputError:  # BlobNotFoundError (the container may not exist either)
            return None


class ModelProvider:
    """Model references → concrete versions → loaded models.

    ``models:/name@alias`` is re-resolved after ``ttl_seconds`` (and at once after :meth:`invalidate`, which
    a ``Scorehook.Model.Promoted`` event triggers); ``models:/name/3`` never changes; ``blob://container/path.onnx``
    resolves to the blob's current eTag. Loaded models live in the :class:`ModelCache`, one load per version.

    When a re-resolution fails with a :class:`~shared.errors.TransientError` (registry or storage down), the
    last version the reference resolved to keeps scoring, logged as stale; the registry is asked again after
    ``stale_retry_seconds`` at the earliest. While one caller re-resolves a reference, the others keep its last
    version instead of queueing behind a slow registry. With no earlier resolution, or with ``ttl_seconds=0`` (a provider
    that must never serve a cached version, as the deployment flow's), the error propagates, and
    ``ModelNotFoundError`` (the alias was removed) never falls back: it also forgets the last version.

    With a :class:`GenerationMarker`, a cached alias is also checked against the model's marker at most every
    ``marker_seconds`` (one blob HEAD, no registry call): a changed marker re-resolves at once, so every
    instance scores with a new champion within a few seconds of its promotion, whatever the TTL.

    Example:
        >>> provider = ModelProvider(registry, blobs, ModelCache(), ttl_seconds=60)   # doctest: +SKIP
        >>> version, model = provider.get("models:/churn@champion")                    # doctest: +SKIP
    """

    def __init__(
        self,
        registry: Any,
        blobs: Any,
        cache: ModelCache,
        ttl_seconds: float = 60.0,
        threads: int | None = None,
        clock: Callable[[], float] | None = None,
        stale_retry_seconds: float = 5.0,
        marker: GenerationMarker | None = None,
        marker_seconds: float = 2.0,
    ) -> None:
        import time

        self.registry, self.blobs, self.cache = registry, blobs, cache
        self.ttl_seconds, self.threads = ttl_seconds, threads
        self.stale_retry_seconds = stale_retry_seconds
        self._clock = clock or time.monotonic
        self._resolved: dict[str, tuple[Any, float]] = {}  # fresh within the TTL
        self._last_known: dict[str, tuple[Any, float]] = {}  # the fallback while the registry is down
        self._failed_at: dict[str, float] = {}
        self._refreshing: set[str] = set()  # references some caller is re-resolving right now
        self._lock = threading.Lock()
        self.marker, self.marker_seconds = marker, marker_seconds
        self._markers: dict[str, tuple[str | None, float]] = {}  # model -> (marker eTag seen, when checked)
        self._checking: set[str] = set()  # models whose marker some caller is reading right now
        self.marker_checks = 0

    def resolve(self, reference: str) -> Any:
        """The concrete version a reference names now (cached for aliases and blobs within the TTL)."""
        now = self._clock()
        with self._lock:
            cached = self._resolved.get(reference)
            fresh = cached is not None and now - cached[1] < self.ttl_seconds
        if fresh and self._marker_unchanged(reference, now):
            return cached[0]  # type: ignore[index]
        with self._lock:
            cached = self._resolved.get(reference)
            last = self._last_known.get(reference)
            failed_at = self._failed_at.get(reference)
            if last is not None and self.ttl_seconds > 0:
                if failed_at is not None and now - failed_at < self.stale_retry_seconds:
                    return last[0]  # the registry failed a moment ago: do not make every event wait again
                if reference in self._refreshing:
                    return last[0]  # another caller is asking the registry: do not queue behind it
            self._refreshing.add(reference)
        try:
            self._read_marker(reference, now)  # before the registry: a later bump means a later alias move
            version = (
                self._resolve_blob(reference)
                if reference.startswith(BLOB_SCHEME)
                else self.registry.resolve(reference)
            )
        except ModelNotFoundError:
            with self._lock:
                self._resolved.pop(reference, None)
                self._last_known.pop(reference, None)
                self._failed_at.pop(reference, None)
            raise
        except TransientError as exc:
            if last is None or self.ttl_seconds <= 0:
                raise
            with self._lock:
                self._failed_at[reference] = now
            self._log_stale(reference, last, now, exc)
            return last[0]
        finally:
            with self._lock:
                self._refreshing.discard(reference)
        with self._lock:
            self._resolved[reference] = self._last_known[reference] = (version, now)
            self._failed_at.pop(reference, None)
        return version

    def _marker_model(self, reference: str) -> str | None:
        """The model whose marker governs ``reference``: aliases only (versions and blobs never move)."""
        if self.marker is None or not reference.startswith("models:/"):
            return None
        try:
            name, alias, _ = parse_model_reference(reference)
        except ModelNotFoundError:
            return None
        return name if alias else None

    def _read_marker(self, reference: str, now: float) -> None:
        model = self._marker_model(reference)
        if model is None:
            return
        try:
            etag = self._marker_etag(model)
        except TransientError:
            return  # unknown: the next check reads it (and re-resolves if it differs then)
        with self._lock:
            self._markers[model] = (etag, now)

    def _marker_etag(self, model: str) -> str | None:
        self.marker_checks += 1
        try:
            return self.marker.etag(model)  # type: ignore[union-attr]
        except TransientError as exc:  # storage down: the TTL still bounds staleness
            _log.warning("model marker not read", extra={"model": model, "error": str(exc)})
            raise

    def _marker_unchanged(self, reference: str, now: float) -> bool:
        """Whether a reference cached within its TTL may be served: its model's marker has not moved
        (read at most every ``marker_seconds``; while one caller reads it, the others serve the cache)."""
        model = self._marker_model(reference)
        if model is None:
            return True
        with self._lock:
            seen = self._markers.get(model)
            if seen is not None and (now - seen[1] < self.marker_seconds or model in self._checking):
                return True
            self._checking.add(model)
        try:
            etag = self._marker_etag(model)
        except TransientError:
            with self._lock:
                self._markers[model] = (seen[0] if seen else None, now)
            return True
        finally:
            with self._lock:
                self._checking.discard(model)
        with self._lock:
            self._markers[model] = (etag, now)
            if seen is None or seen[0] == etag:
                return True
            for cached in [r for r in self._resolved if _reference_name(r) == model]:
                del self._resolved[cached]
        _log.info("champion marker moved: aliases resolve again", extra={"model": model, "marker": etag})
        return False

    def _log_stale(self, reference: str, last: tuple[Any, float], now: float, exc: Exception) -> None:
        name, alias = reference, None
        if reference.startswith("models:/"):
            name, alias, _ = parse_model_reference(reference)
        _log.warning(
            "alias resolved from a stale cache",
            extra={
                "model": name,
                "alias": alias,
                "reference": reference,
                "model_version": getattr(last[0], "version", None),
                "age_seconds": round(now - last[1], 3),
                "error": str(exc),
                "reason": getattr(exc, "reason", type(exc).__name__),
            },
        )

    def _resolve_blob(self, reference: str) -> Any:
        from shared.ports import ModelVersion

        container, _, name = reference[len(BLOB_SCHEME) :].partition("/")
        if not name.endswith(".onnx"):
            raise ModelError(
                f"blob model reference {reference!r} must name an .onnx blob", reference=reference
            )
        try:
            info = self.blobs.properties(container, name)
        except InputError as exc:
            raise ModelNotFoundError(
                f"model blob {container}/{name} does not exist", reference=reference
            ) from exc
        return ModelVersion(
            name=reference, version=info.etag.strip('"'), source=info.url or reference, flavors=("onnx",)
        )

    def get(self, reference: str) -> tuple[Any, Any]:
        """``(version, loaded model)`` for a reference."""
        version = self.resolve(reference)
        # the registry's identity too: a model deleted and re-created restarts at version 1 with other bytes
        key = f"{version.name}@{version.version}" + (f"#{version.identity}" if version.identity else "")
        return version, self.cache.get(key, lambda: self._load(version))

    def _load(self, version: Any) -> Any:
        import time

        from shared.telemetry import record_model_load, span

        started = time.perf_counter()
        with span("model load", attributes={"model": version.name, "model_version": version.version}):
            model = self._load_now(version)
        record_model_load(version.name, version.version, time.perf_counter() - started)
        return model

    def _load_now(self, version: Any) -> Any:
        if version.name.startswith(BLOB_SCHEME):
            container, _, name = version.name[len(BLOB_SCHEME) :].partition("/")
            return OnnxModel.from_file(self.blobs.read_bytes(container, name), self.threads)
        import tempfile

        with tempfile.TemporaryDirectory(prefix="scorehook-model-") as tmp:
            return load_model_dir(self.registry.download(version, tmp), self.threads,
                                  allow_pickle=bool(getattr(self.registry, "allows_pickle", False)))  # fmt: skip

    def invalidate(self, name: str | None = None) -> int:
        """Forget resolutions of references to model ``name`` (all when ``None``); returns how many.

        The next :meth:`resolve` asks the registry; the forgotten version stays only as the stale fallback."""
        with self._lock:
            stale = [r for r in self._resolved if name is None or _reference_name(r) == name]
            for reference in stale:
                del self._resolved[reference]
                self._failed_at.pop(reference, None)
        return len(stale)


def _reference_name(reference: str) -> str:
    return parse_model_reference(reference)[0] if reference.startswith("models:/") else reference
