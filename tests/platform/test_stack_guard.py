"""The guard of disruptive tests, tried with a deliberately broken one: it fails itself,
and the test after it finds the stack healthy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.stack, pytest.mark.disruptive]

TESTS = Path(__file__).resolve().parents[1]

BROKEN_THEN_READER = '''
import pytest
from stack_guard import LOCAL_INVENTORY, ROLES
from supervised import supervisorctl

from evilnet.platform.inventory import Inventory


@pytest.mark.disruptive
def test_leaves_a_broker_stopped():
    supervisorctl("kafka2", "stop", "kafka")


def test_after_it_finds_every_broker_in_sync():
    inventory = Inventory.load(LOCAL_INVENTORY, roles=ROLES)
    service, _, check = next(c for c in inventory.health_checks() if c[0] == "kafka")
    health = check()
    assert health.ok, health.detail
'''


def test_a_test_that_leaves_a_broker_stopped_fails_itself_and_the_next_passes(
        stack, tmp_path: Path) -> None:
    (tmp_path / "test_broken.py").write_text(BROKEN_THEN_READER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")])}
    # In this order, with the guard as the only plugin of ours: the suite's own conftest
    # is not in tmp_path, so only what the guard does is tried here.
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly",
                          "-p", "no:cacheprovider", "-p", "stack_guard", "--rootdir",
                          str(tmp_path), "-W", "ignore::pytest.PytestUnknownMarkWarning",
                          "-rA", str(tmp_path / "test_broken.py")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env,
                         check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    # The broken test's own body passed; the guard fails it at its teardown.
    assert "2 passed" in output and "1 error" in output, output
    assert "ERROR test_broken.py::test_leaves_a_broker_stopped" in output, output
    assert "left programs stopped; the guard started them again: kafka2:kafka" in output, output
    assert "PASSED test_broken.py::test_after_it_finds_every_broker_in_sync" in output, output
