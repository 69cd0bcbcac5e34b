"""Registry-triggered deployment end to end: a real MLflow server sends signed webhooks to devhost, the
flow decides, the champion alias moves, and the next scored file uses the new champion."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from shared.registrations import sign_mlflow_delivery
from tests.conftest import ROOT, registry_devhost

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def env(azurite, tmp_path_factory):
    """Its own MLflow server: the server caches its webhook list, so the webhook exists before any event."""
    with registry_devhost(azurite, tmp_path_factory, "deploy") as dev:
        yield dev


def _champion(env) -> str | None:
    try:
        return env.client.get_model_version_by_alias(env.name, "champion").version
    except Exception:
        return None


def _decision(env, version: str) -> dict | None:
    tags = env.client.get_model_version(env.name, version).tags
    return tags if "scorehook.decision" in tags else None


def graph_signature(onnx_bytes: bytes):
    """The signature of a skl2onnx model: one (-1, 1) tensor per graph input, as the training pipeline logs."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from shared.models import OnnxModel

    dtypes = {"float32": np.dtype("float32"), "float64": np.dtype("float64"), "object": np.dtype("O")}
    inputs = OnnxModel.from_file(onnx_bytes).inputs
    return ModelSignature(inputs=Schema([TensorSpec(dtypes[i.dtype], (-1, 1), i.name) for i in inputs]))


def register_onnx(tracking_uri: str, name: str, onnx_bytes: bytes, signature="graph", tags=None,
                  replace_onnx: bytes | None = None) -> str:  # fmt: skip
    """Log an ONNX model (no alias) as the next version of ``name``; MLflow fires model_version.created.
    ``signature=None`` declares none; ``replace_onnx`` puts other bytes in place of the logged model.onnx."""
    import tempfile
    from pathlib import Path

    import mlflow
    import mlflow.onnx
    import onnx

    from training.train import _mlflow_uris

    with _mlflow_uris(tracking_uri), mlflow.start_run():
        declared = graph_signature(onnx_bytes) if signature == "graph" else signature
        if replace_onnx is None and not tags:
            info = mlflow.onnx.log_model(onnx.load_from_string(onnx_bytes), name="model", signature=declared,
                                         registered_model_name=name)  # fmt: skip
            return str(info.registered_model_version)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "model"
            mlflow.onnx.save_model(onnx.load_from_string(onnx_bytes), str(folder), signature=declared)
            if replace_onnx is not None:
                (folder / "model.onnx").write_bytes(replace_onnx)
            mlflow.log_artifacts(str(folder), "model")
            uri = f"runs:/{mlflow.active_run().info.run_id}/model"
        registered = mlflow.register_model(uri, name, tags=tags)
    return str(registered.version)


def _register_onnx(env, onnx_bytes: bytes) -> str:
    return register_onnx(env.mlflow.tracking_uri, env.name, onnx_bytes)


def _noise_model() -> bytes:
    from training.data import generate
    from training.train import to_onnx, train

    table = generate(4000, seed=3, include_label=True)
    labels = np.random.default_rng(1).permutation(table.column("label").to_numpy())
    table = table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels))
    return to_onnx(train(table, kind="linear"), table.slice(0, 500))


def _other_inputs_model() -> bytes:
    """A model whose signature does not fit the route: it takes other columns."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 1)).astype(np.float32)
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    onx = to_onnx(model, initial_types=[("customer_age", FloatTensorType([None, 1]))],
                  options={id(model): {"zipmap": False}})  # fmt: skip
    return onx.SerializeToString()


def _score(env, rows: int = 20) -> dict:
    from training.data import generate

    sink = io.BytesIO()
    pacsv.write_csv(generate(rows, seed=8, include_label=False), sink)
    name = f"deploy/{uuid.uuid4().hex}.csv"
    env.blobs.get_blob_client("incoming", name).upload_blob(sink.getvalue())
    out = env.blobs.get_blob_client("scored", "incoming/" + name + ".predictions.csv")
    env.wait_for(out.exists, what="scored output")
    return out.get_blob_properties().metadata


def test_registration_flow_promotes_rejects_and_the_next_file_uses_the_champion(env):
    from training.train import train_and_register

    first = train_and_register(env.mlflow.tracking_uri, model_name=env.name, rows=4000, seed=1)["version"]
    env.wait_for(lambda: _champion(env) == first, timeout=90, what="first version promoted by the flow")
    tags = env.wait_for(lambda: _decision(env, first), what="decision recorded on the version")
    assert tags["scorehook.decision"] == "promote"
    assert _score(env)["model_version"] == first

    worse = _register_onnx(env, _noise_model())
    tags = env.wait_for(lambda: _decision(env, worse), timeout=90, what="decision on the worse version")
    assert tags["scorehook.decision"] == "reject" and "worse than the champion" in tags["scorehook.reasons"]
    metrics = json.loads(tags["scorehook.metrics"])
    assert metrics["challenger"]["auc"] < metrics["champion"]["auc"]
    assert _champion(env) == first

    broken = _register_onnx(env, _other_inputs_model())
    tags = env.wait_for(lambda: _decision(env, broken), timeout=90, what="decision on the broken version")
    assert (
        tags["scorehook.decision"] == "reject" and "is not in the route's data" in tags["scorehook.reasons"]
    )
    assert tags["scorehook.reject_reason"] == "schema_mismatch"

    better = train_and_register(env.mlflow.tracking_uri, model_name=env.name, rows=20000, seed=2)["version"]
    env.wait_for(lambda: _champion(env) == better, timeout=90, what="better version promoted")
    env.wait_for(
        lambda: _score(env)["model_version"] == better,
        timeout=30,
        what="next file scored by the new champion",
    )

    code = subprocess.run([sys.executable, "-m", "cli", "--settings", str(env.settings_path), "rollback", env.name],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith(("SCOREHOOK_", "MLFLOW_"))})  # fmt: skip
    assert code.returncode == 0, code.stderr
    assert _champion(env) == first
    assert env.client.get_model_version_by_alias(env.name, "previous").version == better


def log_lines(env) -> list[dict]:
    """The JSON lines devhost's process wrote so far (its other output skipped)."""
    lines = []
    for text in env.log.read_text(errors="replace").splitlines():
        if text.startswith("{"):
            try:
                lines.append(json.loads(text))
            except ValueError:
                pass
    return lines


def _signed(
    env, body: dict, delivery_id: str | None = None, timestamp: int | None = None
) -> tuple[bytes, dict]:
    raw = json.dumps(body).encode()
    delivery_id = delivery_id or str(uuid.uuid4())
    timestamp = str(timestamp or int(time.time()))
    headers = {"X-MLflow-Delivery-Id": delivery_id, "X-MLflow-Timestamp": timestamp,
               "X-MLflow-Signature": sign_mlflow_delivery(env.secret, delivery_id, timestamp, raw),
               "Content-Type": "application/json"}  # fmt: skip
    return raw, headers


def test_forged_unsigned_or_replayed_webhooks_get_401_and_change_nothing(env):
    body = {"entity": "model_version", "action": "created", "timestamp": "x",
            "data": {"name": env.name, "version": "999", "source": "models:/x", "run_id": None, "tags": {}}}  # fmt: skip
    raw, headers = _signed(env, body)
    forged = {**headers, "X-MLflow-Signature": sign_mlflow_delivery("not-the-secret", headers["X-MLflow-Delivery-Id"],
                                                                     headers["X-MLflow-Timestamp"], raw)}  # fmt: skip
    unsigned = {k: v for k, v in headers.items() if k != "X-MLflow-Signature"}
    stale_raw, stale = _signed(env, body, timestamp=int(time.time()) - 600)
    champion = _champion(env)
    for attempt_raw, attempt_headers in ((raw, forged), (raw, unsigned), (stale_raw, stale),
                                         (raw.replace(b"999", b"998"), headers)):  # fmt: skip
        status, _, _ = env.request("POST", "/api/mlflow-webhook", attempt_raw, attempt_headers)
        assert status == 401
    time.sleep(1)
    assert _champion(env) == champion


def test_a_duplicate_delivery_gives_one_decision(env):
    version = _champion(env)
    before = _decision(env, version)
    body = {"entity": "model_version", "action": "created", "timestamp": "x",
            "data": {"name": env.name, "version": version, "source": "models:/x", "run_id": None, "tags": {}}}  # fmt: skip
    raw, headers = _signed(env, body)
    trace = uuid.uuid4().hex  # the delivery's W3C trace context travels on the queue message to the flow
    traced = {**headers, "traceparent": f"00-{trace}-00f067aa0ba902b7-01"}
    assert env.request("POST", "/api/mlflow-webhook", raw, traced)[0] == 202
    assert (
        env.request("POST", "/api/mlflow-webhook", raw, headers)[0] == 200
    )  # same delivery id: deduplicated
    time.sleep(2)  # the queued registration is decided already: the flow answers duplicate
    assert _decision(env, version) == before
    done = env.wait_for(lambda: [line for line in log_lines(env) if line.get("trace_id") == trace
                                 and line.get("message") == "deployment flow done"], what="the flow's line")  # fmt: skip
    assert done[0]["function"] == "deploy_model_version" and done[0]["status"] == "duplicate"


def test_azure_ml_model_registered_events_enter_the_same_flow(env):
    from shared.adapters import TableLedger
    from shared.settings import Settings

    ledger = TableLedger.from_settings(Settings.from_env(env.env), create=False)
    events = json.loads((ROOT / "tests" / "events" / "model_registered_eventgrid.json").read_text())
    model = f"{env.name}-aml"
    register_onnx(env.mlflow.tracking_uri, model, _noise_model())  # Azure ML's registry is MLflow here
    identity = env.client.get_model_version(model, "1").creation_timestamp
    key = f"registration:{model}/1@{identity}"
    allowed = {**events[0], "id": str(uuid.uuid4()), "subject": f"models/{model}:1",
               "data": {"ModelName": model, "ModelVersion": 1}}  # fmt: skip
    other = {**allowed, "id": str(uuid.uuid4()), "data": {"modelName": model, "modelVersion": "2"},
             "topic": allowed["topic"].replace("scorehook-ws", "someone-elses-ws")}  # fmt: skip
    for event in (allowed, other):
        status, _, _ = env.request("POST", "/runtime/webhooks/eventgrid?functionName=on_model_registered", [event],
                                   {"aeg-event-type": "Notification"})  # fmt: skip
        assert status == 200
    record = env.wait_for(lambda: ledger.get(key), what="decision on the Azure ML registration")
    env.wait_for(lambda: ledger.get(key).status != "claimed", what="decision finished")
    decided = ledger.get(key)
    # MLflow's own delivery of the same version may be decided first: one decision, whichever door came first
    assert record and decided.status == "promote" and decided.details["identity"] == str(identity)
    done = env.wait_for(lambda: [line for line in log_lines(env) if line.get("message") == "deployment flow done"
                                 and line.get("event_id") == allowed["id"]], what="the Azure ML delivery's flow")  # fmt: skip
    assert done[0]["model"] == model and done[0]["model_version"] == "1"
    assert done[0]["status"] in ("promote", "duplicate")
    time.sleep(1)
    assert ledger.get(f"registration:{model}/2") is None  # a workspace that is not allowed changes nothing
