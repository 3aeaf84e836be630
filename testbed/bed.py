"""The bed as a whole: up, down and status of every declared host, in parallel.

``up`` is idempotent: a host whose machine runs is left as it is (only asked over
SSH whether it is ready), so a second ``up`` changes nothing; a host whose machine
stopped boots again with its disk. It returns once every
host answers SSH as the deploy user and its systemd has finished booting.
``down`` stops and removes the machines, their namespaces and the bridge; the cached
rootfs and the controller's key stay for the next ``up``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from testbed import layout, network, rootfs
from testbed.hosts import Host
from testbed.machines import Machine

# A cold boot takes seconds; the margin is for a loaded controller.
READY_SECONDS = 180
# systemctl is-system-running's answers once booting is over; "degraded" (a unit
# failed) is still a booted host, and the tests say which unit.
BOOTED_STATES = ("running", "degraded")


def ssh_command(paths: layout.Paths, host: Host, *command: str,
                connect_timeout: int = 3) -> list[str]:
    """ssh as the deploy user with the bed's key, checking the host's key."""
    return ["ssh", "-i", str(paths.ssh_key), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={paths.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", f"ConnectTimeout={connect_timeout}",
            "-o", "LogLevel=ERROR", f"{layout.DEPLOY_USER}@{host.address}", *command]


@dataclass(frozen=True)
class HostState:
    host: Host
    running: bool  # its machine runs
    state: str | None  # systemctl is-system-running over SSH, None if SSH does not answer


def up(hosts: list[Host], paths: layout.Paths, say: Callable[[str], None] = print, *,
       every_host: list[Host] | None = None) -> None:
    """Boot ``hosts``; ``every_host`` (default: ``hosts``) is the whole bed, which each
    host's /etc/hosts names."""
    started = time.monotonic()
    if not rootfs.is_current(paths) and paths.machines.is_dir() \
            and any(paths.machines.iterdir()):
        # The machines' overlays stand on the rootfs: it cannot be rebuilt under them.
        raise RuntimeError("the rootfs recipe changed: `make cluster-down` first")
    if rootfs.ensure(paths):
        say(f"rootfs built in {time.monotonic() - started:.0f} s: {paths.rootfs}")
    rootfs.ensure_ssh_key(paths)
    network.ensure_bridge()
    machines = [Machine(host, paths) for host in hosts]

    def boot(machine: Machine) -> str:
        network.ensure_host_network(machine.host)
        if machine.pid() is not None:
            return "already up"
        # A machine that stopped (or whose nspawn was killed) boots again with its
        # disk, as a real host does after a crash.
        machine.halt()
        machine.prepare(every_host or hosts)
        machine.start()
        return "booting"

    for machine, outcome in zip(machines, _in_parallel(boot, machines), strict=True):
        say(f"{machine.host.name:<16} {machine.host.address!s:<14} {outcome}")
    _write_known_hosts(paths)

    states = _in_parallel(lambda machine: _wait_until_booted(machine, paths), machines)
    not_ready = [f"{machine.host.name} ({state})"
                 for machine, state in zip(machines, states, strict=True)
                 if state not in BOOTED_STATES]
    if not_ready:
        raise RuntimeError(f"not booted: {', '.join(not_ready)}; "
                           f"see {paths.machines}/<name>/nspawn.log")
    say(f"{len(machines)} hosts answer SSH ({time.monotonic() - started:.1f} s)")


def down(hosts: Iterable[Host], paths: layout.Paths, say: Callable[[str], None] = print,
         *, whole_bed: bool = True) -> None:
    """Stop and remove the hosts; with the whole bed, its bridge and shared storage too.

    The shared storage is the hosts' NFS stand-in: it holds the stream job's
    checkpoint, whose offsets and state belong to the Kafka topic and Cassandra
    tables of these hosts. Kept past them, it would make the next bed's job resume
    the old windows' state against a new, empty topic and count old posts again.
    """
    def remove(host: Host) -> bool:
        machine = Machine(host, paths)
        was_running = machine.pid() is not None
        machine.remove()
        network.remove_host_network(host)
        return was_running

    stopped = sum(_in_parallel(remove, list(hosts)))
    _write_known_hosts(paths)
    if whole_bed:
        network.remove_bridge()
        shutil.rmtree(paths.shared_storage, ignore_errors=True)
    say(f"{stopped} running hosts stopped and removed"
        + (", and the bridge and shared storage" if whole_bed else ""))


def status(hosts: list[Host], paths: layout.Paths) -> list[HostState]:
    def probe(host: Host) -> HostState:
        running = Machine(host, paths).pid() is not None
        return HostState(host, running, _system_state(host, paths) if running else None)

    return _in_parallel(probe, hosts)


def _wait_until_booted(machine: Machine, paths: layout.Paths) -> str:
    """The host's systemd state once it answers SSH and is done booting (or why not,
    after READY_SECONDS)."""
    deadline = time.monotonic() + READY_SECONDS
    state = f"no SSH answer within {READY_SECONDS} s"
    while time.monotonic() < deadline:
        if machine.has_exited():
            return "its nspawn exited"
        state = _system_state(machine.host, paths, wait=True) or state
        if state in BOOTED_STATES:
            return state
        time.sleep(0.5)
    return state


def _system_state(host: Host, paths: layout.Paths, *, wait: bool = False) -> str | None:
    command = ["systemctl", "is-system-running", *(["--wait"] if wait else [])]
    try:
        result = subprocess.run(ssh_command(paths, host, *command), capture_output=True,
                                text=True, timeout=READY_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return None
    if result.returncode == 255:  # ssh's own failure: no answer from the host
        return None
    # systemctl exits non-zero for any state but "running", and prints it still.
    return result.stdout.strip() or None


def _write_known_hosts(paths: layout.Paths) -> None:
    """Every prepared machine's host key, by address and name (ssh checks them)."""
    lines = []
    if paths.machines.is_dir():
        for directory in sorted(paths.machines.iterdir()):
            key = directory / "root" / "etc" / "ssh" / "ssh_host_ed25519_key.pub"
            address_file = directory / "address"
            if key.is_file() and address_file.is_file():
                key_type, key_data = key.read_text().split()[:2]
                lines.append(f"{address_file.read_text().strip()},{directory.name} "
                             f"{key_type} {key_data}\n")
    paths.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    paths.known_hosts.write_text("".join(lines))


def _in_parallel(work: Callable, items: list) -> list:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(work, items))
