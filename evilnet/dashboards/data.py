"""What the dashboards' panels show, read the way Grafana reads it.

A Cassandra panel's CQL is interpolated as Grafana and the plugin do
(:mod:`.interpolation`) and run as it is; its rows are the plugin's frames (one
series per value of the first column). A Prometheus panel's expressions are
evaluated over the range by ``/api/v1/query_range``, its series named by the
target's legend format (``{{label}}``), as Grafana names them.

Everything here only reads.
"""

from __future__ import annotations

import json
import re
import ssl
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from evilnet.dashboards.interpolation import interpolate, interpolate_variable_query
from evilnet.dashboards.panels import Dashboard, Panel, Variable

# Grafana's default resolution: about one point per this many seconds of range per
# pixel column; Prometheus refuses more than 11,000 points a series.
POINTS_PER_SERIES = 300
MIN_STEP_SECONDS = 15

_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_RELATIVE = re.compile(r"^now-(?P<count>\d+)(?P<unit>[smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class DataError(RuntimeError):
    """A panel's data cannot be read."""


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @classmethod
    def of(cls, board: Dashboard, end: datetime) -> TimeRange:
        """The dashboard's default range (``now-6h`` to now) ending at ``end``."""
        match = _RELATIVE.match(board.time_from)
        if match is None:
            raise ValueError(f"{board.uid}: unsupported time range {board.time_from!r}")
        span = timedelta(**{_UNITS[match["unit"]]: int(match["count"])})
        return cls(end - span, end)

    @property
    def step_seconds(self) -> int:
        seconds = (self.end - self.start).total_seconds()
        return max(MIN_STEP_SECONDS, int(seconds // POINTS_PER_SERIES))


def variable_values(session, variable: Variable, chosen: dict[str, list[str]]) -> list[str]:
    """A variable's choices, sorted as Grafana sorts them (alphabetically, ascending)."""
    rows = session.execute(interpolate_variable_query(variable.query, chosen))
    return sorted({str(row[0]) for row in rows})


@dataclass(frozen=True)
class Point:
    series: str
    time: datetime
    value: float | None


def trend_rows(session, panel: Panel, chosen: dict[str, list[str]], span: TimeRange) -> list:
    """A trend panel's rows: its statement, interpolated, as Cassandra returns them."""
    (query,) = panel.queries
    return list(session.execute(interpolate(query.text, chosen, span.start, span.end)))


def trend_points(rows: list, panel: Panel) -> list[Point]:
    """Per city (the first column), the panel's metric at each window's start."""
    return [Point(str(row[0]), row.window_start.replace(tzinfo=UTC),
                  getattr(row, panel.metric)) for row in rows]


def leaderboard(session, panel: Panel, span: TimeRange) -> list[tuple[str, int]]:
    """A leaderboard panel: (city, value) in the order the statement returns them."""
    (query,) = panel.queries
    rows = session.execute(interpolate(query.text, {}, span.start, span.end))
    return [(row.city, row.value) for row in rows]


def legend(template: str | None, labels: dict[str, str]) -> str:
    """A series name as Grafana writes it from a legend format (a label it lacks: '')."""
    if not template:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    return _LEGEND_LABEL.sub(lambda m: labels.get(m[1], ""), template)


class WebLogin(Protocol):
    """A secured Prometheus's login (evilnet.platform.health.WebLogin: basic auth over
    TLS), as the command line found it in the inventory's files."""

    def request(self, url: str) -> urllib.request.Request: ...

    def context(self) -> ssl.SSLContext: ...


def prometheus(url: str, panel: Panel, span: TimeRange, timeout: float = 10,
               login: WebLogin | None = None) -> list[Point]:
    """A Prometheus panel: every series of each of its expressions over the range."""
    points = []
    for query in panel.queries:
        params = urllib.parse.urlencode({
            "query": query.text, "start": span.start.timestamp(), "end": span.end.timestamp(),
            "step": span.step_seconds})
        address = f"{url.rstrip('/')}/api/v1/query_range?{params}"
        try:
            with (urllib.request.urlopen(login.request(address), timeout=timeout,
                                         context=login.context()) if login
                  else urllib.request.urlopen(address, timeout=timeout)) as response:
                answer = json.load(response)
        except (OSError, ValueError) as error:
            raise DataError(f"Prometheus at {url}: {error}") from error
        if answer.get("status") != "success":
            raise DataError(f"Prometheus at {url}: {answer.get('error', answer)}")
        for series in answer["data"]["result"]:
            name = legend(query.legend, series["metric"])
            for stamp, value in series["values"]:
                number = float(value)
                points.append(Point(name, datetime.fromtimestamp(float(stamp), UTC),
                                    number if number == number else None))  # NaN: a gap
    return points


def latest(points: list[Point]) -> dict[str, float | None]:
    """The last value of each series (a stat panel), by series name."""
    last: dict[str, Point] = {}
    for point in points:
        if point.series not in last or point.time >= last[point.series].time:
            last[point.series] = point
    return {name: last[name].value for name in sorted(last)}
