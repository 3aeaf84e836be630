"""The Jenkins steps against the bed: plan, render and roll out the producers over SSH
to both producer hosts, each shard a systemd unit of the service account with its
token in a 0600 file only (issue 13: "then the Jenkins steps ... run against it")."""

from __future__ import annotations

from cluster_helpers import REPO_ROOT, Cluster
from conftest import Rollout


def test_the_jenkins_steps_roll_out_shards_to_both_producer_hosts(
        cluster: Cluster, rollout: Rollout) -> None:
    assert "stream connected" in rollout.outputs["verify"]
    assert {c["name"] for c in rollout.plan["cities"]} == {
        "Toronto", "Montréal", "Vancouver", "St. John's", "Halifax"}
    by_host: dict[str, set[str]] = {}
    for shard in rollout.plan["shards"]:
        by_host.setdefault(shard["host"], set()).add(shard["service"])
    assert set(by_host) == set(cluster.inventory.groups["producers"]), by_host
    for host, services in by_host.items():
        for service in services:
            state = cluster.run("ansible.builtin.command",
                                f"systemctl show -p ActiveState -p User {service}",
                                hosts=(host,))[host]
            assert state.status == "ok", state.result
            # systemctl lists the properties in its own order, not the arguments'.
            properties = dict(line.split("=", 1) for line in state.stdout.splitlines())
            assert properties == {"ActiveState": "active", "User": "evilnet"}, (
                host, service, properties)


def test_each_shard_token_is_a_0600_file_of_the_service_account_only(
        cluster: Cluster, rollout: Rollout) -> None:
    for shard in rollout.plan["shards"]:
        host = shard["host"]
        token = f"{{{{ evilnet_root }}}}/producers/{shard['dir']}/bearer-token"
        result = cluster.run("ansible.builtin.stat", f"path={token}", hosts=(host,))[host]
        assert result.status == "ok", result.result
        stat = result.result["stat"]
        assert stat["exists"], (host, token)
        assert (stat["mode"], stat["pw_name"]) == ("0600", "evilnet"), (host, stat)
    # The plan Jenkins archives names each credential, never holds a token.
    tokens = [path.read_text().strip()
              for path in (REPO_ROOT / ".run" / "testbed" / "secrets" / "x-api").glob("*.token")]
    assert tokens
    for rendered in rollout.plan_dir.rglob("*"):
        if rendered.is_file():
            text = rendered.read_text(errors="replace")
            assert not any(token in text for token in tokens), rendered
