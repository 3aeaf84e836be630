"""The prometheus role's templates for the production example inventory (separate
machines): rendered by Ansible as the role does, and checked by promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from monitoring_helpers import render_for_production

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None,
                                reason="promtool (Debian's prometheus package) is not installed")

def test_production_scrape_config_passes_promtool(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    render_for_production("prometheus", "prometheus.yml.j2", config)
    # --syntax-only: the rule file it names lives on the production host.
    check = subprocess.run(["promtool", "check", "config", "--syntax-only", str(config)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    jobs = {job["job_name"]: job for job in yaml.safe_load(config.read_text())["scrape_configs"]}
    targets = {name: [t for group in job.get("static_configs", []) for t in group["targets"]]
               for name, job in jobs.items()}
    assert targets["zookeeper"] == ["10.20.1.11:7070", "10.20.1.12:7070", "10.20.1.13:7070"]
    assert targets["kafka"] == ["10.20.2.11:7071", "10.20.2.12:7071", "10.20.2.13:7071"]
    assert targets["cassandra"] == ["10.20.3.11:7072", "10.20.3.12:7072", "10.20.3.13:7072"]
    # Production's Spark is secured (spark_security_enabled): its UIs serve HTTPS on
    # their port + 400, verified with the inventory's CA bundle.
    assert targets["spark_workers"] == ["10.20.4.11:8481", "10.20.4.12:8481"]
    assert targets["spark_master"] == ["10.20.4.10:8480"]
    assert targets["spark_driver"] == ["10.20.4.10:4440"]
    for name in ("spark_master", "spark_workers", "spark_driver"):
        assert jobs[name]["scheme"] == "https"
        assert jobs[name]["tls_config"]["ca_file"] == "/opt/evilnet/etc/prometheus/tls/ca.crt"
    assert targets["stream_job"] == ["10.20.4.10:9108"]
    # And so is Prometheus: it scrapes itself over HTTPS, logged in from a file.
    assert jobs["prometheus"]["scheme"] == "https"
    assert jobs["prometheus"]["basic_auth"] == {
        "username": "evilnet", "password_file": "/opt/evilnet/etc/prometheus/web.password"}
    assert jobs["producers"]["file_sd_configs"][0]["files"] == [
        "/opt/evilnet/etc/prometheus/targets/producers.json"]


def test_alert_rules_pass_promtool(tmp_path: Path) -> None:
    rules = tmp_path / "evilnet.rules.yml"
    render_for_production("prometheus", "evilnet.rules.yml.j2", rules)
    check = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 11 rules found" in check.stdout
