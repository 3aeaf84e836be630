"""One host's machine: an overlay on the cached rootfs, booted by systemd-nspawn.

A machine's root is an overlay: the shared rootfs below, the machine's own changes
in ``upper/`` above, so ten machines cost one rootfs and their changes. Before the
first boot the bed writes into it what is the host's own: its hostname, an
``/etc/hosts`` naming every bed host, a fresh SSH host key and the controller's key
for the deploy user.

nspawn runs without systemd on the controller (PID 1 here is not systemd), hence
``--register=no --keep-unit``: no machined, no scope asked of a service manager over
D-Bus. It then puts the container under its own cgroup, so each nspawn is started
in a cgroup of its own (``evilnet-testbed/<name>``) in every hierarchy nspawn uses.
A SIGTERM to nspawn shuts the machine down cleanly (systemd's SIGRTMIN+3).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from contextlib import suppress
from pathlib import Path

from testbed import layout
from testbed.hosts import Host

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_NSPAWN_PROPAGATE = Path("/run/systemd/nspawn/propagate")
_STOP_SECONDS = 30


def cgroup_dirs(name: str) -> list[Path]:
    """The machine's cgroup in each hierarchy nspawn places the container in."""
    if (_CGROUP_ROOT / "cgroup.controllers").exists():  # the unified hierarchy alone
        return [_CGROUP_ROOT / "evilnet-testbed" / name]
    # Hybrid (this machine): systemd's named v1 hierarchy, and the unified one.
    return [_CGROUP_ROOT / hierarchy / "evilnet-testbed" / name
            for hierarchy in ("systemd", "unified") if (_CGROUP_ROOT / hierarchy).is_dir()]


class Machine:
    def __init__(self, host: Host, paths: layout.Paths) -> None:
        self.host = host
        self.paths = paths
        self.dir = paths.machine(host.name)
        self.root = self.dir / "root"
        self.pid_file = self.dir / "nspawn.pid"
        self.log = self.dir / "nspawn.log"
        self._process: subprocess.Popen | None = None  # when this process booted it

    # What is there --------------------------------------------------------------

    def pid(self) -> int | None:
        """nspawn's pid while this machine runs."""
        try:
            pid = int(self.pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ValueError):
            return None
        running = b"systemd-nspawn" in cmdline and f"--machine={self.host.name}".encode() \
            in cmdline
        return pid if running else None

    def has_exited(self) -> bool:
        """Whether nspawn is gone. For a machine this process started, its exit status
        says so (/proc shows nothing reliable while sh becomes nspawn, nor of a zombie)."""
        if self._process is not None:
            return self._process.poll() is not None
        return self.pid() is None

    def is_mounted(self) -> bool:
        return os.path.ismount(self.root)

    # Making and booting ---------------------------------------------------------

    def prepare(self, all_hosts: list[Host]) -> None:
        """The overlay root, with what is the host's own written into it."""
        for part in ("upper", "work", "root"):
            (self.dir / part).mkdir(parents=True, exist_ok=True)
        (self.dir / "address").write_text(f"{self.host.address}\n")  # for known_hosts
        if not self.is_mounted():
            subprocess.run(
                ["mount", "-t", "overlay", "overlay", "-o",
                 f"lowerdir={self.paths.rootfs},upperdir={self.dir / 'upper'},"
                 f"workdir={self.dir / 'work'}", str(self.root)], check=True)
        etc = self.root / "etc"
        (etc / "hostname").write_text(f"{self.host.name}\n")
        (etc / "hosts").write_text(
            "# The test bed's hosts (testbed.machines)\n127.0.0.1\tlocalhost\n"
            + "".join(f"{host.address}\t{host.name}\n" for host in all_hosts))
        if not (etc / "ssh" / "ssh_host_ed25519_key").exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.host.name,
                            "-f", str(etc / "ssh" / "ssh_host_ed25519_key")], check=True)
        self._authorize(self.paths.ssh_key.with_suffix(".pub").read_text())

    def _authorize(self, public_key: str) -> None:
        uid, gid = _ids(self.root, layout.DEPLOY_USER)
        ssh_dir = self.root / "home" / layout.DEPLOY_USER / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        keys = ssh_dir / "authorized_keys"
        keys.write_text(public_key)
        keys.chmod(0o600)
        for path in (ssh_dir, keys):
            os.chown(path, uid, gid)

    def start(self) -> None:
        """Boot the machine in the background (its console goes to nspawn.log)."""
        cgroups = cgroup_dirs(self.host.name)
        for cgroup in cgroups:
            cgroup.mkdir(parents=True, exist_ok=True)
        command = [
            "systemd-nspawn", "--boot", "--quiet",
            "--register=no", "--keep-unit",
            f"--directory={self.root}", f"--machine={self.host.name}",
            f"--network-namespace-path=/run/netns/{self.host.netns}",
            "--resolv-conf=off", "--timezone=off", "--link-journal=no",
            "--console=read-only",
        ]
        if self.host.shared_storage:
            self.paths.shared_storage.mkdir(mode=0o755, parents=True, exist_ok=True)
            command.append(f"--bind={self.paths.shared_storage}:{self.host.shared_storage}")
        # The shell enters the machine's cgroups, then becomes nspawn (same pid).
        enter_cgroups = "; ".join(f'echo $$ > "${index + 1}"' for index in range(len(cgroups)))
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                ["sh", "-c", f'{enter_cgroups}; shift {len(cgroups)}; exec "$@"', "sh",
                 *(str(cgroup / "cgroup.procs") for cgroup in cgroups), *command],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.pid_file.write_text(f"{process.pid}\n")
        self._process = process

    # Stopping and removing ------------------------------------------------------

    def halt(self) -> None:
        """Shut the machine down, keeping its disk (the overlay's upper dir). nspawn
        gets a grace period to halt it; whatever is left in the machine's cgroups then
        is killed (all of it, even when nspawn was killed and left its payload behind)."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + _STOP_SECONDS
            while self.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.2)
        cgroups = cgroup_dirs(self.host.name)
        for cgroup in cgroups:
            _kill_cgroup(cgroup)
        if self.is_mounted():
            subprocess.run(["umount", str(self.root)], check=True)
        for cgroup in cgroups:
            _remove_cgroup(cgroup)
        # nspawn leaves its mount-propagation directory when /run is not a tmpfs.
        shutil.rmtree(_NSPAWN_PROPAGATE / self.host.name, ignore_errors=True)

    def remove(self) -> None:
        """Halt the machine and delete it, disk and all."""
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)


def _ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise LookupError(f"{user} is not a user of {root}")


def _cgroup_pids(cgroup: Path) -> set[int]:
    pids: set[int] = set()
    for directory, _, _ in os.walk(cgroup):
        with suppress(OSError):
            pids |= {int(line) for line in Path(directory, "cgroup.procs").read_text().split()}
    return pids


def _kill_cgroup(cgroup: Path) -> None:
    """SIGKILL every process of a cgroup and the ones below it, until none is left."""
    while pids := _cgroup_pids(cgroup):
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _remove_cgroup(cgroup: Path) -> None:
    """A cgroup and the ones nspawn made below it (empty by now: rmdir, bottom up)."""
    if not cgroup.is_dir():
        return
    for directory, _, _ in sorted(os.walk(cgroup), key=lambda entry: -len(entry[0])):
        with suppress(OSError):
            os.rmdir(directory)
    with suppress(OSError):
        cgroup.parent.rmdir()  # evilnet-testbed/, once the last machine is gone
