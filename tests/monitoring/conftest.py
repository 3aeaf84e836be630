"""Fixtures of the monitoring tests: the dashboards' code, a keyspace holding a small
hand-checked fixture (written by the job's own writer), and the local Prometheus."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from monitoring_fixture import KEYSPACE, hour_rows, window_rows
from monitoring_helpers import BIN, load_generator
from stack_clients import CASSANDRA_ADMIN, cassandra_connect, evilnet_command, grant_keyspace

from evilnet.spark.store import CassandraStore


@pytest.fixture(scope="session")
def generator():
    return load_generator()


@pytest.fixture(scope="session")
def cassandra_host(stack) -> str:
    return stack.address(stack.groups["cassandra"][0])


@dataclass
class DashboardData:
    session: object
    keyspace: str
    dashboards: dict[str, dict]


@pytest.fixture(scope="session")
def dashboard_data(stack, cassandra_host: str, generator) -> Iterator[DashboardData]:
    """A fresh keyspace with the fixture, and the dashboards generated for it (as the
    Cassandra admin: the keyspace is dropped, made and written here)."""
    cluster, session = cassandra_connect([cassandra_host], inventory=stack, role=CASSANDRA_ADMIN)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {KEYSPACE}", timeout=120)
        # The inventory's node, so the command logs in as the inventory's admin itself.
        applied = subprocess.run([*evilnet_command(BIN / "evilnet", stack), "schema", "apply",
                                  "--keyspace", KEYSPACE],
                                 capture_output=True, text=True, timeout=300, check=False)
        assert applied.returncode == 0, applied.stderr
        grant_keyspace(session, KEYSPACE, stack)  # the dashboards read it as the reader
        store = CassandraStore(session, KEYSPACE)
        store.write_windows(window_rows(), datetime.now(UTC))
        store.write_hours(hour_rows())
        yield DashboardData(session, KEYSPACE, generator.dashboards(KEYSPACE))
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {KEYSPACE}", timeout=120)
        cluster.shutdown()


@pytest.fixture(scope="session")
def prometheus_url(prometheus) -> str:
    return prometheus.url
