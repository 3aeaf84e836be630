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


@pytest.mark.parametrize(("edit", "message"), [
    (_host_in_kafka_and_zookeeper, "zk1 is in kafka and zookeeper"),
    (_broker_without_id, "kafka2: kafka_broker_id must be set"),
    (_duplicate_broker_id, "kafka_broker_id must be set, and unique across the kafka group"),
    (_even_ensemble, "The zookeeper group has 4 nodes"),
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


def test_even_ensemble_passes_preflight_when_allowed_with_a_warning(tmp_path: Path) -> None:
    def even_but_allowed(groups: dict, group_vars: dict) -> None:
        _even_ensemble(groups, group_vars)
        group_vars["zookeeper_allow_even_ensemble"] = True

    run = _preflight(tmp_path, even_but_allowed)
    assert run.returncode == 0, run.output[-3000:]
    assert "WARNING: the zookeeper group has 4 nodes (even)" in " ".join(run.output.split())


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
