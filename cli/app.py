"""``scorehook``: what happened, and why; run it again.

Tables by default; ``--json`` prints JSON only (one document, or JSON lines for ``replay`` and
``deadletters``), errors are one line on stderr. Settings: ``--settings FILE`` (or ``SCOREHOOK_SETTINGS``),
else ``./local.settings.json``, overridden by the environment.

Exit status (every command): 0 ok; 1 a finding or a failure (a failed file, drift, nothing known, an
unexpected error); 2 usage or refused (bad arguments, an approval or rollback refused); 3 configuration
(a bad or missing setting, no settings file); 4 a service unreachable (Storage, MLflow, devhost) or no
answer within ``--timeout`` seconds. ``drift compare`` keeps its own: 0 no drift, 1 drift, 2 error,
3 insufficient data.

Example:
    >>> main(["status", "--json"])   # doctest: +SKIP
    0
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from shared.errors import ConfigurationError, ScorehookError, TransientError

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FINDING",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Services",
    "main",
    "run",
]

EXIT_OK, EXIT_FINDING, EXIT_USAGE, EXIT_CONFIG, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
DEFAULT_TIMEOUT = 60.0


class CliError(Exception):
    """A one-line error with its exit status."""

    def __init__(self, message: str, code: int = EXIT_FINDING) -> None:
        super().__init__(message)
        self.code = code


class Unreachable(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_UNREACHABLE)


# -- output ------------------------------------------------------------------------------------------------
def printable(text: Any) -> str:
    """Untrusted text (names from events) for a terminal: control characters escaped.

    Example:
        >>> printable("a\\x1b[2Jb")
        'a\\\\x1b[2Jb'
    """
    text = "" if text is None else str(text)
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        raise BrokenPipeError  # main() ends the command quietly (rich would exit 1)


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    terminal = hasattr(stream, "isatty") and stream.isatty()
    width = None if terminal else int(os.environ.get("COLUMNS", "0") or 0) or 400
    return _Console(file=stream, highlight=False, soft_wrap=not terminal, width=width, emoji=False,
                   color_system="auto" if terminal else None)  # fmt: skip


def cell(value: Any, style: str | None = None) -> Text:
    """A table cell: never rich markup, control characters escaped, ``-`` for nothing."""
    if value is None or value == "":
        return Text("-", style="dim")
    if isinstance(value, float):
        value = f"{value:.4g}"
    return Text(printable(value), style=style or "")


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    result = Table(title=title, title_justify="left", header_style="bold", show_edge=False, pad_edge=False)
    for column in columns:
        result.add_column(column, overflow="fold")
    for row in rows:
        result.add_row(*[v if isinstance(v, Text) else cell(v) for v in row])
    return result


def duration(ms: float | None) -> str | None:
    """Milliseconds for a person.

    Example:
        >>> duration(12.34), duration(4200), duration(185000), duration(2 * 86400e3 + 3600e3)
        ('12.3 ms', '4.2 s', '3m 05s', '2d 1h')
    """
    if ms is None:
        return None
    if ms < 1000:
        return f"{ms:.1f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d {int(seconds % 86400 // 3600)}h"


def _short_time(at: str | None) -> str | None:
    """An ISO time to the millisecond, UTC as ``Z``.

    Example:
        >>> _short_time("2026-12-01T10:00:00.123456+00:00"), _short_time("2026-12-01T10:00:00+00:00")
        ('2026-12-01T10:00:00.123Z', '2026-12-01T10:00:00Z')
    """
    if not at:
        return None
    text = at.replace("+00:00", "Z")
    if "." in text and text.endswith("Z"):
        head, fraction = text[:-1].split(".", 1)
        text = f"{head}.{fraction[:3]}Z"
    return text


_STATE_STYLE = {"scored": "green", "failed_open": "red", "failed_resolved": "yellow", "retrying": "yellow",
                "dead_lettered": "red", "in_progress": "cyan", "error": "red", "warning": "yellow", "ok": "green"}  # fmt: skip


class Out:
    """Where a command writes: JSON or tables on stdout, messages on stderr."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json
        self.stdout = _console()
        self.stderr = _console(stderr=True)

    def document(self, doc: Any) -> None:
        sys.stdout.write(json.dumps(doc, default=str) + "\n")

    def show(self, *renderables: Any) -> None:
        for renderable in renderables:
            self.stdout.print(renderable)

    def note(self, message: str) -> None:
        """A remark for a person (stderr: stdout stays JSON-clean)."""
        self.stderr.print(Text(printable(message)))


# -- services ----------------------------------------------------------------------------------------------
class Services:
    """Builds the use cases once per run from the settings; tests pass their own (fakes)."""

    def __init__(self, settings_path: str | None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.settings_path, self.timeout = settings_path, timeout
        self._cache: dict[str, Any] = {}

    def _once(self, name: str, build: Callable[[], Any]) -> Any:
        if name not in self._cache:
            self._cache[name] = build()
        return self._cache[name]

    @property
    def settings(self) -> Any:
        from cli.config import load_settings

        return self._once("settings", lambda: load_settings(self.settings_path))

    def document(self) -> dict[str, Any]:
        from cli.config import settings_document

        return settings_document(self.settings_path)

    def _reachable(self, what: str) -> None:
        """Fail fast (exit 4) when a service's port does not answer: no minutes of SDK retries."""
        settings = self.settings
        if what == "storage":
            endpoint = _blob_endpoint(settings)
            label = "Storage"
        else:
            endpoint = settings.mlflow_tracking_uri
            label = "MLflow"
        if not endpoint or not endpoint.startswith(("http://", "https://")):
            return
        parsed = urllib.parse.urlparse(endpoint)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            with socket.create_connection(
                (parsed.hostname or "localhost", port), timeout=min(5.0, self.timeout)
            ):
                pass
        except OSError as exc:
            raise Unreachable(f"{label} at {parsed.hostname}:{port} is unreachable ({exc.strerror or exc}); "
                              "is the local stack up (make run)?") from None  # fmt: skip

    def scoring(self) -> Any:
        def build() -> Any:
            from shared.services import build_scoring_service

            self._reachable("storage")
            return build_scoring_service(self.settings)

        return self._once("scoring", build)

    def deployment(self) -> Any:
        def build() -> Any:
            from shared.services import build_deployment_service

            self._reachable("storage")
            self._reachable("mlflow")
            return build_deployment_service(self.settings)

        return self._once("deployment", build)

    def drift(self) -> Any:
        def build() -> Any:
            from shared.services import build_drift_monitor

            self._reachable("storage")
            self._reachable("mlflow")
            return build_drift_monitor(self.settings)

        return self._once("drift", build)

    def view(self, registry: bool = True) -> Any:
        """The ops view on the scoring service; without a reachable MLflow, without the registry."""

        def build() -> Any:
            from shared.opsview import OpsView

            scoring = self.scoring()
            view = OpsView.for_scoring(scoring)
            if registry:
                try:
                    self._reachable("mlflow")
                except Unreachable as exc:
                    view.registry = _DownRegistry(str(exc))
            return view

        return self._once(f"view-{registry}", build)

    def blobs(self) -> Any:
        def build() -> Any:
            from shared.adapters import AzureBlobStore

            self._reachable("storage")
            return AzureBlobStore.from_settings(self.settings)

        return self._once("blobs", build)


class _DownRegistry:
    """The registry when MLflow does not answer: every question says so (status still shows the rest)."""

    def __init__(self, why: str) -> None:
        self.why = why

    def _down(self, *args: Any, **kwargs: Any) -> Any:
        from shared.errors import RegistryUnavailableError

        raise RegistryUnavailableError(self.why)

    alias_version = resolve = set_alias = set_tags = read_artifact = download = _down


def _blob_endpoint(settings: Any) -> str | None:
    if settings.data_connection_string:
        parts = dict(p.split("=", 1) for p in settings.data_connection_string.split(";") if "=" in p)
        if parts.get("BlobEndpoint"):
            return str(parts["BlobEndpoint"])
        if parts.get("UseDevelopmentStorage", "").lower() == "true":
            return "http://127.0.0.1:10000"
        account = parts.get("AccountName")
        return (
            f"https://{account}.blob.{parts.get('EndpointSuffix', 'core.windows.net')}" if account else None
        )
    return settings.data_blob_service_uri


class _Expired(BaseException):
    """Raised by the alarm: a BaseException, so no ``except Exception`` of the code inside swallows it."""


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """No call inside takes longer than ``seconds`` (exit 4 then); a no-op outside the main thread."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise _Expired

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Expired:
        raise Unreachable(
            f"no answer within {seconds:g} s while {what} (--timeout); is the local stack up?"
        ) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- the app -----------------------------------------------------------------------------------------------
class _DefaultGroup(TyperGroup):
    """A group whose first argument may be a plain value (``models NAME``, ``drift MODEL``): anything that
    is not a subcommand goes to the hidden ``show`` command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["show", *args]
        return super().parse_args(ctx, args)


EPILOG = """\b
exit status: 0 ok; 1 a finding or failure (failed file, nothing known, unexpected error);
             2 usage or refused; 3 configuration; 4 a service unreachable or --timeout passed.
             drift compare: 0 no drift, 1 drift, 2 error, 3 insufficient data."""

app = typer.Typer(name="scorehook", help="What happened to each file and model, and why; run it again.", add_completion=False, epilog=EPILOG,
                  pretty_exceptions_enable=False, no_args_is_help=True, rich_markup_mode=None)  # fmt: skip
models_app = typer.Typer(cls=_DefaultGroup, help="scorehook models [NAME] [--json]: every model (champion, previous, drift), or one model's versions with decisions, metrics and reasons. Subcommands: approve, rollback.",
                         pretty_exceptions_enable=False, rich_markup_mode=None)  # fmt: skip
drift_app = typer.Typer(cls=_DefaultGroup, help="scorehook drift [MODEL] [--evaluate] [--last N] [--json]: the latest drift report (features, reasons, the retraining's real outcome). Subcommand: compare (offline).",
                        pretty_exceptions_enable=False, rich_markup_mode=None)  # fmt: skip
events_app = typer.Typer(help="Send events to the local stack (devhost).", pretty_exceptions_enable=False,
                         rich_markup_mode=None, no_args_is_help=True)  # fmt: skip
app.add_typer(models_app, name="models")
app.add_typer(drift_app, name="drift")
app.add_typer(events_app, name="events")

JsonOption = Annotated[bool, typer.Option("--json", help="print JSON only (nothing else on stdout)")]


class _State:
    def __init__(self, services: Services, as_json: bool) -> None:
        self.services, self.as_json = services, as_json


_injected: list[Services] = []


@app.callback()
def _root(
    ctx: typer.Context,
    settings: Annotated[str | None, typer.Option("--settings", help="a local.settings.json (env SCOREHOOK_SETTINGS)")] = None,
    as_json: JsonOption = False,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait for a service (0: no limit)",
                                           envvar="SCOREHOOK_CLI_TIMEOUT")] = DEFAULT_TIMEOUT,
) -> None:  # fmt: skip
    services = _injected[-1] if _injected else Services(settings, timeout)
    ctx.obj = _State(services, as_json)


def _state(ctx: typer.Context) -> _State:
    return ctx.find_root().obj  # type: ignore[no-any-return]


def _out(ctx: typer.Context, as_json: bool) -> Out:
    return Out(as_json or _state(ctx).as_json)


def _services(ctx: typer.Context) -> Services:
    return _state(ctx).services


def _timed(ctx: typer.Context, what: str) -> Any:
    return deadline(_services(ctx).timeout, what)


def _split(blob: str) -> tuple[str, str]:
    container, _, name = blob.strip("/").partition("/")
    if not name:
        raise CliError(f"name a blob as CONTAINER/PATH, not {blob!r}", EXIT_USAGE)
    return container, name


# -- status ------------------------------------------------------------------------------------------------
@app.command()
def status(
    ctx: typer.Context,
    as_json: JsonOption = False,
    problems: Annotated[int, typer.Option("--problems", help="how many open problems to list")] = 20,
) -> int:
    """Files by state, deliveries, decisions, retrains, champions, drift, times."""
    out = _out(ctx, as_json)
    with _timed(ctx, "reading the status"):
        result = _services(ctx).view().status(problems=problems)
    if out.json:
        out.document(result.to_dict())
        return EXIT_OK
    counts = result.files.counts
    out.show(table("Files (newest version of each input blob)", ["state", "files"],
                   [[cell(k, _STATE_STYLE.get(k)), v] for k, v in counts.items() if v or k in
                    ("scored", "failed_open", "failed_resolved", "retrying", "dead_lettered")]))  # fmt: skip
    if result.files.problems:
        out.show(table("Open problems", ["blob", "state", "reason", "since", "failure record"],
                       [[f.blob, cell(f.state, _STATE_STYLE.get(f.state)), f.reason, _short_time(f.updated_at),
                         f.failure] for f in result.files.problems]))  # fmt: skip
    sections = [("Deliveries (MLflow webhook)", result.deliveries), ("Decisions", result.decisions),
                ("Retrains", result.retrains), ("Dead letters", {k: v for k, v in result.dead_letters.items() if v}),
                ("Stream dead letters (records)", {k: v for k, v in result.stream_dead_letters.items() if v})]  # fmt: skip
    for title, counts_ in sections:
        if counts_:
            out.show(table(title, ["what", "count"], [[k, v] for k, v in sorted(counts_.items())]))
    if result.cooldowns:
        out.show(table("Retraining cooldowns (not files)", ["model", "after decision", "until"],
                       [[c["model"], c["decision_id"], _short_time(c["until"])] for c in result.cooldowns]))  # fmt: skip
    if result.models:
        out.show(table("Models", ["model", "champion", "previous", "since", "how", "last decision", "drift"],
                       [[m.name, m.champion, m.previous, _short_time(m.champion_since), m.champion_how,
                         _decision_text(m.last_decision), _drift_text(m.drift) if not m.error else cell(m.error, "red")]
                        for m in result.models]))  # fmt: skip
    out.show(table("Times", ["what", "when"], [[k, _short_time(v)] for k, v in result.times.items()]))
    return EXIT_OK


def _decision_text(decision: dict[str, Any] | None) -> str | None:
    if not decision:
        return None
    return (
        f"v{decision.get('version')} {decision.get('action')} {_short_time(decision.get('at')) or ''}".strip()
    )


def _drift_text(drift: dict[str, Any] | None) -> str | None:
    if not drift:
        return None
    text = f"{drift.get('decision')} (v{drift.get('version')}, window {drift.get('window')})"
    return text + (f", retraining {drift['retraining']}" if drift.get("retraining") else "")


# -- trace -------------------------------------------------------------------------------------------------
@app.command()
def trace(
    ctx: typer.Context,
    blob: Annotated[str | None, typer.Argument(help="CONTAINER/PATH of an input blob")] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="NAME or NAME/VERSION: a model's story")
    ] = None,
    as_json: JsonOption = False,
) -> int:
    """One time-ordered timeline with durations, of a file or of a model (version)."""
    out = _out(ctx, as_json)
    if bool(blob) == bool(model):
        raise CliError("trace takes a blob (CONTAINER/PATH) or --model NAME[/VERSION]", EXIT_USAGE)
    with _timed(ctx, "reading the timeline"):
        if blob:
            _split(blob)
            timeline = _services(ctx).view(registry=False).blob_timeline(blob.strip("/"))
        else:
            name, _, version = str(model).partition("/")
            timeline = _services(ctx).view().model_timeline(name, version or None)
    if out.json:
        out.document({**timeline.to_dict(), "found": timeline.found})
    else:
        title = f"{timeline.subject}" + (f"  (state: {timeline.state})" if timeline.state else "")
        out.show(table(title, ["at", "after", "event", "version", "what"],
                       [[_short_time(e.at), duration(e.since_previous_ms), cell(e.kind, _STATE_STYLE.get(e.status)),
                         (e.version or "")[:18], e.summary] for e in timeline.events]))  # fmt: skip
        for event in timeline.events:
            location = event.details.get("location")
            if event.kind in ("failed", "dead_lettered") and location:
                out.show(Text(printable(f"{event.kind}: {event.details.get('reason')} — record {location}")))
    if not timeline.found:
        out.note(f"nothing is known about {timeline.subject}")
        return EXIT_FINDING
    return EXIT_OK


# -- models ------------------------------------------------------------------------------------------------
@models_app.command("show", hidden=True)
def models_show(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="a registered model (default: every model)")] = None,
    as_json: JsonOption = False,
) -> int:
    """Every model (champion, previous, drift), or one model's versions with decisions and reasons."""
    out = _out(ctx, as_json)
    with _timed(ctx, "reading the models"):
        view = _services(ctx).view()
        if name is None:
            states = view.models()
        else:
            result = view.models_view(name)
    if name is None:
        if out.json:
            out.document({"models": [m.to_dict() for m in states]})
        else:
            out.show(table("Models", ["model", "champion", "previous", "since", "how", "last decision", "drift"],
                           [[m.name, m.champion, m.previous, _short_time(m.champion_since), m.champion_how,
                             _decision_text(m.last_decision), m.error or _drift_text(m.drift)] for m in states]))  # fmt: skip
        return EXIT_OK
    if out.json:
        out.document(result.to_dict())
    else:
        rows = []
        for v in result.versions:
            metrics = ", ".join(f"{k} {_num(val)}" for k, val in list(v.challenger_metrics.items())[:3])
            against = ", ".join(f"{k} {_num(val)}" for k, val in list((v.champion_metrics or {}).items())[:3])
            extra = []
            if v.approved:
                extra.append(f"approved by {v.approved.get('approved_by')}")
            for change in v.champion_changes:
                extra.append(f"champion {change.get('how')} {_short_time(change.get('at'))}"
                             + (f" ({change.get('reason')})" if change.get("reason") else ""))  # fmt: skip
            rows.append([v.version, ",".join(v.aliases), cell(v.decision, "green" if v.decision == "promote" else None),
                         _short_time(v.decided_at), v.decided_by, metrics, against,
                         "; ".join(v.reasons), v.retrained_from, "; ".join(extra)])  # fmt: skip
        out.show(table(f"{result.name}: champion {result.champion or '-'}, previous {result.previous or '-'}",
                       ["version", "aliases", "decision", "decided", "by", "metrics", "champion's", "reasons",
                        "retrained from", "since"], rows))  # fmt: skip
    if result.error:
        out.note(f"the registry did not answer: {result.error}")
    if not result.versions and not result.champion:
        out.note(f"nothing is known about model {name!r}")
        return EXIT_FINDING
    return EXIT_OK


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


_MODEL_EXIT = {"promote": 0, "unchanged": 0, "duplicate": 0, "reject": 1, "ignored": EXIT_USAGE,
               "refused": EXIT_USAGE}  # fmt: skip


def _operator() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _model_outcome(out: Out, model: str, version: str | None, outcome: Any) -> int:
    """One approval's or rollback's outcome: a line (or JSON); a refusal also on stderr, in words."""
    doc = {"model": model, "version": version, "status": outcome.status, "champion": outcome.champion,
           "message": outcome.message}  # fmt: skip
    if out.json:
        out.document(doc)
    else:
        out.show(table(None, ["model", "version", "status", "champion", "message"],
                       [[model, version, outcome.status, outcome.champion, outcome.message]]))  # fmt: skip
    if outcome.status in ("refused", "ignored"):
        out.note(f"scorehook models: {outcome.message}")
    return _MODEL_EXIT.get(outcome.status, EXIT_FINDING)


@models_app.command("approve")
def models_approve(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="registered model name")],
    version: Annotated[str, typer.Argument(help="the held version")],
    reason: Annotated[str | None, typer.Option("--reason", help="why (ledger and version tags)")] = None,
    as_json: JsonOption = False,
) -> int:
    """Promote a version the policy held for approval (once). Exit 0 promoted, 1 a newer champion stays,
    2 refused."""
    from shared.registrations import ApprovalGranted

    out = _out(ctx, as_json)
    with _timed(ctx, "approving"):
        outcome = _services(ctx).deployment().approve(ApprovalGranted(model, version, "cli"), by=_operator(),
                                                      reason=reason)  # fmt: skip
    return _model_outcome(out, model, version, outcome)


def _rollback(ctx: typer.Context, model: str, to: str | None, reason: str | None, as_json: bool) -> int:
    out = _out(ctx, as_json)
    with _timed(ctx, "rolling back"):
        outcome = _services(ctx).deployment().rollback(model, to, reason=reason, by=_operator())
    return _model_outcome(out, model, to, outcome)


ToOption = Annotated[
    str | None, typer.Option("--to", help="the version to make champion (default: the newest earlier)")
]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="why (ledger and version tags)")]


@models_app.command("rollback")
def models_rollback(
    ctx: typer.Context, model: Annotated[str, typer.Argument(help="registered model name")],
    to: ToOption = None, reason: ReasonOption = None, as_json: JsonOption = False,
) -> int:  # fmt: skip
    """Make an earlier champion the champion again (once). Exit 0 done or unchanged, 2 refused."""
    return _rollback(ctx, model, to, reason, as_json)


@app.command("rollback")
def rollback(
    ctx: typer.Context, model: Annotated[str, typer.Argument(help="registered model name")],
    to: ToOption = None, reason: ReasonOption = None, as_json: JsonOption = False,
) -> int:  # fmt: skip
    """The same as models rollback."""
    return _rollback(ctx, model, to, reason, as_json)


# -- drift -------------------------------------------------------------------------------------------------
@drift_app.command("show", hidden=True)
def drift_show(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Argument(help="a registered model (default: every model)")] = None,
    evaluate: Annotated[bool, typer.Option("--evaluate", help="evaluate the changed windows first")] = False,
    last: Annotated[int, typer.Option("--last", help="reports listed before the latest one's table")] = 5,
    as_json: JsonOption = False,
) -> int:
    """The latest drift report of a model as a table (features, reasons, the retraining's real outcome)."""
    out = _out(ctx, as_json)
    with _timed(ctx, "reading the drift reports"):
        if evaluate:
            _services(ctx).drift().evaluate_due()
        view = _services(ctx).view(registry=False)
        names = [model] if model else [m.name for m in view.models()]
        views = [view.drift_view(name, last=last) for name in names]
    if out.json:
        out.document({"models": [v.to_dict() for v in views]} if model is None else views[0].to_dict())
        return EXIT_OK
    for drift in views:
        if not drift.reports:
            out.note(f"no drift report for {drift.model}")
            continue
        if len(drift.reports) > 1:
            out.show(table(f"{drift.model}: drift reports", ["window", "version", "evaluated", "rows", "decision",
                                                              "drifted share", "retraining"],
                           [[r.window, r.version, _short_time(r.evaluated_at), r.rows,
                             cell(r.decision, "red" if r.decision == "drift" else None), r.drifted_share,
                             _retraining_text(r.retraining)] for r in drift.reports]))  # fmt: skip
        latest = drift.reports[-1]
        out.show(table(f"{drift.model} v{latest.version}, window {latest.window}: {latest.decision} "
                       f"({latest.rows} rows, drifted share {latest.drifted_share})",
                       ["feature", "kind", "metric", "distance", "threshold", "noise bound", "decision"],
                       [[f.name, f.kind, f.metric, f.value, f.threshold, f.noise_bound,
                         cell("DRIFT", "red") if f.drifted else (f.status or "ok")] for f in latest.features]))  # fmt: skip
        for reason in latest.reasons:
            out.show(Text(printable(f"  - {reason}")))
        out.show(Text(printable(f"retraining: {_retraining_text(latest.retraining) or 'none asked'}")))
    return EXIT_OK


def _retraining_text(retraining: dict[str, Any] | None) -> str | None:
    if not retraining:
        return None
    text = str(retraining.get("status"))
    if retraining.get("run_id"):
        text += f" (run {retraining['run_id']})"
    if retraining.get("outcome"):
        text += f", ended {retraining['outcome']}"
    elif retraining.get("status") == "launched":
        text += ", not finished yet"
    return text


@drift_app.command("compare", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                                "help_option_names": []})  # fmt: skip
def drift_compare(ctx: typer.Context) -> int:
    """Offline: would the monitor flag CURRENT against REFERENCE? (scorehook drift compare --help)"""
    from cli.compare import cmd_drift_compare

    return cmd_drift_compare(list(ctx.args), _services(ctx).settings_path)


# -- replay ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _progress(out: Out, total: int, what: str) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr for long work (a terminal only, never with --json)."""
    if total < 2 or out.json or not out.stderr.is_terminal:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=out.stderr, transient=True) as bar:  # fmt: skip
        task = bar.add_task(what, total=total)
        yield lambda: bar.advance(task)


@app.command()
def replay(
    ctx: typer.Context,
    blobs: Annotated[list[str] | None, typer.Argument(help="CONTAINER/PATH of input blobs")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="every file whose failure is open")] = False,
    route: Annotated[
        str | None, typer.Option("--route", help="with --failed: only this route's files")
    ] = None,
    as_json: JsonOption = False,
) -> int:
    """Score files again as they are now (after a fix); JSON lines with --json. Exit 1 when any fails."""
    out = _out(ctx, as_json)
    services = _services(ctx)
    if failed:
        with _timed(ctx, "listing the failed files"):
            targets = [f.blob for f in services.view(registry=False).files()
                       if f.state == "failed_open" and (not route or f.route == route)]  # fmt: skip
    elif blobs:
        targets = list(blobs)
    else:
        raise CliError("name a blob (CONTAINER/PATH), or use --failed", EXIT_USAGE)
    worst, rows = EXIT_OK, []
    with _progress(out, len(targets), "replaying") as advance:
        for target in dict.fromkeys(targets):
            container, name = _split(target)
            try:
                with _timed(ctx, f"replaying {target}"):
                    outcome = services.scoring().replay(container, name)
                line = {"blob": target, "status": outcome.status, "output": outcome.output,
                        "reason": outcome.reason, "failure": outcome.failure}  # fmt: skip
            except (ConfigurationError, Unreachable, TransientError):
                raise
            except ScorehookError as exc:
                line = {"blob": target, "status": "error", **exc.to_record()}
            worst = worst or int(line["status"] in ("failed", "error"))
            if out.json:
                out.document(line)
            rows.append(line)
            advance()
    if not out.json:
        out.show(table("Replayed", ["blob", "status", "output / failure record", "reason"],
                       [[r["blob"], cell(r["status"], "green" if r["status"] == "succeeded" else "red"),
                         r.get("output") or r.get("failure"), r.get("reason") or r.get("message")] for r in rows]))  # fmt: skip
    if not targets:
        out.note("no file to replay")
    return worst


# -- dead letters ------------------------------------------------------------------------------------------
@app.command()
def deadletters(
    ctx: typer.Context,
    replay_them: Annotated[bool, typer.Option("--replay", help="score every dead-lettered file not replayed yet")] = False,
    container: Annotated[str | None, typer.Option("--container", help="the dead-letter container")] = None,
    stream: Annotated[bool, typer.Option("--stream", help="the stream records score_stream dead-lettered "
                                         "(failed/_stream/...); --replay sends them again to their input hub")] = False,
    as_json: JsonOption = False,
) -> int:  # fmt: skip
    """Events Event Grid gave up on; --replay scores their files. --stream: bad stream records. JSON lines with --json."""
    from shared.deadletters import DeadLetterService

    out = _out(ctx, as_json)
    if stream:
        return _stream_deadletters(ctx, out, replay_them)
    with _timed(ctx, "reading the dead letters"):
        dead = DeadLetterService.for_scoring(_services(ctx).scoring(), container=container)
    if replay_them:
        with _timed(ctx, "replaying the dead letters"):
            if out.json or not out.stderr.is_terminal:
                results = dead.replay()
            else:
                with out.stderr.status("replaying dead letters"):
                    results = dead.replay()
        worst = EXIT_OK
        for result in results:
            worst = worst or int(result.status in ("failed", "error"))
            if out.json:
                out.document(result.as_dict())
        if not out.json and results:
            out.show(table("Replayed dead letters", ["blob", "status", "output / failure", "reason", "dead letter"],
                           [[r.blob, r.status, r.output or r.failure, r.reason, r.dead_letter.location]
                            for r in results]))  # fmt: skip
        if not results:
            out.note("no dead letter to replay")
        return worst
    from shared.opsview import OpsView

    with _timed(ctx, "reading the dead letters"):
        scoring = _services(ctx).scoring()
        view = OpsView(scoring.ledger, scoring.blobs, dead_letters_service=dead,
                       failed_container=scoring.settings.failed_container)  # fmt: skip
        letters = view.dead_letters()
    if out.json:
        for letter in letters:
            out.document({"time": letter.time, "subscription": letter.subscription, "reason": letter.reason,
                          "event_type": letter.event_type, "subject": letter.subject, "event_id": letter.event_id,
                          "attempts": letter.attempts, "last_http_status": letter.last_http_status,
                          "problem": letter.problem, "replayed": letter.replayed, "blob": letter.blob,
                          "dead_letter": letter.location})  # fmt: skip
    elif letters:
        out.show(table(f"Dead letters in {dead.container}",
                       ["time", "subscription", "reason", "event type", "blob / subject", "attempts", "replayed",
                        "problem"],
                       [[_short_time(d.time), d.subscription, d.reason, d.event_type, d.blob or d.subject, d.attempts,
                         cell(d.replayed, "green" if d.replayed == "yes" else None), d.problem] for d in letters]))  # fmt: skip
    if not letters:
        out.note(f"no dead letters in {dead.container}")
    return EXIT_OK


def _stream_deadletters(ctx: typer.Context, out: Any, replay_them: bool) -> int:
    """``deadletters --stream``: list the dead-lettered stream records, or send them again (each once)."""
    from shared.adapters.eventhub import eventhub_sink
    from shared.stream_deadletters import StreamDeadLetterService

    with _timed(ctx, "reading the stream dead letters"):
        scoring = _services(ctx).scoring()
        settings = scoring.settings
        service = StreamDeadLetterService(scoring.blobs, scoring.ledger, settings.failed_container,
                                          sink_for=lambda hub: eventhub_sink(settings, hub))  # fmt: skip
    if replay_them:
        with _timed(ctx, "replaying the stream dead letters"):
            results = service.replay()
        for result in results if out.json else ():
            out.document(result.as_dict())
        if not out.json and results:
            out.show(table("Replayed stream records", ["dead letter", "record id", "hub", "status", "reason"],
                           [[r.dead_letter.location, r.dead_letter.record_id, r.hub, r.status, r.reason]
                            for r in results]))  # fmt: skip
        if not results:
            out.note("no stream record to replay")
        return int(any(r.status == "error" for r in results))
    with _timed(ctx, "reading the stream dead letters"):
        letters = [(d, service.replay_status(d)) for d in service.dead_letters()]
    if out.json:
        for d, replayed in letters:
            out.document({"dead_letter": d.location, "event_hub": d.hub, "partition": d.partition,
                          "position": d.position, "sequence_number": d.sequence_number, "record_id": d.record_id,
                          "reason": d.reason, "error": d.error, "enqueued_time": d.enqueued_time,
                          "replayed": replayed, "problem": d.problem})  # fmt: skip
    elif letters:
        out.show(table(f"Stream dead letters in {settings.failed_container}/_stream",
                       ["enqueued", "hub/partition", "seq", "record id", "reason", "replayed", "problem"],
                       [[_short_time(d.enqueued_time), f"{d.hub}/{d.partition}", d.sequence_number, d.record_id,
                         d.reason, cell(replayed, "green" if replayed == "yes" else None), d.problem]
                        for d, replayed in letters]))  # fmt: skip
    if not letters:
        out.note("no stream dead letters")
    return EXIT_OK


# -- the local stack ---------------------------------------------------------------------------------------
def _devhost_url(services: Services, url: str | None) -> tuple[str, dict[str, str]]:
    """devhost's base URL and the headers its keys need (from the settings file's ``Host`` section)."""
    host = services.document().get("Host") or {}
    headers = {"x-functions-key": str(host["MasterKey"])} if host.get("MasterKey") else {}
    base = (
        url
        or os.environ.get("SCOREHOOK_DEVHOST_URL")
        or f"http://127.0.0.1:{host.get('LocalHttpPort', 7071)}"
    )
    return base.rstrip("/"), headers


def _function_for(events: list[Any]) -> str:
    """The function the local subscriptions deliver the first event's type (and subject) to."""
    first = events[0] if events and isinstance(events[0], dict) else {}
    event_type = str(first.get("eventType") or first.get("type") or "")
    subject = str(first.get("subject") or "")
    try:
        subscriptions = json.loads(
            (Path(__file__).resolve().parents[1] / "devhost" / "subscriptions.json").read_text()
        )
    except (OSError, ValueError):
        return "score_blob"
    for sub in subscriptions.get("subscriptions", []):
        wanted = sub.get("filter", {})
        if event_type in wanted.get("includedEventTypes", [event_type]) and subject.startswith(
            wanted.get("subjectBeginsWith", "")
        ):
            return str(sub["endpoint"]["functionName"])
    return "score_blob"


@events_app.command("send")
def events_send(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="an Event Grid or CloudEvents JSON file (one event or an array)")],
    function: Annotated[str | None, typer.Option("--function", help="the function (default: by subscription)")] = None,
    url: Annotated[str | None, typer.Option("--url", help="devhost's base URL (default: from the settings)")] = None,
    as_json: JsonOption = False,
) -> int:  # fmt: skip
    """Post an event file to the local devhost's Event Grid webhook, as Event Grid would."""
    import urllib.error
    import urllib.request

    out = _out(ctx, as_json)
    try:
        raw = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise CliError(f"{file} is not a readable JSON file: {exc}", EXIT_USAGE) from None
    events = raw if isinstance(raw, list) else [raw]
    cloud = bool(events) and isinstance(events[0], dict) and "specversion" in events[0]
    name = function or _function_for(events)
    base, headers = _devhost_url(_services(ctx), url)
    request = urllib.request.Request(
        f"{base}/runtime/webhooks/eventgrid?functionName={urllib.parse.quote(name)}", data=json.dumps(events).encode(),
        method="POST", headers={**headers, "aeg-event-type": "Notification",
                                "Content-Type": "application/cloudevents-batch+json" if cloud else "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=_services(ctx).timeout or None) as response:
            code, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        code, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise Unreachable(
            f"devhost at {base} is unreachable ({getattr(exc, 'reason', exc)}); is make run up?"
        ) from None
    text = body.decode("utf-8", "replace")[:2000]
    if out.json:
        out.document({"function": name, "events": len(events), "http_status": code, "response": text})
    else:
        out.show(Text(printable(f"{len(events)} event(s) to {name}: HTTP {code} {text}".strip())))
    return EXIT_OK if code < 300 else EXIT_FINDING


@app.command()
def upload(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="a local file (CSV, CSV.gz, Parquet, JSON lines)")],
    container: Annotated[str | None, typer.Option("--container", help="default: the first route's container")] = None,
    name: Annotated[str | None, typer.Option("--name", help="the blob name (default: the file's name)")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait until it is scored or failed, then trace it")] = False,
    as_json: JsonOption = False,
) -> int:  # fmt: skip
    """Drop a file into the local stack's input container (devhost scores it)."""
    out = _out(ctx, as_json)
    services = _services(ctx)
    if not file.is_file():
        raise CliError(f"{file} is not a file", EXIT_USAGE)
    if container is None:
        from shared.routes import load_routes

        routes = load_routes(services.settings)
        container = routes[0].container if routes else "incoming"
    blob_name = name or file.name
    from shared.names import check_blob_name

    check_blob_name(container, blob_name)
    with _timed(ctx, "uploading"):
        store = services.blobs()
        store.ensure_containers(container)
        etag = store.write_bytes(container, blob_name, file.read_bytes())
    blob = f"{container}/{blob_name}"
    doc: dict[str, Any] = {"blob": blob, "etag": etag.strip('"'), "bytes": file.stat().st_size}
    code = EXIT_OK
    if wait:
        state = _wait_scored(ctx, blob, etag.strip('"'))
        doc["state"] = state.state if state else None
        code = EXIT_OK if state is not None and state.state in ("scored", "failed_resolved") else EXIT_FINDING
    if out.json:
        out.document(doc)
    else:
        out.show(Text(printable(f"uploaded {blob} ({doc['bytes']} bytes, eTag {doc['etag']})")))
        if wait:
            out.show(Text(printable(f"state: {doc['state'] or 'not picked up'}")))
        out.show(Text(printable(f"next: scorehook trace {blob}")))
    return code


def _wait_scored(ctx: typer.Context, blob: str, etag: str) -> Any:
    """The file's state once this version is finished (scored, failed, dead-lettered), or None in time."""
    services = _services(ctx)
    limit = time.monotonic() + (services.timeout or DEFAULT_TIMEOUT)
    view = services.view(registry=False)
    while time.monotonic() < limit:
        for state in view.files():
            if (
                state.blob == blob
                and (state.etag or "").strip('"') == etag
                and state.state not in ("in_progress",)
            ):
                return state
        time.sleep(0.5)
    return None


# -- running -----------------------------------------------------------------------------------------------
def _message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return printable(text[0] if text else type(exc).__name__)


def _is_connection_error(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in _chain(exc)}
    return bool(names & {"ServiceRequestError", "ServiceResponseError", "ConnectionError", "ConnectTimeout",
                         "ReadTimeout", "MaxRetryError", "NewConnectionError", "ConnectionRefusedError",
                         "TimeoutError", "socket.timeout"})  # fmt: skip


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _usage_message(exc: Any) -> str:
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "scorehook"
    return f"{where}: {exc.format_message()} (see {where} --help)"


def main(argv: list[str] | None = None, services: Services | None = None) -> int:
    """Run one command; returns its exit status, never a traceback.

    Example:
        >>> main(["--settings", "missing.json", "status"])   # doctest: +SKIP
        3
    """
    try:
        return _main(argv, services)
    except _Expired:  # the alarm rang between a call's end and its disarming
        sys.stderr.write("scorehook: unreachable: no answer within --timeout\n")
        return EXIT_UNREACHABLE
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_OK
    except Exception as exc:  # a last guard: one line
        with contextlib.suppress(Exception):
            sys.stderr.write(f"scorehook: unexpected error: {type(exc).__name__}: {_message(exc)}\n")
        return EXIT_FINDING


def _main(argv: list[str] | None, services: Services | None) -> int:
    from typer._click import exceptions as click_errors

    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    stripped = _without_globals(argv)
    if stripped[:2] == ["drift", "compare"]:  # offline, and its own argparse help and exit codes
        from cli.compare import cmd_drift_compare

        return cmd_drift_compare(stripped[2:], _global_value(argv, "--settings"))
    if services is not None:
        _injected.append(services)
    try:
        from shared.logs import configure_logging

        configure_logging("WARNING", console=True)
        result = app(args=argv, prog_name="scorehook", standalone_mode=False)
        return int(result or 0) if isinstance(result, int) else EXIT_OK
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_OK
    except typer.Abort:
        sys.stderr.write("scorehook: interrupted\n")
        return 130
    except click_errors.UsageError as exc:
        sys.stderr.write(_usage_message(exc) + "\n")
        return EXIT_USAGE
    except click_errors.ClickException as exc:
        sys.stderr.write(f"scorehook: {printable(exc.format_message())}\n")
        return EXIT_USAGE
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except CliError as exc:
        sys.stderr.write(f"scorehook: {printable(str(exc))}\n")
        return exc.code
    except ConfigurationError as exc:
        sys.stderr.write(f"scorehook: configuration: {_message(exc)}\n")
        return EXIT_CONFIG
    except TransientError as exc:
        sys.stderr.write(f"scorehook: unreachable: [{exc.reason}] {_message(exc)}\n")
        return EXIT_UNREACHABLE
    except ScorehookError as exc:
        sys.stderr.write(f"scorehook: [{exc.reason}] {_message(exc)}\n")
        return EXIT_FINDING
    except KeyboardInterrupt:
        sys.stderr.write("scorehook: interrupted\n")
        return 130
    except Exception as exc:  # one line, never a traceback
        if _is_connection_error(exc):
            sys.stderr.write(f"scorehook: unreachable: {type(exc).__name__}: {_message(exc)}\n")
            return EXIT_UNREACHABLE
        sys.stderr.write(f"scorehook: unexpected error: {type(exc).__name__}: {_message(exc)}\n")
        return EXIT_FINDING
    finally:
        if services is not None:
            _injected.pop()
        with contextlib.suppress(BrokenPipeError, ValueError):
            sys.stdout.flush()


_GLOBAL_WITH_VALUE = ("--settings", "--timeout")


def _without_globals(argv: list[str]) -> list[str]:
    """The arguments after the global options (``--settings X``, ``--timeout N``, ``--json``)."""
    rest: list[str] = []
    skip = False
    for index, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if not rest and arg in _GLOBAL_WITH_VALUE:
            skip = True
            continue
        if not rest and (arg == "--json" or arg.split("=", 1)[0] in _GLOBAL_WITH_VALUE):
            continue
        rest = argv[index:]
        break
    return rest


def _global_value(argv: list[str], option: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == option and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
        if arg in ("drift",):
            break
    return None


def _quiet_stdout() -> None:
    """After a closed pipe (``scorehook status | head -1``): no second error at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def run() -> None:
    """The ``scorehook`` console script."""
    sys.exit(main())
