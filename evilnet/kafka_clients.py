"""How long a command's Kafka client waits for a broker: the one home of the number.

kafka-python waits 30 s for its first broker (``bootstrap_timeout_ms``), in the
constructor of a producer or admin client and at a consumer's first request, so a
command given an address nobody listens on sat for half a minute before its error.
Every ``evilnet`` command opens its clients (consumer, producer or admin alike)
with :data:`COMMAND_CLIENT`: it gives up after BOOTSTRAP_TIMEOUT_MS and says so in
one line (evilnet.cli). The long-running producer service keeps kafka-python's
wait: supervisord restarts it, and a broker a few seconds late is no error there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

# Milliseconds to wait for the first broker of the bootstrap list to answer: a
# broker on a loaded machine answers within a second; nothing answers a closed port.
BOOTSTRAP_TIMEOUT_MS = 5_000

# kafka-python settings for the clients of a command (pass as **COMMAND_CLIENT).
COMMAND_CLIENT: Mapping[str, int] = MappingProxyType(
    {"bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS})


# --- Security: SASL_SSL with SCRAM-SHA-512 (docs/security.md) ------------------------
#
# A secured cluster (the kafka role's kafka_security_enabled) has one listener,
# SASL_SSL: TLS verified against the inventory's CA, then a SCRAM-SHA-512 login.
# Every client, Python or Java, reads its settings from one file, a Kafka client
# properties file (0600, its owner's alone) that Kafka's own tools take too
# (``--command-config``): the password lives there and nowhere else, never on a
# command line or in an environment.

SECURITY_PROTOCOL = "SASL_SSL"
SASL_MECHANISM = "SCRAM-SHA-512"
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


@dataclass(frozen=True)
class Principal:
    """A SCRAM user of the cluster (``User:<name>`` in ACLs) and its password's
    name in the secrets catalog (evilnet.platform.secrets)."""

    name: str
    secret: str


# The one home of the cluster's principals: the kafka role creates their SCRAM
# credentials and ACLs from these (through the generated contracts vars file).
ADMIN = Principal("admin", "kafka_admin_password")  # topics, ACLs, health checks
BROKER = Principal("broker", "kafka_broker_password")  # between brokers
PRODUCER = Principal("producer", "kafka_producer_password")  # writes tweets, dead letters
STREAM_JOB = Principal("stream-job", "kafka_stream_job_password")  # reads tweets
PRINCIPALS: tuple[Principal, ...] = (ADMIN, BROKER, PRODUCER, STREAM_JOB)
# Allowed everything by the authorizer (super.users): no ACL names them.
SUPER_USERS: tuple[Principal, ...] = (ADMIN, BROKER)
# The stream job's consumer group ids start with this (Spark's `groupIdPrefix`):
# its principal may read with these groups only.
STREAM_JOB_GROUP_PREFIX = "evilnet-stream-job"

_JAAS_OPTION = re.compile(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"')


class ClientConfigError(ValueError):
    """A client properties file cannot be used (it never quotes a password)."""


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client authenticates to a secured cluster: its SCRAM user and password,
    and the CA bundle (PEM) it verifies the brokers with."""

    username: str
    password: str = field(repr=False)
    cafile: str

    def kwargs(self) -> dict[str, str]:
        """kafka-python's settings (KafkaProducer, KafkaConsumer, KafkaAdminClient)."""
        return {"security_protocol": SECURITY_PROTOCOL, "sasl_mechanism": SASL_MECHANISM,
                "sasl_plain_username": self.username, "sasl_plain_password": self.password,
                "ssl_cafile": self.cafile}

    def jaas_config(self) -> str:
        return (f'{SCRAM_LOGIN_MODULE} required username="{_jaas_escape(self.username)}" '
                f'password="{_jaas_escape(self.password)}";')

    def java_properties(self) -> dict[str, str]:
        """A Java client's settings (a client properties file; with ``kafka.`` before
        each name, the Spark Kafka source's options)."""
        return {"security.protocol": SECURITY_PROTOCOL, "sasl.mechanism": SASL_MECHANISM,
                "sasl.jaas.config": self.jaas_config(), "ssl.truststore.type": "PEM",
                "ssl.truststore.location": self.cafile}

    def spark_source_options(self) -> dict[str, str]:
        """The Spark Kafka source's options (each client setting after ``kafka.``)."""
        return {f"kafka.{key}": value for key, value in self.java_properties().items()}

    def properties_text(self) -> str:
        """The client properties file's text (write it 0600: it holds the password)."""
        return "".join(f"{key}={_properties_escape(value)}\n"
                       for key, value in self.java_properties().items())

    @classmethod
    def from_properties(cls, path: Path) -> KafkaSecurity:
        """Read a client properties file (the one the kafka role renders, or Kafka's
        own format written by hand): SASL_SSL, SCRAM-SHA-512, a ScramLoginModule
        JAAS line, a PEM truststore."""
        properties = _read_properties(path)

        def need(key: str, wanted: str | None = None) -> str:
            value = properties.get(key, "").strip()
            if not value or (wanted is not None and value.upper() != wanted):
                raise ClientConfigError(f"{path}: {key} must be {wanted or 'set'}")
            return value

        need("security.protocol", SECURITY_PROTOCOL)
        need("sasl.mechanism", SASL_MECHANISM)
        need("ssl.truststore.type", "PEM")
        jaas = need("sasl.jaas.config")
        if not jaas.startswith(SCRAM_LOGIN_MODULE):
            raise ClientConfigError(f"{path}: sasl.jaas.config must use {SCRAM_LOGIN_MODULE}")
        options = {name: re.sub(r"\\(.)", r"\1", value)
                   for name, value in _JAAS_OPTION.findall(jaas)}
        if not options.get("username") or not options.get("password"):
            raise ClientConfigError(f"{path}: sasl.jaas.config names no username and password")
        cafile = Path(need("ssl.truststore.location"))
        if not cafile.is_absolute():
            cafile = path.parent / cafile
        return cls(options["username"], options["password"], str(cafile))


def security_kwargs(client_config: Path | None) -> dict[str, str]:
    """kafka-python's security settings from a client properties file; none (a
    plaintext cluster) without one."""
    return KafkaSecurity.from_properties(client_config).kwargs() if client_config else {}


def _jaas_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _properties_escape(value: str) -> str:
    # java.util.Properties: a backslash escapes; leading blanks would be dropped.
    return value.replace("\\", "\\\\")


def _read_properties(path: Path) -> dict[str, str]:
    """A .properties file's entries (key=value or key: value, # and ! comments,
    backslash line continuations): the subset Kafka's files use."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ClientConfigError(f"cannot read {path}: {error.strerror}") from None
    properties, pending = {}, ""
    for raw in text.splitlines():
        line = pending + raw.lstrip()
        pending = ""
        if not line or line[0] in "#!":
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending = line[:-1]
            continue
        separator = re.search(r"\s*[=:]\s*", line)
        key, value = ((line[:separator.start()], line[separator.end():]) if separator
                      else (line, ""))
        properties[key.strip()] = re.sub(r"\\(.)", r"\1", value)
    return properties
