"""Redundant producers: a shard on two hosts, only where the access level allows two
stream connections per app."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from planner_helpers import make_settings

from evilnet.cities import PlanInputError, load_catalog
from evilnet.contracts import ACCESS_LEVELS
from evilnet.planner import PlanError, diff_plans, make_plan, render_plan, write_plan
from evilnet.producer.config import parse_config

REPO_ROOT = Path(__file__).resolve().parents[2]
EVILNET = Path(sys.executable).with_name("evilnet")
CITY_NAMES = [c.name for c in load_catalog().cities]
SINGLE_CONNECTION = sorted(name for name, level in ACCESS_LEVELS.items()
                           if level.stream_connections < 2)


@pytest.mark.parametrize("level", SINGLE_CONNECTION)
def test_redundancy_2_is_refused_below_enterprise_naming_the_level_and_its_limit(
        level: str) -> None:
    with pytest.raises(PlanError) as refused:
        make_plan(["Toronto"], ["hockey"], make_settings(level=level, redundancy=2))
    assert str(refused.value) == (f"planner_redundancy 2 needs 2 stream connections per app; "
                                  f"the {level} access level allows 1")


def test_redundancy_beyond_the_hosts_is_refused() -> None:
    with pytest.raises(PlanError, match="needs 2 producer hosts; the inventory's group "
                                        "'producers' has 1"):
        make_plan(["Toronto"], ["hockey"], make_settings(level="enterprise", redundancy=2,
                                                         hosts=1))


def test_the_cli_refuses_it_on_the_local_inventory_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(EVILNET), "plan", "--inventory", "inventories/local", "--cities", "Toronto",
         "--topics", "hockey", "--redundancy", "2", "--out", str(tmp_path / "plan")],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    level = yaml.safe_load((REPO_ROOT / "inventories/local/group_vars/producers.yml")
                           .read_text())["planner_access_level"]
    assert result.stderr == (f"evilnet plan: planner_redundancy 2 needs 2 stream connections "
                             f"per app; the {level} access level allows 1\n")
    assert not (tmp_path / "plan").exists()


def copies_of(plan) -> dict[str, list[dict]]:
    copies = defaultdict(list)
    for entry in plan.to_json()["shards"]:
        copies[entry["name"]].append(entry)
    return copies


def test_on_enterprise_each_shard_runs_on_two_hosts_with_its_own_id_and_port() -> None:
    single = make_plan(CITY_NAMES[:30], ["hockey"], make_settings(apps=6, hosts=3,
                                                                  level="enterprise"))
    double = make_plan(CITY_NAMES[:30], ["hockey"], make_settings(apps=6, hosts=3,
                                                                  level="enterprise",
                                                                  redundancy=2))
    entries = double.to_json()["shards"]
    assert len(entries) == 2 * len(single.to_json()["shards"])
    ports = [(e["address"], e["metrics_port"]) for e in entries]
    assert len({port for _, port in ports}) == len(ports)  # own port, even on one address
    assert len({e["producer_id"] for e in entries}) == len(entries)
    for name, (first, second) in copies_of(double).items():
        (alone,) = copies_of(single)[name]
        assert (first["copy"], second["copy"]) == (1, 2)
        assert first["host"] != second["host"]
        assert first["host"] == alone["host"]  # copy 1 stays where the shard ran alone
        for copy in (first, second):
            assert copy["producer_id"] == f"{name}@{copy['host']}" == copy["dir"]
            # Same app, same rules, same cities: the two connections see the same posts.
            assert (copy["credential"], copy["rules"], copy["cities"]) == (
                alone["credential"], alone["rules"], alone["cities"])


@settings(max_examples=40, deadline=None)
@given(cities=st.lists(st.sampled_from(CITY_NAMES), min_size=1, max_size=30, unique=True))
def test_redundant_packing_is_stable_when_a_host_is_added(cities) -> None:
    try:
        before = make_plan(cities, ["hockey"], make_settings(apps=5, hosts=3,
                                                             level="enterprise", redundancy=2))
    except PlanInputError:
        return
    after = make_plan(cities, ["hockey"], make_settings(apps=5, hosts=4, level="enterprise",
                                                        redundancy=2))
    hosts_before = {name: {c["host"] for c in copies} for name, copies in
                    copies_of(before).items()}
    for name, copies in copies_of(after).items():
        hosts = {c["host"] for c in copies}
        # A copy only ever moves onto the new host; cities stay on their shard.
        assert hosts - hosts_before[name] <= {"producer4"}
        assert len(hosts - hosts_before[name]) <= 1
    again = make_plan(cities, ["hockey"], make_settings(apps=5, hosts=3, level="enterprise",
                                                        redundancy=2))
    assert again.to_json() == before.to_json()


def test_each_copy_renders_its_own_config_naming_its_producer(tmp_path: Path) -> None:
    plan = make_plan(["Toronto", "Montréal"], ["hockey"],
                     make_settings(apps=2, hosts=3, level="enterprise", redundancy=2))
    write_plan(plan, tmp_path)
    written = render_plan(tmp_path)
    configs = {}
    for path in written:
        if path.name == "producer.yml":
            config = parse_config(yaml.safe_load(path.read_text()), origin=str(path))
            configs[path.parent.name] = config
    entries = plan.to_json()["shards"]
    assert sorted(configs) == sorted(e["producer_id"] for e in entries)
    for entry in entries:
        config = configs[entry["producer_id"]]
        assert (config.shard, config.producer, config.metrics_port, config.metrics_host) == (
            entry["name"], entry["producer_id"], entry["metrics_port"], entry["address"])


def test_turning_redundancy_on_adds_the_second_copies() -> None:
    cities = ["Toronto", "Montréal", "Vancouver"]
    single = make_plan(cities, ["hockey"], make_settings(apps=3, hosts=3, level="enterprise"))
    double = make_plan(cities, ["hockey"], make_settings(apps=3, hosts=3, level="enterprise",
                                                         redundancy=2))
    changes = diff_plans(single.to_json()["shards"], double.to_json()["shards"])
    assert sorted((a["shard"], a["copy"]) for a in changes["add"]) == sorted(
        (name, 2) for name in copies_of(single))
    assert changes["remove"] == []
    # The first copies keep their host and rules (their config gains a producer id and port).
    assert all("moved_from" not in c and not c["rules_added"] and not c["rules_removed"]
               for c in changes["change"])
    assert diff_plans(double.to_json()["shards"], double.to_json()["shards"])["unchanged"] == [
        label for name in sorted(copies_of(double)) for label in (name, f"{name} (copy 2)")]
