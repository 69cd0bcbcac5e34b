"""The measurements, each run in its own child process by ``benchmarks.run_one``.

Each returns ``{"seconds": wall, "rows": n, "detail": {...}}``; imports happen before the clock starts
(a warm Functions instance has paid them), model loading is timed as stated per measurement.
"""

from __future__ import annotations

import io
import time
from typing import Any

BATCH_ROWS = 65536  # the engine's batch size (score_file's batch_rows default)
CSV_BLOCK = 1 << 20  # the engine's CSV block size


def _csv_types() -> dict[str, Any]:
    """Column types as the engine derives them from the model: float32 features, text id and categories."""
    import pyarrow as pa

    from training.data import CATEGORICAL, KEY, NUMERIC

    return {KEY: pa.string()} | dict.fromkeys(NUMERIC, pa.float32()) | dict.fromkeys(CATEGORICAL, pa.string())


def _sample(path: str, fmt: str, rows: int = 1000) -> io.BytesIO:
    """The first ``rows`` rows of a file, in memory and in its format: the warm-up input."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        sink = io.BytesIO()
        pq.write_table(pq.ParquetFile(path).read_row_group(0).slice(0, rows), sink)
    else:
        with open(path, "rb") as f:
            sink = io.BytesIO(b"".join(line for _, line in zip(range(rows + 1), f, strict=False)))
    sink.seek(0)
    return sink


def naive(path: str, fmt: str, sklearn: str, output: str = "id") -> dict[str, Any]:
    """NAIVE: pandas reads the whole file → ``mlflow.pyfunc.load_model(dir).predict(df)`` → ``to_csv``.

    The wall time includes loading the model (reported separately as ``load``). ``output="id"`` writes
    id + prediction; ``output="full"`` writes the whole frame plus a prediction column, as the usual
    Functions sample does (``df["prediction"] = ...; df.to_csv()``).
    """
    import mlflow.pyfunc
    import pandas as pd

    t0 = time.perf_counter()
    model = mlflow.pyfunc.load_model(sklearn)
    t1 = time.perf_counter()
    df = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    t2 = time.perf_counter()
    prediction = model.predict(df)
    t3 = time.perf_counter()
    if output == "full":
        df["prediction"] = prediction
        out = df
    else:
        out = pd.DataFrame({"id": df["id"], "prediction": prediction})
    data = out.to_csv(index=False).encode()
    t4 = time.perf_counter()
    stages = {"load": t1 - t0, "read": t2 - t1, "predict": t3 - t2, "write": t4 - t3}
    return {"seconds": t4 - t0, "rows": len(df), "detail": stages | {"bytes_out": len(data)}}


def limit_parse(path: str, stream: bool = False) -> dict[str, Any]:
    """LIMIT_PARSE: pyarrow parses the CSV file alone, typed columns, one pass.

    ``stream=False``: ``read_csv`` of the whole file (multithreaded, the parse limit); ``stream=True``:
    ``open_csv`` in the engine's 1 MiB blocks (single-threaded, the reader the engine streams with).
    """
    import pyarrow.csv as pacsv

    convert = pacsv.ConvertOptions(column_types=_csv_types())
    pacsv.read_csv(_sample(path, "csv"), convert_options=convert)  # warm-up
    t0 = time.perf_counter()
    if stream:
        rows = 0
        for batch in pacsv.open_csv(
            path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK), convert_options=convert
        ):
            rows += batch.num_rows
    else:
        rows = pacsv.read_csv(path, convert_options=convert).num_rows
    return {"seconds": time.perf_counter() - t0, "rows": rows, "detail": {}}


def limit_infer(path: str, onnx: str) -> dict[str, Any]:
    """LIMIT_INFER: onnxruntime alone on feeds prepared beforehand (64 k-row batches, the engine's session)."""
    import pyarrow.csv as pacsv

    from shared.models import OnnxModel

    model = OnnxModel.from_file(onnx)
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=_csv_types()))
    feeds = [model.feeds(b) for b in table.combine_chunks().to_batches(max_chunksize=BATCH_ROWS)]
    session = model._session
    session.run(None, model.feeds(table.slice(0, 1000).combine_chunks().to_batches()[0]))  # warm-up
    del table
    t0 = time.perf_counter()
    for feed in feeds:
        session.run(None, feed)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows": sum(len(f["x01"]) for f in feeds), "detail": {"batches": len(feeds)}}


def engine(path: str, fmt: str, onnx: str, output_format: str = "csv") -> dict[str, Any]:
    """ENGINE: ``score_file`` on the local file with the model already loaded; output bytes are counted.

    A warm-up call on a 1000-row sample comes first (lazy imports, first-call costs), as in a worker that
    has scored a file before.
    """
    import dataclasses

    from shared.engine import EngineStats, score_file
    from shared.models import OnnxModel

    t0 = time.perf_counter()
    model = OnnxModel.from_file(onnx)
    load = time.perf_counter() - t0

    def score(source: Any, stats: EngineStats) -> int:
        blocks = score_file(
            source,
            fmt=fmt,
            model=model,
            key_columns=("id",),
            output_format=output_format,
            model_version="1",
            stats=stats,
        )
        return sum(len(block) for block in blocks)

    score(_sample(path, fmt), EngineStats())
    stats = EngineStats()
    t0 = time.perf_counter()
    with open(path, "rb") as source:
        size = score(source, stats)
    seconds = time.perf_counter() - t0
    counts = dataclasses.asdict(stats) if dataclasses.is_dataclass(stats) else dict(vars(stats))
    detail = {"load": load, "bytes_out": size} | counts
    return {"seconds": seconds, "rows": stats.rows_scored, "detail": detail}


def e2e(**kwargs: Any) -> dict[str, Any]:
    """E2E through Azurite, MLflow and devhost: see ``benchmarks.e2e``."""
    from benchmarks.e2e import run

    return run(**kwargs)


MEASURES = {
    "naive": naive,
    "limit_parse": limit_parse,
    "limit_infer": limit_infer,
    "engine": engine,
    "e2e": e2e,
}
