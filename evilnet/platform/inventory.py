"""An Ansible inventory as the tools see it: hosts, groups, and their endpoints.

The inventory is the one description of where services run; ports and other
settings come from the inventory or, when it does not set them, from the roles'
own ``defaults/main.yml`` (read here, never copied).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import yaml

from evilnet.platform import health as checks
from evilnet.schema import KEYSPACE

ROLES_DIR = Path(__file__).resolve().parents[2] / "ansible" / "roles"

# The group names are fixed: tools, docs and playbooks rely on them.
GROUPS = ("zookeeper", "kafka", "cassandra", "spark_master", "spark_workers",
          "producers", "grafana", "prometheus")


class InventoryError(RuntimeError):
    """The inventory cannot be read."""


def _ansible_inventory() -> str:
    beside_python = Path(sys.executable).with_name("ansible-inventory")
    found = str(beside_python) if beside_python.exists() else shutil.which("ansible-inventory")
    if not found:
        raise InventoryError("ansible-inventory not found: run `make venv` first")
    return found


@dataclass
class Inventory:
    groups: dict[str, list[str]]
    hostvars: dict[str, dict]

    @classmethod
    def load(cls, path: Path) -> Inventory:
        result = subprocess.run([_ansible_inventory(), "-i", str(path), "--list"],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise InventoryError(f"cannot read inventory {path}:\n{result.stderr.strip()}")
        data = json.loads(result.stdout)
        hostvars = data.get("_meta", {}).get("hostvars", {})
        groups = {name: list(data.get(name, {}).get("hosts", [])) for name in GROUPS}
        return cls(groups, hostvars)

    def var(self, host: str, name: str, role: str):
        """A host's variable, falling back to the role's default."""
        if name in self.hostvars.get(host, {}):
            return self.hostvars[host][name]
        return _role_defaults(role)[name]

    def address(self, host: str) -> str:
        return self.hostvars.get(host, {}).get("ansible_host", host)

    def kafka_bootstrap(self) -> str:
        return ",".join(f"{self.address(h)}:{self.var(h, 'kafka_port', 'kafka')}"
                        for h in self.groups["kafka"])

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

    def producer_checks(self, inventory_path: Path) -> Iterator[tuple[str, str, checks.Check]]:
        """One check per shard that the producer hosts say they run (asks the hosts)."""
        from evilnet.plan_cli import deployed_shards

        for shard in deployed_shards(inventory_path):
            yield (f"producer {shard['name']}", f"{shard['address']}:{shard['metrics_port']}",
                   partial(checks.producer_shard, shard["address"], shard["metrics_port"]))


def _enabled(value: object) -> bool:
    """An inventory boolean, as Ansible's ``bool`` filter reads it."""
    return str(value).strip().lower() in ("true", "yes", "on", "1")


def _role_defaults(role: str) -> dict:
    path = ROLES_DIR / role / "defaults" / "main.yml"
    return yaml.safe_load(path.read_text()) or {}
