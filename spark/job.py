"""EvilNet's streaming job: posts from Kafka, counted per city (and topic) in sliding windows,
upserted into Cassandra.

    spark-submit job.py --config stream-job.yml [--trigger-seconds 5 ...]

Two streaming queries over the same Kafka topic, each with its own checkpoint::

    Kafka "tweets" -> from_json(PostRecord) -> bad records counted and dropped
      -> watermark on created_at -> duplicates of (city, id) dropped within it
      -> "windows": 5-minute windows sliding by 1 minute, per city and per (city, topic)
                    -> city_windows, city_topic_windows, cities, city_topics
      -> "hours":   60-minute windows sliding by 1 minute, per city
                    -> city_hour_windows, top_cities (the leaderboard)

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
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import yaml
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQueryListener

from evilnet.contracts import TWEETS_TOPIC, PostRecord
from evilnet.schema import HOURS_QUERY, JOB_QUERIES, KEYSPACE, PLAIN_COUNT_QUERY, WINDOWS_QUERY
from evilnet.spark.metrics import JobMetrics
from evilnet.spark.store import CassandraStore, WindowRow, connect

log = logging.getLogger("evilnet.stream-job")

PARSING_METRICS = "parsing"


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
    approx_unique_users: bool = False
    # Fixed in the checkpoint by the first run: later changes have no effect.
    shuffle_partitions: int = 2
    max_offsets_per_trigger: int = 0  # 0: no limit
    starting_offsets: str = "earliest"  # for a fresh checkpoint only
    fail_on_data_loss: bool = False  # offsets deleted by retention before they were read
    log_level: str = "WARN"  # Spark's own log level (the job logs its batches at INFO)
    # The benchmark baseline: count the records, no parsing, windows or state.
    plain_count: bool = False
    # The job's Prometheus metrics (evilnet/spark/metrics.py), served by the driver.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0  # 0: no metrics endpoint

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


def read_records(spark: SparkSession, config: JobConfig) -> DataFrame:
    """The topic's Kafka records (key, value, partition, offset, ...)."""
    source = (spark.readStream.format("kafka")
              .option("kafka.bootstrap.servers", config.bootstrap_servers)
              .option("subscribe", config.topic)
              .option("startingOffsets", config.starting_offsets)
              .option("failOnDataLoss", str(config.fail_on_data_loss).lower()))
    if config.max_offsets_per_trigger:
        source = source.option("maxOffsetsPerTrigger", config.max_offsets_per_trigger)
    return source.load()


def read_posts(spark: SparkSession, config: JobConfig) -> DataFrame:
    """Valid posts from Kafka, one per (city, id) within the watermark.

    A record that is not JSON, or lacks or mistypes a required field, becomes a
    row of nulls and is dropped; the observation ``parsing`` counts them per batch.
    """
    posts = (read_records(spark, config)
             .select(F.from_json(F.col("value").cast("string"), post_schema()).alias("post"))
             .select("post.id", "post.author_id", "post.is_retweet", "post.city", "post.topics",
                     F.col("post.created_at").try_cast("timestamp").alias("created_at")))
    valid = F.coalesce(
        F.col("id").isNotNull() & F.col("author_id").isNotNull() & F.col("city").isNotNull()
        & F.col("is_retweet").isNotNull() & F.col("created_at").isNotNull()
        & (F.size("topics") > 0), F.lit(False))
    return (posts
            .observe(PARSING_METRICS, F.count(F.lit(1)).alias("records"),
                     F.count_if(~valid).alias("bad_records"))
            .where(valid)
            .withWatermark("created_at", f"{config.watermark_seconds} seconds")
            .dropDuplicatesWithinWatermark(["city", "id"]))


def counts(posts: DataFrame, keys: list[str], window_seconds: int, slide_seconds: int,
           approx_unique_users: bool = False) -> DataFrame:
    """tweets, retweets and unique_users per ``keys`` and sliding window."""
    users: Column = (F.approx_count_distinct("author_id") if approx_unique_users
                     else F.size(F.collect_set("author_id")))
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


# --- the sinks --------------------------------------------------------------------------

def _millis(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def window_rows(batch: DataFrame) -> list[WindowRow]:
    rows = [row.asDict() for row in batch.collect()]
    return [WindowRow(row["city"], row.get("topic"), _millis(row["window_start"]),
                      _millis(row["window_end"]), row["tweets"], row["retweets"],
                      row["unique_users"]) for row in rows]


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
        end_offsets = json.loads(progress.sources[0].endOffset or "{}").get(self.config.topic, {})
        parsing = progress.observedMetrics.get(PARSING_METRICS)
        bad_records = parsing["bad_records"] if parsing is not None else 0
        late_rows = sum(op.numRowsDroppedByWatermark for op in progress.stateOperators)
        watermark = progress.eventTime.get("watermark")
        offsets = {int(partition): offset for partition, offset in end_offsets.items()}
        self.metrics.batch(progress.name, progress.durationMs.get("triggerExecution"), offsets,
                           progress.numInputRows, bad_records)
        self.store.write_progress(
            self.config.job_name, progress.name, progress.batchId, offsets,
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
        if name:
            self.metrics.idle(name)
            self.store.touch_progress(self.config.job_name, name, self.config_json,
                                      datetime.now(UTC))

    def onQueryTerminated(self, event) -> None:
        log.warning(json.dumps({"event": "query terminated", "id": str(event.id),
                                "exception": event.exception}))


def start(frame: DataFrame, name: str, write, config: JobConfig):
    return (frame.writeStream.queryName(name)
            .outputMode("update")
            .foreachBatch(lambda batch, _batch_id: write(window_rows(batch)))
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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    config = parse_config(argv)
    queries = (PLAIN_COUNT_QUERY,) if config.plain_count else JOB_QUERIES
    cluster, session = connect(config.cassandra_hosts.split(","), config.cassandra_port,
                               config.cassandra_datacenter or None)
    store = CassandraStore(session, config.keyspace, ttl_seconds=config.ttl_seconds,
                           top_ttl_seconds=config.top_ttl_seconds)
    # Served before the Spark session exists (its start takes most of the driver's),
    # with what the job last recorded: no gap in the series across a restart.
    metrics = JobMetrics(config.trigger_seconds, queries)
    for query, row in store.progress(config.job_name).items():
        if query in queries:
            metrics.resume(query, row.end_offsets, row.updated_at)
    if config.metrics_port:
        metrics.serve(config.metrics_host, config.metrics_port)
    spark = (SparkSession.builder.appName(f"evilnet-{config.job_name}")
             .config("spark.sql.shuffle.partitions", config.shuffle_partitions)
             .config("spark.sql.session.timeZone", "UTC")
             .getOrCreate())
    spark.sparkContext.setLogLevel(config.log_level)
    spark.streams.addListener(ProgressListener(spark, store, config, metrics))
    log.info(json.dumps({"event": "starting", "config": asdict(config)}))

    if config.plain_count:
        start_plain_count(spark, config)
    else:
        posts = read_posts(spark, config)
        start(window_counts(posts, config), WINDOWS_QUERY,
              lambda rows: store.write_windows(rows, datetime.now(UTC)), config)
        start(hour_counts(posts, config), HOURS_QUERY, store.write_hours, config)
    try:
        # A streaming job never ends on its own: any return is a failure to restart.
        spark.streams.awaitAnyTermination()
    finally:
        cluster.shutdown()
    return 1


if __name__ == "__main__":
    sys.exit(main())
