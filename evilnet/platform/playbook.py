"""Running the project's playbooks from Python, and reading what they did as data.

Tests and benchmarks run playbooks through :func:`run_playbook`. ``ansible-runner``
starts the ``ansible-playbook`` of the running interpreter's environment and records
each of Ansible's callback events as JSON, so the per-host recap and the per-task
results are read from those records, not parsed from Ansible's human output (which
stays available as :attr:`PlaybookRun.output` for assertion messages).

The runner's private data directory (events, facts cache, stdout) is a temporary
directory that is removed once the run is read: nothing lands in the checkout.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import ansible_runner

Status = Literal["ok", "changed", "failed", "skipped", "unreachable"]

# The venv's executables: its ansible-playbook, and the `evilnet` and other tools roles
# delegate to the controller.
_BIN = Path(sys.executable).parent
# Ansible's per-host, per-task result events (a loop's items also emit their own
# runner_item_on_* events; the task's aggregate result is the one kept).
_RESULT_EVENTS: dict[str, Status] = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}
# Ansible's recap columns, by the name playbook_on_stats gives them.
_RECAP_COLUMNS = {"ok": "ok", "changed": "changed", "unreachable": "dark",
                  "failed": "failures", "skipped": "skipped", "rescued": "rescued",
                  "ignored": "ignored"}


@dataclass(frozen=True)
class TaskResult:
    """One task's (or handler's) result on one host."""

    task: str  # as Ansible prints it: "<role> : <name>" for a role's task
    status: Status
    host: str


@dataclass(frozen=True)
class PlaybookRun:
    returncode: int
    output: str  # Ansible's human output (stdout and stderr)
    results: tuple[TaskResult, ...]  # in the order Ansible reported them
    # playbook_on_stats' event data: column (ok, changed, dark, failures, ...) -> host -> count
    stats: Mapping[str, Any]

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP: host -> {ok, changed, unreachable, failed, skipped, rescued, ignored}."""
        hosts = set(self.stats.get("processed", {}))
        for column in _RECAP_COLUMNS.values():
            hosts |= set(self.stats.get(column, {}))
        return {host: {name: int(self.stats.get(column, {}).get(host, 0))
                       for name, column in _RECAP_COLUMNS.items()}
                for host in sorted(hosts)}

    def events(self) -> list[tuple[str, Status, str]]:
        """(task, status, host) of every task and handler result, in order."""
        return [(result.task, result.status, result.host) for result in self.results]


def _task_name(event_data: Mapping[str, Any]) -> str:
    task = event_data.get("task", "")
    role = event_data.get("role")
    return f"{role} : {task}" if role else task


def _result(event: Mapping[str, Any]) -> TaskResult | None:
    status = _RESULT_EVENTS.get(event.get("event", ""))
    if status is None:
        return None
    data = event["event_data"]
    if status == "ok" and data.get("res", {}).get("changed"):
        status = "changed"
    return TaskResult(_task_name(data), status, data["host"])


def run_playbook(playbook: str | Path, *inventories: str | Path, project_dir: Path,
                 extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 timeout: float = 1200) -> PlaybookRun:
    """Run ``playbook`` (relative to ``project_dir``, the checkout holding ansible.cfg)
    against ``inventories`` (none: ansible.cfg's), with more ``ansible-playbook`` args.

    Raises :class:`TimeoutError` when the run takes longer than ``timeout`` seconds.
    """
    project_dir = Path(project_dir).resolve()
    arguments: list[str] = []
    for inventory in inventories:
        arguments += ["-i", str(inventory)]
    arguments += [*extra_args, str(project_dir / playbook)]
    envvars = {"ANSIBLE_CONFIG": str(project_dir / "ansible.cfg"),
               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
               "PATH": f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    with tempfile.TemporaryDirectory(prefix="evilnet-ansible-runner-") as private_data_dir:
        runner = ansible_runner.run(
            private_data_dir=private_data_dir, project_dir=str(project_dir),
            binary=str(_BIN / "ansible-playbook"), cmdline=shlex.join(arguments),
            envvars=envvars, timeout=timeout, quiet=True)
        with runner.stdout as stdout:
            output = stdout.read()
        if runner.status == "timeout":
            raise TimeoutError(f"{playbook} ran for more than {timeout:g} s:\n{output[-3000:]}")
        events = list(runner.events)
    results = tuple(result for event in events if (result := _result(event)) is not None)
    stats = next((event["event_data"] for event in reversed(events)
                  if event.get("event") == "playbook_on_stats"), {})
    return PlaybookRun(runner.rc, output, results, stats)
