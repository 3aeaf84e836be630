"""Rolling restarts on the bed: a setting changed in the inventory restarts the nodes
of a group one at a time, each serving again before the next one goes down
(issue 13's acceptance, README "Roles")."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from cluster_helpers import Cluster, deploy, evilnet
from conftest import Deployment

WATCH_INTERVAL = 0.5


def _answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def _watch(addresses: list[str], port: int) -> Iterator[list[frozenset[str]]]:
    """Every WATCH_INTERVAL, the set of ``addresses`` whose ``port`` refuses connections."""
    samples: list[frozenset[str]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            samples.append(frozenset(a for a in addresses if not _answers(a, port)))
            stop.wait(WATCH_INTERVAL)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def _overlay(tmp_path: Path, variables: dict) -> Path:
    """An inventory source of its own on top of inventories/cluster: the setting changed
    in the inventory, the way an operator would change it."""
    path = tmp_path / "overlay.yml"
    path.write_text(yaml.safe_dump({"all": {"vars": variables}}))
    return path


def _rolled(samples: list[frozenset[str]], addresses: list[str]) -> list[str]:
    """The order in which the nodes went down, asserting one at a time."""
    assert max(len(down) for down in samples) <= 1, [sorted(d) for d in samples if len(d) > 1]
    order: list[str] = []
    for previous, current in zip([frozenset(), *samples], samples, strict=False):
        order += sorted(current - previous)
    assert sorted(set(order)) == sorted(addresses), order
    assert not samples[-1], "a node still down at the end"
    return order


def _restart_with(tmp_path: Path, playbook: str, variables: dict, addresses: list[str],
                  port: int) -> list[str]:
    overlay = _overlay(tmp_path, variables) if variables else None
    with _watch(addresses, port) as samples:
        run = deploy(playbook, *(("-i", str(overlay)) if overlay else ()))
        time.sleep(2 * WATCH_INTERVAL)
    assert run.returncode == 0, run.output[-4000:]
    return _rolled(samples, addresses)


def test_a_changed_cassandra_setting_restarts_the_nodes_one_at_a_time(
        cluster: Cluster, deployment: Deployment, tmp_path: Path) -> None:
    nodes = [cluster.address(host) for host in cluster.inventory.groups["cassandra"]]
    try:
        order = _restart_with(tmp_path, "ansible/playbooks/cassandra.yml",
                              {"cassandra_compaction_throughput": "48MiB/s"}, nodes, 9042)
        assert len(order) == len(nodes)
    finally:
        # Back to the inventory's setting: a rolling restart again.
        _restart_with(tmp_path, "ansible/playbooks/cassandra.yml", {}, nodes, 9042)
    # Every node Up and Normal in every node's view of the ring.
    for host in cluster.inventory.groups["cassandra"]:
        ring = _nodetool_status(cluster, host)
        assert {address: state for address, state in ring.items()} == {
            address: "UN" for address in nodes}, (host, ring)


def _nodetool_status(cluster: Cluster, host: str) -> dict[str, str]:
    """`nodetool status` on a node (the cassandra role's nodetool, cassandra_nodetool):
    address -> state, e.g. UN."""
    command = "{{ evilnet_root }}/bin/nodetool status"
    result = cluster.run("ansible.builtin.shell", command, hosts=(host,))[host]
    assert result.status == "ok", result.result
    ring = {}
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) > 2 and len(fields[0]) == 2 and fields[0][0] in "UD":
            ring[fields[1]] = fields[0]
    return ring


def test_a_changed_broker_setting_restarts_the_brokers_one_at_a_time(
        cluster: Cluster, deployment: Deployment, tmp_path: Path) -> None:
    brokers = [cluster.address(host) for host in cluster.inventory.groups["kafka"]]
    try:
        order = _restart_with(tmp_path, "ansible/playbooks/kafka.yml",
                              {"kafka_properties": {"log.cleaner.backoff.ms": 16000}},
                              brokers, 9092)
        assert len(order) == len(brokers)
    finally:
        _restart_with(tmp_path, "ansible/playbooks/kafka.yml", {}, brokers, 9092)
    # Every broker registered, no under-replicated partition.
    health = evilnet("health", "kafka")
    assert health.returncode == 0, health.stdout + health.stderr
