"""Fixtures and the end-of-session reliability table (see ``tests/reliability/plugin.py``)."""

from __future__ import annotations

from typing import Any

from tests.reliability.plugin import stack, terminal_summary

__all__ = ["stack"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminal_summary(terminalreporter)
