"""The scoring use case on the real adapters: Azurite (blob + table ledger) and a real MLflow registry."""

from __future__ import annotations

import gzip
import io
import json
import threading
import uuid

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from shared.adapters import AzureBlobStore, TableLedger
from shared.adapters.mlflow_registry import MlflowRegistry
from shared.errors import AlreadyClaimedError
from shared.events import parse_blob_created
from shared.models import ModelCache, ModelProvider
from shared.scoring import ScoringService, idempotency_key
from shared.settings import Settings
from shared.testing import FakePublisher

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def models(mlflow_tracking_uri):
    """One registered ONNX model, and the scikit-learn copy of the same run registered as a pyfunc-only model."""
    import mlflow

    from training.train import train_and_register

    name = f"it-{uuid.uuid4().hex[:6]}"
    onnx = train_and_register(mlflow_tracking_uri, model_name=name, rows=3000, alias="champion")
    client = mlflow.MlflowClient(tracking_uri=mlflow_tracking_uri, registry_uri=mlflow_tracking_uri)
    client.create_registered_model(f"{name}-sk")
    sk = client.create_model_version(
        f"{name}-sk",
        onnx["sklearn_model_uri"],
        run_id=onnx["run_id"],
        model_id=onnx["sklearn_model_uri"].removeprefix("models:/"),
    )
    return {"onnx": f"models:/{name}@champion", "pyfunc": f"models:/{name}-sk/{sk.version}", "name": name}


class CrashingStore(AzureBlobStore):
    """The real blob adapter, with a hook between staging and committing (a crash, a racing writer)."""

    hook = None

    def write_blocks(self, container, name, blocks, **kwargs):
        if self.hook is None:
            return super().write_blocks(container, name, blocks, **kwargs)
        staged = list(blocks)  # everything is read, scored and staged ...
        self.hook(container, name)  # ... and then this happens before the commit
        return super().write_blocks(container, name, iter(staged), **kwargs)


@pytest.fixture
def world(azurite, mlflow_tracking_uri, models, unique):
    settings = Settings.from_env(
        {"DataStorage": azurite.connection_string},
        input_container=f"in{unique}", output_container=f"out{unique}", failed_container=f"failed{unique}",
        ledger_table=f"ledger{unique}", model_uri=models["onnx"],
    )  # fmt: skip
    store = CrashingStore.from_settings(settings)
    store.ensure_containers(settings.input_container, settings.output_container, settings.failed_container)
    ledger = TableLedger.from_settings(settings)
    provider = ModelProvider(MlflowRegistry(mlflow_tracking_uri), store, ModelCache())
    publisher = FakePublisher()
    service = ScoringService(store, ledger, provider, publisher, settings)

    class World:
        pass

    w = World()
    w.settings, w.store, w.ledger, w.provider, w.publisher, w.service = (
        settings,
        store,
        ledger,
        provider,
        publisher,
        service,
    )
    w.sequence = iter(range(1, 10_000))

    def upload(name: str, data: bytes) -> dict:
        etag = store.write_bytes(settings.input_container, name, data)
        info = store.properties(settings.input_container, name)
        return {
            "id": str(uuid.uuid4()), "eventType": "Microsoft.Storage.BlobCreated", "eventTime": "2026-11-23T10:00:00Z",
            "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
            "subject": f"/blobServices/default/containers/{settings.input_container}/blobs/{name}",
            "data": {"api": "PutBlob", "eTag": etag, "contentLength": info.size, "url": info.url,
                     "sequencer": f"{next(w.sequence):032x}"},
        }  # fmt: skip

    w.upload = upload
    return w


def _sample(rows: int = 200, fmt: str = "csv") -> bytes:
    from training.data import generate

    table = generate(rows, seed=4, include_label=False)
    sink = io.BytesIO()
    if fmt == "parquet":
        pq.write_table(table, sink, row_group_size=64)
    elif fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in table.to_pylist()).encode()
    else:
        pacsv.write_csv(table, sink)
    data = sink.getvalue()
    return gzip.compress(data) if fmt == "csv.gz" else data


def _output(w, name: str) -> pa.Table:
    data = w.store.read_bytes(w.settings.output_container, name)
    return pacsv.read_csv(
        io.BytesIO(data), convert_options=pacsv.ConvertOptions(column_types={"id": pa.string()})
    )


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "jsonl", "parquet"])
def test_each_input_format_is_streamed_and_scored_with_lineage(world, fmt):
    name = f"data/file.{fmt}"
    event = parse_blob_created(world.upload(name, _sample(300, fmt)))
    outcome = world.service.score(event)
    assert outcome.status == "succeeded" and outcome.rows == 300
    table = _output(world, f"{world.settings.input_container}/{name}.predictions.csv")
    assert table.num_rows == 300 and table.column("id")[0].as_py() == "r00000001"
    meta = world.store.properties(world.settings.output_container, f"{world.settings.input_container}/{name}.predictions.csv").metadata
    assert meta["input_etag"] == event.etag.strip('"') and meta["model_flavor"] == "onnx"
    assert {"read_ms", "predict_ms", "write_ms", "scoring_ms"} <= set(meta)
    assert world.publisher.types() == ["Scorehook.Scoring.Completed"]


def test_an_mlflow_model_without_onnx_flavor_runs_through_pyfunc(world, models):
    service = ScoringService(world.store, world.ledger, world.provider, world.publisher,
                             Settings.from_env({}, **{**world.settings.__dict__, "model_uri": models["pyfunc"]}))  # fmt: skip
    outcome = service.score(parse_blob_created(world.upload("py.csv", _sample(50))))
    assert outcome.status == "succeeded", outcome.details
    meta = world.store.properties(world.settings.output_container, f"{world.settings.input_container}/py.csv.predictions.csv").metadata
    assert meta["model_flavor"] == "python_function"
    onnx_out = world.service.score(parse_blob_created(world.upload("ox.csv", _sample(50))))
    assert onnx_out.status == "succeeded"
    assert (
        _output(world, f"{world.settings.input_container}/py.csv.predictions.csv").column("prediction").to_pylist()
        == _output(world, f"{world.settings.input_container}/ox.csv.predictions.csv").column("prediction").to_pylist()
    )  # same model, two runtimes


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"id,x01\nr1,0.5\n", "schema_mismatch"),
        (_sample(20).replace(b'\n"r00000007",', b'\n"r00000007","oops",', 1), "bad_file_format"),
        (b"", "empty_file"),
    ],
)
def test_each_kind_of_bad_file_has_its_reason_and_leaves_no_output(world, data, reason):
    event = parse_blob_created(world.upload("bad.csv", data))
    outcome = world.service.score(event)
    assert (outcome.status, outcome.reason) == ("failed", reason)
    assert list(world.store.list_blobs(world.settings.output_container)) == []
    record = json.loads(
        world.store.read_bytes(world.settings.failed_container, outcome.failure.split("/", 1)[1])
    )
    assert record["reason"] == reason and record["event"]["id"] == event.id
    assert world.ledger.get(outcome.key).status == "failed"


def test_a_bad_value_names_column_row_and_value(world):
    lines = _sample(500).decode().splitlines()
    column = lines[0].split(",").index('"x07"')
    cells = lines[322].split(",")  # data row 322 (line 1 is the header)
    cells[column] = "twelve"
    lines[322] = ",".join(cells)
    outcome = world.service.score(
        parse_blob_created(world.upload("bad-value.csv", ("\n".join(lines) + "\n").encode()))
    )
    assert outcome.reason == "bad_value"
    assert (outcome.details["column"], outcome.details["row"], outcome.details["value"]) == (
        "x07",
        322,
        "twelve",
    )


def test_racing_deliveries_produce_exactly_one_output(world):
    raw = world.upload("race.csv", _sample(2000))
    barrier, results = threading.Barrier(6), []

    def deliver():
        barrier.wait()
        try:
            results.append(world.service.score(parse_blob_created(raw)).status)
        except AlreadyClaimedError:
            results.append("retry-later")

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("succeeded") == 1
    assert [b.name for b in world.store.list_blobs(world.settings.output_container)] == [
        f"{world.settings.input_container}/race.csv.predictions.csv"
    ]
    assert world.publisher.types() == ["Scorehook.Scoring.Completed"]


def test_a_crash_between_claim_and_commit_leaves_no_output_and_redelivery_scores(world):
    raw = world.upload("crash.csv", _sample(100))
    event = parse_blob_created(raw)

    def crash(container, name):
        raise SystemExit("the instance dies after staging, before the commit")

    world.store.hook = crash
    with pytest.raises(SystemExit):
        world.service.score(event)
    world.store.hook = None
    assert list(world.store.list_blobs(world.settings.output_container)) == []
    # a dead instance cannot release its claim: leave one behind, already expired
    world.ledger.claim(idempotency_key(event), "dead-instance", ttl_seconds=-1)
    outcome = world.service.score(event)
    assert outcome.status == "succeeded" and world.ledger.get(outcome.key).attempts == 2
    assert [b.name for b in world.store.list_blobs(world.settings.output_container)] == [
        f"{world.settings.input_container}/crash.csv.predictions.csv"
    ]


def test_an_older_event_never_overwrites_the_output_of_a_newer_version(world):
    old = world.upload("v.csv", _sample(100))
    fired = []

    def newer_lands(container, name):
        if not fired:
            fired.append(True)
            world.store.hook = None
            newer = world.upload("v.csv", _sample(150))
            assert world.service.score(parse_blob_created(newer)).status == "succeeded"

    world.store.hook = newer_lands
    assert world.service.score(parse_blob_created(old)).status == "superseded"
    assert _output(world, f"{world.settings.input_container}/v.csv.predictions.csv").num_rows == 150
    assert world.service.score(parse_blob_created({**old, "id": "late"})).status in (
        "superseded",
        "duplicate",
    )
    assert _output(world, f"{world.settings.input_container}/v.csv.predictions.csv").num_rows == 150
