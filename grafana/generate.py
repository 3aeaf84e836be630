"""EvilNet's Grafana dashboards as code (grafana-foundation-sdk).

    .venv/bin/python grafana/generate.py           # write grafana/dashboards/*.json
    .venv/bin/python grafana/generate.py --check   # exit 1 if they differ from the code

The JSON files are checked in and provisioned by the grafana role; a test fails
when they differ from what this code generates.

The panels themselves (titles, kinds, order, queries, variables) are data in
:mod:`evilnet.dashboards.panels`, which ``evilnet dashboards`` draws too: this module
only lays them out the Grafana way (datasources, units, colours, legends, sizes).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    FieldColorModeId,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from evilnet import generated
from evilnet.dashboards import panels as defs
from evilnet.schema import Statements

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"

# The provisioned datasources (grafana role: grafana_*_datasource_uid must match).
CASSANDRA_PLUGIN = "hadesarchitect-cassandra-datasource"
CASSANDRA = DataSourceRef(type_val=CASSANDRA_PLUGIN, uid="evilnet-cassandra")
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="evilnet-prometheus")


# --- Cassandra queries (the plugin's raw-CQL mode) ---------------------------------

@dataclass
class CassandraDataquery(Dataquery):
    """A query of the Cassandra datasource plugin in raw-CQL mode."""

    target: str
    ref_id: str = "A"
    alias: str | None = None

    def to_json(self) -> dict[str, object]:
        query: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": CASSANDRA.to_json(),
            "queryType": "query",
            "rawQuery": True,
            "target": self.target,
        }
        if self.alias:
            query["alias"] = self.alias
        return query


class CassandraQuery(cogbuilder.Builder[Dataquery]):
    def __init__(self, target: str, alias: str | None = None) -> None:
        self._query = CassandraDataquery(target=target, alias=alias)

    def build(self) -> Dataquery:
        return self._query


def cassandra_variable(variable: defs.Variable) -> dash.QueryVariable:
    """A multi-value variable with All, fed by one CQL statement (first column: the value)."""
    return (dash.QueryVariable(variable.name).label(variable.label).datasource(CASSANDRA)
            .query({"query": variable.query}).multi(True).include_all(True)
            .current(VariableOption(text="All", value="$__all", selected=True))
            .refresh(VariableRefresh.ON_DASHBOARD_LOAD).sort(VariableSort.ALPHABETICAL_ASC))


def keep_fields(*names: str) -> DataTransformerConfig:
    return DataTransformerConfig(id_val="filterFieldsByName",
                                 options={"include": {"names": list(names)}})


# --- panels, by kind -----------------------------------------------------------------

def trend_panel(panel: defs.Panel) -> timeseries.Panel:
    (query,) = panel.queries
    return (timeseries.Panel().title(panel.title).datasource(CASSANDRA)
            .description(panel.description)
            .with_target(CassandraQuery(query.text, alias=query.legend))
            .with_transformation(keep_fields("window_start", panel.metric))
            .unit(panel.unit).min(0).decimals(0).line_width(2).fill_opacity(5)
            # The plugin returns the series (one per city) in a random order on each
            # query; colours by name keep a city's colour across refreshes and panels.
            .color_scheme(dash.FieldColor().mode(FieldColorModeId.PALETTE_CLASSIC_BY_NAME))
            .span(panel.width).height(panel.height)
            .legend(common_builder.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                    .placement(common.LegendPlacement.BOTTOM).show_legend(True)))


def leaderboard_panel(panel: defs.Panel) -> table.Panel:
    (query,) = panel.queries
    return (table.Panel().title(panel.title).description(panel.description)
            .datasource(CASSANDRA).with_target(CassandraQuery(query.text))
            .with_transformation(DataTransformerConfig(id_val="organize", options={
                "excludeByName": {"metric": True},
                "renameByName": {"city": "City", "value": defs.TITLES[panel.metric]}}))
            .span(panel.width).height(panel.height))


def prom(query: defs.Query) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(query.text).legend_format(query.legend).ref_id(
        query.ref_id)


def stat_panel(panel: defs.Panel) -> stat.Panel:
    built = (stat.Panel().title(panel.title).datasource(PROMETHEUS)
             .description(panel.description))
    for query in panel.queries:
        built.with_target(prom(query))
    return (built.thresholds(dash.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([
        Threshold(value=None, color="red"), Threshold(value=1, color="green")]))
        .span(panel.width).height(panel.height))


def prom_panel(panel: defs.Panel) -> timeseries.Panel:
    built = (timeseries.Panel().title(panel.title).description(panel.description)
             .datasource(PROMETHEUS).unit(panel.unit).min(0).line_width(2).fill_opacity(5)
             .span(panel.width).height(panel.height))
    for query in panel.queries:
        built.with_target(prom(query))
    if panel.maximum is not None:
        built.max(panel.maximum)
    if panel.alert_above is not None:
        built.thresholds(dash.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([
            Threshold(value=None, color="green"),
            Threshold(value=panel.alert_above, color="red")])).thresholds_style(
                common_builder.GraphThresholdsStyleConfig().mode(
                    common.GraphThresholdsStyleMode.LINE))
    return built


BUILDERS = {"trend": trend_panel, "leaderboard": leaderboard_panel, "stat": stat_panel,
            "timeseries": prom_panel}


# --- dashboards ---------------------------------------------------------------------

def build(board: defs.Dashboard) -> dash.Dashboard:
    built = (dash.Dashboard(board.title).uid(board.uid).description(board.description)
             .tags(list(board.tags)).timezone("utc").time(board.time_from, "now")
             .refresh(board.refresh))
    if board.crosshair:
        built.tooltip(DashboardCursorSync.CROSSHAIR)
    built.readonly()
    for variable in board.variables:
        built.with_variable(cassandra_variable(variable))
    for panel in board.panels:
        built.with_panel(BUILDERS[panel.kind](panel))
    for row in board.rows:
        if row.repeat:
            # Grafana repeats it, collapsed (as rows that hold their panels are).
            repeated = dash.Row(row.title).repeat(row.repeat).collapsed(True)
            for panel in row.panels:
                repeated.with_panel(BUILDERS[panel.kind](panel))
            built.with_row(repeated)
            continue
        built.with_row(dash.Row(row.title))
        for panel in row.panels:
            built.with_panel(BUILDERS[panel.kind](panel))
    return built


def linked(board: dash.Dashboard) -> dash.Dashboard:
    """A menu of the other EvilNet dashboards, keeping the time range and variables."""
    return board.link(dash.DashboardLink("EvilNet").type(DashboardLinkType.DASHBOARDS)
                      .tags(["evilnet"]).as_dropdown(True).keep_time(True)
                      .include_vars(True))


def dashboards(keyspace: str | None = None) -> dict[str, dict]:
    """Every dashboard's JSON model, by file name."""
    cql = Statements(keyspace) if keyspace else Statements()
    return {board.file: json.loads(json.dumps(linked(build(board)).build(), cls=JSONEncoder))
            for board in defs.dashboards(cql)}


def render(model: dict) -> str:
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    return generated.main(
        argv, description=__doc__.split("\n\n")[0], default_out=DASHBOARDS_DIR,
        command="grafana/generate.py", owned="*.json",
        build=lambda out: {out / name: render(model) for name, model in dashboards().items()})


if __name__ == "__main__":
    sys.exit(main())
