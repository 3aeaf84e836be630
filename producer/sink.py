"""Where routed payloads go: Kafka, behind a two-method interface.

:class:`Pipeline` is what the sources (stream, replay) call with every line; it
routes the line and hands the results to a :class:`RecordSink`. Production and
the integration tests use :class:`KafkaSink`; unit tests of the routing use any
other sink that keeps what it is given.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from kafka import KafkaProducer
from kafka.errors import KafkaError

from evilnet.producer.metrics import ProducerMetrics
from evilnet.producer.routing import Line, Routed, Router

log = logging.getLogger(__name__)


class RecordSink(Protocol):
    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue one record; delivery is reported asynchronously."""

    def close(self, timeout: float) -> int:
        """Deliver everything queued, then release the connections.

        Returns how many records were not acknowledged (0 when all were).
        """


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: Sequence[str]
    client_id: str
    linger_ms: int = 20
    batch_size: int = 128 * 1024
    delivery_timeout_ms: int = 120_000
    # Further kafka-python settings: a command's clients pass
    # evilnet.kafka_clients.COMMAND_CLIENT (give up on an unreachable broker soon).
    client_settings: Mapping[str, object] = field(default_factory=dict)


class KafkaSink:
    """kafka-python's producer, set up so that an acknowledged record is durable once.

    ``acks='all'`` waits for every in-sync replica; idempotence lets the producer
    retry a batch without ever writing it twice (the broker drops the duplicate by
    its sequence number), which is what makes "exactly once" hold across
    retries. gzip is the only codec kafka-python has without extra packages; X
    posts are repetitive JSON and compress about 4:1. Linger and batch size trade
    a few milliseconds of latency for far fewer requests at high rates.
    """

    def __init__(self, settings: KafkaSettings, metrics: ProducerMetrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._failed = 0
        self._producer = KafkaProducer(
            bootstrap_servers=list(settings.bootstrap_servers),
            client_id=settings.client_id,
            acks="all",
            enable_idempotence=True,
            compression_type="gzip",
            linger_ms=settings.linger_ms,
            batch_size=settings.batch_size,
            delivery_timeout_ms=settings.delivery_timeout_ms,
            **settings.client_settings,
        )

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        sent_at = time.perf_counter()
        future = self._producer.send(topic, key=key, value=value)
        future.add_callback(self._acknowledged, topic, sent_at)
        future.add_errback(self._failed_delivery, topic)

    def _acknowledged(self, topic: str, sent_at: float, _metadata: object) -> None:
        self._metrics.records_produced.labels(topic).inc()
        self._metrics.produce_latency.observe(time.perf_counter() - sent_at)

    def _failed_delivery(self, topic: str, error: BaseException) -> None:
        with self._lock:
            self._failed += 1
        self._metrics.produce_errors.labels(topic).inc()
        log.error("kafka did not acknowledge a record", extra={"topic": topic, "error": str(error)})

    def close(self, timeout: float) -> int:
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as error:
            log.error("flush did not finish", extra={"error": str(error)})
        self._producer.close(timeout=timeout)
        with self._lock:
            return self._failed


@dataclass
class Pipeline:
    """Routes each line and sends its records, or its dead letter, to the sink."""

    router: Router
    sink: RecordSink
    metrics: ProducerMetrics
    tweets_topic: str
    dead_letter_topic: str

    def handle(self, line: Line) -> Routed:
        self.metrics.posts_received.labels(self.router.source).inc()
        routed = self.router.route(line)
        if routed.records and self.router.producer is not None:
            self.metrics.posts_delivered.labels(self.router.producer).inc()
        for record in routed.records:
            self.sink.send(
                self.tweets_topic, record.city.encode("utf-8"), record.model_dump_json().encode()
            )
        if routed.dead_letter is not None:
            letter = routed.dead_letter
            self.metrics.dead_letters.labels(letter.reason.value).inc()
            self.sink.send(self.dead_letter_topic, None, letter.model_dump_json().encode())
            log.warning("dead letter",
                        extra={"reason": letter.reason.value, "detail": letter.detail})
        if routed.notice is not None:
            log.warning("the X API sent a notice", extra={"errors": routed.notice})
        return routed
