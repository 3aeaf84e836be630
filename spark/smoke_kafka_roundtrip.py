"""Smoke job: on the cluster, read a Kafka topic and write another through the staged connector.

Submit it with ``spark-submit`` (``spark/submit.py`` builds the command line, with
the connector's jars). It proves what the streaming job relies on:

1. executors run on the workers: a tiny Python task reports the address and
   working directory it ran in (a worker's application directory);
2. unless ``--probe-only``: the input and output topics exist (created if missing,
   with a one-hour retention: the brokers do not auto-create topics);
3. a fresh run id's ``--records`` records are written to the input topic
   (Kafka sink);
4. the round trip: this run's records are read back from the input topic (Kafka
   source), rewritten (JSON carrying their source partition and offset) and written
   to the output topic, as a batch job or, with ``--mode stream``, as a Structured
   Streaming query with an ``availableNow`` trigger;
5. the output topic is read back: it must hold exactly this run's records, one
   per sequence number.

The last line on standard output is ``SMOKE_RESULT <json>``; the exit status is 0
only if every check passed. Nothing here needs the pipeline's own topics.

On a secured stack (docs/security.md): ``spark-submit`` with ``SPARK_CONF_DIR`` the
Spark host's conf directory proves the cluster's secret (``spark-defaults.conf``);
``--kafka-client-config FILE`` names a Kafka client properties file (0600: SASL_SSL,
SCRAM-SHA-512, a PEM truststore) of a principal that may create, write and read the
two topics (outside the pipeline's ACLs: the admin), its path the only thing on the
command line; ``--ui-cafile FILE`` the CA bundle the driver's HTTPS UI is verified with.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import ssl
import sys
import tempfile
import time
import urllib.request
import uuid

RESULT_PREFIX = "SMOKE_RESULT "
# How long the driver's UI may take to list the executors (it is slow on a loaded machine).
UI_PATIENCE_S = 90.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", help="host:port[,host:port...] of the brokers")
    parser.add_argument("--input-topic", default="evilnet.smoke.in")
    parser.add_argument("--output-topic", default="evilnet.smoke.out")
    parser.add_argument("--records", type=int, default=100, help="records written and expected")
    parser.add_argument("--mode", choices=["batch", "stream"], default="batch",
                        help="the round trip as a batch job or a Structured Streaming query")
    parser.add_argument("--partitions", type=int, default=2,
                        help="partitions of the topics when this job creates them")
    parser.add_argument("--replication-factor", type=int, default=1,
                        help="replication factor of the topics when this job creates them")
    parser.add_argument("--no-create-topics", dest="create_topics", action="store_false",
                        help="expect both topics to exist")
    parser.add_argument("--expect-worker", dest="expect_workers", action="append", default=[],
                        metavar="ADDRESS",
                        help="a worker's address (SPARK_LOCAL_IP): every task must run on one"
                             " of those given (repeatable)")
    parser.add_argument("--probe-only", action="store_true",
                        help="only check that executors run on the workers (no Kafka)")
    parser.add_argument("--kafka-client-config", metavar="FILE",
                        help="Kafka client properties of a secured Kafka (SASL_SSL) "
                             "[default: plaintext]")
    parser.add_argument("--ui-cafile", metavar="FILE",
                        help="the CA bundle of the driver's HTTPS UI (a secured Spark)")
    args = parser.parse_args(argv)
    if not args.probe_only and not args.bootstrap_servers:
        parser.error("--bootstrap-servers is required (or --probe-only)")
    return args


def _kafka_security(args: argparse.Namespace):
    """The login of ``--kafka-client-config`` (evilnet.kafka_clients, from the hosts'
    venv, the driver's Python), or None for a plaintext Kafka."""
    if not args.kafka_client_config:
        return None
    from pathlib import Path

    from evilnet.kafka_clients import KafkaSecurity

    return KafkaSecurity.from_properties(Path(args.kafka_client_config))


def ensure_topics(args: argparse.Namespace) -> list[str]:
    """Create the topics that are missing; leave existing ones as they are."""
    # kafka-python, from the hosts' venv (the driver's Python).
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    security = _kafka_security(args)
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap_servers.split(","),
                             client_id="evilnet-smoke", request_timeout_ms=30000,
                             **(security.kwargs() if security else {}))
    try:
        wanted = list(dict.fromkeys([args.input_topic, args.output_topic]))
        missing = [name for name in wanted if name not in set(admin.list_topics())]
        if missing:
            # Another run may have created one meanwhile.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([
                    NewTopic(name, args.partitions, args.replication_factor,
                             topic_configs={"retention.ms": str(3_600_000)})
                    for name in missing])
        return [f"created {name} ({args.partitions} partitions, replication "
                f"{args.replication_factor})" for name in missing]
    finally:
        admin.close()


def _task_location(_: object) -> tuple[str, str, str]:
    """Where a task runs: this executor's bind address, host name and working directory."""
    return (os.environ.get("SPARK_LOCAL_IP", ""), socket.gethostname(), os.getcwd())


def _executors_from_the_ui(sc, patience_s: float = UI_PATIENCE_S,
                           cafile: str | None = None) -> list[str]:
    """Every executor but the driver, with its host, from the driver's own REST API.

    On a loaded machine the driver's UI can take longer than one request's timeout
    to answer; it is asked again until ``patience_s`` has passed.
    """
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/executors"
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    deadline = time.monotonic() + patience_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=15, context=context) as response:
                return [e["hostPort"] for e in json.load(response) if e["id"] != "driver"]
        except OSError:  # refused, reset or timed out (URLError and TimeoutError are OSErrors)
            if time.monotonic() >= deadline:
                raise
            time.sleep(2)


def probe_executors(spark, ui_cafile: str | None = None) -> dict:
    """Run a few Python tasks; report where they ran and the executors the driver knows."""
    sc = spark.sparkContext
    slices = max(2, sc.defaultParallelism)
    locations = sorted(set(sc.parallelize(range(slices), slices).map(_task_location).collect()))
    try:
        executors = _executors_from_the_ui(sc, cafile=ui_cafile)
    except Exception as error:  # the UI may be disabled; the task locations still tell
        executors = [f"unknown ({type(error).__name__})"]
    return {
        "driver_host": sc.getConf().get("spark.driver.host", socket.gethostname()),
        "executors": sorted(executors),
        "task_locations": [
            {"local_ip": ip, "hostname": host, "cwd": cwd} for ip, host, cwd in locations],
    }


def _kafka(reader_or_writer, args: argparse.Namespace):
    """The Kafka source or sink on the brokers, with the login where one is given."""
    security = _kafka_security(args)
    return (reader_or_writer.format("kafka")
            .option("kafka.bootstrap.servers", args.bootstrap_servers)
            .options(**(security.spark_source_options() if security else {})))


def seed(spark, args: argparse.Namespace, run_id: str) -> None:
    from pyspark.sql import functions as F

    records = spark.range(args.records, numPartitions=2).select(
        F.lit(run_id).alias("key"),
        F.to_json(F.struct(F.lit(run_id).alias("run"), F.col("id").alias("seq"))).alias("value"))
    _kafka(records.write, args).option("topic", args.input_topic).save()


def _rewrite(source, run_id: str):
    """This run's records of ``source`` (a Kafka source frame), rewritten for the output topic."""
    from pyspark.sql import functions as F

    mine = source.where(F.col("key").cast("string") == F.lit(run_id))
    value = F.col("value").cast("string")
    return mine.select(
        F.col("key"),
        F.to_json(F.struct(
            F.lit(run_id).alias("run"),
            F.get_json_object(value, "$.seq").cast("long").alias("seq"),
            F.col("topic").alias("source_topic"),
            F.col("partition").alias("source_partition"),
            F.col("offset").alias("source_offset"),
        )).alias("value"))


def roundtrip_batch(spark, args: argparse.Namespace, run_id: str) -> None:
    source = (_kafka(spark.read, args)
              .option("subscribe", args.input_topic)
              .option("startingOffsets", "earliest").option("endingOffsets", "latest").load())
    out = _rewrite(source, run_id)
    _kafka(out.write, args).option("topic", args.output_topic).save()


def roundtrip_stream(spark, args: argparse.Namespace, run_id: str) -> None:
    source = (_kafka(spark.readStream, args)
              .option("subscribe", args.input_topic)
              .option("startingOffsets", "earliest").load())
    with tempfile.TemporaryDirectory(prefix="evilnet-smoke-checkpoint-") as checkpoint:
        query = (_kafka(_rewrite(source, run_id).writeStream, args)
                 .option("topic", args.output_topic)
                 .option("checkpointLocation", checkpoint)
                 .trigger(availableNow=True)
                 .start())
        query.awaitTermination()
        if query.exception() is not None:
            raise RuntimeError(f"streaming round trip failed: {query.exception()}")


def verify(spark, args: argparse.Namespace, run_id: str) -> dict:
    from pyspark.sql import functions as F

    out = (_kafka(spark.read, args)
           .option("subscribe", args.output_topic)
           .option("startingOffsets", "earliest").option("endingOffsets", "latest").load())
    parsed = out.where(F.col("key").cast("string") == F.lit(run_id)).select(
        F.get_json_object(F.col("value").cast("string"), "$.seq").cast("long").alias("seq"),
        F.get_json_object(F.col("value").cast("string"), "$.source_topic").alias("source"))
    row = parsed.agg(
        F.count("*").alias("records"),
        F.countDistinct("seq").alias("distinct_seq"),
        F.min("seq").alias("min_seq"),
        F.max("seq").alias("max_seq"),
        F.sum(F.when(F.col("source") == args.input_topic, 0).otherwise(1)).alias("foreign"),
    ).first()
    return row.asDict()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pyspark.sql import SparkSession

    run_id = uuid.uuid4().hex
    started = time.monotonic()
    builder = SparkSession.builder.appName(f"evilnet-smoke-kafka-roundtrip-{run_id[:8]}")
    spark = builder.getOrCreate()
    result: dict = {"run_id": run_id, "master": spark.sparkContext.master,
                    "app_id": spark.sparkContext.applicationId, "mode": args.mode}
    checks: dict[str, bool] = {}
    try:
        result["placement"] = probe_executors(spark, args.ui_cafile)
        locations = result["placement"]["task_locations"]
        checks["tasks_ran_on_executors"] = bool(locations) and all(
            loc["cwd"] != os.getcwd() for loc in locations)
        if args.expect_workers:
            checks["tasks_ran_on_expected_workers"] = all(
                loc["local_ip"] in args.expect_workers for loc in locations)
        if not args.probe_only:
            result["topic_changes"] = ensure_topics(args) if args.create_topics else []
            seed(spark, args, run_id)
            (roundtrip_stream if args.mode == "stream" else roundtrip_batch)(spark, args, run_id)
            counts = verify(spark, args, run_id)
            result["output"] = counts
            checks["roundtrip_complete"] = (
                counts["records"] == args.records
                and counts["distinct_seq"] == args.records
                and counts["min_seq"] == 0 and counts["max_seq"] == args.records - 1
                and counts["foreign"] == 0)
    except Exception as error:
        result["error"] = f"{type(error).__name__}: {error}"
        checks["no_error"] = False
    finally:
        result["seconds"] = round(time.monotonic() - started, 1)
        result["checks"] = checks
        result["ok"] = bool(checks) and all(checks.values())
        spark.stop()
    print(RESULT_PREFIX + json.dumps(result, sort_keys=True), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
