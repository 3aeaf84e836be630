"""`evilnet dashboards serve` and `evilnet dashboards render`: the three dashboards as a
local page, for machines without a Grafana server (ours)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from evilnet.cassandra_clients import READER
from evilnet.locations import CASSANDRA_PORT, Endpoint, Endpoints, Stack, same_port
from evilnet.platform.inventory import DEFAULT_ROLES, Inventory, InventoryError
from evilnet.schema import KEYSPACE

if TYPE_CHECKING:
    from evilnet.dashboards import page as pages
# The page (altair, vl-convert) and its server (flask) are imported by the commands
# that use them: `evilnet --help` loads this module to list its commands.

DEFAULT_INVENTORY = Path("inventories/local")
DEFAULT_PORT = 8050


def _inventory(given: Path | None, roles: Path | None) -> tuple[Path, Path]:
    """This command's -i, else the top command line's (`evilnet -i …`, found the
    project's way: evilnet.platform.inventory.find_inventory), else the local one."""
    stack = click.get_current_context().find_object(Stack)
    if given is None and stack is not None and stack.inventory is not None:
        return stack.inventory, roles or stack.roles or DEFAULT_ROLES
    path = given or DEFAULT_INVENTORY
    if not path.exists():
        raise InventoryError(f"no inventory {path}: give -i, or --cassandra and --prometheus")
    return path, roles or (stack.roles if stack else None) or DEFAULT_ROLES


def _sources(inventory: Path | None, roles: Path | None,
             cassandra: tuple[Endpoint, ...] | None,
             keyspace: str | None, prometheus: str | None) -> tuple[pages.Sources, object]:
    """Cassandra and Prometheus as given, or as the inventory places them."""
    from evilnet.dashboards import page as pages
    from evilnet.spark.store import connect

    needs_inventory = not cassandra or prometheus is None or keyspace is None
    found: Inventory | None = None
    if needs_inventory:
        path, roles = _inventory(inventory, roles)
        found = Inventory.load(path, roles=roles)
    security = None  # nodes named by hand are plaintext (evilnet.locations's rule)
    if cassandra:
        hosts, port = same_port(cassandra)
    else:
        nodes = found.groups["cassandra"]
        if not nodes:
            raise InventoryError(f"{found.path} has no cassandra host: give --cassandra")
        hosts = [found.address(host) for host in nodes]
        port = int(found.var(nodes[0], "cassandra_native_port", "cassandra"))
        # The inventory's nodes, with its read-only login where they are secured.
        security = found.cassandra_security(READER)
    if keyspace is None:
        masters = found.groups["spark_master"]
        keyspace = (found.hostvars.get(masters[0], {}).get("stream_job_keyspace", KEYSPACE)
                    if masters else KEYSPACE)
    login = None
    if prometheus is None and found.groups["prometheus"]:
        # The inventory's Prometheus, with its login where it is secured.
        host = found.groups["prometheus"][0]
        prometheus = found.prometheus_url(host)
        login = found.prometheus_login(host)
    cluster, session = connect(hosts, port, security=security)
    return pages.Sources(session, keyspace, prometheus or None, login), cluster


def _location_options(command):
    options = [
        click.option("-i", "--inventory", type=click.Path(exists=True, path_type=Path),
                     default=None, help="The inventory placing Cassandra and Prometheus "
                     "[default: evilnet's -i, and as it finds one]."),
        click.option("--roles", type=click.Path(file_okay=False, path_type=Path),
                     default=None, help="The roles' directory (their defaults hold what the "
                     f"inventory does not set) [default: {DEFAULT_ROLES}]."),
        click.option("--cassandra", type=Endpoints(CASSANDRA_PORT), default=None,
                     help="Cassandra contact points [default: the inventory's]."),
        click.option("--keyspace", default=None,
                     help="The pipeline's keyspace [default: the inventory's stream job's]."),
        click.option("--prometheus", metavar="URL", default=None,
                     help="Prometheus [default: the inventory's; '' for none]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group()
def dashboards() -> None:
    """The Grafana dashboards' panels as a local page (the same queries)."""


@dashboards.command("serve")
@_location_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on (loopback: only this machine).")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True)
def serve_command(inventory: Path | None, roles: Path | None,
                  cassandra: tuple[Endpoint, ...] | None,
                  keyspace: str | None, prometheus: str | None, host: str, port: int) -> None:
    """Serve City trends, Top cities and Pipeline health, refreshed every minute."""
    from evilnet.dashboards.server import serve

    try:
        sources, cluster = _sources(inventory, roles, cassandra, keyspace, prometheus)
    except InventoryError as error:
        click.echo(f"evilnet dashboards serve: {error}", err=True)
        sys.exit(2)
    try:
        serve(sources, host, port, ready=lambda url: click.echo(
            f"dashboards on {url} (keyspace {sources.keyspace}, Prometheus "
            f"{sources.prometheus_url or 'none'}); Ctrl-C stops", err=True))
    except KeyboardInterrupt:
        pass
    finally:
        cluster.shutdown()


@dashboards.command("render")
@_location_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The directory for index.html and a PNG per panel.")
@click.option("--city", "cities", multiple=True, help="A city to show, repeatable [All].")
@click.option("--topic", "topics", multiple=True, help="A topic row to show, repeatable.")
@click.option("--from", "start", default=None, help="Start, ISO 8601 UTC [each dashboard's].")
@click.option("--to", "end", default=None, help="End, ISO 8601 UTC [now].")
def render_command(inventory: Path | None, roles: Path | None,
                   cassandra: tuple[Endpoint, ...] | None,
                   keyspace: str | None, prometheus: str | None, out: Path,
                   cities: tuple[str, ...], topics: tuple[str, ...], start: str | None,
                   end: str | None) -> None:
    """Write the page as a static HTML file (its script inlined) and a PNG per panel."""
    from evilnet.dashboards import page as pages
    from evilnet.dashboards.server import moment

    try:
        choice = pages.Choice(cities, topics, moment(start), moment(end))
        sources, cluster = _sources(inventory, roles, cassandra, keyspace, prometheus)
    except (InventoryError, ValueError) as error:
        click.echo(f"evilnet dashboards render: {error}", err=True)
        sys.exit(2)
    try:
        page = pages.build(sources, choice, datetime.now(UTC))
        written = pages.write(page, out)
    finally:
        cluster.shutdown()
    click.echo(f"{len(written)} files in {out}: index.html and {len(written) - 1} panel PNGs")
