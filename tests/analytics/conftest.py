"""Fixtures of the analytics tests: a test instance of the stream job on the real stack.

The instance (`stream-job-test`) is deployed by the stream_job role with a short
trigger, its own topic (new for each session), keyspace (`evilnet_test`, schema
applied afresh by `evilnet schema apply`) and checkpoint; the windows are the
production ones (5 minutes sliding by 1, and the hour). Each scenario gets its own
slice of event time (`timeline`), hours apart, so scenarios never share a window.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from analytics_helpers import JOB_NAME, KEYSPACE, deploy_job, evilnet
from kafka.admin import NewTopic
from stack_clients import (
    CASSANDRA_ADMIN,
    cassandra_connect,
    grant_keyspace,
    kafka_admin,
    kafka_login,
    topic_readable_by,
)
from supervised import host_root, supervisorctl

from evilnet.spark.store import CassandraStore


@pytest.fixture(scope="session")
def cassandra_host(stack) -> str:
    return stack.address(stack.groups["cassandra"][0])


@pytest.fixture(scope="session")
def keyspace(stack, cassandra_host: str) -> str:
    # Dropped as the Cassandra admin; `evilnet schema apply` on the inventory's node
    # logs in as the inventory's admin itself.
    cluster, session = cassandra_connect([cassandra_host], inventory=stack, role=CASSANDRA_ADMIN)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {KEYSPACE}", timeout=120)
        result = evilnet("schema", "apply", "--keyspace", KEYSPACE)
        assert result.returncode == 0, result.stderr
        # The test instance writes it as the job's role; the commands read it as the reader.
        grant_keyspace(session, KEYSPACE, stack)
    finally:
        cluster.shutdown()
    return KEYSPACE


@pytest.fixture(scope="session")
def store(stack, cassandra_host: str, keyspace: str) -> Iterator[CassandraStore]:
    # The admin: the tests write rows of their own too (progress probes).
    cluster, session = cassandra_connect([cassandra_host], inventory=stack, role=CASSANDRA_ADMIN)
    yield CassandraStore(session, keyspace)
    cluster.shutdown()


@dataclass
class TestJob:
    name: str
    topic: str
    keyspace: str
    bootstrap: str
    cassandra_host: str
    # kafka-python's login to the brokers (the admin's; {} on a plaintext Kafka).
    kafka_login: dict[str, str]


@pytest.fixture(scope="session")
def test_job(stack, kafka_bootstrap: str, cassandra_host: str,
             keyspace: str) -> Iterator[TestJob]:
    topic = f"evilnet.test.tweets-{uuid.uuid4().hex[:8]}"
    admin = kafka_admin(kafka_bootstrap.split(","), inventory=stack)
    admin.create_topics([NewTopic(topic, 6, 2, topic_configs={"retention.ms": "86400000"})])
    # The instance reads as the job's principal, which may read `tweets` only.
    with topic_readable_by(topic, inventory=stack):
        supervisorctl("spark-master", "stop", JOB_NAME)
        shutil.rmtree(host_root("spark-master") / "data" / "stream-job" / JOB_NAME / "checkpoint",
                      ignore_errors=True)
        run = deploy_job({"stream_job_name": JOB_NAME, "stream_job_topic": topic,
                          "stream_job_keyspace": keyspace, "stream_job_trigger_seconds": 5,
                          "stream_job_health_timeout": 240,
                          # The production instance's metrics endpoint and Spark UI
                          # (Prometheus scrapes them) stay its own.
                          "stream_job_metrics_port": 0, "stream_job_ui_port": 4041})
        assert run.returncode == 0, run.output[-6000:]
        yield TestJob(JOB_NAME, topic, keyspace, kafka_bootstrap, cassandra_host,
                      kafka_login(stack))
        # Free the cluster's cores, and take the instance away: left defined, the next
        # `make down && make up` would autostart it against the deleted topic.
        removed = deploy_job({"stream_job_name": JOB_NAME, "stream_job_state": "absent"})
        assert removed.returncode == 0, removed.output[-6000:]
        assert JOB_NAME not in supervisorctl("spark-master", "status")
    admin.delete_topics([topic])
    admin.close()


class Timeline:
    """Start times of the scenarios' event time: now, then 3 hours apart."""

    def __init__(self) -> None:
        self.next = datetime.now(UTC).replace(second=0, microsecond=0)

    def take(self) -> datetime:
        start, self.next = self.next, self.next + timedelta(hours=3)
        return start


@pytest.fixture(scope="session")
def timeline() -> Timeline:
    return Timeline()
