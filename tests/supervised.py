"""The local stack's supervised programs, as tests see them: one supervisord per host."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

from stack_clients import LOCAL_INVENTORY, local_inventory

from evilnet.platform.footprint import host_roots

REPO_ROOT = Path(__file__).resolve().parents[1]


@cache
def _host_roots() -> dict[str, Path]:
    return host_roots(local_inventory())


def local_hosts() -> list[str]:
    """The suite's stack's hosts whose root (evilnet_root) is on this machine."""
    return sorted(_host_roots())


def host_root(host: str) -> Path:
    """A host's root (evilnet_root) of the suite's stack, as Ansible renders it."""
    try:
        return _host_roots()[host]
    except KeyError:
        raise LookupError(f"{host}: no root on this machine for {LOCAL_INVENTORY} "
                          "(run `make up` with it)") from None


def supervisorctl(host: str, *args: str) -> str:
    """supervisorctl's output for one local host (its own supervisord)."""
    root = host_root(host)
    result = subprocess.run([str(root / "venv" / "bin" / "supervisorctl"), "-c",
                             str(root / "supervisor" / "supervisord.conf"), *args],
                            capture_output=True, text=True, timeout=120, check=False)
    return result.stdout


def service_pid(host: str, service: str) -> int | None:
    """The process id of a running program, None when it is not running."""
    out = supervisorctl(host, "pid", service).strip()
    return int(out) if out.isdigit() and int(out) > 0 else None


def running_programs(host: str) -> dict[str, int]:
    """Every RUNNING program of a host, by name, with its process id."""
    programs = {}
    for line in supervisorctl(host, "status").splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[1] == "RUNNING" and fields[2] == "pid":
            programs[fields[0]] = int(fields[3].rstrip(","))
    return programs


# supervisord's states of a program that runs or is being (re)started: STARTING
# lasts a program's startsecs, BACKOFF its retries after an early exit.
LIVE_STATES = frozenset({"STARTING", "RUNNING", "BACKOFF"})


def live_programs(host: str) -> set[str]:
    """The programs of a host that run or that supervisord is starting."""
    return {fields[0] for fields in map(str.split, supervisorctl(host, "status").splitlines())
            if len(fields) >= 2 and fields[1] in LIVE_STATES}
