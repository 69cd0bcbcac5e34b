"""An app for devhost's restart tests: ``hold`` notes that it started, then waits (up to a minute) for a
``release`` marker blob before noting that it finished; ``always_fails`` raises. Records go to the
``restart-probe`` container, so a test sees over storage what each devhost process did."""

from __future__ import annotations

import contextlib
import json
import os
import time

import azure.functions as func

app = func.FunctionApp()
RECORDS = "restart-probe"


def _container():
    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(os.environ["DataStorage"]).get_container_client(RECORDS)
    if not container.exists():
        with contextlib.suppress(Exception):
            container.create_container()
    return container


@app.function_name("hold")
@app.event_grid_trigger(arg_name="event")
def hold(event: func.EventGridEvent) -> None:
    container, name = _container(), event.subject.rsplit("/", 1)[-1]
    container.upload_blob(f"started/{name}/{event.id}-{time.time_ns()}", b"", overwrite=True)
    deadline = time.monotonic() + 60
    while not container.get_blob_client("release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.1)
    container.upload_blob(f"done/{name}", json.dumps({"pid": os.getpid(), "event_id": event.id}), overwrite=True)


@app.function_name("always_fails")
@app.event_grid_trigger(arg_name="event")
def always_fails(event: func.EventGridEvent) -> None:
    raise RuntimeError(f"simulated failure for {event.subject}")
