"""Running the project's playbooks from tests, and reading what they did."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
_RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
                    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)", re.M)
_EVENT = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?P<task>.+?)\] \*+\n(?P<body>(?:(?!TASK|RUNNING"
                    r" HANDLER|PLAY).*\n)*)", re.M)


@dataclass
class PlaybookRun:
    returncode: int
    output: str

    def recap(self) -> dict[str, dict[str, int]]:
        return {m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
                for m in _RECAP.finditer(self.output)}

    def events(self) -> list[tuple[str, str, str]]:
        """(task, status, host) in the order Ansible printed them."""
        found = []
        for match in _EVENT.finditer(self.output):
            for line in match["body"].splitlines():
                status = re.match(r"^(ok|changed|failed|fatal|skipping): \[(\S+?)\]", line)
                if status:
                    found.append((match["task"], status[1], status[2]))
        return found


def run_playbook(playbook: str, *inventories: Path, extra_args: tuple[str, ...] = (),
                 timeout: float = 1200) -> PlaybookRun:
    command = [str(ANSIBLE_PLAYBOOK)]
    for inventory in inventories:
        command += ["-i", str(inventory)]
    command += [str(REPO_ROOT / playbook), *extra_args]
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=timeout, env=env, check=False)
    return PlaybookRun(result.returncode, result.stdout + result.stderr)
