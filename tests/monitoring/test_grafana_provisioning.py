"""The grafana role's provisioning templates for the production example inventory."""

from __future__ import annotations

from pathlib import Path

import yaml
from monitoring_helpers import REPO_ROOT, render_for_production


def test_production_datasources_name_every_cassandra_node_and_prometheus(tmp_path: Path,
                                                                          generator) -> None:
    target = tmp_path / "datasources.yaml"
    render_for_production("grafana", "datasources.yaml.j2", target)
    config = yaml.safe_load(target.read_text())
    by_uid = {source["uid"]: source for source in config["datasources"]}
    # The Cassandra plugin (3.3.0) takes its hosts as strings.Split(url, ";") and
    # nothing else: every node must come out of that split, as host:port.
    cassandra_url = by_uid[generator.CASSANDRA.uid]["url"]
    assert cassandra_url.split(";") == ["10.20.3.11:9042", "10.20.3.12:9042", "10.20.3.13:9042"]
    # Production's Prometheus is secured: HTTPS and basic auth, the password and the
    # CA bundle read from files on the Grafana host, never written into this file.
    prometheus = by_uid[generator.PROMETHEUS.uid]
    assert prometheus["url"] == "https://10.20.6.10:9090"
    assert prometheus["basicAuth"] is True
    prometheus_defaults = REPO_ROOT / "ansible" / "roles" / "prometheus" / "defaults" / "main.yml"
    assert prometheus["basicAuthUser"] == yaml.safe_load(
        prometheus_defaults.read_text())["prometheus_web_user"]
    assert prometheus["jsonData"]["tlsAuthWithCACert"] is True
    assert prometheus["secureJsonData"] == {
        "basicAuthPassword": "$__file{/opt/evilnet/etc/grafana/prometheus.password}",
        "tlsCACert": "$__file{/opt/evilnet/etc/grafana/tls/ca.crt}"}
    # The Cassandra reader's password too: a 0600 file, never this 0640 one.
    assert by_uid[generator.CASSANDRA.uid]["secureJsonData"] == {
        "password": "$__file{/opt/evilnet/etc/grafana/cassandra.password}"}


def test_production_dashboard_provider_loads(tmp_path: Path) -> None:
    target = tmp_path / "dashboards.yaml"
    render_for_production("grafana", "dashboards.yaml.j2", target)
    (provider,) = yaml.safe_load(target.read_text())["providers"]
    assert provider["options"]["path"] == "/opt/evilnet/data/grafana/dashboards"
    assert provider["disableDeletion"] is True and provider["allowUiUpdates"] is False


def test_production_reads_cassandra_over_tls_as_the_read_only_role(tmp_path: Path,
                                                                    generator) -> None:
    # Production's Cassandra is secured (cassandra_security_enabled, the default): the
    # plugin's TLS options (3.3.0 pkg/settings.go) with the inventory's CA bundle, and
    # the role that may only SELECT. Its password is in a file of its own (above).
    from evilnet.cassandra_clients import READER

    target = tmp_path / "datasources.yaml"
    render_for_production("grafana", "datasources.yaml.j2", target)
    config = yaml.safe_load(target.read_text())
    settings = {s["uid"]: s for s in config["datasources"]}[generator.CASSANDRA.uid]["jsonData"]
    assert settings["user"] == READER.name
    assert settings["useCustomTLS"] is True and settings["useCertContent"] is False
    assert settings["allowInsecureTLS"] is False
    assert settings["caPath"] == "/opt/evilnet/etc/grafana/tls/ca.crt"
