"""`evilnet stage`, `health …`, `status`, `topics` and `fidelity`."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import NoReturn

import click
from click.core import ParameterSource
from rich.console import Console
from rich.table import Table

from evilnet.cassandra_clients import (
    ADMIN,
    KEYSPACE_PERMISSIONS,
    READER,
    CassandraSecurity,
    LoginFileError,
    Role,
)
from evilnet.contracts import DEAD_LETTER_TOPIC, TWEETS_TOPIC
from evilnet.kafka_clients import STREAM_JOB_GROUP_PREFIX, ClientConfigError, security_kwargs
from evilnet.locations import (
    ZOOKEEPER_PORT,
    Endpoint,
    Endpoints,
    LocationError,
    Stack,
    cassandra_login,
    cassandra_login_option,
    cassandra_option,
    inventory_options,
    kafka_login,
    kafka_option,
    keyspace_option,
    same_port,
    spark_master_option,
    zookeeper_option,
)
from evilnet.metrics_endpoint import SCRAPE_USER
from evilnet.planner import PlanError, read_plan
from evilnet.platform import health as checks
from evilnet.platform.acls import AclError, ensure_acls, pipeline_grants
from evilnet.platform.cassandra_roles import RolesError, ensure_roles, ensure_superuser
from evilnet.platform.fidelity import FORMATS
from evilnet.platform.fidelity import fidelity as fidelity_report
from evilnet.platform.fidelity import render as render_fidelity
from evilnet.platform.inventory import Inventory, InventoryError, deployed_shards
from evilnet.platform.staging import StagingError, default_cache_dir
from evilnet.platform.staging import stage as stage_artifacts
from evilnet.platform.topics import (
    TopicError,
    describe_topics,
    ensure_topics,
    list_topics,
    pipeline_topics,
)
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
@click.option("--debian", is_flag=True,
              help="Also stage the pins' Debian packages as signed apt repositories, for "
                   "hosts that install them (evilnet_manage_packages); needs a Debian 12 "
                   "controller with a current apt package list.")
def stage(pins: Path, project: Path, cache: Path | None, debian: bool) -> None:
    """Resolve, verify and cache the pinned artifacts the hosts install."""
    with console.status("staging artifacts") as spinner:
        def progress(message: str) -> None:
            spinner.update(f"staging: {message}")
            console.log(message)

        try:
            manifest = stage_artifacts(pins, project, cache or default_cache_dir(), progress,
                                       debian=debian)
        except StagingError as error:
            raise click.ClickException(str(error)) from error
    click.echo(manifest)


@click.group()
def health() -> None:
    """Wait until one service is healthy (used by the roles after every restart).

    Exit status 0 healthy, 1 unhealthy (or unreachable), 2 could not check.
    """


_format = click.option("--format", "output", type=click.Choice(["table", "json"]),
                       default="table", show_default=True,
                       help="json: one object per checked target, a list.")


def _report(results: dict[str, checks.Health], output: str, *, labelled: bool = True) -> None:
    """Print the results (one line each, or JSON); exit 1 if any is unhealthy."""
    if output == "json":
        click.echo(json.dumps([{"target": target, "ok": result.ok, "detail": result.detail}
                               for target, result in results.items()], ensure_ascii=False))
    else:
        for target, result in results.items():
            click.echo(f"{target}: {'ok' if result.ok else 'UNHEALTHY'}: {result.detail}"
                       if labelled else result.detail)
    if not all(result.ok for result in results.values()):
        sys.exit(1)


def _fail(message: str) -> NoReturn:
    """Nothing could be checked: one line, exit 2 (exit 1 means unhealthy)."""
    raise click.ClickException(message)


def _moment_option(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else _moment(value)


_wait = click.option("--wait", type=float, default=0, show_default=True,
                     help="Keep checking for this many seconds before giving up.")

# A secured Kafka (SASL_SSL): the client properties file holding the principal's
# password (0600; the kafka role renders the admin's on every broker). Its path, never
# the password, is on the command line.
_kafka_client_config = click.option(
    "--kafka-client-config", "client_config", envvar="EVILNET_KAFKA_CLIENT_CONFIG",
    show_envvar=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None, help="Kafka client properties (SASL_SSL, SCRAM-SHA-512, a PEM "
                       "truststore) to connect with [default: plaintext].")


def _from_inventory(parameter: str) -> Inventory | None:
    """The inventory whose service the command asks, when ``parameter`` (its
    location) came from it: then its credentials are the controller's files too."""
    ctx = click.get_current_context()
    stack = ctx.find_object(Stack)
    if (stack is None or stack.inventory is None
            or ctx.get_parameter_source(parameter) != ParameterSource.DEFAULT):
        return None
    return Inventory.load(stack.inventory, roles=stack.roles)


def _kafka_security(client_config: Path | None) -> dict[str, str]:
    """kafka-python's security settings: the given client properties file's, else the
    inventory's login when the brokers are the inventory's, else none."""
    try:
        return security_kwargs(client_config) if client_config else kafka_login()
    except ClientConfigError as error:
        raise click.BadParameter(str(error), param_hint="--kafka-client-config") from None


def _tls_file_option(kind: str, help_text: str):
    return click.option(f"--tls-{kind}", f"tls_{kind}",
                        envvar=f"EVILNET_ZOOKEEPER_TLS_{kind.upper()}", show_envvar=True,
                        default=None, help=help_text,
                        type=click.Path(exists=True, dir_okay=False, path_type=Path))


def _zookeeper_tls(ca: Path | None, cert: Path | None, key: Path | None) -> checks.ClientTls | None:
    given = [value for value in (ca, cert, key) if value is not None]
    if not given:
        # The inventory's ensemble: the controller's certificate, where it needs one.
        inventory = _from_inventory("zookeeper")
        return inventory.zookeeper_tls() if inventory else None
    if len(given) != 3:
        raise click.UsageError("--tls-ca, --tls-cert and --tls-key go together")
    return checks.ClientTls(str(ca), str(cert), str(key))


def _zookeeper_tls_options(command):
    for kind, help_text in (
            ("key", "Its private key (PEM)."),
            ("cert", "The client certificate to present (PEM)."),
            ("ca", "A secure client port (TLS): the CA bundle to verify the nodes with "
                   "(with --tls-cert and --tls-key).")):
        command = _tls_file_option(kind, help_text)(command)
    return command


@health.command("zookeeper")
@click.option("--node", "nodes", type=Endpoints(ZOOKEEPER_PORT), multiple=True,
              help="Check only this member, host[:port] (repeatable): it must serve once "
                   "a quorum could. Without it: one leader, the rest followers.")
@zookeeper_option()
@_zookeeper_tls_options
@_wait
@_format
def health_zookeeper(nodes: tuple[tuple[Endpoint, ...], ...], zookeeper: tuple[Endpoint, ...],
                     tls_ca: Path | None, tls_cert: Path | None, tls_key: Path | None,
                     wait: float, output: str) -> None:
    """ZooKeeper members serve requests, or the whole ensemble has one leader."""
    tls = _zookeeper_tls(tls_ca, tls_cert, tls_key)
    ensemble = [(member.host, member.port) for member in zookeeper]
    members = [member for group in nodes for member in group]
    if not members:
        _report({"ensemble": checks.wait_until_healthy(
            lambda: checks.zookeeper_ensemble(ensemble, tls), wait)}, output, labelled=False)
        return
    _report({str(member): checks.wait_until_healthy(
        partial(checks.zookeeper_node_in_ensemble, (member.host, member.port), ensemble, tls),
        wait) for member in members}, output, labelled=False)


@health.command("kafka")
@kafka_option()
@click.option("--broker-id", "broker_ids", type=int, multiple=True,
              help="A broker id that must be registered, repeatable.")
@click.option("--topic", "topics", multiple=True,
              help="Only check these topics for under-replicated partitions.")
@_kafka_client_config
@_wait
@_format
def health_kafka(bootstrap_servers: tuple[Endpoint, ...], broker_ids: tuple[int, ...],
                 topics: tuple[str, ...], client_config: Path | None, wait: float,
                 output: str) -> None:
    """Brokers registered and no under-replicated partitions."""
    expected = set(broker_ids) or None
    bootstrap = ",".join(map(str, bootstrap_servers))
    security = _kafka_security(client_config)
    _report({bootstrap: checks.wait_until_healthy(
        lambda: checks.kafka_cluster(bootstrap, expected, list(topics) or None, security),
        wait)}, output, labelled=False)


def _cassandra_security(role: Role = READER) -> CassandraSecurity | None:
    """The login to a secured Cassandra: the --cassandra-login file's, else the
    inventory's as ``role`` where the nodes are the inventory's, else none."""
    return cassandra_login(role, CassandraSecurity.from_cqlshrc)


@health.command("cassandra")
@cassandra_option()
@cassandra_login_option
@click.option("--refused-login-serves", is_flag=True,
              help="A node that completes the TLS handshake but refuses the login counts "
                   "as serving CQL (the role's restarts: a new cluster has no roles yet).")
@_wait
@_format
def health_cassandra(cassandra: tuple[Endpoint, ...], refused_login_serves: bool, wait: float,
                     output: str) -> None:
    """Each node's native port answers CQL (over TLS, logged in, where it is secured)."""
    security = _cassandra_security()
    _report({str(node): checks.wait_until_healthy(
        partial(checks.cassandra_node, node.host, node.port, security, refused_login_serves),
        wait) for node in cassandra}, output, labelled=False)


@health.command("spark")
@spark_master_option()
@click.option("--worker", "workers", multiple=True,
              help="A worker host that must be ALIVE [default: the inventory's workers, "
                   "with the inventory's master].")
@click.option("--ca", "cafile", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An https UI (spark_security_enabled): the CA bundle to verify it with "
                   "[default: the inventory's, with the inventory's master].")
@_wait
@_format
def health_spark(spark_master: str, workers: tuple[str, ...], cafile: Path | None, wait: float,
                 output: str) -> None:
    """The master is ALIVE and lists the workers ALIVE."""
    ctx = click.get_current_context()
    if not workers and ctx.get_parameter_source("spark_master") == ParameterSource.DEFAULT:
        workers = ctx.find_object(Stack).locations().spark_workers
    if cafile is None and (inventory := _from_inventory("spark_master")) is not None:
        cafile = inventory.spark_ui_cafile()
    _report({spark_master: checks.wait_until_healthy(
        lambda: checks.spark_cluster(spark_master, set(workers) or None,
                                     str(cafile) if cafile else None), wait)},
        output, labelled=False)


@health.command("producers")
@click.option("--plan", "plan_path", type=click.Path(exists=True, path_type=Path),
              envvar="EVILNET_PLAN", show_envvar=True,
              help="The plan directory or file, or a host's deployed.json [default: what "
                   "the inventory's producer hosts run].")
@click.option("--host", default=None, help="Only the shards of this inventory host.")
@click.option("--shard", "only_shards", multiple=True, help="Only these shards (repeatable).")
@click.option("--min-posts", default=0, show_default=True,
              help="Also wait until each shard received this many posts.")
@click.option("--metrics-ca", "metrics_cafile", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Secured metrics: the CA bundle to verify the shards' HTTPS with; the "
                   "scrape password comes on stdin (--metrics-password-stdin) [default: "
                   "the inventory's login where its metrics are secured].")
@click.option("--metrics-password-stdin", is_flag=True,
              help="Read Prometheus's scrape password from stdin (with --metrics-ca).")
@_wait
@_format
def health_producers(plan_path: Path | None, host: str | None, only_shards: tuple[str, ...],
                     min_posts: int, metrics_cafile: Path | None, metrics_password_stdin: bool,
                     wait: float, output: str) -> None:
    """Every planned shard's metrics endpoint answers with its stream connected."""
    if metrics_password_stdin != (metrics_cafile is not None):
        raise click.UsageError("--metrics-ca and --metrics-password-stdin go together")
    try:
        if plan_path is not None:
            shards = read_plan(plan_path)["shards"]
        else:
            shards = deployed_shards(_inventory().path)
            plan_path = Path("the producer hosts' deployed.json")
    except (PlanError, InventoryError) as error:
        _fail(str(error))
    unknown = sorted(set(only_shards) - {s["name"] for s in shards})
    if unknown:
        _fail(f"no shard {', '.join(unknown)} in {plan_path}")
    shards = [s for s in shards if (host is None or s["host"] == host)
              and (not only_shards or s["name"] in only_shards)]
    try:
        # A plan's shards run on the inventory's hosts, behind its metrics login.
        login = (checks.WebLogin(SCRAPE_USER, sys.stdin.readline().strip(), str(metrics_cafile))
                 if metrics_cafile is not None else _inventory().metrics_login())
    except (InventoryError, LocationError) as error:
        _fail(str(error))

    def results() -> dict[str, checks.Health]:
        # Copies of one shard share its name: a line per producer copy.
        return {s.get("producer_id", s["name"]): checks.producer_shard(
            s["address"], s["metrics_port"], min_posts, login) for s in shards}

    _, final = poll_until(results, lambda found: all(h.ok for h in found.values()), wait)
    _report(final, output)


@health.command("stream-job")
@click.option("--job", default="stream-job", show_default=True, help="The job's job_name.")
@cassandra_option()
@cassandra_login_option
@keyspace_option()
@click.option("--newer-than", type=_moment_option, default=None,
              help="Only count progress recorded after this time (e.g. a restart).")
@click.option("--max-age", type=click.FloatRange(min=0), default=None,
              help="Only count progress at most this many seconds old.")
@_wait
@_format
def health_stream_job(job: str, cassandra: tuple[Endpoint, ...], keyspace: str,
                      newer_than: datetime | None, max_age: float | None, wait: float,
                      output: str) -> None:
    """Every query of the job recorded a micro-batch (the role's check after a start)."""
    hosts, port = same_port(cassandra)
    security = _cassandra_security()
    _report({job: checks.wait_until_healthy(lambda: checks.stream_job(
        hosts, port, keyspace, job, max_age, newer_than, security), wait)},
        output, labelled=False)


def _inventory() -> Inventory:
    """The inventory of `evilnet -i` (or its default), read whole."""
    return Inventory.of(click.get_current_context().find_object(Stack))


@click.command()
@inventory_options
@_format
def status(output: str) -> None:
    """Print the health of every service of the inventory (`evilnet -i`) as a table.

    Exit status 0 all healthy, 1 something unhealthy, 2 could not check.
    """
    inventory = _inventory()
    services = list(inventory.health_checks())
    try:
        producers = list(inventory.producer_checks())
    except InventoryError as error:
        producers = [("producers", "deployed.json", partial(checks.Health, False, str(error)))]
    results = list(checks.run_checks([*services, *producers]))
    if output == "json":
        click.echo(json.dumps([{"service": service, "endpoint": endpoint, "ok": result.ok,
                                "detail": result.detail}
                               for service, endpoint, result in results], ensure_ascii=False))
    else:
        table = Table(title=f"EvilNet services ({inventory.path})")
        for column in ("service", "endpoint", "healthy", "detail"):
            # Fold, never cut: an endpoint without its port is no endpoint.
            table.add_column(column, overflow="fold")
        for service, endpoint, result in results:
            table.add_row(service, endpoint, "[green]yes[/]" if result.ok else "[red]no[/]",
                          result.detail)
        # Wide enough for the details when piped (make, CI logs), not squeezed to 80
        # columns, unless COLUMNS says how wide (then cells fold).
        wide = sys.stdout.isatty() or "COLUMNS" in os.environ
        Console(width=None if wide else 160).print(table)
    if not all(result.ok for _, _, result in results):
        sys.exit(1)


@click.group()
def topics() -> None:
    """The pipeline's Kafka topics."""


@topics.command("ensure")
@kafka_option()
@click.option("--replication-factor", type=click.IntRange(1), required=True)
@click.option("--min-insync-replicas", type=click.IntRange(1), required=True)
@click.option("--tweets-partitions", type=click.IntRange(1), required=True)
@click.option("--tweets-retention-ms", type=click.IntRange(60_000), required=True)
@click.option("--dead-letter-partitions", type=click.IntRange(1), required=True)
@click.option("--dead-letter-retention-ms", type=click.IntRange(60_000), required=True)
@_kafka_client_config
def topics_ensure(bootstrap_servers: tuple[Endpoint, ...], replication_factor: int,
                  min_insync_replicas: int,
                  tweets_partitions: int, tweets_retention_ms: int,
                  dead_letter_partitions: int, dead_letter_retention_ms: int,
                  client_config: Path | None) -> None:
    """Create the topics, or bring them to these settings. Prints one line per change."""
    if min_insync_replicas > replication_factor:
        raise click.BadParameter("cannot exceed --replication-factor",
                                 param_hint="--min-insync-replicas")
    specs = pipeline_topics(replication_factor, min_insync_replicas, tweets_partitions,
                            tweets_retention_ms, dead_letter_partitions, dead_letter_retention_ms)
    try:
        changes = ensure_topics(",".join(map(str, bootstrap_servers)), specs,
                                _kafka_security(client_config))
    except TopicError as error:
        raise click.ClickException(str(error)) from error
    for change in changes:
        click.echo(f"changed: {change}")
    if not changes:
        click.echo("unchanged")


@topics.command("list")
@kafka_option()
@_kafka_client_config
def topics_list(bootstrap_servers: tuple[Endpoint, ...], client_config: Path | None) -> None:
    """The cluster's topics, one per line (read-only)."""
    for name in list_topics([str(server) for server in bootstrap_servers],
                            _kafka_security(client_config)):
        click.echo(name)


@topics.command("acls")
@kafka_option()
@_kafka_client_config
@click.option("--stream-job-group-prefix", default=STREAM_JOB_GROUP_PREFIX, show_default=True,
              help="The consumer group ids the stream job's principal may read with start "
                   "with this.")
def topics_acls(bootstrap_servers: tuple[Endpoint, ...], client_config: Path | None,
                stream_job_group_prefix: str) -> None:
    """Give the producers' and the stream job's principals exactly the ACLs they need
    (evilnet/platform/acls.py), as the admin. Prints one line per change."""
    try:
        changes = ensure_acls(",".join(map(str, bootstrap_servers)),
                              pipeline_grants(stream_job_group_prefix),
                              _kafka_security(client_config))
    except AclError as error:
        raise click.ClickException(str(error)) from error
    for change in changes:
        click.echo(f"changed: {change}")
    if not changes:
        click.echo("unchanged")


@topics.command("describe")
@click.argument("names", metavar="[TOPIC]...", nargs=-1)
@kafka_option()
@cassandra_option()
@cassandra_login_option
@keyspace_option()
@click.option("--job", default="stream-job", show_default=True,
              help="The stream job whose consumer lag to show (its job_progress rows).")
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@_kafka_client_config
def topics_describe(names: tuple[str, ...], bootstrap_servers: tuple[Endpoint, ...],
                    cassandra: tuple[Endpoint, ...], keyspace: str, job: str,
                    output: str, client_config: Path | None) -> None:
    """Partitions, replicas, ISR, retention and the job's lag per partition (read-only).

    The lag is the partition's log end offset minus the offset the job's slowest
    query has consumed up to (its last micro-batch); ``-`` where the job reads
    another topic or has recorded nothing. [default TOPIC: every pipeline topic]
    """
    from evilnet.spark.store import CassandraStore, connect

    servers = [str(server) for server in bootstrap_servers]
    hosts, port = same_port(cassandra)
    cluster, session = connect(hosts, port, security=_cassandra_security())
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
        states = describe_topics(servers, list(names) or [TWEETS_TOPIC, DEAD_LETTER_TOPIC],
                                 job_offsets, _kafka_security(client_config))
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
@kafka_option()
@inventory_options
@click.option("--topic", default=TWEETS_TOPIC, show_default=True)
@click.option("--grace", type=click.FloatRange(0), default=300, show_default=True,
              help="Seconds of deliveries read beyond both ends (late posts count).")
def fidelity(start: str, end: str, form: str, bootstrap_servers: tuple[Endpoint, ...],
             topic: str, grace: float) -> None:
    """Per shard and producer: posts received and missed, recall, delivery delay."""
    window = (_moment(start), _moment(end))
    if window[0] >= window[1]:
        raise click.BadParameter("must be later than --from", param_hint="--to")
    try:
        rows = fidelity_report(",".join(map(str, bootstrap_servers)), topic, *window,
                               grace=timedelta(seconds=grace), security=kafka_login())
    except (ValueError, TimeoutError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(render_fidelity(rows, form))


# --- Cassandra's roles (a secured cluster: docs/security.md, "Cassandra") ------------


@click.group("cassandra-roles")
def cassandra_roles() -> None:
    """A secured Cassandra's superuser, roles and grants (evilnet/cassandra_clients.py)."""


def _admin_login() -> CassandraSecurity:
    security = _cassandra_security(ADMIN)
    if security is None:
        raise click.UsageError("give --cassandra-login (the admin's login file): the "
                               "cluster is not the inventory's, or it is plaintext")
    return security


def _print_changes(changes: list[str]) -> None:
    click.echo(json.dumps({"changed": bool(changes), "changes": changes}))


@cassandra_roles.command("superuser")
@cassandra_option()
@cassandra_login_option
@click.option("--datacenter", default="dc1", show_default=True,
              help="Data center of system_auth's NetworkTopologyStrategy.")
@click.option("--replication-factor", default=1, show_default=True, type=click.IntRange(1),
              help="system_auth's replicas in that data center (the keyspace's).")
@click.option("--wait", type=click.FloatRange(0), default=60, show_default=True,
              help="Seconds to keep trying the logins (a new node makes `cassandra` some "
                   "seconds after it serves CQL).")
def cassandra_roles_superuser(cassandra: tuple[Endpoint, ...], datacenter: str,
                              replication_factor: int, wait: float) -> None:
    """Replace the default superuser `cassandra` by the admin of the login file, once.

    Replicates system_auth first; then creates the admin (logged in as `cassandra`,
    while the admin cannot log in yet) and keeps `cassandra` from logging in. Prints
    one JSON line: whether anything changed, and what.
    """
    hosts, port = same_port(cassandra)
    try:
        _print_changes(ensure_superuser(hosts, port, _admin_login(), datacenter,
                                        replication_factor, wait))
    except RolesError as error:
        raise click.ClickException(str(error)) from error


@cassandra_roles.command("ensure")
@cassandra_option()
@cassandra_login_option
@keyspace_option()
@click.option("--role-login", "role_logins", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A role's login file (cqlshrc) whose role and password to keep; "
                   "repeatable [default: the inventory's job and reader roles].")
def cassandra_roles_ensure(cassandra: tuple[Endpoint, ...], keyspace: str,
                           role_logins: tuple[Path, ...]) -> None:
    """Give the job's and the reader's roles their passwords and exactly their grants
    on the keyspace, as the admin. Prints one JSON line: whether anything changed."""
    hosts, port = same_port(cassandra)
    admin = _admin_login()
    by_name = {role.name: role for role in KEYSPACE_PERMISSIONS}
    logins: dict[Role, CassandraSecurity] = {}
    try:
        for path in role_logins:
            login = CassandraSecurity.from_cqlshrc(path)
            if login.username not in by_name:
                raise click.BadParameter(f"{path}: {login.username} is none of "
                                         f"{', '.join(sorted(by_name))}",
                                         param_hint="--role-login")
            logins[by_name[login.username]] = login
    except LoginFileError as error:
        raise click.BadParameter(str(error), param_hint="--role-login") from None
    if not role_logins:
        for role in KEYSPACE_PERMISSIONS:
            login = _cassandra_security(role)
            if login is None:
                raise click.UsageError("give --role-login for each role (the cluster is "
                                       "not the inventory's, or it is plaintext)")
            logins[role] = login
    try:
        _print_changes(ensure_roles(hosts, port, admin, keyspace, logins))
    except RolesError as error:
        raise click.ClickException(str(error)) from error
