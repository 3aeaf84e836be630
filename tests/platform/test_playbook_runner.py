"""The playbook runner reports each task's result per host, in order, and the recap,
as Ansible ran them with the project's ansible.cfg (its Mitogen strategy included)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
import yaml

from evilnet.platform.playbook import run_playbook

REPO_ROOT = Path(__file__).resolve().parents[2]
HOSTS = ["alpha", "beta"]
# A role's task, a changed file, a stat, a skipped task, a loop, and a handler that
# includes a task file (the shape of the roles' restart handlers).
PLAYBOOK = [{
    "name": "Tiny",
    "hosts": "all",
    "gather_facts": False,
    "roles": ["tiny"],
    "tasks": [
        {"name": "Write a marker", "notify": "Restart tiny",
         "ansible.builtin.copy": {"content": "x\n", "dest": "{{ marker }}", "mode": "0644"}},
        {"name": "Look at the marker", "ansible.builtin.stat": {"path": "{{ marker }}"}},
        {"name": "Never here", "when": False, "ansible.builtin.debug": {"msg": "no"}},
        {"name": "Count", "loop": [1, 2], "ansible.builtin.debug": {"msg": "{{ item }}"}},
        {"name": "Fail on beta", "when": "inventory_hostname == 'beta'",
         "ansible.builtin.fail": {"msg": "beta refuses"}},
    ],
}]
ROLE_TASKS = [{"name": "Greet", "ansible.builtin.debug": {"msg": "hello"}}]
ROLE_HANDLERS = [{"name": "Restart tiny", "ansible.builtin.include_tasks": "restart.yml"}]
RESTART_TASKS = [{"name": "Tiny restarted", "changed_when": True,
                  "ansible.builtin.debug": {"msg": "restarted"}}]
_RECAP_LINE = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", re.M)


def _write(path: Path, document: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def _project(tmp_path: Path) -> tuple[Path, Path]:
    _write(tmp_path / "site.yml", PLAYBOOK)
    role = tmp_path / "roles" / "tiny"
    _write(role / "tasks" / "main.yml", ROLE_TASKS)
    _write(role / "handlers" / "main.yml", ROLE_HANDLERS)
    _write(role / "handlers" / "restart.yml", RESTART_TASKS)
    inventory = tmp_path / "hosts.yml"
    _write(inventory, {"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        "hosts": {host: {"marker": str(tmp_path / f"{host}.marker")} for host in HOSTS}}})
    return tmp_path / "site.yml", inventory


def _printed_recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP as Ansible printed it."""
    recap = output.split("PLAY RECAP")[-1]
    return {host: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
            for host, counts in _RECAP_LINE.findall(recap)}


def test_events_and_recap_per_host_in_the_order_ansible_ran_them(tmp_path: Path) -> None:
    playbook, inventory = _project(tmp_path)
    run = run_playbook(playbook, inventory, project_dir=REPO_ROOT, timeout=300)

    assert run.returncode == 2, run.output[-3000:]  # a host failed
    assert "beta refuses" in run.output
    # Each host's results in order (hosts run a task in parallel, so their results for
    # one task may come in either order).
    both = [("tiny : Greet", "ok"), ("Write a marker", "changed"), ("Look at the marker", "ok"),
            ("Never here", "skipped"), ("Count", "ok")]
    expected = {
        "alpha": [*both, ("Fail on beta", "skipped"),
                  # beta failed, so only alpha is left for the handlers.
                  ("tiny : Restart tiny", "ok"), ("tiny : Tiny restarted", "changed")],
        "beta": [*both, ("Fail on beta", "failed")]}
    assert {host: [(task, status) for task, status, on in run.events() if on == host]
            for host in HOSTS} == expected
    # One task at a time: every host's result of a task comes before the next task's.
    tasks = [task for task, _, _ in run.events()]
    assert tasks == sorted(tasks, key=tasks.index)

    assert run.recap() == {
        "alpha": {"ok": 6, "changed": 2, "unreachable": 0, "failed": 0, "skipped": 2,
                  "rescued": 0, "ignored": 0},
        "beta": {"ok": 4, "changed": 1, "unreachable": 0, "failed": 1, "skipped": 1,
                 "rescued": 0, "ignored": 0}}
    assert run.recap() == _printed_recap(run.output)


def test_a_second_run_reports_no_change_and_nothing_is_left_in_the_checkout(
        tmp_path: Path) -> None:
    playbook, inventory = _project(tmp_path)
    before = set(REPO_ROOT.iterdir())
    run_playbook(playbook, inventory, project_dir=REPO_ROOT, timeout=300)
    again = run_playbook(playbook, inventory, project_dir=REPO_ROOT,
                         extra_args=("--limit", "alpha"), timeout=300)

    assert again.returncode == 0, again.output[-3000:]
    assert set(again.recap()) == {"alpha"}
    assert again.recap()["alpha"]["changed"] == 0
    assert ("Write a marker", "ok", "alpha") in again.events()
    assert set(REPO_ROOT.iterdir()) == before


def _processes_running(path: Path) -> list[str]:
    """Command lines of the processes that name ``path``."""
    found = []
    for process in Path("/proc").iterdir():
        try:
            command = (process / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, NotADirectoryError):
            continue
        if str(path) in command:
            found.append(command)
    return found


def test_a_run_past_its_timeout_is_stopped_with_all_its_processes(tmp_path: Path) -> None:
    _, inventory = _project(tmp_path)
    slow = tmp_path / "slow.yml"
    _write(slow, [{"name": "Slow", "hosts": "all", "gather_facts": False, "tasks": [
        {"name": "Wait", "ansible.builtin.pause": {"seconds": 120}}]}])
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="ran for more than 3 s"):
        run_playbook(slow, inventory, project_dir=REPO_ROOT, timeout=3)
    assert time.monotonic() - started < 60
    # Mitogen's multiplexer included: it runs in a session of its own.
    assert _processes_running(slow) == []
