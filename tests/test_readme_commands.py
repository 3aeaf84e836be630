"""The README's "Using the pipeline" commands run as written on the stack `make up` leaves:
from the repository root, with no address flags. The read-only ones are run here;
`check` is run by tests/analytics/test_check_rerun.py, `replay` writes to the stack."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Subcommands that write to the stack (Kafka): not run here.
WRITES = {"check", "replay"}
ADDRESS_FLAGS = ("--cassandra", "--bootstrap-servers", "--bootstrap", "--spark-master",
                 "--zookeeper", "--hosts", "--node", "--master-ui", "--ensemble")


def _section_commands() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Using the pipeline\n(.*?)^## ", readme, re.S | re.M)
    assert section, "README.md has no 'Using the pipeline' section"
    blocks = re.findall(r"^```sh\n(.*?)^```", section[1], re.S | re.M)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip().startswith(".venv/bin/evilnet ")]


def _subcommand(command: str) -> str:
    words = [w for w in shlex.split(command, comments=True)[1:] if not w.startswith("-")]
    return " ".join(words[:2]) if words[0] in {"query", "topics", "schema", "health"} \
        else words[0]


COMMANDS = _section_commands()


def test_the_section_shows_what_a_newcomer_uses_without_addresses() -> None:
    shown = {_subcommand(command) for command in COMMANDS}
    assert {"status", "query top", "query windows", "query progress", "check", "synth",
            "replay", "topics list", "topics describe", "schema status", "fidelity",
            "footprint"} <= shown
    assert any(name.startswith("health ") for name in shown)
    for command in COMMANDS:
        assert not any(flag in shlex.split(command, comments=True) for flag in ADDRESS_FLAGS), \
            command


@pytest.mark.stack
@pytest.mark.parametrize("command", [c for c in COMMANDS
                                     if _subcommand(c).split()[0] not in WRITES])
def test_readme_command_runs_as_written(stack, command: str) -> None:
    result = subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300, check=False)

    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    if _subcommand(command) == "query windows":
        # `--city montreal` finds the catalog's Montréal, which the producers feed.
        assert "Montréal" in result.stdout, result.stdout
    elif "-o " not in command:
        assert result.stdout.strip(), f"{command} printed nothing"
