"""The producer processes: the X stream service and the file replay.

Both read lines, give them to one :class:`~evilnet.producer.sink.Pipeline` and, on
SIGTERM (or SIGINT), stop reading, finish the line in hand, and flush every
record in flight to Kafka before exiting. Signal handlers only set flags: the
main thread acts on them, so no lock is ever taken inside a handler.

Exit status: 0 after a clean stop, 1 if Kafka did not acknowledge every record
or the stream stopped on its own (e.g. the API refused the token), 2 for a bad
configuration.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import tweepy

from evilnet.contracts import ACCESS_LEVELS, DEAD_LETTER_TOPIC, TWEETS_TOPIC
from evilnet.kafka_clients import security_kwargs
from evilnet.metrics_endpoint import EndpointSecurity, serve
from evilnet.producer.config import ConfigError, ProducerConfig, load_config
from evilnet.producer.logs import redact
from evilnet.producer.metrics import ProducerMetrics
from evilnet.producer.reconnect import ReconnectPolicy
from evilnet.producer.routing import Line, Router, split_lines
from evilnet.producer.sink import KafkaSettings, KafkaSink, Pipeline, RecordSink
from evilnet.producer.xapi import (
    STREAM_PARAMETERS,
    RuleReconcileError,
    XApiAuthError,
    XStream,
    reconcile_rules,
    rules_client,
)

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_SECONDS = 60.0
_POLL_SECONDS = 0.2
# Replay files are read in large blocks (a file has no chunk boundaries to wait for).
REPLAY_READ_CHUNK_BYTES = 1 << 20


class _Signals:
    """Flags set by signal handlers, read by the main loop."""

    def __init__(self, *, reload: bool) -> None:
        self.stop = False
        self.reload = False
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop)
        if reload:
            signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum: int, _frame: object) -> None:
        self.stop = True

    def _on_reload(self, signum: int, _frame: object) -> None:
        self.reload = True


def kafka_sink(config: ProducerConfig, metrics: ProducerMetrics,
               client_settings: Mapping[str, object] | None = None) -> KafkaSink:
    """The shard's sink; ``client_settings``: see KafkaSettings."""
    return KafkaSink(
        KafkaSettings(
            bootstrap_servers=config.kafka_bootstrap_servers,
            client_id=f"evilnet-producer-{config.shard}",
            linger_ms=config.kafka_linger_ms,
            batch_size=config.kafka_batch_size,
            delivery_timeout_ms=config.kafka_delivery_timeout_ms,
            client_settings={**security_kwargs(config.kafka_client_config),
                             **(client_settings or {})},
        ),
        metrics,
    )


def run_stream(config_path: Path) -> int:
    """Run one shard: reconcile its rules, stream to Kafka, obey SIGHUP and SIGTERM."""
    config = load_config(config_path)
    token = config.read_bearer_token()
    redact(token.get_secret_value())
    metrics = ProducerMetrics(config.shard)
    if config.metrics_port:
        security = (EndpointSecurity.from_file(config.metrics_login)
                    if config.metrics_login else None)
        serve(config.metrics_port, config.metrics_host, metrics.registry, security)
    rules_api = rules_client(config.x_api_base_url, token)
    reconcile_rules(rules_api, config.rules, token_source=config.bearer_token_source,
                    metrics=metrics)

    # The access level's backfill on reconnect and its monthly post cap (the 80 % alert).
    level = ACCESS_LEVELS[config.access_level]
    metrics.monthly_post_cap.set(level.monthly_post_cap or 0)
    sink = kafka_sink(config, metrics)
    pipeline = Pipeline(Router(config.max_payload_bytes, source="x-stream",
                               producer=config.producer), sink, metrics,
                        config.tweets_topic, config.dead_letter_topic)
    stream = XStream(
        base_url=config.x_api_base_url, token=token, token_source=config.bearer_token_source,
        on_line=pipeline.handle, max_line_bytes=config.max_payload_bytes,
        policy=ReconnectPolicy(config.reconnect_time_scale), metrics=metrics,
        backfill_minutes=level.backfill_max_minutes,
    )
    signals = _Signals(reload=True)
    thread = stream.filter(threaded=True, **STREAM_PARAMETERS)
    log.info("producer started", extra={"shard": config.shard, "rules": len(config.rules)})
    try:
        while thread.is_alive() and not signals.stop:
            if signals.reload:
                signals.reload = False
                config = _reload(config_path, config, rules_api, metrics)
                if stream.usage_capped is not None:
                    stream.resume()  # the operator's word: try the stream again now
            thread.join(_POLL_SECONDS)
    finally:
        stream.disconnect()
        thread.join()
        failed = sink.close(FLUSH_TIMEOUT_SECONDS)
    if stream.fatal_error is not None:
        log.error("producer stopped", extra={"error": str(stream.fatal_error)})
        print(f"evilnet produce: {stream.fatal_error}", file=sys.stderr)
        return 1
    log.info("producer stopped cleanly", extra={"unacknowledged": failed})
    return 1 if failed else 0


def _reload(path: Path, current: ProducerConfig, rules_api: tweepy.StreamingClient,
            metrics: ProducerMetrics) -> ProducerConfig:
    """SIGHUP: apply the new rules on the live connection; other changes need a restart."""
    try:
        fresh = load_config(path)
    except ConfigError as error:
        log.error("SIGHUP: new config refused, keeping the old one", extra={"error": str(error)})
        return current
    needs_restart = sorted(
        key for key in ProducerConfig.model_fields
        if key != "rules" and getattr(fresh, key) != getattr(current, key)
    )
    if needs_restart:
        log.warning("SIGHUP: only rules change live; restart to apply the other keys",
                    extra={"keys": needs_restart})
    try:
        reconcile_rules(rules_api, fresh.rules, token_source=current.bearer_token_source,
                        metrics=metrics)
    except (RuleReconcileError, XApiAuthError) as error:
        # The stream goes on with the rules the API has; the next SIGHUP tries again.
        log.error("SIGHUP: rules not applied", extra={"error": str(error)})
        return current
    return current.model_copy(update={"rules": fresh.rules})


@dataclass
class ReplaySummary:
    """What a replay did; ``lines_read`` lines were routed and their records flushed."""

    lines_read: int = 0
    records: int = 0
    dead_letters: int = 0
    notices: int = 0
    unacknowledged: int = 0
    interrupted: bool = False
    seconds: float = 0.0  # from the first line read to the last acknowledgement

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def replay(
    lines: Iterator[Line],
    pipeline: Pipeline,
    *,
    rate: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[ReplaySummary], None] | None = None,
) -> ReplaySummary:
    """Route every line, as fast as possible or ``rate`` lines per second."""
    summary = ReplaySummary()
    started = time.monotonic()
    for line in lines:
        if should_stop():
            summary.interrupted = True
            break
        if rate:
            # Pace against the start, not the previous line, so that slow sends catch up.
            delay = started + summary.lines_read / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        routed = pipeline.handle(line)
        summary.lines_read += 1
        summary.records += len(routed.records)
        summary.dead_letters += routed.dead_letter is not None
        summary.notices += routed.notice is not None
        if on_progress is not None:
            on_progress(summary)
    return summary


def file_lines(file: BinaryIO, max_line_bytes: int, skip: int = 0) -> Iterator[Line]:
    """The non-blank lines of a file, after skipping ``skip`` of them."""
    chunks = iter(lambda: file.read(REPLAY_READ_CHUNK_BYTES), b"")
    lines = (line for line in split_lines(chunks, max_line_bytes) if line.size)
    for _ in range(skip):
        if next(lines, None) is None:
            break
    yield from lines


def run_replay(
    path: Path,
    *,
    sink_factory: Callable[[ProducerMetrics], RecordSink],
    shard: str = "replay",
    tweets_topic: str = TWEETS_TOPIC,
    dead_letter_topic: str = DEAD_LETTER_TOPIC,
    max_payload_bytes: int = 256 * 1024,
    rate: float | None = None,
    skip: int = 0,
    progress: Callable[[ReplaySummary], None] | None = None,
    producer: str | None = None,
) -> tuple[ReplaySummary, ProducerMetrics]:
    """Replay a file of stream lines into the sink, stopping cleanly on SIGTERM.

    ``producer`` stamps the records as that producer copy's deliveries (a check of
    redundant copies replays a file once per copy); by default a replay names none.
    """
    metrics = ProducerMetrics(shard)
    sink = sink_factory(metrics)
    pipeline = Pipeline(Router(max_payload_bytes, source="replay", producer=producer), sink,
                        metrics, tweets_topic, dead_letter_topic)
    signals = _Signals(reload=False)
    started = time.monotonic()
    try:
        with path.open("rb") as file:
            summary = replay(file_lines(file, max_payload_bytes, skip), pipeline, rate=rate,
                             should_stop=lambda: signals.stop, on_progress=progress)
    finally:
        unacknowledged = sink.close(FLUSH_TIMEOUT_SECONDS)
    summary.unacknowledged = unacknowledged
    summary.seconds = round(time.monotonic() - started, 3)
    log.info("replay finished", extra=asdict(summary))
    return summary, metrics

