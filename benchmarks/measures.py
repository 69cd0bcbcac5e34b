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


def naive_warm(path: str, fmt: str, sklearn: str) -> dict[str, Any]:
    """NAIVE on a warm worker, like for like with the engine: the model is loaded BEFORE the clock (as the
    engine's cached model is), then pandas reads the whole file, one ``predict_proba`` pass of the model
    gives the probability of the positive class and the label (``classes_[argmax]``, the engine's single
    ``session.run``), and ``to_csv`` writes the engine's columns: id, prediction, probability, model_version.
    The scikit-learn pipeline is taken out of the pyfunc wrapper (``get_raw_model``), which skips pyfunc's
    schema enforcement: a stricter baseline than ``naive``.
    """
    import mlflow.pyfunc
    import pandas as pd

    load0 = time.perf_counter()
    model = mlflow.pyfunc.load_model(sklearn).get_raw_model()
    load = time.perf_counter() - load0
    warm = _sample(path, fmt)
    model.predict_proba(pd.read_csv(warm) if fmt == "csv" else pd.read_parquet(warm))  # first-call costs
    t0 = time.perf_counter()
    df = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    t1 = time.perf_counter()
    proba = model.predict_proba(df)
    prediction = model.classes_[proba.argmax(axis=1)]
    t2 = time.perf_counter()
    out = pd.DataFrame({"id": df["id"], "prediction": prediction, "probability": proba[:, -1],
                        "model_version": "1"})  # fmt: skip
    data = out.to_csv(index=False).encode()
    t3 = time.perf_counter()
    stages = {"load": load, "read": t1 - t0, "predict": t2 - t1, "write": t3 - t2}
    return {"seconds": t3 - t0, "rows": len(df), "detail": stages | {"bytes_out": len(data)}}


def limit_cpu(path: str, onnx: str) -> dict[str, Any]:
    """LIMIT_CPU: the CPU floor of the engine on a CSV file: the CPU-seconds of its three stages, each run
    alone on the engine's own code (``time.process_time``, every thread of the process counted), divided by
    the cores this process may use. ``seconds`` is that floor.

    - parse: the engine's CSV reader (record scanner, typed pyarrow blocks on its parse pool, the checks
      against the model, regrouping into 64 k-row batches), batches kept in memory;
    - predict: ``model.predict`` on those batches (feeds built from the arrow columns + ``session.run``);
    - encode: the output batches (id, prediction, probability, model_version) written by the engine's
      CSV encoder.
    """
    import os

    import pyarrow as pa

    from shared.engine import Limits, _check_piece, _Encoder, _model_view, _parsed, _regrouped
    from shared.models import OnnxModel

    model = OnnxModel.from_file(onnx)
    cores = len(os.sched_getaffinity(0))

    def parse(source: Any) -> tuple[list[Any], Any]:
        pieces, plan = _parsed(source, "csv", model, ("id",), None, "int64", "pass", Limits(), BATCH_ROWS)
        return list(_regrouped((_check_piece(p, plan) for p in pieces), BATCH_ROWS)), plan

    def outputs(batches: list[Any], predicted: list[dict[str, Any]]) -> list[Any]:
        version = pa.nulls(max(b.num_rows for b in batches), pa.string()).fill_null("1")
        return [pa.record_batch({"id": b.column("id"), **{k: pa.array(v) for k, v in p.items()},
                                 "model_version": version.slice(0, b.num_rows)})
                for b, p in zip(batches, predicted, strict=True)]  # fmt: skip

    def encode(scored: list[Any]) -> int:
        encoder = _Encoder("csv", BATCH_ROWS)
        size = sum(len(encoder.write(b) or b"") for b in scored)
        return size + len(encoder.close())

    def timed(run: Any) -> tuple[Any, float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        return result, time.process_time() - cpu, time.perf_counter() - wall

    batches, plan = parse(_sample(path, "csv"))  # warm-up of all three stages on a sample
    encode(outputs(batches, [model.predict(_model_view(b, plan)) for b in batches]))
    with open(path, "rb") as source:
        (batches, plan), parse_cpu, parse_wall = timed(lambda: parse(source))
    predicted, predict_cpu, predict_wall = timed(lambda: [model.predict(_model_view(b, plan)) for b in batches])
    scored = outputs(batches, predicted)
    size, encode_cpu, encode_wall = timed(lambda: encode(scored))
    cpu = parse_cpu + predict_cpu + encode_cpu
    detail = {"cores": cores, "parse_cpu": parse_cpu, "predict_cpu": predict_cpu, "encode_cpu": encode_cpu,
              "parse_wall": parse_wall, "predict_wall": predict_wall, "encode_wall": encode_wall,
              "cpu_seconds": cpu, "bytes_out": size}  # fmt: skip
    return {"seconds": cpu / cores, "rows": sum(b.num_rows for b in batches), "detail": detail}


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
    counts = {k: v for k, v in counts.items() if not isinstance(v, bytes)}  # output_header (fan-out parts)
    detail = {"load": load, "bytes_out": size} | counts
    return {"seconds": seconds, "rows": stats.rows_scored, "detail": detail}


def e2e(**kwargs: Any) -> dict[str, Any]:
    """E2E through Azurite, MLflow and devhost: see ``benchmarks.e2e``."""
    from benchmarks.e2e import run

    return run(**kwargs)


MEASURES = {
    "naive": naive,
    "naive_warm": naive_warm,
    "limit_cpu": limit_cpu,
    "limit_parse": limit_parse,
    "limit_infer": limit_infer,
    "engine": engine,
    "e2e": e2e,
}
