"""The cluster tier: the test bed of separate hosts (testbed/, `make cluster-up`).

Its tests are marked ``cluster`` and run only when ``-m`` names the marker
(``pytest -m cluster tests/cluster``): a plain ``pytest``, ``make test`` and
``-m "not stack"`` leave them out, since the bed boots fifteen machines.

The session fixture brings the bed up through its own command line (``python -m
testbed up``, idempotent: a bed already up is only checked) and leaves it up for the
next run; ``make cluster-down`` removes it. ``EVILNET_CLUSTER_HOSTS="zk-1 zk-2"``
limits the bed and the tests to those hosts.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cluster_helpers import REPO_ROOT, Cluster, bring_up, deploy, stage
from jenkins_steps import run_jenkins_steps

from evilnet.platform.inventory import Inventory
from evilnet.platform.playbook import PlaybookRun

CLUSTER_INVENTORY = REPO_ROOT / "inventories" / "cluster"
CLUSTER_TEST_TIMEOUT = 5400


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.cluster)
            # The suite's per-test timeout counts fixture setup, and the first test
            # that needs the deployment waits for two site.yml runs (25 min here).
            item.add_marker(pytest.mark.timeout(CLUSTER_TEST_TIMEOUT))
    # Only an -m naming the marker selects the tier.
    if "cluster" in (config.option.markexpr or ""):
        return
    left_out = [item for item in items if item.get_closest_marker("cluster")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("cluster")]


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The bed, every host booted and answering SSH (else the test fails with why)."""
    inventory = Inventory.load(CLUSTER_INVENTORY, roles=REPO_ROOT / "ansible" / "roles")
    chosen = tuple(os.environ.get("EVILNET_CLUSTER_HOSTS", "").split())
    result = bring_up(chosen)
    if result.returncode != 0:
        pytest.fail(f"the test bed did not come up:\n{result.stdout}{result.stderr}",
                    pytrace=False)
    return Cluster(inventory, chosen or tuple(sorted(inventory.hostvars)))


@dataclass(frozen=True)
class Deployment:
    """site.yml run twice on the bed: the first converges it, the second must change
    nothing."""

    first: PlaybookRun
    second: PlaybookRun
    first_seconds: float
    second_seconds: float


@pytest.fixture(scope="session")
def deployment(cluster: Cluster) -> Deployment:
    """The whole pipeline on the bed (``make cluster-deploy``): staged on the controller,
    deployed over SSH with become, twice. Fails the tests that need it if the first
    run does not converge."""
    staged = stage()
    if staged.returncode != 0:
        pytest.fail(f"evilnet stage --debian failed:\n{staged.stdout}{staged.stderr}",
                    pytrace=False)
    started = time.monotonic()
    first = deploy()
    first_seconds = time.monotonic() - started
    if first.returncode != 0:
        pytest.fail(f"site.yml did not converge on the bed:\n{first.output[-6000:]}",
                    pytrace=False)
    started = time.monotonic()
    second = deploy()
    return Deployment(first, second, first_seconds, time.monotonic() - started)


# Halifax goes to app-4 (planner rendezvous), which the planner puts on producer-2,
# the host without the simulator: the plan spans both producer hosts.
ROLLOUT_CITIES = "Toronto\nMontréal,Vancouver\nSt. John's,Halifax"
ROLLOUT_TOPICS = "hockey,transit"


@dataclass(frozen=True)
class Rollout:
    """The Jenkins steps (validate, plan, render, diff, roll out, verify) run from the
    controller against the bed, after site.yml."""

    plan_dir: Path
    plan: dict
    outputs: dict[str, str]


@pytest.fixture(scope="session")
def rollout(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Rollout:
    plan_dir = tmp_path_factory.mktemp("cluster-plan") / "plan"
    outputs = run_jenkins_steps("cluster", ROLLOUT_CITIES, ROLLOUT_TOPICS, plan_dir)
    plan = json.loads((plan_dir / "plan.json").read_text())
    return Rollout(plan_dir, plan, outputs)
