"""Benchmark inputs, generated once and cached under ``.local/bench/`` (keyed by rows, format and seed).

Data files hold the scoring columns (``id`` + features, no label); Parquet row groups hold 64 k rows.
Models are trained once per kind: an ONNX file (what the engine runs) and an MLflow scikit-learn model
directory saved with ``mlflow.sklearn.save_model`` (what NAIVE loads with ``mlflow.pyfunc.load_model``).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

from benchmarks import BENCH_DIR

ROW_GROUP = 65536
TRAIN_ROWS = 20000


def label(rows: int) -> str:
    """``1000000`` → ``1m``, ``100000`` → ``100k``."""
    for size, suffix in ((1_000_000, "m"), (1000, "k")):
        if rows >= size and rows % size == 0:
            return f"{rows // size}{suffix}"
    return str(rows)


def data_file(rows: int, fmt: str = "csv", seed: int = 0) -> Path:
    """The cached generated file (written atomically on first use), read once so it sits in the page cache."""
    from training.data import write_file

    path = BENCH_DIR / f"data-{label(rows)}-s{seed}.{fmt}"
    if not path.exists():
        print(f"generating {path.name} (cached for later runs)", flush=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        write_file(tmp, rows, fmt=fmt, seed=seed, chunk_rows=ROW_GROUP)
        tmp.replace(path)
    with path.open("rb") as f:  # warm the page cache: every measurement reads from memory, not disk
        while f.read(16 << 20):
            pass
    return path


def small_csv(rows: int, seed: int) -> bytes:
    """A small generated CSV file as bytes (the e2e latency files)."""
    import pyarrow.csv as pacsv

    from training.data import generate

    sink = io.BytesIO()
    pacsv.write_csv(generate(rows, seed=seed, include_label=False), sink)
    return sink.getvalue()


def model_files(kind: str, seed: int = 0) -> dict[str, str]:
    """``{"onnx": file, "sklearn": MLflow model dir}`` for a ``linear`` or ``gbm`` model, trained once."""
    base = BENCH_DIR / "models" / f"{kind}-{label(TRAIN_ROWS)}-s{seed}"
    onnx_path, sk_dir = base.with_suffix(".onnx"), base.with_name(base.name + "-sklearn")
    if not (onnx_path.exists() and (sk_dir / "MLmodel").exists()):
        print(f"training the {kind} model (cached for later runs)", flush=True)
        _train(kind, seed, onnx_path, sk_dir)
    return {"onnx": str(onnx_path), "sklearn": str(sk_dir)}


def _train(kind: str, seed: int, onnx_path: Path, sk_dir: Path) -> None:
    import mlflow.sklearn
    import numpy as np
    import skops.io
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    from training.data import FEATURES, NUMERIC, generate
    from training.train import to_onnx, train

    table = generate(TRAIN_ROWS, seed=seed, include_label=True)
    pipeline = train(table, seed=seed, kind=kind)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_path.with_name(f".tmp-{os.getpid()}-{onnx_path.name}")
    tmp.write_bytes(to_onnx(pipeline, generate(5000, seed=seed + 1)))  # validated against scikit-learn
    tmp.replace(onnx_path)
    # As training.train logs it: skops format, whose loader refuses types not listed as trusted at save time.
    signature = ModelSignature(
        inputs=Schema([ColSpec("double" if c in NUMERIC else "string", c) for c in FEATURES]),
        outputs=Schema([TensorSpec(np.dtype("int64"), (-1,))]),
    )
    tmp_dir = sk_dir.with_name(f".tmp-{os.getpid()}-{sk_dir.name}")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    mlflow.sklearn.save_model(
        pipeline,
        str(tmp_dir),
        serialization_format="skops",
        skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)),
        signature=signature,
    )
    shutil.rmtree(sk_dir, ignore_errors=True)
    tmp_dir.replace(sk_dir)
