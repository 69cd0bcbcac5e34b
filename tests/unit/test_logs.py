"""Structured logs: one JSON object per line, correlation fields bound through contextvars."""

from __future__ import annotations

import contextvars
import io
import json
import threading

from shared.logs import bind, capture_logs, configure_logging, get_logger


def test_bound_fields_reach_every_line_and_unbind_after_the_block():
    log = get_logger("test")
    with capture_logs() as records:
        with bind(event_id="e-1", invocation_id="i-1"):
            log.info("outer")
            with bind(model="m", model_version="3"):
                log.info("inner", extra={"rows": 10})
        log.info("after")
    assert records[0]["event_id"] == "e-1" and "model" not in records[0]
    assert records[1] | {"rows": 10} == records[1]
    assert (records[1]["model"], records[1]["model_version"], records[1]["invocation_id"]) == (
        "m",
        "3",
        "i-1",
    )
    assert "event_id" not in records[2]


def test_context_does_not_leak_between_threads():
    log, seen = get_logger("test"), {}

    def worker(name: str) -> None:
        with bind(event_id=name):
            log.info("working")
            seen[name] = True

    with capture_logs() as records:
        threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(worker, f"e-{i}")) for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(r["event_id"] for r in records) == ["e-0", "e-1", "e-2", "e-3"]


def test_configured_handler_writes_one_json_object_per_line_with_exception():
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    log = get_logger("test")
    with bind(blob="incoming/a.csv"):
        log.debug("hidden")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed", extra={"reason": "bad"})
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert line["level"] == "error" and line["message"] == "failed" and line["blob"] == "incoming/a.csv"
    assert line["error_type"] == "ValueError" and "boom" in line["exception"]
    assert line["time"].endswith("Z")
