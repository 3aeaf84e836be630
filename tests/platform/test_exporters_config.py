"""The exporters' scrape login as ansible-playbook renders it (the jmx_exporter role's
agent configuration, the producer role's metrics login, the prometheus role's scrape
jobs) on a small local-connection site (tests/platform/pki_site.py), and the staged
JMX exporter agent reading what was rendered, in one small JVM.

Users rely on: every exporter Prometheus scrapes demands HTTPS and the scrape login
once Prometheus is secured; the exporters hold a salted hash and the keystore's
password in 0600 files, never the scrape password, which only Prometheus's 0600
password file holds; the scrape configuration names that file, never the password;
a second run changes nothing and restarts nothing, a new password restarts the JVM
services (the agent reads its server settings at start); the staged agent accepts
what the role rendered; a plaintext inventory gets the plaintext files back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import ssl
import stat
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from pki_site import REPO_ROOT, write_inventory

from evilnet.metrics_endpoint import SCRAPE_USER, EndpointSecurity
from evilnet.platform import secrets
from evilnet.platform.inventory import Inventory
from evilnet.platform.playbook import PlaybookRun, run_playbook
from evilnet.platform.staging import default_cache_dir

GROUP_VARS = REPO_ROOT / "ansible" / "playbooks" / "group_vars" / "all"
ROLES = REPO_ROOT / "ansible" / "roles"
# Never contacted, except zk1's address by the one JVM of the live test below.
SITE = {"zookeeper": {"zk1": "127.0.3.61"}, "kafka": {"kafka1": "127.0.3.62"},
        "cassandra": {"cass1": "127.0.3.63"}, "producers": {"producer1": "127.0.3.64"},
        "prometheus": {"monitor": "127.0.3.65"}, "spark_master": {"spark-master": "127.0.3.66"}}
JVM_HOSTS = {"zk1": "zookeeper", "kafka1": "kafka", "cass1": "cassandra"}
EXPORTER_JOBS = ("producers", "footprint", "zookeeper", "kafka", "cassandra", "stream_job")


def _playbook(root: Path, secured: bool) -> Path:
    """The roles' steps that write the exporters' and Prometheus's files. The restart
    handlers of the JVM services' roles are stand-ins that only report."""
    directories = {"name": "Make the configuration directory",
                   "ansible.builtin.file": {"path": "{{ item }}", "state": "directory",
                                            "mode": "0755"}}
    handlers = [{"name": f"Restart {service}",
                 "ansible.builtin.debug": {"msg": f"{service} would restart"}}
                for service in JVM_HOSTS.values()]
    playbook = root / "render.yml"
    playbook.write_text(yaml.safe_dump([
        {"name": "JVM services", "hosts": "zookeeper:kafka:cassandra", "gather_facts": False,
         # The role's default picks the services whose role the play runs (none here).
         "vars": {"jmx_exporter_services":
                  "{{ ['zookeeper', 'kafka', 'cassandra'] | intersect(group_names) }}"},
         "handlers": handlers,
         "tasks": [{**directories, "loop": ["{{ evilnet_root }}/etc/jmx-exporter"]},
                   {"name": "Configure the agent", "ansible.builtin.include_role": {
                       "name": "jmx_exporter", "tasks_from": "configure"}}]},
        {"name": "Producers", "hosts": "producers", "gather_facts": False,
         "vars": {"producer_runner": "service"},
         "tasks": [{"name": "Secure the metrics", "ansible.builtin.include_role": {
             "name": "producer", "tasks_from": "metrics_login"}}]},
        {"name": "Stream job", "hosts": "spark_master", "gather_facts": False,
         "handlers": [{"name": "Restart stream job",
                       "ansible.builtin.debug": {"msg": "the job would restart"}}],
         "tasks": [{**directories, "loop": ["{{ evilnet_root }}/etc/stream-job"]},  # install.yml's
                   *({"name": f"Stream job {step}", "ansible.builtin.include_role": {
                       "name": "stream_job", "tasks_from": step}}
                   for step in ("metrics_login", "configure"))]},
        {"name": "Prometheus", "hosts": "prometheus", "gather_facts": False,
         "tasks": [{**directories, "loop": ["{{ evilnet_root }}/etc/prometheus"]},
                   *([{"name": "Secure Prometheus", "ansible.builtin.include_role": {
                       "name": "prometheus", "tasks_from": "security"}}] if secured else []),
                   {"name": "Configure Prometheus", "ansible.builtin.include_role": {
                       "name": "prometheus", "tasks_from": "configure"}}]}]))
    return playbook


def _run(root: Path, inventory: Path, secured: bool) -> PlaybookRun:
    run = run_playbook(_playbook(root, secured), inventory, project_dir=REPO_ROOT, timeout=600,
                       extra_args=[f"-e@{GROUP_VARS / 'contracts.yml'}",
                                   f"-e@{GROUP_VARS / 'conventions.yml'}"])
    assert run.returncode == 0, run.output[-3000:]
    return run


def _restarts(run: PlaybookRun) -> set[tuple[str, str]]:
    return {(host, task) for task, status, host in run.events() if task.startswith("Restart ")}


def _render(root: Path, **settings: object) -> tuple[Path, Path, list[PlaybookRun]]:
    inventory = write_inventory(root, SITE, evilnet_java_home="/nonexistent/java", **settings)
    secured = settings.get("prometheus_security_enabled", True)
    runs = [_run(root, inventory, secured) for _ in ("first", "second")]
    return root / "hosts", inventory, runs


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[PlaybookRun]]:
    return _render(tmp_path_factory.mktemp("secured"))


def _secret(hosts: Path, name: str) -> str:
    return secrets.read(hosts.parent / "state" / "secrets", name)


def _agent_hash(password: str, salt: str) -> str:
    # What the agent compares (MessageDigestAuthenticator, 1.0.1): SHA-256 of
    # "salt:password" as BigInteger(1, digest).toString(16), so without leading zeros.
    return format(int(hashlib.sha256(f"{salt}:{password}".encode()).hexdigest(), 16), "x")


def _agent_config(hosts: Path, host: str) -> Path:
    return hosts / host / "etc" / "jmx-exporter" / f"{JVM_HOSTS[host]}.yml"


def _scrape_jobs(hosts: Path) -> dict[str, dict]:
    config = hosts / "monitor" / "etc" / "prometheus" / "prometheus.yml"
    return {job["job_name"]: job for job in yaml.safe_load(config.read_text())["scrape_configs"]}


@pytest.mark.parametrize("host", JVM_HOSTS)
def test_the_agent_demands_the_scrape_login_over_https(secured, host: str) -> None:
    hosts, _, _ = secured
    path = _agent_config(hosts, host)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = yaml.safe_load(path.read_text())
    basic = config["httpServer"]["authentication"]["basic"]
    assert basic["username"] == SCRAPE_USER and basic["algorithm"] == "SHA-256"
    password = _secret(hosts, "prometheus_scrape_password")
    assert basic["passwordHash"] == _agent_hash(password, basic["salt"])
    assert password not in path.read_text()
    # The rules are still there, after the server section.
    assert config["lowercaseOutputName"] is True and config["rules"]
    # The keystore the file names opens with the file's password, holds the entry the
    # file names, and its certificate names the host's address.
    keystore = config["httpServer"]["ssl"]["keyStore"]
    store = Path(keystore["filename"])
    assert store.parent.name == JVM_HOSTS[host]  # one copy per service
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    entry = pkcs12.load_pkcs12(store.read_bytes(), keystore["password"].encode())
    assert entry.key is not None
    alias = config["httpServer"]["ssl"]["certificate"]["alias"]
    assert entry.cert.friendly_name == alias.encode()
    names = entry.cert.certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    address = next(group[host] for group in SITE.values() if host in group)
    assert address in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}


def test_the_producers_endpoint_gets_the_login_its_config_names(secured) -> None:
    hosts, _, _ = secured
    path = hosts / "producer1" / "etc" / "producer" / "metrics-login.yml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    security = EndpointSecurity.from_file(path)
    password = _secret(hosts, "prometheus_scrape_password")
    assert password not in path.read_text()
    token = base64.b64encode(f"{SCRAPE_USER}:{password}".encode()).decode()
    assert security.login.accepts(f"Basic {token}")
    assert stat.S_IMODE(Path(security.keyfile).stat().st_mode) == 0o600
    security.ssl_context()  # the key and certificate load, and belong together


def test_the_stream_jobs_config_names_its_metrics_login(secured) -> None:
    hosts, _, _ = secured
    conf = hosts / "spark-master" / "etc" / "stream-job"
    job = yaml.safe_load((conf / "stream-job.yml").read_text())
    assert Path(job["metrics_login"]).resolve() == conf / "metrics-login.yml"
    security = EndpointSecurity.from_file(Path(job["metrics_login"]))
    password = _secret(hosts, "prometheus_scrape_password")
    token = base64.b64encode(f"{SCRAPE_USER}:{password}".encode()).decode()
    assert security.login.accepts(f"Basic {token}")
    assert stat.S_IMODE(Path(job["metrics_login"]).stat().st_mode) == 0o600
    certificate = x509.load_pem_x509_certificate(Path(security.certfile).read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert job["metrics_host"] in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    assert _scrape_jobs(hosts)["stream_job"]["scheme"] == "https"


def test_prometheus_scrapes_every_exporter_with_the_login_from_a_file(secured) -> None:
    hosts, _, _ = secured
    conf = hosts / "monitor" / "etc" / "prometheus"
    password = _secret(hosts, "prometheus_scrape_password")
    assert password not in (conf / "prometheus.yml").read_text()
    jobs = _scrape_jobs(hosts)
    for name in EXPORTER_JOBS:
        job = jobs[name]
        assert job["scheme"] == "https", name
        assert Path(job["tls_config"]["ca_file"]).read_bytes().startswith(b"-----BEGIN"), name
        assert job["basic_auth"]["username"] == SCRAPE_USER, name
        password_file = Path(job["basic_auth"]["password_file"])
        assert password_file.read_text().strip() == password, name
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600, name
    # The only file of any host that holds the scrape password.
    holders = sorted(path.relative_to(hosts) for path in hosts.rglob("*")
                     if path.is_file() and password.encode() in path.read_bytes())
    assert holders == [Path("monitor", "etc", "prometheus", "scrape.password")]


def test_a_second_run_changes_and_restarts_nothing(secured) -> None:
    _, _, (first, second) = secured
    assert _restarts(first) == {(host, f"Restart {service}") for host, service in JVM_HOSTS.items()}
    changed = [(name, host) for name, status, host in second.events() if status == "changed"]
    assert changed == []
    assert _restarts(second) == set()


def test_the_controller_scrapes_with_the_inventorys_files(secured) -> None:
    hosts, inventory_path, _ = secured
    login = Inventory.load(inventory_path, roles=ROLES).metrics_login()
    assert login.username == SCRAPE_USER
    assert login.password == _secret(hosts, "prometheus_scrape_password")
    assert login.password not in repr(login)
    assert Path(login.cafile).read_bytes().startswith(b"-----BEGIN")


def _staged_agent(tmp_path: Path) -> Path:
    manifest = default_cache_dir() / "manifest.json"
    if not manifest.is_file() or shutil.which("java") is None:
        pytest.skip("needs `evilnet stage` (the JMX exporter agent) and java")
    archive = json.loads(manifest.read_text())["maven"]["jmx-exporter"]
    with tarfile.open(archive["path"]) as tar:
        tar.extractall(tmp_path, filter="data")
    return next(tmp_path.rglob(f"jmx_prometheus_javaagent-{archive['version']}.jar"))


def _scrape(url: str, cafile: str, password: str | None) -> int:
    headers = {}
    if password is not None:
        token = base64.b64encode(f"{SCRAPE_USER}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    context = ssl.create_default_context(cafile=cafile)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5,
                                    context=context) as response:
            return response.status if b"jvm_memory_used_bytes" in response.read() else -1
    except urllib.error.HTTPError as error:
        return error.code


def test_the_staged_agent_serves_only_the_scrape_login(secured, tmp_path: Path) -> None:
    """One small JVM with the agent and the rendered configuration, whose salt is
    replaced by one whose digest starts with a zero (the hash then has 63 digits)."""
    hosts, _, _ = secured
    jar = _staged_agent(tmp_path)
    password = _secret(hosts, "prometheus_scrape_password")
    config = yaml.safe_load(_agent_config(hosts, "zk1").read_text())
    salt = next(salt for n in range(1000)
                if len(_agent_hash(password, salt := f"{n:032x}")) < 64)
    config["httpServer"]["authentication"]["basic"].update(
        salt=salt, passwordHash=_agent_hash(password, salt))
    agent_config = tmp_path / "zookeeper.yml"
    agent_config.write_text(yaml.safe_dump(config))
    agent_config.chmod(0o600)
    (tmp_path / "Idle.java").write_text(
        "public class Idle { public static void main(String[] a) throws Exception {"
        " Thread.sleep(120_000L); } }\n")
    address = SITE["zookeeper"]["zk1"]
    with socket.socket() as probe:
        probe.bind((address, 0))
        port = probe.getsockname()[1]
    jvm = subprocess.Popen(["nice", "-n", "19", "java", "-Xmx64m", "-XX:TieredStopAtLevel=1",
                            f"-javaagent:{jar}={address}:{port}:{agent_config}", "Idle.java"],
                           cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"https://{address}:{port}/metrics"
    cafile = str(hosts.parent / "state" / "pki" / "ca.crt")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                first = _scrape(url, cafile, password)
                break
            except urllib.error.URLError:
                assert jvm.poll() is None and time.monotonic() < deadline, jvm.stderr
                time.sleep(0.5)
        assert first == 200
        assert _scrape(url, cafile, None) == 401
        assert _scrape(url, cafile, "not-the-password") == 401
        with pytest.raises(OSError):  # plain HTTP: no answer (a closed connection)
            urllib.request.urlopen(f"http://{address}:{port}/metrics", timeout=5)
    finally:
        jvm.terminate()
        jvm.wait(30)


def test_a_new_scrape_password_restarts_the_jvm_services(tmp_path: Path) -> None:
    hosts, inventory, _ = _render(tmp_path)
    old = yaml.safe_load(_agent_config(hosts, "kafka1").read_text())
    (tmp_path / "state" / "secrets" / "prometheus" / "scrape.password").write_text(
        "a-rotated-scrape-password-000000\n")
    run = _run(tmp_path, inventory, True)
    assert _restarts(run) == {(host, f"Restart {service}") for host, service in JVM_HOSTS.items()}
    new = yaml.safe_load(_agent_config(hosts, "kafka1").read_text())
    basic = new["httpServer"]["authentication"]["basic"]
    assert basic["salt"] == old["httpServer"]["authentication"]["basic"]["salt"]
    assert basic["passwordHash"] == _agent_hash("a-rotated-scrape-password-000000", basic["salt"])
    password_file = Path(_scrape_jobs(hosts)["kafka"]["basic_auth"]["password_file"])
    assert password_file.read_text().strip() == "a-rotated-scrape-password-000000"


def test_a_plaintext_inventory_gets_the_plaintext_files(tmp_path: Path) -> None:
    hosts, inventory, _ = _render(tmp_path, prometheus_security_enabled=False)
    for host in JVM_HOSTS:
        path = _agent_config(hosts, host)
        assert "httpServer" not in yaml.safe_load(path.read_text())
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not (hosts / "producer1" / "etc" / "producer" / "metrics-login.yml").exists()
    job = yaml.safe_load((hosts / "spark-master" / "etc" / "stream-job" / "stream-job.yml")
                         .read_text())
    assert "metrics_login" not in job
    jobs = _scrape_jobs(hosts)
    assert all("scheme" not in jobs[name] and "basic_auth" not in jobs[name]
               for name in EXPORTER_JOBS)
    assert Inventory.load(inventory, roles=ROLES).metrics_login() is None
