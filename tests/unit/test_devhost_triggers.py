"""devhost's timer host behaviour, on a FunctionApp built in the test (no storage needed)."""

from __future__ import annotations

import azure.functions as func

from devhost.host import FunctionHost
from devhost.triggers import TimerScheduler


def _app(fail_times: int, calls: list[bool], retry: bool) -> func.FunctionApp:
    app = func.FunctionApp()

    def tick(timer: func.TimerRequest) -> None:
        calls.append(timer.past_due)
        if len(calls) <= fail_times:
            raise RuntimeError("flaky")

    decorated = app.function_name("tick")(app.timer_trigger(schedule="0 0 * * * *", arg_name="timer")(tick))
    if retry:
        app.retry(strategy="fixed_delay", max_retry_count="3", delay_interval="00:00:00")(decorated)
    return app


def test_a_timer_with_a_retry_policy_is_retried_until_it_succeeds():
    calls: list[bool] = []
    TimerScheduler(FunctionHost(_app(2, calls, retry=True)))._fire("tick")
    assert calls == [False, False, False]


def test_a_timer_without_a_retry_policy_runs_once_per_occurrence():
    calls: list[bool] = []
    TimerScheduler(FunctionHost(_app(2, calls, retry=False)))._fire("tick")
    assert calls == [False]
