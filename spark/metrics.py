"""The stream job's Prometheus metrics: the one home of their names.

The driver serves them (prometheus-client) when ``metrics_port`` is set; the
pipeline-health dashboard, alerts and tests import these constants. Spark's own
metrics (JVM, executors, streaming query rates) come from its PrometheusServlet.

=====================================  =================  =================================
name                                   labels             meaning
=====================================  =================  =================================
``evilnet_job_batch_duration_seconds``  query              wall time of the last micro-batch
``evilnet_job_trigger_seconds``         query              the configured trigger interval
``evilnet_job_end_offset``              query, partition   the Kafka offset consumed up to
``evilnet_job_input_rows``              query              records read (counter)
``evilnet_job_bad_records``             query              records that did not parse (counter)
``evilnet_job_last_progress_seconds``   query              Unix time of the last progress
``evilnet_job_started_seconds``         query              Unix time this driver started
=====================================  =================  =================================

Every series exists from the driver's start, before its first micro-batch: the
batch duration and counters at 0, the end offsets and the last progress as the
job's ``job_progress`` rows last recorded them (the last progress is 0 for a job
that never ran). So dashboards do not show "No data" after a restart, and an alert
tells "no progress since this driver started" (last progress older than the start)
from "no progress for N triggers".

The job's consumer lag is the topic's log end offset (``kafka_log_end_offset``,
from the brokers' JMX exporter) minus ``evilnet_job_end_offset``, per partition.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge

from evilnet.metrics_endpoint import EndpointSecurity, serve

BATCH_DURATION = "evilnet_job_batch_duration_seconds"
TRIGGER = "evilnet_job_trigger_seconds"
END_OFFSET = "evilnet_job_end_offset"
INPUT_ROWS = "evilnet_job_input_rows"
BAD_RECORDS = "evilnet_job_bad_records"
LAST_PROGRESS = "evilnet_job_last_progress_seconds"
STARTED = "evilnet_job_started_seconds"
# The brokers' log end offset per partition (JMX exporter rules of the kafka role).
KAFKA_LOG_END_OFFSET = "kafka_log_end_offset"

log = logging.getLogger("evilnet.stream-job")


class JobMetrics:
    """The metric objects of one job, in their own registry."""

    def __init__(self, trigger_seconds: int, queries: tuple[str, ...],
                 registry: CollectorRegistry | None = None,
                 started_at: float | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.batch_duration = Gauge(BATCH_DURATION, "Seconds the last micro-batch took.",
                                    ["query"], registry=r)
        self.trigger = Gauge(TRIGGER, "The trigger interval in seconds.", ["query"], registry=r)
        self.end_offset = Gauge(END_OFFSET, "Kafka offset consumed up to, per partition.",
                                ["query", "partition"], registry=r)
        self.input_rows = Counter(INPUT_ROWS, "Records read.", ["query"], registry=r)
        self.bad_records = Counter(BAD_RECORDS, "Records that did not parse.", ["query"],
                                   registry=r)
        self.last_progress = Gauge(LAST_PROGRESS, "Unix time of the last progress.",
                                   ["query"], registry=r)
        self.started = Gauge(STARTED, "Unix time this driver started.", ["query"], registry=r)
        started_at = time.time() if started_at is None else started_at
        for query in queries:
            self.trigger.labels(query).set(trigger_seconds)
            self.started.labels(query).set(started_at)
            # Zero until the first micro-batch, so the series exist from the start.
            self.batch_duration.labels(query).set(0)
            self.input_rows.labels(query)
            self.bad_records.labels(query)
            self.last_progress.labels(query).set(0)

    def resume(self, query: str, end_offsets: dict[int, int] | None,
               last_progress: datetime | None) -> None:
        """What the job last recorded for ``query`` (its ``job_progress`` row), until a batch."""
        for partition, offset in (end_offsets or {}).items():
            self.end_offset.labels(query, str(partition)).set(offset)
        if last_progress is not None:
            aware = last_progress if last_progress.tzinfo else last_progress.replace(tzinfo=UTC)
            self.last_progress.labels(query).set(aware.timestamp())

    def batch(self, query: str, duration_ms: float | None, end_offsets: dict[int, int],
              input_rows: int, bad_records: int) -> None:
        if duration_ms is not None:
            self.batch_duration.labels(query).set(duration_ms / 1000)
        for partition, offset in end_offsets.items():
            self.end_offset.labels(query, str(partition)).set(offset)
        self.input_rows.labels(query).inc(input_rows)
        self.bad_records.labels(query).inc(bad_records)
        self.last_progress.labels(query).set(time.time())

    def idle(self, query: str) -> None:
        self.last_progress.labels(query).set(time.time())

    def serve(self, host: str, port: int, security: EndpointSecurity | None = None) -> bool:
        """Serve /metrics (with ``security``: HTTPS and Prometheus's scrape login); a port
        already taken (a second instance) is logged, not fatal."""
        try:
            serve(port, host, self.registry, security)
        except OSError as error:
            log.error('{"event": "metrics endpoint not started", "address": "%s:%d", '
                      '"error": "%s"}', host, port, error)
            return False
        return True
