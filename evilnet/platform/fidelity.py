"""The fidelity report: how completely and how fast each producer copy delivers.

A shard planned with ``planner_redundancy: 2`` streams its rules on two producer
hosts at once; both write every post they receive to the tweets topic, each record
naming its producer and when it read the post (:class:`~evilnet.contracts.PostRecord`
``producer`` and ``received_at``, record schema 2). The report reads those records
back from Kafka and says, per shard and producer:

- ``received``: distinct posts this producer delivered;
- ``missed``: posts another producer of the shard delivered and this one did not;
- ``union``: distinct posts any producer of the shard delivered;
- ``recall``: received / union (the union is the best estimate of what X sent: a
  post every copy missed is invisible here);
- ``delay_p50_s`` / ``delay_p95_s``: received_at minus created_at, in seconds.

Which posts: those created in ``[from, to)``. Kafka is read by timestamp
(``offsets_for_times``) from ``from - grace`` to ``to + grace`` so that a post created
just before ``to`` and delivered late still counts for the producer that delivered it.
Records without a producer (schema 1, replays) are not deliveries and are left out.
Reading Kafka needs no table and no change to the job; the topic's retention bounds
how far back a report can look.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import ValidationError

from evilnet.contracts import PostRecord, shard_of_producer
from evilnet.kafka_clients import COMMAND_CLIENT

if TYPE_CHECKING:  # kafka-python is imported by the reader: `evilnet --help` needs none
    from kafka import KafkaConsumer, TopicPartition

FORMATS = ("table", "csv", "json")


@dataclass(frozen=True)
class ProducerFidelity:
    """One row of the report: one producer copy of one shard."""

    shard: str
    producer: str
    received: int
    missed: int
    union: int
    recall: float
    delay_p50_s: float | None
    delay_p95_s: float | None


@dataclass(frozen=True)
class Delivery:
    """One post as one producer delivered it (the first of its records, if several cities)."""

    post_id: str
    producer: str
    created_at: datetime
    received_at: datetime


def percentile(values: list[float], fraction: float) -> float | None:
    """The ``fraction`` quantile of ``values``, interpolated between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def report(deliveries: Iterable[Delivery], start: datetime, end: datetime
           ) -> list[ProducerFidelity]:
    """The report's rows for the posts created in ``[start, end)``, by shard then producer."""
    first: dict[tuple[str, str], Delivery] = {}
    for delivery in deliveries:
        if start <= delivery.created_at < end:
            first.setdefault((delivery.producer, delivery.post_id), delivery)
    by_producer: dict[str, dict[str, Delivery]] = defaultdict(dict)
    for (producer, post_id), delivery in first.items():
        by_producer[producer][post_id] = delivery
    by_shard: dict[str, list[str]] = defaultdict(list)
    for producer in by_producer:
        by_shard[shard_of_producer(producer)].append(producer)
    rows = []
    for shard in sorted(by_shard):
        union = set().union(*(by_producer[p].keys() for p in by_shard[shard]))
        for producer in sorted(by_shard[shard]):
            posts = by_producer[producer]
            delays = [(d.received_at - d.created_at).total_seconds() for d in posts.values()]
            p50, p95 = percentile(delays, 0.5), percentile(delays, 0.95)
            rows.append(ProducerFidelity(
                shard=shard, producer=producer, received=len(posts),
                missed=len(union - posts.keys()), union=len(union),
                recall=len(posts) / len(union),
                delay_p50_s=None if p50 is None else round(p50, 3),
                delay_p95_s=None if p95 is None else round(p95, 3)))
    return rows


def read_deliveries(bootstrap: str, topic: str, start: datetime, end: datetime,
                    timeout_s: float = 30.0,
                    security: Mapping[str, str] | None = None) -> Iterable[Delivery]:
    """The deliveries of ``topic`` whose Kafka timestamps fall in ``[start, end)``
    (``security``: kafka-python's login to a secured cluster)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level="read_committed",
                             client_id="evilnet-fidelity", **COMMAND_CLIENT,
                             **(security or {}))
    try:
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            raise ValueError(f"topic {topic!r} does not exist or has no partition")
        ends = consumer.end_offsets(partitions)
        starts = _offsets_at(consumer, partitions, start, ends)
        stops = _offsets_at(consumer, partitions, end, ends)
        wanted = {tp: (starts[tp], stops[tp]) for tp in partitions if starts[tp] < stops[tp]}
        if not wanted:
            return
        consumer.assign(list(wanted))
        for tp, (offset, _) in wanted.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout_s
        while wanted and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=1000).items():
                stop = wanted.get(tp, (0, 0))[1]
                for record in records:
                    if record.offset >= stop:
                        break
                    delivery = _delivery(record.value)
                    if delivery is not None:
                        yield delivery
                if tp in wanted and consumer.position(tp) >= stop:
                    del wanted[tp]
                    consumer.pause(tp)
        if wanted:
            raise TimeoutError(f"Kafka did not give the records up to {end.isoformat()} "
                               f"within {timeout_s:.0f} s")
    finally:
        consumer.close()


def _offsets_at(consumer: KafkaConsumer, partitions: list[TopicPartition], moment: datetime,
                ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Per partition, the first offset whose timestamp is at or after ``moment``."""
    found = consumer.offsets_for_times({tp: int(moment.timestamp() * 1000)
                                        for tp in partitions})
    return {tp: found[tp].offset if found.get(tp) is not None else ends[tp]
            for tp in partitions}


def _delivery(value: bytes | None) -> Delivery | None:
    try:
        record = PostRecord.model_validate_json(value or b"")
    except ValidationError:
        return None  # not a post record: the job counts those as bad records
    if record.producer is None or record.received_at is None:
        return None  # schema 1, or a replay: not a delivery by a producer
    return Delivery(record.id, record.producer, record.created_at, record.received_at)


def fidelity(bootstrap: str, topic: str, start: datetime, end: datetime,
             grace: timedelta = timedelta(minutes=5),
             security: Mapping[str, str] | None = None) -> list[ProducerFidelity]:
    """The report for posts created in ``[start, end)``, read from Kafka."""
    return report(read_deliveries(bootstrap, topic, start - grace, end + grace,
                                  security=security), start, end)


def render(rows: list[ProducerFidelity], form: str) -> str:
    """The report as a table (recall in percent), CSV or JSON (recall as a fraction)."""
    if form == "json":
        return json.dumps([asdict(row) for row in rows], indent=2)
    if form == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(ProducerFidelity.__dataclass_fields__),
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
        return out.getvalue().rstrip("\n")
    header = ("shard", "producer", "received", "missed", "union", "recall %",
              "delay p50 s", "delay p95 s")
    lines = [header] + [
        (row.shard, row.producer, str(row.received), str(row.missed), str(row.union),
         f"{100 * row.recall:.2f}", _seconds(row.delay_p50_s), _seconds(row.delay_p95_s))
        for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(width) if i < 2 else cell.rjust(width)
                      for i, (cell, width) in enumerate(zip(line, widths, strict=True)))
            for line in lines]
    return "\n".join(text) if rows else "no post delivered by a named producer in the window"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
