"""`evilnet` starts without importing what the command it runs does not use: the roles
call `evilnet health` often, and altair, flask, tweepy, kafka-python and the Cassandra
driver together took 2-3 s to import (docs/benchmarks.md, benchmarks/cli_startup.py).
`evilnet --help` still lists every command with its own short help."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from evilnet.cli import SUBCOMMANDS, main

EVILNET = str(Path(sys.executable).with_name("evilnet"))
# The libraries no help text and no `health` call needs before it connects.
HEAVY = ("altair", "vl_convert", "flask", "tweepy", "kafka", "cassandra", "requests",
         "prometheus_client", "pandas")


def _imported_after(arguments: list[str]) -> list[str]:
    """The HEAVY libraries in sys.modules after `evilnet ARGUMENTS` ran in a fresh Python."""
    script = ("import sys\nfrom evilnet.cli import main\n"
              f"try:\n    main({arguments!r})\nexcept SystemExit:\n    pass\n"
              f"print('\\n' + __import__('json').dumps(sorted(m for m in {HEAVY!r} "
              "if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=True)
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("arguments", [["--help"], ["health", "--help"],
                                       ["health", "kafka", "--help"], ["status", "--help"],
                                       ["replay", "--help"], ["dashboards", "--help"],
                                       ["stream-rules", "validate", "--help"]])
def test_help_and_health_import_no_heavy_library(arguments: list[str]) -> None:
    assert _imported_after(arguments) == []


def test_help_lists_every_command_with_its_own_short_help() -> None:
    result = subprocess.run([EVILNET, "--help"], capture_output=True, text=True, timeout=60,
                            check=True, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    listed = dict(re.findall(r"^  (\S+)\s{2,}(.+)$", result.stdout.split("Commands:")[1],
                             re.MULTILINE))
    context = click.Context(main)
    assert set(listed) == set(SUBCOMMANDS)
    for name, short_help in listed.items():
        command = main.get_command(context, name)
        assert command.name == name
        # Shortened to the terminal's width (click ends it with "...").
        own = command.get_short_help_str(limit=1000)
        assert own.startswith(short_help.removesuffix("...")) and len(short_help) > 20, name
