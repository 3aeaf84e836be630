"""Every listening port of every bed host refuses a host that is not entitled (issue
14's acceptance, on the cluster tier): `ss -ltnp` in each host's own network
namespace (through Ansible, as root), every socket there the host's, each probed
from the controller as a stranger (tests/security_probes.py). A socket bound to the
host's loopback is probed at the host's address, where another host would try: it
must not answer there. The table is printed (`pytest -s`) and is the assertion's
message; the test fails on a port no probe covers or that was not refused.

It skips while inventories/cluster runs services unsecured.
"""

from __future__ import annotations

import ipaddress

import pytest
from cluster_helpers import Cluster
from conftest import CLUSTER_INVENTORY
from security_probes import (
    Context,
    Listener,
    Row,
    classify,
    expected_ports,
    format_table,
    listening,
    plaintext_services,
    survey,
)

from evilnet.platform.inventory import Inventory, deployed_shards


def _host_command(cluster: Cluster, host: str):
    def run(command) -> str:
        result = cluster.run("ansible.builtin.command", " ".join(command), hosts=(host,))[host]
        assert result.status == "ok", f"{host}: {' '.join(command)}: {result.result}"
        return result.stdout
    return run


def _row(inventory: Inventory, host: str, listener: Listener, table) -> Row:
    # Each bed host has its own namespace: all of 127.0.0.0/8 and ::1 are its own.
    if ipaddress.ip_address(listener.address).is_loopback:
        return Row(host, listener, listener.process, "the host's loopback only",
                   "loopback-only", target=inventory.address(host))
    # Its processes live in its own PID namespace: not to be looked up here.
    return classify(inventory, host, listener, listener.process, table, proc=None)


def test_every_listening_port_of_every_host_refuses_a_stranger(
        request: pytest.FixtureRequest) -> None:
    plaintext = plaintext_services(Inventory.load(
        CLUSTER_INVENTORY, roles=CLUSTER_INVENTORY.parents[1] / "ansible" / "roles"))
    if plaintext:
        pytest.skip(f"{CLUSTER_INVENTORY} runs services unsecured ({', '.join(plaintext)} "
                    "false)")
    request.getfixturevalue("rollout")  # the whole pipeline deployed and producing
    cluster: Cluster = request.getfixturevalue("cluster")
    inventory = cluster.inventory
    table = expected_ports(inventory, deployed_shards(inventory.path))
    rows = [_row(inventory, host, listener, table)
            for host in cluster.hosts for listener in listening(_host_command(cluster, host))]
    survey(inventory, rows, Context.of(inventory))
    seen = {(row.host, row.listener.port) for row in rows}
    missing = [f"{host}:{port} {expected.what}" for (host, port), expected in table.items()
               if expected.required and host in cluster.hosts and (host, port) not in seen]
    report = format_table(rows, missing=missing)
    print(f"\n{len(rows)} listening port(s) on {len(cluster.hosts)} hosts:\n{report}")
    failing = [row for row in rows if not row.ok]
    assert rows and not failing and not missing, report
