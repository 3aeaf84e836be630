"""The Jenkinsfile parses as Groovy, and its stages run exactly the documented commands."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
JENKINSFILE = REPO_ROOT / "Jenkinsfile"
GROOVY_VERSION = "4.0.24"
GROOVY_JAR = (Path.home() / ".m2" / "repository" / "org" / "apache" / "groovy" / "groovy"
              / GROOVY_VERSION / f"groovy-{GROOVY_VERSION}.jar")
JAVA = (Path("/usr/lib/jvm/java-17-openjdk-amd64/bin/java")
        if Path("/usr/lib/jvm/java-17-openjdk-amd64/bin/java").exists() else shutil.which("java"))
# Parses (compiles) a script without running it: the pipeline DSL is plain
# Groovy method calls with closures, so a syntax error fails here.
CHECK_SCRIPT = """
def file = new File(args[0])
new GroovyShell().parse(file)
println "parsed ${file.name}"
"""
STAGES = ["prepare", "validate", "validate rules", "plan", "render", "diff", "roll out", "verify"]


@pytest.fixture(scope="module")
def groovy_jar() -> Path:
    if not GROOVY_JAR.exists():
        # Maven Central, through Maven itself (the project's way to get JVM artifacts).
        subprocess.run(["mvn", "-q", "dependency:get",
                        f"-Dartifact=org.apache.groovy:groovy:{GROOVY_VERSION}"],
                       check=True, capture_output=True, timeout=600)
    return GROOVY_JAR


def _parse(jar: Path, script: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    check = tmp_path / "check.groovy"
    check.write_text(CHECK_SCRIPT)
    return subprocess.run([str(JAVA), "-cp", str(jar), "groovy.ui.GroovyMain", str(check),
                           str(script)], capture_output=True, text=True, check=False,
                          timeout=300)


def test_jenkinsfile_passes_a_groovy_syntax_check(groovy_jar: Path, tmp_path: Path) -> None:
    result = _parse(groovy_jar, JENKINSFILE, tmp_path)
    assert result.returncode == 0, result.stderr
    # The check does catch a broken pipeline.
    broken = tmp_path / "Jenkinsfile.broken"
    broken.write_text(JENKINSFILE.read_text().replace("stage('render') {", "stage('render' {", 1))
    result = _parse(groovy_jar, broken, tmp_path)
    assert result.returncode != 0 and "Unexpected input" in result.stderr


def _documented_commands() -> dict[str, str]:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Jenkins: Build with Parameters", 1)[1].split("\n## ", 1)[0]
    return {m[1]: m[2] for m in re.finditer(r"^\| ([a-z ]+) \| `(.+)` \|$", section, re.M)}


def _jenkins_stages() -> dict[str, list[str]]:
    text = JENKINSFILE.read_text()
    stages: dict[str, list[str]] = {}
    parts = re.split(r"^\s*stage\('([^']+)'\) \{$", text, flags=re.M)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        stages[name] = re.findall(r"^\s*sh '([^']+)'$", body, re.M)
    return stages


def test_jenkinsfile_parameters_are_the_documented_ones() -> None:
    text = JENKINSFILE.read_text()
    block = text.split("parameters {", 1)[1].split("\n    }", 1)[0]
    found = re.findall(r"(text|choice|booleanParam)\(name: '([A-Z_]+)'", block)
    assert found == [("text", "CITIES"), ("text", "TOPICS"), ("choice", "INVENTORY"),
                     ("booleanParam", "DRY_RUN"), ("booleanParam", "VALIDATE_RULES")]
    choices = re.search(r"choices: \[([^\]]+)\]", block)[1]
    # Every inventory but the test bed's (inventories/cluster: hosts that `make
    # cluster-up` boots on the controller for the cluster tier, not a deploy target).
    inventories = {p.name for p in (REPO_ROOT / "inventories").iterdir() if p.is_dir()}
    assert set(re.findall(r"'([a-z-]+)'", choices)) == inventories - {"cluster"}


def test_each_stage_runs_exactly_its_documented_command() -> None:
    stages = _jenkins_stages()
    documented = _documented_commands()
    assert list(stages) == STAGES
    assert list(documented) == STAGES
    for name in STAGES:
        assert stages[name] == [documented[name]], name
    text = JENKINSFILE.read_text()
    assert "${params." not in text and '"${CITIES' not in text  # never Groovy-interpolated
    for name in ("roll out", "verify"):
        block = text.split(f"stage('{name}')", 1)[1].split("steps {", 1)[0]
        assert "!params.DRY_RUN" in block
    # Off by default: the simulator-free CI has no X API to ask.
    block = text.split("stage('validate rules')", 1)[1].split("steps {", 1)[0]
    assert "params.VALIDATE_RULES" in block
    assert "name: 'VALIDATE_RULES', defaultValue: false" in text
    assert "withCredentials" in text and "archiveArtifacts" in text


def test_documented_commands_exist(tmp_path: Path) -> None:
    evilnet = Path(sys.executable).with_name("evilnet")
    for command in (["plan"], ["render"], ["health", "producers"]):
        result = subprocess.run([str(evilnet), *command, "--help"], capture_output=True,
                                text=True, check=False, env={**os.environ, "NO_COLOR": "1"})
        assert result.returncode == 0, result.stderr
    options = subprocess.run([str(evilnet), "plan", "--help"], capture_output=True, text=True,
                             check=True).stdout
    for option in ("--check", "--cities", "--topics", "--out", "--no-render", "--diff"):
        assert option in options
    # The inventory is the whole tool's: `evilnet -i I plan …`.
    assert "--inventory" in subprocess.run([str(evilnet), "--help"], capture_output=True,
                                           text=True, check=True).stdout
