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
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
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
# Set in a run's environment, to find its processes when it times out: ansible-runner's
# own timeout SIGKILLs the process group, which leaves Mitogen's multiplexer (in a
# session of its own) running, while a SIGTERM lets ansible-playbook stop it.
_RUN_MARKER = "EVILNET_PLAYBOOK_RUN"
_STOP_GRACE_SECONDS = 15.0
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
                 extra_args: Sequence[str] = (), timeout: float = 1200) -> PlaybookRun:
    """Run ``playbook`` (relative to ``project_dir``, the checkout holding ansible.cfg)
    against ``inventories`` (none: ansible.cfg's), with more ``ansible-playbook`` args.

    Raises :class:`TimeoutError` when the run takes longer than ``timeout`` seconds
    (checked every few seconds), once the run's ansible-playbook processes are stopped.
    """
    project_dir = Path(project_dir).resolve()
    arguments: list[str] = []
    for inventory in inventories:
        arguments += ["-i", str(inventory)]
    arguments += [*extra_args, str(project_dir / playbook)]
    envvars = {"ANSIBLE_CONFIG": str(project_dir / "ansible.cfg"),
               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
               "PATH": f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    with tempfile.TemporaryDirectory(prefix="evilnet-ansible-runner-") as private_data_dir:
        deadline = _Deadline(timeout, marker=private_data_dir)
        runner = ansible_runner.run(
            private_data_dir=private_data_dir, project_dir=str(project_dir),
            binary=str(_BIN / "ansible-playbook"), cmdline=shlex.join(arguments),
            envvars={**envvars, _RUN_MARKER: private_data_dir}, cancel_callback=deadline,
            quiet=True)
        with runner.stdout as stdout:
            output = stdout.read()
        if deadline.passed:
            _stop(private_data_dir)  # whatever outlived the SIGTERM
            raise TimeoutError(f"{playbook} ran for more than {timeout:g} s:\n{output[-3000:]}")
        events = list(runner.events)
    results = tuple(result for event in events if (result := _result(event)) is not None)
    stats = next((event["event_data"] for event in reversed(events)
                  if event.get("event") == "playbook_on_stats"), {})
    return PlaybookRun(runner.rc, output, results, stats)


class _Deadline:
    """ansible-runner's cancel callback (polled every few seconds while a run lasts):
    past the deadline, it stops the run's processes and cancels the run."""

    def __init__(self, seconds: float, marker: str) -> None:
        self.at = time.monotonic() + seconds
        self.marker = marker
        self.passed = False

    def __call__(self) -> bool:
        if time.monotonic() < self.at:
            return False
        self.passed = True
        _stop(self.marker)
        return True


def _stop(marker: str) -> None:
    """SIGTERM the run's ansible-playbook processes (the main one then stops its workers
    and Mitogen's multiplexer), and SIGKILL those still there after a grace period."""
    for sent in (signal.SIGTERM, signal.SIGKILL):
        for pid in _run_processes(marker):
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sent)
        grace_ends = time.monotonic() + _STOP_GRACE_SECONDS
        while _run_processes(marker):
            if time.monotonic() > grace_ends:
                break
            time.sleep(0.2)
        else:
            return


def _run_processes(marker: str) -> list[int]:
    """The pids of the ansible-playbook processes started with this run's marker: not
    the services its tasks started, whose command is their own."""
    wanted = f"{_RUN_MARKER}={marker}".encode()
    found = []
    with suppress(FileNotFoundError):  # no /proc: ansible-runner's SIGKILL is all there is
        for process in Path("/proc").iterdir():
            if not process.name.isdigit():
                continue
            try:
                environ = (process / "environ").read_bytes().split(b"\0")
                command = (process / "cmdline").read_bytes().split(b"\0")
            except OSError:  # gone, or not ours
                continue
            if wanted in environ and any(arg.endswith(b"/ansible-playbook") for arg in command):
                found.append(int(process.name))
    return found
