"""What the grafana and prometheus roles rendered on the local inventory, and how the
grafana role behaves where Grafana cannot be installed or has no admin password."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from monitoring_helpers import REPO_ROOT
from stack_clients import LOCAL_INVENTORY, local_inventory
from supervised import host_root

from evilnet.platform.playbook import run_playbook

pytestmark = pytest.mark.stack

MONITORING = "ansible/playbooks/monitoring.yml"
ROLES = REPO_ROOT / "ansible" / "roles"


def provisioning() -> Path:
    """Grafana's provisioning directory on the suite's monitor host."""
    return host_root("monitor") / "etc" / "grafana" / "provisioning"


def defaults(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text("utf-8"))


@pytest.mark.disruptive
def test_monitoring_play_skips_the_grafana_server_here_and_changes_nothing() -> None:
    # First in this module: the files checked below are what this run left.
    first = run_playbook(MONITORING, LOCAL_INVENTORY, project_dir=REPO_ROOT, timeout=900)
    assert first.returncode == 0, first.output[-5000:]
    assert "GRAFANA SERVER SKIPPED on monitor" in first.output
    again = run_playbook(MONITORING, LOCAL_INVENTORY, project_dir=REPO_ROOT, timeout=900)
    assert again.returncode == 0, again.output[-3000:]
    changed = [(host, task) for task, status, host in again.events() if status == "changed"]
    assert changed == [], again.output[-2000:]


def test_datasources_provisioning_loads(generator) -> None:
    config = yaml.safe_load((provisioning() / "datasources" / "evilnet.yaml").read_text("utf-8"))
    assert config["apiVersion"] == 1
    by_uid = {source["uid"]: source for source in config["datasources"]}
    assert set(by_uid) == {generator.CASSANDRA.uid, generator.PROMETHEUS.uid}
    cassandra = by_uid[generator.CASSANDRA.uid]
    assert cassandra["type"] == generator.CASSANDRA_PLUGIN == "hadesarchitect-cassandra-datasource"
    assert cassandra["url"] == "127.0.1.6:9042" and cassandra["jsonData"]["keyspace"] == "evilnet"
    prometheus = by_uid[generator.PROMETHEUS.uid]
    # https where the local Prometheus is secured (prometheus_security_enabled), else http.
    assert prometheus["type"] == "prometheus" and prometheus["url"] == (
        local_inventory().prometheus_url("monitor"))
    assert prometheus["isDefault"] is True


def test_dashboard_provider_loads_and_points_at_the_dashboards() -> None:
    config = yaml.safe_load((provisioning() / "dashboards" / "evilnet.yaml").read_text("utf-8"))
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    dashboards = host_root("monitor") / "data" / "grafana" / "dashboards"
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False
    installed = {path.name: json.loads(path.read_text("utf-8"))
                 for path in sorted(dashboards.glob("*"))}
    assert provider["options"]["path"] == str(dashboards)
    checked_in = {path.name: json.loads(path.read_text("utf-8"))
                  for path in (REPO_ROOT / "grafana" / "dashboards").glob("*.json")}
    assert installed == checked_in


def test_role_defaults_agree_with_each_other(generator) -> None:
    prometheus = defaults("prometheus")
    assert prometheus["prometheus_jmx_exporter_ports"] == {
        role: defaults(role)[f"{role}_jmx_exporter_port"]
        for role in ("zookeeper", "kafka", "cassandra")}
    assert prometheus["prometheus_stream_job_ui_port"] == defaults("stream_job")[
        "stream_job_ui_port"]
    assert prometheus["prometheus_stream_job_metrics_port"] == defaults("stream_job")[
        "stream_job_metrics_port"]
    spark = defaults("spark")
    assert prometheus["prometheus_spark_master_webui_port"] == spark["spark_master_webui_port"]
    assert prometheus["prometheus_spark_worker_webui_port"] == spark["spark_worker_webui_port"]
    assert prometheus["prometheus_spark_tls_port_offset"] == spark["spark_ui_tls_port_offset"]
    assert prometheus["prometheus_spark_path"].rstrip("/") == spark["spark_prometheus_path"]
    assert prometheus["prometheus_spark_master_path"].rstrip("/") == spark[
        "spark_prometheus_master_path"]
    grafana = defaults("grafana")
    assert grafana["grafana_cassandra_datasource_uid"] == generator.CASSANDRA.uid
    assert grafana["grafana_prometheus_datasource_uid"] == generator.PROMETHEUS.uid
    assert grafana["grafana_cassandra_plugin"] == generator.CASSANDRA_PLUGIN
    dashboard = json.loads((REPO_ROOT / "grafana" / "dashboards" / "top-cities.json").read_text())
    assert grafana["grafana_dashboard_schema_version"] == dashboard["schemaVersion"]
    assert grafana["grafana_admin_password"] is None  # no default password, ever


@pytest.mark.parametrize("password", [None, "admin"])
def test_grafana_server_refuses_to_run_without_a_vault_password(password) -> None:
    extra = {"grafana_server_enabled": True}
    if password is not None:
        extra["grafana_admin_password"] = password
    run = run_playbook(MONITORING, LOCAL_INVENTORY, project_dir=REPO_ROOT, timeout=900, extra_args=(
        "-e", json.dumps(extra),
        "--start-at-task", "Find the dashboards generated by grafana/generate.py"))
    assert run.returncode != 0
    assert "grafana_admin_password is not set" in run.output
    assert not [task for task, _, _ in run.events() if "Install Grafana" in task], run.output
