"""Kafka in KRaft mode (kafka_metadata_mode: kraft, issue 17), as the kafka role renders
it for a throwaway site of three dedicated controllers and two brokers on 127.0.4.x,
and the staged Kafka 4.x running what was rendered.

The role's own steps install the staged archive, issue the certificates, write the
configuration and format every node's storage (the cluster id generated once on the
controller, the SCRAM credentials written at the controllers' format); this test
starts each node with the command line the role gives its service, then runs the
role's health checks and its topics step (the topics, the ACLs, the cluster and
quorum checks) against them. Users rely on: the nodes form a quorum over the
controllers' mutual-TLS listener, the brokers register over it; the pipeline's own
clients (kafka-python, evilnet.kafka_clients) log in with SCRAM on SASL_SSL, the
producers' principal writes the posts topic (replication factor 2) and the stream
job's reads every record back; the deny-by-default ACLs refuse the rest; a second
run formats nothing; the JMX exporter rules find the 4.x names.

Needs java (17) and the staged kafka-kraft and jmx-exporter archives (`evilnet
stage`; $EVILNET_CACHE names another cache); skipped without them. Every JVM runs
under nice with a small heap, and all of them are stopped at the end.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from pki_site import REPO_ROOT, write_inventory

from evilnet.contracts import TWEETS_TOPIC
from evilnet.kafka_clients import (
    ADMIN,
    COMMAND_CLIENT,
    PRODUCER,
    STREAM_JOB,
    STREAM_JOB_GROUP_PREFIX,
    KafkaSecurity,
)
from evilnet.platform import health as checks
from evilnet.platform import secrets
from evilnet.platform.playbook import PlaybookRun, run_playbook
from evilnet.platform.staging import default_cache_dir

GROUP_VARS = REPO_ROOT / "ansible" / "playbooks" / "group_vars" / "all"
JAVA_HOME = Path(os.environ.get("EVILNET_JAVA17_HOME", "/usr/lib/jvm/java-17-openjdk-amd64"))
CONTROLLERS = {"controller1": "127.0.4.1", "controller2": "127.0.4.2", "controller3": "127.0.4.3"}
BROKERS = {"kafka1": "127.0.4.4", "kafka2": "127.0.4.5"}
NODE_IDS = {"controller1": 1, "controller2": 2, "controller3": 3, "kafka1": 4, "kafka2": 5}
JMX_PORT = 7071
RECORDS = 500
EVILNET = str(Path(sys.executable).with_name("evilnet"))

pytestmark = pytest.mark.timeout(900)


def _staged() -> dict:
    manifest = default_cache_dir() / "manifest.json"
    if not (JAVA_HOME / "bin" / "java").exists():
        pytest.skip(f"needs Java 17 at {JAVA_HOME} ($EVILNET_JAVA17_HOME)")
    if not manifest.is_file():
        pytest.skip(f"needs `evilnet stage` (no {manifest})")
    maven = json.loads(manifest.read_text())["maven"]
    missing = [name for name in ("kafka-kraft", "jmx-exporter") if name not in maven]
    if missing:
        pytest.skip(f"needs the staged {', '.join(missing)} (`evilnet stage`, {manifest})")
    return maven


def _write_site(root: Path) -> Path:
    inventory = write_inventory(
        root, {"kafka_controllers": CONTROLLERS, "kafka": BROKERS},
        kafka_metadata_mode="kraft", evilnet_java_home=str(JAVA_HOME),
        kafka_heap_size="256m", kafka_jmx_exporter_port=JMX_PORT, kafka_health_timeout=60,
        prometheus_security_enabled=False, jmx_exporter_services=["kafka"])
    (inventory / "host_vars").mkdir()
    for host, node_id in NODE_IDS.items():
        key = "kafka_node_id" if host in CONTROLLERS else "kafka_broker_id"
        (inventory / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump({key: node_id}))
    return inventory


def _playbook(root: Path, name: str, plays: list[dict]) -> Path:
    path = root / f"{name}.yml"
    path.write_text(yaml.safe_dump(plays, sort_keys=False))
    return path


def _run(root: Path, inventory: Path, name: str, plays: list[dict]) -> PlaybookRun:
    run = run_playbook(_playbook(root, name, plays), inventory, project_dir=REPO_ROOT,
                       timeout=600, extra_args=[f"-e@{GROUP_VARS / 'contracts.yml'}",
                                                f"-e@{GROUP_VARS / 'conventions.yml'}",
                                                # The health checks' and topics' `evilnet`:
                                                # the controller's (no host venv here).
                                                "-e", json.dumps({"evilnet_cli": EVILNET})])
    (root / f"{name}.log").write_text(run.output)
    if run.returncode != 0:
        lines = run.output.splitlines()
        failed = [n for n, line in enumerate(lines) if "fatal:" in line or "[ERROR]" in line]
        excerpt = "\n".join(lines[max(0, failed[0] - 30):failed[0] + 30]) if failed else ""
        pytest.fail(f"{name} failed:\n{excerpt}\n...\n{run.output[-2000:]}")
    return run


def _render_plays() -> list[dict]:
    """The role's install, security, configure and format steps on every node, the
    JMX exporter's agent and rules, and the service's command line into a file."""
    role = "kafka"
    return [{
        "name": "Render the KRaft nodes", "hosts": "kafka_controllers:kafka",
        "gather_facts": False,
        "tasks": [
            {"name": "Make the directories other roles make",
             "ansible.builtin.file": {"path": "{{ item }}", "state": "directory", "mode": "0755"},
             "loop": ["{{ evilnet_root }}/dist", "{{ evilnet_root }}/etc/kafka"]},
            {"name": "JMX exporter", "ansible.builtin.include_role": {"name": "jmx_exporter"}},
            # public: the role's defaults (its service's command line) for the task after.
            *({"name": f"kafka {step}", "ansible.builtin.include_role": {
                "name": role, "tasks_from": step, "public": step == "format"}}
              for step in ("install", "security", "configure", "format")),
            {"name": "Write the service's command line",
             "ansible.builtin.copy": {"content": "{{ kafka_service_command }}\n",
                                      "dest": "{{ evilnet_root }}/service-command",
                                      "mode": "0644"}}]}]


def _health_plays() -> list[dict]:
    return [{"name": "Check every node", "hosts": "kafka_controllers:kafka", "gather_facts": False,
             "serial": 1,
             "tasks": [{"name": "Health", "ansible.builtin.include_role": {
                 "name": "kafka", "tasks_from": "health"}}]},
            {"name": "Topics, ACLs, the cluster and its quorum", "hosts": "kafka",
             "gather_facts": False,
             "tasks": [{"name": "Topics", "ansible.builtin.include_role": {
                 "name": "kafka", "tasks_from": "topics"}, "run_once": True}]}]


class Cluster:
    def __init__(self, root: Path, inventory: Path) -> None:
        self.root, self.inventory = root, inventory
        self.hosts = root / "hosts"
        self.processes: dict[str, subprocess.Popen] = {}
        self.timings: dict[str, float] = {}
        self.runs: dict[str, PlaybookRun] = {}

    def start(self, host: str) -> None:
        command = shlex.split((self.hosts / host / "service-command").read_text())
        log = (self.hosts / host / "log" / "kafka" / "kafka.out").open("ab")
        self.processes[host] = subprocess.Popen(
            ["nice", "-n", "19", *command], cwd=self.hosts / host / "data" / "kafka",
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for host, process in self.processes.items():
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            assert process.returncode is not None, host

    def log(self, host: str) -> str:
        return (self.hosts / host / "log" / "kafka" / "kafka.out").read_text(errors="replace")

    def security(self, principal) -> dict[str, str]:
        password = secrets.read(self.root / "state" / "secrets", principal.secret)
        return KafkaSecurity(principal.name, password,
                             str(self.root / "state" / "pki" / "ca.crt")).kwargs()

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{address}:9092" for address in BROKERS.values())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    _staged()
    for address in (*CONTROLLERS.values(), *BROKERS.values()):
        with socket.socket() as probe:  # nothing of ours, or anyone's, is there
            assert probe.connect_ex((address, 9092 if address in BROKERS.values()
                                     else 9093)) != 0, f"{address} is in use"
    root = tmp_path_factory.mktemp("kraft")
    site = Cluster(root, _write_site(root))
    started = time.monotonic()
    site.runs["render"] = _run(root, site.inventory, "render", _render_plays())
    site.timings["render and format (s)"] = time.monotonic() - started
    try:
        started = time.monotonic()
        for host in CONTROLLERS:
            site.start(host)
        for host in BROKERS:
            site.start(host)
        site.runs["health"] = _run(root, site.inventory, "health", _health_plays())
        site.timings["start to healthy, topics and ACLs (s)"] = time.monotonic() - started
        site.runs["second render"] = _run(root, site.inventory, "render", _render_plays())
        yield site
    finally:
        site.stop()
        print("KRaft timings:", {key: round(value, 1) for key, value in site.timings.items()})


def _properties(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if line and not line.startswith("#"))


def test_every_node_is_formatted_once_with_the_kept_cluster_id(cluster: Cluster) -> None:
    kept = (cluster.root / "state" / "pki" / "kafka" / "cluster.id").read_text().strip()
    for host in NODE_IDS:
        meta = _properties(cluster.hosts / host / "data" / "kafka" / "meta.properties")
        assert meta["cluster.id"] == kept, host
        assert meta["node.id"] == str(NODE_IDS[host]), host
        # The format's argument file (the controllers' held the passwords) is gone.
        scram = cluster.hosts / host / "etc" / "kafka" / "scram"
        assert not (scram / "storage-format.args").exists()
    formats = [(task, status, host)
               for task, status, host in cluster.runs["second render"].events()
               if task.endswith("Format the storage with the cluster id") and status != "skipped"]
    assert formats == []
    changed = [(task, host) for task, status, host in cluster.runs["second render"].events()
               if status == "changed"]
    assert changed == []


def test_the_nodes_play_their_roles_on_secured_listeners(cluster: Cluster) -> None:
    controller = _properties(cluster.hosts / "controller1" / "etc" / "kafka" / "server.properties")
    assert controller["process.roles"] == "controller"
    assert controller["listeners"] == "CONTROLLER://127.0.4.1:9093"
    assert controller["listener.security.protocol.map"].startswith("CONTROLLER:SSL")
    assert controller["listener.name.controller.ssl.client.auth"] == "required"
    assert controller["authorizer.class.name"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer")
    assert "zookeeper.connect" not in controller
    broker = _properties(cluster.hosts / "kafka1" / "etc" / "kafka" / "server.properties")
    assert broker["process.roles"] == "broker"
    assert broker["listeners"] == "SASL_SSL://127.0.4.4:9092"
    assert broker["controller.quorum.voters"] == (
        "1@127.0.4.1:9093,2@127.0.4.2:9093,3@127.0.4.3:9093")


def test_the_controllers_listener_refuses_a_client_without_a_certificate(
        cluster: Cluster) -> None:
    context = ssl.create_default_context(cafile=str(cluster.root / "state" / "pki" / "ca.crt"))
    with socket.create_connection(("127.0.4.1", 9093), timeout=10) as plain, \
            pytest.raises((ssl.SSLError, ConnectionResetError)), \
            context.wrap_socket(plain, server_hostname="127.0.4.1") as connection:
        connection.sendall(b"\x00\x00\x00\x00")
        connection.recv(16)


def test_the_pipelines_clients_write_and_read_the_posts_topic_over_scram(
        cluster: Cluster) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap, **COMMAND_CLIENT,
                             **cluster.security(ADMIN))
    try:
        (topic,) = admin.describe_topics([TWEETS_TOPIC])
    finally:
        admin.close()
    assert {len(p["replica_nodes"]) for p in topic["partitions"]} == {2}

    run = uuid.uuid4().hex[:8]
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, client_id="kraft-test",
                             **COMMAND_CLIENT, **cluster.security(PRODUCER))
    started = time.monotonic()
    try:
        futures = [producer.send(TWEETS_TOPIC, key=f"city-{n % 7}".encode(),
                                 value=json.dumps({"run": run, "n": n}).encode())
                   for n in range(RECORDS)]
        producer.flush(60)
        offsets = [future.get(timeout=60) for future in futures]
    finally:
        producer.close()
    cluster.timings["produce (s)"] = time.monotonic() - started
    assert len(offsets) == RECORDS

    consumer = KafkaConsumer(TWEETS_TOPIC, bootstrap_servers=cluster.bootstrap,
                             group_id=f"{STREAM_JOB_GROUP_PREFIX}-kraft-{run}",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=15_000, **COMMAND_CLIENT,
                             **cluster.security(STREAM_JOB))
    seen = set()
    started = time.monotonic()
    try:
        for record in consumer:
            value = json.loads(record.value)
            if value.get("run") == run:
                seen.add(value["n"])
            if len(seen) == RECORDS:
                break
    finally:
        consumer.close()
    cluster.timings["consume (s)"] = time.monotonic() - started
    print(f"KRaft: {len(offsets)} records produced, {len(seen)} consumed")
    assert seen == set(range(RECORDS))


def test_the_acls_refuse_what_they_do_not_allow(cluster: Cluster) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, client_id="kraft-test",
                             max_block_ms=15_000, retries=0, **COMMAND_CLIENT,
                             **cluster.security(STREAM_JOB))
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(TWEETS_TOPIC, value=b"refused").get(timeout=30)
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap, group_id="someone-elses-group",
                             enable_auto_commit=False, consumer_timeout_ms=5_000,
                             **COMMAND_CLIENT, **cluster.security(STREAM_JOB))
    try:
        consumer.subscribe([TWEETS_TOPIC])
        with pytest.raises(GroupAuthorizationFailedError):
            consumer.poll(timeout_ms=10_000)
    finally:
        consumer.close()


def _write_to_every_partition(cluster: Cluster) -> None:
    """A record into each partition of the posts topic, so that every broker leads
    some that took a write: its per-topic metrics exist from the first one on."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, client_id="kraft-test",
                             **COMMAND_CLIENT, **cluster.security(PRODUCER))
    try:
        partitions = sorted(producer.partitions_for(TWEETS_TOPIC))
        futures = [producer.send(TWEETS_TOPIC, value=b'{"jmx": true}', partition=partition)
                   for partition in partitions]
        producer.flush(60)
        for future in futures:
            future.get(timeout=60)
    finally:
        producer.close()


def test_the_jmx_exporter_rules_find_the_4x_metrics(cluster: Cluster) -> None:
    # Whatever ran before (the order is random), each broker has taken a write.
    _write_to_every_partition(cluster)

    def scrape(address: str) -> str:
        with urllib.request.urlopen(f"http://{address}:{JMX_PORT}/metrics", timeout=10) as r:
            return r.read().decode()

    brokers = [scrape(address) for address in BROKERS.values()]
    controllers = [scrape(address) for address in CONTROLLERS.values()]
    for text in brokers:
        assert "kafka_server_replicamanager_underreplicatedpartitions 0.0" in text
        assert "kafka_server_brokertopicmetrics_messagesinpersec" in text
        assert 'kafka_log_end_offset{partition="0",topic="tweets"' in text
    active = [line for text in controllers for line in text.splitlines()
              if line.startswith("kafka_controller_activecontrollercount")]
    assert sorted(float(line.split()[-1]) for line in active) == [0.0, 0.0, 1.0]


def test_the_role_checks_found_the_quorum_and_the_brokers(cluster: Cluster) -> None:
    events = cluster.runs["health"].events()
    assert {host for task, status, host in events
            if "Check Kafka controller" in task and status == "ok"} == set(CONTROLLERS)
    assert {host for task, status, host in events
            if "Check Kafka broker" in task and status == "ok"} == set(BROKERS)
    assert any(task.endswith("Check the controller quorum") and status == "ok"
               for task, status, _ in events)


def test_status_reports_the_quorum_leader_and_every_voter_caught_up(cluster: Cluster) -> None:
    voters = {NODE_IDS[host] for host in CONTROLLERS}
    health = checks.kraft_quorum(cluster.bootstrap, voters, max_lag=1000,
                                 security=cluster.security(ADMIN))
    assert health.ok, health.detail
    leader = int(health.detail.split(",")[0].removeprefix("leader "))
    assert leader in voters
    # A quorum named wrongly (a fourth voter expected) is not healthy.
    wrong = checks.kraft_quorum(cluster.bootstrap, {*voters, 99}, max_lag=1000,
                                security=cluster.security(ADMIN))
    assert not wrong.ok and "expected [1, 2, 3, 99]" in wrong.detail
