"""The producers' and the stream job's Kafka logins as their roles render them, by
ansible-playbook on a small local-connection site (tests/platform/pki_site.py). No
service runs here: tests/platform/test_kafka_zookeeper_security.py logs in with
these files against real brokers.

Users rely on: on a secured Kafka each producers host and the Spark master get a
client properties file of their principal, the service account's alone, with the
CA bundle it names beside it (and no key of theirs); every shard's config and the
job's config point at it; every Spark worker has the CA bundle at the path the
job's Kafka source options name to the executors; a plaintext inventory gets
nothing new, its shards' configs the plan's bytes.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from pki_site import EVILNET, REPO_ROOT, write_inventory

from evilnet.kafka_clients import PRODUCER, STREAM_JOB, KafkaSecurity
from evilnet.platform import secrets
from evilnet.platform.playbook import run_playbook

GROUP_VARS = REPO_ROOT / "ansible" / "playbooks" / "group_vars" / "all"
HOSTS = {"kafka": {"kafka1": "127.0.2.4"}, "producers": {"producer1": "127.0.2.9"},
         "spark_master": {"spark-master": "127.0.2.11"},
         "spark_workers": {"spark-worker1": "127.0.2.12"},
         "cassandra": {"cassandra1": "127.0.2.21"}}
# As root, the files go to another account, as on real hosts; otherwise to ours.
SERVICE_USER = "nobody" if os.geteuid() == 0 else None
OWNER = SERVICE_USER or pwd.getpwuid(os.geteuid()).pw_name


def _play(name: str, hosts: str, tasks: list[dict], **variables: object) -> dict:
    return {"name": name, "hosts": hosts, "gather_facts": False, "vars": variables,
            "tasks": tasks}


def _include(role: str, tasks_from: str) -> dict:
    return {"name": f"{role} {tasks_from}",
            "ansible.builtin.include_role": {"name": role, "tasks_from": tasks_from}}


def _directories(*paths: str) -> dict:
    return {"name": "Make the directories the install steps would",
            "ansible.builtin.file": {"path": "{{ item }}", "state": "directory",
                                     "mode": "0755"},
            "loop": list(paths)}


class Site:
    def __init__(self, root: Path, **settings: object) -> None:
        self.root = root
        if SERVICE_USER:
            settings["evilnet_service_user"] = SERVICE_USER
        # The Kafka logins alone: the metrics endpoints' login (secured by default, a
        # key more in each shard's config) is tests/platform/test_exporters_config.py's.
        settings.setdefault("prometheus_security_enabled", False)
        self.inventory = write_inventory(root, hosts=HOSTS, evilnet_service_manager="supervisor",
                                         **settings)
        token = root / "state" / "x-api" / "app-1.token"
        token.parent.mkdir(parents=True)
        token.write_text("not-a-real-token\n")
        token.chmod(0o600)
        self.plan = root / "plan"
        planned = subprocess.run(
            [EVILNET, "plan", "--cities", "Montréal", "--topics", "hockey",
             f"--inventory={self.inventory}", f"--roles={REPO_ROOT / 'ansible' / 'roles'}",
             f"--out={self.plan}"], capture_output=True, text=True, timeout=120, check=False)
        assert planned.returncode == 0, planned.stdout + planned.stderr
        self.hosts = (root / "hosts").resolve()

    def run(self, *plays: dict) -> str:
        playbook = self.root / "render.yml"
        playbook.write_text(yaml.safe_dump(list(plays), allow_unicode=True))
        run = run_playbook(playbook, self.inventory, project_dir=REPO_ROOT, timeout=900,
                           extra_args=[f"-e@{GROUP_VARS / 'contracts.yml'}",
                                       f"-e@{GROUP_VARS / 'conventions.yml'}"])
        assert run.returncode == 0, run.output[-4000:]
        return run.output

    def workers(self) -> dict:
        return _play("Spark workers", "spark_workers", [_include("stream_job", "trust")])

    def rest(self) -> list[dict]:
        producers = _play("Producers", "producers", [
            _directories("{{ evilnet_root }}/supervisor/conf.d"),
            *(_include("producer", step) for step in ("plan", "install", "kafka_login",
                                                      "configure"))],
            producer_plan_dir=str(self.plan))
        job = _play("Stream job", "spark_master", [
            _directories("{{ evilnet_root }}/etc/stream-job"),
            *(_include("stream_job", step) for step in ("kafka_login", "configure"))])
        return [producers, job]

    def password(self, secret: str) -> str:
        return secrets.read(self.root / "state" / "secrets", secret)

    def shard_config(self) -> Path:
        return self.hosts / "producer1" / "producers" / "app-1" / "producer.yml"

    def planned_config(self) -> Path:
        return self.plan / "shards" / "app-1" / "producer.yml"

    def job_config(self) -> dict:
        path = self.hosts / "spark-master" / "etc" / "stream-job" / "stream-job.yml"
        return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Site:
    site = Site(tmp_path_factory.mktemp("secured"))
    # The workers alone first: the CA bundle must reach the job's path from theirs.
    site.run(site.workers())
    ca = site.hosts / "spark-master" / "etc" / "stream-job" / "tls" / "ca.crt"
    assert ca.read_bytes() == (site.root / "state" / "pki" / "ca.crt").read_bytes()
    site.run(*site.rest())
    return site


@pytest.fixture(scope="module")
def plaintext(tmp_path_factory: pytest.TempPathFactory) -> Site:
    # Cassandra plaintext too: a secured one also ships the job's hosts the CA bundle.
    site = Site(tmp_path_factory.mktemp("plaintext"), kafka_security_enabled=False,
                cassandra_security_enabled=False)
    site.run(site.workers(), *site.rest())
    return site


def _private_to_the_service(path: Path) -> None:
    status = path.stat()
    assert stat.S_IMODE(status.st_mode) == 0o600
    assert pwd.getpwuid(status.st_uid).pw_name == OWNER


def _trust_only(directory: Path, ca: Path) -> None:
    assert (directory / "ca.crt").read_bytes() == ca.read_bytes()
    assert sorted(p.name for p in directory.iterdir()) == ["ca.crt", "truststore.p12"]


def test_each_producers_host_gets_the_producers_login(secured: Site) -> None:
    client_config = secured.hosts / "producer1" / "etc" / "producer" / "kafka-client.properties"
    _private_to_the_service(client_config)
    login = KafkaSecurity.from_properties(client_config)
    assert (login.username, login.password) == (PRODUCER.name, secured.password(PRODUCER.secret))
    assert Path(login.cafile).resolve() == (secured.hosts / "producer1" / "etc" / "producer"
                                            / "tls" / "ca.crt")
    # The CA bundle it names, and no key: SCRAM needs none of the host's.
    _trust_only(Path(login.cafile).parent, secured.root / "state" / "pki" / "ca.crt")


def test_each_shards_config_names_the_login_and_keeps_the_plan(secured: Site) -> None:
    deployed = yaml.safe_load(secured.shard_config().read_text())
    planned = yaml.safe_load(secured.planned_config().read_text())
    assert "kafka_client_config" not in planned
    assert Path(deployed.pop("kafka_client_config")).resolve() == (
        secured.hosts / "producer1" / "etc" / "producer" / "kafka-client.properties")
    assert deployed == planned


def test_the_spark_master_gets_the_jobs_login_and_its_config_names_it(secured: Site) -> None:
    config = secured.job_config()
    client_config = Path(config["kafka_client_config"]).resolve()
    assert client_config == (secured.hosts / "spark-master" / "etc" / "stream-job"
                             / "kafka-client.properties")
    _private_to_the_service(client_config)
    options = KafkaSecurity.from_properties(client_config).spark_source_options()
    assert f'username="{STREAM_JOB.name}"' in options["kafka.sasl.jaas.config"]
    assert f'password="{secured.password(STREAM_JOB.secret)}"' in options["kafka.sasl.jaas.config"]
    # The executors' truststore: the path the workers' step shipped the bundle to.
    truststore = Path(options["kafka.ssl.truststore.location"]).resolve()
    assert truststore == secured.hosts / "spark-master" / "etc" / "stream-job" / "tls" / "ca.crt"
    _trust_only(truststore.parent, secured.root / "state" / "pki" / "ca.crt")


def test_the_passwords_are_in_their_login_files_only(secured: Site) -> None:
    for principal, owner_file in (
            (PRODUCER, secured.hosts / "producer1" / "etc" / "producer"),
            (STREAM_JOB, secured.hosts / "spark-master" / "etc" / "stream-job")):
        owner_file = owner_file / "kafka-client.properties"
        password = secured.password(principal.secret).encode()
        holders = [path for path in secured.hosts.rglob("*")
                   if path.is_file() and password in path.read_bytes()]
        assert holders == [owner_file]


def test_a_plaintext_inventory_renders_no_login(plaintext: Site) -> None:
    assert plaintext.shard_config().read_bytes() == plaintext.planned_config().read_bytes()
    assert "kafka_client_config" not in plaintext.job_config()
    rendered = [path.relative_to(plaintext.hosts) for path in plaintext.hosts.rglob("*")]
    assert not [path for path in rendered
                if "kafka-client" in path.name or path.name == "ca.crt"], rendered
