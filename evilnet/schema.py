"""The Cassandra contract: keyspace, tables, columns and every CQL statement of the project.

The Spark job writes with these statements, ``evilnet query`` and ``evilnet check``
read with them, and the Grafana dashboards run the same text (with the keyspace
filled in). The tables are created by the versioned migrations in ``evilnet/cql/``
(``NNN_name.cql``), applied in order by :func:`apply_schema` (``evilnet schema
apply``), which records each applied version in :data:`SCHEMA_VERSIONS`.

Windows are half-open, ``[window_start, window_end)``, aligned to whole minutes, in
UTC. Time-bucketed partitions use the UTC day (:func:`day_of`) of ``window_start``
(:data:`CITY_WINDOWS`, :data:`CITY_TOPIC_WINDOWS`) or of ``window_end``
(:data:`CITY_HOUR_WINDOWS`). The numbers are those of DESIGN.md ("What the numbers
mean"): :data:`METRICS`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

KEYSPACE = "evilnet"
MIGRATIONS_DIR = Path(__file__).with_name("cql")

CITY_WINDOWS = "city_windows"
CITY_TOPIC_WINDOWS = "city_topic_windows"
CITIES = "cities"
CITY_TOPICS = "city_topics"
CITY_HOUR_WINDOWS = "city_hour_windows"
TOP_CITIES = "top_cities"
JOB_PROGRESS = "job_progress"
# The per-minute panes the `panes` layout composes its windows from (migration 002),
# per city and per city and topic; written and read by the job only.
CITY_PANES = "city_panes"
CITY_TOPIC_PANES = "city_topic_panes"
SCHEMA_VERSIONS = "schema_versions"

# The three numbers, in this order wherever they are listed; also the `metric`
# values of TOP_CITIES.
METRICS = ("tweets", "retweets", "unique_users")
# The columns of a window row as `evilnet query windows` and `evilnet check` show them.
WINDOW_COLUMNS = ("city", "topic", "window_start", "window_end", *METRICS)
# The job's two outputs, each with its row in JOB_PROGRESS (its `query`): 5-minute
# windows per city and per city and topic, and hourly windows per city with the
# leaderboard. Each is its own streaming query, or both are written by the one query
# POSTS_QUERY (JobConfig ``layout``), which records a row for each after a batch.
WINDOWS_QUERY = "windows"
HOURS_QUERY = "hours"
JOB_QUERIES = (WINDOWS_QUERY, HOURS_QUERY)
# The one streaming query that reads the topic once per trigger and writes both outputs
# (its checkpoint directory and its name in Spark's UI and in the job's batch log).
POSTS_QUERY = "posts"
# The panes layout's one streaming query (per-minute panes, windows composed from them).
PANES_QUERY = "panes"
# The job's benchmark baseline (JobConfig ``plain_count``) runs one query instead: it
# counts the topic's records per micro-batch, nothing else (benchmarks/stream_job_throughput.py).
PLAIN_COUNT_QUERY = "count"
# The single partition of CITIES.
CITIES_BUCKET = 0

_KEYSPACE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def job_queries(config: dict) -> tuple[str, ...]:
    """The queries a job instance runs, from its settings (``config`` of JOB_PROGRESS)."""
    return (PLAIN_COUNT_QUERY,) if config.get("plain_count") else JOB_QUERIES


def day_of(moment: datetime) -> date:
    """The UTC day that buckets a window's partition."""
    return moment.astimezone(UTC).date()


def hour_of(moment: datetime) -> datetime:
    """The UTC hour (its first instant) that buckets a pane's partition."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Statements:
    """Every CQL statement of the project, for one keyspace (``?`` are bind markers)."""

    keyspace: str = KEYSPACE

    def __post_init__(self) -> None:
        if not _KEYSPACE_NAME.match(self.keyspace):
            raise ValueError(f"invalid keyspace name: {self.keyspace!r}")

    def _t(self, table: str) -> str:
        return f"{self.keyspace}.{table}"

    # --- written by the job ------------------------------------------------------

    @property
    def upsert_city_window(self) -> str:
        return (f"INSERT INTO {self._t(CITY_WINDOWS)} (city, day, window_start, window_end,"
                " tweets, retweets, unique_users) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?")

    @property
    def upsert_city_topic_window(self) -> str:
        return (f"INSERT INTO {self._t(CITY_TOPIC_WINDOWS)} (city, topic, day, window_start,"
                " window_end, tweets, retweets, unique_users) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " USING TTL ?")

    @property
    def upsert_city(self) -> str:
        return (f"INSERT INTO {self._t(CITIES)} (bucket, city, last_seen) VALUES (?, ?, ?)"
                " USING TTL ?")

    @property
    def upsert_city_topic(self) -> str:
        return (f"INSERT INTO {self._t(CITY_TOPICS)} (city, topic, last_seen) VALUES (?, ?, ?)"
                " USING TTL ?")

    @property
    def upsert_city_hour(self) -> str:
        return (f"INSERT INTO {self._t(CITY_HOUR_WINDOWS)} (city, day, window_end, window_start,"
                " tweets, retweets, unique_users) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?")

    @property
    def insert_top_city(self) -> str:
        return (f"INSERT INTO {self._t(TOP_CITIES)} (metric, window_end, value, city)"
                " VALUES (?, ?, ?, ?) USING TTL ?")

    @property
    def delete_top_city(self) -> str:
        return (f"DELETE FROM {self._t(TOP_CITIES)}"
                " WHERE metric = ? AND window_end = ? AND value = ? AND city = ?")

    @property
    def upsert_city_pane(self) -> str:
        return (f"INSERT INTO {self._t(CITY_PANES)} (city, hour, pane_start, tweets, retweets,"
                " users) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?")

    @property
    def upsert_city_topic_pane(self) -> str:
        return (f"INSERT INTO {self._t(CITY_TOPIC_PANES)} (city, topic, hour, pane_start, tweets,"
                " retweets, users) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?")

    @property
    def upsert_progress(self) -> str:
        return (f"INSERT INTO {self._t(JOB_PROGRESS)} (job, query, batch_id, end_offsets,"
                " input_rows, bad_records, late_rows, watermark, config, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")

    @property
    def touch_progress(self) -> str:
        """An idle trigger (no new records): the job is alive, its offsets unchanged."""
        return (f"UPDATE {self._t(JOB_PROGRESS)} SET updated_at = ?, config = ?"
                " WHERE job = ? AND query = ?")

    # --- read by the job, the CLI and the dashboards -----------------------------

    @property
    def select_city_hours(self) -> str:
        """One city's hourly numbers for windows ending in [from, to] of one day."""
        return ("SELECT city, window_start, window_end, tweets, retweets, unique_users"
                f" FROM {self._t(CITY_HOUR_WINDOWS)}"
                " WHERE city = ? AND day = ? AND window_end >= ? AND window_end <= ?")

    @property
    def select_city_panes(self) -> str:
        """One city's panes starting in [from, to] of one hour partition."""
        return ("SELECT city, pane_start, tweets, retweets, users"
                f" FROM {self._t(CITY_PANES)}"
                " WHERE city = ? AND hour = ? AND pane_start >= ? AND pane_start <= ?")

    @property
    def select_city_topic_panes(self) -> str:
        """One city's and topic's panes starting in [from, to] of one hour partition."""
        return ("SELECT city, topic, pane_start, tweets, retweets, users"
                f" FROM {self._t(CITY_TOPIC_PANES)}"
                " WHERE city = ? AND topic = ? AND hour = ? AND pane_start >= ?"
                " AND pane_start <= ?")

    @property
    def select_city_windows(self) -> str:
        """One city's windows starting in [from, to) of one day."""
        return ("SELECT city, window_start, window_end, tweets, retweets, unique_users"
                f" FROM {self._t(CITY_WINDOWS)}"
                " WHERE city = ? AND day = ? AND window_start >= ? AND window_start < ?")

    @property
    def select_city_topic_windows(self) -> str:
        """One city's and topic's windows starting in [from, to) of one day."""
        return ("SELECT city, topic, window_start, window_end, tweets, retweets, unique_users"
                f" FROM {self._t(CITY_TOPIC_WINDOWS)}"
                " WHERE city = ? AND topic = ? AND day = ? AND window_start >= ?"
                " AND window_start < ?")

    @property
    def select_cities(self) -> str:
        return f"SELECT city, last_seen FROM {self._t(CITIES)} WHERE bucket = ?"

    @property
    def select_city_topics(self) -> str:
        return f"SELECT topic, last_seen FROM {self._t(CITY_TOPICS)} WHERE city = ?"

    @property
    def select_top_cities(self) -> str:
        """The leading cities of the hour ending at window_end, by one metric, in order."""
        return (f"SELECT city, value FROM {self._t(TOP_CITIES)}"
                " WHERE metric = ? AND window_end = ? LIMIT ?")

    # --- read by the dashboards (grafana/): several partitions in one statement ----
    # Grafana's Cassandra datasource sends one CQL text per panel, without bind
    # markers: grafana/generate.py fills these in with inline() and the dashboard's
    # variables and time macros. The first column is what the plugin groups rows by
    # (one series per value; one table, in the statement's order, for a constant).

    @property
    def select_city_names(self) -> str:
        """The cities seen, one column (the $city variable of the dashboards)."""
        return f"SELECT city FROM {self._t(CITIES)} WHERE bucket = ?"

    @property
    def select_topic_names(self) -> str:
        """The topics seen in the chosen cities, one column (the $topic variable)."""
        return f"SELECT topic FROM {self._t(CITY_TOPICS)} WHERE city IN ?"

    @property
    def select_windows_of_cities(self) -> str:
        """The windows of several cities starting in [from, to), over several days."""
        return ("SELECT city, window_start, tweets, retweets, unique_users"
                f" FROM {self._t(CITY_WINDOWS)}"
                " WHERE city IN ? AND day IN ? AND window_start >= ? AND window_start < ?")

    @property
    def select_windows_of_city_topics(self) -> str:
        """The windows of several cities and topics starting in [from, to), over several days."""
        return ("SELECT city, topic, window_start, tweets, retweets, unique_users"
                f" FROM {self._t(CITY_TOPIC_WINDOWS)}"
                " WHERE city IN ? AND topic IN ? AND day IN ? AND window_start >= ?"
                " AND window_start < ?")

    @property
    def select_leaderboard(self) -> str:
        """select_top_cities led by the metric: one result set, in the leaderboard's order."""
        return (f"SELECT metric, city, value FROM {self._t(TOP_CITIES)}"
                " WHERE metric = ? AND window_end = ? LIMIT ?")

    @property
    def select_progress(self) -> str:
        return ("SELECT query, batch_id, end_offsets, input_rows, bad_records, late_rows,"
                f" watermark, config, updated_at FROM {self._t(JOB_PROGRESS)} WHERE job = ?")

    # --- schema versions ----------------------------------------------------------

    @property
    def create_keyspace(self) -> str:
        # Replication is filled in by apply_schema (a map literal cannot be bound).
        return (f"CREATE KEYSPACE IF NOT EXISTS {self.keyspace} WITH replication ="
                " {replication}")

    @property
    def create_schema_versions(self) -> str:
        return (f"CREATE TABLE IF NOT EXISTS {self._t(SCHEMA_VERSIONS)} (scope text,"
                " version int, name text, checksum text, applied_at timestamp,"
                " PRIMARY KEY ((scope), version))")

    @property
    def select_schema_versions(self) -> str:
        return (f"SELECT version, name, checksum, applied_at FROM {self._t(SCHEMA_VERSIONS)}"
                " WHERE scope = ?")

    @property
    def insert_schema_version(self) -> str:
        return (f"INSERT INTO {self._t(SCHEMA_VERSIONS)} (scope, version, name, checksum,"
                " applied_at) VALUES (?, ?, ?, ?, ?)")

    def all(self) -> dict[str, str]:
        """Every statement by name (tests execute each one)."""
        return {name: getattr(self, name) for name, value in vars(type(self)).items()
                if isinstance(value, property)}


# --- statements for tools that cannot bind values (Grafana) ------------------------

# How many UTC days of a dashboard's time range are read: the newest
# DASHBOARD_DAYS days up to the range's end (days_of_range()). 31 days hold every
# window a 30-day retention keeps (the stream job's TTL), whatever the hour.
DASHBOARD_DAYS = 31


def inline(statement: str, *terms: str) -> str:
    """``statement`` with its bind markers replaced, in order, by CQL ``terms``.

    The terms are CQL as Grafana will send it after interpolation: literals,
    ``(...)`` lists for ``IN ?``, or functions of the time macros (days_of_range()).
    """
    parts = statement.split("?")
    if len(parts) - 1 != len(terms):
        raise ValueError(f"{len(parts) - 1} bind markers, {len(terms)} terms: {statement}")
    return parts[0] + "".join(term + part for term, part in zip(terms, parts[1:], strict=True))


def days_of_range(end_ms: str, days: int = DASHBOARD_DAYS) -> str:
    """The ``day`` partitions of a time range ending at ``end_ms`` (a term worth epoch
    milliseconds: the plugin's ``$__timeTo``) as a CQL list, newest first: the UTC day
    of ``end_ms`` and the ``days - 1`` days before it, so a range of up to ``days``
    days is read whole and a longer one shows its newest days.

    The bucketing of day_of(), computed by Cassandra (to_date() of the timestamp,
    minus whole days). The range's start bounds ``window_start`` in the statement;
    days before it hold no rows of it and cost a partition lookup each (a bloom
    filter check per SSTable: clamping them to the start day needs max(), which CQL
    has not, and its abs() emulation types the milliseconds as int).
    """
    return "(" + ", ".join(f"to_date((timestamp) {end_ms} - {n}d)" if n else
                           f"to_date((timestamp) {end_ms})" for n in range(days)) + ")"


def minute_of(moment_ms: str, minutes_before: int = 0) -> str:
    """The whole minute ``minutes_before`` minutes before ``moment_ms`` (a term worth
    epoch milliseconds), as a CQL timestamp term: a leaderboard's ``window_end``."""
    shifted = f"(timestamp) {moment_ms} - {minutes_before}m" if minutes_before else (
        f"(timestamp) {moment_ms}")
    return f"floor({shifted}, 1m)"


# --- migrations ------------------------------------------------------------------

SCHEMA_SCOPE = "schema"
_MIGRATION_FILE = re.compile(r"^(?P<version>\d{3})_(?P<name>[a-z0-9_]+)\.cql$")


class SchemaError(RuntimeError):
    """A migration cannot be applied, or an applied one was changed afterwards."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def statements(self, keyspace: str) -> list[str]:
        """The statements of the file, for ``keyspace``, without comments."""
        lines = [line.split("--", 1)[0] for line in self.text.splitlines()]
        body = "\n".join(lines).replace("{keyspace}", keyspace)
        return [" ".join(part.split()) for part in body.split(";") if part.strip()]


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations of ``directory`` in version order (versions 1, 2, ... without gaps)."""
    found = []
    for path in sorted(directory.glob("*.cql")):
        match = _MIGRATION_FILE.match(path.name)
        if match is None:
            raise SchemaError(f"migration file name is not NNN_name.cql: {path.name}")
        found.append(Migration(int(match["version"]), match["name"], path.read_text("utf-8")))
    if not found:
        raise SchemaError(f"no migrations in {directory} (is evilnet/cql/*.cql in the package?)")
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise SchemaError(f"migration versions must be 1, 2, 3, ... without gaps: {versions}")
    return found


def replication_map(datacenter: str, replication_factor: int) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", datacenter) or replication_factor < 1:
        raise SchemaError(f"invalid replication: {datacenter!r}: {replication_factor}")
    return f"{{'class': 'NetworkTopologyStrategy', '{datacenter}': {replication_factor}}}"


def apply_schema(session, keyspace: str = KEYSPACE, *, datacenter: str = "dc1",
                 replication_factor: int = 1, directory: Path = MIGRATIONS_DIR,
                 clock=lambda: datetime.now(UTC)) -> list[Migration]:
    """Create the keyspace if missing and apply the migrations not applied yet.

    Idempotent: every statement is ``IF NOT EXISTS``, and a version is recorded only
    after all its statements ran. An applied migration whose file changed since is
    refused. Returns the migrations applied by this call. (An existing keyspace's
    replication is left as it is: change it with ALTER KEYSPACE and a repair.)
    """
    cql = Statements(keyspace)
    session.execute(cql.create_keyspace.format(
        replication=replication_map(datacenter, replication_factor)))
    session.execute(cql.create_schema_versions)
    applied = {row.version: row for row in
               session.execute(session.prepare(cql.select_schema_versions), (SCHEMA_SCOPE,))}
    record = session.prepare(cql.insert_schema_version)
    done = []
    for migration in migrations(directory):
        if migration.version in applied:
            if applied[migration.version].checksum != migration.checksum:
                raise SchemaError(f"migration {migration.version:03d}_{migration.name} changed "
                                  "after it was applied: add a new migration instead")
            continue
        for statement in migration.statements(keyspace):
            session.execute(statement)
        session.execute(record, (SCHEMA_SCOPE, migration.version, migration.name,
                                 migration.checksum, clock()))
        done.append(migration)
    return done


_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS \S+?\.(?P<table>\w+)", re.IGNORECASE)


def expected_tables(directory: Path = MIGRATIONS_DIR) -> list[str]:
    """The tables the migrations create, and the table recording them."""
    tables = {SCHEMA_VERSIONS}
    for migration in migrations(directory):
        for statement in migration.statements(KEYSPACE):
            match = _CREATE_TABLE.match(statement)
            if match:
                tables.add(match["table"])
    return sorted(tables)


def schema_status(session, keyspace: str = KEYSPACE,
                  directory: Path = MIGRATIONS_DIR) -> dict:
    """What ``evilnet schema status`` reports (read-only): keyspace, tables, versions.

    ``up_to_date`` when the keyspace holds every table of the migrations and every
    migration is recorded, with the checksum of its file.
    """
    metadata = session.cluster.metadata.keyspaces.get(keyspace)
    wanted = expected_tables(directory)
    present = sorted(metadata.tables) if metadata else []
    known = migrations(directory)
    applied = {}
    if metadata and SCHEMA_VERSIONS in metadata.tables:
        cql = Statements(keyspace)
        applied = {row.version: row for row in session.execute(
            session.prepare(cql.select_schema_versions), (SCHEMA_SCOPE,))}
    changed = [m.version for m in known
               if m.version in applied and applied[m.version].checksum != m.checksum]
    missing = [table for table in wanted if table not in present]
    pending = [m.version for m in known if m.version not in applied]
    return {"keyspace": keyspace, "keyspace_present": metadata is not None,
            "tables_missing": missing,
            "tables_unexpected": [table for table in present if table not in wanted],
            "tables_present": [table for table in present if table in wanted],
            "versions_applied": sorted(applied), "versions_pending": pending,
            "versions_changed": changed,
            "up_to_date": metadata is not None and not missing and not pending and not changed}
