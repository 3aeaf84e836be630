"""Tasks that run on the controller (delegate_to: localhost) do so as the user running
Ansible, never through become.

Production and the test bed set ``ansible_become: true`` for every host in
group_vars/all, which the implicit localhost reads too, and a connection variable
overrides the ``become:`` keyword: only a task variable turns it off. The test bed
found it: preflight's delegated stat failed on a controller without sudo
(``No such file or directory: 'sudo'``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ANSIBLE = Path(__file__).resolve().parents[2] / "ansible"
TASK_FILES = sorted([*ANSIBLE.glob("roles/*/tasks/*.yml"), *ANSIBLE.glob("roles/*/handlers/*.yml"),
                     *ANSIBLE.glob("playbooks/*.yml")])
BLOCK_KEYS = ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers")


def _tasks(entries: list, inherited: dict) -> Iterator[tuple[dict, dict]]:
    """Every task, with the vars of the blocks and plays around it."""
    for entry in entries or []:
        if not isinstance(entry, dict):
            continue
        scope = {**inherited, **(entry.get("vars") or {})}
        nested = [key for key in BLOCK_KEYS if key in entry]
        for key in nested:
            yield from _tasks(entry[key], scope)
        if not nested:
            yield entry, scope


def _controller_tasks() -> Iterator[tuple[str, object]]:
    for path in TASK_FILES:
        for task, scope in _tasks(yaml.safe_load(path.read_text()), {}):
            if task.get("delegate_to") == "localhost" or "local_action" in task:
                name = f"{path.relative_to(ANSIBLE)}: {task.get('name')}"
                yield name, scope.get("ansible_become")


def test_the_scan_finds_the_controller_tasks() -> None:
    assert len(list(_controller_tasks())) >= 4  # preflight, producer, simulator, pki


@pytest.mark.parametrize(("task", "become"), list(_controller_tasks()),
                         ids=[task for task, _ in _controller_tasks()])
def test_a_task_on_the_controller_turns_become_off_with_a_variable(task: str, become) -> None:
    assert become is False, f"{task}: set vars: {{ansible_become: false}}"
