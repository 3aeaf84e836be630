"""``evilnet schema apply``, ``evilnet query windows|top`` and ``evilnet check``."""

from __future__ import annotations

import csv
import json
import sys
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from evilnet.cassandra_clients import ADMIN, READER, CassandraSecurity, Role
from evilnet.cities import canonical_cities
from evilnet.contracts import TWEETS_TOPIC
from evilnet.locations import (
    Endpoint,
    cassandra_login,
    cassandra_login_option,
    cassandra_option,
    kafka_login,
    kafka_option,
    keyspace_option,
    same_port,
)
from evilnet.schema import (
    KEYSPACE,
    METRICS,
    WINDOW_COLUMNS,
    SchemaError,
    apply_schema,
)

console = Console(stderr=True)

# Where the tables are: the inventory's, unless given (evilnet.locations); and, for a
# secured cluster, the login: the inventory's (its secret files) unless a file is given.


def _cassandra(command):
    return cassandra_option()(cassandra_login_option(command))


_keyspace = keyspace_option(fallback=KEYSPACE)


def _moment(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class _Moment(click.ParamType):
    name = "ISO-8601"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        try:
            return _moment(value)
        except ValueError:
            self.fail(f"not an ISO 8601 time: {value!r}", param, ctx)


class _ShiftTo(_Moment):
    """``auto`` (evilnet.spark.check.placement), ``now`` (the time of the run), ``none``
    (no shift) or an ISO 8601 time."""

    name = "auto|now|none|ISO-8601"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.lower() == "auto":
            return "auto"
        if isinstance(value, str) and value.lower() in ("now", "none"):
            return datetime.now(UTC) if value.lower() == "now" else None
        return super().convert(value, param, ctx)


@contextmanager
def _store(cassandra: tuple[Endpoint, ...], keyspace: str, role: Role = READER):
    """The tables, read (``role`` READER, the default) or changed (ADMIN: the schema)
    with the command's login."""
    from evilnet.spark.store import CassandraStore, connect

    security = cassandra_login(role, CassandraSecurity.from_cqlshrc)
    cluster, session = connect(*same_port(cassandra), security=security)
    try:
        yield CassandraStore(session, keyspace)
    finally:
        cluster.shutdown()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- schema -------------------------------------------------------------------------

@click.group()
def schema() -> None:
    """The Cassandra schema (versioned migrations in evilnet/cql/)."""


@schema.command("apply")
@_cassandra
@_keyspace
@click.option("--datacenter", default="dc1", show_default=True,
              help="Data center of the keyspace's NetworkTopologyStrategy (new keyspace only).")
@click.option("--replication-factor", default=1, show_default=True, type=click.IntRange(1),
              help="Replicas in that data center (new keyspace only).")
def schema_apply(cassandra: tuple[Endpoint, ...], keyspace: str, datacenter: str,
                 replication_factor: int) -> None:
    """Create the keyspace and apply the migrations not applied yet (idempotent).

    Prints one JSON line: the versions applied now, and all versions applied.
    """
    from evilnet.schema import migrations

    with _store(cassandra, keyspace, ADMIN) as store:
        try:
            applied = apply_schema(store.session, keyspace, datacenter=datacenter,
                                   replication_factor=replication_factor)
        except SchemaError as error:
            click.echo(f"evilnet schema apply: {error}", err=True)
            sys.exit(1)
    click.echo(json.dumps({"keyspace": keyspace,
                           "applied": [m.version for m in applied],
                           "versions": [m.version for m in migrations()],
                           "changed": bool(applied)}))


@schema.command("status")
@_cassandra
@_keyspace
def schema_status(cassandra: tuple[Endpoint, ...], keyspace: str) -> None:
    """Is the keyspace there, with every table and migration of evilnet/cql/? (read-only)

    Prints one JSON object; exit status 1 if anything is missing or pending
    (`evilnet schema apply` brings it up to date).
    """
    from evilnet.schema import schema_status as read_status

    with _store(cassandra, keyspace) as store:
        status = read_status(store.session, keyspace)
    click.echo(json.dumps(status))
    sys.exit(0 if status["up_to_date"] else 1)


# --- query --------------------------------------------------------------------------

@click.group()
def query() -> None:
    """Read the job's results (the same CQL the dashboards run)."""


@query.command("windows")
@click.option("--from", "start", required=True, type=_Moment(),
              help="Windows starting at or after this time.")
@click.option("--to", "end", required=True, type=_Moment(), help="...and before this time.")
@click.option("--city", "cities", multiple=True, help="A city (repeatable) [default: every city].")
@click.option("--by", type=click.Choice(["city", "city,topic"]), default="city", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@_cassandra
@_keyspace
def query_windows(start: datetime, end: datetime, cities: tuple[str, ...], by: str, fmt: str,
                  cassandra: tuple[Endpoint, ...], keyspace: str) -> None:
    """One row per city (and topic) and window starting in [--from, --to)."""
    if end <= start:
        raise click.BadParameter("--to must be after --from", param_hint="--to")
    with _store(cassandra, keyspace) as store:
        chosen = canonical_cities(cities) if cities else store.cities()
        rows = store.read_windows(chosen, start, end, by_topic=by == "city,topic")
    records = [{"city": r.city, "topic": r.topic or "", "window_start": _iso(r.window_start),
                "window_end": _iso(r.window_end), "tweets": r.tweets, "retweets": r.retweets,
                "unique_users": r.unique_users} for r in rows]
    _print(records, list(WINDOW_COLUMNS), fmt, title=f"windows by {by}")


@query.command("top")
@click.option("--metric", required=True, type=click.Choice(list(METRICS)))
@click.option("--limit", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option("--at", type=_Moment(), default=None,
              help="The hour ending at this minute [default: the latest with data, from now].")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@_cassandra
@_keyspace
def query_top(metric: str, limit: int, at: datetime | None, fmt: str,
              cassandra: tuple[Endpoint, ...], keyspace: str) -> None:
    """The top cities by METRIC over the last 60 minutes, in order.

    Reads the leaderboard of the hour ending at the minute of --at; without --at,
    of the current minute, or of the latest of the 5 before it that has entries
    (the job writes a minute's leaderboard on its next trigger).
    """
    now = (at or datetime.now(UTC)).replace(second=0, microsecond=0)
    candidates = [now] if at else [now - timedelta(minutes=n) for n in range(6)]
    with _store(cassandra, keyspace) as store:
        for window_end in candidates:
            leaders = store.top_cities(metric, window_end, limit)
            if leaders:
                break
    records = [{"rank": rank, "city": city, metric: value, "window_end": _iso(window_end)}
               for rank, (city, value) in enumerate(leaders, start=1)]
    _print(records, ["rank", "city", metric, "window_end"], fmt,
           title=f"top cities by {metric}, hour ending {_iso(window_end)}")


@query.command("progress")
@click.option("--job", default="stream-job", show_default=True, help="The job's job_name.")
@_cassandra
@_keyspace
def query_progress(job: str, cassandra: tuple[Endpoint, ...], keyspace: str) -> None:
    """The job's last micro-batch per query, as JSON (its health: `evilnet health stream-job`)."""
    with _store(cassandra, keyspace) as store:
        rows = store.progress(job)
    records = [{"query": q, "batch_id": r.batch_id, "input_rows": r.input_rows,
                "bad_records": r.bad_records, "late_rows": r.late_rows,
                "watermark": _iso(r.watermark.replace(tzinfo=UTC)) if r.watermark else "",
                "updated_at": _iso(r.updated_at.replace(tzinfo=UTC)) if r.updated_at else "",
                "offsets": sum((r.end_offsets or {}).values())} for q, r in sorted(rows.items())]
    click.echo(json.dumps({"job": job, "queries": records}))


def _print(records: list[dict], columns: list[str], fmt: str, title: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(records, ensure_ascii=False))
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    else:
        # Fits 80 columns: a window is one cell, its day in the title when all share
        # it; a cell too wide for the terminal folds over lines, never cut.
        shown, rows = columns, [[str(record[c]) for c in columns] for record in records]
        if {"window_start", "window_end"} <= set(columns):
            shown, rows, day = _one_window_column(columns, rows)
            title = f"{title}, {day}" if day else title
        table = Table(title=title)
        for column in shown:
            table.add_column(column, justify="right" if column in METRICS else "left",
                             overflow="fold")
        for row in rows:
            table.add_row(*row)
        Console().print(table)


def _one_window_column(columns: list[str], rows: list[list[str]]
                       ) -> tuple[list[str], list[list[str]], str | None]:
    """window_start and window_end as one ``09:00-09:05`` column (UTC); the day they
    share, or each row's own day when they differ."""
    start, end = columns.index("window_start"), columns.index("window_end")
    moments = [(datetime.fromisoformat(row[start]), datetime.fromisoformat(row[end]))
               for row in rows]
    days = {moment.date() for pair in moments for moment in pair}
    shared = days.pop().isoformat() if len(days) == 1 else None
    form = "%H:%M" if shared else "%m-%d %H:%M"
    shown = [c for c in columns if c != "window_end"]
    shown[start] = "window (UTC)"
    out = []
    for row, (first, last) in zip(rows, moments, strict=True):
        cells = list(row)
        cells[start] = f"{first.strftime(form)}-{last.strftime(form)}"
        del cells[end]
        out.append(cells)
    return shown, out, shared


# --- check --------------------------------------------------------------------------

@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@kafka_option()
@click.option("--topic", default=TWEETS_TOPIC, show_default=True, help="The job's topic.")
@click.option("--job", default="stream-job", show_default=True, help="The job's job_name.")
@click.option("--shift-to", default="auto", show_default=True, type=_ShiftTo(),
              help="Move the posts in time so the first is at this ISO time, 'now', or "
                   "'none'; 'auto': the latest minutes the live producers no longer write to.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Replay at this many lines per second [default: as fast as possible].")
@click.option("--timeout", default=600.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds to wait for the job to catch up.")
@_cassandra
@_keyspace
def check(file: Path, bootstrap_servers: tuple[Endpoint, ...], topic: str, job: str,
          shift_to: datetime | None, rate: float | None, timeout: float,
          cassandra: tuple[Endpoint, ...], keyspace: str) -> None:
    """Replay FILE through the running pipeline and compare the job's tables with a reference.

    Exit status 0 if every window row (per city, per city and topic, per city and
    hour) equals the plain-Python reference, 1 if not (the differing rows are
    printed), 2 if the check could not finish (no job, timeout, no valid post).
    Windows that other posts (live producers) also reach are left out ("skipped").
    """
    from evilnet.spark.check import CheckError, run_check

    target = shift_to
    servers = [str(server) for server in bootstrap_servers]
    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total} records"), TimeElapsedColumn())
    with _store(cassandra, keyspace) as store, Progress(*columns, console=console,
                                                        transient=True) as bar:
        task = bar.add_task(f"job {job} consuming {file.name}", total=None)
        try:
            result = run_check(file, store=store, bootstrap_servers=servers, topic=topic,
                               job=job, shift_to=target, timeout=timeout, rate=rate,
                               on_progress=lambda done, total: bar.update(
                                   task, completed=done, total=total),
                               security=kafka_login())
        except CheckError as error:
            click.echo(f"evilnet check: {error}", err=True)
            sys.exit(2)
    differences = result.comparison.differences()
    summary = {"posts": len(result.posts), "records": result.records,
               "shift_seconds": result.shift.total_seconds(),
               "caught_up_seconds": round(result.caught_up_seconds, 1),
               "rows": {view: len(frame) for view, frame in result.comparison.expected.items()},
               "skipped": result.comparison.skipped,
               "equal": not differences}
    for view, account in differences.items():
        click.echo(f"--- {view}: the job's rows differ from the reference\n{account}", err=True)
    click.echo(json.dumps(summary, ensure_ascii=False))
    sys.exit(1 if differences else 0)


# --- locate -------------------------------------------------------------------------

@click.command()
def locate() -> None:
    """Where this host's environment keeps the stream job and SPARK_HOME (JSON).

    Asked by the spark and stream_job roles: ``stream_job`` is the installed job
    file, ``spark_home`` the installed pyspark package (null where pyspark is not
    installed), and ``code_digest`` the sha256 of the installed evilnet's file list
    (its RECORD holds every file's hash), so that new code restarts the job.
    """
    import hashlib
    from importlib import metadata, util

    pyspark = util.find_spec("pyspark")
    record = metadata.distribution("evilnet").read_text("RECORD") or ""
    click.echo(json.dumps({
        "stream_job": util.find_spec("evilnet.spark.job").origin,
        "spark_home": str(Path(pyspark.origin).parent) if pyspark else None,
        "code_digest": hashlib.sha256(record.encode()).hexdigest(),
    }))
