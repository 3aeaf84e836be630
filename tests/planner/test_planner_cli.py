"""`evilnet plan` on the local inventory: bad input stops it before anything is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
EVILNET = Path(sys.executable).with_name("evilnet")


def plan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(EVILNET), "plan", "--inventory", "inventories/local", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(("cities", "topics", "message"), [
    ("Torontoo", "hockey", "unknown city 'Torontoo'; did you mean Toronto (ON)"),
    ("", "hockey", "CITIES: the list is empty"),
    ("Toronto", " , ", "TOPICS: the list is empty"),
    ("Toronto\nmontreal\nTORONTO", "hockey", "Toronto is listed twice"),
    ("Toronto", "hockey\nHockey", "'hockey' is listed twice"),
    ("Toronto", "hockey OR lang:fr", "holds the rule operator OR"),
    ("Toronto", "{{ lookup('env', 'HOME') }}", "is not a keyword or phrase"),
    ("Toronto", "hockey\"; rm -rf /; \"", "is not a keyword or phrase"),
    ("Toronto: {evil: 1}", "hockey", "unknown city 'Toronto: {evil: 1}'"),
    ("$(reboot)", "hockey", "unknown city '$(reboot)'"),
])
def test_bad_input_exits_2_naming_the_problem_and_writes_nothing(
        cities: str, topics: str, message: str, tmp_path: Path) -> None:
    out = tmp_path / "plan"
    result = plan("--cities", cities, "--topics", topics, "--out", str(out))
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert not out.exists()


def test_local_plan_points_at_the_simulator_with_file_credentials(tmp_path: Path) -> None:
    result = plan("--cities", "Toronto,Montréal,Vancouver", "--topics", "hockey,transit",
                  "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "3 cities x 2 topics = 6 rules" in result.stdout
    for config in tmp_path.glob("shards/*/producer.yml"):
        document = yaml.safe_load(config.read_text())
        assert document["x_api_base_url"] == "http://127.0.1.9:8080"
        assert document["bearer_token_file"] == "bearer-token"
    for shard in yaml.safe_load((tmp_path / "plan.json").read_text())["shards"]:
        assert set(shard["credential"]) == {"file"}


def test_production_plan_uses_x_and_credentials_from_the_environment(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(EVILNET), "plan", "--inventory", "inventories/production", "--cities",
         "Toronto,Montréal", "--topics", "hockey", "--out", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    for config in tmp_path.glob("shards/*/producer.yml"):
        assert yaml.safe_load(config.read_text())["x_api_base_url"] == "https://api.twitter.com"
    for shard in yaml.safe_load((tmp_path / "plan.json").read_text())["shards"]:
        assert set(shard["credential"]) == {"env"}
