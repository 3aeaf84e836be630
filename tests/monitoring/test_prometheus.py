"""Prometheus on the local stack: every target up, every panel expression answered,
and the configuration and rules the role rendered pass promtool."""

from __future__ import annotations

import subprocess

import pytest
from monitoring_helpers import prometheus_targets
from stack_clients import LOCAL_INVENTORY, Prometheus
from supervised import host_root

from evilnet.platform.inventory import deployed_shards
from evilnet.schema import JOB_QUERIES
from evilnet.waiting import WaitTimeout, wait_for

pytestmark = pytest.mark.stack

# What must be scraped on the local inventory: job -> number of targets.
EXPECTED_JOBS = {"zookeeper": 3, "kafka": 2, "cassandra": 1, "spark_master": 1,
                 "spark_workers": 1, "spark_driver": 1, "stream_job": 1, "prometheus": 1,
                 # The footprint exporter beside Prometheus (prometheus role).
                 "footprint": 1}
# Counters with labels appear with their first event: a healthy stack may have none.
MAY_BE_EMPTY = ("evilnet_producer_dead_letters_total", "evilnet_producer_reconnects_total")
# A target restarted a moment ago is up after a scrape or two (interval: 15 s).
SCRAPES = 90


def api(prometheus: Prometheus, path: str, **params) -> dict:
    response = prometheus.get(path, **params)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", body
    return body["data"]


def test_every_scrape_target_is_up(prometheus, stack) -> None:
    def targets_when_all_up() -> list[dict]:
        targets = api(prometheus, "targets", state="active")["activeTargets"]
        return [] if any(t["health"] != "up" for t in targets) else targets

    targets = wait_for(targets_when_all_up, SCRAPES, what="every scrape target up", interval=5)
    jobs: dict[str, list[dict]] = {}
    for target in targets:
        jobs.setdefault(target["labels"]["job"], []).append(target["labels"])
    assert {job: len(found) for job, found in jobs.items() if job != "producers"} \
        == EXPECTED_JOBS
    # One target per producer shard that the producers hosts run (their deployed.json).
    shards = {f"{s['address']}:{s['metrics_port']}" for s in deployed_shards(LOCAL_INVENTORY)}
    assert shards and {labels["instance"] for labels in jobs["producers"]} == shards
    assert all(labels.get("host") for found in jobs.values() for labels in found)


def test_status_counts_prometheus_targets_and_shows_the_simulator(stack) -> None:
    checks = {service: check for service, _endpoint, check in stack.health_checks()}
    shards = deployed_shards(LOCAL_INVENTORY)
    expected = sum(EXPECTED_JOBS.values()) + len(shards)
    health = wait_for(lambda: (h := checks["prometheus"]()).detail.endswith(
        f"{expected} of {expected} scrape targets up") and h, SCRAPES,
        what=f"{expected} of {expected} targets up", interval=5)
    assert health.ok and health.detail == f"ready, {expected} of {expected} scrape targets up"
    simulator = checks["x api simulator"]()
    assert simulator.ok and simulator.detail.startswith(f"{len(shards)} streams connected")
    assert "grafana" not in checks  # the server is skipped on our machines


def test_every_prometheus_panel_expression_answers(prometheus, generator) -> None:
    dashboards = generator.dashboards()
    expressions = [(panel["title"], target["expr"]) for board in dashboards.values()
                   for panel, target in prometheus_targets(board)]
    assert len(expressions) >= 12
    required = [(title, expr) for title, expr in expressions
                if not any(name in expr for name in MAY_BE_EMPTY)]

    def empty() -> list[tuple[str, str]]:
        return [(title, expr) for title, expr in required
                if not api(prometheus, "query", query=expr)["result"]]

    # Right after a restart of a scraped service its series come with the next scrape.
    try:
        wait_for(lambda: not empty(), SCRAPES, what="a series for every panel expression",
                 interval=5)
    except WaitTimeout:
        pytest.fail(f"expressions without any series on the running stack: {empty()}")


def test_the_job_lag_and_batch_duration_are_measured(prometheus, generator) -> None:
    lag = next(target["expr"] for panel, target in
           prometheus_targets(generator.dashboards()["pipeline-health.json"])
           if panel["title"] == "Consumer lag of the stream job")
    series = wait_for(lambda: len(found := prometheus.query(lag))
                      == len(JOB_QUERIES) and found, SCRAPES,
                      what="the job's lag for each query", interval=5)
    assert {s["metric"]["query"] for s in series} == {"windows", "hours"}
    assert all(float(s["value"][1]) >= 0 for s in series)
    trigger = api(prometheus, "query", query="evilnet_job_trigger_seconds")["result"]
    assert {float(s["value"][1]) for s in trigger} == {60.0}


def test_alert_rules_are_loaded(prometheus) -> None:
    groups = api(prometheus, "rules")["groups"]
    names = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"TargetDown", "KafkaUnderReplicatedPartitions", "StreamJobLagging",
            "StreamJobBatchesSlowerThanTrigger", "ProducerDeadLetters",
            "StreamJobNoProgressSinceStart", "StreamJobStalled"} <= names
    assert all(rule["health"] == "ok" for group in groups for rule in group["rules"])


@pytest.mark.parametrize(("command", "path"), [
    ("config", "etc/prometheus/prometheus.yml"),
    ("rules", "etc/prometheus/evilnet.rules.yml"),
])
def test_promtool_checks_what_the_role_rendered(command: str, path: str) -> None:
    result = subprocess.run(["promtool", "check", command, str(host_root("monitor") / path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
