"""``evilnet check``: replay a posts file through the running pipeline and compare.

1. The file's posts are moved in time (by default so that the first one is now:
   older events would be behind the job's watermark) into a copy, which is what
   is replayed and what the reference reads.
2. The copy is replayed into Kafka with the producer's own replay path.
3. Wait until both queries of the job have consumed the topic up to its end
   offsets after the replay (the job's ``job_progress`` rows), with a progress bar.
4. Read the job's tables for the file's cities and time range and compare them
   with :mod:`evilnet.spark.reference` using pandas' ``assert_frame_equal``.

The comparison is exact: another source writing posts of the same cities and
minutes into the topic shows up as a difference. Check an idle pipeline, or a
job instance of its own (topic, keyspace, checkpoint).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from kafka import KafkaConsumer, TopicPartition

from evilnet.producer.service import run_replay
from evilnet.producer.sink import KafkaSettings, KafkaSink
from evilnet.schema import JOB_QUERIES
from evilnet.spark import reference
from evilnet.spark.store import CassandraStore


class CheckError(RuntimeError):
    """The check could not run to a comparison (no job progress, timeout)."""


def shift_lines(lines: list[bytes], to: datetime | None) -> tuple[list[bytes], timedelta]:
    """The lines with every post's created_at moved so that the earliest is ``to``."""
    if to is None:
        return lines, timedelta(0)
    posts = [post for line in lines for post in reference.parse_line(line)]
    if not posts:
        return lines, timedelta(0)
    delta = to - min(post.created_at for post in posts)
    shifted = []
    for line in lines:
        try:
            message = json.loads(line)
            moment = datetime.fromisoformat(message["data"]["created_at"]) + delta
            message["data"]["created_at"] = (moment.astimezone(UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")
            shifted.append(json.dumps(message, ensure_ascii=False).encode())
        except (ValueError, TypeError, KeyError):
            shifted.append(line)  # not a post: replayed as it is
    return shifted, delta


def end_offsets(bootstrap_servers: list[str], topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, client_id="evilnet-check")
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            raise CheckError(f"topic {topic!r} does not exist")
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def consumed(store: CassandraStore, job: str, target: dict[int, int]) -> dict[str, int]:
    """Per query: records of ``target`` not yet consumed by the job (0 = caught up)."""
    progress = store.progress(job)
    left = {}
    for query in JOB_QUERIES:
        offsets = dict(progress[query].end_offsets or {}) if query in progress else {}
        left[query] = sum(max(0, end - offsets.get(p, 0)) for p, end in target.items())
    return left


def job_windows(store: CassandraStore, job: str) -> tuple[timedelta, timedelta, timedelta]:
    """The job's own window, slide and hour window (from its progress rows)."""
    progress = store.progress(job)
    if not progress:
        raise CheckError(f"no progress of job {job!r} in keyspace {store.cql.keyspace}: is the "
                         "job running, with this keyspace and job name?")
    config = json.loads(next(iter(progress.values())).config)
    return (timedelta(seconds=config["window_seconds"]),
            timedelta(seconds=config["slide_seconds"]),
            timedelta(seconds=config["hour_window_seconds"]))


@dataclass
class Comparison:
    """Expected (reference) and actual (Cassandra) frames, per view."""

    expected: dict[str, pd.DataFrame] = field(default_factory=dict)
    actual: dict[str, pd.DataFrame] = field(default_factory=dict)

    def differences(self) -> dict[str, str]:
        """Per view that differs, a readable account of the rows that differ."""
        found = {}
        for view, expected in self.expected.items():
            actual = self.actual[view]
            try:
                pd.testing.assert_frame_equal(actual, expected, check_like=False)
            except AssertionError as error:
                found[view] = describe(expected, actual) or str(error)
        return found


def describe(expected: pd.DataFrame, actual: pd.DataFrame) -> str:
    keys = ["city", "topic", "window_start", "window_end"]
    merged = expected.merge(actual, on=keys, how="outer", suffixes=("_expected", "_actual"),
                            indicator=True)
    values = [c for c in reference.METRICS]
    differs = merged["_merge"] != "both"
    for column in values:
        differs |= merged[f"{column}_expected"] != merged[f"{column}_actual"]
    rows = merged[differs].drop(columns="_merge")
    if rows.empty:
        return ""
    shown = rows.head(40).to_string(index=False)
    more = f"\n... and {len(rows) - 40} more rows" if len(rows) > 40 else ""
    return f"{len(rows)} rows differ (NaN: row missing on that side):\n{shown}{more}"


def compare(store: CassandraStore, posts: list[reference.Post], window: timedelta,
            slide: timedelta, hour: timedelta) -> Comparison:
    comparison = Comparison()
    for view, by_topic in (("city", False), ("city,topic", True)):
        expected = reference.aggregate(posts, window, slide, by_topic=by_topic)
        comparison.expected[view] = expected
        cities = sorted(set(expected["city"]))
        start = expected["window_start"].min().to_pydatetime()
        end = expected["window_start"].max().to_pydatetime() + timedelta(milliseconds=1)
        rows = store.read_windows(cities, start, end, by_topic=by_topic) if cities else []
        comparison.actual[view] = reference.frame(
            (r.city, r.topic, r.window_start, r.window_end, r.tweets, r.retweets, r.unique_users)
            for r in rows)
    expected = reference.aggregate(posts, hour, slide)
    comparison.expected["city, hour"] = expected
    cities = sorted(set(expected["city"]))
    rows = store.read_hours(cities, expected["window_end"].min().to_pydatetime(),
                            expected["window_end"].max().to_pydatetime()) if cities else []
    comparison.actual["city, hour"] = reference.frame(
        (r.city, "", r.window_start, r.window_end, r.tweets, r.retweets, r.unique_users)
        for r in rows)
    return comparison


@dataclass
class CheckRun:
    posts: list[reference.Post]
    shift: timedelta
    replay_summary: object
    records: int
    caught_up_seconds: float
    comparison: Comparison


def run_check(file: Path, *, store: CassandraStore, bootstrap_servers: list[str], topic: str,
              job: str, shift_to: datetime | None, timeout: float, rate: float | None = None,
              on_progress: Callable[[int, int], None] = lambda done, total: None,
              poll_seconds: float = 1.0) -> CheckRun:
    """Replay ``file``, wait for the job to catch up, compare (see the module's doc)."""
    window, slide, hour = job_windows(store, job)
    lines, shift = shift_lines([line for line in file.read_bytes().splitlines() if line.strip()],
                               shift_to)
    with tempfile.TemporaryDirectory(prefix="evilnet-check-") as work:
        replayed = Path(work) / file.name
        replayed.write_bytes(b"\n".join(lines) + b"\n")
        before = end_offsets(bootstrap_servers, topic)
        summary, _ = run_replay(replayed, rate=rate, tweets_topic=topic, sink_factory=lambda m:
                                KafkaSink(KafkaSettings(bootstrap_servers,
                                                        client_id="evilnet-check"), m))
    if summary.unacknowledged:
        raise CheckError(f"{summary.unacknowledged} records were not acknowledged by Kafka")
    target = end_offsets(bootstrap_servers, topic)
    total = sum(end - before.get(p, 0) for p, end in target.items())
    started = time.monotonic()
    while True:
        left = max(consumed(store, job, target).values())
        on_progress(total - min(left, total), total)
        if left == 0:
            break
        if time.monotonic() - started > timeout:
            raise CheckError(f"the job {job!r} did not catch up within {timeout:g} s: {left} of "
                             f"{total} records not consumed yet")
        time.sleep(poll_seconds)
    caught_up = time.monotonic() - started
    posts = reference.read_posts(lines)
    return CheckRun(posts, shift, summary, total, caught_up,
                    compare(store, posts, window, slide, hour))
