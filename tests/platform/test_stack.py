"""After `make up`: every service of the local inventory runs as the issue says."""

from __future__ import annotations

from cassandra.cluster import Cluster
from kafka.admin import KafkaAdminClient

from evilnet.contracts import DEAD_LETTER_TOPIC, TWEETS_TOPIC
from evilnet.platform import health
from evilnet.platform.inventory import Inventory


def test_zookeeper_has_three_nodes_and_one_leader(stack: Inventory) -> None:
    nodes = [(stack.address(h), int(stack.var(h, "zookeeper_client_port", "zookeeper")))
             for h in stack.groups["zookeeper"]]
    modes = sorted(health.zookeeper_mode(host, port) for host, port in nodes)
    assert modes == ["follower", "follower", "leader"]


def test_two_kafka_brokers_are_registered(stack: Inventory) -> None:
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap())
    try:
        brokers = {broker["broker_id"]: (broker["host"], broker["port"])
                   for broker in admin.describe_cluster()["brokers"]}
    finally:
        admin.close()
    expected = {int(stack.var(h, "kafka_broker_id", "kafka")): (stack.address(h), 9092)
                for h in stack.groups["kafka"]}
    assert brokers == expected
    assert len(brokers) == 2


def test_tweets_topic_is_replicated_on_both_brokers_and_in_sync(stack: Inventory) -> None:
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap())
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
    cluster = Cluster([host], protocol_version=5)
    try:
        row = cluster.connect().execute("SELECT release_version FROM system.local").one()
    finally:
        cluster.shutdown()
    assert row.release_version.startswith("5.0.")


def test_spark_master_lists_every_worker_alive(stack: Inventory) -> None:
    master = stack.groups["spark_master"][0]
    status = health.spark_master_status(
        f"http://{stack.address(master)}:{stack.var(master, 'spark_master_webui_port', 'spark')}")
    alive = sorted(w["host"] for w in status["workers"] if w["state"] == "ALIVE")
    assert status["status"] == "ALIVE"
    assert alive == sorted(stack.address(w) for w in stack.groups["spark_workers"])
