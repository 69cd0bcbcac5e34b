"""Routes: which files are scored, with which model, into what.

A route maps (storage account, container, blob name prefix/suffix) to a model reference, an input format,
an output container and output options. Routes come from the ``SCOREHOOK_ROUTES`` setting (JSON, inline
or ``@path/to/routes.json``); without it there is one route: the input container, scored with
``SCOREHOOK_MODEL_URI`` into the output container. The first matching route wins.

Example:
    >>> routes = parse_routes('[{"name": "churn", "container": "incoming", "prefix": "churn/",'
    ...                       ' "model": "models:/churn@champion", "output_format": "parquet"}]')
    >>> match_route(routes, "devstoreaccount1", "incoming", "churn/2026/a.csv").output_format
    'parquet'
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from shared.engine import FORMATS, OUTPUT_FORMATS
from shared.errors import ConfigurationError, EventSourceError
from shared.settings import Settings

__all__ = ["ON_MISSING", "Route", "load_routes", "match_route", "parse_routes", "serves_container"]

# What a route does with an empty model input (empty cell, NaN, null, an absent JSON key): ``pass`` it to
# the model as NaN (it shows in the drift profile), ``reject_rows`` (drop and count them), or ``fail`` the file.
ON_MISSING = ("pass", "reject_rows", "fail")


@dataclass(frozen=True)
class Route:
    """One route. ``account`` ``None`` means any allowed account."""

    name: str
    container: str
    model: str
    prefix: str = ""
    suffix: str = ""
    account: str | None = None
    input_format: str = "auto"
    output_container: str = "scored"
    output_format: str = "csv"
    key_columns: tuple[str, ...] = ("id",)
    on_missing: str = "pass"
    batch_rows: int = 65536
    label_column: str | None = "label"
    max_file_bytes: int | None = None
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    def matches(self, account: str, container: str, blob_name: str) -> bool:
        return (
            (self.account is None or self.account == account)
            and self.container == container
            and blob_name.startswith(self.prefix)
            and blob_name.endswith(self.suffix)
        )


def _route(raw: dict[str, Any], settings: Settings | None) -> Route:
    known = {f.name for f in fields(Route)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigurationError(f"route {raw.get('name', '?')!r} has unknown keys: {', '.join(unknown)}")
    values = dict(raw)
    if settings is not None:
        values.setdefault("output_container", settings.output_container)
        values.setdefault("model", settings.model_uri)
    if "key_columns" in values:
        values["key_columns"] = tuple(values["key_columns"])
    try:
        route = Route(**values)
    except TypeError as exc:
        raise ConfigurationError(f"route {raw.get('name', '?')!r} is incomplete: {exc}") from exc
    if route.input_format != "auto" and route.input_format not in FORMATS:
        raise ConfigurationError(
            f"route {route.name!r}: input_format must be auto or one of {', '.join(FORMATS)}"
        )
    if route.output_format not in OUTPUT_FORMATS:
        raise ConfigurationError(
            f"route {route.name!r}: output_format must be one of {', '.join(OUTPUT_FORMATS)}"
        )
    if route.on_missing == "reject":  # the name before reject_rows
        route = dataclasses.replace(route, on_missing="reject_rows")
    if route.on_missing not in ON_MISSING:
        raise ConfigurationError(f"route {route.name!r}: on_missing must be one of {', '.join(ON_MISSING)}")
    if route.max_file_bytes is not None and (not isinstance(route.max_file_bytes, int) or route.max_file_bytes < 1):
        raise ConfigurationError(f"route {route.name!r}: max_file_bytes must be a positive integer")
    return route


def parse_routes(text: str, settings: Settings | None = None) -> tuple[Route, ...]:
    """Routes from JSON text (a list of route objects)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"SCOREHOOK_ROUTES is not valid JSON: {exc}") from exc
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise ConfigurationError("SCOREHOOK_ROUTES must be a JSON list of route objects")
    return tuple(_route(r, settings) for r in raw)


def load_routes(settings: Settings) -> tuple[Route, ...]:
    """The configured routes, or the single default route built from the settings."""
    text = settings.routes
    if text:
        return parse_routes(Path(text[1:]).read_text() if text.startswith("@") else text, settings)
    return (Route(name="default", container=settings.input_container, model=settings.model_uri,
                  output_container=settings.output_container),)  # fmt: skip


def serves_container(routes: tuple[Route, ...], account: str, container: str) -> bool:
    """Whether any route reads from this container (events for other containers are ignored, unrecorded).

    Example:
        >>> serves_container(parse_routes('[{"name": "a", "container": "incoming", "model": "m"}]'), "acct", "failed")
        False
    """
    return any(r.container == container and (r.account is None or r.account == account) for r in routes)


def match_route(routes: tuple[Route, ...], account: str, container: str, blob_name: str) -> Route:
    """The first route for a blob, or an ``EventSourceError`` saying that nothing serves it."""
    for route in routes:
        if route.matches(account, container, blob_name):
            return route
    raise EventSourceError(
        f"no route serves {account}/{container}/{blob_name} (routes: "
        + ", ".join(f"{r.name}={r.container}/{r.prefix}*{r.suffix}" for r in routes) + ")",
        account=account, container=container,
    )  # fmt: skip
