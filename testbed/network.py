"""The bed's network: one bridge on the controller, one namespace per host.

A host's namespace holds the host's end of a veth pair (``eth0``, its bed address)
and loopback, and nothing else: its only routes are the bed's subnet, so there is no
way out of the bed (no default route, no NAT, no forwarding is ever set up). IPv6 is
off in the namespaces and on the bridge, so no link-local address exists either.
The controller's end of the pair (``evb<last octet>``) sits on the bridge: taking it
down cuts the host off, as a fault test does.

Everything goes through iproute2's ``ip`` (its ``-json`` output where it is read).
"""

from __future__ import annotations

import json
import subprocess
import time
from contextlib import suppress
from pathlib import Path

from testbed import layout
from testbed.hosts import Host


def ip(*arguments: str, netns: str | None = None) -> str:
    command = ["ip", "-netns", netns, *arguments] if netns else ["ip", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")
    return result.stdout


def _sysctl(setting: str, value: str, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, "sysctl", "-q", "-w", f"{setting}={value}"], check=True)


def link_exists(name: str, netns: str | None = None) -> bool:
    prefix = ["ip", "-netns", netns] if netns else ["ip"]
    return subprocess.run([*prefix, "link", "show", "dev", name], capture_output=True,
                          check=False).returncode == 0


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def ensure_bridge() -> None:
    """The bed's bridge, with the controller's address on it (unchanged if up)."""
    if not link_exists(layout.BRIDGE):
        ip("link", "add", layout.BRIDGE, "type", "bridge")
        _sysctl(f"net.ipv6.conf.{layout.BRIDGE}.disable_ipv6", "1")
    addresses = json.loads(ip("-json", "address", "show", "dev", layout.BRIDGE))
    have = {f"{entry['local']}/{entry['prefixlen']}"
            for link in addresses for entry in link.get("addr_info", [])}
    if str(layout.BRIDGE_ADDRESS) not in have:
        ip("address", "add", str(layout.BRIDGE_ADDRESS), "dev", layout.BRIDGE)
    ip("link", "set", layout.BRIDGE, "up")


def remove_bridge() -> None:
    if link_exists(layout.BRIDGE):
        ip("link", "delete", layout.BRIDGE)


def ensure_host_network(host: Host) -> None:
    """The host's namespace, its link to the bridge and its address (idempotent)."""
    if not netns_exists(host.netns):
        ip("netns", "add", host.netns)
    for scope in ("all", "default"):
        _sysctl(f"net.ipv6.conf.{scope}.disable_ipv6", "1", netns=host.netns)
    ip("link", "set", "lo", "up", netns=host.netns)
    if not link_exists("eth0", netns=host.netns):
        if link_exists(host.veth):  # a half-made pair from an interrupted run
            ip("link", "delete", host.veth)
        peer = f"{host.veth}p"
        ip("link", "add", host.veth, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", host.netns)
        ip("link", "set", peer, "name", "eth0", netns=host.netns)
        ip("address", "add", f"{host.address}/{layout.SUBNET.prefixlen}", "dev", "eth0",
           netns=host.netns)
    ip("link", "set", "eth0", "up", netns=host.netns)
    _sysctl(f"net.ipv6.conf.{host.veth}.disable_ipv6", "1")
    ip("link", "set", host.veth, "master", layout.BRIDGE, "up")


def remove_host_network(host: Host) -> None:
    # Deleting the namespace deletes its eth0, and with it (a moment later) the
    # controller's end; a pair never moved into the namespace is deleted here.
    if netns_exists(host.netns):
        ip("netns", "delete", host.netns)
    deadline = time.monotonic() + 5
    while link_exists(host.veth):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{host.veth} is still there after removing {host.name}")
        with suppress(RuntimeError):  # gone meanwhile
            ip("link", "delete", host.veth)
