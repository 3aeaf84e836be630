"""A bad inventory is refused before anything is touched, with a message naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evilnet.platform.playbook import run_playbook

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL = REPO_ROOT / "inventories" / "local"


def _inventory(tmp_path: Path, edit) -> Path:
    """The local inventory, edited, with every host's root under tmp_path."""
    hosts = yaml.safe_load((LOCAL / "hosts.yml").read_text())
    group_vars = yaml.safe_load((LOCAL / "group_vars" / "all.yml").read_text())
    group_vars["evilnet_root"] = str(tmp_path / "roots" / "{{ inventory_hostname }}")
    edit(hosts["all"]["children"], group_vars)
    inventory = tmp_path / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts, allow_unicode=True))
    (inventory / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars))
    return inventory


def _preflight(tmp_path: Path, edit):
    """preflight.yml alone on the local inventory edited by ``edit``."""
    return run_playbook("ansible/playbooks/preflight.yml", _inventory(tmp_path, edit),
                        project_dir=REPO_ROOT)


def _host_in_kafka_and_zookeeper(groups: dict, _: dict) -> None:
    groups["kafka"]["hosts"]["zk1"] = {"kafka_broker_id": 3}


def _broker_without_id(groups: dict, _: dict) -> None:
    del groups["kafka"]["hosts"]["kafka2"]["kafka_broker_id"]


def _duplicate_broker_id(groups: dict, _: dict) -> None:
    groups["kafka"]["hosts"]["kafka2"]["kafka_broker_id"] = 1


def _even_ensemble(groups: dict, _: dict) -> None:
    groups["zookeeper"]["hosts"]["zk4"] = {"ansible_host": "127.0.1.11", "zookeeper_id": 4}


def _missing_java(_: dict, group_vars: dict) -> None:
    del group_vars["evilnet_java_home"]


def _spark_worker_on_another_machine(groups: dict, _: dict) -> None:
    groups["spark_workers"]["hosts"]["spark-worker1"]["ansible_connection"] = "ssh"


def _producers_in_containers_on_a_secured_kafka(_: dict, group_vars: dict) -> None:
    group_vars["kafka_security_enabled"] = True
    group_vars["producer_runner"] = "compose"


def _producers_in_containers_with_secured_metrics(_: dict, group_vars: dict) -> None:
    group_vars["kafka_security_enabled"] = False  # the metrics' check alone
    group_vars["prometheus_security_enabled"] = True
    group_vars["producer_runner"] = "compose"


def _kraft(groups: dict, group_vars: dict, controllers: int = 3) -> None:
    """A valid KRaft inventory: dedicated controllers, no ZooKeeper group."""
    group_vars["kafka_metadata_mode"] = "kraft"
    del groups["zookeeper"]
    groups["kafka_controllers"] = {"hosts": {
        f"controller{n}": {"ansible_host": f"127.0.1.{10 + n}", "kafka_node_id": 100 + n}
        for n in range(1, controllers + 1)}}


def _kraft_with_zookeeper(groups: dict, group_vars: dict) -> None:
    zookeeper = groups["zookeeper"]
    _kraft(groups, group_vars)
    groups["zookeeper"] = zookeeper


def _kraft_without_controllers(groups: dict, group_vars: dict) -> None:
    _kraft(groups, group_vars)
    del groups["kafka_controllers"]


def _kraft_even_quorum(groups: dict, group_vars: dict) -> None:
    _kraft(groups, group_vars, controllers=2)


def _kraft_controller_without_id(groups: dict, group_vars: dict) -> None:
    _kraft(groups, group_vars)
    del groups["kafka_controllers"]["hosts"]["controller2"]["kafka_node_id"]


def _kraft_controller_with_a_broker_id(groups: dict, group_vars: dict) -> None:
    _kraft(groups, group_vars)
    groups["kafka_controllers"]["hosts"]["controller3"]["kafka_node_id"] = 2  # kafka2's


def _unknown_metadata_mode(_: dict, group_vars: dict) -> None:
    group_vars["kafka_metadata_mode"] = "zk"


def _mixed_metadata_modes(groups: dict, _: dict) -> None:
    groups["kafka"]["hosts"]["kafka2"]["kafka_metadata_mode"] = "kraft"


def _controllers_in_zookeeper_mode(groups: dict, group_vars: dict) -> None:
    _kraft_with_zookeeper(groups, group_vars)
    group_vars["kafka_metadata_mode"] = "zookeeper"


@pytest.mark.parametrize(("edit", "message"), [
    (_host_in_kafka_and_zookeeper, "zk1 is in kafka and zookeeper"),
    (_broker_without_id, "kafka2: kafka_broker_id must be set"),
    (_duplicate_broker_id, "kafka_broker_id must be set, and unique across the kafka group"),
    (_even_ensemble, "The zookeeper group has 4 nodes"),
    (_kraft_with_zookeeper,
     "kafka_metadata_mode is kraft, but the inventory still has a zookeeper group"),
    (_kraft_without_controllers, "the kafka_controllers group is empty"),
    (_kraft_even_quorum, "The kafka_controllers group has 2 controllers"),
    (_kraft_controller_without_id, "Every KRaft node needs a node id of its own"),
    (_kraft_controller_with_a_broker_id, "Every KRaft node needs a node id of its own"),
    (_unknown_metadata_mode, "kafka_metadata_mode must be zookeeper or kraft"),
    (_mixed_metadata_modes, "found kraft, zookeeper"),
    (_controllers_in_zookeeper_mode, "but kafka_metadata_mode is zookeeper"),
    (_missing_java, "required variable evilnet_java_home is not set"),
    (_spark_worker_on_another_machine,
     "The stream job's checkpoint is on a path local to the Spark master"),
    (_producers_in_containers_on_a_secured_kafka,
     "producer_runner is compose while the inventory's Kafka is secured"),
    (_producers_in_containers_with_secured_metrics,
     "producer_runner is compose while the inventory's metrics are secured"),
])
def test_bad_inventory_stops_site_yml_before_any_host_is_touched(
        tmp_path: Path, edit, message: str) -> None:
    inventory = _inventory(tmp_path, edit)
    run = run_playbook("ansible/site.yml", inventory, project_dir=REPO_ROOT)
    assert run.returncode != 0
    assert message in " ".join(run.output.split()), run.output[-3000:]
    assert not (tmp_path / "roots").exists(), "a host was touched"
    assert "PLAY [ZooKeeper]" not in run.output


def test_a_checkpoint_declared_shared_passes_preflight_with_workers_elsewhere(
        tmp_path: Path) -> None:
    def shared(groups: dict, group_vars: dict) -> None:
        _spark_worker_on_another_machine(groups, group_vars)
        group_vars["stream_job_checkpoint_shared"] = True

    run = _preflight(tmp_path, shared)
    assert run.returncode == 0, run.output[-3000:]


def test_producers_in_containers_pass_preflight_on_a_plaintext_kafka(tmp_path: Path) -> None:
    def containers(_: dict, group_vars: dict) -> None:
        group_vars["producer_runner"] = "compose"
        # Kafka and the metrics endpoints plaintext: a container then needs no host file.
        group_vars["kafka_security_enabled"] = False
        group_vars["prometheus_security_enabled"] = False

    run = _preflight(tmp_path, containers)
    assert run.returncode == 0, run.output[-3000:]


def test_a_kraft_inventory_passes_preflight(tmp_path: Path) -> None:
    run = _preflight(tmp_path, _kraft)
    assert run.returncode == 0, run.output[-3000:]
    assert "WARNING: the kafka_controllers group" not in run.output


@pytest.mark.parametrize(("even", "allow", "warning"), [
    (_even_ensemble, "zookeeper_allow_even_ensemble",
     "WARNING: the zookeeper group has 4 nodes (even)"),
    (_kraft_even_quorum, "kafka_allow_even_quorum",
     "WARNING: the kafka_controllers group has 2 controllers (even)"),
])
def test_an_even_quorum_passes_preflight_when_allowed_with_a_warning(
        tmp_path: Path, even, allow: str, warning: str) -> None:
    def even_but_allowed(groups: dict, group_vars: dict) -> None:
        even(groups, group_vars)
        group_vars[allow] = True

    run = _preflight(tmp_path, even_but_allowed)
    assert run.returncode == 0, run.output[-3000:]
    assert warning in " ".join(run.output.split())
