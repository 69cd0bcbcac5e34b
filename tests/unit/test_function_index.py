"""The function index is pinned; the core stays plain Python; importing the app stays cheap."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = {
    "score_blob": [
        {
            "direction": "OUT",
            "type": "queue",
            "name": "closed",
            "queueName": "drift-evaluations",
            "connection": "DataStorage",
        },
        {"direction": "IN", "type": "eventGridTrigger", "name": "event"},
    ],
    "on_model_promoted": [{"direction": "IN", "type": "eventGridTrigger", "name": "event"}],
    "on_model_registered": [
        {
            "direction": "OUT",
            "type": "queue",
            "name": "out",
            "queueName": "model-registrations",
            "connection": "DataStorage",
        },
        {"direction": "IN", "type": "eventGridTrigger", "name": "event"},
    ],
    "mlflow_webhook": [  # queues its message itself (outbox order), no output binding
        {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["POST"],
            "authLevel": "ANONYMOUS",
            "route": "mlflow-webhook",
        },
        {"direction": "OUT", "type": "http", "name": "$return"},
    ],
    "deploy_model_version": [
        {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "msg",
            "queueName": "model-registrations",
            "connection": "DataStorage",
        },
    ],
    "evaluate_drift": [
        {
            "direction": "IN",
            "type": "timerTrigger",
            "name": "timer",
            "schedule": "%SCOREHOOK_DRIFT_SCHEDULE%",
            "runOnStartup": False,
        }
    ],
    "evaluate_drift_window": [
        {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "msg",
            "queueName": "drift-evaluations",
            "connection": "DataStorage",
        },
    ],
    "on_drift_signal": [{"direction": "IN", "type": "eventGridTrigger", "name": "event"}],
    "on_deadletter": [{"direction": "IN", "type": "eventGridTrigger", "name": "event"}],
    "on_batch_job_event": [{"direction": "IN", "type": "eventGridTrigger", "name": "event"}],
    "score_part": [
        {
            "direction": "OUT",
            "type": "queue",
            "name": "closed",
            "queueName": "drift-evaluations",
            "connection": "DataStorage",
        },
        {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "msg",
            "queueName": "scorehook-parts",
            "connection": "DataStorage",
        },
    ],
    "part_poisoned": [
        {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "msg",
            "queueName": "scorehook-parts-poison",
            "connection": "DataStorage",
        },
    ],
    "health": [
        {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "ANONYMOUS",
            "route": "health",
        },
        {"direction": "OUT", "type": "http", "name": "$return"},
    ],
    "status": [
        {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "FUNCTION",
            "route": "status",
        },
        {"direction": "OUT", "type": "http", "name": "$return"},
    ],
    "ops_page": [
        {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "FUNCTION",
            "route": "ops",
        },
        {"direction": "OUT", "type": "http", "name": "$return"},
    ],
    "ops_replay": [
        {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["POST"],
            "authLevel": "FUNCTION",
            "route": "ops/replay",
        },
        {"direction": "OUT", "type": "http", "name": "$return"},
    ],
}


def _index(env: dict[str, str] | None = None) -> dict[str, list[dict]]:
    code = (
        "import json, function_app\n"
        "print(json.dumps({f.get_function_name(): [json.loads(b) for b in f.get_raw_bindings()]"
        " for f in function_app.app.get_functions()}))"
    )
    import os

    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})})  # fmt: skip
    return json.loads(out.stdout)


def test_function_index_is_pinned():
    assert _index({"SCOREHOOK_STREAM_ENABLED": "false"}) == EXPECTED


def test_streaming_is_indexed_only_when_enabled_with_setting_named_hubs_and_a_retry_policy():
    index = _index({"SCOREHOOK_STREAM_ENABLED": "true"})
    assert set(index) - set(EXPECTED) == {"score_stream"}
    assert index["score_stream"] == [
        {"direction": "OUT", "type": "eventHub", "name": "predictions", "connection": "EventHubs",
         "eventHubName": "%SCOREHOOK_STREAM_OUTPUT_HUB%"},
        {"direction": "IN", "type": "eventHubTrigger", "name": "events", "connection": "EventHubs",
         "eventHubName": "%SCOREHOOK_STREAM_HUB%", "cardinality": "MANY",
         "consumerGroup": "%SCOREHOOK_STREAM_CONSUMER_GROUP%"},
    ]  # fmt: skip


def test_shared_never_imports_the_functions_runtime_or_devhost():
    offenders = []
    for path in (ROOT / "shared").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            offenders += [f"{path.name}: {n}" for n in names if n.startswith(("azure.functions", "devhost"))]
    assert offenders == []


def test_importing_function_app_is_fast_and_loads_no_heavy_library():
    code = (
        "import sys, time\n"
        "t = time.process_time(); import function_app; elapsed = time.process_time() - t\n"
        "heavy = [m for m in ('mlflow', 'onnxruntime', 'pyarrow', 'pandas', 'sklearn', 'azure.storage.blob',"
        " 'azure.data.tables', 'azure.eventgrid') if m in sys.modules]\n"
        "print(elapsed, ','.join(heavy))"
    )
    best = None  # CPU time, not wall time: other processes competing for the cores do not count against it
    for _ in range(3):  # best of three: the first run may pay for a cold disk cache
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
        elapsed, heavy = float(out[0]), (out[1] if len(out) > 1 else "")
        assert heavy == "", f"importing function_app loaded {heavy}"
        best = elapsed if best is None else min(best, elapsed)
    assert best < 0.5, f"import function_app took {best:.3f} CPU-seconds"
