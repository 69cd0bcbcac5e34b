"""The ops page renderer: escaping of untrusted names, plots that carry their data, and its data from the fakes."""

from __future__ import annotations

from html.parser import HTMLParser

from shared.events import parse_blob_created
from shared.opspage import (
    DeadLetterRow,
    DecisionRow,
    DriftPoint,
    DriftSeries,
    FailureRow,
    FileRow,
    OpsData,
    collect,
    drift_series,
    plot_points,
    render,
)
from shared.opsview import DriftFeature, DriftReportView

HOSTILE = 'incoming/<script>alert("x")</script>&"\'.csv'


class _Tags(HTMLParser):
    """Every start tag with its attributes (values unescaped, as a browser reads them) and the page's text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def named(self, tag: str, cls: str | None = None) -> list[dict[str, str | None]]:
        return [
            a for t, a in self.tags if t == tag and (cls is None or cls in (a.get("class") or "").split())
        ]


def _series() -> DriftSeries:
    return DriftSeries("fraud", "amount", "psi", (
        DriftPoint("2026-12-01T10:00:00+00:00", 0.02, 0.13, "20261201T0900", "1"),
        DriftPoint("2026-12-01T11:00:00+00:00", 0.31, 0.12, "20261201T1000", "1", drifted=True),
        DriftPoint("2026-12-01T13:00:00+00:00", 0.05, 0.125, "20261201T1200", "2"),
    ))  # fmt: skip


def test_untrusted_names_are_escaped_everywhere():
    data = OpsData(
        files=[FileRow(HOSTILE, "failed", 3.2, "2026-12-01T10:00:00+00:00", reason="<u>bad</u>")],
        failures=[
            FailureRow(HOSTILE, "bad_value", "value '<img src=x onerror=alert(1)>'", "row 3", "failed/x")
        ],
        dead_letters=[DeadLetterRow(f"deadletters/{HOSTILE}#0", "<i>type</i>", HOSTILE, "<u>r</u>", 3)],
        decisions=[
            DecisionRow("<svg onload=alert(1)>", "1", "promote", ("<script>no</script>",), {"<m>": 0.9})
        ],
        drift=[
            DriftSeries(
                "<model>", "<script>f</script>", "psi", (DriftPoint("2026-12-01T10:00:00+00:00", 0.1),)
            )
        ],
    )
    html = render(data, code='k"><script>')
    page = _Tags(html)

    assert [t for t, _ in page.tags if t in ("script", "img", "i", "u", "m")] == ["script"]  # ours only
    assert len(page.named("svg")) == 1  # the plot, not the model name
    assert "<script>alert" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    # what the browser reads back is the raw name: the replay form posts exactly the failed blob
    (hidden,) = [a for a in page.named("input") if a.get("name") == "blob"]
    assert hidden["value"] == HOSTILE
    (form,) = page.named("form", "replay")
    assert form["action"] == "ops/replay?code=k%22%3E%3Cscript%3E" and form["method"] == "post"
    assert HOSTILE in "".join(page.text)


def test_each_point_of_a_plot_carries_its_report_values_at_its_place():
    series = _series()
    page = _Tags(render(OpsData(drift=[series])))

    (svg,) = page.named("svg", "plot")
    assert (svg["data-model"], svg["data-feature"], svg["data-metric"], svg["data-points"]) == (
        "fraud", "amount", "psi", "3")  # fmt: skip
    circles = page.named("circle", "point")
    assert [float(c["data-value"]) for c in circles] == [0.02, 0.31, 0.05]
    assert [float(c["data-bound"]) for c in circles] == [0.13, 0.12, 0.125]
    assert [c["data-at"] for c in circles] == [p.at for p in series.points]
    assert [c["data-window"] for c in circles] == ["20261201T0900", "20261201T1000", "20261201T1200"]
    assert [c["data-drifted"] for c in circles] == ["false", "true", "false"]
    xy = [(float(c["cx"]), float(c["cy"])) for c in circles]
    assert xy == plot_points(series)
    # time runs left to right in proportion (1 h then 2 h), a higher distance is drawn higher
    assert xy[0][0] < xy[1][0] < xy[2][0]
    assert abs((xy[2][0] - xy[1][0]) - 2 * (xy[1][0] - xy[0][0])) < 0.05
    assert xy[1][1] < xy[2][1] < xy[0][1]
    (line,) = page.named("polyline", "line")
    assert [tuple(map(float, p.split(","))) for p in line["points"].split()] == xy
    (bound,) = page.named("polyline", "bound")
    bound_y = [float(p.split(",")[1]) for p in bound["points"].split()]
    assert bound_y[0] > xy[1][1] and bound_y[1] > xy[1][1]  # the drifted point is above its bound
    assert bound_y[0] < xy[0][1]  # the quiet one below


def test_drift_series_groups_reports_per_feature_in_time_order_with_threshold_plus_noise():
    def report(at, version, amount, color=None):
        features = [DriftFeature("amount", "numeric", "psi", amount, 0.1, amount > 0.12, noise_bound=0.02),
                    DriftFeature("color", "categorical", "js", color, 0.1, False)]  # fmt: skip
        return DriftReportView("fraud", version, at[:13], at, "drift", 500, 0.5, [], [], features, None, None)

    reports = [
        report("2026-12-01T12:00:00+00:00", "2", 0.5, 0.2),
        report("2026-12-01T10:00:00+00:00", "1", 0.05),
    ]
    amount, color = drift_series(reports)

    assert (amount.model, amount.feature, amount.metric) == ("fraud", "amount", "psi")
    assert [(p.at[11:16], p.value, p.bound, p.model_version, p.drifted) for p in amount.points] == [
        ("10:00", 0.05, 0.12, "1", False), ("12:00", 0.5, 0.12, "2", True)]  # fmt: skip
    assert [(p.value, p.bound) for p in color.points] == [
        (0.2, 0.1)
    ]  # a feature without a distance is no point


def test_the_page_data_from_the_ports_resolves_a_failure_once_the_fixed_file_is_scored(scoring):
    good = scoring.service.score(
        parse_blob_created(scoring.upload("a.csv", b"id,x1,x2,color\n1,0.5,1,red\n"))
    )
    bad = scoring.service.score(
        parse_blob_created(scoring.upload("b.csv", b"id,x1,x2,color\n1,0.5,abc,red\n"))
    )
    assert (good.status, bad.status) == ("succeeded", "failed")

    data = collect(scoring.service)
    assert {f.blob: f.status for f in data.files} == {
        "incoming/a.csv": "scored",
        "incoming/b.csv": "failed_open",
    }
    scored = next(f for f in data.files if f.blob == "incoming/a.csv")
    assert scored.latency_ms is not None and scored.rows == 1 and scored.model == "tiny/1"
    (failure,) = data.failures
    assert (failure.blob, failure.reason, failure.record) == ("incoming/b.csv", "bad_value", bad.failure)
    assert "row" in failure.location and failure.at
    assert [(d.model, d.version, d.aliases) for d in data.decisions] == [("tiny", "1", ("champion",))]

    scoring.blobs.write_bytes("incoming", "b.csv", b"id,x1,x2,color\n1,0.5,1.5,red\n")
    assert scoring.service.replay("incoming", "b.csv").status == "succeeded"
    data = collect(scoring.service)
    assert data.failures == []
    assert {f.blob: f.status for f in data.files} == {
        "incoming/a.csv": "scored",
        "incoming/b.csv": "failed_resolved",
    }
