"""NCRONTAB schedules as Azure Functions' timer trigger reads them: six fields, seconds first.

``second minute hour day month day-of-week``; each field is ``*``, a value, a range ``a-b``, a step
(``*/n``, ``a-b/n``, ``a/n``) or a comma-separated list of those; months may be ``jan``..``dec`` and days of
the week ``sun``..``sat`` (0 = Sunday, as NCrontab counts). The Functions host parses the schedule itself;
this check only lets a bad one stop the app at start instead of surfacing when the timer would fire.

Example:
    >>> check_schedule("0 */5 * * * *")
    >>> schedule_problem("*/5 * * * *")
    'has 5 fields, not 6'
    >>> schedule_problem("0 0 25 * * *")
    'hour: 25 is out of range 0-23'
"""

from __future__ import annotations

import re

__all__ = ["EXPECTED_SCHEDULE", "check_schedule", "schedule_problem"]

EXPECTED_SCHEDULE = "a 6-field NCRONTAB schedule (second minute hour day month day-of-week), e.g. '0 */5 * * * *'"

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# name, lowest, highest, names (their index + lowest is the value)
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _DAYS),
)
_ITEM = re.compile(r"^(?P<range>\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(?P<step>[0-9]+))?$")


def _value(text: str, field: tuple[str, int, int, tuple[str, ...]]) -> int:
    name, low, high, names = field
    if text.isdigit():
        value = int(text)
    elif text in names:
        value = names.index(text) + low
    else:
        raise ValueError(f"{name}: {text!r} is not a number" + (f" or a name ({names[0]}..{names[-1]})" if names else ""))
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is out of range {low}-{high}")
    return value


def _check_field(text: str, field: tuple[str, int, int, tuple[str, ...]]) -> None:
    name = field[0]
    for item in text.lower().split(","):
        match = _ITEM.match(item)
        if not match:
            raise ValueError(f"{name}: {item!r} is not *, a value, a range a-b or a step */n")
        if match["step"] is not None and int(match["step"]) == 0:
            raise ValueError(f"{name}: step {item!r} must be at least 1")
        if match["range"] == "*":
            continue
        first, _, last = match["range"].partition("-")
        if _value(first, field) > (_value(last, field) if last else field[2]):
            raise ValueError(f"{name}: range {item!r} runs backwards")


def schedule_problem(schedule: str) -> str | None:
    """What is wrong with an NCRONTAB schedule, or ``None`` when the host will accept it.

    Example:
        >>> schedule_problem("*/10 * * * * mon-fri") is None
        True
    """
    fields = (schedule or "").split()
    if len(fields) != 6:
        return f"has {len(fields)} fields, not 6"
    for text, field in zip(fields, _FIELDS, strict=True):
        try:
            _check_field(text, field)
        except ValueError as exc:
            return str(exc)
    return None


def check_schedule(schedule: str) -> None:
    """Raise ``ValueError`` saying what is wrong with a schedule (and the expected form); quiet when valid."""
    problem = schedule_problem(schedule)
    if problem is not None:
        raise ValueError(f"NCRONTAB schedule {schedule!r} {problem if problem.startswith('has') else '- ' + problem}")
