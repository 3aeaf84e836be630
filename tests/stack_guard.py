"""The stack's health, as the suite waits for it, and the guard of disruptive tests.

A test that kills, stops, restarts or reconfigures a service is marked
``@pytest.mark.disruptive``. After it (pass or fail) the guard starts again every
supervised program that ran before the test and no longer does, then waits, with
the one waiting helper of the project, until the whole stack is healthy again:
every row of ``evilnet status``, every Prometheus scrape target up, and the
production stream job's series scraped for each of its queries, with progress
since its driver started (its first trigger after a restart). When that does not
come back the guard fails *that* test (an error at its teardown naming what stayed
unhealthy), and the tests after it find the stack as the guard repaired it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from stack_clients import LOCAL_INVENTORY, ROLES, Prometheus
from supervised import host_root, live_programs, local_hosts, supervisorctl

from evilnet.platform.health import run_checks
from evilnet.platform.inventory import Inventory
from evilnet.schema import JOB_QUERIES
from evilnet.spark.metrics import BATCH_DURATION, END_OFFSET, LAST_PROGRESS, STARTED
from evilnet.waiting import WaitTimeout, wait_for

REPO_ROOT = Path(__file__).resolve().parents[1]
# A restarted stream job needs its start (~25 s) and a scrape; a broker its log recovery.
RECOVERY_SECONDS = 300


def prometheus_query(prometheus: Prometheus, expression: str) -> list[dict]:
    return prometheus.query(expression)


def job_series_scraped(prometheus: Prometheus) -> list[str]:
    """What the production job lacks in Prometheus: a query whose gauges are not scraped, or
    whose driver has made no progress (a micro-batch or an idle trigger) since it started."""
    def by_query(metric: str) -> dict[str, float]:
        return {s["metric"].get("query"): float(s["value"][1])
                for s in prometheus.query(metric)}

    missing = []
    for metric in (BATCH_DURATION, END_OFFSET):
        found = by_query(metric)
        missing += [f"{metric}{{query={query!r}}} not scraped"
                    for query in JOB_QUERIES if query not in found]
    started, progress = by_query(STARTED), by_query(LAST_PROGRESS)
    missing += [f"the stream job's {query} query has made no progress since its driver started"
                for query in JOB_QUERIES if progress.get(query, 0) < started.get(query, 0)]
    return missing


def stack_problems(inventory: Inventory) -> list[str]:
    """Everything about the stack that is not healthy now; empty when all is."""
    checks = [*inventory.health_checks(), *inventory.producer_checks()]
    problems = [f"{service} {endpoint}: {health.detail}"
                for service, endpoint, health in run_checks(checks) if not health.ok]
    prometheus = Prometheus.of(inventory)
    try:
        targets = prometheus.get("targets", state="active").json()["data"]["activeTargets"]
        problems += [f"scrape target {t['labels']['job']} {t['scrapeUrl']} {t['health']}: "
                     f"{t['lastError']}" for t in targets if t["health"] != "up"]
        problems += job_series_scraped(prometheus)
    except (requests.RequestException, KeyError, ValueError) as error:
        problems.append(f"prometheus {prometheus.url}: {type(error).__name__}: {error}")
    return problems


def wait_until_stack_healthy(inventory: Inventory, timeout: float = RECOVERY_SECONDS) -> None:
    """Return once the whole stack is healthy; raise WaitTimeout listing what is not."""
    last: list[str] = []

    def healthy() -> bool:
        last[:] = stack_problems(inventory)
        return not last

    try:
        wait_for(healthy, timeout, what="the stack's health", interval=5)
    except WaitTimeout as error:
        raise WaitTimeout(f"{error}; still unhealthy:\n  " + "\n  ".join(last)) from None


def supervised_programs() -> dict[str, set[str]]:
    """The programs of every local host that run or are being started, by host.

    A play that a test ends with may have just started a program: it is STARTING for
    its startsecs. That is not "left stopped"; whether it comes up healthy is what
    wait_until_stack_healthy waits for.
    """
    return {host: live_programs(host)
            for host in local_hosts() if (host_root(host) / "supervisor").is_dir()}


def restart_what_stopped(before: dict[str, set[str]]) -> list[str]:
    """Start each program that ran in ``before`` and does not now; what was started."""
    started = []
    now = supervised_programs()
    for host, programs in before.items():
        for program in sorted(programs - now.get(host, set())):
            supervisorctl(host, "start", program)
            started.append(f"{host}:{program}")
    return started


@pytest.fixture(autouse=True)
def leaves_the_stack_healthy(request: pytest.FixtureRequest) -> Iterator[None]:
    """For ``disruptive`` tests: the stack is healthy again before the next test runs."""
    if request.node.get_closest_marker("disruptive") is None:
        yield
        return
    inventory = Inventory.load(LOCAL_INVENTORY, roles=ROLES)
    before = supervised_programs()
    yield
    started = restart_what_stopped(before)
    try:
        wait_until_stack_healthy(inventory)
    except WaitTimeout as error:
        pytest.fail(f"{request.node.nodeid} left the stack unhealthy: {error}", pytrace=False)
    if started:
        pytest.fail(f"{request.node.nodeid} left programs stopped; the guard started them "
                    f"again: {', '.join(started)}", pytrace=False)
