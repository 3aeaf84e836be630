"""Who gets into Cassandra on a secured stack (issue 14), asked of the real node with
the real driver: each role logs in over TLS with its password; a plaintext client, a
TLS client without a login, a wrong password, an unknown role and the default
`cassandra` superuser are refused; a peer without a certificate of the inventory's
CA is refused on the storage port; the reader may only read (Cassandra's own
Unauthorized error on a write), the job may write its tables but not create or drop
any. JMX (nodetool's port and its connector's object port) refuses a client without
credentials and a wrong password with the authenticator's SecurityException, lets
the node's JMX user in, and the role's nodetool logs in from the password file.

The node is the local stack's (inventories/local), or the inventory named by
$EVILNET_SECURITY_INVENTORY (a throwaway secured node, as the branch's verification
ran; its hosts' roots under $EVILNET_SECURITY_HOSTS, if not where the inventory puts
them, for the role's nodetool). Credentials come from the inventory's own files (its
CA and secrets directories), as `evilnet` reads them. The job's write goes to job_progress under a
job name of its own, deleted again; nothing else is written.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from security_probes import (
    WRONG_PASSWORD,
    Context,
    jmx_login,
    stack_roots,
    stranger_certificate,
    tls_client_verdict,
)
from stack_guard import ROLES

from evilnet.cassandra_clients import (
    ADMIN,
    DEFAULT_SUPERUSER,
    DEFAULT_SUPERUSER_PASSWORD,
    READER,
    STREAM_JOB,
    CassandraSecurity,
)
from evilnet.platform import secrets
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


# --- JMX (nodetool) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def jmx(inventory: Inventory) -> dict[str, str | int]:
    """The first node's JMX registry (on 127.0.0.1), its JMX user and password (the
    inventory's secret file), and the Java that runs tests/probes/JmxProbe.java."""
    host = inventory.groups["cassandra"][0]
    java = Context.of(inventory).java
    if not (Path(java).exists() or shutil.which(java)):
        pytest.skip(f"no Java to run tests/probes/JmxProbe.java ({java}: evilnet_java_home)")
    return {"host": host, "java": java,
            "port": int(inventory.var(host, "cassandra_jmx_port", "cassandra")),
            "user": str(inventory.var(host, "cassandra_jmx_user", "cassandra")),
            "password": secrets.read(inventory.controller_dir("evilnet_secrets_dir"),
                                     "cassandra_jmx_password")}


def _jmx(jmx: dict, **login: str) -> tuple[int, str]:
    return jmx_login("127.0.0.1", jmx["port"], jmx["java"], **login)


# The registry hands out the connector's stub; the login is the connector's
# newClient, served on its object port: each refusal below is that port's answer.
def test_jmx_without_credentials_is_refused(jmx: dict) -> None:
    code, said = _jmx(jmx)
    assert code == 3 and said == "refused: Authentication failed! Credentials required", said


@pytest.mark.parametrize("who", ["wrong password", "unknown user"])
def test_jmx_with_a_wrong_login_is_refused(jmx: dict, who: str) -> None:
    user = jmx["user"] if who == "wrong password" else "mallory"
    password = WRONG_PASSWORD if who == "wrong password" else jmx["password"]
    code, said = _jmx(jmx, user=user, password=password)
    assert code == 3, said
    assert said == "refused: Authentication failed! Invalid username or password", said


def test_jmx_lets_the_nodes_jmx_user_in(jmx: dict) -> None:
    code, said = _jmx(jmx, user=jmx["user"], password=jmx["password"])
    assert code == 0 and said.startswith(f"answered as {jmx['user']}: "), said


def _node_root(inventory: Inventory, host: str) -> Path:
    root = stack_roots(inventory).get(host)
    if root is None or not (root / "bin" / "nodetool").exists():
        pytest.skip(f"no rendered nodetool of {host} on this machine (its root: "
                    f"{root}; $EVILNET_SECURITY_HOSTS names the hosts' roots)")
    return root


def test_the_jmx_password_file_is_the_service_accounts_alone(inventory: Inventory,
                                                            jmx: dict) -> None:
    nodetool = _node_root(inventory, jmx["host"]) / "bin" / "nodetool"
    # The file nodetool's -pwf names is the one the node's JVM checks logins against.
    (password_file,) = re.findall(r"-pwf (\S+)", nodetool.read_text())
    mode = stat.S_IMODE(Path(password_file).stat().st_mode)
    assert mode & 0o077 == 0, oct(mode)
    # As rendered: the JVM did not rewrite it (it hashes clear passwords only where it
    # is told to; a rewritten file would restart the node at every run of the role).
    assert Path(password_file).read_text() == f"{jmx['user']} {jmx['password']}\n"


def test_nodetool_logs_in_from_the_password_file(inventory: Inventory, jmx: dict) -> None:
    root = _node_root(inventory, jmx["host"])
    nodetool = root / "bin" / "nodetool"
    assert jmx["password"] not in nodetool.read_text()  # -pwf: read from the file
    result = subprocess.run(["nice", "-n", "19", str(nodetool), "status"],
                            capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"UN  {inventory.address(jmx['host'])}" in result.stdout, result.stdout
