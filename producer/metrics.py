"""The producer's Prometheus metrics: the one home of their names.

Dashboards, alerts and tests use these constants (prometheus-client adds the
``_total`` suffix to counters and ``_bucket``/``_sum``/``_count`` to histograms).

=========================================  =========  ===============================
name                                       labels     meaning
=========================================  =========  ===============================
``evilnet_producer_posts_received``        source     payloads read (stream line or replay line)
``evilnet_producer_records_produced``      topic      records Kafka acknowledged (acks=all)
``evilnet_producer_produce_errors``        topic      records Kafka did not take in time
``evilnet_producer_dead_letters``          reason     payloads sent to the dead-letter topic
``evilnet_producer_reconnects``            cause      stream reconnects, by ``ReconnectCause``
``evilnet_producer_produce_latency_seconds``          send to acknowledgement, per record
``evilnet_producer_stream_connected``                 1 while the stream is connected
``evilnet_producer_rule_changes``          action     rules added / deleted at the X API
``evilnet_producer_info``                  shard, version
``evilnet_producer_disconnects``           disconnect_type  the API's in-stream disconnect notices
``evilnet_producer_connection_issues``     connection_issue stream connections refused with one
``evilnet_producer_usage_capped``                     1 while the API refuses for a usage cap
``evilnet_producer_usage_cap_resume_timestamp_seconds``  when the capped period resets (epoch s)
``evilnet_producer_monthly_post_cap``                 the access level's monthly post cap (0: none)
``evilnet_producer_posts_delivered``       producer   posts of the stream turned into records, per
                                                      producer copy (redundant producers, recall)
=========================================  =========  ===============================
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from evilnet import __version__

POSTS_RECEIVED = "evilnet_producer_posts_received"
RECORDS_PRODUCED = "evilnet_producer_records_produced"
PRODUCE_ERRORS = "evilnet_producer_produce_errors"
DEAD_LETTERS = "evilnet_producer_dead_letters"
POSTS_DELIVERED = "evilnet_producer_posts_delivered"
RECONNECTS = "evilnet_producer_reconnects"
PRODUCE_LATENCY = "evilnet_producer_produce_latency_seconds"
STREAM_CONNECTED = "evilnet_producer_stream_connected"
RULE_CHANGES = "evilnet_producer_rule_changes"
DISCONNECTS = "evilnet_producer_disconnects"
CONNECTION_ISSUES = "evilnet_producer_connection_issues"
USAGE_CAPPED = "evilnet_producer_usage_capped"
USAGE_CAP_RESUME = "evilnet_producer_usage_cap_resume_timestamp_seconds"
MONTHLY_POST_CAP = "evilnet_producer_monthly_post_cap"
INFO = "evilnet_producer"  # exposed as evilnet_producer_info

# Kafka acknowledgements take from about a millisecond (idle cluster) to seconds
# (a broker failing over); linger adds its own delay on top.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ProducerMetrics:
    """The metric objects of one producer, registered in their own registry.

    One registry per producer keeps tests (several producers in one process)
    independent; the service exposes it with ``start_http_server(..., registry=)``.
    """

    def __init__(self, shard: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.posts_received = Counter(POSTS_RECEIVED, "Payloads read.", ["source"], registry=r)
        self.records_produced = Counter(
            RECORDS_PRODUCED, "Records acknowledged by Kafka.", ["topic"], registry=r
        )
        self.produce_errors = Counter(
            PRODUCE_ERRORS, "Records Kafka did not acknowledge.", ["topic"], registry=r
        )
        self.dead_letters = Counter(
            DEAD_LETTERS, "Payloads sent to the dead-letter topic.", ["reason"], registry=r
        )
        self.reconnects = Counter(RECONNECTS, "Stream reconnects.", ["cause"], registry=r)
        self.produce_latency = Histogram(
            PRODUCE_LATENCY, "Seconds from send to acknowledgement.",
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.stream_connected = Gauge(
            STREAM_CONNECTED, "1 while the filtered stream is connected.", registry=r
        )
        self.rule_changes = Counter(
            RULE_CHANGES, "Rules added or deleted at the X API.", ["action"], registry=r
        )
        # Per producer copy (evilnet.contracts.producer_id): the copies of one shard are
        # compared by it (the recall panel of the Pipeline health dashboard).
        self.posts_delivered = Counter(
            POSTS_DELIVERED, "Stream posts turned into records.", ["producer"], registry=r
        )
        # What the X API said about the stream (producer/README.md, "X API behaviour").
        self.disconnects = Counter(
            DISCONNECTS, "In-stream disconnect notices, by disconnect_type.",
            ["disconnect_type"], registry=r)
        self.connection_issues = Counter(
            CONNECTION_ISSUES, "Stream connections refused, by connection_issue.",
            ["connection_issue"], registry=r)
        self.usage_capped = Gauge(
            USAGE_CAPPED, "1 while the X API refuses the stream for a usage cap.", registry=r)
        self.usage_cap_resume = Gauge(
            USAGE_CAP_RESUME, "When the usage cap's period resets (Unix time).", registry=r)
        # The alert at 80 % of the cap compares the posts received over 30 days with it.
        self.monthly_post_cap = Gauge(
            MONTHLY_POST_CAP, "Posts a month the access level allows (0: no fixed cap).",
            registry=r)
        Info(INFO, "The producer's shard and version.", registry=r).info(
            {"shard": shard, "version": __version__}
        )

    def value(self, name: str, **labels: str) -> float:
        """The current value of a sample (``name`` as exposed), 0 if absent; for tests."""
        return self.registry.get_sample_value(name, labels) or 0.0
