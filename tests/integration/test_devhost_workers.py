"""devhost's part workers on Azurite: a message is kept invisible while its invocation runs (no second delivery
of a slow part), deleted after a success, and moved to ``<queue>-poison`` after ``maxDequeueCount`` failures."""

from __future__ import annotations

import base64
import threading
import time

import azure.functions as func
import pytest

from devhost.host import FunctionHost
from devhost.workers import QueueWorker

pytestmark = pytest.mark.integration


def _app(queue: str, calls: list[str]) -> func.FunctionApp:
    app = func.FunctionApp()

    @app.function_name("work")
    @app.queue_trigger(arg_name="msg", queue_name=queue, connection="DataStorage")
    def work(msg: func.QueueMessage) -> None:
        body = msg.get_body().decode()
        calls.append(body)
        if body == "slow":
            time.sleep(4)  # twice the visibility the worker takes the message with
        if body == "bad":
            raise RuntimeError("always fails")

    return app


def test_a_worker_holds_slow_messages_retries_failures_and_poisons_them_after_the_last_attempt(azurite, unique):
    from azure.storage.queue import QueueClient

    queue, calls = f"work{unique}", []
    env = {"DataStorage": azurite.connection_string, "AzureWebJobsStorage": azurite.connection_string}
    workers = [QueueWorker(FunctionHost(_app(queue, calls)), env, queue, visibility_timeout=2, retry_after=0,
                           max_dequeue_count=2, interval=0.05) for _ in range(2)]  # fmt: skip
    client = QueueClient.from_connection_string(azurite.connection_string, queue)
    for body in ("slow", "bad", "good"):
        client.send_message(base64.b64encode(body.encode()).decode())  # the host's encoding
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    try:
        poison = QueueClient.from_connection_string(azurite.connection_string, f"{queue}-poison")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (calls.count("bad") == 2 and "good" in calls and calls.count("slow")):
            time.sleep(0.1)
        time.sleep(5)  # the slow invocation ends; a second delivery of it would have begun by now
    finally:
        for worker in workers:
            worker.stopping.set()
        for thread in threads:
            thread.join(10)
    assert calls.count("slow") == 1 and calls.count("good") == 1 and calls.count("bad") == 2, calls
    poisoned = [base64.b64decode(m.content).decode() for m in poison.receive_messages()]
    assert poisoned == ["bad"]
    assert client.get_queue_properties().approximate_message_count == 0
