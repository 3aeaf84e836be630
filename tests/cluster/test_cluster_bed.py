"""What the deployment over SSH relies on: the bed's hosts are separate machines that
Ansible reaches as the deploy user, that become root, that run systemd, and that
reach each other and nothing beyond the bed (README, "The test bed")."""

from __future__ import annotations

import json
import uuid

from cluster_helpers import Cluster, bring_up

# README's address plan: the bed's /24 of RFC 2544's test range, on its own bridge.
BED_SUBNET = "198.18.0.0/24"
BRIDGE_ADDRESS = "198.18.0.1"  # the controller's end


def test_every_host_answers_ansible_over_ssh_as_the_deploy_user(cluster: Cluster) -> None:
    pings = cluster.run("ansible.builtin.ping", become=False)
    assert {host: (result.status, result.result.get("ping")) for host, result in pings.items()} \
        == {host: ("ok", "pong") for host in cluster.hosts}
    # Over SSH, from the controller's end of the bridge to the host's own address
    # (sshd's SSH_CONNECTION: client address, port, server address, port), as deploy.
    facts = cluster.run("ansible.builtin.setup", "filter=ansible_env", become=False)
    logins = {}
    for host, result in facts.items():
        env = result.result["ansible_facts"]["ansible_env"]
        client, _, server, port = env["SSH_CONNECTION"].split()
        logins[host] = (env["USER"], client, server, port)
    assert logins == {host: ("deploy", BRIDGE_ADDRESS, cluster.address(host), "22")
                      for host in cluster.hosts}


def test_each_host_is_a_machine_of_its_own(cluster: Cluster) -> None:
    names = cluster.run("ansible.builtin.command", "hostname", become=False)
    assert {host: result.stdout for host, result in names.items()} == {
        host: host for host in cluster.hosts}


def test_become_gives_root(cluster: Cluster) -> None:
    ids = cluster.run("ansible.builtin.command", "id -u")
    assert {host: (result.status, result.stdout) for host, result in ids.items()} == {
        host: ("ok", "0") for host in cluster.hosts}


def test_pid_1_is_systemd_and_the_system_is_up(cluster: Cluster) -> None:
    # What the roles' systemd path keys on: Ansible's service manager fact.
    facts = cluster.run("ansible.builtin.setup", "filter=ansible_service_mgr")
    assert {host: result.result["ansible_facts"]["ansible_service_mgr"]
            for host, result in facts.items()} == {host: "systemd" for host in cluster.hosts}
    init = cluster.run("ansible.builtin.command", "cat /proc/1/comm")
    assert {host: result.stdout for host, result in init.items()} == {
        host: "systemd" for host in cluster.hosts}
    # Non-zero for any state but "running": the state is read, not the status.
    states = cluster.run("ansible.builtin.command", "systemctl is-system-running")
    not_up = {host: result.stdout for host, result in states.items()
              if result.stdout not in ("running", "degraded")}
    assert not_up == {}


def test_a_host_routes_only_the_bed_subnet(cluster: Cluster) -> None:
    routes = cluster.run("ansible.builtin.command", "ip -json route show table all")
    for host, result in routes.items():
        # The kernel's local and broadcast entries aside, one route: the bridge's subnet.
        routed = [(route["dst"], route.get("dev")) for route in json.loads(result.stdout)
                  if route.get("type", "unicast") == "unicast"
                  and route.get("table", "main") == "main"]
        assert routed == [(BED_SUBNET, "eth0")], host
    ipv6 = cluster.run("ansible.builtin.command", "ip -json -6 address show")
    assert {host: json.loads(result.stdout) for host, result in ipv6.items()} == {
        host: [] for host in cluster.hosts}


def test_a_host_has_no_way_out_of_the_bed(cluster: Cluster) -> None:
    # Asking the kernel for a route sends nothing: no address outside the bed is reached.
    lookups = cluster.run("ansible.builtin.command", "ip route get 1.1.1.1")
    assert {host: (result.status, "Network is unreachable" in result.result.get("stderr", ""))
            for host, result in lookups.items()} == {
        host: ("failed", True) for host in cluster.hosts}


def test_hosts_reach_each_other_by_address(cluster: Cluster) -> None:
    # In a ring, each host opens a connection to the next one's sshd.
    ring = list(cluster.hosts)
    peers = {host: cluster.address(ring[(index + 1) % len(ring)])
             for index, host in enumerate(ring)}
    reached = cluster.run("ansible.builtin.wait_for",
                          "host={{ evilnet_peers[inventory_hostname] }} port=22 timeout=10",
                          become=False, extravars={"evilnet_peers": peers})
    assert {host: result.status for host, result in reached.items()} == {
        host: "ok" for host in cluster.hosts}


def test_a_second_up_changes_nothing(cluster: Cluster) -> None:
    # /run is a tmpfs of each machine: a reboot would empty it.
    marker = f"/run/evilnet-cluster-test-{uuid.uuid4().hex}"
    cluster.run("ansible.builtin.file", f"path={marker} state=touch mode=0644")
    booted = cluster.run("ansible.builtin.command", "ps -o lstart= -p 1")
    again = bring_up(cluster.hosts)
    assert again.returncode == 0, again.stdout + again.stderr
    still = cluster.run("ansible.builtin.stat", f"path={marker}")
    assert {host: result.result["stat"]["exists"] for host, result in still.items()} == {
        host: True for host in cluster.hosts}
    assert {host: result.stdout for host, result in
            cluster.run("ansible.builtin.command", "ps -o lstart= -p 1").items()} == {
        host: result.stdout for host, result in booted.items()}
    cluster.run("ansible.builtin.file", f"path={marker} state=absent")
