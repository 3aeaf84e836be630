"""EvilNet's streaming job: posts from Kafka, counted per city (and topic) in sliding windows,
upserted into Cassandra.

    spark-submit job.py --config stream-job.yml [--trigger-seconds 5 ...]

Two outputs of the same Kafka topic::

    Kafka "tweets" -> from_json(PostRecord) -> bad records counted and dropped
      -> watermark on created_at -> duplicates of (city, id) dropped within it
      -> "windows": 5-minute windows sliding by 1 minute, per city and per (city, topic)
                    -> city_windows, city_topic_windows, cities, city_topics
      -> "hours":   60-minute windows sliding by 1 minute, per city
                    -> city_hour_windows, top_cities (the leaderboard)

``layout: panes`` runs them as one streaming query, "panes" (one read, parse and
deduplication per trigger; each post aggregated once into its per-minute pane per city
and per city and topic; ``foreachBatch`` upserts the changed panes and composes every
window holding one from them and the stored panes around it, spark/panes.py);
``one``, as one query, "posts" (one aggregation whose groups are both outputs'
windows, one ``foreachBatch`` writing the windows, then the hours); ``two``, as two
queries, each with its own checkpoint, reading and parsing the topic on its own;
``auto`` (the default), the layout of the checkpoint already there, else panes.

Per group and window: tweets (distinct posts, as duplicates are dropped), retweets,
unique users (exact: the size of the set of author ids; ``approx_unique_users``
switches to HyperLogLog). Output mode is update: each micro-batch emits the whole
current aggregate of every window it changed, and ``foreachBatch`` upserts it, so a
batch replayed after a crash overwrites the same rows with the same values: the
checkpoint (offsets and state) plus idempotent upserts make the tables exact.

Everything runs in the JVM except the driver's ``foreachBatch`` and progress
callbacks (cassandra-driver): the executors need no project code and no Python.

``plain_count: true`` runs the benchmark baseline instead (benchmarks/
stream_job_throughput.py): one query, "count", reading the same topic with the same
source options and only counting each micro-batch's records, progress recorded the same way.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import yaml
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQueryListener

from evilnet.cassandra_clients import login_from_file
from evilnet.contracts import TWEETS_TOPIC, PostRecord
from evilnet.kafka_clients import STREAM_JOB_GROUP_PREFIX, KafkaSecurity
from evilnet.metrics_endpoint import EndpointSecurity
from evilnet.schema import (
    HOURS_QUERY,
    JOB_QUERIES,
    KEYSPACE,
    PANES_QUERY,
    PLAIN_COUNT_QUERY,
    POSTS_QUERY,
    WINDOWS_QUERY,
)
from evilnet.spark.metrics import JobMetrics
from evilnet.spark.panes import Pane, Window, compose, neighbour_ranges
from evilnet.spark.store import CassandraStore, WindowRow, connect

log = logging.getLogger("evilnet.stream-job")

PARSING_METRICS = "parsing"
# Spark's state store providers (spark.sql.streaming.stateStore.providerClass).
STATE_STORES = {
    "hdfs": "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider",
    "rocksdb": "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
}
# How the outputs are computed: one query of panes, one query of windows, two
# queries, or what the checkpoint holds.
PANES, ONE_QUERY, TWO_QUERIES, AUTO = "panes", "one", "two", "auto"
LAYOUTS = (AUTO, PANES, ONE_QUERY, TWO_QUERIES)
# The streaming query (and checkpoint subdirectory) of each single-query layout.
SINGLE_QUERY = {PANES: PANES_QUERY, ONE_QUERY: POSTS_QUERY}


@dataclass(frozen=True)
class JobConfig:
    """The job's settings: YAML keys of ``--config``, or ``--kebab-case`` options."""

    bootstrap_servers: str
    checkpoint_dir: str
    cassandra_hosts: str = "127.0.0.1"
    cassandra_port: int = 9042
    cassandra_datacenter: str = ""
    keyspace: str = KEYSPACE
    topic: str = TWEETS_TOPIC
    job_name: str = "stream-job"
    window_seconds: int = 300
    slide_seconds: int = 60
    hour_window_seconds: int = 3600
    watermark_seconds: int = 600
    trigger_seconds: int = 60
    ttl_seconds: int = 30 * 86400
    top_ttl_seconds: int = 2 * 86400
    # The panes layout's stored panes: they must outlive the moment the last window
    # holding them can still change (watermark + hour after their minute, in event time).
    pane_ttl_seconds: int = 2 * 86400
    approx_unique_users: bool = False
    # Both outputs from one streaming query (one read of the topic per trigger), of
    # panes or of windows, or from two (LAYOUTS). Each layout has checkpoints of its
    # own: a change starts from starting_offsets with empty state, so "auto" keeps an
    # existing one's.
    layout: str = "auto"
    # Fixed in the checkpoint by the first run: later changes have no effect.
    shuffle_partitions: int = 2
    # The state store provider (STATE_STORES), also fixed by the first run;
    # rocksdb writes a changelog per batch instead of whole snapshots.
    state_store: str = "hdfs"
    max_offsets_per_trigger: int = 0  # 0: no limit
    starting_offsets: str = "earliest"  # for a fresh checkpoint only
    fail_on_data_loss: bool = False  # offsets deleted by retention before they were read
    log_level: str = "WARN"  # Spark's own log level (the job logs its batches at INFO)
    # The benchmark baseline: count the records, no parsing, windows or state.
    plain_count: bool = False
    # A secured Kafka (SASL_SSL): the client properties file of the job's principal
    # (0600; evilnet.kafka_clients.KafkaSecurity reads it); empty for a plaintext one.
    kafka_client_config: str = ""
    # A secured Cassandra (TLS, PasswordAuthenticator): the login file (a cqlshrc,
    # 0600) of the job's role, evilnet.cassandra_clients.STREAM_JOB, which may only
    # read and write the keyspace's tables; empty for a plaintext cluster.
    cassandra_login: str = ""
    # The job's Prometheus metrics (evilnet/spark/metrics.py), served by the driver.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0  # 0: no metrics endpoint
    # Secured metrics: the endpoint's HTTPS and Prometheus's scrape login, a 0600 file
    # the stream_job role writes (evilnet.metrics_endpoint); empty: plain HTTP.
    metrics_login: str = ""

    def __post_init__(self) -> None:
        for name in ("window_seconds", "slide_seconds", "hour_window_seconds"):
            if getattr(self, name) % 60 or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive number of whole minutes")
        if any(span % self.slide_seconds for span in (self.window_seconds,
                                                       self.hour_window_seconds)):
            raise ValueError("window_seconds and hour_window_seconds must be multiples of "
                             "slide_seconds")
        if self.trigger_seconds <= 0 or self.watermark_seconds < 0:
            raise ValueError("trigger_seconds must be positive, watermark_seconds not negative")
        if self.window_seconds > self.hour_window_seconds:
            raise ValueError("window_seconds must not exceed hour_window_seconds")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}")
        if self.layout == PANES and self.approx_unique_users:
            raise ValueError("approx_unique_users is not available with layout panes "
                             "(its windows are unions of exact user sets)")
        if self.state_store not in STATE_STORES:
            raise ValueError(f"state_store must be one of {', '.join(STATE_STORES)}")


def parse_config(argv: list[str] | None = None) -> JobConfig:
    """Defaults, then the ``--config`` YAML file, then command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="YAML file of JobConfig keys")
    for field in fields(JobConfig):
        option = "--" + field.name.replace("_", "-")
        if field.type in ("bool", bool):
            parser.add_argument(option, action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = int if field.type in ("int", int) else str
            parser.add_argument(option, type=kind, default=None)
    args = vars(parser.parse_args(argv))
    settings = yaml.safe_load(args.pop("config").read_text("utf-8")) if args["config"] else {}
    unknown = set(settings or {}) - {field.name for field in fields(JobConfig)}
    if unknown:
        parser.error(f"unknown keys in --config: {', '.join(sorted(unknown))}")
    settings = {**(settings or {}), **{k: v for k, v in args.items() if v is not None}}
    try:
        return JobConfig(**settings)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
        raise


# --- the pipeline ---------------------------------------------------------------------

def _spark_type(annotation: object) -> T.DataType:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _spark_type(inner)
    if typing.get_origin(annotation) is list:
        return T.ArrayType(_spark_type(typing.get_args(annotation)[0]))
    # created_at is read as text and cast: from_json's timestamp format is narrower
    # than ISO 8601 (any number of fraction digits).
    simple = {int: T.LongType(), str: T.StringType(), bool: T.BooleanType(),
              datetime: T.StringType()}
    return simple[annotation]


def post_schema() -> T.StructType:
    """The Spark schema of a Kafka record's value, derived from :class:`PostRecord`."""
    return T.StructType([T.StructField(name, _spark_type(field.annotation))
                         for name, field in PostRecord.model_fields.items()])


def kafka_security_options(config: JobConfig) -> dict[str, str]:
    """The Kafka source's login to a secured cluster (``kafka.``-prefixed client
    settings: SASL_SSL, SCRAM-SHA-512, the JAAS line, the PEM truststore), read from
    the job's client properties file; none for a plaintext cluster. They never go on
    a command line; Spark redacts the JAAS line (it holds "password") in its UI."""
    if not config.kafka_client_config:
        return {}
    return KafkaSecurity.from_properties(Path(config.kafka_client_config)).spark_source_options()


def read_records(spark: SparkSession, config: JobConfig) -> DataFrame:
    """The topic's Kafka records (key, value, partition, offset, ...)."""
    source = (spark.readStream.format("kafka")
              .option("kafka.bootstrap.servers", config.bootstrap_servers)
              .option("subscribe", config.topic)
              # The consumer groups the job's principal may read with (its ACLs).
              .option("groupIdPrefix", STREAM_JOB_GROUP_PREFIX)
              .option("startingOffsets", config.starting_offsets)
              .option("failOnDataLoss", str(config.fail_on_data_loss).lower()))
    if config.max_offsets_per_trigger:
        source = source.option("maxOffsetsPerTrigger", config.max_offsets_per_trigger)
    return source.options(**kafka_security_options(config)).load()


# PostRecord.author_id is 1 to 19 ASCII digits: what author_key() encodes.
AUTHOR_ID_DIGITS = 19


def author_key(author_id: Column) -> Column:
    """A distinct 64-bit number per author id string (of 1 to AUTHOR_ID_DIGITS digits).

    The user sets hold these instead of the strings: a quarter of the bytes in the
    state and the shuffle, and cheaper to hash. Exact, as the mapping is one to
    one: the ids of L digits take a range of their own, from 10 + 100 + ... +
    10^(L-1) on (so "7" and "07" differ), all below 1.12e19 < 2^64, shifted by
    -2^63 into a signed long.
    """
    digits = F.length(author_id)
    offset = F.concat(F.lit("0"), F.repeat(F.lit("1"), digits - 1)).cast("decimal(20,0)") * 10
    return (author_id.cast("decimal(20,0)") + offset
            - F.lit(str(2**63)).cast("decimal(20,0)")).cast("long")


def read_posts(spark: SparkSession, config: JobConfig) -> DataFrame:
    """Valid posts from Kafka: :func:`parse_posts` of the topic's records."""
    return parse_posts(read_records(spark, config), config)


def parse_posts(records: DataFrame, config: JobConfig) -> DataFrame:
    """Valid posts of records (a ``value`` column: Kafka's, or a local test's text
    source), one per (city, id) within the watermark; ``author`` is the
    :func:`author_key` of the author id.

    A record that is not JSON, or lacks or mistypes a required field (an author id
    that is not 1 to 19 digits, as in PostRecord), becomes a row of nulls and is
    dropped; the observation ``parsing`` counts them per batch.
    """
    posts = (records
             .select(F.from_json(F.col("value").cast("string"), post_schema()).alias("post"))
             .select("post.id", "post.author_id", "post.is_retweet", "post.city", "post.topics",
                     F.col("post.created_at").try_cast("timestamp").alias("created_at")))
    valid = F.coalesce(
        F.col("id").isNotNull() & F.col("city").isNotNull()
        & F.col("author_id").rlike(f"^[0-9]{{1,{AUTHOR_ID_DIGITS}}}$")
        & F.col("is_retweet").isNotNull() & F.col("created_at").isNotNull()
        & (F.size("topics") > 0), F.lit(False))
    return (posts
            .observe(PARSING_METRICS, F.count(F.lit(1)).alias("records"),
                     F.count_if(~valid).alias("bad_records"))
            .where(valid)
            .select("id", author_key(F.col("author_id")).alias("author"), "is_retweet", "city",
                    "topics", "created_at")
            .withWatermark("created_at", f"{config.watermark_seconds} seconds")
            .dropDuplicatesWithinWatermark(["city", "id"]))


def counts(posts: DataFrame, keys: list[str], window_seconds: int, slide_seconds: int,
           approx_unique_users: bool = False) -> DataFrame:
    """tweets, retweets and unique_users per ``keys`` and sliding window."""
    users: Column = (F.approx_count_distinct("author") if approx_unique_users
                     else F.size(F.collect_set("author")))
    window = F.window("created_at", f"{window_seconds} seconds", f"{slide_seconds} seconds")
    return (posts.groupBy(window.alias("window"), *keys)
            .agg(F.count(F.lit(1)).alias("tweets"),
                 F.count_if("is_retweet").alias("retweets"),
                 users.alias("unique_users"))
            # Epoch milliseconds: collect() would turn timestamps into local time.
            .select(*keys, F.unix_millis("window.start").alias("window_start"),
                    F.unix_millis("window.end").alias("window_end"),
                    "tweets", "retweets", "unique_users"))


def window_counts(posts: DataFrame, config: JobConfig) -> DataFrame:
    """Per city (topic null) and per (city, topic): each post once per city and per topic."""
    per_topic = posts.withColumn(
        "topic", F.explode(F.concat(F.array(F.lit(None).cast("string")), F.col("topics"))))
    return counts(per_topic, ["city", "topic"], config.window_seconds, config.slide_seconds,
                  config.approx_unique_users)


def hour_counts(posts: DataFrame, config: JobConfig) -> DataFrame:
    """Per city over the last hour, for the leaderboard: distinct users over the hour."""
    return counts(posts, ["city"], config.hour_window_seconds, config.slide_seconds,
                  config.approx_unique_users)


def output_counts(posts: DataFrame, config: JobConfig) -> DataFrame:
    """Both outputs' rows from one aggregation: ``output`` (WINDOWS_QUERY or HOURS_QUERY),
    city, topic, window_start, window_end and the three numbers.

    Each post is assigned once to the hour windows that hold it (``window``, whose
    event-time metadata gives the state its eviction and late rows their filter, as
    in :func:`counts`); a window starts on a multiple of the slide, so the post's
    short windows are those of them that start less than ``window_seconds`` before
    it. Such a row also stands for its short window (same start), per city and per
    topic: one group key holds both outputs. A short window's state lives as long
    as its hour window's (its key's end is the hour's), not beyond.
    """
    window = F.window("created_at", f"{config.hour_window_seconds} seconds",
                      f"{config.slide_seconds} seconds")
    no_topic = F.lit(None).cast("string")

    def target(output: str, topic: Column) -> Column:
        return F.struct(F.lit(output).alias("output"), topic.alias("topic"))

    short = F.col("created_at") < F.col("window.start") + F.make_dt_interval(
        secs=F.lit(config.window_seconds))
    targets = F.when(short, F.concat(
        F.array(target(HOURS_QUERY, no_topic), target(WINDOWS_QUERY, no_topic)),
        F.transform("topics", lambda topic: target(WINDOWS_QUERY, topic)))
    ).otherwise(F.array(target(HOURS_QUERY, no_topic)))
    rows = (posts.select("city", "topics", "author", "is_retweet", "created_at",
                         window.alias("window"))
            .select("city", "author", "is_retweet", "window",
                    F.explode(targets).alias("target"))
            .select("target.output", "city", "target.topic", "author", "is_retweet",
                    "window"))
    users: Column = (F.approx_count_distinct("author") if config.approx_unique_users
                     else F.size(F.collect_set("author")))
    start_ms = F.unix_millis("window.start")
    return (rows.groupBy("output", "window", "city", "topic")
            .agg(F.count(F.lit(1)).alias("tweets"),
                 F.count_if("is_retweet").alias("retweets"),
                 users.alias("unique_users"))
            .select("output", "city", "topic", start_ms.alias("window_start"),
                    F.when(F.col("output") == HOURS_QUERY, F.unix_millis("window.end"))
                    .otherwise(start_ms + config.window_seconds * 1000).alias("window_end"),
                    "tweets", "retweets", "unique_users"))


def pane_counts(posts: DataFrame, config: JobConfig) -> DataFrame:
    """Each post once into its pane (the slide of event time that holds it), per city
    (topic null) and per (city, topic): city, topic, pane_start (epoch ms), tweets,
    retweets and users (the set of author keys, exact).

    The pane is a tumbling ``window`` of the slide, whose event-time metadata gives the
    state its eviction (a pane's state lives until the watermark passes its end) and
    late rows their filter, as in :func:`counts`: a post the deduplication lets
    through (not behind the watermark) is never behind its pane's end.
    """
    per_topic = posts.withColumn(
        "topic", F.explode(F.concat(F.array(F.lit(None).cast("string")), F.col("topics"))))
    pane = F.window("created_at", f"{config.slide_seconds} seconds")
    return (per_topic.groupBy(pane.alias("window"), "city", "topic")
            .agg(F.count(F.lit(1)).alias("tweets"),
                 F.count_if("is_retweet").alias("retweets"),
                 F.collect_set("author").alias("users"))
            .select("city", "topic", F.unix_millis("window.start").alias("pane_start"),
                    "tweets", "retweets", "users"))


# --- the sinks --------------------------------------------------------------------------

def _millis(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def _window_row(row: dict) -> WindowRow:
    return WindowRow(row["city"], row.get("topic"), _millis(row["window_start"]),
                     _millis(row["window_end"]), row["tweets"], row["retweets"],
                     row["unique_users"])


def window_rows(batch: DataFrame) -> list[WindowRow]:
    return [_window_row(row.asDict()) for row in batch.collect()]


def output_rows(batch: DataFrame) -> dict[str, list[WindowRow]]:
    """A batch of :func:`output_counts`, collected once, per output (JOB_QUERIES)."""
    rows: dict[str, list[WindowRow]] = {output: [] for output in JOB_QUERIES}
    for row in batch.collect():
        record = row.asDict()
        rows[record["output"]].append(_window_row(record))
    return rows


def _row_of(window: Window) -> WindowRow:
    return WindowRow(window.city, window.topic, _millis(window.start), _millis(window.end),
                     window.tweets, window.retweets, window.unique_users)


def composed_rows(changed: list[Pane], stored: list[Pane],
                  config: JobConfig) -> dict[str, list[WindowRow]]:
    """Both outputs' rows (JOB_QUERIES) of every window holding a changed pane."""
    slide, window, hour = (config.slide_seconds * 1000, config.window_seconds * 1000,
                           config.hour_window_seconds * 1000)
    city = [p for p in changed if p.topic is None]
    return {WINDOWS_QUERY: [_row_of(w) for w in compose(changed, stored, window, slide)],
            HOURS_QUERY: [_row_of(w) for w in compose(city, stored, hour, slide)]}


def write_panes_batch(batch: DataFrame, store: CassandraStore, config: JobConfig,
                      seen_at: datetime) -> dict[str, list[WindowRow]]:
    """A batch of :func:`pane_counts`: upsert its panes, compose the windows holding them
    from them and the stored panes around them, upsert those like the other layouts.

    Run again after a crash (same panes, from the same state), it reads the same
    neighbours: a stored pane is either one this batch changed (the batch's own values
    win) or one no later batch can have written yet.
    """
    changed = [Pane(r.city, r.topic, r.pane_start, r.tweets, r.retweets, frozenset(r.users))
               for r in batch.collect()]
    store.write_panes(changed)
    slide = config.slide_seconds * 1000
    reach = max(config.window_seconds, config.hour_window_seconds) * 1000
    ranges = {**neighbour_ranges([p for p in changed if p.topic is not None],
                                 config.window_seconds * 1000, slide),
              **neighbour_ranges([p for p in changed if p.topic is None], reach, slide)}
    rows = composed_rows(changed, store.read_panes(ranges), config)
    store.write_windows(rows[WINDOWS_QUERY], seen_at)
    store.write_hours(rows[HOURS_QUERY])
    return rows


def single_query(posts: DataFrame, layout: str, store: CassandraStore,
                 config: JobConfig) -> tuple[DataFrame, str, Callable[[DataFrame], object]]:
    """The aggregation, query name and batch writer of a single-query layout (SINGLE_QUERY)."""
    if layout == PANES:
        return (pane_counts(posts, config), PANES_QUERY,
                lambda batch: write_panes_batch(batch, store, config, datetime.now(UTC)))

    def write_outputs(batch: DataFrame) -> dict[str, list[WindowRow]]:
        rows = output_rows(batch)
        store.write_windows(rows[WINDOWS_QUERY], datetime.now(UTC))
        store.write_hours(rows[HOURS_QUERY])
        return rows

    return output_counts(posts, config), POSTS_QUERY, write_outputs


class ProgressListener(StreamingQueryListener):
    """Logs every finished micro-batch and records it in job_progress (offsets, bad, late)."""

    def __init__(self, spark: SparkSession, store: CassandraStore, config: JobConfig,
                 metrics: JobMetrics | None = None) -> None:
        self.spark = spark
        self.store = store
        self.config = config
        self.metrics = metrics or JobMetrics(config.trigger_seconds, JOB_QUERIES)
        self.config_json = json.dumps(asdict(config), sort_keys=True)

    def onQueryStarted(self, event) -> None:
        log.info(json.dumps({"event": "query started", "query": event.name, "id": str(event.id),
                             "run_id": str(event.runId)}))

    def onQueryProgress(self, event) -> None:
        progress = event.progress
        # One query writes both outputs: each has its row, as if its own query's.
        outputs = JOB_QUERIES if progress.name in SINGLE_QUERY.values() else (progress.name,)
        end_offsets = json.loads(progress.sources[0].endOffset or "{}").get(self.config.topic, {})
        parsing = progress.observedMetrics.get(PARSING_METRICS)
        bad_records = parsing["bad_records"] if parsing is not None else 0
        late_rows = sum(op.numRowsDroppedByWatermark for op in progress.stateOperators)
        watermark = progress.eventTime.get("watermark")
        offsets = {int(partition): offset for partition, offset in end_offsets.items()}
        for output in outputs:
            self.metrics.batch(output, progress.durationMs.get("triggerExecution"), offsets,
                               progress.numInputRows, bad_records)
            self.store.write_progress(
                self.config.job_name, output, progress.batchId, offsets,
                progress.numInputRows, bad_records, late_rows,
                datetime.fromisoformat(watermark.replace("Z", "+00:00")) if watermark else None,
                self.config_json, datetime.now(UTC))
        log.info(json.dumps({
            "event": "batch", "query": progress.name, "batch": progress.batchId,
            "input_rows": progress.numInputRows, "bad_records": bad_records,
            "late_rows": late_rows, "watermark": watermark,
            "duration_ms": progress.durationMs.get("triggerExecution"),
            # Where the batch's time went (addBatch, queryPlanning, walCommit...):
            # a slow batch is explained by its own log line.
            "phases_ms": dict(progress.durationMs)}))

    def onQueryIdle(self, event) -> None:
        name = {str(q.id): q.name for q in self.spark.streams.active}.get(str(event.id))
        for output in (JOB_QUERIES if name in SINGLE_QUERY.values()
                       else (name,) if name else ()):
            self.metrics.idle(output)
            self.store.touch_progress(self.config.job_name, output, self.config_json,
                                      datetime.now(UTC))

    def onQueryTerminated(self, event) -> None:
        log.warning(json.dumps({"event": "query terminated", "id": str(event.id),
                                "exception": event.exception}))


def start(frame: DataFrame, name: str, write_batch: Callable[[DataFrame], object],
          config: JobConfig):
    return (frame.writeStream.queryName(name)
            .outputMode("update")
            .foreachBatch(lambda batch, _batch_id: write_batch(batch))
            .option("checkpointLocation", f"{config.checkpoint_dir.rstrip('/')}/{name}")
            .trigger(processingTime=f"{config.trigger_seconds} seconds")
            .start())


def start_plain_count(spark: SparkSession, config: JobConfig):
    """The benchmark baseline: each micro-batch's records counted in the JVM, nothing kept."""
    return (read_records(spark, config).writeStream.queryName(PLAIN_COUNT_QUERY)
            .foreachBatch(lambda batch, batch_id: log.info(json.dumps(
                {"event": "count", "batch": batch_id, "records": batch.count()})))
            .option("checkpointLocation",
                    f"{config.checkpoint_dir.rstrip('/')}/{PLAIN_COUNT_QUERY}")
            .trigger(processingTime=f"{config.trigger_seconds} seconds")
            .start())


def chosen_layout(config: JobConfig) -> str:
    """``config.layout``; for ``auto``, the layout whose checkpoint exists (panes, then
    one, then two queries, whose checkpoints must hold offsets), else panes. A
    checkpoint that is not a local directory (hdfs://...) is not looked at: auto means
    panes there."""
    if config.layout != AUTO:
        return config.layout
    root = Path(config.checkpoint_dir)
    for layout in (PANES, ONE_QUERY):
        if (root / SINGLE_QUERY[layout]).exists():
            return layout
    if any((root / query / "offsets").is_dir() for query in JOB_QUERIES):
        return TWO_QUERIES
    return PANES


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    config = parse_config(argv)
    queries = (PLAIN_COUNT_QUERY,) if config.plain_count else JOB_QUERIES
    cluster, session = connect(config.cassandra_hosts.split(","), config.cassandra_port,
                               config.cassandra_datacenter or None,
                               security=login_from_file(Path(config.cassandra_login)
                                                        if config.cassandra_login else None))
    store = CassandraStore(session, config.keyspace, ttl_seconds=config.ttl_seconds,
                           top_ttl_seconds=config.top_ttl_seconds,
                           pane_ttl_seconds=config.pane_ttl_seconds)
    # Served before the Spark session exists (its start takes most of the driver's),
    # with what the job last recorded: no gap in the series across a restart.
    metrics = JobMetrics(config.trigger_seconds, queries)
    for query, row in store.progress(config.job_name).items():
        if query in queries:
            metrics.resume(query, row.end_offsets, row.updated_at)
    if config.metrics_port:
        metrics.serve(config.metrics_host, config.metrics_port,
                      EndpointSecurity.from_file(Path(config.metrics_login))
                      if config.metrics_login else None)
    builder = (SparkSession.builder.appName(f"evilnet-{config.job_name}")
               .config("spark.sql.shuffle.partitions", config.shuffle_partitions)
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.streaming.stateStore.providerClass",
                       STATE_STORES[config.state_store]))
    if config.state_store == "rocksdb":
        # Each batch uploads the changed keys only; a snapshot now and then.
        builder = builder.config(
            "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled", "true")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(config.log_level)
    spark.streams.addListener(ProgressListener(spark, store, config, metrics))
    layout = chosen_layout(config)
    log.info(json.dumps({"event": "starting", "config": asdict(config), "layout": layout}))

    if config.plain_count:
        start_plain_count(spark, config)
    elif layout in SINGLE_QUERY:
        start(*single_query(read_posts(spark, config), layout, store, config), config)
    else:
        posts = read_posts(spark, config)
        start(window_counts(posts, config), WINDOWS_QUERY,
              lambda batch: store.write_windows(window_rows(batch), datetime.now(UTC)), config)
        start(hour_counts(posts, config), HOURS_QUERY,
              lambda batch: store.write_hours(window_rows(batch)), config)
    try:
        # A streaming job never ends on its own: any return is a failure to restart.
        spark.streams.awaitAnyTermination()
    finally:
        cluster.shutdown()
    return 1


if __name__ == "__main__":
    sys.exit(main())
