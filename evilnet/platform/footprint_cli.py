"""`evilnet footprint`: memory and disk per host and service, against their limits."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from evilnet.locations import Stack, inventory_options
from evilnet.metrics_endpoint import EndpointSecurity, serve
from evilnet.platform import footprint as fp
from evilnet.platform.inventory import Inventory, InventoryError


def _listen(value: str) -> tuple[str, int]:
    address, _, port = value.rpartition(":")
    if not address or not port.isdigit():
        raise click.BadParameter(f"{value!r} is not address:port")
    return address, int(port)


@click.command("footprint")
@inventory_options
@click.option("--format", "output", type=click.Choice(fp.FORMATS), default="table",
              show_default=True)
@click.option("--hosts-file", "hosts_file",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None,
              help="Measure the hosts of this file, not the inventory's: their roots and "
                   "limits as the prometheus role writes them beside the exporter it runs "
                   "(no inventory or Ansible needed).")
@click.option("--serve", "listen", metavar="ADDRESS:PORT", default=None,
              help="Serve the footprint to Prometheus instead (measured at every scrape).")
@click.option("--announce", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --serve: write this Prometheus file_sd target file (the "
                   "prometheus role's footprint job reads targets/footprint.json).")
@click.option("--metrics-login", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None,
              help="With --serve: serve HTTPS and demand Prometheus's scrape login, as this "
                   "file says (0600; the prometheus role writes it where Prometheus is "
                   "secured: evilnet.metrics_endpoint).")
def footprint(output: str, hosts_file: Path | None, listen: str | None,
              announce: Path | None, metrics_login: Path | None) -> None:
    """Memory (RSS) and disk per host and service against their limits, with the share
    in use; '!' marks an alerted share of 80 % or more.

    Measures the hosts of the inventory (or of --hosts-file) whose root is on this
    machine: every host of the local stack; on real hosts, the host it runs on only.
    Exit 0; 2 if the footprint cannot be measured.
    """
    stack = click.get_current_context().find_object(Stack)
    source = hosts_file or stack.inventory
    try:
        variables: fp.Variables
        if hosts_file:
            variables = fp.HostsFile.load(hosts_file)
            roots = variables.roots()
        else:
            variables = Inventory.of(stack)
            roots = fp.host_roots(variables)
        if not roots:
            raise fp.FootprintError("no host has its root on this machine")
        if listen:
            security = EndpointSecurity.from_file(metrics_login) if metrics_login else None
            _serve(variables, roots, *_listen(listen), announce, security)
            return
        usages = fp.footprint(variables, roots)
    except (InventoryError, fp.FootprintError, ValueError) as error:
        click.echo(f"evilnet footprint: {error} ({source})", err=True)
        sys.exit(2)
    except OSError as error:  # --serve: the address is taken or not this machine's
        click.echo(f"evilnet footprint: cannot serve: {error.strerror} ({listen})", err=True)
        sys.exit(2)
    if output == "json":
        click.echo(fp.as_json(usages))
        return
    table = Table("host", "service", "resource", "part", "used", "limit", "share")
    for row in fp.rows(usages):
        table.add_row(*row)
    # Wide enough for every column: never cut a number at 80 columns.
    Console(width=max(120, Console().width)).print(table)


def _serve(variables: fp.Variables, roots: dict[str, Path], address: str, port: int,
           announce: Path | None, security: EndpointSecurity | None) -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(fp.FootprintCollector(variables, roots))
    server, thread = serve(port, address, registry, security)
    if announce:
        fp.announce(announce, address, port)
    scheme = "https" if security else "http"
    click.echo(f"serving the footprint on {scheme}://{address}:{port}/metrics")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    if announce:
        announce.unlink(missing_ok=True)
    server.shutdown()
    thread.join()
