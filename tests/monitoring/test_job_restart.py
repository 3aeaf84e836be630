"""A restarted stream job: its series are there from its start, before its first micro-batch,
so the Pipeline health panels and the alerts never see "no data" across a restart."""

from __future__ import annotations

import os
import signal

import pytest
import requests
from monitoring_helpers import prometheus_targets
from prometheus_client.parser import text_string_to_metric_families
from supervised import service_pid

from evilnet.schema import JOB_QUERIES
from evilnet.spark.metrics import BATCH_DURATION, END_OFFSET, LAST_PROGRESS, STARTED
from evilnet.waiting import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.disruptive]


def _samples(url: str, login) -> dict[tuple[str, tuple], float]:
    auth = {"auth": (login.username, login.password), "verify": login.cafile} if login else {}
    text = requests.get(url, timeout=5, **auth).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _by_query(samples: dict, name: str) -> dict[str, float]:
    return {dict(labels)["query"]: value for (metric, labels), value in samples.items()
            if metric == name}


def test_a_killed_driver_serves_its_series_before_its_first_batch(stack, prometheus,
                                                                  generator) -> None:
    host = stack.groups["spark_master"][0]
    job = stack.var(host, "stream_job_name", "stream_job")
    login = stack.metrics_login()  # a secured endpoint: HTTPS and Prometheus's login
    endpoint = (f"{'https' if login else 'http'}://{stack.address(host)}:"
                f"{stack.var(host, 'stream_job_metrics_port', 'stream_job')}/metrics")
    before = _by_query(_samples(endpoint, login), STARTED)

    driver = service_pid(host, job)
    os.kill(driver, signal.SIGKILL)
    # The new driver answers a few seconds after supervisord restarts it, long before
    # its Spark session and first micro-batch (about 20-40 s on our machines).
    samples = wait_for(lambda: (s := _samples(endpoint, login)) and _by_query(s, STARTED) != before
                       and s, 120, what="the restarted driver's metrics endpoint",
                       ignore=(requests.RequestException,))
    started = _by_query(samples, STARTED)
    assert set(started) == set(JOB_QUERIES)
    last = _by_query(samples, LAST_PROGRESS)
    assert all(last[query] < started[query] for query in JOB_QUERIES), \
        "no micro-batch yet: the last progress is the one the previous driver recorded"
    assert all(last[query] > 0 for query in JOB_QUERIES), "resumed from job_progress"
    assert _by_query(samples, BATCH_DURATION) == dict.fromkeys(JOB_QUERIES, 0.0)
    assert set(_by_query(samples, END_OFFSET)) == set(JOB_QUERIES)

    # Once Prometheus has scraped the new driver, the lag and batch-duration panels answer
    # for both queries (first batch or not).
    wait_for(lambda: {s["metric"]["query"]: float(s["value"][1])
                      for s in prometheus.query(STARTED)} == started, 90,
             what="Prometheus to scrape the restarted driver", interval=3)
    expressions = [(panel["title"], target["expr"]) for panel, target in
                   prometheus_targets(generator.dashboards()["pipeline-health.json"])
                   if END_OFFSET in target["expr"] or target["expr"] == BATCH_DURATION]
    assert len(expressions) == 2, "the lag and batch-duration panels"
    for title, expr in expressions:
        series = prometheus.query(expr)
        assert {s["metric"]["query"] for s in series} == set(JOB_QUERIES), title
