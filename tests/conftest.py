"""Fixtures shared by the whole suite: the local stack `make up` brought up.

Tests talk to the real services. `make test` brings the stack up before pytest
runs; a test that needs it and finds it unhealthy fails (it does not skip), so a
broken stack can never pass as green.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import stack_clients
from stack_guard import WaitTimeout, leaves_the_stack_healthy, wait_until_stack_healthy

from evilnet.platform.inventory import Inventory

__all__ = ["leaves_the_stack_healthy"]  # the guard of disruptive tests, for every test

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Whatever needs the stack, directly or through another fixture, is a stack test
    # (`pytest -m "not stack"` is the quick subset that needs no services).
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def local_inventory() -> Inventory:
    return stack_clients.local_inventory()


@pytest.fixture(scope="session")
def stack(local_inventory: Inventory) -> Inventory:
    """The local stack, every service healthy (else the test fails with what is not).

    Right after `make up` the stream job may still be in its first micro-batch and
    Prometheus may not have scraped it yet: that is waited for, not assumed.
    """
    try:
        wait_until_stack_healthy(local_inventory, timeout=180)
    except WaitTimeout as error:
        pytest.fail(f"the local stack is not healthy (run `make up`): {error}", pytrace=False)
    return local_inventory


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Inventory) -> str:
    return stack.kafka_bootstrap()


@pytest.fixture(scope="session")
def kafka_login(stack: Inventory) -> dict[str, str]:
    """kafka-python's login to the stack's brokers as the admin (tests/stack_clients.py
    says why that principal); ``{}`` on a plaintext Kafka."""
    return stack_clients.kafka_login(stack)


@pytest.fixture(scope="session")
def prometheus(stack: Inventory) -> stack_clients.Prometheus:
    """The stack's Prometheus API, with its login where it is secured."""
    return stack_clients.Prometheus.of(stack)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    # pytest-randomly shuffles the order; a failure must say how to get that order again.
    seed = getattr(config.option, "randomly_seed", None)
    if exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED) \
            and isinstance(seed, int):
        terminalreporter.write_line(f"tests ran in random order {seed}: replay it with "
                                    f"pytest --randomly-seed={seed}")
