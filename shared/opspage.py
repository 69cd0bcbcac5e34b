"""The ops page: one server-rendered HTML document (no CDN, no build step, a few lines of inline JS) with the
recent files, the open failures (with a replay button), the dead letters, the model decisions and the drift of
every feature over time as inline SVG line plots.

Everything that comes from data (blob names, reasons, messages, model names) is untrusted and HTML-escaped. Each
plot carries its data in a checkable form: the ``<svg>`` names its model, feature and metric in ``data-``
attributes, and every point is a ``<circle class="point">`` with ``data-at``, ``data-value``, ``data-bound`` and
``data-window`` (and a ``<title>``), so a test (or a person with the inspector) can read the numbers back.

Example:
    >>> page = OpsData(files=[FileRow("incoming/a.csv", "scored", 12.5, "2026-12-01T10:00:00+00:00")])
    >>> "incoming/a.csv" in render(page)
    True
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

__all__ = [
    "PLOT_HEIGHT",
    "PLOT_WIDTH",
    "DeadLetterRow",
    "DecisionRow",
    "DriftPoint",
    "DriftSeries",
    "FailureRow",
    "FileRow",
    "OpsData",
    "collect",
    "drift_series",
    "plot_points",
    "render",
]

PLOT_WIDTH, PLOT_HEIGHT, _PAD = 420, 140, 28


@dataclass(frozen=True)
class FileRow:
    """One input file's state (``shared.opsview.FILE_STATES``: ``scored``, ``failed_open``, ``retrying``, ...)."""

    blob: str
    status: str
    latency_ms: float | None = None
    at: str | None = None
    model: str | None = None
    rows: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class FailureRow:
    """An open failure: the file failed and no later version of it was scored yet."""

    blob: str
    reason: str
    message: str = ""
    location: str = ""
    """Where in the file (``row 3, column amount``), or empty when the failure is not about one place."""
    record: str = ""
    """The failure record's blob (``failed/incoming/a.csv.<etag>.json``)."""
    at: str | None = None


@dataclass(frozen=True)
class DeadLetterRow:
    """An event Event Grid gave up on."""

    location: str
    event_type: str | None = None
    subject: str | None = None
    reason: str | None = None
    attempts: int | None = None
    at: str | None = None
    replayed: str | None = None


@dataclass(frozen=True)
class DecisionRow:
    """A deployment decision about one model version (promote / hold / reject), with its metrics."""

    model: str
    version: str
    decision: str
    reasons: tuple[str, ...] = ()
    metrics: Mapping[str, Any] = field(default_factory=dict)
    at: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class DriftPoint:
    """One report's distance for one feature; ``bound`` is what the distance had to exceed (threshold + noise)."""

    at: str
    value: float
    bound: float | None = None
    window: str = ""
    model_version: str = ""
    drifted: bool = False


@dataclass(frozen=True)
class DriftSeries:
    """One feature of one model over report time."""

    model: str
    feature: str
    metric: str
    points: tuple[DriftPoint, ...]


@dataclass(frozen=True)
class OpsData:
    """Everything the page shows (built by ``shared.opsview``; plain data, easy to fake)."""

    files: Sequence[FileRow] = ()
    failures: Sequence[FailureRow] = ()
    dead_letters: Sequence[DeadLetterRow] = ()
    decisions: Sequence[DecisionRow] = ()
    drift: Sequence[DriftSeries] = ()
    generated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def _e(value: Any) -> str:
    """Escape anything for text and quoted attributes (``None`` → empty)."""
    return "" if value is None else escape(str(value), quote=True)


def _time(iso: str) -> float:
    try:
        parsed = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _num(value: float | None, digits: int = 6) -> str:
    """``value`` rounded to ``digits`` decimals, as Python writes it (``0.31``, ``1.539558``); ``None`` → ``""``."""
    return "" if value is None else repr(round(float(value), digits))


def plot_points(series: DriftSeries) -> list[tuple[float, float]]:
    """The (x, y) pixel positions of a series' points, time on x (oldest left), distance on y (0 at the bottom,
    the larger of the highest distance and the highest bound at the top).

    Example:
        >>> s = DriftSeries("m", "f", "psi", (DriftPoint("2026-12-01T10:00:00+00:00", 0.0, 0.2),
        ...                                   DriftPoint("2026-12-01T11:00:00+00:00", 0.4, 0.2)))
        >>> plot_points(s)
        [(28.0, 112.0), (392.0, 28.0)]
    """
    points = series.points
    if not points:
        return []
    times = [_time(p.at) for p in points]
    low, high = min(times), max(times)
    top = max([p.value for p in points] + [p.bound for p in points if p.bound is not None] + [1e-9])
    width, height = PLOT_WIDTH - 2 * _PAD, PLOT_HEIGHT - 2 * _PAD
    out = []
    for t, p in zip(times, points, strict=True):
        x = _PAD + (width * (t - low) / (high - low) if high > low else width / 2)
        y = _PAD + height * (1 - p.value / top)
        out.append((round(x, 2), round(y, 2)))
    return out


def _bound_y(series: DriftSeries, bound: float) -> float:
    top = max(
        [p.value for p in series.points] + [p.bound for p in series.points if p.bound is not None] + [1e-9]
    )
    return round(_PAD + (PLOT_HEIGHT - 2 * _PAD) * (1 - bound / top), 2)


def _plot(series: DriftSeries) -> str:
    xy = plot_points(series)
    line = " ".join(f"{x},{y}" for x, y in xy)
    bounds = [
        (x, _bound_y(series, p.bound))
        for (x, _), p in zip(xy, series.points, strict=True)
        if p.bound is not None
    ]
    if len(bounds) == 1:  # one report: draw its bound across the plot
        bounds = [(_PAD, bounds[0][1]), (PLOT_WIDTH - _PAD, bounds[0][1])]
    parts = [
        f'<svg class="plot" role="img" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" '
        f'viewBox="0 0 {PLOT_WIDTH} {PLOT_HEIGHT}" data-model="{_e(series.model)}" '
        f'data-feature="{_e(series.feature)}" data-metric="{_e(series.metric)}" '
        f'data-points="{len(series.points)}">',
        f"<title>{_e(series.model)}: {_e(series.feature)} ({_e(series.metric)}) over report time</title>",
        f'<line class="axis" x1="{_PAD}" y1="{PLOT_HEIGHT - _PAD}" x2="{PLOT_WIDTH - _PAD}" '
        f'y2="{PLOT_HEIGHT - _PAD}"/>',
        f'<line class="axis" x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{PLOT_HEIGHT - _PAD}"/>',
    ]
    if bounds:
        parts.append(f'<polyline class="bound" points="{" ".join(f"{x},{y}" for x, y in bounds)}"/>')
    if len(xy) > 1:
        parts.append(f'<polyline class="line" points="{line}"/>')
    for (x, y), p in zip(xy, series.points, strict=True):
        label = f"{p.at} window {p.window} v{p.model_version}: {_num(p.value)} (bound {_num(p.bound)})"
        parts.append(
            f'<circle class="point{" drifted" if p.drifted else ""}" cx="{x}" cy="{y}" r="3.5" '
            f'data-at="{_e(p.at)}" data-value="{_num(p.value)}" data-bound="{_num(p.bound)}" '
            f'data-window="{_e(p.window)}" data-version="{_e(p.model_version)}" '
            f'data-drifted="{str(p.drifted).lower()}"><title>{_e(label)}</title></circle>'
        )
    if series.points:
        top = max([p.value for p in series.points] + [p.bound for p in series.points if p.bound is not None])
        parts.append(f'<text x="{_PAD - 3}" y="{_PAD + 3}" text-anchor="end">{_e(_num(top, 2))}</text>')
        parts.append(f'<text x="{_PAD - 3}" y="{PLOT_HEIGHT - _PAD + 3}" text-anchor="end">0</text>')
        parts.append(f'<text class="legend" x="{PLOT_WIDTH - _PAD}" y="{_PAD - 10}" text-anchor="end">'
                     "-- bound (threshold + noise)</text>")  # fmt: skip
        first, last = series.points[0].at, series.points[-1].at
        parts.append(f'<text x="{_PAD}" y="{PLOT_HEIGHT - 8}">{_e(first[:16])}</text>')
        parts.append(
            f'<text x="{PLOT_WIDTH - _PAD}" y="{PLOT_HEIGHT - 8}" text-anchor="end">{_e(last[:16])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]], cls: str, empty: str) -> str:
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _metrics(metrics: Mapping[str, Any]) -> str:
    shown = []
    for name, value in sorted(metrics.items()):
        shown.append(f"{_e(name)}={_e(_num(value, 4) if isinstance(value, (int, float)) else value)}")
    return " ".join(shown)


def _files(data: OpsData) -> str:
    rows = (
        [f'<span class="status {_e(f.status)}">{_e(f.status)}</span>', f"<code>{_e(f.blob)}</code>",
         _e(_num(f.latency_ms, 1)), _e(f.rows), _e(f.model), _e(f.reason), _e(f.at)]
        for f in data.files
    )  # fmt: skip
    return _table(
        ("status", "file", "latency ms", "rows", "model", "reason", "at"), rows, "files", "no file yet"
    )


def _failures(data: OpsData, code: str | None) -> str:
    action = "ops/replay" + (f"?{urlencode({'code': code})}" if code else "")

    def row(f: FailureRow) -> list[str]:
        button = (
            f'<form method="post" action="{_e(action)}" class="replay">'
            f'<input type="hidden" name="blob" value="{_e(f.blob)}">'
            f'<button type="submit" data-blob="{_e(f.blob)}">replay</button></form>'
        )
        return [f"<code>{_e(f.blob)}</code>", _e(f.reason), _e(f.message), _e(f.location),
                f"<code>{_e(f.record)}</code>", _e(f.at), button]  # fmt: skip

    return _table(("file", "reason", "message", "location", "failure record", "at", ""),
                  (row(f) for f in data.failures), "failures", "no open failure")  # fmt: skip


def _dead_letters(data: OpsData) -> str:
    rows = (
        [f"<code>{_e(d.location)}</code>", _e(d.event_type), f"<code>{_e(d.subject)}</code>", _e(d.reason),
         _e(d.attempts), _e(d.at), _e(d.replayed)]
        for d in data.dead_letters
    )  # fmt: skip
    return _table(("dead letter", "event type", "subject", "reason", "attempts", "at", "replayed"), rows,
                  "deadletters", "no dead letter")  # fmt: skip


def _decisions(data: OpsData) -> str:
    rows = (
        [_e(d.model), _e(d.version) + "".join(f' <span class="alias {_e(a)}">{_e(a)}</span>' for a in d.aliases),
         f'<span class="decision {_e(d.decision)}">{_e(d.decision)}</span>',
         _metrics(d.metrics), "<br>".join(_e(r) for r in d.reasons), _e(d.at)]
        for d in data.decisions
    )  # fmt: skip
    return _table(("model", "version", "decision", "metrics", "reasons", "at"), rows, "decisions",
                  "no model decision yet")  # fmt: skip


def _drift(data: OpsData) -> str:
    if not data.drift:
        return '<p class="empty">no drift report yet</p>'
    figures = []
    for series in data.drift:
        figures.append(
            f'<figure class="drift"><figcaption>{_e(series.model)} · <b>{_e(series.feature)}</b> '
            f"({_e(series.metric)})</figcaption>{_plot(series)}</figure>"
        )
    return '<div class="plots">' + "".join(figures) + "</div>"


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .2em} h2{font-size:1.1em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eee;
vertical-align:top} th{background:#f6f6f6} code{font-size:12px;word-break:break-all}
.status.scored,.status.failed_resolved,.decision.promote{color:#176f2c}
.status.failed_open,.status.dead_lettered,.decision.reject{color:#b00020}
.status.retrying,.status.in_progress,.decision.hold{color:#a15c00} .alias{background:#e5f3e8;padding:0 4px}
.empty{color:#777} .notice{background:#eef4ff;padding:6px 10px;border-left:3px solid #3a6fd8}
.plots{display:flex;flex-wrap:wrap;gap:12px} figure{margin:0;border:1px solid #eee;padding:4px}
figcaption{font-size:12px} .axis{stroke:#999} .line{fill:none;stroke:#3a6fd8;stroke-width:1.5}
.bound{fill:none;stroke:#b00020;stroke-dasharray:4 3} .point{fill:#3a6fd8} .point.drifted{fill:#b00020}
svg text{font-size:10px;fill:#666} svg text.legend{fill:#b00020} form.replay{margin:0}
"""

# The only script: a replay button shows that it is working (the form posts without it, too).
_SCRIPT = (
    "document.querySelectorAll('form.replay').forEach(f=>f.addEventListener('submit',()=>"
    "{const b=f.querySelector('button');b.disabled=true;b.textContent='replaying…';}));"
)


def render(data: OpsData, *, code: str | None = None, notice: str | None = None) -> str:
    """The whole page as one HTML document. ``code`` (the function key the page was opened with, if it came
    in the query) goes into the replay forms' action so a replay passes the same auth; ``notice`` is a line
    shown on top (the outcome of the last replay).

    Example:
        >>> html = render(OpsData(failures=[FailureRow("incoming/<b>.csv", "bad_file_format")]), code="k")
        >>> "incoming/&lt;b&gt;.csv" in html and 'action="ops/replay?code=k"' in html
        True
    """
    counts = {
        "files": len(data.files), "open failures": len(data.failures), "dead letters": len(data.dead_letters),
        "decisions": len(data.decisions), "drift plots": len(data.drift),
    }  # fmt: skip
    summary = " · ".join(f"{n} {_e(label)}" for label, n in counts.items())
    return "".join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Scorehook ops</title><style>", _STYLE, "</style></head><body>",
        f'<h1>Scorehook ops</h1><p class="summary" data-counts="{_e(json.dumps(counts))}">{summary} · '
        f"generated {_e(data.generated_at)}</p>",
        f'<p class="notice" id="notice">{_e(notice)}</p>' if notice else "",
        '<section id="files"><h2>Recent files</h2>', _files(data), "</section>",
        '<section id="failures"><h2>Open failures</h2>', _failures(data, code), "</section>",
        '<section id="deadletters"><h2>Dead letters</h2>', _dead_letters(data), "</section>",
        '<section id="models"><h2>Model versions and decisions</h2>', _decisions(data), "</section>",
        '<section id="drift"><h2>Drift per feature over time</h2>', _drift(data), "</section>",
        "<script>", _SCRIPT, "</script></body></html>",
    ])  # fmt: skip


# -- data ---------------------------------------------------------------------------------------------
_LOCATION_FIELDS = ("line", "row", "column", "field", "index", "offset")


def collect(scoring: Any, *, limit: int = 50) -> OpsData:
    """The page's data from ``shared.opsview`` on the scoring use case's ports (ledger, failure records, dead
    letters, drift reports, registry aliases): at most ``limit`` rows per table (newest first) and drift reports
    per model.

    Example:
        >>> collect(scoring_service()).failures[0].reason   # doctest: +SKIP
        'bad_file_format'
    """
    from shared.opsview import OpsView

    view = OpsView.for_scoring(scoring)
    files = sorted(view.files(), key=lambda f: f.updated_at or "", reverse=True)
    rows = [
        FileRow(f.blob, f.state, f.latency_ms, f.updated_at, f.model, f.rows, f.reason) for f in files[:limit]
    ]
    failures = []
    for f in (f for f in files if f.state == "failed_open"):
        doc = _failure_record(scoring.blobs, f.failure)
        where = ", ".join(f"{k} {doc[k]}" for k in _LOCATION_FIELDS if doc.get(k) not in (None, ""))
        failures.append(
            FailureRow(f.blob, f.reason or "", f.message or "", where, f.failure or "", f.updated_at)
        )
        if len(failures) >= limit:
            break
    letters = sorted(view.dead_letters(), key=lambda d: d.time or "", reverse=True)[:limit]
    decisions, series = [], []
    for model in view.models():
        versions = view.models_view(model.name).versions
        for v in versions:
            decisions.append(DecisionRow(model.name, v.version, v.decision or "", tuple(v.reasons),
                                         dict(v.challenger_metrics), v.decided_at, tuple(v.aliases)))  # fmt: skip
        series += drift_series(view.drift_view(model.name, last=limit).reports)  # the last `limit` windows
    decisions.sort(key=lambda d: (d.at or "", d.model, d.version), reverse=True)
    return OpsData(
        rows,
        failures,
        [
            DeadLetterRow(d.location, d.event_type, d.subject, d.reason, d.attempts, d.time, d.replayed)
            for d in letters
        ],
        decisions[:limit],
        series,
    )


def _failure_record(blobs: Any, location: str | None) -> Mapping[str, Any]:
    """The failure record at ``container/name``; empty when there is none or it cannot be read."""
    if not location or "/" not in location:
        return {}
    container, _, name = location.partition("/")
    try:
        doc = json.loads(blobs.read_bytes(container, name))
    except Exception:  # a missing or unreadable record only leaves the place in the file empty
        return {}
    return doc if isinstance(doc, dict) else {}


def drift_series(reports: Iterable[Any]) -> list[DriftSeries]:
    """One series per (model, feature) from drift reports (``shared.opsview.DriftReportView``), in report-time
    order: the deciding metric's distance and its bound (threshold + noise bound).

    Example:
        >>> from shared.opsview import DriftFeature, DriftReportView
        >>> f = DriftFeature("amount", "numeric", "psi", 0.3, 0.1, True, noise_bound=0.05)
        >>> r = DriftReportView("m", "1", "20261201T090000Z", "2026-12-01T10:00:00+00:00", "drift", 500, 1.0,
        ...                     ["amount"], [], [f], None, None)
        >>> s = drift_series([r])[0]
        >>> (s.feature, s.points[0].value, s.points[0].bound)
        ('amount', 0.3, 0.15)
    """
    grouped: dict[tuple[str, str], list[DriftPoint]] = {}
    metrics: dict[tuple[str, str], str] = {}
    for report in reports:
        if not report.evaluated_at:
            continue
        for feature in report.features:
            if feature.value is None:
                continue
            bound = None
            if feature.threshold is not None:
                bound = round(feature.threshold + (feature.noise_bound or 0.0), 6)
            key = (report.model, feature.name)
            metrics.setdefault(key, feature.metric or "")
            grouped.setdefault(key, []).append(DriftPoint(report.evaluated_at, feature.value, bound,
                                                          report.window or "", report.version or "",
                                                          feature.drifted))  # fmt: skip
    return [
        DriftSeries(
            model, feature, metrics[(model, feature)], tuple(sorted(points, key=lambda p: _time(p.at)))
        )
        for (model, feature), points in sorted(grouped.items())
    ]
