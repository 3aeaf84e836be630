"""The production path on the bed: site.yml from the controller over SSH with become,
every service under systemd as the service account, healthy, and a second run that
changes nothing (issue 13's acceptance)."""

from __future__ import annotations

import base64
import json

import yaml
from cluster_helpers import Cluster, evilnet
from conftest import Deployment

from evilnet.platform.inventory import deployed_shards

# The systemd units each group's hosts run (the roles' service names).
GROUP_UNITS = {
    "zookeeper": {"zookeeper"},
    "kafka": {"kafka"},
    "cassandra": {"cassandra"},
    "spark_master": {"spark-master"},
    "spark_workers": {"spark-worker"},
    "prometheus": {"prometheus"},
}
# The account the inventory runs every service as (inventories/cluster: evilnet_service_user).
SERVICE_USER = "evilnet"
# What the service role writes at the top of every unit it defines.
UNIT_MARK = "# EvilNet service: "


def test_site_yml_converges_over_ssh(deployment: Deployment) -> None:
    recap = deployment.first.recap()
    assert set(recap) == set(deployment.second.recap())
    assert {host: (counts["failed"], counts["unreachable"]) for host, counts in recap.items()
            if counts["failed"] or counts["unreachable"]} == {}
    print(f"site.yml first run {deployment.first_seconds:.0f} s, "
          f"changed {sum(c['changed'] for c in recap.values())}")


def test_a_second_site_yml_changes_nothing(deployment: Deployment) -> None:
    recap = deployment.second.recap()
    assert deployment.second.returncode == 0, deployment.second.output[-4000:]
    changed = [(task, host) for task, status, host in deployment.second.events()
               if status == "changed"]
    assert changed == []
    assert {host: counts["changed"] for host, counts in recap.items()} == {
        host: 0 for host in recap}
    print(f"site.yml second run {deployment.second_seconds:.0f} s")


def _units(cluster: Cluster) -> dict[str, dict[str, dict[str, str]]]:
    """host -> EvilNet unit -> its state, configured user, and its main process's user."""
    script = (
        f"for unit in $(grep -l '^{UNIT_MARK}' /etc/systemd/system/*.service); do "
        "name=$(basename $unit .service); "
        "pid=$(systemctl show -p MainPID --value $name); "
        "echo \"$name $(systemctl show -p ActiveState --value $name) "
        "$(systemctl show -p User --value $name) $(ps -o user= -p $pid)\"; done")
    found = cluster.run("ansible.builtin.shell", script)
    units: dict[str, dict[str, dict[str, str]]] = {}
    for host, result in found.items():
        assert result.status == "ok", result.result
        units[host] = {}
        for line in result.stdout.splitlines():
            name, state, user, *process_user = line.split()
            units[host][name] = {"state": state, "user": user,
                                 "process": process_user[0] if process_user else ""}
    return units


def test_every_service_runs_under_systemd_as_the_service_account(
        cluster: Cluster, deployment: Deployment) -> None:
    units = _units(cluster)
    for group, expected in GROUP_UNITS.items():
        for host in cluster.inventory.groups[group]:
            assert expected <= set(units[host]), (host, units[host])
    producers = cluster.inventory.groups["producers"]
    # The default plan's shards go where rendezvous hashing puts them, not to every host
    # (test_cluster_jenkins rolls out a plan that covers both): each runs on its host.
    shards = deployed_shards(cluster.inventory.path)
    assert shards
    assert {host: {name for name in units[host] if name.startswith("producer-")}
            for host in producers} == {
        host: {shard["service"] for shard in shards if shard["host"] == host}
        for host in producers}
    assert "x-api-simulator" in units[producers[0]]
    not_as_expected = {
        (host, name): unit for host, host_units in units.items()
        for name, unit in host_units.items()
        if unit != {"state": "active", "user": SERVICE_USER, "process": SERVICE_USER}}
    assert not_as_expected == {}


def test_evilnet_status_shows_every_row_healthy(deployment: Deployment) -> None:
    status = evilnet("status", "--format", "json")
    rows = json.loads(status.stdout)
    assert [row for row in rows if not row["ok"]] == [], status.stderr
    assert status.returncode == 0
    services = {row["service"] for row in rows}
    assert {"zookeeper", "zookeeper ensemble", "kafka", "cassandra", "spark", "stream job",
            "x api simulator", "prometheus"} <= services
    assert any(service.startswith("producer ") for service in services)
    assert sum(row["service"] == "cassandra" for row in rows) == 3


def test_grafana_contact_points_are_the_three_nodes_separated_as_the_plugin_splits(
        cluster: Cluster, deployment: Deployment) -> None:
    # The Cassandra datasource plugin splits its host setting on ';' (its pkg/main.go,
    # strings.Split(host, ";")), so that is the form a three-node cluster must take.
    (monitor,) = cluster.inventory.groups["grafana"]
    # The grafana role's grafana_provisioning_dir, under the host's root.
    read = cluster.run("ansible.builtin.slurp",
                       "src={{ evilnet_root }}/etc/grafana/provisioning/datasources/evilnet.yaml",
                       hosts=(monitor,))
    provisioned = yaml.safe_load(base64.b64decode(read[monitor].result["content"]))
    (datasource,) = [source for source in provisioned["datasources"]
                     if source["name"] == "EvilNet Cassandra"]
    nodes = {f"{cluster.address(host)}:9042" for host in cluster.inventory.groups["cassandra"]}
    assert set(datasource["url"].split(";")) == nodes
    assert len(datasource["url"].split(";")) == 3
