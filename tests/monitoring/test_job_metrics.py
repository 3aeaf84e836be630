"""The stream job's own metrics (spark/metrics.py), without Spark."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import requests

from evilnet.spark.metrics import (
    BATCH_DURATION,
    END_OFFSET,
    LAST_PROGRESS,
    STARTED,
    TRIGGER,
    JobMetrics,
)


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


def test_every_series_exists_before_the_first_batch() -> None:
    """A restarted driver serves its series at once: zeros, and what the job last recorded."""
    metrics = JobMetrics(60, ("windows", "hours"), started_at=1_000_000.0)
    recorded = datetime(1970, 1, 12, 13, 45, tzinfo=UTC)  # as job_progress holds it
    metrics.resume("windows", {0: 40, 1: 2}, recorded.replace(tzinfo=None))
    value = metrics.registry.get_sample_value
    for query in ("windows", "hours"):
        assert value(BATCH_DURATION, {"query": query}) == 0
        assert value("evilnet_job_input_rows_total", {"query": query}) == 0
        assert value("evilnet_job_bad_records_total", {"query": query}) == 0
        assert value(STARTED, {"query": query}) == 1_000_000.0
    assert value(END_OFFSET, {"query": "windows", "partition": "1"}) == 2
    assert value(LAST_PROGRESS, {"query": "windows"}) == recorded.timestamp()
    # Never recorded: no progress at all, which is older than any start.
    assert value(LAST_PROGRESS, {"query": "hours"}) == 0
    metrics.batch("hours", 2500, {0: 7}, input_rows=3, bad_records=0)
    assert value(LAST_PROGRESS, {"query": "hours"}) > value(STARTED, {"query": "hours"})
