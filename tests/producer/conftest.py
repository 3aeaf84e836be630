"""Fixtures of the producer tests: the X API simulator on a real socket, and configs.

Kafka comes from the suite's `kafka_bootstrap` fixture (tests/conftest.py); a config's
Kafka part on the stack, with its login, from `producer_kafka`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from producer_helpers import RULES, TOKEN, Simulator
from stack_clients import kafka_client_config

from evilnet.producer.simulator import XApiSimulator


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    # Keep-alives far more often than the shortest stall timeout a test sets (0.4 s), so
    # that a busy machine never makes a quiet stream look stalled.
    simulator = XApiSimulator([TOKEN], rate=300, keep_alive_seconds=0.05, seed=7)
    simulator.serve("127.0.0.1", 0)
    yield Simulator(simulator)
    simulator.shutdown()


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("EVILNET_TEST_X_TOKEN", TOKEN)
    return "EVILNET_TEST_X_TOKEN"


@pytest.fixture
def producer_config(tmp_path: Path, simulator: Simulator, token_env: str) -> dict:
    """The keys of a valid config pointing at the simulator (write it with write_config)."""
    return {
        "shard": "test-01",
        "rules": RULES,
        # Stack tests replace it with the kafka_bootstrap fixture's; others never connect.
        "kafka_bootstrap_servers": "127.0.0.1:9",
        "bearer_token_env": token_env,
        "x_api_base_url": simulator.base_url,
        "metrics_port": 0,
        "reconnect_time_scale": 0.05,  # stall timeout 1 s
    }


@pytest.fixture(scope="session")
def producer_kafka(stack, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The Kafka part of a producer config on the stack: the brokers and, on a secured
    Kafka, ``kafka_client_config`` naming a 0600 client properties file, the form the
    producer role renders (docs/security.md, "Clients"). Its principal is the admin,
    not the producers': the tests write topics of their own, which the producer
    principal's ACLs (``tweets`` and its dead letters only) refuse."""
    login = kafka_client_config(tmp_path_factory.mktemp("kafka-login"), stack)
    return {"kafka_bootstrap_servers": kafka_bootstrap,
            **({"kafka_client_config": str(login)} if login else {})}
