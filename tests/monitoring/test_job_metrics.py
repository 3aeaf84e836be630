"""The stream job's own metrics (spark/metrics.py), without Spark."""

from __future__ import annotations

import socket

import requests

from evilnet.spark.metrics import END_OFFSET, TRIGGER, JobMetrics


def test_a_batch_sets_duration_offsets_and_counters() -> None:
    metrics = JobMetrics(60, ("windows", "hours"))
    metrics.batch("windows", 1500, {0: 10, 3: 7}, input_rows=12, bad_records=2)
    metrics.batch("windows", None, {0: 11}, input_rows=1, bad_records=0)
    value = metrics.registry.get_sample_value
    assert value("evilnet_job_batch_duration_seconds", {"query": "windows"}) == 1.5
    assert value(TRIGGER, {"query": "hours"}) == 60
    assert value(END_OFFSET, {"query": "windows", "partition": "0"}) == 11
    assert value(END_OFFSET, {"query": "windows", "partition": "3"}) == 7
    assert value("evilnet_job_input_rows_total", {"query": "windows"}) == 13
    assert value("evilnet_job_bad_records_total", {"query": "windows"}) == 2
    assert value("evilnet_job_last_progress_seconds", {"query": "windows"}) > 0


def test_the_endpoint_serves_and_a_taken_port_is_not_fatal() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics = JobMetrics(30, ("windows",))
    assert metrics.serve("127.0.0.1", port)
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'evilnet_job_trigger_seconds{query="windows"} 30.0' in text
    # A second instance on the same host and port runs on without an endpoint.
    assert not JobMetrics(30, ("windows",)).serve("127.0.0.1", port)
