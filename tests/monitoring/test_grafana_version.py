"""The pinned Grafana release is one the pinned Cassandra plugin declares it runs on,
and one that reads the dashboards' schema version (Grafana 12 writes schema 41)."""

from __future__ import annotations

import nodesemver
import yaml
from monitoring_helpers import REPO_ROOT

DEFAULTS = REPO_ROOT / "ansible" / "roles" / "grafana" / "defaults" / "main.yml"


def defaults() -> dict:
    return yaml.safe_load(DEFAULTS.read_text("utf-8"))


def test_grafana_is_pinned_to_a_12_release() -> None:
    pinned = defaults()
    # A bare package name installs whatever the repository has newest.
    assert "=" not in pinned["grafana_package"]
    version = nodesemver.parse(str(pinned["grafana_version"]), loose=False)
    assert version is not None and version.major == 12, pinned["grafana_version"]
    assert pinned["grafana_dashboard_schema_version"] == 41


def test_the_pinned_grafana_satisfies_the_plugins_declared_range() -> None:
    pinned = defaults()
    declared = pinned["grafana_cassandra_plugin_grafana_dependency"]
    assert nodesemver.satisfies(str(pinned["grafana_version"]), declared), (
        f"Grafana {pinned['grafana_version']} is outside the range {declared} that "
        f"{pinned['grafana_cassandra_plugin']} {pinned['grafana_cassandra_plugin_version']} "
        "declares")
    # The check can fail: a release outside the range is refused.
    assert not nodesemver.satisfies("7.3.0", declared)
