"""Timer and queue triggers, run as the Functions host runs them.

* Timers fire on their NCRONTAB schedule (six fields, seconds first), ``runOnStartup`` honoured. Every
  schedule is checked before the first timer starts (:meth:`TimerScheduler.check`: devhost refuses to start
  on a bad one); a timer loop that dies anyway is logged and reported by ``/api/health``
  (:mod:`shared.health`), never silently gone.
* Queue triggers poll their Azurite queue, decode the host's default base64 message encoding, delete a
  message after a successful invocation, and move it to ``<queue>-poison`` after ``maxDequeueCount``
  (5) failed attempts.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
from datetime import datetime
from typing import Any

from devhost.host import FunctionHost, InvocationError
from shared.adapters._azure import transport_options
from shared.health import report_running, report_stopped
from shared.ncrontab import EXPECTED_SCHEDULE, schedule_problem
from shared.settings import configuration_error

__all__ = ["QueuePoller", "TimerScheduler", "next_fire"]

log = logging.getLogger("devhost.triggers")


def next_fire(schedule: str, after: datetime) -> datetime:
    """The next time an NCRONTAB schedule fires after ``after``.

    Example:
        >>> next_fire("0 */15 * * * *", datetime(2026, 1, 1, 10, 7, 30)).isoformat()
        '2026-01-01T10:15:00'
    """
    from croniter import croniter

    fields = schedule.split()
    if len(fields) == 5:  # classic cron is accepted too
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(
            f"NCRONTAB schedule {schedule!r} must have 6 fields (second minute hour day month weekday)"
        )
    return croniter(" ".join([*fields[1:], fields[0]]), after).get_next(datetime)


def _seconds(interval: str | None) -> float:
    hours, minutes, seconds = (float(part) for part in (interval or "00:00:00").split(":"))
    return hours * 3600 + minutes * 60 + seconds


def retry_delay(policy: dict[str, Any], attempt: int) -> float:
    """The wait before retry ``attempt + 1`` under a Functions retry policy.

    Example:
        >>> retry_delay({"strategy": "fixed_delay", "delay_interval": "00:00:10"}, 3)
        10.0
        >>> retry_delay({"strategy": "exponential_backoff", "minimum_interval": "00:00:02",
        ...              "maximum_interval": "00:00:05"}, 2)
        5.0
    """
    if policy.get("strategy") == "exponential_backoff":
        return min(
            _seconds(policy.get("minimum_interval")) * 2**attempt, _seconds(policy.get("maximum_interval"))
        )
    return _seconds(policy.get("delay_interval"))


def resolve_setting(value: str) -> str:
    """``%NAME%`` → the app setting ``NAME`` (as the Functions host resolves binding expressions).

    Example:
        >>> import os; os.environ["DEMO_SCHEDULE"] = "*/5 * * * * *"
        >>> resolve_setting("%DEMO_SCHEDULE%"), resolve_setting("0 0 * * * *")
        ('*/5 * * * * *', '0 0 * * * *')
    """
    if len(value) > 2 and value.startswith("%") and value.endswith("%"):
        name = value[1:-1]
        if name not in os.environ:
            raise KeyError(f"binding expression {value}: app setting {name} is not set")
        return os.environ[name]
    return value


class TimerScheduler:
    """Fires every timer-triggered function of a host on its schedule, in a thread of its own."""

    def __init__(self, host: FunctionHost) -> None:
        self.host = host
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.stopped: dict[str, str] = {}

    def check(self) -> None:
        """Every timer's schedule resolves (``%SETTING%``) and is a 6-field NCRONTAB schedule, or one
        ``ConfigurationError`` listing each bad one (as the Functions host refuses to index them)."""
        problems = []
        for info in self.host.by_trigger("timerTrigger"):
            where = f"timer {info.name} schedule"
            schedule = info.trigger.get("schedule", "")
            try:
                resolved = resolve_setting(schedule)
            except KeyError:
                problems.append({"setting": where, "value": schedule,
                                 "expected": f"expected the app setting {schedule.strip('%')} to be set"})  # fmt: skip
                continue
            problem = schedule_problem(resolved)
            if problem is not None:
                problems.append({"setting": where, "value": resolved,
                                 "expected": f"expected {EXPECTED_SCHEDULE} ({problem})"})  # fmt: skip
        if problems:
            raise configuration_error(problems, "timer schedules")

    def start(self) -> TimerScheduler:
        for info in self.host.by_trigger("timerTrigger"):
            thread = threading.Thread(target=self._run, args=(info,), name=f"timer-{info.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def health(self) -> dict[str, str]:
        """The timers whose loop stopped on an error: name -> the error (empty while all run)."""
        return dict(self.stopped)

    def _run(self, info: Any) -> None:
        component = f"timer:{info.name}"
        report_running(component)
        try:
            if info.trigger.get("runOnStartup"):
                self._fire(info.name)
            while not self._stop.is_set():
                now = datetime.now()
                due = next_fire(resolve_setting(info.trigger["schedule"]), now)
                if self._stop.wait((due - now).total_seconds()):
                    return
                self._fire(info.name)
        except Exception as exc:  # a schedule that stopped resolving, a bug: never a silently dead thread
            error = f"{type(exc).__name__}: {exc}"
            self.stopped[info.name] = error
            report_stopped(component, error)
            log.exception("timer %s stopped: %s", info.name, error)

    def _fire(self, name: str) -> None:
        """One occurrence; a function with ``@app.retry`` is retried as the host does for timers."""
        policy = self.host.get(name).settings.get("retry_policy") or {}
        retries = int(policy.get("max_retry_count", 0))
        for attempt in range(retries + 1):
            try:
                self.host.invoke_timer(name)
                return
            except InvocationError:
                if attempt == retries or self._stop.wait(retry_delay(policy, attempt)):
                    return  # logged by the host; the next occurrence runs as scheduled

    def stop(self) -> None:
        self._stop.set()


class QueuePoller:
    """Polls the queues of queue-triggered functions in Azurite and invokes the functions."""

    def __init__(
        self,
        host: FunctionHost,
        env: dict[str, str] | None = None,
        interval: float = 0.25,
        max_dequeue_count: int = 5,
        visibility_timeout: int = 2,
        exclude: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        self.host, self.env = host, env if env is not None else dict(os.environ)
        self.interval, self.max_dequeue_count, self.visibility_timeout = (
            interval,
            max_dequeue_count,
            visibility_timeout,
        )
        self.exclude = exclude  # queues run elsewhere (the parts queue: devhost.workers processes)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _client(self, connection: str, queue: str) -> Any:
        from azure.storage.queue import QueueClient

        conn = self.env.get(connection or "AzureWebJobsStorage") or self.env.get("AzureWebJobsStorage", "")
        client = QueueClient.from_connection_string(conn, queue, **transport_options())
        try:
            client.create_queue()
        except Exception:  # already there
            pass
        return client

    def start(self) -> QueuePoller:
        for info in self.host.by_trigger("queueTrigger"):
            if info.trigger["queueName"] in self.exclude:
                continue
            thread = threading.Thread(target=self._run, args=(info,), name=f"queue-{info.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self, info: Any) -> None:
        queue_name, connection = info.trigger["queueName"], info.trigger.get("connection", "")
        client = self._client(connection, queue_name)
        poison = self._client(connection, f"{queue_name}-poison")
        while not self._stop.is_set():
            try:
                messages = list(
                    client.receive_messages(max_messages=16, visibility_timeout=self.visibility_timeout)
                )
            except Exception as exc:
                log.warning("polling queue %s failed: %s", queue_name, exc)
                messages = []
            for message in messages:
                self._handle(info, client, poison, message)
            if not messages:
                self._stop.wait(self.interval)

    def _handle(self, info: Any, client: Any, poison: Any, message: Any) -> None:
        try:
            body = base64.b64decode(message.content, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            body = message.content  # not base64: the host would fail; we pass the raw text on
        try:
            self.host.invoke_queue(info.name, body, message.id, message.dequeue_count, message.inserted_on)
        except InvocationError:
            if message.dequeue_count >= self.max_dequeue_count:
                poison.send_message(message.content)
                client.delete_message(message)
                log.warning(
                    "message %s moved to %s-poison after %d attempts",
                    message.id,
                    info.trigger["queueName"],
                    message.dequeue_count,
                )
            return  # otherwise it becomes visible again after the visibility timeout
        client.delete_message(message)

    def stop(self) -> None:
        self._stop.set()
