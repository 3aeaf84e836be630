"""EvilNet's Grafana dashboards as code (grafana-foundation-sdk).

    .venv/bin/python grafana/generate.py           # write grafana/dashboards/*.json
    .venv/bin/python grafana/generate.py --check   # exit 1 if they differ from the code

The JSON files are checked in and provisioned by the grafana role; a test fails
when they differ from what this code generates.

Every Cassandra query comes from the schema contract (:class:`evilnet.schema.Statements`):
this module only fills in the bind markers with what Grafana substitutes before the
query reaches Cassandra (:func:`evilnet.schema.inline`): dashboard variables with
the ``sqlstring`` format (``'St. John''s'``: CQL doubles a quote; the ``singlequote``
format would write ``\\'``, which CQL does not read), and the Cassandra datasource
plugin's time macros ``$__timeFrom`` / ``$__timeTo`` (epoch milliseconds). Prometheus
queries use the metric names of ``producer/metrics.py``, ``spark/metrics.py`` and
the JMX exporter rules (ansible/roles/jmx_exporter/templates).
"""

from __future__ import annotations

import argparse
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

from evilnet.contracts import TWEETS_TOPIC
from evilnet.platform import footprint_metrics as footprint
from evilnet.producer import metrics as producer_metrics
from evilnet.schema import (
    CITIES_BUCKET,
    DASHBOARD_DAYS,
    METRICS,
    Statements,
    days_of_range,
    inline,
    minute_of,
)
from evilnet.spark import metrics as job_metrics

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"

# The provisioned datasources (grafana role: grafana_*_datasource_uid must match).
CASSANDRA_PLUGIN = "hadesarchitect-cassandra-datasource"
CASSANDRA = DataSourceRef(type_val=CASSANDRA_PLUGIN, uid="evilnet-cassandra")
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="evilnet-prometheus")

# The plugin's time macros (epoch milliseconds of the panel's time range).
TIME_FROM = "$__timeFrom"
TIME_TO = "$__timeTo"
# The job writes a minute's leaderboard on its next trigger (1 minute by default):
# the top-cities panels read the hour that ended this many whole minutes ago.
LEADERBOARD_DELAY_MINUTES = 2
TOP_LIMIT = 5

TITLES = {"tweets": "Tweets", "retweets": "Retweets", "unique_users": "Unique users"}

# Metric names of the JMX exporter rules (ansible/roles/jmx_exporter/templates).
KAFKA_UNDER_REPLICATED = "kafka_server_replicamanager_underreplicatedpartitions"
CASSANDRA_REQUEST_LATENCY = "cassandra_client_request_latency_seconds"
CASSANDRA_TABLE_WRITE_LATENCY = "cassandra_table_write_latency_seconds"


def cql_list(variable: str) -> str:
    """A multi-value variable as a CQL list: ``('a','St. John''s')``."""
    return f"(${{{variable}:sqlstring}})"


def cql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


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


def cassandra_variable(name: str, label: str, query: str) -> dash.QueryVariable:
    """A multi-value variable with All, fed by one CQL statement (first column: the value)."""
    return (dash.QueryVariable(name).label(label).datasource(CASSANDRA)
            .query({"query": query}).multi(True).include_all(True)
            .current(VariableOption(text="All", value="$__all", selected=True))
            .refresh(VariableRefresh.ON_DASHBOARD_LOAD).sort(VariableSort.ALPHABETICAL_ASC))


def keep_fields(*names: str) -> DataTransformerConfig:
    return DataTransformerConfig(id_val="filterFieldsByName",
                                 options={"include": {"names": list(names)}})


def trend_panel(metric: str, target: str, title: str) -> timeseries.Panel:
    return (timeseries.Panel().title(title).datasource(CASSANDRA)
            .description(f"{TITLES[metric]} per city in each 5-minute window, plotted at the "
                         "window's start (windows slide every minute). A range longer than "
                         f"{DASHBOARD_DAYS} days shows its newest {DASHBOARD_DAYS} days.")
            .with_target(CassandraQuery(target, alias="{{ city }}"))
            .with_transformation(keep_fields("window_start", metric))
            .unit("short").min(0).decimals(0).line_width(2).fill_opacity(5)
            # The plugin returns the series (one per city) in a random order on each
            # query; colours by name keep a city's colour across refreshes and panels.
            .color_scheme(dash.FieldColor().mode(FieldColorModeId.PALETTE_CLASSIC_BY_NAME))
            .span(8).height(9)
            .legend(common_builder.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                    .placement(common.LegendPlacement.BOTTOM).show_legend(True)))


# --- dashboards ---------------------------------------------------------------------

def city_trends(cql: Statements) -> dash.Dashboard:
    days = days_of_range(TIME_TO)
    cities = inline(cql.select_windows_of_cities, cql_list("city"), days, TIME_FROM, TIME_TO)
    topics = inline(cql.select_windows_of_city_topics, cql_list("city"), cql_list("topic"),
                    days, TIME_FROM, TIME_TO)
    board = (dash.Dashboard("EvilNet · City trends").uid("evilnet-city-trends")
             .description("Tweets, retweets and unique users per city (and per topic) in "
                          "5-minute windows, from Cassandra.")
             .tags(["evilnet", "analytics"]).timezone("utc").time("now-6h", "now")
             .refresh("1m").tooltip(DashboardCursorSync.CROSSHAIR).readonly()
             .with_variable(cassandra_variable(
                 "city", "City", inline(cql.select_city_names, str(CITIES_BUCKET))))
             .with_variable(cassandra_variable(
                 "topic", "Topic", inline(cql.select_topic_names, cql_list("city"))))
             .with_row(dash.Row("Cities: $city")))
    for metric in METRICS:
        board.with_panel(trend_panel(metric, cities, TITLES[metric]))
    # One row per chosen topic (Grafana repeats it; collapsed, as rows that hold their
    # panels are), each panel one series per city.
    row = dash.Row("Topic: $topic").repeat("topic").collapsed(True)
    for metric in METRICS:
        row.with_panel(trend_panel(metric, topics, f"{TITLES[metric]} · $topic"))
    return board.with_row(row)


def top_cities(cql: Statements) -> dash.Dashboard:
    board = (dash.Dashboard("EvilNet · Top cities").uid("evilnet-top-cities")
             .description("The 5 leading cities of the last 60 minutes by each number, read "
                          "already ordered from the leaderboard table (no sorting in Grafana).")
             .tags(["evilnet", "analytics"]).timezone("utc").time("now-1h", "now")
             .refresh("1m").readonly())
    window_end = minute_of(TIME_TO, LEADERBOARD_DELAY_MINUTES)
    for metric in METRICS:
        target = inline(cql.select_leaderboard, cql_text(metric), window_end, str(TOP_LIMIT))
        board.with_panel(
            table.Panel().title(f"Top {TOP_LIMIT} cities by {TITLES[metric].lower()}")
            .description(f"The hour ending {LEADERBOARD_DELAY_MINUTES} minutes before the end "
                         "of the time range (the job writes a minute's leaderboard on its "
                         "next trigger), in the order the query returns.")
            .datasource(CASSANDRA).with_target(CassandraQuery(target))
            .with_transformation(DataTransformerConfig(id_val="organize", options={
                "excludeByName": {"metric": True},
                "renameByName": {"city": "City", "value": TITLES[metric]}}))
            .span(8).height(10))
    return board


def prom(expr: str, legend: str, ref_id: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id)


def prom_panel(title: str, description: str, unit: str, *queries: prometheus.Dataquery,
               width: int = 12) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(description).datasource(PROMETHEUS)
             .unit(unit).min(0).line_width(2).fill_opacity(5).span(width).height(8))
    for query in queries:
        panel.with_target(query)
    return panel


def pipeline_health() -> dash.Dashboard:
    received = producer_metrics.POSTS_RECEIVED + "_total"
    produced = producer_metrics.RECORDS_PRODUCED + "_total"
    dead = producer_metrics.DEAD_LETTERS + "_total"
    reconnects = producer_metrics.RECONNECTS + "_total"
    delivered = producer_metrics.POSTS_DELIVERED + "_total"
    latency = producer_metrics.PRODUCE_LATENCY + "_bucket"
    lag = (f"sum by (query) (max by (partition) "
           f"({job_metrics.KAFKA_LOG_END_OFFSET}{{topic=\"{TWEETS_TOPIC}\"}}) "
           f"- on (partition) group_right {job_metrics.END_OFFSET})")
    board = (dash.Dashboard("EvilNet · Pipeline health").uid("evilnet-pipeline-health")
             .description("Producers, Kafka, the stream job and Cassandra, from Prometheus.")
             .tags(["evilnet", "operations"]).timezone("utc").time("now-1h", "now")
             .refresh("30s").tooltip(DashboardCursorSync.CROSSHAIR).readonly())
    board.with_panel(
        stat.Panel().title("Scrape targets up").datasource(PROMETHEUS)
        .description("Every target Prometheus scrapes, 1 when its last scrape succeeded.")
        .with_target(prom("up", "{{job}} {{host}}"))
        .thresholds(dash.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([
            Threshold(value=None, color="red"), Threshold(value=1, color="green")]))
        .span(24).height(5))
    board.with_row(dash.Row("Producers"))
    board.with_panel(prom_panel(
        "Posts received and produced per producer",
        "Payloads read from the X API stream, and records Kafka acknowledged (acks=all).",
        "reqps",
        prom(f"sum by (host, shard) (rate({received}[5m]))", "received {{shard}}", "A"),
        prom(f"sum by (host, shard) (rate({produced}[5m]))", "produced {{shard}}", "B")))
    # Recall of each producer copy against the copy of its shard that delivered most:
    # the counters cannot see the union of the copies, which is at least that maximum,
    # so this overstates recall when the copies miss different posts (by the share of
    # posts only the other copy missed); `evilnet fidelity` is exact, from Kafka.
    per_copy = f"sum by (shard, producer) (increase({delivered}[15m]))"
    board.with_panel(prom_panel(
        "Recall of redundant producers (approximate)",
        "Posts each producer copy delivered over 15 minutes, divided by the most any copy "
        "of the same shard delivered. An upper bound of recall against the union of the "
        "copies; `evilnet fidelity --from … --to …` gives it exactly, with the delays. A "
        "shard that runs once shows 1.", "percentunit",
        prom(f"{per_copy} / on (shard) group_left max by (shard) ({per_copy})",
             "{{producer}}")).max(1))
    board.with_panel(prom_panel(
        "Dead-lettered posts", "Payloads sent to the dead-letter topic, by reason.", "short",
        prom(f"sum by (reason) (increase({dead}[5m]))", "{{reason}}")))
    board.with_panel(prom_panel(
        "Stream reconnects", "Reconnects of the filtered stream, by cause, per 5 minutes.",
        "short", prom(f"sum by (shard, cause) (increase({reconnects}[5m]))",
                      "{{shard}} {{cause}}")))
    board.with_panel(prom_panel(
        "Produce latency (p99)", "Send to acknowledgement, 99th percentile.", "s",
        prom(f"histogram_quantile(0.99, sum by (le, shard) (rate({latency}[5m])))",
             "{{shard}}")))
    board.with_row(dash.Row("Kafka and the stream job"))
    board.with_panel(prom_panel(
        "Under-replicated partitions", "Partitions whose followers lag, per broker (0).",
        "short", prom(f"sum by (host) ({KAFKA_UNDER_REPLICATED})", "{{host}}")))
    board.with_panel(prom_panel(
        "Consumer lag of the stream job",
        f"Records of '{TWEETS_TOPIC}' not yet consumed by each query: the brokers' log end "
        "offsets minus the offsets of the job's last micro-batch.", "short",
        prom(lag, "{{query}}")))
    board.with_panel(prom_panel(
        "Micro-batch duration against the trigger",
        "The last micro-batch's wall time per query; above the trigger, the job falls behind.",
        "s",
        prom(job_metrics.BATCH_DURATION, "batch {{query}}", "A"),
        prom(f"max by (query) ({job_metrics.TRIGGER})", "trigger {{query}}", "B")))
    board.with_panel(prom_panel(
        "Records read by the stream job", "Records per second read from Kafka, per query.",
        "reqps", prom(f"sum by (query) (rate({job_metrics.INPUT_ROWS}_total[5m]))",
                      "{{query}}")))
    board.with_row(dash.Row("Resource footprint"))
    disk_share = (f"sum by (host) ({footprint.DISK_USED}{{part=~\"data|logs\"}}) "
                  f"/ on (host) max by (host) ({footprint.DISK_LIMIT})")
    share_line = dash.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([
        Threshold(value=None, color="green"),
        Threshold(value=footprint.ALERT_SHARE, color="red")])
    board.with_panel(prom_panel(
        "Disk: share of each host's limit",
        "Data and logs of a host's services against its runtime_disk_limit (evilnet "
        f"footprint); FootprintDiskAbove80Percent fires above {footprint.ALERT_SHARE:.0%}.",
        "percentunit", prom(disk_share, "{{host}}"))
        .thresholds(share_line).thresholds_style(
            common_builder.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.LINE)))
    board.with_panel(prom_panel(
        "Memory: resident memory per service",
        "RSS of each service's processes (evilnet footprint), and its limit: a cgroup's "
        "memory.max where set (alerted at 80 %), else a JVM's heap (-Xmx, a reference: "
        "a JVM's RSS exceeds its heap by design).", "bytes",
        prom(f"sum by (host, service) ({footprint.MEMORY_USED})", "{{host}} {{service}}", "A"),
        prom(f"max by (host, service, source) ({footprint.MEMORY_LIMIT})",
             "limit {{host}} {{service}} ({{source}})", "B")))
    board.with_row(dash.Row("Cassandra"))
    board.with_panel(prom_panel(
        "Cassandra write latency", "Coordinator write latency by quantile (all tables).", "s",
        prom(f"max by (quantile) ({CASSANDRA_REQUEST_LATENCY}{{operation=\"Write\"}})",
             "p{{quantile}}")))
    board.with_panel(prom_panel(
        "Cassandra table write latency (p99)", "Local write latency per table of the keyspace.",
        "s", prom(f"max by (table) ({CASSANDRA_TABLE_WRITE_LATENCY})", "{{table}}")))
    return board


def linked(board: dash.Dashboard) -> dash.Dashboard:
    """A menu of the other EvilNet dashboards, keeping the time range and variables."""
    return board.link(dash.DashboardLink("EvilNet").type(DashboardLinkType.DASHBOARDS)
                      .tags(["evilnet"]).as_dropdown(True).keep_time(True)
                      .include_vars(True))


def dashboards(keyspace: str | None = None) -> dict[str, dict]:
    """Every dashboard's JSON model, by file name."""
    cql = Statements(keyspace) if keyspace else Statements()
    built = {"city-trends.json": linked(city_trends(cql)),
             "top-cities.json": linked(top_cities(cql)),
             "pipeline-health.json": linked(pipeline_health())}
    return {name: json.loads(json.dumps(board.build(), cls=JSONEncoder))
            for name, board in built.items()}


def render(model: dict) -> str:
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a checked-in file differs")
    parser.add_argument("--out", type=Path, default=DASHBOARDS_DIR)
    args = parser.parse_args(argv)
    expected = {name: render(model) for name, model in dashboards().items()}
    stale = sorted(name for name, text in expected.items()
                   if not (args.out / name).exists() or (args.out / name).read_text() != text)
    extra = sorted(p.name for p in args.out.glob("*.json") if p.name not in expected)
    if args.check:
        for name in stale + extra:
            print(f"{args.out / name}: differs from grafana/generate.py", file=sys.stderr)
        if stale or extra:
            print("regenerate: .venv/bin/python grafana/generate.py", file=sys.stderr)
        return 1 if stale or extra else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (args.out / name).write_text(expected[name])
    for name in extra:
        (args.out / name).unlink()
    print(f"{len(expected)} dashboards in {args.out} ({len(stale)} written, "
          f"{len(extra)} removed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
