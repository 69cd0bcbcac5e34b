"""The session hooks both suites share: the reliability table at the end of the run (only when a suite
collected figures), also written to ``.local/reliability.json``; the shared scoring stack's fixture."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.reliability import figures, harness

_PRINTED: list[bool] = []


@pytest.fixture(scope="session")
def stack(azurite: Any, mlflow_tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Stack]:
    """devhost with the test routes and a trained model, on the session's Azurite and MLflow."""
    yield harness.shared_stack(tmp_path_factory, azurite, mlflow_tracking_uri)
    harness.stop_shared()


def terminal_summary(terminalreporter: Any) -> None:
    if _PRINTED or not figures.FIGURES:
        return
    _PRINTED.append(True)
    table = figures.render()
    for line in table.splitlines():
        terminalreporter.write_line(line)
    figures.write(harness.ROOT_LOCAL / "reliability.json")
