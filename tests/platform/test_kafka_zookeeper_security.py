"""Who gets into ZooKeeper and Kafka on a secured stack (issue 14), asked of the real
services with real clients: the controller's certificate is accepted by ZooKeeper's
secure client port and a plaintext client or one without a certificate is refused;
each Kafka principal may do what its ACLs allow and is refused the rest with Kafka's
own authorization error; unauthenticated clients, wrong passwords and unknown users
do not get in.

The stack is the local one (inventories/local), or the inventory named by
$EVILNET_SECURITY_INVENTORY (a throwaway secured pair, as the branch's verification
ran). Credentials come from the inventory's own files (its CA and secrets
directories), as `evilnet` reads them. Nothing is written to the posts topic: the
producers' right to write it is shown by a record too large for the broker, which
Kafka refuses only after authorizing the write (MESSAGE_TOO_LARGE, not
TOPIC_AUTHORIZATION_FAILED); one small record goes to the dead-letter topic.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from security_probes import stranger_certificate, zookeeper_connect_request
from stack_guard import ROLES

from evilnet.contracts import DEAD_LETTER_TOPIC, TWEETS_TOPIC
from evilnet.kafka_clients import (
    ADMIN,
    COMMAND_CLIENT,
    PRODUCER,
    STREAM_JOB,
    STREAM_JOB_GROUP_PREFIX,
    KafkaSecurity,
)
from evilnet.platform import health
from evilnet.platform.inventory import Inventory

pytestmark = pytest.mark.stack

REPO_ROOT = Path(__file__).resolve().parents[2]
INVENTORY = Path(os.environ.get("EVILNET_SECURITY_INVENTORY",
                                REPO_ROOT / "inventories" / "local"))
# A value larger than any broker's message.max.bytes (1 MiB by default).
TOO_LARGE = b"x" * (2 << 20)


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    found = Inventory.load(INVENTORY, roles=ROLES)
    if found.zookeeper_tls() is None or found.kafka_security() is None:
        pytest.skip(f"{INVENTORY} runs ZooKeeper or Kafka in plaintext "
                    "(zookeeper_tls_enabled / kafka_security_enabled false)")
    return found


@pytest.fixture(scope="module")
def zookeeper(inventory: Inventory) -> tuple[str, int]:
    host = inventory.groups["zookeeper"][0]
    return inventory.address(host), int(inventory.var(host, "zookeeper_client_port", "zookeeper"))


@pytest.fixture(scope="module")
def bootstrap(inventory: Inventory) -> str:
    return inventory.kafka_bootstrap()


def _login(inventory: Inventory, principal=None, **override: str) -> dict[str, str]:
    security = inventory.kafka_security(principal or ADMIN)
    assert security is not None
    return {**security.kwargs(), **override}


# --- ZooKeeper -------------------------------------------------------------------


def test_zookeeper_answers_a_client_with_the_controllers_certificate(
        inventory: Inventory, zookeeper: tuple[str, int]) -> None:
    answer = health.four_letter_word(*zookeeper, "srvr", tls=inventory.zookeeper_tls())
    assert answer.startswith("Zookeeper version: 3.8"), answer


def test_zookeeper_refuses_a_plaintext_client(zookeeper: tuple[str, int]) -> None:
    with socket.create_connection(zookeeper, timeout=5) as connection:
        connection.sendall(zookeeper_connect_request())
        try:
            answer = connection.recv(4096)
        except ConnectionResetError:
            answer = b""
    # A plaintext port answers with a ConnectResponse; the secure port drops the
    # connection ("not an SSL/TLS record" in its log).
    assert answer == b""


def test_zookeeper_refuses_a_tls_client_without_a_certificate(
        inventory: Inventory, zookeeper: tuple[str, int]) -> None:
    tls = inventory.zookeeper_tls()
    context = ssl.create_default_context(cafile=tls.cafile)
    # The server's verdict on the missing certificate ends the handshake (TLS 1.2) or
    # comes with the first read (TLS 1.3).
    with socket.create_connection(zookeeper, timeout=5) as plain, \
            pytest.raises(ssl.SSLError, match="CERTIFICATE"), \
            context.wrap_socket(plain, server_hostname=zookeeper[0]) as connection:
        connection.sendall(b"srvr")
        connection.recv(4096)


def test_zookeeper_refuses_a_certificate_of_another_ca(
        tmp_path: Path, inventory: Inventory, zookeeper: tuple[str, int]) -> None:
    cert, key, _ = stranger_certificate(tmp_path)
    tls = health.ClientTls(inventory.zookeeper_tls().cafile, str(cert), str(key))
    with pytest.raises(ssl.SSLError):
        health.four_letter_word(*zookeeper, "srvr", tls=tls)


# --- Kafka: who gets in ------------------------------------------------------------


def _admin(bootstrap: str, **settings):
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="evilnet-security-test",
                            request_timeout_ms=10_000, **COMMAND_CLIENT, **settings)


def test_the_admin_principal_gets_in(inventory: Inventory, bootstrap: str) -> None:
    admin = _admin(bootstrap, **_login(inventory))
    try:
        assert TWEETS_TOPIC in admin.list_topics()
    finally:
        admin.close()


def test_a_plaintext_client_is_refused(inventory: Inventory, bootstrap: str) -> None:
    from kafka.errors import KafkaError

    _admin(bootstrap, **_login(inventory)).close()  # the brokers are up: the admin gets in
    with pytest.raises(KafkaError):  # "unable to bootstrap": no plaintext listener answers
        _admin(bootstrap)


def test_a_tls_client_without_a_login_is_refused(inventory: Inventory, bootstrap: str) -> None:
    from kafka.errors import KafkaError

    _admin(bootstrap, **_login(inventory)).close()  # the brokers are up: the admin gets in
    with pytest.raises(KafkaError):  # the broker wants a SASL handshake first
        _admin(bootstrap, security_protocol="SSL",
               ssl_cafile=inventory.kafka_security().cafile)


@pytest.mark.parametrize("who", ["wrong password", "unknown user"])
def test_a_wrong_login_is_refused(inventory: Inventory, bootstrap: str, who: str) -> None:
    from kafka.errors import KafkaError

    # The same principal's right login gets in (kafka-python reports a refused login
    # as "unable to bootstrap"; the broker logs "invalid credentials").
    _admin(bootstrap, **_login(inventory, PRODUCER)).close()
    settings = (_login(inventory, PRODUCER, sasl_plain_password="not-" + "x" * 28)
                if who == "wrong password"
                else _login(inventory, PRODUCER, sasl_plain_username="mallory"))
    with pytest.raises(KafkaError):
        _admin(bootstrap, **settings)


# --- Kafka: what each principal may do ---------------------------------------------


def _producer(bootstrap: str, settings: dict[str, str]):
    from kafka import KafkaProducer

    # max_request_size above the record: the broker, not the client, must judge it.
    return KafkaProducer(bootstrap_servers=bootstrap, client_id="evilnet-security-test",
                         max_request_size=len(TOO_LARGE) * 2, max_block_ms=15_000,
                         retries=0, **COMMAND_CLIENT, **settings)


def test_the_producers_may_write_the_dead_letter_topic(inventory: Inventory,
                                                       bootstrap: str) -> None:
    producer = _producer(bootstrap, _login(inventory, PRODUCER))
    try:
        metadata = producer.send(DEAD_LETTER_TOPIC, key=b"security-test",
                                 value=b'{"probe": "issue 14 ACL test"}').get(timeout=30)
    finally:
        producer.close()
    assert metadata.topic == DEAD_LETTER_TOPIC and metadata.offset >= 0


def test_the_producers_are_authorized_to_write_the_posts_topic(inventory: Inventory,
                                                               bootstrap: str) -> None:
    from kafka.errors import MessageSizeTooLargeError

    producer = _producer(bootstrap, _login(inventory, PRODUCER))
    try:
        # Authorized, then refused for its size: nothing is appended.
        with pytest.raises(MessageSizeTooLargeError):
            producer.send(TWEETS_TOPIC, value=TOO_LARGE).get(timeout=30)
    finally:
        producer.close()


@pytest.mark.parametrize("principal", [PRODUCER, STREAM_JOB], ids=lambda p: p.name)
def test_other_topics_are_refused(inventory: Inventory, bootstrap: str, principal) -> None:
    from kafka.errors import TopicAuthorizationFailedError

    producer = _producer(bootstrap, _login(inventory, principal))
    try:
        topic = DEAD_LETTER_TOPIC if principal is STREAM_JOB else "not-for-producers"
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(topic, value=b"refused").get(timeout=30)
    finally:
        producer.close()


def test_the_stream_job_may_not_write_the_posts_topic(inventory: Inventory,
                                                      bootstrap: str) -> None:
    from kafka.errors import TopicAuthorizationFailedError

    producer = _producer(bootstrap, _login(inventory, STREAM_JOB))
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(TWEETS_TOPIC, value=b"refused").get(timeout=30)
    finally:
        producer.close()


def _consumer(bootstrap: str, settings: dict[str, str], group: str):
    from kafka import KafkaConsumer

    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                         client_id="evilnet-security-test", enable_auto_commit=False,
                         auto_offset_reset="earliest", consumer_timeout_ms=5_000,
                         **COMMAND_CLIENT, **settings)


def _read_committed_offsets(consumer, topic: str) -> dict:
    """Join the group, read what there is, and ask the group coordinator for the
    group's offsets: each step authorizes the topic (Read) and the group (Read)."""
    from kafka import TopicPartition

    consumer.subscribe([topic])
    consumer.poll(timeout_ms=10_000, max_records=10)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    return {partition: consumer.committed(partition) for partition in partitions}


def test_the_stream_job_reads_the_posts_topic_with_its_group(inventory: Inventory,
                                                             bootstrap: str) -> None:
    consumer = _consumer(bootstrap, _login(inventory, STREAM_JOB),
                         f"{STREAM_JOB_GROUP_PREFIX}-security-test-{uuid.uuid4().hex[:8]}")
    try:
        offsets = _read_committed_offsets(consumer, TWEETS_TOPIC)
    finally:
        consumer.close()
    assert offsets and set(offsets.values()) == {None}  # a new group: nothing committed


def test_the_stream_job_may_not_read_with_another_group(inventory: Inventory,
                                                        bootstrap: str) -> None:
    from kafka.errors import GroupAuthorizationFailedError

    consumer = _consumer(bootstrap, _login(inventory, STREAM_JOB), "someone-elses-group")
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            _read_committed_offsets(consumer, TWEETS_TOPIC)
    finally:
        consumer.close()


def test_the_producers_may_not_read_the_posts_topic(inventory: Inventory,
                                                    bootstrap: str) -> None:
    from kafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

    consumer = _consumer(bootstrap, _login(inventory, PRODUCER),
                         f"{STREAM_JOB_GROUP_PREFIX}-security-test")
    try:
        with pytest.raises((TopicAuthorizationFailedError, GroupAuthorizationFailedError)):
            _read_committed_offsets(consumer, TWEETS_TOPIC)
    finally:
        consumer.close()


def test_the_producers_may_not_create_topics(inventory: Inventory, bootstrap: str) -> None:
    from kafka.admin import NewTopic
    from kafka.errors import ClusterAuthorizationFailedError, TopicAuthorizationFailedError

    admin = _admin(bootstrap, **_login(inventory, PRODUCER))
    try:
        with pytest.raises((TopicAuthorizationFailedError, ClusterAuthorizationFailedError)):
            admin.create_topics([NewTopic(f"security-test-{uuid.uuid4().hex[:8]}", 1, 1)],
                                raise_errors=True)
    finally:
        admin.close()


def test_a_client_reads_its_login_from_a_client_properties_file(
        tmp_path: Path, inventory: Inventory, bootstrap: str) -> None:
    # The file the kafka role renders for the admin (and Kafka's tools take).
    config = tmp_path / "admin-client.properties"
    config.write_text(inventory.kafka_security(ADMIN).properties_text())
    config.chmod(0o600)
    admin = _admin(bootstrap, **KafkaSecurity.from_properties(config).kwargs())
    try:
        assert DEAD_LETTER_TOPIC in admin.list_topics()
    finally:
        admin.close()


@pytest.mark.parametrize("command", [
    ["health", "kafka"], ["topics", "list"], ["health", "zookeeper", "--node", "{zookeeper}"],
    # Reads the posts topic (a window long past: nothing to report, but a login).
    ["fidelity", "--from", "2024-06-01T00:00", "--to", "2024-06-01T00:05", "--format", "json"]],
    ids=["health kafka", "topics list", "health zookeeper", "fidelity"])
def test_evilnet_reads_the_inventorys_credentials(inventory: Inventory,
                                                  zookeeper: tuple[str, int],
                                                  command: list[str]) -> None:
    # No flag names a credential: the inventory's CA and secret files are used, as
    # for `evilnet status`.
    node = f"{zookeeper[0]}:{zookeeper[1]}"
    result = subprocess.run(
        [str(Path(sys.executable).with_name("evilnet")), "-i", str(INVENTORY), "--roles",
         str(ROLES), *(part.format(zookeeper=node) for part in command)],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- The pipeline's own clients --------------------------------------------------------


def test_the_producer_service_logs_in_from_its_config(tmp_path: Path, inventory: Inventory,
                                                      bootstrap: str) -> None:
    from evilnet.producer.config import ProducerConfig
    from evilnet.producer.metrics import ProducerMetrics
    from evilnet.producer.service import kafka_sink

    client_config = tmp_path / "kafka-client.properties"
    client_config.write_text(inventory.kafka_security(PRODUCER).properties_text())
    client_config.chmod(0o600)
    config = ProducerConfig.model_validate({
        "shard": "security-test", "kafka_bootstrap_servers": bootstrap,
        "rules": [{"value": "probe", "tag": "city=Montréal;topic=probe"}],
        "bearer_token_env": "EVILNET_TOKEN_NOT_READ_HERE",  # no stream is opened
        "kafka_client_config": str(client_config)})
    sink = kafka_sink(config, ProducerMetrics("security-test"), COMMAND_CLIENT)
    sink.send(DEAD_LETTER_TOPIC, b"security-test", b'{"probe": "producer service login"}')
    assert sink.close(timeout=30) == 0  # every record acknowledged
