"""The hosts' Debian 12 rootfs, built once by debootstrap and cached, and the SSH key.

Every machine boots from the same read-only rootfs (an overlay per machine holds
what it changes), so the rootfs carries only what every host needs and what a host
cannot download: systemd, sshd, sudo, Python (for Ansible, with python3-apt for its
apt module and acl for ``become_user``), iproute2 and ping. It has no apt sources: the
hosts have no route beyond the bridge, packages come from the controller.

The rootfs is rebuilt only when its recipe (:data:`RECIPE`) changes: the recipe is
written into it, and compared on every ``up``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from testbed import layout

SUITE = "bookworm"
PACKAGES = (
    "systemd", "systemd-sysv", "dbus",  # systemd as PID 1, and the bus systemctl talks to
    "openssh-server", "sudo",
    "python3", "python3-apt",           # Ansible's modules; its apt module needs python3-apt
    "acl",                              # Ansible's become_user to an unprivileged user
    "iproute2", "iputils-ping", "procps",
)
RECIPE = {"suite": SUITE, "variant": "minbase", "packages": sorted(PACKAGES),
          "deploy_user": layout.DEPLOY_USER, "revision": 1}
_RECIPE_FILE = Path("etc") / "evilnet-testbed.json"

# Where debootstrap downloads from: the controller's own Debian mirror (its apt
# sources), or EVILNET_TESTBED_MIRROR.
_APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))

_SUDOERS = f"""\
# The test bed's deploy user: Ansible's become, without a password (as a deploy
# account with a key and NOPASSWD sudo is on many real sites).
{layout.DEPLOY_USER} ALL=(ALL:ALL) NOPASSWD: ALL
"""
_SSHD = """\
# The test bed: keys only.
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
"""
_SOURCES = """\
# No sources: the test bed's hosts have no route beyond the bed's bridge. Packages a
# role installs come from the controller, as on an air-gapped site.
"""


def is_current(paths: layout.Paths) -> bool:
    recipe = paths.rootfs / _RECIPE_FILE
    return recipe.is_file() and json.loads(recipe.read_text()) == RECIPE


def ensure(paths: layout.Paths) -> bool:
    """The cached rootfs, built if missing or from another recipe. True if it was built."""
    if is_current(paths):
        return False
    shutil.rmtree(paths.rootfs_partial, ignore_errors=True)
    paths.debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
         f"--cache-dir={paths.debs}", SUITE, str(paths.rootfs_partial), mirror()],
        check=True, stdout=subprocess.DEVNULL)
    _customize(paths.rootfs_partial)
    shutil.rmtree(paths.rootfs, ignore_errors=True)
    paths.rootfs_partial.rename(paths.rootfs)
    return True


def mirror() -> str:
    """The Debian mirror the controller's apt uses (its first URI for the suite)."""
    if os.environ.get("EVILNET_TESTBED_MIRROR"):
        return os.environ["EVILNET_TESTBED_MIRROR"]
    for sources in _APT_SOURCES:
        if not sources.is_file():
            continue
        text = sources.read_text()
        # deb822 stanzas (URIs:/Suites:) or one-line entries (deb URI SUITE ...).
        for stanza in text.split("\n\n"):
            fields = dict(re.findall(r"^(\w+):\s*(.+)$", stanza, re.MULTILINE))
            if SUITE in fields.get("Suites", "").split() and "URIs" in fields:
                return fields["URIs"].split()[0]
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1]
    raise RuntimeError("no Debian mirror for the rootfs: set EVILNET_TESTBED_MIRROR")


def _customize(root: Path) -> None:
    """What every host shares: the deploy user and its sudo, sshd's settings."""
    def chroot(*command: str) -> None:
        subprocess.run(["chroot", str(root), *command], check=True)

    chroot("useradd", "--create-home", "--shell", "/bin/bash", layout.DEPLOY_USER)
    # '*': no password to log in with, but not a locked account (sshd refuses those).
    chroot("usermod", "--password", "*", layout.DEPLOY_USER)
    sudoers = root / "etc" / "sudoers.d" / "evilnet-testbed"
    sudoers.write_text(_SUDOERS)
    sudoers.chmod(0o440)
    (root / "etc" / "ssh" / "sshd_config.d" / "evilnet-testbed.conf").write_text(_SSHD)
    # Each machine gets host keys of its own at boot (testbed.machines), and a
    # machine id of its own from systemd (an empty file: a fresh one per boot).
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc" / "machine-id").write_text("")
    (root / "etc" / "apt" / "sources.list").write_text(_SOURCES)
    (root / _RECIPE_FILE).write_text(json.dumps(RECIPE))


def ensure_ssh_key(paths: layout.Paths) -> Path:
    """The controller's key for the deploy user, generated once (0600)."""
    key = paths.ssh_key
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        "evilnet-testbed", "-f", str(key)], check=True)
    key.chmod(0o600)
    return key
