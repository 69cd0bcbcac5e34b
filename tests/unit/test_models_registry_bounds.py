"""MlflowRegistry's bounds on MLflow's HTTP settings apply to its own calls only (no server needed)."""

from __future__ import annotations

import threading

from shared.adapters.mlflow_registry import bounded_http


def test_bounds_apply_inside_the_block_and_not_to_other_threads_or_after_it(monkeypatch):
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
        MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER,
    )

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "90")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    inside, seen_elsewhere = threading.Event(), []
    done = threading.Event()

    def other_thread():
        inside.wait(10)
        seen_elsewhere.append((MLFLOW_HTTP_REQUEST_TIMEOUT.get(), MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()))
        done.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with bounded_http(2.5, 0):
        assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 2.5
        assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 0
        assert MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER.get() is False
        inside.set()
        assert done.wait(10)
    thread.join(10)
    assert seen_elsewhere == [(90, 7)]  # another thread, at the same moment: the process's own settings
    assert (MLFLOW_HTTP_REQUEST_TIMEOUT.get(), MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()) == (90, 7)


def test_nested_bounds_restore_the_outer_ones():
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_TIMEOUT

    with bounded_http(5, 1):
        with bounded_http(1, 0):
            assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 1
        assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 5
