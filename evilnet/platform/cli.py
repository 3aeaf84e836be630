"""`evilnet stage`, `health …`, `status`, `topics` and `fidelity`."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import NoReturn

import click
from kafka.errors import KafkaError
from rich.console import Console
from rich.table import Table

from evilnet.contracts import DEAD_LETTER_TOPIC, TWEETS_TOPIC
from evilnet.planner import PlanError, read_plan
from evilnet.platform import health as checks
from evilnet.platform.fidelity import FORMATS
from evilnet.platform.fidelity import fidelity as fidelity_report
from evilnet.platform.fidelity import render as render_fidelity
from evilnet.platform.inventory import DEFAULT_ROLES, Inventory, InventoryError
from evilnet.platform.staging import StagingError, default_cache_dir
from evilnet.platform.staging import stage as stage_artifacts
from evilnet.platform.topics import (
    TopicError,
    describe_topics,
    ensure_topics,
    list_topics,
    pipeline_topics,
)
from evilnet.schema import KEYSPACE
from evilnet.waiting import poll_until

console = Console(stderr=True)


@click.command()
@click.option("--pins", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=Path("ansible/artifacts.yml"), show_default=True,
              help="Pinned artifacts to stage (relative to the current directory).")
@click.option("--project", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Path("."), show_default=True,
              help="The project's source tree, built into the wheel the hosts install.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache directory [default: $EVILNET_CACHE or ~/.cache/evilnet].")
def stage(pins: Path, project: Path, cache: Path | None) -> None:
    """Resolve, verify and cache the pinned artifacts the hosts install."""
    with console.status("staging artifacts") as spinner:
        def progress(message: str) -> None:
            spinner.update(f"staging: {message}")
            console.log(message)

        try:
            manifest = stage_artifacts(pins, project, cache or default_cache_dir(), progress)
        except StagingError as error:
            raise click.ClickException(str(error)) from error
    click.echo(manifest)


@click.group()
def health() -> None:
    """Wait until one service is healthy (used by the roles after every restart)."""


def _report(result: checks.Health) -> None:
    click.echo(result.detail)
    if not result.ok:
        sys.exit(1)


def _fail(message: str) -> NoReturn:
    """Nothing could be checked: one line, exit 2 (exit 1 means unhealthy)."""
    click.echo(f"evilnet health: {message}", err=True)
    sys.exit(2)


def _moment_option(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else _moment(value)


_wait = click.option("--wait", type=float, default=0, show_default=True,
                     help="Keep checking for this many seconds before giving up.")


@health.command("zookeeper")
@click.option("--node", "nodes", multiple=True, help="host:port, repeatable.")
@click.option("--ensemble", "ensemble_nodes", multiple=True,
              help="host:port of every ensemble member, repeatable. With --node: the node "
                   "must serve once a quorum could; alone: one leader, the rest followers.")
@_wait
def health_zookeeper(nodes: tuple[str, ...], ensemble_nodes: tuple[str, ...], wait: float) -> None:
    """ZooKeeper nodes serve requests, or the whole ensemble has one leader."""
    ensemble = [_host_port(node) for node in ensemble_nodes]
    if not nodes:
        if not ensemble:
            raise click.UsageError("give --node, --ensemble or both")
        _report(checks.wait_until_healthy(lambda: checks.zookeeper_ensemble(ensemble), wait))
        return
    for node in map(_host_port, nodes):
        if ensemble:
            check = partial(checks.zookeeper_node_in_ensemble, node, ensemble)
        else:
            check = partial(checks.zookeeper_node, *node)
        _report(checks.wait_until_healthy(check, wait))


@health.command("kafka")
@click.option("--bootstrap", required=True, help="host:port[,host:port…]")
@click.option("--broker-id", "broker_ids", type=int, multiple=True,
              help="A broker id that must be registered, repeatable.")
@click.option("--topic", "topics", multiple=True,
              help="Only check these topics for under-replicated partitions.")
@_wait
def health_kafka(bootstrap: str, broker_ids: tuple[int, ...], topics: tuple[str, ...],
                 wait: float) -> None:
    """Brokers registered and no under-replicated partitions."""
    expected = set(broker_ids) or None
    _report(checks.wait_until_healthy(
        lambda: checks.kafka_cluster(bootstrap, expected, list(topics) or None), wait))


@health.command("cassandra")
@click.option("--node", "nodes", multiple=True, required=True, help="host[:port], repeatable.")
@_wait
def health_cassandra(nodes: tuple[str, ...], wait: float) -> None:
    """The native port answers CQL."""
    for node in nodes:
        host, port = _host_port(node, default_port=9042)
        _report(checks.wait_until_healthy(lambda h=host, p=port: checks.cassandra_node(h, p), wait))


@health.command("spark")
@click.option("--master-ui", required=True, help="http://host:port of the master's web UI.")
@click.option("--worker", "workers", multiple=True, help="A worker host that must be ALIVE.")
@_wait
def health_spark(master_ui: str, workers: tuple[str, ...], wait: float) -> None:
    """The master is ALIVE and lists the workers ALIVE."""
    _report(checks.wait_until_healthy(
        lambda: checks.spark_cluster(master_ui, set(workers) or None), wait))


@health.command("producers")
@click.option("--plan", "plan_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="The plan directory or file, or a host's deployed.json.")
@click.option("--host", default=None, help="Only the shards of this inventory host.")
@click.option("--shard", "only_shards", multiple=True, help="Only these shards (repeatable).")
@click.option("--min-posts", default=0, show_default=True,
              help="Also wait until each shard received this many posts.")
@_wait
def health_producers(plan_path: Path, host: str | None, only_shards: tuple[str, ...],
                     min_posts: int, wait: float) -> None:
    """Every planned shard's metrics endpoint answers with its stream connected."""
    try:
        shards = read_plan(plan_path)["shards"]
    except PlanError as error:
        _fail(str(error))
    unknown = sorted(set(only_shards) - {s["name"] for s in shards})
    if unknown:
        _fail(f"no shard {', '.join(unknown)} in {plan_path}")
    shards = [s for s in shards if (host is None or s["host"] == host)
              and (not only_shards or s["name"] in only_shards)]

    def results() -> dict[str, checks.Health]:
        # Copies of one shard share its name: a line per producer copy.
        return {s.get("producer_id", s["name"]): checks.producer_shard(
            s["address"], s["metrics_port"], min_posts) for s in shards}

    _, final = poll_until(results, lambda found: all(h.ok for h in found.values()), wait)
    for name, result in final.items():
        click.echo(f"{name}: {'ok' if result.ok else 'UNHEALTHY'}: {result.detail}")
    if not all(result.ok for result in final.values()):
        sys.exit(1)


@health.command("stream-job")
@click.option("--job", default="stream-job", show_default=True, help="The job's job_name.")
@click.option("--hosts", required=True, help="Cassandra contact points, host[,host…].")
@click.option("--port", type=int, default=9042, show_default=True, help="Cassandra's CQL port.")
@click.option("--keyspace", default=KEYSPACE, show_default=True)
@click.option("--newer-than", type=_moment_option, default=None,
              help="Only count progress recorded after this time (e.g. a restart).")
@click.option("--max-age", type=click.FloatRange(min=0), default=None,
              help="Only count progress at most this many seconds old.")
@_wait
def health_stream_job(job: str, hosts: str, port: int, keyspace: str,
                      newer_than: datetime | None, max_age: float | None, wait: float) -> None:
    """Every query of the job recorded a micro-batch (the role's check after a start)."""
    _report(checks.wait_until_healthy(lambda: checks.stream_job(
        hosts.split(","), port, keyspace, job, max_age, newer_than), wait))


@click.command()
@click.option("-i", "--inventory", "inventory_path", type=click.Path(exists=True, path_type=Path),
              default=Path("inventories/local"), show_default=True)
@click.option("--roles", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_ROLES, show_default=True,
              help="The Ansible roles whose defaults fill in what the inventory does not set.")
def status(inventory_path: Path, roles: Path) -> None:
    """Print the health of every service of an inventory as a table."""
    try:
        inventory = Inventory.load(inventory_path, roles=roles)
        services = list(inventory.health_checks())
    except InventoryError as error:
        raise click.ClickException(str(error)) from error
    table = Table(title=f"EvilNet services ({inventory_path})")
    for column in ("service", "endpoint", "healthy", "detail"):
        table.add_column(column)
    all_ok = True
    try:
        producers = list(inventory.producer_checks())
    except InventoryError as error:
        producers = [("producers", "deployed.json", partial(checks.Health, False, str(error)))]
    for service, endpoint, result in checks.run_checks([*services, *producers]):
        all_ok &= result.ok
        table.add_row(service, endpoint, "[green]yes[/]" if result.ok else "[red]no[/]",
                      result.detail)
    # Wide enough for the details when piped (make, CI logs), not squeezed to 80 columns.
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    if not all_ok:
        sys.exit(1)


def _host_port(value: str, default_port: int | None = None) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host:
        if default_port is None:
            raise click.BadParameter(f"{value!r} is not host:port")
        return value, default_port
    return host, int(port)


@click.group()
def topics() -> None:
    """The pipeline's Kafka topics."""


@topics.command("ensure")
@click.option("--bootstrap", required=True, help="host:port[,host:port…]")
@click.option("--replication-factor", type=click.IntRange(1), required=True)
@click.option("--min-insync-replicas", type=click.IntRange(1), required=True)
@click.option("--tweets-partitions", type=click.IntRange(1), required=True)
@click.option("--tweets-retention-ms", type=click.IntRange(60_000), required=True)
@click.option("--dead-letter-partitions", type=click.IntRange(1), required=True)
@click.option("--dead-letter-retention-ms", type=click.IntRange(60_000), required=True)
def topics_ensure(bootstrap: str, replication_factor: int, min_insync_replicas: int,
                  tweets_partitions: int, tweets_retention_ms: int,
                  dead_letter_partitions: int, dead_letter_retention_ms: int) -> None:
    """Create the topics, or bring them to these settings. Prints one line per change."""
    if min_insync_replicas > replication_factor:
        raise click.BadParameter("cannot exceed --replication-factor",
                                 param_hint="--min-insync-replicas")
    specs = pipeline_topics(replication_factor, min_insync_replicas, tweets_partitions,
                            tweets_retention_ms, dead_letter_partitions, dead_letter_retention_ms)
    try:
        changes = ensure_topics(bootstrap, specs)
    except TopicError as error:
        raise click.ClickException(str(error)) from error
    for change in changes:
        click.echo(f"changed: {change}")
    if not changes:
        click.echo("unchanged")


@topics.command("list")
@click.option("--bootstrap", required=True, help="host:port[,host:port…]")
def topics_list(bootstrap: str) -> None:
    """The cluster's topics, one per line (read-only)."""
    for name in list_topics(bootstrap.split(",")):
        click.echo(name)


@topics.command("describe")
@click.argument("names", metavar="[TOPIC]...", nargs=-1)
@click.option("--bootstrap", required=True, help="host:port[,host:port…]")
@click.option("--hosts", required=True, help="Cassandra contact points, host[,host…].")
@click.option("--port", type=int, default=9042, show_default=True, help="Cassandra's CQL port.")
@click.option("--keyspace", default=KEYSPACE, show_default=True)
@click.option("--job", default="stream-job", show_default=True,
              help="The stream job whose consumer lag to show (its job_progress rows).")
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def topics_describe(names: tuple[str, ...], bootstrap: str, hosts: str, port: int,
                    keyspace: str, job: str, output: str) -> None:
    """Partitions, replicas, ISR, retention and the job's lag per partition (read-only).

    The lag is the partition's log end offset minus the offset the job's slowest
    query has consumed up to (its last micro-batch); ``-`` where the job reads
    another topic or has recorded nothing. [default TOPIC: every pipeline topic]
    """
    from evilnet.spark.store import CassandraStore, connect

    cluster, session = connect(hosts.split(","), port)
    try:
        progress = CassandraStore(session, keyspace).progress(job)
    finally:
        cluster.shutdown()
    job_offsets: dict[str, dict[int, int]] = {}
    if progress:
        job_topic = json.loads(next(iter(progress.values())).config).get("topic")
        per_query = [dict(row.end_offsets or {}) for row in progress.values()]
        job_offsets[job_topic] = {p: min(o.get(p, 0) for o in per_query)
                                  for p in set().union(*per_query)}
    try:
        states = describe_topics(bootstrap.split(","),
                                 list(names) or [TWEETS_TOPIC, DEAD_LETTER_TOPIC], job_offsets)
    except TopicError as error:
        raise click.ClickException(str(error)) from error
    if output == "json":
        click.echo(json.dumps([state.to_json() for state in states]))
        return
    for state in states:
        table = Table(title=f"{state.name}: retention.ms {state.retention_ms}, "
                            f"min.insync.replicas {state.min_insync_replicas}, "
                            f"{state.under_replicated} under-replicated", title_justify="left")
        for column in ("partition", "leader", "replicas", "isr", "log end", f"lag ({job})"):
            table.add_column(column, justify="right")
        for p in state.partitions:
            table.add_row(str(p.partition), str(p.leader), ",".join(map(str, p.replicas)),
                          ",".join(map(str, p.isr)), str(p.log_end_offset),
                          "-" if p.job_lag is None else str(p.job_lag))
        Console().print(table)


def _moment(value: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command("fidelity")
@click.option("--from", "start", required=True, help="Posts created at or after (ISO 8601).")
@click.option("--to", "end", required=True, help="Posts created before (ISO 8601).")
@click.option("--format", "form", type=click.Choice(FORMATS), default="table",
              show_default=True)
@click.option("--bootstrap", default=None,
              help="Kafka host:port[,…] [default: the inventory's brokers].")
@click.option("-i", "--inventory", "inventory_path", type=click.Path(exists=True, path_type=Path),
              default=Path("inventories/local"), show_default=True)
@click.option("--roles", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_ROLES, show_default=True)
@click.option("--topic", default=TWEETS_TOPIC, show_default=True)
@click.option("--grace", type=click.FloatRange(0), default=300, show_default=True,
              help="Seconds of deliveries read beyond both ends (late posts count).")
def fidelity(start: str, end: str, form: str, bootstrap: str | None, inventory_path: Path,
             roles: Path, topic: str, grace: float) -> None:
    """Per shard and producer: posts received and missed, recall, delivery delay."""
    window = (_moment(start), _moment(end))
    if window[0] >= window[1]:
        raise click.BadParameter("must be later than --from", param_hint="--to")
    try:
        servers = bootstrap or Inventory.load(inventory_path, roles=roles).kafka_bootstrap()
        rows = fidelity_report(servers, topic, *window, grace=timedelta(seconds=grace))
    except (InventoryError, ValueError, TimeoutError, KafkaError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(render_fidelity(rows, form))
