"""The failure reasons are one closed, documented set."""

from __future__ import annotations

import re
from pathlib import Path

import shared.errors as errors

DOC = Path(__file__).resolve().parents[2] / "docs" / "operate.md"


def _input_errors() -> list[type[errors.InputError]]:
    found, todo = [], [errors.InputError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__ == "shared.errors":
                found.append(sub)
            todo.append(sub)
    return found


def test_every_input_error_of_the_tree_has_a_reason_from_the_closed_set():
    missing = {cls.__name__: cls.reason for cls in _input_errors() if cls.reason not in errors.FAILURE_REASONS}
    assert missing == {}


def test_the_operations_guide_documents_exactly_the_closed_set():
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", DOC.read_text(), re.M))
    assert documented == set(errors.FAILURE_REASONS)
