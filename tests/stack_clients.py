"""How the suite's own clients reach the stack's services, plaintext or secured alike.

One home for the suite's logins: every test that talks to Kafka, Cassandra,
Prometheus or a Spark UI itself (rather than through an ``evilnet`` command) gets
its client here. The credentials are the inventory's, read as ``evilnet`` reads
them (``Inventory.kafka_security``, ``.cassandra_security``, ``.prometheus_login``,
``.spark_ui_cafile``: the controller's secret files and CA bundle); a plaintext
inventory gives no login and every helper connects as the tests always did. No
password or path is written into a test.

Which login, where the service distinguishes (docs/security.md, "Clients"):

- **Kafka: the admin principal** (``ADMIN``, a super user). The tests create and
  delete topics of their own, read them back with assigned partitions or a group
  of their own, and write smoke topics: outside the producers' and the stream
  job's ACLs (``tweets`` only), so a narrower principal would be refused for the
  test's setup, not for what the test checks.
- **Cassandra: the reader** (``READER``) where a test only reads; **the admin**
  (``ADMIN``) where it drops or creates a keyspace or writes rows itself (fixtures).
- **Prometheus**: its one web user (basic auth), TLS verified with the CA.
- **Spark UIs**: no login (Spark's UIs have none); HTTPS verified with the CA.

``evilnet`` commands run by the tests need none of this: given the inventory
(``evilnet_command``, ``inventory_options``) and no location by hand, they log in by
themselves (nodes or brokers named by hand get no login, as for users).

The pipeline's own logins hold grants on the pipeline's resources only: a test's
stream job instance reading a topic of its own needs ``topic_readable_by``, and a
keyspace of a test's own, read by ``evilnet query`` or written by such an instance,
needs ``grant_keyspace`` (both nothing on a plaintext stack).

The functions take the inventory; the suite's is inventories/local, or the local
stack named by $EVILNET_TEST_INVENTORY (``make test``'s KRaft tier runs the tests
marked ``kraft`` against inventories/local-kraft): :func:`local_inventory`, read
once, the default where a helper is called outside a fixture.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import requests
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)

from evilnet.cassandra_clients import ADMIN as CASSANDRA_ADMIN
from evilnet.cassandra_clients import KEYSPACE_PERMISSIONS, READER, CassandraSecurity, Role
from evilnet.kafka_clients import ADMIN as KAFKA_ADMIN
from evilnet.kafka_clients import STREAM_JOB, Principal
from evilnet.platform.health import WebLogin
from evilnet.platform.inventory import Inventory

REPO_ROOT = Path(__file__).resolve().parents[1]
# The local stack the suite runs against (a path relative to the repository, or not).
LOCAL_INVENTORY = REPO_ROOT / os.environ.get("EVILNET_TEST_INVENTORY", "inventories/local")
ROLES = REPO_ROOT / "ansible" / "roles"

__all__ = ["CASSANDRA_ADMIN", "KAFKA_ADMIN", "READER", "Prometheus", "cassandra_connect",
           "cassandra_login", "evilnet_command", "grant_keyspace", "inventory_options",
           "kafka_admin", "kafka_client_config", "kafka_consumer", "kafka_login",
           "local_inventory", "spark_ui_get", "spark_ui_verify", "topic_readable_by"]


@cache
def local_inventory() -> Inventory:
    """The suite's inventory (LOCAL_INVENTORY), read once per session."""
    return Inventory.load(LOCAL_INVENTORY, roles=ROLES)


def _or_local(inventory: Inventory | None) -> Inventory:
    return inventory if inventory is not None else local_inventory()


def inventory_options(inventory: Inventory | None = None) -> list[str]:
    """``evilnet``'s own options naming the inventory (before the subcommand): its
    subcommands then take the inventory's locations and logins (leave their location
    options out: brokers or nodes named by hand get no login)."""
    inventory = _or_local(inventory)
    return ["-i", str(inventory.path), "--roles", str(inventory.roles)]


def evilnet_command(evilnet: str | Path, inventory: Inventory | None = None) -> list[str]:
    """The start of an ``evilnet`` command line on the inventory (inventory_options)."""
    return [str(evilnet), *inventory_options(inventory)]


# --- Kafka ---------------------------------------------------------------------------

def kafka_login(inventory: Inventory | None = None,
                principal: Principal = KAFKA_ADMIN) -> dict[str, str]:
    """kafka-python's login settings as ``principal`` (the admin by default: see the
    module's doc); ``{}`` on a plaintext Kafka."""
    security = _or_local(inventory).kafka_security(principal)
    return security.kwargs() if security else {}


def kafka_admin(bootstrap: str | list[str] | None = None, *,
                inventory: Inventory | None = None, **settings: Any) -> KafkaAdminClient:
    """An admin client of the inventory's brokers (or ``bootstrap``), as the admin."""
    inventory = _or_local(inventory)
    return KafkaAdminClient(bootstrap_servers=bootstrap or inventory.kafka_bootstrap(),
                            **kafka_login(inventory), **settings)


def kafka_consumer(*topics: str, bootstrap: str | list[str] | None = None,
                   inventory: Inventory | None = None, **settings: Any) -> KafkaConsumer:
    """A consumer of the inventory's brokers (or ``bootstrap``), as the admin: it may
    read any topic, with any group id (or none, assigned partitions)."""
    inventory = _or_local(inventory)
    return KafkaConsumer(*topics, bootstrap_servers=bootstrap or inventory.kafka_bootstrap(),
                         **kafka_login(inventory), **settings)


def kafka_client_config(directory: Path, inventory: Inventory | None = None,
                        principal: Principal = KAFKA_ADMIN) -> Path | None:
    """A client properties file of ``principal`` in ``directory`` (0600: it holds the
    password), the form a producer config's ``kafka_client_config`` names and Kafka's
    tools take; None on a plaintext Kafka (a producer config then names none)."""
    security = _or_local(inventory).kafka_security(principal)
    if security is None:
        return None
    return _private_file(directory / f"kafka-{principal.name}.properties",
                         security.properties_text())


@contextmanager
def topic_readable_by(topic: str, principal: Principal = STREAM_JOB,
                      inventory: Inventory | None = None) -> Iterator[None]:
    """Meanwhile, on a secured Kafka, ``principal`` may read ``topic`` (an ACL added
    as the admin, taken away after): a test or benchmark instance of the stream job
    reads a topic of its own, and the job's principal may read ``tweets`` only
    (evilnet.platform.acls). The job's consumer groups are its own already. Nothing
    on a plaintext Kafka (no authorizer). ``evilnet topics acls`` (the kafka role)
    would take the grant back: no test runs it while an instance reads."""
    inventory = _or_local(inventory)
    if inventory.kafka_security() is None:
        yield
        return
    user = f"User:{principal.name}"
    pattern = ResourcePattern(ResourceType.TOPIC, topic, ACLResourcePatternType.LITERAL)
    admin = kafka_admin(inventory=inventory, client_id="evilnet-tests-acls")
    try:
        result = admin.create_acls([ACL(user, "*", ACLOperation.READ, ACLPermissionType.ALLOW,
                                        pattern)])
        assert not result["failed"], f"cannot let {user} read {topic}: {result['failed']}"
        yield
    finally:
        admin.delete_acls([ACLFilter(user, "*", ACLOperation.READ, ACLPermissionType.ALLOW,
                                     ResourcePatternFilter(ResourceType.TOPIC, topic,
                                                           ACLResourcePatternType.LITERAL))])
        admin.close()


def _private_file(path: Path, text: str) -> Path:
    """``text`` in a file only its owner reads, never readable in between."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    path.chmod(0o600)  # an older file of another mode keeps its mode through O_TRUNC
    return path


# --- Cassandra -----------------------------------------------------------------------

def cassandra_login(inventory: Inventory | None = None,
                    role: Role = READER) -> CassandraSecurity | None:
    """The login as ``role`` (the reader by default); None on a plaintext Cassandra."""
    return _or_local(inventory).cassandra_security(role)


def cassandra_connect(hosts: list[str] | None = None, *, inventory: Inventory | None = None,
                      role: Role = READER, **settings: Any):
    """``(cluster, session)`` on the inventory's nodes (or ``hosts``) as ``role``: the
    reader to read, ``CASSANDRA_ADMIN`` to drop or create keyspaces and write rows
    (evilnet.spark.store.connect, with its TLS and login)."""
    from evilnet.spark.store import connect

    inventory = _or_local(inventory)
    if hosts is None:
        hosts = [inventory.address(host) for host in inventory.groups["cassandra"]]
    return connect(hosts, security=cassandra_login(inventory, role), **settings)


def grant_keyspace(session, keyspace: str, inventory: Inventory | None = None) -> None:
    """On a secured Cassandra, give the pipeline's roles on a test's own ``keyspace``
    what they hold on the pipeline's (KEYSPACE_PERMISSIONS: the job writes, the
    reader reads), through ``session``, the admin's; nothing on a plaintext one.
    A test instance of the job and ``evilnet query``/``check``/``health`` then work
    on it as they do on ``evilnet``. Dropping the keyspace drops the grants with it;
    ``evilnet cassandra-roles ensure`` (the cassandra role) would take them back."""
    if cassandra_login(inventory) is None:
        return
    for role, permissions in KEYSPACE_PERMISSIONS.items():
        for permission in sorted(permissions):
            session.execute(f"GRANT {permission} ON KEYSPACE {keyspace} TO {role.name}")


# --- Prometheus ----------------------------------------------------------------------

@dataclass(frozen=True)
class Prometheus:
    """The inventory's Prometheus over its HTTP API: https with basic auth and the CA
    where it is secured (``login``), plain HTTP otherwise."""

    url: str
    login: WebLogin | None = None

    @classmethod
    def of(cls, inventory: Inventory | None = None) -> Prometheus:
        inventory = _or_local(inventory)
        host = inventory.groups["prometheus"][0]
        return cls(inventory.prometheus_url(host), inventory.prometheus_login(host))

    def get(self, path: str, timeout: float = 10, **params: Any) -> requests.Response:
        """``GET <url>/api/v1/<path>`` (``path`` starting with ``/``: from the root)."""
        target = self.url + (path if path.startswith("/") else f"/api/v1/{path}")
        if self.login is None:
            return requests.get(target, params=params, timeout=timeout)
        return requests.get(target, params=params, timeout=timeout,
                            auth=(self.login.username, self.login.password),
                            verify=self.login.cafile)

    def query(self, expression: str) -> list[dict]:
        """An instant query's result (raises on an HTTP error)."""
        response = self.get("query", query=expression)
        response.raise_for_status()
        return response.json()["data"]["result"]


# --- Spark UIs -----------------------------------------------------------------------

def spark_ui_verify(inventory: Inventory | None = None) -> str | bool:
    """requests' ``verify`` for the Spark UIs: the inventory's CA bundle where they
    serve HTTPS, else True (nothing to verify on plain HTTP)."""
    return _or_local(inventory).spark_ui_cafile() or True


def spark_ui_get(path: str, inventory: Inventory | None = None,
                 timeout: float = 10) -> requests.Response:
    """``GET`` of ``path`` on the master's web UI (https on its TLS port where secured)."""
    inventory = _or_local(inventory)
    return requests.get(inventory.spark_master_ui() + path, timeout=timeout,
                        verify=spark_ui_verify(inventory))
