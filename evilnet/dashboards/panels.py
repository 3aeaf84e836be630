"""The dashboards' panels as data: titles, kinds, order, queries and variables.

One home for what a dashboard shows. grafana/generate.py turns these definitions into
Grafana's JSON (grafana-foundation-sdk: layout, colours, units); ``evilnet dashboards``
runs the same queries and draws them on a local page. The two can therefore never
disagree on a title, an order or a statement.

Every Cassandra query comes from the schema contract (:class:`evilnet.schema.Statements`)
with its bind markers filled in by what Grafana substitutes before the query reaches
Cassandra (:func:`evilnet.schema.inline`): dashboard variables with the ``sqlstring``
format (``'St. John''s'``: CQL doubles a quote; the ``singlequote`` format would write
``\\'``, which CQL does not read), and the Cassandra datasource plugin's time macros
``$__timeFrom`` / ``$__timeTo`` (epoch milliseconds; :mod:`.interpolation`). Prometheus
queries use the metric names of ``producer/metrics.py``, ``spark/metrics.py``,
:mod:`evilnet.platform.footprint_metrics` and the JMX exporter rules
(ansible/roles/jmx_exporter/templates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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

# What a panel is:
#   trend        CQL, one series per city (the first column) of one metric over time;
#   leaderboard  CQL, one table in the statement's order (metric, city, value);
#   timeseries   PromQL, one series per label set of each expression, over time;
#   stat         PromQL, the latest value of each series.
Kind = Literal["trend", "leaderboard", "timeseries", "stat"]
Datasource = Literal["cassandra", "prometheus"]


def cql_list(variable: str) -> str:
    """A multi-value variable as a CQL list: ``('a','St. John''s')``."""
    return f"(${{{variable}:sqlstring}})"


def cql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Query:
    """One target of a panel: CQL (raw-query mode) or a PromQL expression."""

    text: str
    legend: str | None = None  # Grafana's alias / legendFormat
    ref_id: str = "A"


@dataclass(frozen=True)
class Panel:
    title: str
    kind: Kind
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    # The metric a CQL panel shows (a column of its statement).
    metric: str | None = None
    maximum: float | None = None
    # A share above which the panel's line turns red (an alert's threshold).
    alert_above: float | None = None
    width: int = 12
    height: int = 8

    @property
    def datasource(self) -> Datasource:
        return "cassandra" if self.kind in ("trend", "leaderboard") else "prometheus"


@dataclass(frozen=True)
class Row:
    """A row of panels; ``repeat`` names the variable a row is repeated for (one copy
    per chosen value, collapsed: Grafana runs a collapsed row's queries only when opened)."""

    title: str
    panels: tuple[Panel, ...] = ()
    repeat: str | None = None


@dataclass(frozen=True)
class Variable:
    """A multi-value CQL variable with All (the first column is the value)."""

    name: str
    label: str
    query: str


@dataclass(frozen=True)
class Dashboard:
    file: str
    uid: str
    title: str
    description: str
    tags: tuple[str, ...]
    time_from: str  # a Grafana relative time: the range is [time_from, now)
    refresh: str
    # Panels before the first row, then the rows (a row holds the panels after it).
    panels: tuple[Panel, ...] = ()
    rows: tuple[Row, ...] = ()
    variables: tuple[Variable, ...] = field(default=())
    crosshair: bool = True

    def all_panels(self) -> list[Panel]:
        return [*self.panels, *(panel for row in self.rows for panel in row.panels)]


# --- City trends ----------------------------------------------------------------------

def trend_panel(metric: str, target: str, title: str) -> Panel:
    return Panel(
        title, "trend",
        f"{TITLES[metric]} per city in each 5-minute window, plotted at the window's start "
        f"(windows slide every minute). A range longer than {DASHBOARD_DAYS} days shows its "
        f"newest {DASHBOARD_DAYS} days.",
        (Query(target, legend="{{ city }}"),), metric=metric, width=8, height=9)


def city_trends(cql: Statements) -> Dashboard:
    days = days_of_range(TIME_TO)
    cities = inline(cql.select_windows_of_cities, cql_list("city"), days, TIME_FROM, TIME_TO)
    topics = inline(cql.select_windows_of_city_topics, cql_list("city"), cql_list("topic"),
                    days, TIME_FROM, TIME_TO)
    return Dashboard(
        "city-trends.json", "evilnet-city-trends", "EvilNet · City trends",
        "Tweets, retweets and unique users per city (and per topic) in 5-minute windows, "
        "from Cassandra.", ("evilnet", "analytics"), "now-6h", "1m",
        variables=(Variable("city", "City", inline(cql.select_city_names, str(CITIES_BUCKET))),
                   Variable("topic", "Topic", inline(cql.select_topic_names, cql_list("city")))),
        rows=(Row("Cities: $city", tuple(trend_panel(metric, cities, TITLES[metric])
                                         for metric in METRICS)),
              # One row per chosen topic, each panel one series per city.
              Row("Topic: $topic", tuple(trend_panel(metric, topics, f"{TITLES[metric]} · $topic")
                                         for metric in METRICS), repeat="topic")))


# --- Top cities -----------------------------------------------------------------------

def top_cities(cql: Statements) -> Dashboard:
    window_end = minute_of(TIME_TO, LEADERBOARD_DELAY_MINUTES)
    return Dashboard(
        "top-cities.json", "evilnet-top-cities", "EvilNet · Top cities",
        "The 5 leading cities of the last 60 minutes by each number, read already ordered "
        "from the leaderboard table (no sorting in Grafana).", ("evilnet", "analytics"),
        "now-1h", "1m", crosshair=False,
        panels=tuple(Panel(
            f"Top {TOP_LIMIT} cities by {TITLES[metric].lower()}", "leaderboard",
            f"The hour ending {LEADERBOARD_DELAY_MINUTES} minutes before the end of the time "
            "range (the job writes a minute's leaderboard on its next trigger), in the order "
            "the query returns.",
            (Query(inline(cql.select_leaderboard, cql_text(metric), window_end,
                          str(TOP_LIMIT))),),
            metric=metric, width=8, height=10) for metric in METRICS))


# --- Pipeline health ------------------------------------------------------------------

def prom(expr: str, legend: str, ref_id: str = "A") -> Query:
    return Query(expr, legend, ref_id)


def prom_panel(title: str, description: str, unit: str, *queries: Query,
               **options) -> Panel:
    return Panel(title, "timeseries", description, queries, unit, **options)


def pipeline_health() -> Dashboard:
    received = producer_metrics.POSTS_RECEIVED + "_total"
    produced = producer_metrics.RECORDS_PRODUCED + "_total"
    dead = producer_metrics.DEAD_LETTERS + "_total"
    reconnects = producer_metrics.RECONNECTS + "_total"
    delivered = producer_metrics.POSTS_DELIVERED + "_total"
    latency = producer_metrics.PRODUCE_LATENCY + "_bucket"
    lag = (f"sum by (query) (max by (partition) "
           f"({job_metrics.KAFKA_LOG_END_OFFSET}{{topic=\"{TWEETS_TOPIC}\"}}) "
           f"- on (partition) group_right {job_metrics.END_OFFSET})")
    # Recall of each producer copy against the copy of its shard that delivered most:
    # the counters cannot see the union of the copies, which is at least that maximum,
    # so this overstates recall when the copies miss different posts (by the share of
    # posts only the other copy missed); `evilnet fidelity` is exact, from Kafka.
    per_copy = f"sum by (shard, producer) (increase({delivered}[15m]))"
    disk_share = (f"sum by (host) ({footprint.DISK_USED}{{part=~\"data|logs\"}}) "
                  f"/ on (host) max by (host) ({footprint.DISK_LIMIT})")
    up = Panel("Scrape targets up", "stat",
               "Every target Prometheus scrapes, 1 when its last scrape succeeded.",
               (prom("up", "{{job}} {{host}}"),), width=24, height=5)
    producers = Row("Producers", (
        prom_panel(
            "Posts received and produced per producer",
            "Payloads read from the X API stream, and records Kafka acknowledged (acks=all).",
            "reqps",
            prom(f"sum by (host, shard) (rate({received}[5m]))", "received {{shard}}", "A"),
            prom(f"sum by (host, shard) (rate({produced}[5m]))", "produced {{shard}}", "B")),
        prom_panel(
            "Recall of redundant producers (approximate)",
            "Posts each producer copy delivered over 15 minutes, divided by the most any copy "
            "of the same shard delivered. An upper bound of recall against the union of the "
            "copies; `evilnet fidelity --from … --to …` gives it exactly, with the delays. A "
            "shard that runs once shows 1.", "percentunit",
            prom(f"{per_copy} / on (shard) group_left max by (shard) ({per_copy})",
                 "{{producer}}"), maximum=1),
        prom_panel(
            "Dead-lettered posts", "Payloads sent to the dead-letter topic, by reason.",
            "short", prom(f"sum by (reason) (increase({dead}[5m]))", "{{reason}}")),
        prom_panel(
            "Stream reconnects", "Reconnects of the filtered stream, by cause, per 5 minutes.",
            "short", prom(f"sum by (shard, cause) (increase({reconnects}[5m]))",
                          "{{shard}} {{cause}}")),
        prom_panel(
            "Produce latency (p99)", "Send to acknowledgement, 99th percentile.", "s",
            prom(f"histogram_quantile(0.99, sum by (le, shard) (rate({latency}[5m])))",
                 "{{shard}}"))))
    kafka = Row("Kafka and the stream job", (
        prom_panel(
            "Under-replicated partitions", "Partitions whose followers lag, per broker (0).",
            "short", prom(f"sum by (host) ({KAFKA_UNDER_REPLICATED})", "{{host}}")),
        prom_panel(
            "Consumer lag of the stream job",
            f"Records of '{TWEETS_TOPIC}' not yet consumed by each query: the brokers' log end "
            "offsets minus the offsets of the job's last micro-batch.", "short",
            prom(lag, "{{query}}")),
        prom_panel(
            "Micro-batch duration against the trigger",
            "The last micro-batch's wall time per query; above the trigger, the job falls "
            "behind.", "s",
            prom(job_metrics.BATCH_DURATION, "batch {{query}}", "A"),
            prom(f"max by (query) ({job_metrics.TRIGGER})", "trigger {{query}}", "B")),
        prom_panel(
            "Records read by the stream job", "Records per second read from Kafka, per query.",
            "reqps", prom(f"sum by (query) (rate({job_metrics.INPUT_ROWS}_total[5m]))",
                          "{{query}}"))))
    resources = Row("Resource footprint", (
        prom_panel(
            "Disk: share of each host's limit",
            "Data and logs of a host's services against its runtime_disk_limit (evilnet "
            f"footprint); FootprintDiskAbove80Percent fires above {footprint.ALERT_SHARE:.0%}.",
            "percentunit", prom(disk_share, "{{host}}"), alert_above=footprint.ALERT_SHARE),
        prom_panel(
            "Memory: resident memory per service",
            "RSS of each service's processes (evilnet footprint), and its limit: a cgroup's "
            "memory.max where set (alerted at 80 %), else a JVM's heap (-Xmx, a reference: "
            "a JVM's RSS exceeds its heap by design).", "bytes",
            prom(f"sum by (host, service) ({footprint.MEMORY_USED})", "{{host}} {{service}}",
                 "A"),
            prom(f"max by (host, service, source) ({footprint.MEMORY_LIMIT})",
                 "limit {{host}} {{service}} ({{source}})", "B"))))
    cassandra = Row("Cassandra", (
        prom_panel(
            "Cassandra write latency", "Coordinator write latency by quantile (all tables).",
            "s", prom(f"max by (quantile) ({CASSANDRA_REQUEST_LATENCY}{{operation=\"Write\"}})",
                      "p{{quantile}}")),
        prom_panel(
            "Cassandra table write latency (p99)",
            "Local write latency per table of the keyspace.", "s",
            prom(f"max by (table) ({CASSANDRA_TABLE_WRITE_LATENCY})", "{{table}}"))))
    return Dashboard(
        "pipeline-health.json", "evilnet-pipeline-health", "EvilNet · Pipeline health",
        "Producers, Kafka, the stream job and Cassandra, from Prometheus.",
        ("evilnet", "operations"), "now-1h", "30s",
        panels=(up,), rows=(producers, kafka, resources, cassandra))


def dashboards(cql: Statements | None = None) -> list[Dashboard]:
    """The three dashboards, in the order of the page and of Grafana's menu."""
    cql = cql or Statements()
    return [city_trends(cql), top_cities(cql), pipeline_health()]
