"""Helpers of the monitoring tests: the dashboards' code, and Grafana's substitutions.

Grafana and the Cassandra datasource plugin (3.3.0) turn a panel's CQL into what
Cassandra runs in two steps, both reproduced here: the frontend interpolates the
dashboard's variables with their format (``${city:sqlstring}``), and the plugin's
backend replaces its time macros ``$__timeFrom`` / ``$__timeTo`` with the range in
epoch milliseconds (pkg/handler/data_query.go, for panel queries only). A variable
query takes only the first step (src/datasource.ts metricFindQuery: the template
service, then the backend's ``variables`` resource, which replaces no macro), so
:func:`interpolate_variable_query` leaves macros in, and the test fails on them.
The plugin then groups the result rows by the value of their first column (one
data frame per value), which is what a panel shows.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GENERATOR = REPO_ROOT / "grafana" / "generate.py"
PLAYBOOK_GROUP_VARS = REPO_ROOT / "ansible" / "playbooks" / "group_vars" / "all"
MONITOR_ROOT = REPO_ROOT / ".run" / "hosts" / "monitor"

_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::(?P<format>\w+))?\}|\$(?P<bare>[A-Za-z]\w*)")


def load_generator():
    """grafana/generate.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("evilnet_grafana_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def sqlstring(values: Iterable[str]) -> str:
    """Grafana's ``sqlstring`` variable format: each value quoted, quotes doubled."""
    quoted = []
    for value in values:
        assert '"' not in value and "\\" not in value, value  # Grafana escapes these with \\
        quoted.append("'" + value.replace("'", "''") + "'")
    return ",".join(quoted)


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def interpolate(text: str, variables: dict[str, list[str]], start: datetime,
                end: datetime) -> str:
    """A panel query as Cassandra receives it from Grafana and the plugin: the time
    macros of the range [start, end), then the dashboard's variables."""
    text = text.replace("$__timeFrom", str(millis(start))).replace(
        "$__timeTo", str(millis(end)))
    return interpolate_variable_query(text, variables)


def interpolate_variable_query(text: str, variables: dict[str, list[str]]) -> str:
    """A variable query as Cassandra receives it: the dashboard's variables only (the
    plugin replaces no time macro there); a macro left in fails."""
    def variable(match: re.Match) -> str:
        name = match["name"] or match["bare"]
        if name not in variables:
            raise AssertionError(f"the test gives no value for ${name} in: {text}")
        if match["format"] != "sqlstring":
            raise AssertionError(f"${name} must use the sqlstring format (CQL quoting): {text}")
        return sqlstring(variables[name])

    text = _VARIABLE.sub(variable, text)
    assert "$" not in text, f"unsubstituted macro or variable: {text}"
    return text


def frames(rows: list) -> dict[str, list[tuple]]:
    """The plugin's data frames: rows grouped by the value of their first column."""
    grouped: dict[str, list[tuple]] = {}
    for row in rows:
        grouped.setdefault(str(row[0]), []).append(tuple(row))
    return grouped


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
