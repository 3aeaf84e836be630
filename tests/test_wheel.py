"""The built wheel works on its own: installed into a fresh venv, run from elsewhere.

The wheel is built the way `evilnet stage` builds the one the hosts install. Its
dependencies come from the staged wheelhouse when it has them all (offline, after a
`make up`), else from the package index through pip's cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evilnet.contracts import RuleTag
from evilnet.platform.staging import build_project_wheel, default_cache_dir
from evilnet.producer.config import parse_config
from evilnet.producer.routing import Line, Router

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCAL_INVENTORY = REPO_ROOT / "inventories" / "local"
ROLES = REPO_ROOT / "ansible" / "roles"
CITIES = ["Toronto", "Montréal", "St. John's"]
TOPICS = ["hockey", "transit"]


def _pip_install(venv: Path, *args: str) -> subprocess.CompletedProcess:
    """This environment's pip, installing into ``venv`` (which has no pip of its own)."""
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check",
                           "--python", str(venv / "bin" / "python"), "install", "-q", *args],
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ of a fresh venv that holds the wheel and its dependencies, nothing else."""
    root = tmp_path_factory.mktemp("wheel")
    wheel = build_project_wheel(REPO_ROOT, root / "dist")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    wheelhouse = default_cache_dir() / "wheelhouse"
    result = _pip_install(venv, str(wheel), "--no-index", "--find-links", str(wheelhouse))
    if result.returncode != 0:  # no wheelhouse yet, or a dependency added since
        result = _pip_install(venv, str(wheel))
    assert result.returncode == 0, result.stderr
    return venv / "bin"


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory outside the checkout, with no ansible/ or templates/ in it."""
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    return directory


def run(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # Ansible is the controller's tool, not a dependency of the wheel: the planner
    # finds ansible-inventory on PATH.
    env = {**os.environ, "PATH": f"{os.environ['PATH']}:{Path(sys.executable).parent}"}
    return subprocess.run([str(bin_dir / "evilnet"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_installed_package_is_the_wheel(installed: Path, elsewhere: Path) -> None:
    result = subprocess.run(
        [str(installed / "python"), "-c",
         "import evilnet.planner, evilnet.templates; "
         "print(evilnet.planner.__file__); print(evilnet.templates.__file__)"],
        cwd=elsewhere, capture_output=True, text=True, check=True)
    for path in result.stdout.split():
        assert Path(path).is_relative_to(installed.parent), path


def test_plan_renders_the_cities_given_from_outside_the_checkout(
        installed: Path, elsewhere: Path) -> None:
    result = run(installed, elsewhere, "plan", "--cities", ",".join(CITIES),
                 "--topics", ",".join(TOPICS), "--inventory", str(LOCAL_INVENTORY),
                 "--roles", str(ROLES), "--out", "plan")
    assert result.returncode == 0, result.stderr
    assert "3 cities x 2 topics = 6 rules" in result.stdout
    plan = json.loads((elsewhere / "plan" / "plan.json").read_text(encoding="utf-8"))
    assert sorted(city["name"] for city in plan["cities"]) == sorted(CITIES)
    planned = {RuleTag.parse(rule["tag"]) for shard in plan["shards"] for rule in shard["rules"]}
    assert planned == {RuleTag(city, topic) for city in CITIES for topic in TOPICS}
    for shard in plan["shards"]:
        # The templates came with the wheel: every shard's config is rendered and valid.
        config_file = elsewhere / "plan" / "shards" / shard["name"] / "producer.yml"
        config = parse_config(yaml.safe_load(config_file.read_text(encoding="utf-8")),
                              origin=str(config_file))
        assert {RuleTag.parse(rule.tag).city for rule in config.rules} == set(shard["cities"])
        assert (config_file.parent / "compose.yml").is_file()


def test_plan_without_the_roles_names_the_missing_default(
        installed: Path, elsewhere: Path) -> None:
    # The package looks in no checkout: an inventory outside any project (no
    # ansible.cfg above it) has no roles beside it, the default --roles
    # (ansible/roles) does not exist here, and the variable it would give is named.
    copied = elsewhere / "inventory-copy"
    shutil.copytree(LOCAL_INVENTORY, copied)
    result = run(installed, elsewhere, "-i", str(copied), "plan", "--cities", "Toronto",
                 "--topics", "hockey", "--check")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "kafka_port: not set for kafka1" in result.stderr
    assert "ansible/roles/kafka/defaults/main.yml" in result.stderr


def test_synth_writes_posts_the_producer_routes(installed: Path, elsewhere: Path) -> None:
    result = run(installed, elsewhere, "synth", "--cities", ",".join(CITIES),
                 "--topics", ",".join(TOPICS), "--posts", "50", "--output", "posts.jsonl")
    assert result.returncode == 0, result.stderr
    lines = (elsewhere / "posts.jsonl").read_bytes().splitlines()
    assert len(lines) == 50
    router = Router(max_payload_bytes=1 << 20)
    records = []
    for line in lines:
        routed = router.route(Line(line, len(line)))
        assert routed.dead_letter is None, routed.dead_letter
        records += routed.records
    assert {record.city for record in records} <= set(CITIES)
    assert {topic for record in records for topic in record.topics} <= set(TOPICS)
    assert len({record.id for record in records}) == 50
