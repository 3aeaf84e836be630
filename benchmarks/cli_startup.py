"""Start-up time of the `evilnet` command line, against baselines measured alongside.

Each command is run ``--runs`` times, the commands interleaved round by round so that
a busy moment of the machine weighs on all of them alike. Printed per command: the
median and the fastest wall time, and the median as a multiple of two baselines
taken in the same rounds: the bare interpreter (``python -c pass``) and
``python -c "import click"`` (the least any click command line costs). The ratios
compare runs taken on a loaded machine or on another one; the seconds do not.

    python benchmarks/cli_startup.py [--runs 10] [--commit REV]

``--commit REV`` times the command line of another commit instead of the installed
one, to compare before and after in one session: the commit's tree is extracted
(``git archive``), its package laid out as its pyproject.toml maps it
(``[tool.setuptools.package-dir]``), and run from the extracted project's root.

This is a benchmark, not a test: it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
EVILNET = str(Path(sys.executable).with_name("evilnet"))
# The calls the roles and operators make most, cheapest first: no service is asked.
COMMANDS = (["--help"], ["--version"], ["health", "--help"], ["health", "kafka", "--help"],
            ["status", "--help"])
BASELINES = {"python -c pass": [sys.executable, "-c", "pass"],
             "python -c 'import click'": [sys.executable, "-c", "import click"]}


def extract(commit: str, into: Path) -> Path:
    """The commit's project under ``into``, its package laid out as the wheel installs it
    under ``into``/site; returns that directory (for PYTHONPATH)."""
    project, site = into / "project", into / "site"
    project.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", commit],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(project)], input=archive, check=True)
    mapping = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    for package, folder in sorted(mapping.items()):  # "evilnet" before its subpackages
        shutil.copytree(project / folder, site.joinpath(*package.split(".")),
                        dirs_exist_ok=True)
    return site


def _time(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                   cwd=cwd, check=True, timeout=120)
    return time.perf_counter() - started


def measure(runs: int, evilnet: list[str], env: dict[str, str],
            cwd: Path) -> dict[str, list[float]]:
    commands = {**BASELINES, **{"evilnet " + " ".join(c): [*evilnet, *c] for c in COMMANDS}}
    for argv in commands.values():  # warm the page cache and the bytecode
        _time(argv, env, cwd)
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            seconds[name].append(_time(argv, env, cwd))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--commit", default=None,
                        help="Time this commit's command line instead of the installed one.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="evilnet-startup-") as work:
        env, cwd, evilnet = dict(os.environ), REPO_ROOT, [EVILNET]
        if args.commit:
            site = extract(args.commit, Path(work))
            env["PYTHONPATH"] = str(site)
            # The installed package is an editable one: run from a directory without it,
            # with the commit's package first on the path.
            cwd = Path(work) / "project"
            evilnet = [sys.executable, "-c", "from evilnet.cli import main; main()"]
            shutil.rmtree(cwd / "evilnet")
        seconds = measure(args.runs, evilnet, env, cwd)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    bare, click_ = (medians[name] for name in BASELINES)
    source = f"commit {args.commit}" if args.commit else "the installed package"
    print(f"{args.runs} runs each, interleaved; evilnet of {source}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'command':<34} {'median':>8} {'fastest':>8} {'x pass':>7} {'x click':>8}")
    for name, values in seconds.items():
        print(f"{name:<34} {medians[name]:>7.3f}s {min(values):>7.3f}s "
              f"{medians[name] / bare:>7.1f} {medians[name] / click_:>8.1f}")


if __name__ == "__main__":
    main()
