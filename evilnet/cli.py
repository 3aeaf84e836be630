"""The ``evilnet`` command line: one subcommand per job an operator does.

Exit status, for every subcommand (README, "Exit status"):

- 0: done, and what was checked is fine;
- 1: the command's own "no" (``check``: rows differ; ``health``: unhealthy;
  ``status``: something unhealthy; ``schema apply``: a migration was refused);
- 2: it could not run: bad input, a file or inventory it cannot read, a service it
  cannot reach, a keyspace that does not exist. One line on stderr,
  ``evilnet <command>: <what> (<where>)``, never a traceback.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import yaml

from evilnet import __version__

EXIT_CANNOT_RUN = 2

# Every subcommand and where it lives ("module:attribute", beside the code it drives).
# A module is imported only when one of its subcommands runs, or to list them in
# `evilnet --help`: `evilnet health` (the roles' frequent call) does not pay for
# altair, flask, tweepy or the Cassandra driver. Their short help is the commands' own.
SUBCOMMANDS = {
    "stage": "evilnet.platform.cli:stage",
    "health": "evilnet.platform.cli:health",
    "status": "evilnet.platform.cli:status",
    "topics": "evilnet.platform.cli:topics",
    "cassandra-roles": "evilnet.platform.cli:cassandra_roles",
    "fidelity": "evilnet.platform.cli:fidelity",
    "footprint": "evilnet.platform.footprint_cli:footprint",
    "pki": "evilnet.platform.pki_cli:pki_group",
    "secrets": "evilnet.platform.pki_cli:secrets_group",
    "dashboards": "evilnet.dashboards.cli:dashboards",
    "produce": "evilnet.producer.cli:produce",
    "replay": "evilnet.producer.cli:replay",
    "simulate-x-api": "evilnet.producer.cli:simulate_x_api",
    "synth": "evilnet.producer.cli:synth",
    "stream-rules": "evilnet.rules_cli:stream_rules",
    "schema": "evilnet.spark.cli:schema",
    "query": "evilnet.spark.cli:query",
    "check": "evilnet.spark.cli:check",
    "locate": "evilnet.spark.cli:locate",
    "plan": "evilnet.plan_cli:plan",
    "render": "evilnet.plan_cli:render",
}


def _leaf_path(ctx: click.Context, group: click.Group, args: list[str]) -> Iterator[str]:
    """The subcommand names in ``args`` (a group's options come before its subcommand)."""
    while isinstance(group, click.Group):
        name = next((arg for arg in args if not arg.startswith("-")), None)
        command = group.get_command(ctx, name) if name else None
        if command is None:
            return
        yield name
        group = command
        args = args[args.index(name) + 1:]


def _service_error(error: BaseException) -> tuple[str, str | None] | None:
    """(what, the service it concerns) for the errors of the clients the commands use."""
    module = type(error).__module__ or ""
    if module.startswith("cassandra"):
        from cassandra import InvalidRequest, OperationTimedOut, UnresolvableContactPoints
        from cassandra.cluster import NoHostAvailable

        if isinstance(error, UnresolvableContactPoints):
            return "cannot resolve Cassandra's host names", "Cassandra"

        if isinstance(error, NoHostAvailable):
            reasons = {str(reason).split(" (")[0] for reason in error.errors.values()}
            return (f"cannot connect to Cassandra: {'; '.join(sorted(reasons)) or error}",
                    "Cassandra")
        if isinstance(error, InvalidRequest):
            # The server's message, e.g. "Keyspace 'x' does not exist".
            reason = str(error).split("message=", 1)[-1].strip('"')
            return f"Cassandra refused the request: {reason}", "Cassandra"
        if isinstance(error, OperationTimedOut):
            return "Cassandra did not answer in time", "Cassandra"
        return f"Cassandra: {error}", "Cassandra"
    if module.startswith("kafka"):
        from kafka.errors import KafkaTimeoutError

        # kafka-python's one account of "no bootstrap server answered" (no class of its own).
        if isinstance(error, KafkaTimeoutError) and "Unable to bootstrap" in str(error):
            return "cannot connect to Kafka: no bootstrap server answered", "Kafka"
        return f"cannot use Kafka: {error or type(error).__name__}", "Kafka"
    if module.startswith(("requests", "urllib3")):
        return f"cannot reach {error}", None
    return None


def _one_line(error: BaseException, where: dict[str, str]) -> str | None:
    """The one-line account of an error a command could not run past, or None."""
    from evilnet.cities import PlanInputError
    from evilnet.locations import LocationError
    from evilnet.planner import PlanError
    from evilnet.platform.inventory import InventoryError

    if isinstance(error, click.ClickException):
        return error.format_message()
    known = _service_error(error)
    if known is not None:
        what, service = known
        place = where.get(service or "")
        return f"{what} ({place})" if place else what
    if isinstance(error, socket.gaierror):
        return f"cannot resolve a host name: {error.strerror}"
    if isinstance(error, OSError):
        place = error.filename or ", ".join(where.values())
        return f"{error.strerror or error}" + (f" ({place})" if place else "")
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 text: byte {error.start} is {error.object[error.start]:#04x}"
    if isinstance(error, json.JSONDecodeError):
        return f"not valid JSON: {error.msg} (line {error.lineno} column {error.colno})"
    if isinstance(error, yaml.YAMLError):
        return f"not valid YAML: {' '.join(str(error).split())}"
    if isinstance(error, LocationError | InventoryError | PlanError | PlanInputError):
        return " ".join(str(error).split())
    return None


class EvilnetGroup(click.Group):
    """The top group: subcommands loaded when used (SUBCOMMANDS), and their errors as
    one line and exit 2 (the module's doc)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*SUBCOMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in SUBCOMMANDS:
            return self.commands.get(cmd_name)
        module, _, attribute = SUBCOMMANDS[cmd_name].partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert command.name == cmd_name, f"{SUBCOMMANDS[cmd_name]} is {command.name!r}"
        self.add_command(command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        command = " ".join(["evilnet", *_leaf_path(ctx, self,
                                                   [*ctx._protected_args, *ctx.args])])
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except BrokenPipeError:
            # The reader left (`| head`): nothing more to say, and nowhere to say it.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except Exception as error:
            line = _one_line(error, ctx.meta.get("evilnet.where", {}))
            if line is None:
                raise
            click.echo(f"{command}: {' '.join(line.split())}", err=True)
            sys.exit(EXIT_CANNOT_RUN)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.ClickException as error:
            if isinstance(error, click.exceptions.NoArgsIsHelpError):
                raise
            click.echo(f"evilnet: {error.format_message()}", err=True)
            sys.exit(EXIT_CANNOT_RUN)


@click.group(cls=EvilnetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="evilnet")
@click.option("-i", "--inventory", type=click.Path(path_type=Path), default=None,
              help="The inventory every subcommand takes the services' locations from "
                   "[default: $ANSIBLE_INVENTORY, else ansible.cfg's inventory, else "
                   "inventories/local, of the project holding ansible.cfg].")
@click.option("--roles", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The Ansible roles whose defaults fill in what the inventory does not "
                   "set [default: the project's roles_path].")
@click.pass_context
def main(ctx: click.Context, inventory: Path | None, roles: Path | None) -> None:
    """Plan, deploy, feed and check the EvilNet pipeline.

    Addresses come from the inventory; --cassandra, --bootstrap-servers and the
    other location options (or their EVILNET_* variables) override it.
    Exit status: 0 fine, 1 the command's "no" (see its help), 2 could not run.
    """
    from evilnet.platform.inventory import stack

    ctx.obj = stack(inventory, roles)
