"""An Ansible inventory as the tools see it: hosts, groups, and their endpoints.

The inventory is the one description of where services run; ports and other
settings come from the inventory or, when it does not set them, from the roles'
own ``defaults/main.yml`` (read, never copied). The roles' directory is given by
the caller (the command line's ``--roles``): an installed package has no checkout
to look in.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from evilnet.planner import Settings
from evilnet.platform import health as checks
from evilnet.schema import KEYSPACE

# What the producer role records of the shards a host runs, under its evilnet_root.
DEPLOYED_FILE = "producers/deployed.json"
# The command lines' default for the roles' directory: ansible.cfg's roles_path,
# relative to the repository root they run from (the Makefile, Jenkins, the roles).
DEFAULT_ROLES = Path("ansible/roles")

# The group names are fixed: tools, docs and playbooks rely on them.
GROUPS = ("zookeeper", "kafka", "cassandra", "spark_master", "spark_workers",
          "producers", "grafana", "prometheus")


class InventoryError(RuntimeError):
    """The inventory cannot be read."""


def _ansible_tool(name: str) -> str:
    """An Ansible command of the running environment (the venv's), else from PATH."""
    beside_python = Path(sys.executable).with_name(name)
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if not found:
        raise InventoryError(f"{name} not found: run `make venv` first")
    return found


@dataclass
class Inventory:
    path: Path
    groups: dict[str, list[str]]
    hostvars: dict[str, dict]
    # The roles whose defaults/main.yml hold what the inventory does not set.
    roles: Path

    @classmethod
    def load(cls, path: Path, *, roles: Path) -> Inventory:
        result = subprocess.run([_ansible_tool("ansible-inventory"), "-i", str(path), "--list"],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise InventoryError(f"cannot read inventory {path}:\n{result.stderr.strip()}")
        data = json.loads(result.stdout)
        hostvars = data.get("_meta", {}).get("hostvars", {})
        groups = {name: list(data.get(name, {}).get("hosts", [])) for name in GROUPS}
        return cls(path, groups, hostvars, roles)

    def var(self, host: str, name: str, role: str):
        """A host's variable, falling back to the role's default."""
        if name in self.hostvars.get(host, {}):
            return self.hostvars[host][name]
        defaults = self.roles / role / "defaults" / "main.yml"
        try:
            return (yaml.safe_load(defaults.read_text()) or {})[name]
        except (OSError, KeyError):
            raise InventoryError(f"{name}: not set for {host} in {self.path}, and not in "
                                 f"{defaults} (--roles names the roles' directory)") from None

    def address(self, host: str) -> str:
        return self.hostvars.get(host, {}).get("ansible_host", host)

    def kafka_bootstrap(self) -> str:
        return ",".join(f"{self.address(h)}:{self.var(h, 'kafka_port', 'kafka')}"
                        for h in self.groups["kafka"])

    def planner_settings(self) -> Settings:
        """What the planner needs of this inventory (raises PlanError, InventoryError)."""
        hosts = self.groups["producers"]
        return Settings.from_variables(
            str(self.path), {host: self.address(host) for host in hosts},
            self.hostvars.get(hosts[0], {}) if hosts else {}, self.kafka_bootstrap())

    def health_checks(self) -> Iterator[tuple[str, str, Callable[[], checks.Health]]]:
        zookeeper = [(self.address(h), int(self.var(h, "zookeeper_client_port", "zookeeper")))
                     for h in self.groups["zookeeper"]]
        for host, port in zookeeper:
            yield "zookeeper", f"{host}:{port}", partial(checks.zookeeper_node, host, port)
        if zookeeper:
            yield ("zookeeper ensemble", f"{len(zookeeper)} nodes",
                   partial(checks.zookeeper_ensemble, zookeeper))

        brokers = self.groups["kafka"]
        if brokers:
            bootstrap = self.kafka_bootstrap()
            ids = {int(self.var(h, "kafka_broker_id", "kafka")) for h in brokers}
            yield "kafka", bootstrap, partial(checks.kafka_cluster, bootstrap, ids)

        for host in self.groups["cassandra"]:
            address = self.address(host)
            port = int(self.var(host, "cassandra_native_port", "cassandra"))
            yield "cassandra", f"{address}:{port}", partial(checks.cassandra_node, address, port)

        for host in self.groups["spark_master"]:
            ui = f"http://{self.address(host)}:{self.var(host, 'spark_master_webui_port', 'spark')}"
            workers = {self.address(w) for w in self.groups["spark_workers"]}
            yield "spark", ui, partial(checks.spark_cluster, ui, workers)

        cassandra = [self.address(h) for h in self.groups["cassandra"]]
        for host in self.groups["spark_master"]:
            job = self.var(host, "stream_job_name", "stream_job")
            # The role's default is the contract's keyspace, named through a variable
            # that only a play resolves (playbooks/group_vars/all/contracts.yml).
            keyspace = self.hostvars.get(host, {}).get("stream_job_keyspace", KEYSPACE)
            port = int(self.var(host, "stream_job_cassandra_port", "stream_job"))
            # A healthy job records a micro-batch every trigger, idle or not.
            max_age = 3 * float(self.var(host, "stream_job_trigger_seconds", "stream_job")) + 30
            yield ("stream job", f"{job} on {self.address(host)}",
                   partial(checks.stream_job, cassandra, port, keyspace, job, max_age))

        producers = self.groups.get("producers", [])
        if producers and _enabled(self.var(producers[0], "x_api_simulator_enabled",
                                           "x_api_simulator")):
            port = self.var(producers[0], "x_api_simulator_port", "x_api_simulator")
            url = f"http://{self.address(producers[0])}:{port}"
            yield "x api simulator", url, partial(checks.x_api_simulator, url)

        for host in self.groups.get("prometheus", []):
            url = f"http://{self.address(host)}:{self.var(host, 'prometheus_port', 'prometheus')}"
            yield "prometheus", url, partial(checks.prometheus, url)

        # Where the Grafana server is skipped (our machines) there is nothing to ask.
        for host in self.groups.get("grafana", []):
            if _enabled(self.var(host, "grafana_server_enabled", "grafana")):
                url = f"http://{self.address(host)}:{self.var(host, 'grafana_port', 'grafana')}"
                yield "grafana", url, partial(checks.grafana, url)

    def producer_checks(self) -> Iterator[tuple[str, str, checks.Check]]:
        """One check per shard that the producer hosts say they run (asks the hosts)."""
        for shard in deployed_shards(self.path):
            yield (f"producer {shard['name']}", f"{shard['address']}:{shard['metrics_port']}",
                   partial(checks.producer_shard, shard["address"], shard["metrics_port"]))


def _enabled(value: object) -> bool:
    """An inventory boolean, as Ansible's ``bool`` filter reads it."""
    return str(value).strip().lower() in ("true", "yes", "on", "1")


def deployed_shards(inventory: Path) -> list[dict[str, Any]]:
    """The shards every producer host says it runs (producers/deployed.json on each)."""
    result = subprocess.run(
        [_ansible_tool("ansible"), "producers", "-i", str(inventory), "-o",
         "-m", "ansible.builtin.slurp", "-a", "src={{ evilnet_root }}/" + DEPLOYED_FILE],
        capture_output=True, text=True, check=False)
    shards: list[dict[str, Any]] = []
    for line in result.stdout.splitlines():
        host, _, rest = line.partition(" | ")
        status, _, payload = rest.partition(" => ")
        if not payload:
            continue
        answer = json.loads(payload)
        if status.startswith("SUCCESS"):
            shards += json.loads(base64.b64decode(answer["content"]))["shards"]
        elif "not found" in answer.get("msg", "") or "not exist" in answer.get("msg", ""):
            continue  # nothing deployed on this host yet
        else:
            raise InventoryError(f"cannot read what {host} runs: {answer.get('msg', status)}")
    if result.returncode not in (0, 2) or (result.returncode and not result.stdout):
        raise InventoryError(f"ansible producers: {result.stderr.strip()[-2000:]}")
    return shards
