"""The zookeeper and kafka roles' secured configuration as ansible-playbook renders it
on a small local-connection site (tests/platform/pki_site.py), and the client
settings every Kafka client reads. No service runs here: what the services do with
these files is tests/platform/test_kafka_zookeeper_security.py's part.

Users rely on: ZooKeeper has no plaintext client port and demands a client
certificate; Kafka's only listener is SASL_SSL with a deny-by-default authorizer;
the file holding the brokers' password is the service account's alone; a plaintext
inventory gets the old files back; a client properties file says everything a
client needs, and nothing less passes for one.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
from pki_site import REPO_ROOT, write_inventory

from evilnet.contracts import DEAD_LETTER_TOPIC, TWEETS_TOPIC
from evilnet.kafka_clients import (
    PRINCIPALS,
    PRODUCER,
    STREAM_JOB,
    STREAM_JOB_GROUP_PREFIX,
    SUPER_USERS,
    ClientConfigError,
    KafkaSecurity,
    security_kwargs,
)
from evilnet.platform import secrets
from evilnet.platform.acls import pipeline_grants
from evilnet.platform.playbook import run_playbook

GROUP_VARS = REPO_ROOT / "ansible" / "playbooks" / "group_vars" / "all"


def _render(root: Path, **settings: object) -> Path:
    """Run the roles' certificate and configure steps on the site; its hosts' roots."""
    # One node and one broker: their ids can be the site's. Nothing is installed: the
    # staged archives and Java are named, never read.
    staged = {f"{group}_archive": {"name": group, "path": f"/nonexistent/{group}.tar.gz",
                                   "sha256": "0" * 64, "version": "0"}
              for group in ("zookeeper", "kafka")}
    inventory = write_inventory(root, zookeeper_id=1, kafka_broker_id=1,
                                evilnet_java_home="/nonexistent/java", **staged, **settings)
    playbook = root / "render.yml"
    steps = {"zookeeper": ["tls", "configure"], "kafka": ["configure"]}
    playbook.write_text(yaml.safe_dump([{
        "name": f"Render {group}", "hosts": group, "gather_facts": False,
        "tasks": [{"name": "Make the configuration directories",
                   "ansible.builtin.file": {"path": "{{ item }}", "state": "directory",
                                            "mode": "0755"},
                   "loop": [f"{{{{ evilnet_root }}}}/{kind}/{group}" for kind in ("etc", "data")]},
                  *({"name": f"{group} {step}", "ansible.builtin.include_role": {
                      "name": group, "tasks_from": step}} for step in steps[group])]}
        for group in steps]))
    run = run_playbook(playbook, inventory, project_dir=REPO_ROOT, timeout=600,
                       extra_args=[f"-e@{GROUP_VARS / 'contracts.yml'}",
                                   f"-e@{GROUP_VARS / 'conventions.yml'}"])
    assert run.returncode == 0, run.output[-3000:]
    return root / "hosts"


def _properties(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if line and not line.startswith("#"))


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _render(tmp_path_factory.mktemp("secured"))


def test_zookeeper_serves_clients_over_tls_only_and_demands_a_certificate(secured: Path) -> None:
    config = _properties(secured / "zk1" / "etc" / "zookeeper" / "zoo.cfg")
    assert "clientPort" not in config
    assert config["secureClientPort"] == "2181"
    assert config["secureClientPortAddress"] == "127.0.2.1"
    assert config["ssl.clientAuth"] == "need"
    assert config["sslQuorum"] == "true"
    pki_dir = (secured / "zk1" / "etc" / "zookeeper" / "tls").resolve()
    for key in ("ssl.keyStore.location", "ssl.quorum.keyStore.location"):
        keystore = Path(config[key]).resolve()
        assert keystore == pki_dir / "host.pem"
        assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
        assert b"PRIVATE KEY" in keystore.read_bytes()
    assert Path(config["ssl.trustStore.location"]).read_bytes().startswith(b"-----BEGIN CERT")


def test_the_broker_listens_on_sasl_ssl_only_and_denies_by_default(secured: Path) -> None:
    config = _properties(secured / "kafka1" / "etc" / "kafka" / "server.properties")
    assert config["listeners"] == "SASL_SSL://127.0.2.4:9092"
    assert config["security.inter.broker.protocol"] == "SASL_SSL"
    assert config["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert config["allow.everyone.if.no.acl.found"] == "false"
    assert set(config["super.users"].split(";")) == {f"User:{p.name}" for p in SUPER_USERS}
    assert config["zookeeper.ssl.client.enable"] == "true"
    assert config["zookeeper.set.acl"] == "true"
    # The shared identity towards ZooKeeper, not the broker's own certificate.
    assert config["zookeeper.ssl.keystore.location"].endswith("/zookeeper-client.pem")


def test_the_file_with_the_brokers_password_is_its_owners_alone(secured: Path) -> None:
    server = secured / "kafka1" / "etc" / "kafka" / "server.properties"
    password = secrets.read(secured.parent / "state" / "secrets", "kafka_broker_password")
    assert f'password="{password}"' in server.read_text()
    assert stat.S_IMODE(server.stat().st_mode) == 0o600
    # No other rendered file holds it, whatever its mode.
    others = [path for path in secured.rglob("*") if path.is_file() and path != server
              and password.encode() in path.read_bytes()]
    assert others == []


def test_a_plaintext_inventory_gets_the_plaintext_files(tmp_path: Path) -> None:
    hosts = _render(tmp_path, zookeeper_tls_enabled=False, kafka_security_enabled=False)
    zoo = _properties(hosts / "zk1" / "etc" / "zookeeper" / "zoo.cfg")
    assert zoo["clientPort"] == "2181" and "secureClientPort" not in zoo
    server = hosts / "kafka1" / "etc" / "kafka" / "server.properties"
    config = _properties(server)
    assert config["listeners"] == "PLAINTEXT://127.0.2.4:9092"
    assert "authorizer.class.name" not in config and "zookeeper.set.acl" not in config
    assert "sasl.jaas.config" not in server.read_text()


# --- The clients' settings ------------------------------------------------------------


def test_a_client_properties_file_gives_kafka_python_its_login(tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    config = tmp_path / "client.properties"
    # Relative truststores are relative to the file, as Kafka's own tools take them.
    config.write_text("# a producer\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
                      "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule"
                      ' required \\\n  username="producer" password="s3cret";\n'
                      "ssl.truststore.type=PEM\nssl.truststore.location=tls/ca.crt\n")
    assert security_kwargs(config) == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "producer", "sasl_plain_password": "s3cret",
        "ssl_cafile": str(tmp_path / "tls" / "ca.crt")}
    assert security_kwargs(None) == {}


def test_a_login_survives_its_own_client_properties_file(tmp_path: Path) -> None:
    login = KafkaSecurity("stream-job", 'a"quote\\and backslash', "/etc/ca.crt")
    config = tmp_path / "client.properties"
    config.write_text(login.properties_text())
    assert KafkaSecurity.from_properties(config) == login
    assert "a\"quote" not in repr(login)  # never printed


@pytest.mark.parametrize(("line", "wrong"), [
    ("security.protocol=PLAINTEXT", "security.protocol"),
    ("sasl.mechanism=PLAIN", "sasl.mechanism"),
    ("ssl.truststore.type=JKS", "ssl.truststore.type"),
    ("sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
     'username="a" password="b";', "ScramLoginModule"),
    ("sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",
     "username"),
])
def test_a_client_properties_file_that_is_not_a_scram_login_is_refused(
        tmp_path: Path, line: str, wrong: str) -> None:
    good = KafkaSecurity("producer", "s3cret", "/etc/ca.crt").java_properties()
    key = line.split("=", 1)[0]
    config = tmp_path / "client.properties"
    config.write_text("".join(f"{k}={v}\n" for k, v in good.items() if k != key) + line + "\n")
    with pytest.raises(ClientConfigError, match=wrong) as refused:
        KafkaSecurity.from_properties(config)
    assert "s3cret" not in str(refused.value)


def test_every_principal_has_a_secret_of_the_catalog() -> None:
    assert {p.secret for p in PRINCIPALS} <= set(secrets.BY_NAME)
    assert len({p.name for p in PRINCIPALS}) == len(PRINCIPALS)


def test_the_producers_may_only_write_and_the_job_only_read() -> None:
    grants = pipeline_grants(STREAM_JOB_GROUP_PREFIX)
    producer = {(g.operation, g.resource, g.name) for g in grants
                if g.principal == f"User:{PRODUCER.name}"}
    job = {(g.operation, g.resource, g.name, g.pattern) for g in grants
           if g.principal == f"User:{STREAM_JOB.name}"}
    assert producer == {("WRITE", "TOPIC", TWEETS_TOPIC), ("WRITE", "TOPIC", DEAD_LETTER_TOPIC)}
    assert job == {("READ", "TOPIC", TWEETS_TOPIC, "LITERAL"),
                   ("READ", "GROUP", STREAM_JOB_GROUP_PREFIX, "PREFIXED")}
    # Super users need no ACL: one naming them would only hide a broken super.users.
    assert not {g.principal for g in grants} & {f"User:{p.name}" for p in SUPER_USERS}


def test_the_stream_jobs_login_as_kafka_source_options(tmp_path: Path) -> None:
    # What spark/job.py passes to the Kafka source (pyspark is not on the controller:
    # the job itself runs on the stack).
    login = KafkaSecurity(STREAM_JOB.name, "s3cret", "/etc/evilnet/ca.crt")
    client_config = tmp_path / "kafka-client.properties"
    client_config.write_text(login.properties_text())
    options = KafkaSecurity.from_properties(client_config).spark_source_options()
    assert options["kafka.security.protocol"] == "SASL_SSL"
    assert options["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert options["kafka.ssl.truststore.type"] == "PEM"
    assert options["kafka.ssl.truststore.location"] == "/etc/evilnet/ca.crt"
    assert options["kafka.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="stream-job" password="s3cret";')
