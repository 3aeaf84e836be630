"""The test bed takes its hosts from an inventory and refuses one it cannot make
without leaving its own range (README, "The test bed"): 198.18.0.0/24 on its bridge,
whose .1 is the controller's. Nothing is booted here: the bed stops at the list."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def _testbed(inventory: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed", "status", "-i", str(inventory),
                           *arguments], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def _inventory(tmp_path: Path, hosts: dict[str, dict]) -> Path:
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(
        {"all": {"children": {"zookeeper": {"hosts": hosts}}}}))
    return tmp_path


@pytest.mark.parametrize(("hosts", "refusal"), [
    ({"zk-1": {"ansible_host": "10.20.1.11"}}, "zk-1: 10.20.1.11 is not a host address"),
    ({"zk-1": {"ansible_host": "198.18.1.11"}}, "zk-1: 198.18.1.11 is not a host address"),
    ({"zk-1": {"ansible_host": "198.18.0.1"}}, "the bridge is 198.18.0.1"),
    ({"zk-1": {"ansible_host": "198.18.0.11"}, "zk-2": {"ansible_host": "198.18.0.11"}},
     "share 198.18.0.11"),
    ({"zk-1": {}}, "zk-1: no ansible_host"),
    ({"ZK_1": {"ansible_host": "198.18.0.11"}}, "a short lowercase hostname"),
    ({"zk-1": {"ansible_host": "198.18.0.11", "evilnet_shared_storage_dir": "srv/shared"}},
     "evilnet_shared_storage_dir must be an absolute path"),
], ids=["outside-the-range", "another-subnet", "the-bridge", "shared", "no-address",
        "not-a-hostname", "relative-shared-storage"])
def test_an_inventory_the_bed_cannot_make_is_refused(tmp_path: Path, hosts: dict,
                                                      refusal: str) -> None:
    result = _testbed(_inventory(tmp_path, hosts))
    assert result.returncode == 2 and refusal in result.stderr, result.stderr


def test_a_host_not_in_the_inventory_is_refused(tmp_path: Path) -> None:
    result = _testbed(_inventory(tmp_path, {"zk-1": {"ansible_host": "198.18.0.11"}}), "zk-9")
    assert result.returncode == 2 and "not in the inventory: zk-9" in result.stderr


def test_every_spark_host_of_the_cluster_mounts_the_shared_storage() -> None:
    """The stream job's checkpoint is on the inventory's shared storage, which the bed
    binds into the hosts at the path the inventory gives."""
    listing = subprocess.run(
        [sys.executable, "-c", "import json; from testbed.hosts import read_hosts; "
         "print(json.dumps({h.name: h.shared_storage for h in read_hosts("
         "__import__('testbed').layout.DEFAULT_INVENTORY)}))"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True)
    mounts = json.loads(listing.stdout)
    inventory = yaml.safe_load((REPO_ROOT / "inventories" / "cluster" / "hosts.yml").read_text())
    groups = inventory["all"]["children"]
    spark = set(groups["spark_master"]["hosts"]) | set(groups["spark_workers"]["hosts"])
    assert {mounts[name] for name in spark} == {"/srv/evilnet-shared"}


@pytest.mark.parametrize(("whole_bed", "kept"), [(True, False), (False, True)],
                         ids=["whole-bed", "some-hosts"])
def test_down_of_the_whole_bed_takes_its_shared_storage(tmp_path: Path, whole_bed: bool,
                                                        kept: bool) -> None:
    """A checkpoint left from the last bed would make the next bed's stream job resume
    old windows' state against a new topic (the cluster tier counted its fixture six
    times). No host is running here; the bridge stays untouched."""
    checkpoint = tmp_path / "shared-storage" / "stream-job" / "checkpoint" / "offsets"
    checkpoint.mkdir(parents=True)
    (checkpoint / "0").write_text("v1\n")
    subprocess.run(
        [sys.executable, "-c", "import sys, pathlib; from testbed import bed, layout, network; "
         "network.remove_bridge = lambda: None; "
         "bed.down([], layout.Paths(pathlib.Path(sys.argv[1])), whole_bed=sys.argv[2] == 'True')",
         str(tmp_path), str(whole_bed)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert (checkpoint / "0").exists() == kept
