"""Routes: which files are scored, with which model, into what.

A route maps (storage account, container, blob name prefix/suffix) to a model reference, an input format,
an output container and output options. Routes come from the ``SCOREHOOK_ROUTES`` setting (JSON, inline
or ``@path/to/routes.json``); without it there is one route: the input container, scored with
``SCOREHOOK_MODEL_URI`` into the output container. The first matching route wins. A route with
``"engine": "azureml-batch"`` and ``"batch_endpoint"`` (optional ``"batch_deployment"``, and
``"batch_datastore"``: the Azure ML datastore of the route's container, to pass the file as an
``azureml://datastores/...`` path instead of its blob URL) hands its files to an Azure ML batch endpoint
instead of scoring them in the function (``shared/batch_offload.py``). A route with ``"eventhub_output": HUB``
sends, once the output is committed, what ``"eventhub_send"`` lists (``predictions``: one event per output
row; ``telemetry``: one summary per file; both by default) to that Event Hub, for monitoring
(``shared/collection.py``). A route with ``"fanout_bytes"`` (off
by default) splits a CSV or Parquet file larger than that into parts of about ``"part_bytes"`` (32 MiB by
default), each scored by whichever instance takes its queue message, into one output (``shared/fanout.py``).

Example:
    >>> routes = parse_routes('[{"name": "churn", "container": "incoming", "prefix": "churn/",'
    ...                       ' "model": "models:/churn@champion", "output_format": "parquet"}]')
    >>> match_route(routes, "devstoreaccount1", "incoming", "churn/2026/a.csv").output_format
    'parquet'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from shared.engine import FORMATS, OUTPUT_FORMATS
from shared.errors import EventSourceError
from shared.modelrefs import model_reference_problem
from shared.settings import Settings, configuration_error

__all__ = ["ENGINES", "EVENTHUB_SEND", "ON_MISSING", "PARTS_QUEUE", "POISON_QUEUE", "Route", "load_routes", "match_route", "parse_routes", "serves_container"]

# What a route does with an empty model input (empty cell, NaN, null, an absent JSON key): ``pass`` it to
# the model as NaN (it shows in the drift profile), ``reject_rows`` (drop and count them), or ``fail`` the file.
ON_MISSING = ("pass", "reject_rows", "fail")
# The Storage queue of the parts of fanned-out files (one message per part, ``shared/fanout.py``), and where the
# Functions host moves a message after maxDequeueCount attempts. Here, not in shared/fanout.py: the function
# index names them, and importing the app must stay cheap.
PARTS_QUEUE = "scorehook-parts"
POISON_QUEUE = f"{PARTS_QUEUE}-poison"
# Who scores a route's files: ``local`` (this app's engine, in the function) or ``azureml-batch`` (an Azure ML
# batch endpoint, ``batch_endpoint`` and optional ``batch_deployment``; see ``shared/batch_offload.py``).
ENGINES = ("local", "azureml-batch")
# Azure ML endpoint and deployment names: a letter, then letters, digits and hyphens, 3-32 characters.
_AZUREML_NAME = re.compile(r"[A-Za-z][-A-Za-z0-9]{2,31}")
_DATASTORE = re.compile(r"[A-Za-z0-9_]{1,255}")  # an Azure ML datastore name
# What a route with ``eventhub_output`` sends there: the output's rows, and a telemetry summary of the file.
EVENTHUB_SEND = ("predictions", "telemetry")
_HUB = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,255}")  # an Event Hub name
_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")


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
    engine: str = "local"
    batch_endpoint: str | None = None
    batch_deployment: str | None = None
    batch_datastore: str | None = None
    eventhub_output: str | None = None
    eventhub_send: tuple[str, ...] = EVENTHUB_SEND
    fanout_bytes: int | None = None
    part_bytes: int = 32 << 20
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    def matches(self, account: str, container: str, blob_name: str) -> bool:
        return (
            (self.account is None or self.account == account)
            and self.container == container
            and blob_name.startswith(self.prefix)
            and blob_name.endswith(self.suffix)
        )


def _route(raw: dict[str, Any], settings: Settings | None, problems: list[dict[str, Any]]) -> Route | None:
    """One route from its JSON object; every problem it has goes into ``problems`` (``None`` if any)."""
    where = f"SCOREHOOK_ROUTES[{raw.get('name', '?')}]"
    found = len(problems)

    def problem(key: str | None, value: Any, expected: str) -> None:
        problems.append({"setting": f"{where}.{key}" if key else where, "value": value, "expected": expected})

    known = [f.name for f in fields(Route)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        problem(None, ", ".join(unknown), f"expected only the keys {', '.join(known)}")
    values = {key: value for key, value in raw.items() if key in known}
    if settings is not None:
        values.setdefault("output_container", settings.output_container)
        values.setdefault("model", settings.model_uri)
    missing = [key for key in ("name", "container", "model") if key not in values]
    if missing:
        problem(None, ", ".join(missing), "expected a route object with name, container and model (missing)")
        return None
    typed = len(problems)
    for key in ("name", "container", "model", "prefix", "suffix", "input_format", "output_container",
                "output_format", "on_missing", "engine"):  # fmt: skip
        if key in values and not isinstance(values[key], str):
            problem(key, values[key], "expected text")
    for key in ("account", "label_column", "batch_endpoint", "batch_deployment", "batch_datastore", "eventhub_output"):
        if values.get(key) is not None and not isinstance(values[key], str):
            problem(key, values[key], "expected text or null")
    if len(problems) > typed:
        return None
    for key in ("container", "output_container"):
        if key in values and not _CONTAINER.fullmatch(values[key]):
            problem(key, values[key], "expected a container name: 3-63 lowercase letters, digits and single hyphens")
    reference_problem = model_reference_problem(values["model"])
    if reference_problem is not None:
        problem("model", values["model"], reference_problem)
    if "key_columns" in values:
        columns = values["key_columns"]
        if not isinstance(columns, list | tuple) or not all(isinstance(c, str) and c for c in columns):
            problem("key_columns", columns, "expected a list of column names")
        else:
            values["key_columns"] = tuple(columns)
    input_format = values.get("input_format", "auto")
    if input_format != "auto" and input_format not in FORMATS:
        problem("input_format", input_format, f"expected auto or one of {', '.join(FORMATS)}")
    if values.get("output_format", "csv") not in OUTPUT_FORMATS:
        problem("output_format", values["output_format"], f"expected one of {', '.join(OUTPUT_FORMATS)}")
    if values.get("on_missing") == "reject":  # the name before reject_rows
        values["on_missing"] = "reject_rows"
    if values.get("on_missing", "pass") not in ON_MISSING:
        problem("on_missing", values["on_missing"], f"expected one of {', '.join(ON_MISSING)}")
    for key, required in (("max_file_bytes", False), ("batch_rows", True), ("fanout_bytes", False),
                          ("part_bytes", True)):  # fmt: skip
        value = values.get(key)
        if (value is not None or required) and key in values and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            problem(key, value, "expected a positive whole number")
    _engine_problems(values, problem)
    _eventhub_problems(values, problem)
    if "options" in values and not isinstance(values["options"], dict):
        problem("options", values["options"], "expected an object")
    if len(problems) > found:
        return None
    return Route(**values)


def _engine_problems(values: dict[str, Any], problem: Any) -> None:
    """``engine`` is one of ``ENGINES``; ``azureml-batch`` needs ``batch_endpoint``, and only it takes the batch keys."""
    engine = values.get("engine", "local")
    if engine not in ENGINES:
        problem("engine", engine, f"expected one of {', '.join(ENGINES)}")
        return
    for key in ("batch_endpoint", "batch_deployment", "batch_datastore"):
        name = values.get(key)
        if name is None:
            continue
        if engine != "azureml-batch":
            problem(key, name, "expected only with engine azureml-batch")
        elif key == "batch_datastore" and not _DATASTORE.fullmatch(name):
            problem(key, name, "expected an Azure ML datastore name: letters, digits and underscores")
        elif key != "batch_datastore" and not _AZUREML_NAME.fullmatch(name):
            problem(key, name, "expected an Azure ML name: a letter, then letters, digits or hyphens (3-32)")
    if engine == "azureml-batch" and values.get("batch_endpoint") is None:
        problem("batch_endpoint", None, "expected the batch endpoint's name with engine azureml-batch")


def _eventhub_problems(values: dict[str, Any], problem: Any) -> None:
    """``eventhub_output`` is an Event Hub name; ``eventhub_send`` a non-empty list of ``EVENTHUB_SEND`` items."""
    hub = values.get("eventhub_output")
    if hub is not None and (not _HUB.fullmatch(hub) or ".." in hub):
        problem("eventhub_output", hub, "expected an Event Hub name: letters, digits, '.', '_' or '-' (1-256)")
    if hub is not None and values.get("engine", "local") != "local":
        problem("eventhub_output", hub, "expected only with engine local (the function writes the output)")
    if "eventhub_send" not in values:
        return
    send = values["eventhub_send"]
    if isinstance(send, str):
        send = [send]
    if not isinstance(send, list | tuple) or not send or any(s not in EVENTHUB_SEND for s in send):
        problem("eventhub_send", values["eventhub_send"], f"expected a non-empty list of {', '.join(EVENTHUB_SEND)}")
    elif hub is None:
        problem("eventhub_send", values["eventhub_send"], "expected only with eventhub_output")
    else:
        values["eventhub_send"] = tuple(dict.fromkeys(send))


def parse_routes(text: str, settings: Settings | None = None) -> tuple[Route, ...]:
    """Routes from JSON text (a list of route objects); one ``ConfigurationError`` lists every problem.

    Example:
        >>> parse_routes('[{"name": "a", "container": "in", "model": "model:/x"}]')
        Traceback (most recent call last):
        ...
        shared.errors.ConfigurationError: 2 route settings are invalid:
          SCOREHOOK_ROUTES[a].container='in': expected a container name: 3-63 lowercase letters, digits and single hyphens
          SCOREHOOK_ROUTES[a].model='model:/x': expected models:/NAME@ALIAS, models:/NAME/VERSION or blob://CONTAINER/PATH.onnx
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise configuration_error(
            [{"setting": "SCOREHOOK_ROUTES", "value": text[:80], "expected": f"expected JSON (not valid JSON: {exc})"}],
            "route settings",
        ) from None
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise configuration_error(
            [{"setting": "SCOREHOOK_ROUTES", "value": text[:80], "expected": "expected a JSON list of route objects"}],
            "route settings",
        )
    problems: list[dict[str, Any]] = []
    routes = [_route(r, settings, problems) for r in raw]
    names = [r["name"] for r in raw if isinstance(r.get("name"), str)]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append({"setting": f"SCOREHOOK_ROUTES[{name}]", "value": name, "expected": "expected unique route names"})
    if problems:
        raise configuration_error(problems, "route settings")
    return tuple(r for r in routes if r is not None)


def load_routes(settings: Settings) -> tuple[Route, ...]:
    """The configured routes, or the single default route built from the settings."""
    text = settings.routes
    if text:
        if text.startswith("@"):
            try:
                text = Path(text[1:]).read_text()
            except OSError as exc:
                expected = f"expected inline JSON or @FILE of a readable file ({exc.strerror})"
                problem = {"setting": "SCOREHOOK_ROUTES", "value": settings.routes, "expected": expected}
                raise configuration_error([problem], "route settings") from None
        return parse_routes(text, settings)
    return (Route(name="default", container=settings.input_container, model=settings.model_uri,
                  output_container=settings.output_container),)  # fmt: skip


def serves_container(routes: tuple[Route, ...], account: str, container: str) -> bool:
    """Whether any route reads from this container (events for other containers are ignored, unrecorded).

    Example:
        >>> serves_container(parse_routes('[{"name": "a", "container": "incoming", "model": "models:/m/1"}]'), "acct", "failed")
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
