"""After `make up`: every service of the local inventory runs as the issue says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from stack_clients import cassandra_connect, kafka_admin, kafka_client_config, kafka_consumer
from supervised import REPO_ROOT, host_root, running_programs

from evilnet.contracts import DEAD_LETTER_TOPIC, TWEETS_TOPIC
from evilnet.platform import health
from evilnet.platform.inventory import Inventory


def test_zookeeper_has_three_nodes_and_one_leader(stack: Inventory) -> None:
    nodes = [(stack.address(h), int(stack.var(h, "zookeeper_client_port", "zookeeper")))
             for h in stack.groups["zookeeper"]]
    tls = stack.zookeeper_tls()  # the controller's certificate where ZooKeeper needs one
    modes = sorted(health.zookeeper_mode(host, port, tls) for host, port in nodes)
    assert modes == ["follower", "follower", "leader"]


@pytest.mark.kraft
def test_kafkas_metadata_lives_where_its_mode_says(stack: Inventory) -> None:
    """ZooKeeper mode: the ensemble, no controller quorum. KRaft: the controllers'
    quorum, healthy (a leader among them, each caught up), and no ensemble."""
    rows = {what: check for what, _, check in stack.health_checks()}
    mode = stack.var(stack.groups["kafka"][0], "kafka_metadata_mode", "kafka")
    if mode == "zookeeper":
        assert "zookeeper ensemble" in rows and "kafka controller quorum" not in rows
        return
    assert mode == "kraft" and "zookeeper ensemble" not in rows
    quorum = rows["kafka controller quorum"]()
    assert quorum.ok, quorum.detail
    leader = int(quorum.detail.split(",")[0].removeprefix("leader "))
    assert leader in {stack.kafka_node_id(h) for h in stack.groups["kafka_controllers"]}


@pytest.mark.kraft
def test_two_kafka_brokers_are_registered(stack: Inventory) -> None:
    admin = kafka_admin(inventory=stack)
    try:
        brokers = {broker["broker_id"]: (broker["host"], broker["port"])
                   for broker in admin.describe_cluster()["brokers"]}
    finally:
        admin.close()
    expected = {int(stack.var(h, "kafka_broker_id", "kafka")): (stack.address(h), 9092)
                for h in stack.groups["kafka"]}
    assert brokers == expected
    assert len(brokers) == 2


@pytest.mark.kraft
def test_tweets_topic_is_replicated_on_both_brokers_and_in_sync(stack: Inventory) -> None:
    admin = kafka_admin(inventory=stack)
    try:
        topics = {t["name"]: t for t in admin.describe_topics([TWEETS_TOPIC, DEAD_LETTER_TOPIC])}
    finally:
        admin.close()
    tweets = topics[TWEETS_TOPIC]["partitions"]
    first_broker = stack.groups["kafka"][0]
    assert len(tweets) == int(stack.var(first_broker, "kafka_tweets_partitions", "kafka"))
    for partition in tweets:
        assert len(partition["replica_nodes"]) == 2
        assert sorted(partition["isr_nodes"]) == sorted(partition["replica_nodes"])
    assert all(len(p["replica_nodes"]) == 2 for p in topics[DEAD_LETTER_TOPIC]["partitions"])


def test_cassandra_answers_cql(stack: Inventory) -> None:
    host = stack.address(stack.groups["cassandra"][0])
    cluster, session = cassandra_connect([host], inventory=stack)  # the reader: it only reads
    try:
        row = session.execute("SELECT release_version FROM system.local").one()
    finally:
        cluster.shutdown()
    assert row.release_version.startswith("5.0.")


def test_spark_master_lists_every_worker_alive(stack: Inventory) -> None:
    # HTTPS on its TLS port, verified with the inventory's CA, where Spark is secured.
    status = health.spark_master_status(stack.spark_master_ui(), stack.spark_ui_cafile())
    alive = sorted(w["host"] for w in status["workers"] if w["state"] == "ALIVE")
    assert status["status"] == "ALIVE"
    assert alive == sorted(stack.address(w) for w in stack.groups["spark_workers"])


def test_a_spark_job_runs_on_the_worker_and_round_trips_kafka(stack: Inventory,
                                                              tmp_path: Path) -> None:
    """Submitted to the master, executed on the worker, through the staged connector.

    On a secured stack: the master's conf directory (its 0600 spark-defaults.conf)
    gives spark-submit the cluster's secret and TLS settings, as it gives the stream
    job; the job logs in to Kafka as the admin (its smoke topics are outside the
    pipeline's ACLs) from a 0600 client properties file, and verifies its driver's
    HTTPS UI with the inventory's CA."""
    master = stack.address(stack.groups["spark_master"][0])
    workers = sorted(stack.address(w) for w in stack.groups["spark_workers"])
    master_root = host_root(stack.groups["spark_master"][0])
    spark_home = next((master_root / "venv" / "lib").glob("python3*/site-packages/pyspark"))
    records = 200
    login = kafka_client_config(tmp_path, stack)
    cafile = stack.spark_ui_cafile()
    secured = [*(["--kafka-client-config", str(login)] if login else []),
               *(["--ui-cafile", cafile] if cafile else [])]
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "spark" / "submit.py"), "--spark-home", str(spark_home),
         "--conf-dir", str(master_root / "etc" / "spark"), "--master", f"spark://{master}:7077",
         "--bootstrap-servers", stack.kafka_bootstrap(), "--input-topic", "evilnet.smoke.in",
         "--output-topic", "evilnet.smoke.out", "--",
         "--mode", "stream", "--records", str(records), *secured,
         *[arg for worker in workers for arg in ("--expect-worker", worker)]],
        capture_output=True, text=True, timeout=600, check=False)
    verdict = json.loads(result.stdout.strip().splitlines()[-1].removeprefix("SMOKE_RESULT "))
    assert result.returncode == 0, result.stderr[-3000:]

    executor_hosts = {e.rsplit(":", 1)[0] for e in verdict["placement"]["executors"]}
    assert executor_hosts <= set(workers) and executor_hosts
    assert {t["local_ip"] for t in verdict["placement"]["task_locations"]} <= set(workers)

    # What the job wrote, read back independently of Spark.
    consumer = kafka_consumer("evilnet.smoke.out", inventory=stack,
                              auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    try:
        sequence = sorted(json.loads(m.value)["seq"] for m in consumer
                          if m.key and m.key.decode() == verdict["run_id"])
    finally:
        consumer.close()
    assert sequence == list(range(records))


def test_every_service_may_run_on_every_cpu(stack: Inventory) -> None:
    # Processes inherit CPU affinity: a service started from a pinned Ansible
    # process (Mitogen pins its own) would share one core with the whole stack.
    allowed = os.sched_getaffinity(0)
    hosts = sorted({host for members in stack.groups.values() for host in members})
    programs = {(host, name): pid for host in hosts
                for name, pid in running_programs(host).items()}
    assert len(programs) >= 10, programs
    pinned = {program: sorted(os.sched_getaffinity(pid)) for program, pid in programs.items()
              if not os.sched_getaffinity(pid) >= allowed}
    assert not pinned, f"pinned to fewer CPUs than {sorted(allowed)}: {pinned}"
