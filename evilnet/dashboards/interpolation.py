"""Grafana's substitutions in a Cassandra panel's CQL, as Cassandra then receives it.

Grafana and the Cassandra datasource plugin (3.3.0) turn a panel's CQL into what
Cassandra runs in two steps, both reproduced here: the frontend interpolates the
dashboard's variables with their format (``${city:sqlstring}``), and the plugin's
backend replaces its time macros ``$__timeFrom`` / ``$__timeTo`` with the range in
epoch milliseconds (pkg/handler/data_query.go, for panel queries only). A variable
query takes only the first step (src/datasource.ts metricFindQuery: the template
service, then the backend's ``variables`` resource, which replaces no macro), so
:func:`interpolate_variable_query` leaves macros in, and refuses them.
The plugin then groups the result rows by the value of their first column (one
data frame per value, :func:`frames`), which is what a panel shows.

The monitoring tests run the dashboards' queries through these functions, and
``evilnet dashboards`` runs them the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::(?P<format>\w+))?\}|\$(?P<bare>[A-Za-z]\w*)")


class InterpolationError(ValueError):
    """A query cannot become CQL: a variable without a value or format, a macro left in."""


def sqlstring(values: Iterable[str]) -> str:
    """Grafana's ``sqlstring`` variable format: each value quoted, quotes doubled."""
    quoted = []
    for value in values:
        if '"' in value or "\\" in value:  # Grafana escapes these with \, which CQL cannot read
            raise InterpolationError(f"a value Grafana would escape with \\: {value!r}")
        quoted.append("'" + value.replace("'", "''") + "'")
    return ",".join(quoted)


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def interpolate(text: str, variables: dict[str, list[str]], start: datetime,
                end: datetime) -> str:
    """A panel query as Cassandra receives it from Grafana and the plugin: the time
    macros of the range [start, end), then the dashboard's variables."""
    text = text.replace("$__timeFrom", str(millis(start))).replace(
        "$__timeTo", str(millis(end)))
    return interpolate_variable_query(text, variables)


def interpolate_variable_query(text: str, variables: dict[str, list[str]]) -> str:
    """A variable query as Cassandra receives it: the dashboard's variables only (the
    plugin replaces no time macro there); a macro left in is refused."""
    def variable(match: re.Match) -> str:
        name = match["name"] or match["bare"]
        if name not in variables:
            raise InterpolationError(f"no value for ${name} in: {text}")
        if match["format"] != "sqlstring":
            raise InterpolationError(
                f"${name} must use the sqlstring format (CQL quoting): {text}")
        return sqlstring(variables[name])

    text = _VARIABLE.sub(variable, text)
    if "$" in text:
        raise InterpolationError(f"unsubstituted macro or variable: {text}")
    return text


def frames(rows: Iterable) -> dict[str, list[tuple]]:
    """The plugin's data frames: rows grouped by the value of their first column."""
    grouped: dict[str, list[tuple]] = {}
    for row in rows:
        grouped.setdefault(str(row[0]), []).append(tuple(row))
    return grouped
