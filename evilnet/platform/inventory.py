"""An Ansible inventory as the tools see it: hosts, groups, and their endpoints.

The inventory is the one description of where services run; ports and other
settings come from the inventory or, when it does not set them, from the roles'
own ``defaults/main.yml`` (read, never copied). The roles' directory is given by
the caller (the command line's ``--roles``): an installed package has no checkout
to look in.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from evilnet.cassandra_clients import READER, CassandraSecurity, Role
from evilnet.kafka_clients import ADMIN, KafkaSecurity, Principal
from evilnet.locations import (
    Endpoint,
    LocationError,
    Locations,
    Stack,
)
from evilnet.metrics_endpoint import SCRAPE_PASSWORD_ENV, SCRAPE_SECRET, SCRAPE_USER
from evilnet.planner import Settings
from evilnet.platform import health as checks
from evilnet.platform import secrets
from evilnet.schema import KEYSPACE

# What the producer role records of the shards a host runs, under its evilnet_root.
DEPLOYED_FILE = "producers/deployed.json"
# The command lines' default for the roles' directory: ansible.cfg's roles_path,
# relative to the repository root they run from (the Makefile, Jenkins, the roles).
DEFAULT_ROLES = Path("ansible/roles")

# The group names are fixed: tools, docs and playbooks rely on them.
GROUPS = ("zookeeper", "kafka", "kafka_controllers", "cassandra", "spark_master", "spark_workers",
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

    @classmethod
    def of(cls, stack: Stack | None) -> Inventory:
        """The inventory the command line found (`evilnet -i`, …), read whole."""
        if stack is None:
            raise LocationError("no inventory: run this through `evilnet -i INVENTORY`")
        if stack.inventory is None:
            stack.locations()  # raises why no inventory was found
        return cls.load(stack.inventory, roles=stack.roles)

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

    # --- the controller's own files: CA, certificates, secrets (docs/security.md) ---

    def setting(self, name: str) -> str | None:
        """An inventory-wide setting (group_vars/all), as the tools need it: a word or a
        path, never a template."""
        if not self.hostvars:
            raise InventoryError(f"{self.path} has no hosts")
        value = self.hostvars[sorted(self.hostvars)[0]].get(name)
        if value is not None and "{{" in str(value):
            raise InventoryError(f"{name}: a template ({value}) where the tools need a "
                                 f"path or a word ({self.path})")
        return value

    def controller_dir(self, name: str) -> Path:
        """A directory the inventory names for the controller (evilnet_pki_dir,
        evilnet_secrets_dir), relative to the inventory's directory, outside it."""
        value = self.setting(name)
        if not value:
            raise InventoryError(f"{name}: not set in {self.path} (its "
                                 "group_vars/all.yml names it: docs/security.md)")
        base = self.path if self.path.is_dir() else self.path.parent
        found = (base / value).resolve()
        # Ansible reads every file of an inventory directory as an inventory source:
        # a secret there would become a host name, printed by every run.
        if found.is_relative_to(base.resolve()):
            raise InventoryError(f"{name}: {found} is inside the inventory directory "
                                 f"{base}, whose every file Ansible reads as inventory")
        return found

    def kafka_security(self, principal: Principal = ADMIN) -> KafkaSecurity | None:
        """How the controller logs in to this inventory's Kafka as ``principal``: its
        SCRAM password from the inventory's secret files and the CA bundle; None
        where the cluster is plaintext (kafka_security_enabled false)."""
        brokers = self.groups["kafka"]
        if not brokers or not _enabled(self.var(brokers[0], "kafka_security_enabled", "kafka")):
            return None
        if self.setting("evilnet_secrets_source") != "files":
            raise InventoryError(f"{self.path} keeps its secrets in Vault: give a client "
                                 "properties file (--kafka-client-config)")
        password = secrets.read(self.controller_dir("evilnet_secrets_dir"), principal.secret)
        return KafkaSecurity(principal.name, password,
                             str(self.controller_dir("evilnet_pki_dir") / "ca.crt"))

    def cassandra_security(self, role: Role = READER) -> CassandraSecurity | None:
        """How the controller logs in to this inventory's Cassandra as ``role``: its
        password from the inventory's secret files and the CA bundle; None where the
        cluster is plaintext (cassandra_security_enabled false)."""
        nodes = self.groups["cassandra"]
        if not nodes or not _enabled(self.var(nodes[0], "cassandra_security_enabled",
                                              "cassandra")):
            return None
        if self.setting("evilnet_secrets_source") != "files":
            raise InventoryError(f"{self.path} keeps its secrets in Vault: give a login "
                                 "file (--cassandra-login)")
        password = secrets.read(self.controller_dir("evilnet_secrets_dir"), role.secret)
        return CassandraSecurity(role.name, password,
                                 str(self.controller_dir("evilnet_pki_dir") / "ca.crt"))

    def zookeeper_tls(self) -> checks.ClientTls | None:
        """The controller's client certificate towards this inventory's ZooKeeper
        (``ssl.clientAuth=need``); None where it is plaintext."""
        nodes = self.groups["zookeeper"]
        if not nodes or not _enabled(self.var(nodes[0], "zookeeper_tls_enabled", "zookeeper")):
            return None
        pki_dir = self.controller_dir("evilnet_pki_dir")
        return checks.ClientTls(str(pki_dir / "ca.crt"), str(pki_dir / "clients/controller.crt"),
                                str(pki_dir / "clients/controller.key"))

    def spark_ui_cafile(self) -> str | None:
        """The CA bundle the Spark UIs' HTTPS is verified with (spark_security_enabled);
        None where the UIs are plain HTTP."""
        masters = self.groups["spark_master"]
        if not masters or not _enabled(self.var(masters[0], "spark_security_enabled", "spark")):
            return None
        return str(self.controller_dir("evilnet_pki_dir") / "ca.crt")

    def spark_master_ui(self) -> str | None:
        """The master's web UI: HTTPS on its TLS port where Spark is secured."""
        masters = self.groups["spark_master"]
        if not masters:
            return None
        host = masters[0]
        secured = _enabled(self.var(host, "spark_security_enabled", "spark"))
        port = int(self.var(host, "spark_master_webui_port", "spark"))
        if secured:
            port += int(self.var(host, "spark_ui_tls_port_offset", "spark"))
        return f"{'https' if secured else 'http'}://{self.address(host)}:{port}"

    def prometheus_url(self, host: str) -> str:
        secured = _enabled(self.var(host, "prometheus_security_enabled", "prometheus"))
        return (f"{'https' if secured else 'http'}://{self.address(host)}:"
                f"{self.var(host, 'prometheus_port', 'prometheus')}")

    def prometheus_login(self, host: str) -> checks.WebLogin | None:
        """How the controller logs in to this inventory's Prometheus on ``host``: basic
        auth with the password of the inventory's secret files, TLS verified with its
        CA; None where Prometheus is plain HTTP (prometheus_security_enabled false)."""
        if not _enabled(self.var(host, "prometheus_security_enabled", "prometheus")):
            return None
        if self.setting("evilnet_secrets_source") != "files":
            raise InventoryError(f"{self.path} keeps its secrets in Vault: the controller "
                                 "has no Prometheus password file to log in with")
        password = secrets.read(self.controller_dir("evilnet_secrets_dir"), "prometheus_password")
        return checks.WebLogin(str(self.var(host, "prometheus_web_user", "prometheus")), password,
                               str(self.controller_dir("evilnet_pki_dir") / "ca.crt"))

    def metrics_secured(self) -> bool:
        """Whether the exporters demand Prometheus's scrape login over TLS: the first
        Prometheus host's prometheus_security_enabled (without one, any host's: the
        inventory-wide setting), else the prometheus role's default
        (evilnet_metrics_secured in conventions.yml, read the same way)."""
        host = (self.groups.get("prometheus") or sorted(self.hostvars) or [""])[0]
        return _enabled(self.var(host, "prometheus_security_enabled", "prometheus"))

    def metrics_login(self) -> checks.WebLogin | None:
        """How the controller scrapes this inventory's exporters (the producers' and
        the others' metrics endpoints): Prometheus's scrape login, from the
        inventory's secret files (with Vault: the environment variable
        $PROMETHEUS_SCRAPE_PASSWORD, as Jenkins binds it), TLS verified with its CA;
        None where they are plain HTTP (evilnet.metrics_endpoint)."""
        if not self.metrics_secured():
            return None
        if self.setting("evilnet_secrets_source") == "files":
            password = secrets.read(self.controller_dir("evilnet_secrets_dir"), SCRAPE_SECRET)
        else:
            password = os.environ.get(SCRAPE_PASSWORD_ENV, "")
            if not password:
                raise InventoryError(
                    f"{self.path} keeps its secrets in Vault: the controller has no scrape "
                    f"password file; give Prometheus's scrape password in ${SCRAPE_PASSWORD_ENV} "
                    "(Jenkins: withCredentials) or on stdin (--metrics-password-stdin)")
        return checks.WebLogin(SCRAPE_USER, password,
                               str(self.controller_dir("evilnet_pki_dir") / "ca.crt"))

    def kafka_node_id(self, host: str) -> int:
        """A KRaft node's id: its own ``kafka_node_id``, else (a broker, combined or
        not) its ``kafka_broker_id``, as the kafka role's default says."""
        own = self.hostvars.get(host, {}).get("kafka_node_id")
        return int(own if own is not None else self.var(host, "kafka_broker_id", "kafka"))

    def kafka_bootstrap(self) -> str:
        return ",".join(f"{self.address(h)}:{self.var(h, 'kafka_port', 'kafka')}"
                        for h in self.groups["kafka"])

    def locations(self) -> Locations:
        """Where every service of this inventory listens (see evilnet.locations)."""
        def endpoints(group: str, port_variable: str, role: str) -> tuple[Endpoint, ...]:
            return tuple(Endpoint(self.address(h), int(self.var(h, port_variable, role)))
                         for h in self.groups[group])

        masters = self.groups["spark_master"]
        producers = self.groups["producers"]
        simulator = None
        if producers and _enabled(self.var(producers[0], "x_api_simulator_enabled",
                                           "x_api_simulator")):
            port = self.var(producers[0], "x_api_simulator_port", "x_api_simulator")
            simulator = f"http://{self.address(producers[0])}:{port}"
        # The role's default is the contract's keyspace, named through a variable
        # that only a play resolves (playbooks/group_vars/all/contracts.yml).
        keyspace = (self.hostvars.get(masters[0], {}).get("stream_job_keyspace", KEYSPACE)
                    if masters else KEYSPACE)
        return Locations(
            source=str(self.path),
            cassandra=endpoints("cassandra", "cassandra_native_port", "cassandra"),
            keyspace=keyspace,
            bootstrap_servers=endpoints("kafka", "kafka_port", "kafka"),
            spark_master=self.spark_master_ui(),
            spark_workers=tuple(self.address(w) for w in self.groups["spark_workers"]),
            zookeeper=endpoints("zookeeper", "zookeeper_client_port", "zookeeper"),
            simulator=simulator,
            plan=self._plan_dir(),
            kafka_login=self._kafka_login,
            cassandra_login=self.cassandra_security)

    def _kafka_login(self) -> dict[str, str]:
        security = self.kafka_security()
        return security.kwargs() if security else {}

    def _plan_dir(self) -> Path | None:
        """The plan the producer role rolls out when none is given (its defaults)."""
        hosts = self.groups["producers"]
        if not hosts:
            return None
        chosen = self.hostvars.get(hosts[0], {}).get("producer_plan_dir")
        if chosen:
            return Path(chosen)
        # The default names its place relative to the role ({{ role_path }}).
        default = str(self.var(hosts[0], "producer_default_plan_dir", "producer"))
        return Path(default.replace("{{ role_path }}", str(self.roles / "producer"))).resolve()

    def planner_settings(self) -> Settings:
        """What the planner needs of this inventory (raises PlanError, InventoryError)."""
        hosts = self.groups["producers"]
        return Settings.from_variables(
            str(self.path), {host: self.address(host) for host in hosts},
            self.hostvars.get(hosts[0], {}) if hosts else {}, self.kafka_bootstrap())

    def health_checks(self) -> Iterator[tuple[str, str, Callable[[], checks.Health]]]:
        zookeeper = [(self.address(h), int(self.var(h, "zookeeper_client_port", "zookeeper")))
                     for h in self.groups["zookeeper"]]
        tls = self.zookeeper_tls()
        for host, port in zookeeper:
            yield "zookeeper", f"{host}:{port}", partial(checks.zookeeper_node, host, port, tls)
        if zookeeper:
            yield ("zookeeper ensemble", f"{len(zookeeper)} nodes",
                   partial(checks.zookeeper_ensemble, zookeeper, tls))

        brokers = self.groups["kafka"]
        if brokers:
            bootstrap = self.kafka_bootstrap()
            ids = {int(self.var(h, "kafka_broker_id", "kafka")) for h in brokers}
            security = self.kafka_security()
            yield "kafka", bootstrap, partial(checks.kafka_cluster, bootstrap, ids, None,
                                              security.kwargs() if security else None)
            if self.var(brokers[0], "kafka_metadata_mode", "kafka") == "kraft":
                voters = {self.kafka_node_id(h) for h in self.groups["kafka_controllers"]}
                max_lag = int(self.var(brokers[0], "kafka_quorum_max_lag", "kafka"))
                yield ("kafka controller quorum", f"{len(voters)} controllers",
                       partial(checks.kraft_quorum, bootstrap, voters, max_lag,
                               security.kwargs() if security else None))

        for host in self.groups["cassandra"]:
            address = self.address(host)
            port = int(self.var(host, "cassandra_native_port", "cassandra"))
            yield "cassandra", f"{address}:{port}", partial(
                checks.cassandra_node, address, port, self.cassandra_security())

        if self.groups["spark_master"]:
            ui = self.spark_master_ui()
            workers = {self.address(w) for w in self.groups["spark_workers"]}
            yield "spark", ui, partial(checks.spark_cluster, ui, workers, self.spark_ui_cafile())

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
                   partial(checks.stream_job, cassandra, port, keyspace, job, max_age,
                           security=self.cassandra_security()))

        producers = self.groups.get("producers", [])
        if producers and _enabled(self.var(producers[0], "x_api_simulator_enabled",
                                           "x_api_simulator")):
            port = self.var(producers[0], "x_api_simulator_port", "x_api_simulator")
            url = f"http://{self.address(producers[0])}:{port}"
            yield "x api simulator", url, partial(checks.x_api_simulator, url)

        for host in self.groups.get("prometheus", []):
            url = self.prometheus_url(host)
            yield "prometheus", url, partial(checks.prometheus, url, self.prometheus_login(host))

        # Where the Grafana server is skipped (our machines) there is nothing to ask.
        for host in self.groups.get("grafana", []):
            if _enabled(self.var(host, "grafana_server_enabled", "grafana")):
                url = f"http://{self.address(host)}:{self.var(host, 'grafana_port', 'grafana')}"
                yield "grafana", url, partial(checks.grafana, url)

    def producer_checks(self) -> Iterator[tuple[str, str, checks.Check]]:
        """One check per shard that the producer hosts say they run (asks the hosts)."""
        login = self.metrics_login()
        for shard in deployed_shards(self.path):
            yield (f"producer {shard['name']}", f"{shard['address']}:{shard['metrics_port']}",
                   partial(checks.producer_shard, shard["address"], shard["metrics_port"],
                           login=login))


def project_root(start: Path) -> Path | None:
    """The directory holding ansible.cfg, from ``start`` upward (None outside a checkout)."""
    for directory in (start.resolve(), *start.resolve().parents):
        if (directory / "ansible.cfg").is_file():
            return directory
    return None


def _config(root: Path) -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.read(root / "ansible.cfg")
    return config


def find_inventory(given: Path | None, cwd: Path | None = None) -> tuple[Path, Path]:
    """The inventory and roles directory the command lines use.

    In order: ``given`` (``-i``), $ANSIBLE_INVENTORY (both relative to the current
    directory, as for ansible), the ``inventory`` of the project's ansible.cfg, and
    ``inventories/local`` (relative to the project root, the directory holding
    ansible.cfg found upward from the current directory). The roles are the
    project's ``roles_path`` (``ansible/roles``); an inventory outside any checkout
    finds its project upward from itself. Raises LocationError.
    """
    cwd = cwd or Path.cwd()
    root = project_root(cwd)
    chosen = given or (Path(os.environ["ANSIBLE_INVENTORY"].split(",")[0])
                       if os.environ.get("ANSIBLE_INVENTORY") else None)
    if chosen is not None:
        path = chosen
        # An inventory given outside the project finds the project upward from itself.
        root = root or project_root(path if path.is_dir() else path.parent)
    elif root is not None:
        path = root / _config(root).get("defaults", "inventory", fallback="inventories/local")
        # Named as the user would (plan.json records it): relative to where they are.
        if path.is_relative_to(cwd.resolve()):
            path = path.relative_to(cwd.resolve())
    else:
        raise LocationError(f"no inventory: {cwd} is not inside the project (no ansible.cfg "
                            "upward), and neither -i nor ANSIBLE_INVENTORY names one")
    if not path.exists():
        raise LocationError(f"no inventory {path}")
    if root is None:
        return path, DEFAULT_ROLES
    roles_path = _config(root).get("defaults", "roles_path", fallback=str(DEFAULT_ROLES))
    roles = root / roles_path.split(":")[0]
    return path, roles


def stack(inventory: Path | None = None, roles: Path | None = None) -> Stack:
    """The command lines' ``ctx.obj``: found now, read on first use (see evilnet.locations).

    A missing inventory is only an error once a command needs a location from it.
    """
    try:
        path, found_roles = find_inventory(inventory)
    except LocationError as error:
        problem = error

        def fail() -> Locations:
            raise problem
        return Stack(None, roles, fail, stack)
    roles = roles or found_roles
    return Stack(path, roles, lambda: Inventory.load(path, roles=roles).locations(), stack)


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
