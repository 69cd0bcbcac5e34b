"""A probe app for devhost's own tests: each function writes what it received to a blob, so a test can
see over storage what the host delivered; ``always_fails`` raises to exercise retries and dead letters."""

from __future__ import annotations

import contextlib
import json
import os

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _record(kind: str, name: str, payload: dict) -> None:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(os.environ["DataStorage"])
    container = service.get_container_client("probe")
    if not container.exists():
        with contextlib.suppress(Exception):
            container.create_container()
    container.upload_blob(f"{kind}/{name}.json", json.dumps(payload, default=str), overwrite=True)


@app.function_name("on_blob_event")
@app.event_grid_trigger(arg_name="event")
def on_blob_event(event: func.EventGridEvent, context: func.Context) -> None:
    _record(
        "eventgrid",
        event.id,
        {
            "type": type(event).__name__,
            "subject": event.subject,
            "data": event.get_json(),
            "invocation_id": context.invocation_id,
        },
    )


@app.function_name("on_cloud_event")
@app.event_grid_trigger(arg_name="event")
def on_cloud_event(event: func.CloudEvent) -> None:
    _record(
        "cloudevent",
        event.id,
        {"type": type(event).__name__, "source": event.source, "data": event.get_json()},
    )


@app.function_name("on_custom_event")
@app.event_grid_trigger(arg_name="event")
def on_custom_event(event: func.EventGridEvent) -> None:
    _record(
        "custom",
        event.id,
        {"event_type": event.event_type, "subject": event.subject, "data": event.get_json()},
    )


@app.function_name("always_fails")
@app.event_grid_trigger(arg_name="event")
def always_fails(event: func.EventGridEvent) -> None:
    raise RuntimeError(f"simulated failure for {event.subject}")


@app.function_name("on_blob")
@app.blob_trigger(arg_name="blob", path="blobdrop/{name}", connection="DataStorage", source="EventGrid")
def on_blob(blob: func.InputStream) -> None:
    _record(
        "blob",
        blob.name.replace("/", "_"),
        {"name": blob.name, "length": blob.length, "text": blob.read().decode()},
    )


@app.function_name("on_queue")
@app.queue_trigger(arg_name="msg", queue_name="probe-items", connection="DataStorage")
@app.queue_output(arg_name="out", queue_name="probe-results", connection="DataStorage")
def on_queue(msg: func.QueueMessage, out: func.Out[str]) -> None:
    body = msg.get_body().decode()
    if body == "poison":
        raise ValueError("this message always fails")
    _record("queue", msg.id, {"body": body, "dequeue_count": msg.dequeue_count})
    out.set(body.upper())


@app.function_name("tick")
@app.timer_trigger(schedule="*/1 * * * * *", arg_name="timer", run_on_startup=False)
def tick(timer: func.TimerRequest) -> None:
    _record("timer", "tick", {"past_due": timer.past_due})


@app.function_name("echo")
@app.route(route="echo/{name}", methods=["GET", "POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(
            {"name": req.route_params["name"], "body": req.get_body().decode(), "q": req.params.get("q")}
        ),
        mimetype="application/json",
    )
