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


def _timers_app(**schedules: str) -> func.FunctionApp:
    app = func.FunctionApp()
    for name, schedule in schedules.items():

        def tick(timer: func.TimerRequest) -> None:
            pass

        tick.__name__ = name
        app.function_name(name)(app.timer_trigger(schedule=schedule, arg_name="timer")(tick))
    return app


def test_check_lists_every_bad_timer_schedule_and_passes_good_ones(monkeypatch):
    import pytest

    from shared.errors import ConfigurationError

    monkeypatch.setenv("GOOD_SCHEDULE", "*/10 * * * * *")
    monkeypatch.setenv("BAD_SCHEDULE", "0 0 25 * * *")
    monkeypatch.delenv("UNSET_SCHEDULE", raising=False)
    TimerScheduler(FunctionHost(_timers_app(a="0 */5 * * * *", b="%GOOD_SCHEDULE%"))).check()
    host = FunctionHost(_timers_app(ok="%GOOD_SCHEDULE%", five="*/5 * * * *", bad="%BAD_SCHEDULE%",
                                    unset="%UNSET_SCHEDULE%"))  # fmt: skip
    with pytest.raises(ConfigurationError) as info:
        TimerScheduler(host).check()
    message = str(info.value)
    assert message.startswith("3 timer schedules are invalid:")
    assert "timer five schedule='*/5 * * * *': expected a 6-field NCRONTAB schedule" in message
    assert "has 5 fields, not 6" in message
    assert "timer bad schedule='0 0 25 * * *'" in message and "hour: 25 is out of range 0-23" in message
    assert "timer unset schedule='%UNSET_SCHEDULE%': expected the app setting UNSET_SCHEDULE to be set" in message
    assert "timer ok" not in message


def test_a_timer_loop_that_dies_is_logged_and_reported_by_health(monkeypatch, caplog):
    import json
    import logging

    from functions.ops import health
    from shared import health as runtime_health

    monkeypatch.delenv("VANISHED_SCHEDULE", raising=False)
    scheduler = TimerScheduler(FunctionHost(_timers_app(ticker="%VANISHED_SCHEDULE%")))
    try:
        with caplog.at_level(logging.ERROR, logger="devhost.triggers"):
            scheduler.start()
            scheduler._threads[0].join(5)
        assert not scheduler._threads[0].is_alive()
        assert "app setting VANISHED_SCHEDULE is not set" in scheduler.health()["ticker"]
        assert any("timer ticker stopped" in r.getMessage() for r in caplog.records)
        response = health(func.HttpRequest(method="GET", url="/api/health", body=b""))
        body = json.loads(response.get_body())
        assert response.status_code == 503 and body["status"] == "degraded"
        assert "VANISHED_SCHEDULE" in body["stopped"]["timer:ticker"]["error"]
    finally:
        scheduler.stop()
        runtime_health.report_running("timer:ticker")
    response = health(func.HttpRequest(method="GET", url="/api/health", body=b""))
    assert response.status_code == 200 and json.loads(response.get_body())["status"] == "ok"
