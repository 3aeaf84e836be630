"""``evilnet check``: replay a posts file through the running pipeline and compare.

1. The run gets post and author ids of its own (snowflakes of its start time: the
   job drops a post id it has seen within its watermark, so a second run of the
   same file would otherwise count nothing), and the posts are moved in time
   (``auto``: into the most recent minutes whose windows the job can still update
   and that no live post reaches any more) into a copy, which is what is replayed
   and what the reference reads.
2. The job's rows of those cities and windows are read (``before``), the copy is
   replayed into Kafka with the producer's own replay path, and the check waits
   until both outputs of the job have consumed the topic up to its end offsets
   after the replay (the job's ``job_progress`` rows), with a progress bar.
3. The rows are read again (``after``). What the run added is ``after - before``
   (its ids and authors are its own, so each number adds up), compared with
   :mod:`evilnet.spark.reference` using pandas' ``assert_frame_equal``.
4. Every other post the job consumed meanwhile is read back from Kafka; the windows
   it falls in are left out of the comparison (counted as ``skipped``). So the
   comparison is exact for the run's own posts whatever else writes to the topic,
   such as the producers ``make up`` leaves running for the same cities.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaConnectionError

from evilnet.cities import PlanInputError, check_tags
from evilnet.kafka_clients import COMMAND_CLIENT
from evilnet.producer.generator import snowflake
from evilnet.producer.service import run_replay
from evilnet.producer.sink import KafkaSettings, KafkaSink
from evilnet.schema import JOB_QUERIES, METRICS
from evilnet.spark import reference
from evilnet.spark.store import CassandraStore
from evilnet.waiting import poll_until, wait_for

# --shift-to's default: see :func:`placement`.
AUTO = "auto"
KEYS = ["city", "topic", "window_start", "window_end"]
VIEWS = ("city", "city,topic", "city, hour")
# How long reading the end offsets rides out a broker that refuses connections: a
# broker's restart, and the leader elections after it, take well under a minute.
BROKER_DOWN_TIMEOUT_S = 60


class CheckError(RuntimeError):
    """The check could not run to a comparison (no job progress, timeout, no post)."""


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


def own_identities(lines: list[bytes], run_started: datetime) -> list[bytes]:
    """The lines with every post id and author id replaced by one of this run only.

    New ids count up from the snowflake of ``run_started`` (one space for posts, one
    for authors): runs a millisecond apart never share one, and X's and the
    simulator's ids are snowflakes of other moments. A post delivered twice in the
    file keeps one id, so the job's duplicate handling is still exercised.
    """
    first = snowflake(run_started)
    posts: dict[str, str] = {}
    authors: dict[str, str] = {}

    def post_id(old: object) -> object:
        return posts.setdefault(old, str(first + len(posts))) if isinstance(old, str) else old

    def author_id(old: object) -> object:
        return (authors.setdefault(old, str(first + len(authors)))
                if isinstance(old, str) else old)

    def rewrite(tweet: dict) -> None:
        if "id" in tweet:
            tweet["id"] = post_id(tweet["id"])
        if "author_id" in tweet:
            tweet["author_id"] = author_id(tweet["author_id"])
        if isinstance(tweet.get("edit_history_tweet_ids"), list):
            tweet["edit_history_tweet_ids"] = [post_id(i) for i in tweet["edit_history_tweet_ids"]]
        for ref in tweet.get("referenced_tweets") or []:
            if isinstance(ref, dict) and "id" in ref:
                ref["id"] = post_id(ref["id"])

    rewritten = []
    for line in lines:
        try:
            message = json.loads(line)
            if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
                raise TypeError
            rewrite(message["data"])
            includes = message.get("includes") or {}
            for tweet in includes.get("tweets") or []:
                if isinstance(tweet, dict):
                    rewrite(tweet)
            for user in includes.get("users") or []:
                if isinstance(user, dict) and "id" in user:
                    user["id"] = author_id(user["id"])
            rewritten.append(json.dumps(message, ensure_ascii=False).encode())
        except (ValueError, TypeError, AttributeError):
            rewritten.append(line)  # not a post: replayed as it is
    return rewritten


@dataclass(frozen=True)
class JobWindows:
    """The job's window, slide, hour window, watermark and trigger (its progress rows)."""

    window: timedelta
    slide: timedelta
    hour: timedelta
    watermark: timedelta
    trigger: timedelta


def job_windows(store: CassandraStore, job: str) -> JobWindows:
    progress = store.progress(job)
    if not progress:
        raise CheckError(f"no progress of job {job!r} in keyspace {store.cql.keyspace}: is the "
                         "job running, with this keyspace and job name?")
    config = json.loads(next(iter(progress.values())).config)
    return JobWindows(*(timedelta(seconds=config[key]) for key in (
        "window_seconds", "slide_seconds", "hour_window_seconds", "watermark_seconds",
        "trigger_seconds")))


def placement(posts: list[reference.Post], job: JobWindows, now: datetime) -> datetime:
    """Where ``auto`` puts the first post: as late as the live stream leaves alone.

    The last post's windows should end before the posts the job has not consumed
    yet (at most a trigger and a minute old), and the first post must stay newer
    than the job's watermark when the job reads it (a trigger or so after now, with
    a minute to spare). A file too long for both loses the windows live posts share.
    """
    span = max(p.created_at for p in posts) - min(p.created_at for p in posts)
    earliest = now - job.watermark + job.trigger + timedelta(seconds=90)
    latest_last = now - job.window - job.slide - job.trigger - timedelta(seconds=30)
    return max(earliest, latest_last - span)


def end_offsets(bootstrap_servers: list[str], topic: str,
                security: Mapping[str, str] | None = None) -> dict[int, int]:
    """The topic's end offsets, with a broker of the cluster down (killed, restarting).

    kafka-python raises the connection error of the broker it asked for metadata
    rather than asking another; the next try asks another (or the same one, back).
    """
    def read(consumer: KafkaConsumer) -> dict[int, int]:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            raise CheckError(f"topic {topic!r} does not exist")
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}

    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, client_id="evilnet-check",
                             **COMMAND_CLIENT, **(security or {}))
    try:
        return wait_for(lambda: read(consumer), BROKER_DOWN_TIMEOUT_S,
                        what=f"the end offsets of {topic!r}", ignore=(KafkaConnectionError,))
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


def consumed_offsets(store: CassandraStore, job: str) -> dict[int, int]:
    """Per partition, the offset every query of the job has consumed up to."""
    progress = store.progress(job)
    per_query = [dict(progress[q].end_offsets or {}) if q in progress else {}
                 for q in JOB_QUERIES]
    partitions = set().union(*per_query)
    return {p: min(offsets.get(p, 0) for offsets in per_query) for p in partitions}


def other_posts(bootstrap_servers: list[str], topic: str, start: dict[int, int],
                end: dict[int, int], own_ids: set[str], timeout: float = 120.0,
                security: Mapping[str, str] | None = None,
                ) -> list[tuple[str, frozenset[str], datetime]]:
    """(city, topics, created_at) of the records in [start, end) that are not the run's."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, client_id="evilnet-check",
                             group_id=None, enable_auto_commit=False, **COMMAND_CLIENT,
                             **(security or {}))
    found = []
    try:
        wanted = {TopicPartition(topic, p): stop for p, stop in end.items()
                  if stop > start.get(p, 0)}
        if not wanted:
            return found
        consumer.assign(list(wanted))
        for tp in wanted:
            consumer.seek(tp, start.get(tp.partition, 0))
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < stop for tp, stop in wanted.items()):
            if time.monotonic() > deadline:
                raise CheckError(f"could not read back topic {topic!r} within {timeout:g} s")
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for record in records:
                    if record.offset >= wanted[tp]:
                        continue
                    try:
                        value = json.loads(record.value)
                        if str(value["id"]) in own_ids:
                            continue
                        found.append((value["city"], frozenset(value.get("topics") or []),
                                      datetime.fromisoformat(value["created_at"])
                                      .astimezone(UTC)))
                    except (ValueError, TypeError, KeyError, AttributeError):
                        continue  # the job drops it as a bad record: it counts nowhere
    finally:
        consumer.close()
    return found


def touched(others: Iterable[tuple[str, frozenset[str], datetime]],
            job: JobWindows) -> dict[str, set[tuple]]:
    """Per view, the (city, topic, window_start) keys that other posts fall in."""
    keys: dict[str, set[tuple]] = {view: set() for view in VIEWS}
    for city, topics, created_at in others:
        for start in reference.window_starts(created_at, job.window, job.slide):
            keys["city"].add((city, "", pd.Timestamp(start)))
            keys["city,topic"].update((city, topic, pd.Timestamp(start)) for topic in topics)
        for start in reference.window_starts(created_at, job.hour, job.slide):
            keys["city, hour"].add((city, "", pd.Timestamp(start)))
    return keys


@dataclass
class Comparison:
    """Expected (reference) and actual (Cassandra, after - before) frames, per view."""

    expected: dict[str, pd.DataFrame] = field(default_factory=dict)
    actual: dict[str, pd.DataFrame] = field(default_factory=dict)
    # Rows of the reference left out: other posts reached the same windows.
    skipped: dict[str, int] = field(default_factory=dict)

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
    merged = expected.merge(actual, on=KEYS, how="outer", suffixes=("_expected", "_actual"),
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


def expected_frames(posts: list[reference.Post], job: JobWindows) -> dict[str, pd.DataFrame]:
    return {"city": reference.aggregate(posts, job.window, job.slide),
            "city,topic": reference.aggregate(posts, job.window, job.slide, by_topic=True),
            "city, hour": reference.aggregate(posts, job.hour, job.slide)}


def read_rows(store: CassandraStore, expected: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The job's rows of the cities and windows of ``expected``, per view."""
    actual = {}
    for view, frame in expected.items():
        cities = sorted(set(frame["city"]))
        if view == "city, hour":
            rows = store.read_hours(cities, frame["window_end"].min().to_pydatetime(),
                                    frame["window_end"].max().to_pydatetime())
        else:
            rows = store.read_windows(cities, frame["window_start"].min().to_pydatetime(),
                                      frame["window_start"].max().to_pydatetime()
                                      + timedelta(milliseconds=1), by_topic=view == "city,topic")
        actual[view] = reference.frame((r.city, r.topic or "", r.window_start, r.window_end,
                                        r.tweets, r.retweets, r.unique_users) for r in rows)
    return actual


def delta(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """What changed from ``before`` to ``after``, per row (rows that did not change dropped)."""
    merged = after.merge(before, on=KEYS, how="left", suffixes=("", "_before"))
    for metric in METRICS:
        merged[metric] = merged[metric] - merged[f"{metric}_before"].fillna(0).astype("int64")
    changed = merged[(merged[list(METRICS)] != 0).any(axis=1)]
    return reference.frame(changed[list(KEYS) + list(METRICS)].itertuples(index=False))


def compare(expected: dict[str, pd.DataFrame], before: dict[str, pd.DataFrame],
            after: dict[str, pd.DataFrame], skip: dict[str, set[tuple]]) -> Comparison:
    comparison = Comparison()
    for view, wanted in expected.items():
        def kept(frame: pd.DataFrame, view: str = view) -> pd.DataFrame:
            keys = zip(frame["city"], frame["topic"], frame["window_start"], strict=True)
            mask = [key not in skip[view] for key in keys]
            return frame[mask].reset_index(drop=True)

        comparison.expected[view] = kept(wanted)
        comparison.actual[view] = kept(delta(before[view], after[view]))
        comparison.skipped[view] = len(wanted) - len(comparison.expected[view])
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
              job: str, shift_to: datetime | str | None, timeout: float,
              rate: float | None = None,
              on_progress: Callable[[int, int], None] = lambda done, total: None,
              poll_seconds: float = 1.0,
              copies: tuple[str | None, ...] = (None,),
              security: Mapping[str, str] | None = None) -> CheckRun:
    """Replay ``file``, wait for the job to catch up, compare (see the module's doc).

    ``security``: kafka-python's login to a secured cluster, for every client here.

    ``shift_to``: where the first post goes, :data:`AUTO` (:func:`placement`), or
    None to keep the file's times. ``copies``: the producer copies that deliver the
    file, each all of it, as redundant producers do (a name stamps the records as
    that copy's; None, the default, is one plain replay).
    """
    windows = job_windows(store, job)
    run_started = datetime.now(UTC)
    lines = own_identities([line for line in file.read_bytes().splitlines() if line.strip()],
                           run_started)
    posts = reference.read_posts(lines)
    if not posts:
        raise CheckError(f"{file} holds no valid post (a JSON line with data.id, author_id, "
                         "created_at and a matching rule's city=...;topic=... tag)")
    try:
        check_tags({(p.city, t) for p in posts for t in p.topics})
    except PlanInputError as error:
        raise CheckError(f"{file}: {error}") from None
    if shift_to == AUTO:
        shift_to = placement(posts, windows, datetime.now(UTC))
    lines, shift = shift_lines(lines, shift_to)
    posts = reference.read_posts(lines)
    expected = expected_frames(posts, windows)
    start = consumed_offsets(store, job)
    before = read_rows(store, expected)
    with tempfile.TemporaryDirectory(prefix="evilnet-check-") as work:
        replayed = Path(work) / file.name
        replayed.write_bytes(b"\n".join(lines) + b"\n")
        first = end_offsets(bootstrap_servers, topic, security)
        unacknowledged = 0
        for producer in copies:
            summary, _ = run_replay(replayed, rate=rate, tweets_topic=topic, producer=producer,
                                    sink_factory=lambda m: KafkaSink(KafkaSettings(
                                        bootstrap_servers, client_id="evilnet-check",
                                        client_settings={**COMMAND_CLIENT,
                                                         **(security or {})}), m))
            unacknowledged += summary.unacknowledged
        summary.unacknowledged = unacknowledged
    if summary.unacknowledged:
        raise CheckError(f"{summary.unacknowledged} records were not acknowledged by Kafka")
    target = end_offsets(bootstrap_servers, topic, security)
    total = sum(end - first.get(p, 0) for p, end in target.items())
    started = time.monotonic()

    def records_left() -> int:
        left = max(consumed(store, job, target).values())
        on_progress(total - min(left, total), total)
        return left

    caught_up_now, left = poll_until(records_left, lambda left: left == 0, timeout,
                                     interval=poll_seconds)
    if not caught_up_now:
        raise CheckError(f"the job {job!r} did not catch up within {timeout:g} s: {left} of "
                         f"{total} records not consumed yet")
    caught_up = time.monotonic() - started
    after = read_rows(store, expected)
    # Whatever the job consumed since `start` other than this run is in Kafka below
    # the end offsets read now (it cannot have read further).
    last = end_offsets(bootstrap_servers, topic, security)
    others = other_posts(bootstrap_servers, topic, start, last, {p.id for p in posts},
                         security=security)
    comparison = compare(expected, before, after, touched(others, windows))
    empty = [view for view, frame in comparison.expected.items() if frame.empty]
    if empty:
        raise CheckError(f"other posts reached every window of view {', '.join(empty)} "
                         "during the check: nothing left to compare (give --shift-to a time "
                         "no producer writes to, within the job's watermark)")
    return CheckRun(posts, shift, summary, total, caught_up, comparison)
