"""Resident memory of the local stack, per host and service.

Walks /proc for the processes whose command line or working directory lies under
the local hosts' roots (.run/hosts/<host>/): every JVM, Python service and
supervisord of the stack. Prints a table and the total against the 6 GiB budget.

    .venv/bin/python benchmarks/stack_footprint.py
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

HOSTS_ROOT = Path(__file__).resolve().parents[1] / ".run" / "hosts"
BUDGET_BYTES = 6 * 1024**3


def _rss_bytes(pid: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _owner(pid: str) -> tuple[str, str] | None:
    """(host, process kind) for a process of the local stack."""
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    command = raw.replace(b"\0", b" ").decode(errors="replace")
    root = str(HOSTS_ROOT) + "/"
    if root not in command:
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            return None
        if not cwd.startswith(root):
            return None
        command = cwd + " " + command
    host = command.split(root, 1)[1].split("/", 1)[0]
    words = command.split()
    if "supervisord" in command and "supervisord.conf" in command:
        kind = "supervisord"
    elif words[0].endswith("/java"):
        kind = "jvm " + _main_class(words)
    else:
        kind = Path(words[1] if len(words) > 1 and words[0].endswith("python") else words[0]).name
    return host, kind


def _main_class(words: list[str]) -> str:
    """The simple name of a JVM's main class: the first word that is a class name."""
    after_classpath = False
    for word in words[1:]:
        if after_classpath:
            after_classpath = False
        elif word in ("-cp", "-classpath"):
            after_classpath = True
        elif re.fullmatch(r"(?:[a-z][a-z0-9_]*\.)+[A-Z]\w*", word):
            return word.rsplit(".", 1)[1]
    return "?"


def main() -> None:
    usage: dict[tuple[str, str], int] = defaultdict(int)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            owner = _owner(pid)
            if owner:
                usage[owner] += _rss_bytes(pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    table = Table(title="Local stack, resident memory")
    for column in ("host", "process", "RSS MiB"):
        table.add_column(column, justify="right" if column == "RSS MiB" else "left")
    for (host, kind), rss in sorted(usage.items()):
        table.add_row(host, kind, f"{rss / 1024**2:,.0f}")
    total = sum(usage.values())
    table.add_row("[b]total[/]", "", f"[b]{total / 1024**2:,.0f}[/]")
    Console().print(table)
    print(f"total {total / 1024**3:.2f} GiB = {total / BUDGET_BYTES:.0%} of the 6 GiB budget")


if __name__ == "__main__":
    main()
