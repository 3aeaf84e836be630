"""`evilnet stream-rules validate` (the Jenkins `validate rules` stage) against the
simulator over real HTTP: a plan's rules are dry-run, nothing is changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from producer_helpers import TOKEN, Simulator

REPO_ROOT = Path(__file__).resolve().parents[2]
EVILNET = [sys.executable, "-c", "from evilnet.cli import main; main()"]


def _inventory(tmp_path: Path, simulator: Simulator) -> Path:
    """The local inventory, its one app's token in an environment variable, pointed at
    the test's simulator."""
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO_ROOT / "inventories" / "local", inventory)
    producers = inventory / "group_vars" / "producers.yml"
    variables = yaml.safe_load(producers.read_text())
    variables["planner_apps"] = [{"name": "app-1", "credential": {"env": "TEST_X_TOKEN"}}]
    variables["planner_max_rules_per_shard"] = 25
    variables["planner_x_api_base_url"] = simulator.base_url
    producers.write_text(yaml.safe_dump(variables, allow_unicode=True))
    return inventory


def _validate(inventory: Path, cities: str, topics: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*EVILNET, "stream-rules", "validate", "--cities", cities, "--topics", topics,
         "--inventory", str(inventory), "--roles", str(REPO_ROOT / "ansible" / "roles")],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO_ROOT,
        env={**os.environ, "TEST_X_TOKEN": TOKEN})


def test_planned_rules_are_dry_run_and_nothing_changes(tmp_path: Path,
                                                       simulator: Simulator) -> None:
    result = _validate(_inventory(tmp_path, simulator), "Montréal,Laval", "hockey,food")

    assert result.returncode == 0, result.stderr
    assert "app-1: 4 rules, all accepted" in result.stdout
    calls = simulator.state()["rules_calls"]
    assert [(call["method"], call.get("dry_run")) for call in calls] == [("POST", True)]
    assert simulator.state()["rules"]["app-1"] == []


def test_a_rule_the_api_would_refuse_fails_the_stage(tmp_path: Path,
                                                     simulator: Simulator) -> None:
    # The simulator holds rules to the planner's default level (1,024 characters) and
    # the inventory plans for basic (512): shorten the simulator's limit below a rule.
    simulator.api.rule_max_length = 60

    result = _validate(_inventory(tmp_path, simulator), "Trois-Rivières", "hockey")

    assert result.returncode == 2
    assert "refused" in result.stdout and "Invalid Rule" in result.stdout
    assert simulator.state()["rules"]["app-1"] == []
