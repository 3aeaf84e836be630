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
=====================================  =================  =================================

The job's consumer lag is the topic's log end offset (``kafka_log_end_offset``,
from the brokers' JMX exporter) minus ``evilnet_job_end_offset``, per partition.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

BATCH_DURATION = "evilnet_job_batch_duration_seconds"
TRIGGER = "evilnet_job_trigger_seconds"
END_OFFSET = "evilnet_job_end_offset"
INPUT_ROWS = "evilnet_job_input_rows"
BAD_RECORDS = "evilnet_job_bad_records"
LAST_PROGRESS = "evilnet_job_last_progress_seconds"
# The brokers' log end offset per partition (JMX exporter rules of the kafka role).
KAFKA_LOG_END_OFFSET = "kafka_log_end_offset"

log = logging.getLogger("evilnet.stream-job")


class JobMetrics:
    """The metric objects of one job, in their own registry."""

    def __init__(self, trigger_seconds: int, queries: tuple[str, ...],
                 registry: CollectorRegistry | None = None) -> None:
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
        for query in queries:
            self.trigger.labels(query).set(trigger_seconds)

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

    def serve(self, host: str, port: int) -> bool:
        """Serve /metrics; a port already taken (a second instance) is logged, not fatal."""
        try:
            start_http_server(port, host, registry=self.registry)
        except OSError as error:
            log.error('{"event": "metrics endpoint not started", "address": "%s:%d", '
                      '"error": "%s"}', host, port, error)
            return False
        return True
