"""Figures the reliability and security suites collect, printed as one table at the end of the session and
written to ``.local/reliability.json``.

Tests call :func:`add` *before* they assert, so a failing run still shows its numbers.

Example (on a copy: the session's figures stay as they are):
    >>> saved = dict(FIGURES)
    >>> reset(); add("storm", delivered=12, files=3, lost=0); add("storm", delivered=4, files=1)
    >>> FIGURES["storm"]["delivered"], FIGURES["storm"]["files"]
    (16, 4)
    >>> reset(); FIGURES.update(saved)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["FIGURES", "add", "render", "reset", "set_value", "write"]

FIGURES: dict[str, dict[str, Any]] = {}
_SUMMED = {"delivered", "files", "outputs", "duplicates", "lost", "failed_with_reason", "partial_visible",
           "injected", "survived", "cases", "handled", "crashes"}  # fmt: skip


def reset() -> None:
    FIGURES.clear()


def add(section: str, **values: Any) -> None:
    """Add counts to a section (numbers in ``_SUMMED`` add up, anything else is replaced)."""
    bucket = FIGURES.setdefault(section, {})
    for key, value in values.items():
        if key in _SUMMED and isinstance(value, int | float):
            bucket[key] = bucket.get(key, 0) + value
        else:
            bucket[key] = value


def set_value(section: str, key: str, value: Any) -> None:
    FIGURES.setdefault(section, {})[key] = value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, list):
        return ", ".join(map(str, value[:8])) + (" ..." if len(value) > 8 else "")
    return str(value)


def render() -> str:
    """The one table: invariants (summed over every run that delivered files), faults, corpus, burst."""
    runs = [s for s in FIGURES.values() if "files" in s]
    total = {k: sum(s.get(k, 0) for s in runs) for k in
             ("delivered", "files", "outputs", "duplicates", "lost", "failed_with_reason", "partial_visible")}  # fmt: skip
    faults = FIGURES.get("faults", {})
    corpus = FIGURES.get("corpus", {})
    burst = FIGURES.get("burst", {})
    crashes = sum(s.get("crashes", 0) for s in FIGURES.values())
    rows = [
        ("delivered (deliveries)", total["delivered"]), ("files", total["files"]), ("outputs", total["outputs"]),
        ("duplicates", total["duplicates"]), ("lost", total["lost"]),
        ("failed with reason", total["failed_with_reason"]), ("partial visible", total["partial_visible"]),
        ("faults injected / survived", f"{faults.get('injected', 0)} / {faults.get('survived', 0)}"),
        ("corpus cases handled", f"{corpus.get('handled', 0)} / {corpus.get('cases', 0)}"),
        ("burst files/s", burst.get("files_per_s", "-")),
        ("burst p50 / p99 event->output s", f"{_fmt(burst.get('p50_s', '-'))} / {_fmt(burst.get('p99_s', '-'))}"),
        ("burst peak RSS MB (devhost)", burst.get("peak_rss_mb", "-")),
        ("host crashes", crashes),
    ]  # fmt: skip
    for name, section in sorted(FIGURES.items()):
        if "files" in section:
            rows.append((f"  run {name}", " ".join(f"{k}={_fmt(v)}" for k, v in section.items() if k != "notes")))
    if faults.get("failed"):
        rows.append(("  faults not survived", _fmt(faults["failed"])))
    if corpus.get("failed"):
        rows.append(("  corpus cases not handled", _fmt(corpus["failed"])))
    width = max(len(r[0]) for r in rows)
    line = "-" * (width + 40)
    return "\n".join(["", "Reliability", line, *(f"{k:<{width}}  {_fmt(v)}" for k, v in rows), line])


def write(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(FIGURES, indent=2, default=str))
