"""A large file through devhost: split by score_blob, its parts scored by devhost's worker processes, one output
byte-identical to the single path's."""

from __future__ import annotations

import json
import uuid

import pytest

from shared.fanout import part_key
from tests.conftest import start_devhost, stop_devhost
from tests.integration.test_fanout_azurite import _csv, onnx_bytes  # noqa: F401 - the model fixture

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def app(azurite, mlflow_tracking_uri, tmp_path_factory, onnx_bytes):  # noqa: F811
    from azure.storage.blob import BlobServiceClient

    unique = uuid.uuid4().hex[:8]
    model = f"blob://models{unique}/tiny.onnx"
    routes = [
        {"name": "big", "container": "incoming", "prefix": f"fan{unique}/", "model": model,
         "fanout_bytes": 100_000, "part_bytes": 128 << 10},
        {"name": "whole", "container": "incoming", "prefix": f"whole{unique}/", "model": model},
    ]  # fmt: skip
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    for container in ("incoming", "scored", "failed", f"models{unique}"):
        if not blobs.get_container_client(container).exists():
            blobs.create_container(container)
    blobs.get_blob_client(f"models{unique}", "tiny.onnx").upload_blob(onnx_bytes)
    dev = start_devhost(tmp_path_factory.mktemp("fanout"), azurite, mlflow_tracking_uri, extra={
        "SCOREHOOK_ROUTES": json.dumps(routes), "SCOREHOOK_LEDGER_TABLE": f"ledger{unique}",
        "SCOREHOOK_DRIFT_ENABLED": "false", "DEVHOST_PART_WORKERS": "2",
    })  # fmt: skip
    dev.blobs, dev.unique = blobs, unique
    yield dev
    stop_devhost(dev)


def _output(app, name):
    client = app.blobs.get_blob_client("scored", f"incoming/{name}.predictions.csv")
    return client.download_blob().readall() if client.exists() else None


def test_a_large_file_is_scored_by_the_worker_processes_into_one_identical_output(app):
    from shared.adapters import TableLedger
    from shared.settings import Settings

    data = _csv(40_000)
    whole, fanned = f"whole{app.unique}/a.csv", f"fan{app.unique}/a.csv"
    app.blobs.get_blob_client("incoming", whole).upload_blob(data)
    etag = app.blobs.get_blob_client("incoming", fanned).upload_blob(data)["etag"]
    expected = app.wait_for(lambda: _output(app, whole), timeout=120, what="the single path's output")
    output = app.wait_for(lambda: _output(app, fanned), timeout=180, what="the fanned-out output")
    assert output == expected
    ledger = TableLedger.from_settings(Settings.from_env(app.env), create=False)
    key = f"blob:devstoreaccount1/incoming/{fanned}@{etag.strip(chr(34))}"
    record = app.wait_for(lambda: (r := ledger.get(key)) is not None and r.status == "succeeded" and r, what="ledger")
    parts = int(record.details["parts"])
    assert parts >= 4 and record.details["rows_scored"] == 40_000
    owners = {ledger.get(part_key(key, i)).owner.rsplit(":", 1)[1] for i in range(parts)}
    assert str(app.process.pid) not in owners  # scored by the worker processes, not by devhost itself
    assert len(owners) == 2, owners  # both workers took parts
