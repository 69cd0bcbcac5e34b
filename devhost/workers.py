"""Queue workers for the fan-out parts queue, each in a process of its own, as several Functions instances.

The Functions host keeps a message it is processing invisible (it renews the visibility while the function
runs), deletes it after a success, makes it visible again ``visibilityTimeout`` after a failure, and moves it
to ``<queue>-poison`` once ``maxDequeueCount`` deliveries failed. A worker here does the same for the parts
queue (``shared.fanout.PARTS_QUEUE``), one message at a time (host.json ``batchSize`` 1): a worker process
that dies leaves its message invisible until the visibility it was given runs out, then another worker
takes it (and the part's lease, expired by then). ``DEVHOST_PART_WORKERS`` sets how many (default 2; 0: the
in-process queue poller runs the parts queue like any other).

Example:
    >>> workers = PartWorkers(env, count=2).start()   # doctest: +SKIP
    >>> workers.pids()                                # doctest: +SKIP
    [41234, 41235]
    >>> workers.stop()                                # doctest: +SKIP

Run one worker by hand: ``python -m devhost.workers`` (app settings from the environment).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Any

from shared.routes import PARTS_QUEUE

__all__ = ["DEFAULT_WORKERS", "PartWorkers", "QueueWorker", "worker_count"]

log = logging.getLogger("devhost.workers")
DEFAULT_WORKERS = 2


def worker_count(env: dict[str, str]) -> int:
    """``DEVHOST_PART_WORKERS`` (default 2).

    Example:
        >>> worker_count({}), worker_count({"DEVHOST_PART_WORKERS": "4"})
        (2, 4)
    """
    try:
        return max(0, int(env.get("DEVHOST_PART_WORKERS") or DEFAULT_WORKERS))
    except ValueError:
        return DEFAULT_WORKERS


class PartWorkers:
    """``count`` worker processes on the parts queue, started and stopped together (by their own pids)."""

    def __init__(self, env: dict[str, str], count: int = DEFAULT_WORKERS, queue: str = PARTS_QUEUE,
                 app_spec: str = "function_app:app") -> None:  # fmt: skip
        self.env, self.count, self.queue, self.app_spec = dict(env), count, queue, app_spec
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> PartWorkers:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for index in range(self.count):
            env = {**os.environ, **self.env, "DEVHOST_WORKER_INDEX": str(index)}
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "devhost.workers", "--queue", self.queue, "--app", self.app_spec],
                cwd=root, env=env,
            ))  # fmt: skip
        log.info("%d part workers started on %s: %s", self.count, self.queue, self.pids())
        return self

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self, timeout: float = 10) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


class QueueWorker:
    """One message at a time from ``queue``, invoking the function it triggers as the Functions host does."""

    def __init__(self, host: Any, env: dict[str, str], queue: str = PARTS_QUEUE, *, visibility_timeout: float = 30,
                 retry_after: float = 30, max_dequeue_count: int = 5, interval: float = 0.25) -> None:  # fmt: skip
        from azure.storage.queue import QueueClient

        (info,) = [f for f in host.by_trigger("queueTrigger") if f.trigger["queueName"] == queue]
        self.host, self.info = host, info
        connection = env.get(info.trigger.get("connection") or "AzureWebJobsStorage") or env["AzureWebJobsStorage"]
        from shared.adapters._azure import transport_options

        self.client = QueueClient.from_connection_string(connection, queue, **transport_options())
        self.poison = QueueClient.from_connection_string(connection, f"{queue}-poison", **transport_options())
        for client in (self.client, self.poison):
            try:
                client.create_queue()
            except Exception:  # already there
                pass
        self.visibility, self.retry_after = int(max(1, visibility_timeout)), int(max(0, retry_after))
        self.max_dequeue_count, self.interval = max_dequeue_count, interval
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                messages = list(self.client.receive_messages(max_messages=1, visibility_timeout=self.visibility))
            except Exception as exc:
                log.warning("polling queue %s failed: %s", self.client.queue_name, exc)
                messages = []
            for message in messages:
                self.handle(message)
            if not messages:
                self.stopping.wait(self.interval)

    def handle(self, message: Any) -> None:
        from devhost.host import InvocationError

        try:
            body = base64.b64decode(message.content, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            body = message.content
        held = _Invisible(self.client, message, self.visibility).start()
        try:
            self.host.invoke_queue(self.info.name, body, message.id, message.dequeue_count, message.inserted_on)
        except InvocationError:
            receipt = held.stop()
            if message.dequeue_count >= self.max_dequeue_count:
                self.poison.send_message(message.content)
                self.client.delete_message(message.id, receipt)
                log.warning("message %s moved to %s-poison after %d attempts", message.id, self.client.queue_name,
                            message.dequeue_count)  # fmt: skip
            else:  # visible again after the host's visibilityTimeout
                self.client.update_message(message.id, receipt, visibility_timeout=self.retry_after)
            return
        self.client.delete_message(message.id, held.stop())


class _Invisible:
    """Keeps a message invisible while it is processed, renewing its visibility every third of it."""

    def __init__(self, client: Any, message: Any, visibility: int) -> None:
        self.client, self.id, self.receipt, self.visibility = client, message.id, message.pop_receipt, visibility
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="devhost-visibility", daemon=True)

    def start(self) -> _Invisible:
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(max(self.visibility / 3, 0.2)):
            try:
                updated = self.client.update_message(self.id, self.receipt, visibility_timeout=self.visibility)
                self.receipt = updated.pop_receipt
            except Exception as exc:  # the message is gone or taken: the invocation goes on regardless
                log.warning("could not keep message %s invisible: %s", self.id, exc)

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        return str(self.receipt)


def main(argv: list[str] | None = None) -> int:
    """One worker process: index the app, then take the queue's messages one at a time until SIGTERM."""
    import argparse
    import json

    from devhost.hostconfig import HostConfig, parse_timespan
    from devhost.runtime import HOST_JSON, _OutputSink

    parser = argparse.ArgumentParser(prog="python -m devhost.workers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", default=PARTS_QUEUE)
    parser.add_argument("--app", default="function_app:app")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    config = HostConfig.load(HOST_JSON, env)
    from devhost.host import FunctionHost
    from devhost.logconfig import configure_devhost_logging

    configure_devhost_logging()
    host = FunctionHost.load(args.app, output_sink=_OutputSink(env), function_timeout=config.function_timeout)
    try:  # host.json extensions.queues: the retry delay and the attempts before the poison queue
        queues = json.loads(HOST_JSON.read_text()).get("extensions", {}).get("queues", {})
    except (OSError, ValueError, AttributeError):
        queues = {}
    retry = parse_timespan(str(queues.get("visibilityTimeout") or "00:00:30")) or 0.0
    # how long a message stays hidden from the others while a worker holds it (renewed; a killed worker's
    # message comes back after it)
    visibility = float(env.get("DEVHOST_PART_VISIBILITY_SECONDS") or 30)
    worker = QueueWorker(host, env, args.queue, visibility_timeout=visibility,
                         retry_after=float(env.get("DEVHOST_PART_RETRY_SECONDS") or retry),
                         max_dequeue_count=int(env.get("DEVHOST_PART_MAX_DEQUEUE") or queues.get("maxDequeueCount") or 5))  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: worker.stopping.set())
    log.info("part worker %s on %s (pid %d)", env.get("DEVHOST_WORKER_INDEX", "-"), args.queue, os.getpid())
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
