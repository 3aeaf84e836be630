"""The Jenkinsfile's stages as a shell runs them: the commands are read from the
Jenkinsfile itself, so a test runs exactly what Jenkins would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def jenkins_commands() -> dict[str, str]:
    """Each stage's shell command, by stage name, in the Jenkinsfile's order."""
    text = (REPO_ROOT / "Jenkinsfile").read_text()
    parts = re.split(r"^\s*stage\('([^']+)'\) \{$", text, flags=re.M)
    return {name: re.findall(r"^\s*sh '([^']+)'$", body, re.M)[0]
            for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def run_jenkins_steps(inventory: str, cities: str, topics: str, plan_dir: Path,
                      timeout: float = 900) -> dict[str, str]:
    """The stages validate -> verify as Jenkins runs them (DRY_RUN=false) against
    inventories/<inventory>, asserting each succeeds; their output by stage."""
    env = {**os.environ, "CITIES": cities, "TOPICS": topics, "INVENTORY": inventory,
           "PLAN_DIR": str(plan_dir), "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
           "ANSIBLE_NOCOLOR": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    outputs = {}
    for stage, command in jenkins_commands().items():
        if stage == "prepare":
            continue  # the venv this test runs in
        result = subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, env=env,
                                capture_output=True, text=True, timeout=timeout, check=False)
        assert result.returncode == 0, f"stage {stage}:\n{result.stdout[-4000:]}{result.stderr}"
        outputs[stage] = result.stdout
    return outputs
