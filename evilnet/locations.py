"""Where the stack's services listen, as every command line takes them.

One set of options for all subcommands: ``--cassandra HOST[:PORT][,…]``,
``--keyspace``, ``--bootstrap-servers HOST:PORT[,…]``, ``--spark-master URL``,
``--zookeeper HOST:PORT[,…]`` and ``--plan DIR``, each with an environment
variable (``EVILNET_CASSANDRA``, …). A value given neither way comes from the
inventory: the top command line (evilnet.cli) puts a :class:`Stack` on click's
``ctx.obj`` that reads the inventory the first time a command needs a location,
and never otherwise (``synth`` or ``health kafka --bootstrap-servers …`` on a host
without a checkout read no inventory).

This module sits under every layer so that the services' command lines
(evilnet.spark.cli, evilnet.producer.cli), which may not import the platform,
take their locations the same way as the platform's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

CASSANDRA_PORT = 9042
ZOOKEEPER_PORT = 2181


class LocationError(RuntimeError):
    """No location for a service: neither given nor found in an inventory."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_endpoint(value: str, default_port: int | None = None) -> Endpoint:
    """``host[:port]`` (``[v6]:port`` for IPv6); raises ValueError saying what is wrong."""
    text = value.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif ":" in text:
        raise ValueError(f"{value!r} is not host[:port]")
    else:
        host, port = text, None
    if not host:
        raise ValueError(f"{value!r} has no host")
    if port is None:
        if default_port is None:
            raise ValueError(f"{value!r} has no port (host:port)")
        return Endpoint(host, default_port)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r}: the port must be a number from 1 to 65535")
    return Endpoint(host, int(port))


class Endpoints(click.ParamType):
    """``host[:port][,host[:port]…]`` as a tuple of :class:`Endpoint`."""

    name = "HOST:PORT[,…]"

    def __init__(self, default_port: int | None = None) -> None:
        self.default_port = default_port
        if default_port is not None:
            self.name = "HOST[:PORT][,…]"

    def convert(self, value: Any, param, ctx) -> tuple[Endpoint, ...]:
        if isinstance(value, tuple):
            return value
        try:
            endpoints = tuple(parse_endpoint(item, self.default_port)
                              for item in str(value).split(",") if item.strip())
        except ValueError as error:
            self.fail(str(error), param, ctx)
        if not endpoints:
            self.fail("no host given", param, ctx)
        return endpoints


class Url(click.ParamType):
    """An http(s) URL; ``host:port`` alone means http://host:port."""

    name = "URL"

    def convert(self, value: Any, param, ctx) -> str:
        text = str(value).strip().rstrip("/")
        if "://" not in text:
            try:
                text = f"http://{parse_endpoint(text)}"
            except ValueError as error:
                self.fail(f"{error}, or give a URL", param, ctx)
        if not text.startswith(("http://", "https://")):
            self.fail(f"{value!r} is not an http(s) URL", param, ctx)
        return text


@dataclass(frozen=True)
class Locations:
    """Every location a subcommand may need, as one inventory describes them."""

    source: str  # the inventory's path, named in errors
    cassandra: tuple[Endpoint, ...]
    keyspace: str
    bootstrap_servers: tuple[Endpoint, ...]
    spark_master: str | None  # the master web UI's URL
    spark_workers: tuple[str, ...]
    zookeeper: tuple[Endpoint, ...]
    simulator: str | None  # the X API simulator's URL, where it runs
    plan: Path | None  # the plan directory the producer role rolls out by default
    # kafka-python's login to a secured Kafka (evilnet.kafka_clients.KafkaSecurity's
    # kwargs, from the inventory's secret files), read when a command first needs it;
    # empty for a plaintext cluster.
    kafka_login: Callable[[], Mapping[str, str]] = field(default=dict, repr=False)
    # The login to a secured Cassandra as a role (evilnet.cassandra_clients: a Role ->
    # a CassandraSecurity from the inventory's secret files and CA), None for a
    # plaintext cluster; read when a command first needs it.
    cassandra_login: Callable[[Any], Any] = field(default=lambda role: None, repr=False)


@dataclass
class Stack:
    """click's ``ctx.obj``: the inventory's locations, read once, on first use.

    ``inventory`` and ``roles`` are the resolved paths (for the commands that read
    more of the inventory than locations); ``read`` turns them into Locations and
    raises LocationError (or the reader's own error) when they cannot be read.
    """

    inventory: Path | None
    roles: Path | None
    read: Callable[[], Locations]
    # Another inventory's Stack, the same way (a subcommand's own -i).
    reopen: Callable[[Path | None, Path | None], Stack] | None = None
    _locations: Locations | None = field(default=None, repr=False)

    def locations(self) -> Locations:
        if self._locations is None:
            self._locations = self.read()
        return self._locations


def _reopen(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    stack = ctx.find_object(Stack)
    if value is not None and stack is not None and stack.reopen is not None:
        inventory, roles = ((value, stack.roles) if param.name == "inventory"
                            else (stack.inventory, value))
        ctx.obj = stack.reopen(inventory, roles)
    return value


def inventory_options(command):
    """A subcommand's own ``-i/--inventory`` and ``--roles``, hidden: the spelling that
    scripts used before ``evilnet -i`` (Jenkinsfile, Makefile). Given, they replace it."""
    for name in ("--roles", "--inventory"):
        flags = ("-i", name) if name == "--inventory" else (name,)
        command = click.option(*flags, name.strip("-"), hidden=True, expose_value=False,
                               is_eager=True, callback=_reopen,
                               type=click.Path(path_type=Path))(command)
    return command


def location(name: str, flag: str) -> Any:
    """The inventory's location ``name`` (a Locations field), for an option left out."""
    return _from_stack(name, flag, True, None)()


def _from_stack(name: str, flag: str, required: bool, fallback: Any) -> Callable[[], Any]:
    def default() -> Any:
        stack = click.get_current_context().find_object(Stack)
        # A subcommand run on its own (outside `evilnet`), or no inventory to be found.
        if stack is None or (stack.inventory is None and fallback is not None):
            if fallback is None and required:
                raise click.UsageError(f"give {flag} (no inventory to read it from)")
            return fallback
        value = getattr(stack.locations(), name)
        if required and not value:
            raise LocationError(f"{stack.inventory} names no {name.replace('_', ' ')}: "
                                f"give {flag}")
        return value
    return default


def kafka_login(parameter: str = "bootstrap_servers") -> dict[str, str]:
    """kafka-python's login settings for the command's brokers: the inventory's, when
    the brokers are the inventory's (``parameter``, the command's option naming them,
    was not given); none otherwise (a plaintext cluster, or brokers named by hand,
    whose login a client properties file gives)."""
    ctx = click.get_current_context()
    stack = ctx.find_object(Stack)
    if stack is None or stack.inventory is None:
        return {}
    if ctx.get_parameter_source(parameter) not in (None, ParameterSource.DEFAULT):
        return {}
    return dict(stack.locations().kafka_login())


_CASSANDRA_LOGIN_FILE = "evilnet.cassandra_login_file"


def _remember_login_file(ctx: click.Context, param: click.Parameter, value: Path | None):
    if value is not None:
        ctx.meta[_CASSANDRA_LOGIN_FILE] = value


def cassandra_login_option(command):
    """``--cassandra-login FILE``: a secured Cassandra's login file (a cqlshrc, 0600:
    the role, its password and the CA bundle). Its path, never the password, is on the
    command line; :func:`cassandra_login` reads it."""
    return click.option(
        "--cassandra-login", envvar="EVILNET_CASSANDRA_LOGIN", show_envvar=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
        expose_value=False, callback=_remember_login_file,
        help="A cqlshrc login file (role, password, CA bundle) for a secured Cassandra "
             "[default: the inventory's login where the nodes are the inventory's, else "
             "plaintext].")(command)


def cassandra_login(role: Any, read_file: Callable[[Path], Any],
                    parameter: str = "cassandra") -> Any:
    """The command's login to its Cassandra nodes: ``read_file`` of the
    ``--cassandra-login`` file if one was given; else the inventory's login as ``role``
    (an evilnet.cassandra_clients.Role) when the nodes are the inventory's
    (``parameter``, the option naming them, was not given); else None (plaintext)."""
    ctx = click.get_current_context()
    login_file = ctx.meta.get(_CASSANDRA_LOGIN_FILE)
    if login_file is not None:
        try:
            return read_file(login_file)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--cassandra-login") from None
    stack = ctx.find_object(Stack)
    if stack is None or stack.inventory is None:
        return None
    if ctx.get_parameter_source(parameter) not in (None, ParameterSource.DEFAULT):
        return None
    return stack.locations().cassandra_login(role)


def remember_where(service: str, value: Any, ctx: click.Context | None = None) -> None:
    """Remember where a service is for error messages (`… (<where>)`, evilnet.cli)."""
    if value:
        where = value if isinstance(value, str | Path) else ",".join(map(str, value))
        (ctx or click.get_current_context()).meta.setdefault("evilnet.where", {})[service] = \
            str(where)


def _record(service: str):
    """An option callback that remembers the option's value (remember_where)."""
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        remember_where(service, value, ctx)
        return value
    return callback


def location_option(name: str, kind: click.ParamType, service: str, help_text: str, *,
                    required: bool = True, fallback: Any = None, **extra: Any):
    """An option whose default is the inventory's location for it (see the module doc);
    ``fallback`` is the default of a subcommand run outside `evilnet`'s group."""
    flag = "--" + name.replace("_", "-")
    envvar = "EVILNET_" + name.upper()
    return click.option(flag, name, type=kind, envvar=envvar, show_envvar=True,
                        default=_from_stack(name, flag, required, fallback),
                        show_default="the inventory's", callback=_record(service),
                        help=help_text, **extra)


def cassandra_option(**extra: Any):
    return location_option("cassandra", Endpoints(CASSANDRA_PORT), "Cassandra",
                           "Cassandra contact points.", **extra)


def keyspace_option(**extra: Any):
    return location_option("keyspace", click.STRING, "Cassandra keyspace",
                           "The pipeline's keyspace.", **extra)


def kafka_option(**extra: Any):
    return location_option("bootstrap_servers", Endpoints(), "Kafka",
                           "Kafka brokers to bootstrap from.", **extra)


def spark_master_option(**extra: Any):
    return location_option("spark_master", Url(), "Spark master",
                           "The Spark master's web UI (URL, or host:port).", **extra)


def zookeeper_option(**extra: Any):
    return location_option("zookeeper", Endpoints(ZOOKEEPER_PORT), "ZooKeeper",
                           "The ZooKeeper ensemble's members.", **extra)


def same_port(endpoints: tuple[Endpoint, ...], flag: str = "--cassandra") -> tuple[list[str], int]:
    """Contact points and their one port (the Cassandra driver takes one port)."""
    ports = {endpoint.port for endpoint in endpoints}
    if len(ports) != 1:
        raise click.BadParameter("every contact point needs the same port", param_hint=flag)
    return [endpoint.host for endpoint in endpoints], ports.pop()
