"""The same role code that runs services under supervisord here writes valid systemd units."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from evilnet.platform.inventory import Inventory
from evilnet.platform.playbook import run_playbook

REPO_ROOT = Path(__file__).resolve().parents[2]

EXPECTED_UNITS = {"zookeeper": ["zookeeper"], "kafka": ["kafka"], "cassandra": ["cassandra"],
                  "spark_master": ["spark-master", "stream-job"],
                  "spark_workers": ["spark-worker"]}
# The local inventory runs the X API simulator on the first producer host.
EXPECTED_SIMULATOR = "x-api-simulator"
pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed")


def _verify(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, check=False)


def test_every_rendered_unit_passes_systemd_analyze_verify(
        stack: Inventory, tmp_path: Path) -> None:
    run = run_playbook("ansible/playbooks/render-systemd-units.yml", stack.path,
                       project_dir=REPO_ROOT, extra_args=("-e", f"units_dir={tmp_path}"))
    assert run.returncode == 0, run.output[-4000:]
    expected = {f"{host}/{unit}.service" for group, units in EXPECTED_UNITS.items()
                for host in stack.groups[group] for unit in units}
    expected.add(f"{stack.groups['producers'][0]}/{EXPECTED_SIMULATOR}.service")
    rendered = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.service")}
    assert rendered == expected
    for unit in sorted(tmp_path.rglob("*.service")):
        result = _verify(unit)
        assert result.returncode == 0, f"{unit.name}: {result.stderr}"
        assert "ExecStart=/" in unit.read_text()
        # The marker `make down` (service role, stop_all) finds units by.
        assert f"# EvilNet service: {unit.stem}" in unit.read_text()


def test_verify_catches_a_bad_exec_start(tmp_path: Path) -> None:
    # The check above is only worth something if verify rejects a broken unit.
    unit = tmp_path / "broken.service"
    unit.write_text("[Service]\nExecStart=/nonexistent/bin/java -version\n")
    result = _verify(unit)
    assert result.returncode != 0
    assert "/nonexistent/bin/java" in result.stderr
