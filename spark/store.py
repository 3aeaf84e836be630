"""Reading and writing the pipeline's Cassandra tables (cassandra-driver, prepared statements).

The streaming job writes through :class:`CassandraStore` from its driver (inside
``foreachBatch``: executors need no project code); ``evilnet query`` and ``evilnet
check`` read through it. Every statement comes from :class:`evilnet.schema.Statements`.

Writes are idempotent upserts of whole aggregates: a micro-batch that is run again
after a crash writes the same values again, so the tables converge to the right ones.
"""

from __future__ import annotations

import sys
from array import array
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

from evilnet.cassandra_clients import CassandraSecurity, driver_kwargs
from evilnet.schema import CITIES_BUCKET, KEYSPACE, METRICS, Statements, day_of, hour_of
from evilnet.spark.panes import Key, Pane

CONCURRENCY = 64


@dataclass(frozen=True)
class WindowRow:
    """The three numbers of one window, per city (``topic`` None) or per city and topic."""

    city: str
    topic: str | None
    window_start: datetime
    window_end: datetime
    tweets: int
    retweets: int
    unique_users: int


def pack_users(users: Iterable[int]) -> bytes:
    """A pane's user keys as stored (``users`` of the pane tables): ascending, 8 bytes
    each, big-endian signed."""
    packed = array("q", sorted(users))
    if sys.byteorder == "little":
        packed.byteswap()
    return packed.tobytes()


def unpack_users(blob: bytes | None) -> frozenset[int]:
    packed = array("q")
    packed.frombytes(blob or b"")
    if sys.byteorder == "little":
        packed.byteswap()
    return frozenset(packed)


def millis(moment: datetime) -> int:
    """Epoch milliseconds of an aware (or driver-naive UTC) datetime."""
    return round(utc(moment).timestamp() * 1000)


def from_millis(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def utc(moment: datetime) -> datetime:
    """cassandra-driver returns naive datetimes in UTC: make them aware."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def days(start: datetime, end: datetime) -> list[date]:
    """The UTC days from ``start``'s to ``end``'s, inclusive."""
    first, last = day_of(start), day_of(end)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def connect(hosts: Sequence[str], port: int = 9042, local_datacenter: str | None = None,
            connect_timeout: float = 10,
            security: CassandraSecurity | None = None) -> tuple[Cluster, Session]:
    """A session on the cluster; ``security``: TLS and a role's login (a secured
    cluster, evilnet.cassandra_clients), None for a plaintext one."""
    # Without a local data center, the driver takes the first contact point's.
    policy = TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=local_datacenter or None))
    # LOCAL_QUORUM for reads and writes alike (the driver's default is LOCAL_ONE): with
    # the keyspace's 3 replicas, one node down neither stops the job's upserts nor lets
    # a read miss a row a write acknowledged. With one node (the local stack) it is ONE.
    profile = ExecutionProfile(load_balancing_policy=policy, request_timeout=30,
                               consistency_level=ConsistencyLevel.LOCAL_QUORUM)
    cluster = Cluster(list(hosts), port=port, protocol_version=5, connect_timeout=connect_timeout,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                      **driver_kwargs(security))
    try:
        return cluster, cluster.connect()
    except Exception:
        cluster.shutdown()  # a refused login or TLS handshake leaves no thread behind
        raise


class CassandraStore:
    """The pipeline's tables in one keyspace."""

    def __init__(self, session: Session, keyspace: str = KEYSPACE, *,
                 ttl_seconds: int = 30 * 86400, top_ttl_seconds: int = 2 * 86400,
                 pane_ttl_seconds: int = 2 * 86400) -> None:
        self.session = session
        self.cql = Statements(keyspace)
        self.ttl_seconds = ttl_seconds
        self.top_ttl_seconds = top_ttl_seconds
        self.pane_ttl_seconds = pane_ttl_seconds
        self._prepared: dict[str, object] = {}

    def _statement(self, name: str):
        if name not in self._prepared:
            self._prepared[name] = self.session.prepare(getattr(self.cql, name))
        return self._prepared[name]

    def _run(self, name: str, parameters: Sequence[tuple]) -> list:
        """Execute one statement for each parameter tuple, concurrently; raise on a failure."""
        if not parameters:
            return []
        results = execute_concurrent_with_args(self.session, self._statement(name), parameters,
                                               concurrency=CONCURRENCY, raise_on_first_error=True)
        return [result for _, result in results]

    # --- writes (the job) ------------------------------------------------------------

    def write_windows(self, rows: Iterable[WindowRow], seen_at: datetime) -> int:
        """Upsert 5-minute windows (per city, and per city and topic) and the cities seen."""
        rows = list(rows)
        ttl = self.ttl_seconds
        self._run("upsert_city_window", [
            (r.city, day_of(r.window_start), r.window_start, r.window_end,
             r.tweets, r.retweets, r.unique_users, ttl) for r in rows if r.topic is None])
        self._run("upsert_city_topic_window", [
            (r.city, r.topic, day_of(r.window_start), r.window_start, r.window_end,
             r.tweets, r.retweets, r.unique_users, ttl) for r in rows if r.topic is not None])
        self._run("upsert_city", [(CITIES_BUCKET, city, seen_at, ttl)
                                  for city in sorted({r.city for r in rows})])
        self._run("upsert_city_topic", [(city, topic, seen_at, ttl) for city, topic in
                                        sorted({(r.city, r.topic) for r in rows if r.topic})])
        return len(rows)

    def write_hours(self, rows: Iterable[WindowRow]) -> int:
        """Upsert hourly windows per city and move their entries in the leaderboard.

        A leaderboard row's value is part of its key, so a city's previous entry is
        deleted when its value changes: the previous values are read from
        city_hour_windows, which is written last. Only the entries whose value
        changed are written (a new post of a city always changes its tweets, its
        retweets and unique users less often). Run again after a crash at any
        point, this converges: before city_hour_windows is written, the same new
        values are inserted and the same old ones deleted; after, every entry is
        already in place (the inserts and deletes were done before it).
        """
        rows = list(rows)
        previous = {(r.city, r.window_end): r for r in self.read_hours_of(rows)}
        inserts, deletes = [], []
        for row in rows:
            old = previous.get((row.city, row.window_end))
            for metric in METRICS:
                value = getattr(row, metric)
                if old is not None and getattr(old, metric) == value:
                    continue
                inserts.append((metric, row.window_end, value, row.city, self.top_ttl_seconds))
                if old is not None:
                    deletes.append((metric, row.window_end, getattr(old, metric), row.city))
        self._run("insert_top_city", inserts)
        self._run("delete_top_city", deletes)
        self._run("upsert_city_hour", [
            (r.city, day_of(r.window_end), r.window_end, r.window_start,
             r.tweets, r.retweets, r.unique_users, self.top_ttl_seconds) for r in rows])
        return len(rows)

    def write_panes(self, panes: Iterable[Pane]) -> int:
        """Upsert panes (the ``panes`` layout), per city (topic None) and per city and topic."""
        panes = list(panes)
        ttl = self.pane_ttl_seconds
        rows = [(p, from_millis(p.start)) for p in panes]
        self._run("upsert_city_pane", [
            (p.city, hour_of(start), start, p.tweets, p.retweets, pack_users(p.users), ttl)
            for p, start in rows if p.topic is None])
        self._run("upsert_city_topic_pane", [
            (p.city, p.topic, hour_of(start), start, p.tweets, p.retweets,
             pack_users(p.users), ttl) for p, start in rows if p.topic is not None])
        return len(panes)

    def read_panes(self, ranges: Mapping[Key, tuple[int, int]]) -> list[Pane]:
        """The stored panes of each key starting in [first, last] (epoch milliseconds,
        inclusive): one query per key and hour partition."""
        by_city, by_topic = [], []
        for (city, topic), (first, last) in ranges.items():
            low, high = from_millis(first), from_millis(last)
            hour = hour_of(low)
            while hour <= high:
                end = hour + timedelta(hours=1) - timedelta(milliseconds=1)
                bounds = (hour, max(low, hour), min(high, end))
                if topic is None:
                    by_city.append((city, *bounds))
                else:
                    by_topic.append((city, topic, *bounds))
                hour += timedelta(hours=1)
        return [Pane(r.city, getattr(r, "topic", None), millis(r.pane_start), r.tweets,
                     r.retweets, unpack_users(r.users))
                for name, parameters in (("select_city_panes", by_city),
                                         ("select_city_topic_panes", by_topic))
                for result in self._run(name, parameters) for r in result]

    def write_progress(self, job: str, query: str, batch_id: int, end_offsets: dict[int, int],
                       input_rows: int, bad_records: int, late_rows: int,
                       watermark: datetime | None, config: str, updated_at: datetime) -> None:
        self.session.execute(self._statement("upsert_progress"), (
            job, query, batch_id, end_offsets, input_rows, bad_records, late_rows, watermark,
            config, updated_at))

    def touch_progress(self, job: str, query: str, config: str, updated_at: datetime) -> None:
        self.session.execute(self._statement("touch_progress"), (updated_at, config, job, query))

    # --- reads (the job, the CLI, the checker) --------------------------------------

    def read_hours_of(self, rows: Sequence[WindowRow]) -> list[WindowRow]:
        """The stored hourly rows of the (city, window_end) of ``rows``: one query per partition."""
        ends: dict[tuple[str, date], list[datetime]] = defaultdict(list)
        for row in rows:
            ends[(row.city, day_of(row.window_end))].append(row.window_end)
        return self._hour_rows([(city, day, min(e), max(e)) for (city, day), e in ends.items()])

    def read_hours(self, cities: Sequence[str], start: datetime, end: datetime) -> list[WindowRow]:
        """Hourly rows of ``cities`` whose window ends in [start, end]."""
        return self._hour_rows([(city, day, start, end) for city in cities
                                for day in days(start, end)])

    def _hour_rows(self, parameters: list[tuple]) -> list[WindowRow]:
        return [WindowRow(r.city, None, utc(r.window_start), utc(r.window_end),
                          r.tweets, r.retweets, r.unique_users)
                for result in self._run("select_city_hours", parameters) for r in result]

    def read_windows(self, cities: Sequence[str], start: datetime, end: datetime, *,
                     by_topic: bool = False) -> list[WindowRow]:
        """Windows of ``cities`` starting in [start, end), per city or per city and topic."""
        if by_topic:
            name = "select_city_topic_windows"
            parameters = [(city, topic, day, start, end) for city in cities
                          for topic in self.topics(city) for day in days(start, end)]
        else:
            name = "select_city_windows"
            parameters = [(city, day, start, end) for city in cities for day in days(start, end)]
        rows = [WindowRow(r.city, getattr(r, "topic", None), utc(r.window_start),
                          utc(r.window_end), r.tweets, r.retweets, r.unique_users)
                for result in self._run(name, parameters) for r in result]
        return sorted(rows, key=lambda r: (r.city, r.topic or "", r.window_start))

    def cities(self) -> list[str]:
        return sorted(r.city for r in self.session.execute(self._statement("select_cities"),
                                                           (CITIES_BUCKET,)))

    def topics(self, city: str) -> list[str]:
        return sorted(r.topic for r in self.session.execute(self._statement("select_city_topics"),
                                                            (city,)))

    def top_cities(self, metric: str, window_end: datetime,
                   limit: int = 5) -> list[tuple[str, int]]:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}: one of {', '.join(METRICS)}")
        result = self.session.execute(self._statement("select_top_cities"),
                                      (metric, window_end, limit))
        return [(r.city, r.value) for r in result]

    def progress(self, job: str) -> dict[str, object]:
        """The job's last finished micro-batch, per query name."""
        return {r.query: r for r in self.session.execute(self._statement("select_progress"),
                                                          (job,))}
