"""Helpers of the monitoring tests: the dashboards' code, their targets, and Grafana's
substitutions (imported from :mod:`evilnet.dashboards.interpolation`, which the local
dashboards page runs its queries through too).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import yaml

# Re-exported: the tests' helpers for Grafana's substitutions.
from evilnet.dashboards.interpolation import (  # noqa: F401
    frames,
    interpolate,
    interpolate_variable_query,
    millis,
    sqlstring,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GENERATOR = REPO_ROOT / "grafana" / "generate.py"
PLAYBOOK_GROUP_VARS = REPO_ROOT / "ansible" / "playbooks" / "group_vars" / "all"


def load_generator():
    """grafana/generate.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("evilnet_grafana_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def cassandra_targets(dashboard: dict) -> list[tuple[dict, dict]]:
    """(panel, target) of every Cassandra query of a dashboard, rows' panels included."""
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                if "rawQuery" in target:
                    found.append((inner, target))
    return found


def prometheus_targets(dashboard: dict) -> list[tuple[dict, dict]]:
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                if "expr" in target:
                    found.append((inner, target))
    return found


def render_for_production(role: str, template: str, target: Path) -> None:
    """A role's template for the production example's monitor host, with the role's
    defaults, as the role would render it there (rendered here, nothing is reached)."""
    result = subprocess.run(
        [str(BIN / "ansible"), "-i", "inventories/production", "monitor.evilnet.internal",
         "-c", "local", "-e", "ansible_become=false",
         "-e", f"ansible_python_interpreter={BIN / 'python'}",
         # What every play gets from the playbooks' group_vars (conventions, contracts).
         *[f"--extra-vars=@{path}" for path in sorted(PLAYBOOK_GROUP_VARS.glob("*.yml"))],
         "-e", f"@ansible/roles/{role}/defaults/main.yml",
         "-e", f"role_path={REPO_ROOT / 'ansible' / 'roles' / role}",
         "-m", "ansible.builtin.copy",
         "-a", f"content={{{{ lookup('ansible.builtin.template', "
               f"'{REPO_ROOT / 'ansible' / 'roles' / role / 'templates' / template}') }}}} "
               f"dest={target} mode=0644"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "PATH": f"{BIN}:/usr/bin:/bin",
             "HOME": str(Path.home())})
    assert result.returncode == 0, result.stdout + result.stderr


def promtool_test_rules(tmp_path: Path, series: list[dict],
                        cases: list[tuple[str, str, list[dict]]]) -> None:
    """`promtool test rules` on the alerting rules as the prometheus role renders them.

    ``series``: promtool input series, one sample a minute from time 0; ``cases``:
    (eval_time, alertname, the alerts expected firing then, labels and annotations).
    """
    rules = tmp_path / "evilnet.rules.yml"
    render_for_production("prometheus", "evilnet.rules.yml.j2", rules)
    tests = {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": alerts}
                            for at, name, alerts in cases]}]}
    path = tmp_path / "alerts.test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    result = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
