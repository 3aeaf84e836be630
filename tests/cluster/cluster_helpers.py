"""Reaching the bed's hosts as Ansible reaches them: ad-hoc modules through
ansible-runner, over SSH as the deploy user with the inventory's become, each host's
result as data; and the bed's own `up`."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ansible_runner

from evilnet.platform.inventory import Inventory
from evilnet.platform.playbook import PlaybookRun, run_playbook

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# A cold start from the cached rootfs takes seconds; a first one builds the rootfs.
BED_UP_SECONDS = 900
# The bed's controller stages apart from the local stack: testbed.layout's
# Paths.stage, the Makefile's CLUSTER_STAGE (testbed/ is not importable from here).
STAGE_DIR = REPO_ROOT / ".run" / "testbed" / "stage"
# A first site.yml on fifteen fresh hosts (apt installs, three Cassandra joins one
# at a time) on two cores; a second one, or one on a deployed bed, takes minutes.
SITE_SECONDS = 2400


@dataclass(frozen=True)
class HostResult:
    status: str  # ok, failed or unreachable: Ansible's verdict on the host
    result: Mapping[str, Any]  # the module's result

    @property
    def stdout(self) -> str:
        return self.result.get("stdout", "")


_RESULTS = {"runner_on_ok": "ok", "runner_on_failed": "failed",
            "runner_on_unreachable": "unreachable"}


@dataclass(frozen=True)
class Cluster:
    inventory: Inventory
    hosts: tuple[str, ...]  # the inventory's hosts that this run brought up

    def address(self, host: str) -> str:
        return self.inventory.address(host)

    def run(self, module: str, arguments: str = "", *, become: bool = True,
            hosts: tuple[str, ...] | None = None,
            extravars: Mapping[str, Any] | None = None) -> dict[str, HostResult]:
        """An ad-hoc module on the hosts, as ``ansible`` runs it from the checkout."""
        extravars = {**(extravars or {}), "ansible_become": become}
        with tempfile.TemporaryDirectory(prefix="evilnet-cluster-") as private_data_dir:
            runner = ansible_runner.run(
                private_data_dir=private_data_dir, project_dir=str(REPO_ROOT),
                inventory=str(self.inventory.path), host_pattern=",".join(hosts or self.hosts),
                module=module, module_args=arguments, extravars=extravars, quiet=True,
                envvars={"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
                         "ANSIBLE_NOCOLOR": "1",
                         "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
            found = {}
            for event in runner.events:
                if event.get("event") in _RESULTS:
                    data = event["event_data"]
                    found[data["host"]] = HostResult(_RESULTS[event["event"]], data["res"])
            with runner.stdout as stdout:
                output = stdout.read()
        assert set(found) == set(hosts or self.hosts), output
        return found


def bring_up(hosts: tuple[str, ...]) -> subprocess.CompletedProcess:
    """The bed's own `up`, as `make cluster-up` runs it."""
    return subprocess.run([sys.executable, "-m", "testbed", "up", *hosts], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=BED_UP_SECONDS, check=False)


def stage() -> subprocess.CompletedProcess:
    """The bed's artifacts and Debian packages, as `make cluster-stage` stages them."""
    return subprocess.run([str(BIN / "evilnet"), "stage", "--debian"], cwd=REPO_ROOT,
                          env={**os.environ, "EVILNET_CACHE": str(STAGE_DIR)},
                          capture_output=True, text=True, timeout=1800, check=False)


def deploy(playbook: str = "ansible/site.yml", *extra_args: str) -> PlaybookRun:
    """A playbook on the bed from the controller, over SSH, with the bed's stage."""
    return run_playbook(playbook, REPO_ROOT / "inventories" / "cluster", project_dir=REPO_ROOT,
                        extra_args=("-e", f"evilnet_stage_dir={STAGE_DIR}", *extra_args),
                        timeout=SITE_SECONDS)


def evilnet(*arguments: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The controller's evilnet command, on the bed's inventory."""
    return subprocess.run([str(BIN / "evilnet"), "-i", str(REPO_ROOT / "inventories" / "cluster"),
                           *arguments], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)
