"""The declared hosts of the bed: the hosts of an Ansible inventory.

The inventory is the one list of the bed's hosts and their addresses: the bed boots a
machine for every host it names, at the host's ``ansible_host``, so what Ansible
reaches is exactly what was booted. It is read through ``ansible-inventory`` (the
venv's), which resolves group_vars and host_vars the way a playbook run does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from testbed import layout

# A machine name is also the host's hostname and part of its namespace's name.
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


@dataclass(frozen=True)
class Host:
    name: str
    address: IPv4Address
    # Where the host mounts the inventory's shared storage (evilnet_shared_storage_dir),
    # which the bed provides as one controller directory bound into every such host.
    shared_storage: str | None = None

    @property
    def netns(self) -> str:
        return f"evilnet-{self.name}"

    @property
    def veth(self) -> str:
        # The controller's end of the host's link, named by the host's last octet
        # (interface names are at most 15 characters; the subnet is a /24).
        return f"evb{self.address.packed[-1]}"


class HostListError(ValueError):
    """The inventory does not describe hosts the bed can make."""


def read_hosts(inventory: Path) -> list[Host]:
    """Every host of the inventory, in a stable order, each with its bed address."""
    listing = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-inventory")), "-i", str(inventory),
         "--list"],
        capture_output=True, text=True, check=True, timeout=120)
    listed = json.loads(listing.stdout)
    hostvars = listed.get("_meta", {}).get("hostvars", {})
    # A host without variables is in its groups' lists only, not in hostvars.
    names = set(hostvars) | {name for group, entry in listed.items() if group != "_meta"
                             for name in entry.get("hosts", [])}
    hosts = [_host(name, hostvars.get(name, {})) for name in sorted(names)]
    taken: dict[IPv4Address, str] = {}
    for host in hosts:
        if host.address in taken:
            raise HostListError(f"{host.name} and {taken[host.address]} share {host.address}")
        taken[host.address] = host.name
    if not hosts:
        raise HostListError(f"{inventory} names no host")
    return hosts


def _host(name: str, variables: dict) -> Host:
    if not _NAME.match(name):
        raise HostListError(f"{name!r}: a bed host's name is a short lowercase hostname")
    if "ansible_host" not in variables:
        raise HostListError(f"{name}: no ansible_host (the bed gives it that address)")
    address = IPv4Address(variables["ansible_host"])
    if not layout.in_subnet(address):
        raise HostListError(f"{name}: {address} is not a host address of the bed's "
                            f"{layout.SUBNET} (the bridge is {layout.BRIDGE_ADDRESS.ip})")
    shared = variables.get("evilnet_shared_storage_dir")
    if shared is not None and not (isinstance(shared, str) and shared.startswith("/")
                                   and "{" not in shared):
        raise HostListError(f"{name}: evilnet_shared_storage_dir must be an absolute path "
                            f"the bed can bind, not {shared!r}")
    return Host(name, address, shared)


def select(hosts: list[Host], names: list[str] | None) -> list[Host]:
    """The named hosts only (all of them when no name is given)."""
    if not names:
        return hosts
    by_name = {host.name: host for host in hosts}
    unknown = sorted(set(names) - set(by_name))
    if unknown:
        raise HostListError(f"not in the inventory: {', '.join(unknown)}")
    return [by_name[name] for name in names]
