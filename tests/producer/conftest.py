"""Fixtures of the producer tests: the X API simulator on a real socket, configs, Kafka."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from producer_helpers import DEFAULT_KAFKA_BOOTSTRAP, RULES, TOKEN, Simulator, reachable

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
        "kafka_bootstrap_servers": os.environ.get("EVILNET_KAFKA_BOOTSTRAP",
                                                  DEFAULT_KAFKA_BOOTSTRAP),
        "bearer_token_env": token_env,
        "x_api_base_url": simulator.base_url,
        "metrics_port": 0,
        "reconnect_time_scale": 0.05,  # stall timeout 1 s
    }


# Until tests/conftest.py (the platform's, which brings the stack up) provides this
# fixture, the stack tests use whatever Kafka EVILNET_KAFKA_BOOTSTRAP names.
@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    bootstrap = os.environ.get("EVILNET_KAFKA_BOOTSTRAP", DEFAULT_KAFKA_BOOTSTRAP)
    if not reachable(bootstrap):
        pytest.skip(f"Kafka at {bootstrap} is not reachable (run `make up`)")
    return bootstrap
