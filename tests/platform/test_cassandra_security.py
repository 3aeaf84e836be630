"""Who gets into Cassandra on a secured stack (issue 14), asked of the real node with
the real driver: each role logs in over TLS with its password; a plaintext client, a
TLS client without a login, a wrong password, an unknown role and the default
`cassandra` superuser are refused; a peer without a certificate of the inventory's
CA is refused on the storage port; the reader may only read (Cassandra's own
Unauthorized error on a write), the job may write its tables but not create or drop
any.

The node is the local stack's (inventories/local), or the inventory named by
$EVILNET_SECURITY_INVENTORY (a throwaway secured node, as the branch's verification
ran). Credentials come from the inventory's own files (its CA and secrets
directories), as `evilnet` reads them. The job's write goes to job_progress under a
job name of its own, deleted again; nothing else is written.
"""

from __future__ import annotations

import os
import socket
import ssl
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from security_probes import stranger_certificate, tls_client_verdict
from stack_guard import ROLES

from evilnet.cassandra_clients import (
    ADMIN,
    DEFAULT_SUPERUSER,
    DEFAULT_SUPERUSER_PASSWORD,
    READER,
    STREAM_JOB,
    CassandraSecurity,
)
from evilnet.platform.inventory import Inventory
from evilnet.schema import JOB_PROGRESS, KEYSPACE
from evilnet.spark.store import CassandraStore, connect

pytestmark = pytest.mark.stack

REPO_ROOT = Path(__file__).resolve().parents[2]
INVENTORY = Path(os.environ.get("EVILNET_SECURITY_INVENTORY",
                                REPO_ROOT / "inventories" / "local"))


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    found = Inventory.load(INVENTORY, roles=ROLES)
    if found.cassandra_security() is None:
        pytest.skip(f"{INVENTORY} runs Cassandra in plaintext (cassandra_security_enabled false)")
    return found


@pytest.fixture(scope="module")
def node(inventory: Inventory) -> tuple[str, int]:
    host = inventory.groups["cassandra"][0]
    return inventory.address(host), int(inventory.var(host, "cassandra_native_port", "cassandra"))


@pytest.fixture(scope="module")
def keyspace(inventory: Inventory) -> str:
    return inventory.locations().keyspace or KEYSPACE


def _session(node: tuple[str, int], security: CassandraSecurity | None):
    return connect([node[0]], node[1], connect_timeout=10, security=security)


def _login(inventory: Inventory, role=READER, **override: str) -> CassandraSecurity:
    security = inventory.cassandra_security(role)
    assert security is not None
    return CassandraSecurity(**{"username": security.username, "password": security.password,
                                "cafile": security.cafile, **override})


def _refused(node: tuple[str, int], security: CassandraSecurity | None) -> BaseException:
    """The error a connection attempt ends with (it must not get in)."""
    from cassandra.cluster import NoHostAvailable

    with pytest.raises(NoHostAvailable) as refused:
        cluster, _ = _session(node, security)
        cluster.shutdown()
    (reason,) = refused.value.errors.values()
    return reason


# --- Who gets in ---------------------------------------------------------------------


@pytest.mark.parametrize("role", [ADMIN, STREAM_JOB, READER], ids=lambda role: role.name)
def test_each_role_logs_in_over_tls(inventory: Inventory, node: tuple[str, int], role) -> None:
    cluster, session = _session(node, _login(inventory, role))
    try:
        row = session.execute("SELECT release_version FROM system.local").one()
        assert row.release_version.startswith("5.0")
    finally:
        cluster.shutdown()


def test_a_plaintext_client_is_refused(inventory: Inventory, node: tuple[str, int]) -> None:
    _session(node, _login(inventory))[0].shutdown()  # the node is up: the reader gets in
    reason = _refused(node, None)
    # The node reads the client's first (plaintext) bytes as a TLS record and drops it.
    assert "AuthenticationFailed" not in type(reason).__name__, reason


def test_a_tls_client_without_a_login_is_refused(inventory: Inventory,
                                                 node: tuple[str, int]) -> None:
    from cassandra import AuthenticationFailed
    from cassandra.cluster import Cluster, NoHostAvailable

    _session(node, _login(inventory))[0].shutdown()
    cluster = Cluster([node[0]], port=node[1], protocol_version=5, connect_timeout=10,
                      ssl_context=_login(inventory).ssl_context())
    try:
        with pytest.raises(NoHostAvailable) as refused:
            cluster.connect()
    finally:
        cluster.shutdown()
    (reason,) = refused.value.errors.values()
    assert isinstance(reason, AuthenticationFailed), reason  # "requires authentication"


@pytest.mark.parametrize("who", ["wrong password", "unknown role", "the default superuser"])
def test_a_wrong_login_is_refused(inventory: Inventory, node: tuple[str, int], who: str) -> None:
    from cassandra import AuthenticationFailed

    # The same role's right login gets in.
    _session(node, _login(inventory, STREAM_JOB))[0].shutdown()
    security = {
        "wrong password": _login(inventory, STREAM_JOB, password="not-" + "x" * 28),
        "unknown role": _login(inventory, STREAM_JOB, username="mallory"),
        "the default superuser": _login(inventory, username=DEFAULT_SUPERUSER,
                                        password=DEFAULT_SUPERUSER_PASSWORD),
    }[who]
    reason = _refused(node, security)
    assert isinstance(reason, AuthenticationFailed), reason


def test_the_default_superuser_can_no_longer_log_in(inventory: Inventory,
                                                    node: tuple[str, int]) -> None:
    cluster, session = _session(node, _login(inventory, ADMIN))
    try:
        row = session.execute("SELECT can_login, is_superuser FROM system_auth.roles "
                              "WHERE role = %s", (DEFAULT_SUPERUSER,)).one()
    finally:
        cluster.shutdown()
    assert row is None or (not row.can_login and not row.is_superuser)


def _storage_port(inventory: Inventory) -> int:
    return int(inventory.var(inventory.groups["cassandra"][0], "cassandra_storage_port",
                             "cassandra"))


def test_a_peer_without_a_certificate_is_refused_on_the_storage_port(
        inventory: Inventory, node: tuple[str, int]) -> None:
    context = ssl.create_default_context(cafile=_login(inventory).cafile)
    address = (node[0], _storage_port(inventory))
    # The node's verdict on the missing certificate ends the handshake (TLS 1.2) or
    # comes with the first read (TLS 1.3): either way no byte of Cassandra's protocol.
    with socket.create_connection(address, timeout=5) as plain, \
            pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)), \
            context.wrap_socket(plain, server_hostname=node[0]) as connection:
        connection.sendall(b"\0" * 64)
        if not connection.recv(4096):
            raise ConnectionResetError("closed without a word")


def _peer_verdict(inventory: Inventory, node: tuple[str, int], cert: Path, key: Path) -> str:
    """What the storage port does with a TLS peer presenting ``cert``: "accepted" (the
    node waits for the peer's greeting) or "refused" (an alert, or the connection
    ended, in the handshake or after it)."""
    verdict = tls_client_verdict(node[0], _storage_port(inventory), cafile=_login(inventory).cafile,
                                 cert=cert, key=key)
    return verdict if verdict in ("accepted", "answered") else "refused"


def test_a_peer_with_a_certificate_of_the_inventorys_ca_is_accepted_on_the_storage_port(
        inventory: Inventory, node: tuple[str, int]) -> None:
    # Mutual TLS that refused every peer would pass the refusals above: a certificate
    # of the inventory's CA (the controller's) gets through the handshake.
    pki_dir = Path(_login(inventory).cafile).parent
    assert _peer_verdict(inventory, node, pki_dir / "clients" / "controller.crt",
                         pki_dir / "clients" / "controller.key") == "accepted"


def test_a_peer_with_a_certificate_of_another_ca_is_refused_on_the_storage_port(
        tmp_path: Path, inventory: Inventory, node: tuple[str, int]) -> None:
    cert, key, _ = stranger_certificate(tmp_path)
    assert _peer_verdict(inventory, node, cert, key) == "refused"


def test_a_plaintext_peer_gets_nothing_on_the_storage_port(inventory: Inventory,
                                                           node: tuple[str, int]) -> None:
    # A messaging-service greeting in the clear (protocol magic 0xCA552DFA) is not a TLS record.
    with socket.create_connection((node[0], _storage_port(inventory)), timeout=5) as plain:
        plain.sendall(bytes.fromhex("ca552dfa") + b"\0" * 60)
        try:
            answer = plain.recv(4096)
        except ConnectionResetError:
            answer = b""
    assert not answer or answer[0] == 0x15  # nothing, or a TLS alert record


# --- What each role may do -----------------------------------------------------------


def test_the_reader_may_read_but_not_write(inventory: Inventory, node: tuple[str, int],
                                           keyspace: str) -> None:
    from cassandra import Unauthorized

    cluster, session = _session(node, _login(inventory, READER))
    try:
        CassandraStore(session, keyspace).progress("stream-job")  # SELECT is granted
        with pytest.raises(Unauthorized, match="MODIFY"):
            session.execute(f"INSERT INTO {keyspace}.{JOB_PROGRESS} (job, query) "
                            "VALUES ('security-test', 'probe')")
        with pytest.raises(Unauthorized):  # the roles' salted hashes are not its to read
            session.execute("SELECT salted_hash FROM system_auth.roles")
    finally:
        cluster.shutdown()


def test_the_job_may_write_its_tables_but_not_create_or_drop_any(
        inventory: Inventory, node: tuple[str, int], keyspace: str) -> None:
    from cassandra import Unauthorized

    job = f"security-test-{uuid.uuid4().hex[:8]}"
    cluster, session = _session(node, _login(inventory, STREAM_JOB))
    try:
        store = CassandraStore(session, keyspace)
        store.write_progress(job, "probe", 1, {0: 1}, 1, 0, 0, None, "{}", datetime.now(UTC))
        assert set(store.progress(job)) == {"probe"}
        session.execute(f"DELETE FROM {keyspace}.{JOB_PROGRESS} WHERE job = %s", (job,))
        assert store.progress(job) == {}
        with pytest.raises(Unauthorized, match="CREATE"):
            session.execute(f"CREATE TABLE {keyspace}.security_test (k int PRIMARY KEY)")
        with pytest.raises(Unauthorized, match="DROP"):
            session.execute(f"DROP TABLE {keyspace}.{JOB_PROGRESS}")
        with pytest.raises(Unauthorized):
            session.execute("CREATE ROLE mallory WITH PASSWORD = 'x' AND LOGIN = true")
    finally:
        cluster.shutdown()
