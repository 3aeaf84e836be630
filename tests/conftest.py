"""Fixtures shared by the whole suite: the local stack `make up` brought up.

Tests talk to the real services. `make test` brings the stack up before pytest
runs; a test that needs it and finds it unhealthy fails (it does not skip), so a
broken stack can never pass as green.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from evilnet.platform.inventory import Inventory

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCAL_INVENTORY = REPO_ROOT / "inventories" / "local"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Whatever needs the stack, directly or through another fixture, is a stack test
    # (`pytest -m "not stack"` is the quick subset that needs no services).
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def local_inventory() -> Inventory:
    return Inventory.load(LOCAL_INVENTORY)


@pytest.fixture(scope="session")
def stack(local_inventory: Inventory) -> Inventory:
    """The local stack, every service healthy (else the test fails with the table)."""
    unhealthy = []
    for service, endpoint, check in local_inventory.health_checks():
        try:
            result = check()
        except Exception as error:
            unhealthy.append(f"{service} {endpoint}: {type(error).__name__}: {error}")
            continue
        if not result.ok:
            unhealthy.append(f"{service} {endpoint}: {result.detail}")
    if unhealthy:
        pytest.fail("the local stack is not healthy (run `make up`):\n" + "\n".join(unhealthy))
    return local_inventory


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Inventory) -> str:
    return stack.kafka_bootstrap()
