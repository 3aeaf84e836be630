"""site.yml on a running stack: idempotence and rolling restarts."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
import yaml
from supervised import REPO_ROOT, service_pid

from evilnet.platform.inventory import Inventory
from evilnet.platform.playbook import PlaybookRun, run_playbook


@pytest.mark.kraft
@pytest.mark.disruptive
def test_second_run_of_site_yml_changes_nothing(stack: Inventory) -> None:
    run = run_playbook("ansible/site.yml", stack.path, project_dir=REPO_ROOT)
    assert run.returncode == 0, run.output[-4000:]
    recap = run.recap()
    assert set(recap) >= {h for group in stack.groups.values() for h in group if group}
    changed = {host: counts["changed"] for host, counts in recap.items() if counts["changed"]}
    assert changed == {}, _changed_tasks(run)


def _changed_tasks(run: PlaybookRun) -> str:
    return "\n".join(f"{host}: {task}" for task, status, host in run.events()
                     if status == "changed")


def _broker_process(host: str) -> tuple[int, int]:
    """(pid, start time in clock ticks since boot) of a local broker's JVM."""
    pid = service_pid(host, "kafka")
    assert pid is not None, f"kafka is not running on {host}"
    # Field 22 of /proc/<pid>/stat, counted after the parenthesised command name.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return pid, int(stat.rsplit(")", 1)[1].split()[19])


@pytest.mark.kraft
@pytest.mark.disruptive
def test_changing_a_kafka_setting_restarts_brokers_one_at_a_time(
        stack: Inventory, tmp_path: Path) -> None:
    brokers = stack.groups["kafka"]
    before = {host: _broker_process(host) for host in brokers}
    # The change, made the way an operator makes it: in the inventory (here an
    # added inventory source layered over the local one).
    override = tmp_path / "override.yml"
    threads = int(time.time()) % 7 + 2  # differs from the committed default (1)
    override.write_text(yaml.safe_dump({"all": {"children": {"kafka": {"vars": {
        "kafka_properties": {"num.recovery.threads.per.data.dir": threads}}}}}}))
    try:
        run = run_playbook("ansible/playbooks/kafka.yml", stack.path, override,
                           project_dir=REPO_ROOT)
        assert run.returncode == 0, run.output[-4000:]
        after = {host: _broker_process(host) for host in brokers}
        assert all(after[h][0] != before[h][0] for h in brokers), "every broker restarted"

        # In the order Ansible ran them: restart broker 1, its health check passed,
        # and only then was broker 2 restarted and checked.
        sequence = []
        for task, status, host in run.events():
            if task.endswith("Supervisord: kafka restarted") and status == "changed":
                sequence.append((host, "restart"))
            elif task.startswith("kafka : Check Kafka broker") and status == "ok":
                sequence.append((host, "healthy"))
        restarts = [host for host, what in sequence if what == "restart"]
        assert restarts == brokers, sequence
        for first, second in itertools.pairwise(brokers):
            healthy_first = sequence.index((first, "healthy"), sequence.index((first, "restart")))
            assert healthy_first < sequence.index((second, "restart")), sequence
        # The second broker's JVM started after the first one was back.
        assert after[brokers[0]][1] < after[brokers[1]][1]
    finally:
        # Back to the inventory as committed (another rolling restart).
        restore = run_playbook("ansible/playbooks/kafka.yml", stack.path, project_dir=REPO_ROOT)
        assert restore.returncode == 0, restore.output[-4000:]
