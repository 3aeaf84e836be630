"""The spark and prometheus roles' secured configuration as ansible-playbook renders it
on a small local-connection site (tests/platform/pki_site.py), and the logins the
`evilnet` commands take from the inventory's files. No service runs here: what Spark
and Prometheus do with these files is tests/platform/test_spark_prometheus_security.py's
part.

Users rely on: Spark's RPC demands the shared secret and encrypts, its UIs serve
HTTPS from a keystore the file's password opens, the REST server stays off, and the
file holding the secret is the service account's alone; Prometheus's web
configuration holds a hash of the password, never the password, and keeps that hash
from run to run; a plaintext inventory gets the old files back.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import bcrypt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from pki_site import REPO_ROOT, write_inventory

from evilnet.platform import secrets
from evilnet.platform.inventory import Inventory
from evilnet.platform.playbook import run_playbook

GROUP_VARS = REPO_ROOT / "ansible" / "playbooks" / "group_vars" / "all"
ROLES = REPO_ROOT / "ansible" / "roles"
SITE = {"spark_master": {"spark-master": "127.0.3.1"},
        "spark_workers": {"spark-worker1": "127.0.3.2"},
        "prometheus": {"monitor": "127.0.3.3"}}
SPARK_HOSTS = ("spark-master", "spark-worker1")


def _render(root: Path, **settings: object) -> tuple[Path, Path]:
    """Run the roles' certificate and configure steps on the site twice (the second
    run must find nothing to do); its hosts' roots and its inventory."""
    inventory = write_inventory(root, SITE, evilnet_java_home="/nonexistent/java", **settings)
    # What the roles' main.yml decide from these settings (the site plays both or neither).
    secured = settings.get("spark_security_enabled", True)
    directories = {"name": "Make the configuration directories",
                   "ansible.builtin.file": {"path": "{{ item }}", "state": "directory",
                                            "mode": "0755"}}
    playbook = root / "render.yml"
    playbook.write_text(yaml.safe_dump([
        {"name": "Render Spark", "hosts": "spark_master:spark_workers", "gather_facts": False,
         # Nothing is installed: SPARK_HOME and the connector's jars are named, never read.
         "vars": {"spark_home": "/nonexistent/pyspark", "spark_jars": ["/nonexistent/a.jar"]},
         "tasks": [{**directories, "loop": ["{{ evilnet_root }}/etc/spark"]},
                   *([{"name": "Secure Spark", "ansible.builtin.include_role": {
                       "name": "spark", "tasks_from": "security"}}] if secured else []),
                   {"name": "Configure Spark", "ansible.builtin.include_role": {
                       "name": "spark", "tasks_from": "configure"}}]},
        {"name": "Render Prometheus", "hosts": "prometheus", "gather_facts": False,
         "tasks": [{**directories, "loop": ["{{ evilnet_root }}/etc/prometheus"]},
                   *([{"name": "Secure Prometheus", "ansible.builtin.include_role": {
                       "name": "prometheus", "tasks_from": "security"}}] if secured else []),
                   # Checked with promtool, with the files it names, as the role does.
                   {"name": "Configure Prometheus", "ansible.builtin.include_role": {
                       "name": "prometheus", "tasks_from": "configure"}}]}]))
    extra = [f"-e@{GROUP_VARS / 'contracts.yml'}", f"-e@{GROUP_VARS / 'conventions.yml'}"]
    for attempt in ("first", "second"):
        run = run_playbook(playbook, inventory, project_dir=REPO_ROOT, timeout=600,
                           extra_args=extra)
        assert run.returncode == 0, run.output[-3000:]
        if attempt == "second":  # a kept bcrypt hash, the same files: nothing to change
            changed = [(name, host) for name, status, host in run.events() if status == "changed"]
            assert changed == [], changed
    return root / "hosts", inventory


def _spark_defaults(path: Path) -> dict[str, str]:
    pairs = (line.split(None, 1) for line in path.read_text().splitlines()
             if line.strip() and not line.startswith("#"))
    return {key: value.strip() for key, value in pairs}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _render(tmp_path_factory.mktemp("secured"))


def _secret(hosts: Path, name: str) -> str:
    return secrets.read(hosts.parent / "state" / "secrets", name)


@pytest.mark.parametrize("host", SPARK_HOSTS)
def test_spark_rpc_demands_the_shared_secret_and_encrypts(secured, host: str) -> None:
    hosts, _ = secured
    config = _spark_defaults(hosts / host / "etc" / "spark" / "spark-defaults.conf")
    assert config["spark.authenticate"] == "true"
    assert config["spark.authenticate.secret"] == _secret(hosts, "spark_auth_secret")
    assert config["spark.network.crypto.enabled"] == "true"
    assert config["spark.master.rest.enabled"] == "false"
    assert config["spark.ui.killEnabled"] == "false"
    # No secret file: Spark 4.2 takes one in Kubernetes only.
    assert not any(key.startswith("spark.authenticate.secret.") for key in config)


@pytest.mark.parametrize("host", SPARK_HOSTS)
def test_spark_uis_serve_https_from_a_keystore_the_file_opens(secured, host: str) -> None:
    hosts, _ = secured
    config = _spark_defaults(hosts / host / "etc" / "spark" / "spark-defaults.conf")
    # standalone: the master's and workers' UIs; ui: the drivers'.
    for namespace in ("standalone", "ui"):
        assert config[f"spark.ssl.{namespace}.enabled"] == "true"
        assert config[f"spark.ssl.{namespace}.keyStoreType"] == "PKCS12"
    keystore = Path(config["spark.ssl.standalone.keyStore"])
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
    key, certificate, _ = pkcs12.load_key_and_certificates(
        keystore.read_bytes(), config["spark.ssl.standalone.keyStorePassword"].encode())
    assert key is not None
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    address = {**SITE["spark_master"], **SITE["spark_workers"]}[host]
    assert address in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}


def test_the_file_with_sparks_secret_is_its_owners_alone(secured) -> None:
    hosts, _ = secured
    secret = _secret(hosts, "spark_auth_secret").encode()
    holders = sorted(path.relative_to(hosts) for path in hosts.rglob("*")
                     if path.is_file() and secret in path.read_bytes())
    assert holders == [Path(host, "etc", "spark", "spark-defaults.conf") for host in SPARK_HOSTS]
    for holder in holders:
        assert stat.S_IMODE((hosts / holder).stat().st_mode) == 0o600


def test_prometheus_holds_a_hash_of_its_password_never_the_password(secured) -> None:
    hosts, _ = secured
    conf = hosts / "monitor" / "etc" / "prometheus"
    web = conf / "web.yml"
    password = _secret(hosts, "prometheus_password")
    assert password not in web.read_text()
    config = yaml.safe_load(web.read_text())
    (user, hashed), = config["basic_auth_users"].items()
    assert bcrypt.checkpw(password.encode(), hashed.encode())
    assert not bcrypt.checkpw(b"not-the-password", hashed.encode())
    assert Path(config["tls_server_config"]["cert_file"]).read_bytes().startswith(b"-----BEGIN")
    assert stat.S_IMODE(Path(config["tls_server_config"]["key_file"]).stat().st_mode) == 0o600
    check = subprocess.run(["promtool", "check", "web-config", str(web)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    # Its own scrape logs in from the one other file holding the password.
    holders = sorted(path.name for path in hosts.rglob("*")
                     if path.is_file() and password.encode() in path.read_bytes())
    assert holders == ["web.password"]
    assert stat.S_IMODE((conf / "web.password").stat().st_mode) == 0o600
    scrape = yaml.safe_load((conf / "prometheus.yml").read_text())["scrape_configs"]
    itself = next(job for job in scrape if job["job_name"] == "prometheus")
    assert itself["scheme"] == "https"
    assert itself["basic_auth"]["username"] == user
    assert Path(itself["basic_auth"]["password_file"]).resolve() == conf / "web.password"


def test_prometheus_scrapes_the_spark_uis_over_https(secured) -> None:
    hosts, _ = secured
    conf = hosts / "monitor" / "etc" / "prometheus"
    scrape = {job["job_name"]: job
              for job in yaml.safe_load((conf / "prometheus.yml").read_text())["scrape_configs"]}
    spark = yaml.safe_load((ROLES / "spark" / "defaults" / "main.yml").read_text())
    offset = spark["spark_ui_tls_port_offset"]
    expected = {"spark_master": f"127.0.3.1:{spark['spark_master_webui_port'] + offset}",
                "spark_workers": f"127.0.3.2:{spark['spark_worker_webui_port'] + offset}"}
    for job, target in expected.items():
        assert scrape[job]["scheme"] == "https"
        assert Path(scrape[job]["tls_config"]["ca_file"]).read_bytes().startswith(b"-----BEGIN")
        assert scrape[job]["static_configs"][0]["targets"] == [target]


def test_the_tools_log_in_with_the_inventorys_files(secured) -> None:
    hosts, inventory_path = secured
    inventory = Inventory.load(inventory_path, roles=ROLES)
    assert inventory.prometheus_url("monitor") == "https://127.0.3.3:9090"
    login = inventory.prometheus_login("monitor")
    assert login.password == _secret(hosts, "prometheus_password")
    assert login.password not in repr(login)
    assert Path(login.cafile).read_bytes().startswith(b"-----BEGIN")
    master = yaml.safe_load((ROLES / "spark" / "defaults" / "main.yml").read_text())
    assert inventory.spark_master_ui() == (
        f"https://127.0.3.1:{master['spark_master_webui_port'] + 400}")
    assert inventory.spark_ui_cafile() == login.cafile


def test_a_plaintext_inventory_gets_the_plaintext_files(tmp_path: Path) -> None:
    hosts, inventory_path = _render(tmp_path, spark_security_enabled=False,
                                    prometheus_security_enabled=False)
    config = _spark_defaults(hosts / "spark-master" / "etc" / "spark" / "spark-defaults.conf")
    assert "spark.authenticate" not in config and "spark.ssl.ui.enabled" not in config
    assert config["spark.master.rest.enabled"] == "false"  # off either way
    conf = hosts / "monitor" / "etc" / "prometheus"
    assert not (conf / "web.yml").exists()
    scrape = yaml.safe_load((conf / "prometheus.yml").read_text())["scrape_configs"]
    assert all("scheme" not in job and "basic_auth" not in job for job in scrape)
    inventory = Inventory.load(inventory_path, roles=ROLES)
    assert inventory.prometheus_login("monitor") is None
    assert inventory.prometheus_url("monitor") == "http://127.0.3.3:9090"
    assert inventory.spark_master_ui().startswith("http://")
