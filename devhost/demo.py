"""``make demo``: Azurite + MLflow + devhost, a sample model trained and registered for real, sample files
dropped into the input container, and what happened to each of them."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from devhost.runtime import DevHost, register_mlflow_webhook
from devhost.stack import LocalStack

MODEL_NAME = "scorehook-sample"
DEMO_SETTINGS = {"SCOREHOOK_DRIFT_SCHEDULE": "*/2 * * * * *", "SCOREHOOK_DRIFT_COOLDOWN_SECONDS": "60"}
"""The demo evaluates drift every 2 s and lets a re-run retrain again after a minute."""


def _say(text: str) -> None:
    print(text, flush=True)


_FORMATS = ("csv", "parquet", "jsonl", "csv.gz")


def _sample_files(rows: int, files: int, stamp: str) -> list[tuple[str, bytes]]:
    """Sample inputs in every supported format (the last one drifted), and one broken file."""
    from training.data import write_file

    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(files):
            fmt = _FORMATS[index % len(_FORMATS)]
            path = Path(tmp) / f"part-{index}.{fmt}"
            write_file(path, rows, fmt=fmt, seed=100 + index, drift=0.0 if index < files - 1 else 0.5)
            samples.append((f"demo/{stamp}/{path.name}", path.read_bytes()))
    bad = b"id,x01,x02\nr1,0.1,abc\n"  # columns the model needs are missing: a failure record, not a crash
    samples.append((f"demo/{stamp}/broken.csv", bad))
    return samples


def _wait_for_outcome(
    blobs: Any, settings: Any, name: str, etag: str, timeout: float = 120
) -> tuple[str, str]:
    from shared.scoring import failure_name, output_name

    output = (settings.output_container, output_name(settings.input_container, name))
    failure = (settings.failed_container, failure_name(settings.input_container, name, etag))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for kind, (container, blob) in (("scored", output), ("failed", failure)):
            if blobs.get_blob_client(container, blob).exists():
                return kind, f"{container}/{blob}"
        time.sleep(0.2)
    return "timed out", ""


def _holdout() -> bytes:
    """Labelled evaluation data for champion/challenger (SCOREHOOK_EVALUATION_DATA)."""
    import io

    import pyarrow.csv as pacsv

    from training.data import generate

    sink = io.BytesIO()
    pacsv.write_csv(generate(5000, seed=99, include_label=True), sink)
    return sink.getvalue()


def _wait_for_decision(tracking_uri: str, version: str, timeout: float = 120) -> dict[str, str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tags = client.get_model_version(MODEL_NAME, version).tags
        if "scorehook.decision" in tags:
            champion = client.get_model_version_by_alias(MODEL_NAME, "champion").version
            return {
                **tags,
                "scorehook.decision": f"{tags['scorehook.decision']} (champion is now v{champion})",
            }
        time.sleep(0.2)
    return {}


def _drift_reports(blobs: Any, container: str, since: float) -> list[dict[str, Any]]:
    """Final drift reports written after ``since`` (newest first)."""
    found = []
    client = blobs.get_container_client(container)
    if not client.exists():
        return []
    for blob in client.list_blobs(name_starts_with=f"reports/{MODEL_NAME}/"):
        if blob.last_modified.timestamp() >= since:
            doc = json.loads(client.download_blob(blob.name).readall())
            if doc.get("source_etag"):
                found.append(doc)
    return sorted(found, key=lambda d: d["evaluated_at"], reverse=True)


def _wait(predicate: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.5)
    return None


def _drift_loop(blobs: Any, settings: Any, tracking_uri: str, stamp: str) -> bool:
    """Drifted, labelled files arrive: the timer finds drift, one retraining runs, the flow decides."""
    import io

    import pyarrow.csv as pacsv
    from mlflow import MlflowClient

    from training.data import generate

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    before = {v.version for v in client.search_model_versions(f"name='{MODEL_NAME}'")}
    _say(
        "\nDrift -> retraining: dropping 2 drifted files with labels (x01 +1.5 sd, x02 sd x2, new region mix) ..."
    )
    since = time.time() - 1
    for index in range(2):
        sink = io.BytesIO()
        pacsv.write_csv(generate(20_000, seed=200 + index, drift=1.0, start=(200 + index) * 1_000_000), sink)
        name = f"demo/{stamp}/drifted-{index}.csv"
        blobs.get_blob_client(settings.input_container, name).upload_blob(sink.getvalue())
        _say(f"  dropped {settings.input_container}/{name}")
    report = _wait(lambda: [r for r in _drift_reports(blobs, settings.drift_container, since)
                            if r["rows"] >= 40_000], timeout=120)  # fmt: skip
    if not report:
        _say("  no drift evaluation within 120 s")
        return False
    doc = report[0]
    _say(f"  drift evaluation of window {doc['window'][0]} ({doc['rows']:,} rows, model v{doc['model_version']}): "
         f"{doc['decision'].upper()}")  # fmt: skip
    for reason in doc["reasons"][:6]:
        _say(f"    - {reason}")
    action = doc.get("action", {})
    _say(
        f"  retraining: {action.get('status', 'none')} {json.dumps({k: v for k, v in action.items() if k != 'status'})}"
    )
    _say(f"  report: {doc['report']}")
    if action.get("status") != "launched":
        return doc["decision"] == "drift"
    _say("  training.retrain runs as its own process on the window's labelled rows, then registers ...")
    new = _wait(lambda: [v for v in client.search_model_versions(f"name='{MODEL_NAME}'")
                         if v.version not in before and "scorehook.retrain.decision" in v.tags], timeout=240)  # fmt: skip
    if not new:
        _say("  no retrained version within 240 s (log: see the retraining log above)")
        return False
    version = new[0].version
    _say(f"  registered {MODEL_NAME} v{version} (tags scorehook.retrain.*: decision {action['decision_id']})")
    decision = _wait_for_decision(tracking_uri, version, timeout=180)
    _say(f"  MLflow webhook -> deployment flow: {decision.get('scorehook.decision', 'no decision')} "
         f"({decision.get('scorehook.reasons', '')})")  # fmt: skip
    return bool(decision)


def run_demo(stack: LocalStack, rows: int = 2000, files: int = 4) -> int:
    """The demo on a started :class:`LocalStack` (``python -m devhost demo`` starts and stops it)."""
    from azure.storage.blob import BlobServiceClient

    from shared.settings import Settings
    from training.train import train_and_register

    started = time.monotonic()
    azurite, mlflow = stack.azurite, stack.mlflow
    assert azurite is not None and mlflow is not None and stack.supervisor is not None
    _say(
        f"Azurite and MLflow are up (data under {stack.local_dir}/, ports kept in {stack.local_dir}/ports.json)"
    )
    _say(f"  Azurite blob endpoint {azurite.endpoints['blob']}, MLflow UI {mlflow.tracking_uri}")
    with DevHost.from_settings_file(stack.settings_path, services_health=stack.supervisor.states) as dev:
        settings = Settings.from_env(dev.env)
        blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
        for container in (settings.input_container, settings.output_container, settings.failed_container,
                          "evaluation"):  # fmt: skip
            if not blobs.get_container_client(container).exists():
                blobs.create_container(container)
        blobs.get_blob_client("evaluation", "holdout.csv").upload_blob(_holdout(), overwrite=True)
        register_mlflow_webhook(mlflow.tracking_uri, dev.base_url, settings.require("mlflow_webhook_secret"))
        _say(
            f"Training the sample model and registering {MODEL_NAME} (no alias: the deployment flow decides) ..."
        )
        model = train_and_register(
            mlflow.tracking_uri, model_name=MODEL_NAME, out_dir=stack.local_dir / "model"
        )
        _say(f"  registered {model['model_uri']} (training metrics: {json.dumps(model.get('metrics', {}))})")
        decision = _wait_for_decision(mlflow.tracking_uri, model["version"])
        _say(f"  MLflow webhook -> devhost -> deployment flow: {decision.get('scorehook.decision', 'no decision')}"
             f" ({decision.get('scorehook.reasons', '')})")  # fmt: skip
        _say(f"devhost is serving {', '.join(sorted(dev.host.functions))} on {dev.base_url}")
        stamp = time.strftime("%Y%m%dT%H%M%S")
        uploaded = []
        for name, data in _sample_files(rows, files, stamp):
            etag = blobs.get_blob_client(settings.input_container, name).upload_blob(data)["etag"]
            uploaded.append((name, etag))
            _say(f"  dropped {settings.input_container}/{name} ({len(data):,} bytes)")
        _say("\nWhat happened to each file:")
        scored: list[str] = []
        loop_ok = False
        for name, etag in uploaded:
            kind, where = _wait_for_outcome(blobs, settings, name, etag)
            if kind == "scored":
                meta = blobs.get_blob_client(*where.split("/", 1)).get_blob_properties().metadata
                scored.append(where)
                _say(
                    f"  {settings.input_container}/{name} -> {where}  "
                    f"({meta.get('rows_scored')} rows, model {meta.get('model_name')} v{meta.get('model_version')})"
                )
            elif kind == "failed":
                record = json.loads(blobs.get_blob_client(*where.split("/", 1)).download_blob().readall())
                _say(
                    f"  {settings.input_container}/{name} -> FAILED [{record['reason']}] {record['message']}"
                    f"  (record: {where})"
                )
            else:
                _say(f"  {settings.input_container}/{name} -> no outcome within the time limit")
        if scored:
            container, blob = scored[0].split("/", 1)
            meta = blobs.get_blob_client(container, blob).get_blob_properties().metadata
            _say(f"\nLineage of {scored[0]}:")
            for key in sorted(meta):
                _say(f"  {key:16} {meta[key]}")
            head = (
                blobs.get_blob_client(container, blob).download_blob(offset=0, length=400).readall().decode()
            )
            _say("\nFirst predictions:\n  " + "\n  ".join(head.splitlines()[:4]))
        loop_ok = _drift_loop(blobs, settings, mlflow.tracking_uri, stamp)
    _say(
        f"\nDone in {time.monotonic() - started:.1f}s. JSON logs: .local/logs/scorehook.jsonl. "
        "`make run` keeps everything up."
    )
    return 0 if len(scored) == files and loop_ok else 1
