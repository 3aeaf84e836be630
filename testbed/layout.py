"""Where the bed keeps its state, and the addresses it owns.

Everything lives under the repository's ``.run/testbed/`` (gitignored):

    rootfs/              the cached Debian rootfs (kept by ``down``)
    debs/                debootstrap's package cache (kept: a rebuild downloads nothing)
    ssh/id_ed25519       the controller's key for the deploy user (0600, kept)
    known_hosts          the running hosts' host keys (host key checking stays on)
    machines/<name>/     one machine: overlay upper/work dirs, its root, its log and pid
    stage/               the bed's controller's staged artifacts and Debian packages
                         (EVILNET_CACHE for `make cluster-stage`, apart from the local
                         stack's: both may be staged at once from different trees)

The addresses come from 198.18.0.0/15, the range RFC 2544 reserves for network test
beds: nothing else on a machine uses it, and nothing outside the bed is ever given
one of its addresses. The bed uses one /24 of it, on a bridge it owns.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = REPO_ROOT / ".run" / "testbed"

# RFC 2544's benchmarking range; the bed takes its first /24.
TEST_RANGE = IPv4Network("198.18.0.0/15")
SUBNET = IPv4Network("198.18.0.0/24")
# The controller's side of the bridge: the first address of the subnet.
BRIDGE = "evbed0"
BRIDGE_ADDRESS = IPv4Interface("198.18.0.1/24")

# The inventory the bed is made from unless told otherwise.
DEFAULT_INVENTORY = REPO_ROOT / "inventories" / "cluster"

# The deploy user that Ansible logs in as (inventories/cluster: ansible_user).
DEPLOY_USER = "deploy"


@dataclass(frozen=True)
class Paths:
    """The bed's files, under one state directory (tests may give their own)."""

    root: Path = STATE_DIR

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"

    @property
    def rootfs_partial(self) -> Path:
        # debootstrap writes here; it becomes rootfs/ only once complete.
        return self.root / "rootfs.partial"

    @property
    def debs(self) -> Path:
        return self.root / "debs"

    @property
    def ssh_key(self) -> Path:
        return self.root / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def machines(self) -> Path:
        return self.root / "machines"

    def machine(self, name: str) -> Path:
        return self.machines / name

    @property
    def shared_storage(self) -> Path:
        # Bound into each host at its evilnet_shared_storage_dir: the bed's stand-in
        # for the NFS export production mounts there.
        return self.root / "shared-storage"

    @property
    def stage(self) -> Path:
        # The Makefile's CLUSTER_STAGE.
        return self.root / "stage"


def in_subnet(address: IPv4Address) -> bool:
    """Whether an address is one the bed may give a host (not the bridge's own)."""
    return address in SUBNET and address not in (BRIDGE_ADDRESS.ip, SUBNET.network_address,
                                                 SUBNET.broadcast_address)
