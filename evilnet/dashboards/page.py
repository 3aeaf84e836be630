"""The dashboards as one HTML page: Vega-Lite charts (altair) and plain tables.

:func:`build` runs every panel's query (:mod:`.data`) for the chosen cities, topics
and time range; :func:`html` renders the page (``page.html.j2``) and :func:`png`
draws one panel as an image (vl-convert, no browser). The charts follow the Grafana
panels: one line per city, coloured by name (a city keeps its colour however the rows
come), in UTC.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path

import altair as alt
import jinja2
import vl_convert

from evilnet.dashboards import data
from evilnet.dashboards.panels import TITLES, Dashboard, Panel, Row, dashboards
from evilnet.platform.staging import default_cache_dir
from evilnet.schema import Statements

REFRESH_SECONDS = 60
# A series with at most this many values is drawn with a point at each.
POINTS_SHOWN = 120
DATASET = "points"
# Vega-Lite formats for Grafana's units.
UNIT_FORMATS = {"short": ",~f", "reqps": ",.3~f", "percentunit": ".0%", "s": ",.3~s",
                "bytes": ".3~s"}
UNIT_TITLES = {"reqps": "per second", "s": "seconds", "bytes": "bytes",
               "percentunit": "share"}


@dataclass(frozen=True)
class Sources:
    """Where the panels read: a Cassandra session on the pipeline's keyspace, and
    Prometheus (None where the inventory has none)."""

    session: object
    keyspace: str
    prometheus_url: str | None
    # Its login where it is secured (prometheus_security_enabled), else None.
    prometheus_login: data.WebLogin | None = None


@dataclass(frozen=True)
class Choice:
    """What a person chose on the page; an empty ``cities`` is Grafana's All."""

    cities: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None


@dataclass
class PanelView:
    panel: Panel
    title: str  # a repeated row's copy names its value
    key: str
    chart: dict | None = None  # a Vega-Lite spec
    table: list[tuple[str, object]] | None = None
    stat: dict[str, float | None] | None = None
    error: str | None = None

    @property
    def value_title(self) -> str:
        return TITLES[self.panel.metric] if self.panel.metric else "Value"


@dataclass
class RowView:
    title: str | None
    panels: list[PanelView] = field(default_factory=list)


@dataclass
class BoardView:
    board: Dashboard
    span: data.TimeRange
    rows: list[RowView] = field(default_factory=list)

    def panels(self) -> list[PanelView]:
        return [view for row in self.rows for view in row.panels]


@dataclass
class Page:
    boards: list[BoardView]
    cities: list[str]  # the $city choices
    topics: list[str]  # the $topic choices of the chosen cities
    choice: Choice
    generated: datetime


def _key(board: Dashboard, title: str) -> str:
    return board.uid + "--" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def trend_chart(panel: Panel, points: list[data.Point], series_title: str,
                span: data.TimeRange) -> dict:
    # Epoch milliseconds: compact in the page, and what Vega keeps times as.
    values = [{"series": p.series, "time": int(p.time.timestamp() * 1000), "value": p.value}
              for p in points]
    per_series = len(values) / len({p.series for p in points})
    unit = UNIT_FORMATS.get(panel.unit, ",~f")
    value_title = (panel.metric and TITLES[panel.metric]) or UNIT_TITLES.get(
        panel.unit, "value")
    # The whole range, as Grafana's x axis, however far the data reach.
    domain = [int(span.start.timestamp() * 1000), int(span.end.timestamp() * 1000)]
    x = alt.X("time:T", title="UTC", scale=alt.Scale(type="utc", domain=domain),
              axis=alt.Axis(format="%H:%M", labelOverlap=True))
    y = alt.Y("value:Q", title=value_title, axis=alt.Axis(format=unit),
              scale=alt.Scale(domainMin=0, **({"domainMax": panel.maximum}
                                              if panel.maximum is not None else {})))
    color = alt.Color("series:N", title=series_title, sort="ascending",
                      legend=alt.Legend(orient="bottom", columns=4, labelLimit=240))
    # The data go in as a named dataset after validation (altair would check every
    # value against the schema: seconds for a day of windows).
    chart = (alt.Chart(alt.NamedData(name=DATASET))
             # A point at each value where they are few (Grafana's showPoints "auto").
             .mark_line(point=per_series <= POINTS_SHOWN, strokeWidth=2)
             .encode(x=x, y=y, color=color,
                     tooltip=[alt.Tooltip("series:N", title=series_title),
                              alt.Tooltip("time:T", title="UTC", format="%Y-%m-%d %H:%M",
                                          formatType="utc"),
                              alt.Tooltip("value:Q", title=value_title, format=unit)])
             .properties(width="container", height=panel.height * 22))
    if panel.alert_above is not None:
        rule = alt.Chart(alt.Data(values=[{"alert": panel.alert_above}])).mark_rule(
            color="red", strokeDash=[4, 4]).encode(y="alert:Q")
        chart = alt.layer(chart, rule).properties(width="container",
                                                  height=panel.height * 22)
    spec = chart.to_dict()
    spec["datasets"] = {DATASET: values}
    return spec


def bars_chart(values: list[tuple[str, float | None]]) -> dict:
    """A table or stat panel drawn as bars in its order (for the PNG of the panel)."""
    rows = [{"name": name, "value": value, "order": n} for n, (name, value) in
            enumerate(values)]
    return (alt.Chart(alt.Data(values=rows)).mark_bar()
            .encode(y=alt.Y("name:N", title=None, sort=alt.EncodingSortField("order")),
                    x=alt.X("value:Q", title=None))
            .properties(width=480)).to_dict()


class _Queries:
    """One page's reads: a statement several panels run (three metrics of one CQL)
    is read once."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self._rows: dict[tuple, object] = {}

    def trend(self, panel: Panel, chosen: dict[str, list[str]], span: data.TimeRange):
        key = (panel.queries, tuple(sorted((k, tuple(v)) for k, v in chosen.items())), span)
        if key not in self._rows:
            self._rows[key] = data.trend_rows(self.sources.session, panel, chosen, span)
        return data.trend_points(self._rows[key], panel)


def _view(queries: _Queries, board: Dashboard, panel: Panel, title: str,
          chosen: dict[str, list[str]], span: data.TimeRange) -> PanelView:
    view = PanelView(panel, title, _key(board, title))
    sources = queries.sources
    try:
        if panel.kind == "trend":
            points = queries.trend(panel, chosen, span)
            if points:
                view.chart = trend_chart(panel, points, "City", span)
        elif panel.kind == "leaderboard":
            view.table = data.leaderboard(sources.session, panel, span)
        elif sources.prometheus_url is None:
            view.error = "no Prometheus: none in the inventory, or --prometheus ''"
        elif panel.kind == "stat":
            view.stat = data.latest(data.prometheus(sources.prometheus_url, panel, span,
                                     login=sources.prometheus_login))
        else:
            points = data.prometheus(sources.prometheus_url, panel, span,
                                     login=sources.prometheus_login)
            view.chart = trend_chart(panel, points, "Series", span) if points else None
    except Exception as error:  # a panel shows its error, as Grafana's do
        view.error = f"{type(error).__name__}: {error}"
    return view


def _row_views(queries: _Queries, board: Dashboard, row: Row, chosen: dict[str, list[str]],
               span: data.TimeRange, city_label: str) -> list[RowView]:
    if not row.repeat:
        title = row.title.replace("$city", city_label)
        return [RowView(title, [_view(queries, board, panel, panel.title, chosen, span)
                                for panel in row.panels])]
    views = []
    for value in chosen.get(row.repeat, []):
        copy = {**chosen, row.repeat: [value]}
        views.append(RowView(row.title.replace(f"${row.repeat}", value), [
            _view(queries, board, panel, panel.title.replace(f"${row.repeat}", value), copy,
                  span) for panel in row.panels]))
    return views


def build(sources: Sources, choice: Choice, now: datetime | None = None) -> Page:
    """Every panel of the three dashboards for ``choice``, read now."""
    now = now or datetime.now(UTC)
    boards = dashboards(Statements(sources.keyspace))
    city_trends = boards[0]
    by_name = {variable.name: variable for variable in city_trends.variables}
    cities = data.variable_values(sources.session, by_name["city"], {})
    chosen_cities = [c for c in choice.cities if c in cities] if choice.cities else cities
    topics = data.variable_values(sources.session, by_name["topic"], {"city": chosen_cities})
    chosen = {"city": chosen_cities, "topic": [t for t in choice.topics if t in topics]}
    queries = _Queries(sources)
    views = []
    for board in boards:
        end = choice.end or now
        span = (data.TimeRange(choice.start, end) if choice.start
                else data.TimeRange.of(board, end))
        view = BoardView(board, span)
        if board.panels:
            view.rows.append(RowView(None, [_view(queries, board, panel, panel.title, chosen,
                                                  span) for panel in board.panels]))
        for row in board.rows:
            view.rows.extend(_row_views(queries, board, row, chosen, span,
                                        ", ".join(choice.cities) or "All"))
        views.append(view)
    return Page(views, cities, topics, choice, now)


@cache
def vega_embed_script() -> str:
    """Vega, Vega-Lite and vega-embed as one script, from vl-convert (no network).

    Bundling takes seconds: the script is kept in the cache directory of the other
    staged artifacts, one file per vl-convert and Vega-Lite version.
    """
    version = alt.SCHEMA_VERSION.lstrip("v").rsplit(".", 1)[0]
    cached = default_cache_dir() / f"vega-embed-{vl_convert.__version__}-vl{version}.js"
    try:
        return cached.read_text("utf-8")
    except OSError:
        pass
    script = vl_convert.javascript_bundle(vl_version=version)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".tmp")
        partial.write_text(script, "utf-8")
        partial.replace(cached)
    except OSError:
        pass  # a read-only home: bundle again next time
    return script


def _template() -> jinja2.Template:
    text = (resources.files("evilnet.dashboards") / "page.html.j2").read_text("utf-8")
    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
        text)


def html(page: Page, *, script_url: str | None = "vega-embed.js", live: bool = True) -> str:
    """The page; ``script_url=None`` inlines the charting script (a static file), and
    ``live`` adds the choice form and the refresh every minute."""
    return _template().render(
        page=page, live=live, refresh=REFRESH_SECONDS,
        script_url=script_url, inline_script=None if script_url else vega_embed_script(),
        specs={view.key: view.chart for board in page.boards for view in board.panels()
               if view.chart},
        json=json, units=UNIT_FORMATS)


def png(view: PanelView) -> bytes | None:
    """One panel as a PNG, titled (None for a panel with an error or nothing to show)."""
    if view.chart:
        spec = dict(view.chart, width=720)
    elif view.table:
        spec = bars_chart(view.table)
    elif view.stat:
        spec = bars_chart(list(view.stat.items()))
    else:
        return None
    return vl_convert.vegalite_to_png(dict(spec, title=view.title), scale=1.5)


def write(page: Page, out: Path) -> list[Path]:
    """The static page (index.html, its script inlined) and a PNG per panel into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "index.html"]
    written[0].write_text(html(page, script_url=None, live=False), "utf-8")
    for board in page.boards:
        for view in board.panels():
            image = png(view)
            if image is not None:
                path = out / f"{view.key}.png"
                path.write_bytes(image)
                written.append(path)
    return written
