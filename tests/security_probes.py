"""Probing a secured stack as a stranger would (issue 14): what listens, whose it is,
and whether a client that is not entitled is refused, by the service itself.

- **What listens**: :func:`listening` reads ``ss -ltnpH`` through a callable that runs
  a command where the sockets are: this machine (the local stack, whose hosts share
  its network namespace) or one host of the bed (its own namespace, through Ansible).
- **Whose it is** (:func:`owner_of`, the local stack): a socket belongs to a host of
  the inventory when the process holding it is one of that host's services (its
  supervisord's child or theirs: ``footprint.service_of``), or runs from under the
  host's ``evilnet_root`` (its executable, working directory or an argument: a
  service started by hand), or binds the host's own address. So a service bound to
  0.0.0.0, to 127.0.0.1 or to an ephemeral port is kept, whatever its address;
  only sockets held by no process of the stack and bound to no host's address are
  left out (this machine's own, listed as such).
- **Which probe** (:func:`expected_ports`, :func:`fallback_probe`): a table keyed by
  the services' port variables (the inventory's, else the roles' defaults), then
  rules for the ports no variable names (the Spark JVMs' RPC and block-transfer
  ports, their loopback servers, Cassandra's JMX object port). A port neither names
  has no probe: the acceptance test fails on it.
- **The probes** (:data:`PROBES`) each make real connections as a client that is not
  entitled (plaintext, TLS without a certificate, no or a wrong password, an
  unknown SCRAM user) and pass only on the service's own refusal, positively
  recognised (a TLS alert, Kafka's SASL_AUTHENTICATION_FAILED, Cassandra's
  AuthenticationFailed, Spark's "Expected SaslMessage", a 401): silence or a
  protocol error is not taken for a refusal.

The per-service security tests (tests/platform/test_*_security.py) share the
lower-level helpers here: the ZooKeeper connect request, a certificate of a stranger
CA, a TLS client's verdict.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import os
import re
import secrets
import shutil
import socket
import ssl
import struct
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from evilnet.platform.footprint import host_roots, service_of
from evilnet.platform.inventory import Inventory, _enabled

TESTS = Path(__file__).resolve().parent
JMX_PROBE = TESTS / "probes" / "JmxProbe.java"
# Long enough for a service's verdict on two cores under load, short enough for ~40 ports.
TIMEOUT = 5.0
WRONG_PASSWORD = "not-the-password-" + "x" * 15


# --- what listens --------------------------------------------------------------------

SS_COMMAND = ("ss", "-ltnpH")
_HOLDER = re.compile(r'\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=\d+\)')
WILDCARDS = frozenset({"0.0.0.0", "::"})


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket: its address as bound (IPv4-mapped IPv6 unwrapped, a
    zone dropped, ``*`` as ``0.0.0.0``), its port, and the processes holding it."""

    address: str
    port: int
    # (name, pid) of each process holding the socket (empty: ss may not say whose).
    processes: tuple[tuple[str, int], ...] = ()

    @property
    def wildcard(self) -> bool:
        return self.address in WILDCARDS

    @property
    def loopback_only(self) -> bool:
        """Bound to a loopback address no inventory host is given (127.0.0.1, ::1)."""
        return self.address in ("127.0.0.1", "::1")

    @property
    def process(self) -> str:
        return ",".join(f"{name}/{pid}" for name, pid in self.processes) or "?"


def parse_ss(output: str) -> list[Listener]:
    """The listening sockets of ``ss -ltnpH`` output, each once."""
    found: dict[tuple[str, int], Listener] = {}
    for line in output.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 5 or fields[0] != "LISTEN":
            continue
        host, _, port = fields[3].rpartition(":")
        host = host.strip("[]").split("%", 1)[0]
        if host == "*":
            host = "0.0.0.0"
        try:
            parsed = ipaddress.ip_address(host)
        except ValueError:
            continue
        if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped:
            parsed = parsed.ipv4_mapped
        holders = tuple((name, int(pid)) for name, pid in
                        _HOLDER.findall(fields[5] if len(fields) > 5 else ""))
        key = (str(parsed), int(port))
        previous = found.get(key)
        found[key] = Listener(key[0], key[1],
                              tuple(dict.fromkeys((previous.processes if previous else ())
                                                  + holders)))
    return sorted(found.values(), key=lambda item: (item.address, item.port))


Run = Callable[[Sequence[str]], str]


def run_here(command: Sequence[str]) -> str:
    """A command on this machine (the local stack's hosts share its namespace)."""
    return subprocess.run(list(command), capture_output=True, text=True, check=True,
                          timeout=60).stdout


def listening(run: Run = run_here) -> list[Listener]:
    """The listening TCP sockets where ``run`` runs its command."""
    return parse_ss(run(SS_COMMAND))


# --- whose it is ---------------------------------------------------------------------

@dataclass(frozen=True)
class Owner:
    host: str
    # The service manager's name for it, "unsupervised" (runs from the host's root
    # but no service manager of the host runs it) or "unknown" (only its address).
    service: str
    how: str


def _places(pid: int, proc: Path) -> list[str]:
    """Where a process runs from: its executable, working directory, arguments."""
    places = []
    for link in ("exe", "cwd"):
        with contextlib.suppress(OSError):  # gone, or not ours to read
            places.append(os.readlink(proc / str(pid) / link))
    with contextlib.suppress(OSError):
        places += (proc / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")
    return places


def owner_of(listener: Listener, roots: dict[str, Path], addresses: dict[str, str],
             proc: Path = Path("/proc")) -> Owner | None:
    """The inventory host a socket belongs to (the rule in the module's doc), None
    when it is not the stack's. ``addresses``: each host's address to its name."""
    for _, pid in listener.processes:
        found = service_of(pid, roots)
        if found:
            return Owner(found[0], found[1], "its host's service manager")
    for _, pid in listener.processes:
        places = _places(pid, proc)
        for host, root in roots.items():
            # Any mention of the root: `-cp <root>/opt/...`, `--config=<root>/etc/...`.
            if any(str(root) in place for place in places):
                return Owner(host, "unsupervised", f"runs from {root}")
    if listener.address in addresses:
        return Owner(addresses[listener.address], "unknown", "binds the host's address")
    return None


def stack_roots(inventory: Inventory) -> dict[str, Path]:
    """Each host's root on this machine: under $EVILNET_SECURITY_HOSTS when set (as
    for the Spark tests: a stack whose roots are not where its inventory says), else
    the inventory's ``evilnet_root`` as Ansible renders it."""
    if os.environ.get("EVILNET_SECURITY_HOSTS"):
        base = Path(os.environ["EVILNET_SECURITY_HOSTS"])
        return {host: base / host for host in inventory.hostvars if (base / host).is_dir()}
    return host_roots(inventory)


def host_addresses(inventory: Inventory) -> dict[str, str]:
    return {inventory.address(host): host for host in inventory.hostvars}


# --- which probe ---------------------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    """A port the inventory names: what it is and the probe that must be refused."""

    what: str
    probe: str
    # Whether a running stack must have it open (the quorum port opens on the leader only).
    required: bool = True


def _groups_of(inventory: Inventory, host: str) -> set[str]:
    return {group for group, hosts in inventory.groups.items() if host in hosts}


def expected_ports(inventory: Inventory,
                   shards: Iterable[dict] = ()) -> dict[tuple[str, int], Expected]:
    """Every port the inventory's services open, by (host, port), with its probe.
    ``shards``: the producers' deployed shards (each ``address`` and ``metrics_port``)."""
    table: dict[tuple[str, int], Expected] = {}

    def add(host: str, variable: str, role: str, what: str, probe: str, *,
            offset: str | None = None, required: bool = True) -> None:
        port = int(inventory.var(host, variable, role))
        if offset:
            port += int(inventory.var(host, offset, "spark"))
            variable = f"{variable} + {offset}"
        table[(host, port)] = Expected(f"{what} ({variable})", probe, required)

    for host in inventory.groups["zookeeper"]:
        add(host, "zookeeper_client_port", "zookeeper", "ZooKeeper secure client port",
            "zookeeper-client")
        add(host, "zookeeper_peer_port", "zookeeper", "ZooKeeper quorum port (leader only)",
            "tls-peer", required=False)
        add(host, "zookeeper_election_port", "zookeeper", "ZooKeeper election port", "tls-peer")
        add(host, "zookeeper_jmx_exporter_port", "zookeeper", "JMX exporter", "exporter")
    for host in inventory.groups["kafka"]:
        add(host, "kafka_port", "kafka", "Kafka SASL_SSL listener, clients and brokers",
            "kafka")
        add(host, "kafka_jmx_exporter_port", "kafka", "JMX exporter", "exporter")
    for host in inventory.groups["cassandra"]:
        add(host, "cassandra_native_port", "cassandra", "Cassandra native (CQL)",
            "cassandra-native")
        add(host, "cassandra_storage_port", "cassandra", "Cassandra storage (internode)",
            "tls-peer")
        add(host, "cassandra_jmx_port", "cassandra", "Cassandra JMX (nodetool)", "jmx")
        add(host, "cassandra_jmx_exporter_port", "cassandra", "JMX exporter", "exporter")
    for host in inventory.groups["spark_master"]:
        secured = _enabled(inventory.var(host, "spark_security_enabled", "spark"))
        add(host, "spark_master_port", "spark", "Spark master RPC", "spark-rpc")
        add(host, "spark_master_webui_port", "spark", "Spark master UI, HTTP", "ui-http")
        add(host, "stream_job_ui_port", "stream_job", "stream job's driver UI, HTTP",
            "ui-http")
        if secured:
            add(host, "spark_master_webui_port", "spark", "Spark master UI, HTTPS", "ui-https",
                offset="spark_ui_tls_port_offset")
            add(host, "stream_job_ui_port", "stream_job", "stream job's driver UI, HTTPS",
                "ui-https", offset="spark_ui_tls_port_offset")
        add(host, "stream_job_metrics_port", "stream_job", "stream job's metrics", "exporter")
    for host in inventory.groups["spark_workers"]:
        secured = _enabled(inventory.var(host, "spark_security_enabled", "spark"))
        add(host, "spark_worker_port", "spark", "Spark worker RPC", "spark-rpc")
        add(host, "spark_worker_webui_port", "spark", "Spark worker UI, HTTP", "ui-http")
        if secured:
            add(host, "spark_worker_webui_port", "spark", "Spark worker UI, HTTPS", "ui-https",
                offset="spark_ui_tls_port_offset")
    producers = inventory.groups["producers"]
    if producers and _enabled(inventory.var(producers[0], "x_api_simulator_enabled",
                                            "x_api_simulator")):
        add(producers[0], "x_api_simulator_port", "x_api_simulator",
            "X API simulator (local stand-in)", "x-api-simulator")
    addresses = host_addresses(inventory)
    for shard in shards:
        host = addresses.get(shard["address"], shard["address"])
        table[(host, int(shard["metrics_port"]))] = Expected(
            f"producer {shard['name']}'s metrics (planner_metrics_base_port + shard)",
            "exporter")
    for host in inventory.groups["prometheus"]:
        add(host, "prometheus_port", "prometheus", "Prometheus", "prometheus")
        add(host, "prometheus_footprint_port", "prometheus", "footprint exporter", "exporter")
    for host in inventory.groups["grafana"]:
        if _enabled(inventory.var(host, "grafana_server_enabled", "grafana")):
            add(host, "grafana_port", "grafana", "Grafana", "grafana")
    for host, variables in inventory.hostvars.items():
        if variables.get("ansible_connection", "ssh") not in ("local", "docker"):
            table[(host, int(variables.get("ansible_port", 22)))] = Expected(
                "sshd, the deploy user's (ansible_port)", "ssh")
    return table


SPARK_GROUPS = frozenset({"spark_master", "spark_workers"})


def _spark_ui_port(pid: int, proc: Path) -> int | None:
    """The ``spark.ui.port`` a driver's JVM was started with (spark-submit passes
    ``--conf spark.ui.port=N`` on), None without one."""
    for argument in _places(pid, proc):
        if argument.startswith("spark.ui.port="):
            with contextlib.suppress(ValueError):
                return int(argument.partition("=")[2])
    return None


def fallback_probe(listener: Listener, groups: set[str], *, ui_tls_offset: int = 400,
                   proc: Path | None = Path("/proc")) -> Expected | None:
    """The probe of a port no variable names, by what holds it on a host of
    ``groups``; None: nothing known holds such a port (uncovered).

    A further driver on a Spark host (another stream_job instance, such as the
    analytics tests') names its UI port on its own command line: that port is its
    UI's HTTP side, ``ui_tls_offset`` above it the HTTPS side (Spark's rule).
    ``proc``: where the listeners' processes are seen (None: not from here, as for a
    host with a process namespace of its own)."""
    names = {name for name, _ in listener.processes}
    loopback = listener.loopback_only
    if groups & SPARK_GROUPS and "java" in names:
        for name, pid in listener.processes:
            ui_port = _spark_ui_port(pid, proc) if name == "java" and proc else None
            if ui_port is not None and listener.port == ui_port:
                return Expected(f"a Spark driver's UI, HTTP (its spark.ui.port={ui_port})",
                                "ui-http")
            if ui_port is not None and listener.port == ui_port + ui_tls_offset:
                return Expected(f"a Spark driver's UI, HTTPS (its spark.ui.port={ui_port} "
                                f"+ {ui_tls_offset})", "ui-https")
        if loopback:
            return Expected("a Spark JVM's loopback server (py4j gateway, a pyspark "
                            "SocketAuthServer)", "local-secret")
        return Expected("a Spark JVM's RPC or block-transfer port (driver, block "
                        "manager, executor)", "spark-rpc")
    if groups & SPARK_GROUPS and loopback and any(name.startswith("python") for name in names):
        return Expected("pyspark's py4j callback server", "local-secret")
    if "cassandra" in groups and "java" in names and loopback:
        return Expected("Cassandra's JMX connector object port (named by the 7199 "
                        "registry)", "jmx-rmi")
    return None


# --- the probes ----------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    refused: bool
    detail: str


@dataclass(frozen=True)
class Context:
    """What the probes know besides the port: the inventory (a port's neighbours),
    and the Java that runs the JMX probe. They hold no credential: a stranger has none
    (the wrong passwords are the probes' own)."""

    inventory: Inventory | None
    java: str = "java"

    @classmethod
    def of(cls, inventory: Inventory) -> Context:
        java_home = inventory.setting("evilnet_java_home")
        java = (str(Path(java_home) / "bin" / "java") if java_home
                and (Path(java_home) / "bin" / "java").exists() else shutil.which("java"))
        return cls(inventory, java or "java")


def _connect(address: str, port: int, timeout: float = TIMEOUT) -> socket.socket:
    return socket.create_connection((address, port), timeout=timeout)


def _recv_some(connection: socket.socket, size: int = 4096) -> bytes:
    """What a peer answers: b"" when it closes or resets the connection."""
    try:
        return connection.recv(size)
    except (ConnectionResetError, BrokenPipeError):
        return b""


def _plaintext_answer(address: str, port: int, message: bytes) -> bytes:
    """What a server answers a plaintext ``message`` with: b"" when it closes,
    resets or stays silent."""
    with _connect(address, port) as connection:
        connection.sendall(message)
        try:
            return _recv_some(connection)
        except TimeoutError:
            return b""


def unverified_context() -> ssl.SSLContext:
    """A TLS client that does not judge the server: a probe learns the server's
    verdict on it, not the other way round."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def tls_client_verdict(address: str, port: int, greeting: bytes | None = None, *,
                       cafile: str | None = None, cert: Path | None = None,
                       key: Path | None = None, wait: float = 3.0) -> str:
    """What a TLS server does with a client without a certificate (or with ``cert``):

    - "refused": its alert ends the handshake (TLS 1.2) or comes at the first read
      (TLS 1.3, where the client's side of the handshake ends before the server
      judges its certificate);
    - "accepted": the session stays open, the server waiting for the client;
    - "answered": it replied to ``greeting`` (sent once the handshake is done);
    - "closed after the handshake": it ended the session without an alert;
    - "not TLS": no TLS server answered (closed, reset, or not a TLS record).

    Without a greeting the client only listens: a refusing server's alert then meets
    no unread data of the client (which could turn the server's close into a reset
    that hides the alert)."""
    context = (ssl.create_default_context(cafile=cafile) if cafile else unverified_context())
    if cafile:
        context.check_hostname = False  # names are the per-service tests' business
    if cert:
        context.load_cert_chain(cert, key)
    with _connect(address, port) as plain:
        try:
            with context.wrap_socket(plain, server_hostname=address) as connection:
                connection.settimeout(wait)
                try:
                    if greeting:
                        connection.sendall(greeting)
                    return "answered" if connection.recv(4096) else "closed after the handshake"
                except TimeoutError:
                    return "accepted"
                except ssl.SSLError as error:
                    return ("refused" if "alert" in str(error).lower()
                            else "closed after the handshake")
                except (ConnectionResetError, BrokenPipeError):
                    return "closed after the handshake"
        except ssl.SSLError as error:
            return "refused" if "alert" in str(error).lower() else "not TLS"
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            return "not TLS"


def stranger_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A client certificate, its key and its CA's certificate: a CA the inventory
    does not trust."""
    from evilnet.platform import pki

    stranger = pki.Authority(directory, "stranger")
    stranger.init()
    request = pki.Request("", "intruder", "evilnet-controller", ("evilnet-controller",), ())
    stranger.issue([request], store_password="stranger-password", days=2, renew_within=1)
    files = stranger.paths(request)
    return files["crt"], files["key"], stranger.ca_cert_path


def zookeeper_connect_request() -> bytes:
    """A ZooKeeper client's first message (jute ConnectRequest): protocol version,
    last zxid seen, session timeout, session id, password (16 bytes)."""
    body = struct.pack(">iqiqi16s", 0, 0, 30_000, 0, 16, b"\0" * 16)
    return struct.pack(">i", len(body)) + body


def probe_zookeeper_client(address: str, port: int, context: Context) -> Verdict:
    if _plaintext_answer(address, port, zookeeper_connect_request()):
        return Verdict(False, "a plaintext client got a ConnectResponse")
    verdict = tls_client_verdict(address, port)
    return Verdict(verdict == "refused",
                   f"plaintext: dropped; TLS without a certificate: {verdict}")


def probe_tls_peer(address: str, port: int, context: Context) -> Verdict:
    verdict = tls_client_verdict(address, port)
    return Verdict(verdict == "refused", f"TLS peer without a certificate: {verdict}")


# Kafka's protocol, as much as a refused login needs (Kafka's protocol guide).
_API_VERSIONS, _SASL_HANDSHAKE, _SASL_AUTHENTICATE = 18, 17, 36
SASL_AUTHENTICATION_FAILED = 58


def _kafka_request(api_key: int, version: int, correlation: int, body: bytes) -> bytes:
    client = b"evilnet-security-probe"
    header = struct.pack(">hhih", api_key, version, correlation, len(client)) + client
    return struct.pack(">i", len(header) + len(body)) + header + body


def _kafka_response(connection: socket.socket) -> bytes:
    head = b""
    while len(head) < 4:
        chunk = connection.recv(4 - len(head))
        if not chunk:
            raise ConnectionResetError("closed")
        head += chunk
    (size,) = struct.unpack(">i", head)
    body = b""
    while len(body) < size:
        chunk = connection.recv(size - len(body))
        if not chunk:
            raise ConnectionResetError("closed")
        body += chunk
    return body


def _kafka_bytes(value: bytes) -> bytes:
    return struct.pack(">i", len(value)) + value


def sasl_authenticate(connection: socket.socket, correlation: int,
                       message: bytes) -> tuple[int, str, bytes]:
    """One SaslAuthenticate v1 round: (error code, error message, server's bytes)."""
    connection.sendall(_kafka_request(_SASL_AUTHENTICATE, 1, correlation, _kafka_bytes(message)))
    response = _kafka_response(connection)[4:]  # after the correlation id
    error, length = struct.unpack(">hh", response[:4])
    text = response[4:4 + length].decode(errors="replace") if length >= 0 else ""
    rest = response[4 + max(length, 0):]
    (size,) = struct.unpack(">i", rest[:4])
    return error, text, rest[4:4 + max(size, 0)]


def scram_client_final(user: str, password: str, client_nonce: str, server_first: bytes,
                       digest: str = "sha512") -> bytes:
    """RFC 5802's client-final-message for ``server_first`` (SCRAM-SHA-512 by default)."""
    fields = dict(part.split("=", 1) for part in server_first.decode().split(","))
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), base64.b64decode(fields["s"]),
                                 int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    stored_key = hashlib.new(digest, client_key).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"n={user},r={client_nonce},{server_first.decode()},{without_proof}"
    signature = hmac.new(stored_key, auth_message.encode(), digest).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def kafka_scram_login(address: str, port: int, user: str, password: str) -> tuple[int, str]:
    """A SCRAM-SHA-512 login over TLS, as a client: (Kafka's error code, its message);
    (0, "") when the broker let it in."""
    with _connect(address, port) as plain, \
            unverified_context().wrap_socket(plain, server_hostname=address) as connection:
        handshake = _kafka_request(_SASL_HANDSHAKE, 1, 1,
                                   struct.pack(">h", 13) + b"SCRAM-SHA-512")
        connection.sendall(handshake)
        (error,) = struct.unpack(">h", _kafka_response(connection)[4:6])
        if error:
            return error, "SaslHandshake refused SCRAM-SHA-512"
        nonce = secrets.token_urlsafe(18)
        error, text, server_first = sasl_authenticate(
            connection, 2, f"n,,n={user},r={nonce}".encode())
        if error:
            return error, text
        error, text, _ = sasl_authenticate(
            connection, 3, scram_client_final(user, password, nonce, server_first))
        return error, text


def probe_kafka(address: str, port: int, context: Context) -> Verdict:
    plaintext = _plaintext_answer(address, port, _kafka_request(_API_VERSIONS, 0, 7, b""))
    if plaintext[4:8] == struct.pack(">i", 7):
        return Verdict(False, "a plaintext client got an ApiVersions answer")
    refusals = []
    for who, user in (("unknown SCRAM user", f"mallory-{secrets.token_hex(4)}"),
                      ("wrong password", "producer")):
        try:
            error, text = kafka_scram_login(address, port, user, WRONG_PASSWORD)
        except ssl.SSLError as tls_error:
            return Verdict(False, f"{who}: no TLS listener ({tls_error})")
        if error != SASL_AUTHENTICATION_FAILED:
            return Verdict(False, f"{who}: Kafka error {error} ({text or 'let in'})")
        refusals.append(who)
    return Verdict(True, f"plaintext: no answer; {', '.join(refusals)}: "
                         "SASL_AUTHENTICATION_FAILED")


def cassandra_refusal(address: str, port: int, *, ssl_context: ssl.SSLContext | None,
                      username: str | None = None, password: str | None = None,
                      timeout: float = 10) -> BaseException | None:
    """Why a cassandra-driver session to one node fails (None: it got in)."""
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster, NoHostAvailable

    auth = PlainTextAuthProvider(username, password) if username else None
    cluster = Cluster([address], port=port, protocol_version=5, connect_timeout=timeout,
                      ssl_context=ssl_context, auth_provider=auth)
    try:
        cluster.connect()
        return None
    except NoHostAvailable as refused:
        (reason,) = refused.errors.values()
        return reason
    finally:
        cluster.shutdown()


def probe_cassandra_native(address: str, port: int, context: Context) -> Verdict:
    from cassandra import AuthenticationFailed

    no_login = cassandra_refusal(address, port, ssl_context=unverified_context())
    if not isinstance(no_login, AuthenticationFailed):
        return Verdict(False, f"TLS without a login: {no_login or 'let in'}")
    wrong = cassandra_refusal(address, port, ssl_context=unverified_context(),
                              username="evilnet_reader", password=WRONG_PASSWORD)
    if not isinstance(wrong, AuthenticationFailed):
        return Verdict(False, f"wrong password: {wrong or 'let in'}")
    plaintext = cassandra_refusal(address, port, ssl_context=None, timeout=5)
    if plaintext is None or isinstance(plaintext, AuthenticationFailed):
        return Verdict(False, "a plaintext client reached the authenticator")
    return Verdict(True, "TLS without a login, wrong password: AuthenticationFailed; "
                         "plaintext: dropped")


def jmx_login(address: str, port: int, java: str = "java", user: str | None = None,
              password: str = "") -> tuple[int, str]:
    """tests/probes/JmxProbe.java (one short JVM) against the JMX registry at
    ``address:port``: without credentials, or as ``user`` with ``password`` (given on
    its standard input, never on its command line). Its exit code (3: refused by the
    server's authenticator, 0: let in, 1: no answer) and what it said."""
    result = subprocess.run(["nice", "-n", "19", java, str(JMX_PROBE), address, str(port),
                             *([user] if user else [])], input=password + "\n",
                            capture_output=True, text=True, timeout=120, check=False)
    said = (result.stdout.strip() or result.stderr.strip()[:300]).replace("\n", " ")
    return result.returncode, said


JMX_DEFAULT_USER = "evilnet_jmx"  # the cassandra role's cassandra_jmx_user


def probe_jmx(address: str, port: int, context: Context) -> Verdict:
    """A JMX client without credentials, then as the node's JMX user with a wrong
    password: each must be refused by the server's authenticator (a SecurityException,
    which Cassandra's JMX server wraps in a RuntimeException: JmxProbe.java finds it in
    the chain of causes); a client let in, no answer or another error is no refusal."""
    inventory = context.inventory
    user = JMX_DEFAULT_USER
    if inventory is not None and inventory.groups.get("cassandra"):
        user = str(inventory.var(inventory.groups["cassandra"][0], "cassandra_jmx_user",
                                 "cassandra"))
    said = []
    for who, login in (("without credentials", {}),
                       (f"{user} with a wrong password",
                        {"user": user, "password": WRONG_PASSWORD})):
        code, answer = jmx_login(address, port, context.java, **login)
        said.append(f"{who}: {answer}")
        if code != 3 or not answer.startswith("refused: "):
            return Verdict(False, "; ".join(said))
    return Verdict(True, "; ".join(said))


def probe_jmx_rmi(address: str, port: int, context: Context) -> Verdict:
    # The object port answers JRMP calls only for the connector the registry names: a
    # client reaches it through the registry, as this probe does.
    inventory = context.inventory
    host = host_addresses(inventory).get(address) or inventory.groups["cassandra"][0]
    registry = int(inventory.var(host, "cassandra_jmx_port", "cassandra"))
    verdict = probe_jmx("127.0.0.1" if address in WILDCARDS else address, registry, context)
    return Verdict(verdict.refused, f"through the registry on {registry}: {verdict.detail}")


# Spark's transport (org.apache.spark.network.protocol): a frame is its length (8
# bytes, itself included), the message type, the message.
_RPC_REQUEST, _RPC_RESPONSE, _RPC_FAILURE = 3, 4, 5
SPARK_AUTH_REFUSALS = ("SaslMessage", "challenge message", "Authentication failed")


def spark_rpc_answer(address: str, port: int, body: bytes = b"evilnet-security-probe",
                     ) -> tuple[int | None, str]:
    """An RpcRequest whose body is no authentication message: (the answer's message
    type, its text), (None, "") when the server closed without one."""
    request = struct.pack(">qi", 42, len(body)) + body
    frame = struct.pack(">qb", 8 + 1 + len(request), _RPC_REQUEST) + request
    with _connect(address, port) as connection:
        connection.sendall(frame)
        answer = b""
        while True:
            try:
                chunk = _recv_some(connection)
            except TimeoutError:  # silent: no refusal of its own either
                break
            if not chunk:
                break
            answer += chunk
            if len(answer) >= 9 and len(answer) >= struct.unpack(">q", answer[:8])[0]:
                break
    if len(answer) < 9:
        return None, ""
    kind = answer[8]
    if kind == _RPC_FAILURE:
        (length,) = struct.unpack(">i", answer[17:21])
        return kind, answer[21:21 + length].decode(errors="replace")
    return kind, answer[9:200].decode(errors="replace")


def probe_spark_rpc(address: str, port: int, context: Context) -> Verdict:
    kind, text = spark_rpc_answer(address, port)
    first_line = text.splitlines()[0] if text else ""
    if kind == _RPC_FAILURE and any(mark in text for mark in SPARK_AUTH_REFUSALS):
        return Verdict(True, f"RPC without the secret: {first_line}")
    return Verdict(False, f"RPC without the secret: {first_line or 'no refusal'}"
                   if kind is not None else "closed or silent, without Spark's refusal")


def _http(address: str, port: int, path: str, *, tls: bool,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = (http.client.HTTPSConnection(address, port, timeout=TIMEOUT,
                                              context=unverified_context())
                  if tls else http.client.HTTPConnection(address, port, timeout=TIMEOUT))
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read(4096)
    finally:
        connection.close()


def _plain_http_status(address: str, port: int, path: str) -> int | None:
    """A plaintext GET's status; None when no HTTP answer came (a TLS port)."""
    try:
        return _http(address, port, path, tls=False)[0]
    except (http.client.HTTPException, ConnectionError, TimeoutError, OSError):
        return None


def probe_ui_http(address: str, port: int, context: Context) -> Verdict:
    status, headers, _ = _http(address, port, "/", tls=False)
    location = headers.get("Location", "")
    if status in (301, 302, 303, 307, 308) and location.startswith("https://"):
        return Verdict(True, f"plain HTTP: {status}, only a redirect to {location}")
    return Verdict(False, f"plain HTTP: {status}, served without TLS")


def probe_ui_https(address: str, port: int, context: Context) -> Verdict:
    plain = _plain_http_status(address, port, "/")
    if plain is not None and plain < 400:
        return Verdict(False, f"plain HTTP on the TLS port: {plain}")
    # No login behind it by design (docs/security.md, "Spark"): TLS is the protection.
    status = _http(address, port, "/", tls=True)[0]
    return Verdict(True, f"plain HTTP: {plain or 'no HTTP answer'}; HTTPS: {status} "
                         "(no login by design)")


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def probe_prometheus(address: str, port: int, context: Context) -> Verdict:
    plain = _plain_http_status(address, port, "/api/v1/query?query=up")
    if plain is not None and plain < 400:
        return Verdict(False, f"plain HTTP: {plain}, answered without TLS or a password")
    answers = {}
    for who, headers in (("no password", {}), ("wrong password", _basic("evilnet", WRONG_PASSWORD)),
                         ("unknown user", _basic("mallory", WRONG_PASSWORD))):
        answers[who] = _http(address, port, "/api/v1/query?query=up", tls=True,
                             headers=headers)[0]
    refused = all(status == 401 for status in answers.values())
    return Verdict(refused, f"plain HTTP: {plain}; over TLS "
                   + ", ".join(f"{who}: {status}" for who, status in answers.items()))


def probe_grafana(address: str, port: int, context: Context) -> Verdict:
    answers = {}
    for who, headers in (("no login", {}), ("wrong password", _basic("admin", WRONG_PASSWORD))):
        try:
            answers[who] = _http(address, port, "/api/org", tls=True, headers=headers)[0]
        except ssl.SSLError:
            answers[who] = _http(address, port, "/api/org", tls=False, headers=headers)[0]
    return Verdict(all(status == 401 for status in answers.values()),
                   ", ".join(f"{who}: {status}" for who, status in answers.items()))


def probe_exporter(address: str, port: int, context: Context) -> Verdict:
    """A scraper that is not the Prometheus host (no client certificate, no password)
    must get no metrics: neither over plain HTTP nor over TLS."""
    plain = _plain_http_status(address, port, "/metrics")
    if plain is not None and plain < 400:
        return Verdict(False, f"plain HTTP: {plain}, metrics served to anyone")
    verdict = tls_client_verdict(address, port)
    if verdict == "refused":
        return Verdict(True, f"plain HTTP: {plain or 'no HTTP answer'}; TLS without a "
                             "client certificate: refused")
    if verdict == "accepted":  # TLS without a client certificate: a password, then?
        status = _http(address, port, "/metrics", tls=True)[0]
        return Verdict(status in (401, 403), f"plain HTTP: {plain or 'no HTTP answer'}; "
                                             f"TLS without a certificate or password: {status}")
    return Verdict(False, f"plain HTTP: {plain}; TLS without a certificate: {verdict}")


def probe_x_api_simulator(address: str, port: int, context: Context) -> Verdict:
    from evilnet.producer.simulator import RULES_PATH

    answers = {
        "rules, no token": _http(address, port, RULES_PATH, tls=False)[0],
        "rules, wrong token": _http(address, port, RULES_PATH, tls=False,
                                    headers={"Authorization": f"Bearer {WRONG_PASSWORD}"})[0],
        # The simulator's own control endpoints (state, faults): nobody's to read.
        "/_sim/state, no token": _http(address, port, "/_sim/state", tls=False)[0],
    }
    return Verdict(all(status in (401, 403) for status in answers.values()),
                   ", ".join(f"{who}: {status}" for who, status in answers.items()))


# The loopback servers of a Spark host's driver and executors each want a secret
# first, in its own dialect: pyspark's SocketAuthServer (JVM) a length and that many
# bytes, answering "err" to a wrong one; py4j (the JVM's gateway, the Python side's
# callback server) an auth command line, refused with "Authentication error" (JVM)
# or by closing (Python); pyspark's AccumulatorServer (Python) the token's bytes,
# closing on a wrong one. Every message starts with a length of 16, so that no
# length-prefixed reader is asked to allocate more.
_WRONG_SECRET = struct.pack(">i", 16) + b"x" * 15 + b"\n"
_SOCKET_AUTH_ERROR = struct.pack(">i", 3) + b"err"
# A py4j command (garbage-collect an object) that an unauthenticated py4j obeys ("!y").
_PY4J_COMMAND = b"g\nevilnet-security-probe\ne\n"
# A wrong token longer than any of pyspark's (base64 of 32 bytes or so).
_LONG_WRONG_TOKEN = struct.pack(">i", 16) + b"x" * 252


def _exchange(address: str, port: int, message: bytes, wait: float = 3.0) -> bytes | None:
    """What a server answers ``message`` with: b"" when it closes, None when it waits."""
    try:
        with _connect(address, port, timeout=wait) as connection:
            connection.sendall(message)
            return _recv_some(connection)
    except TimeoutError:
        return None


def probe_local_secret(address: str, port: int, context: Context) -> Verdict:
    first = _exchange(address, port, _WRONG_SECRET)
    if first is not None and first.startswith(_SOCKET_AUTH_ERROR):
        return Verdict(True, "a wrong secret: SocketAuthHelper's err")
    second = _exchange(address, port, _PY4J_COMMAND)
    if any(answer and b"Authentication error" in answer for answer in (first, second)):
        return Verdict(True, "a command without the token: py4j's Authentication error")
    if second and second.startswith(b"!"):
        return Verdict(False, f"py4j obeyed a command without the token ({second[:20]!r})")
    if second == b"":
        return Verdict(True, "a py4j command without the token: closed unanswered")
    third = _exchange(address, port, _LONG_WRONG_TOKEN)
    if third == b"":
        return Verdict(True, "a wrong token: closed unanswered (an AccumulatorServer's "
                             "refusal)")
    return Verdict(False, "answered without a secret: "
                          f"{first!r:.40} / {second!r:.40} / {third!r:.40}")


def probe_ssh(address: str, port: int, context: Context) -> Verdict:
    result = subprocess.run(
        ["ssh", "-p", str(port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "PreferredAuthentications=none",
         "-o", "ConnectTimeout=5", f"mallory@{address}", "true"],
        capture_output=True, text=True, timeout=30, check=False)
    methods = re.search(r"Permission denied \(([^)]*)\)", result.stderr)
    if result.returncode == 255 and methods and "password" not in methods[1]:
        return Verdict(True, f"unknown user: Permission denied ({methods[1]})")
    return Verdict(False, (result.stderr.strip() or f"exit {result.returncode}")[-200:])


def probe_loopback_only(address: str, port: int, context: Context) -> Verdict:
    """A host's loopback listener, from another host (the bed's hosts each have their
    own network namespace): ``address`` is the host's own, where it must not answer."""
    try:
        _connect(address, port, timeout=3).close()
    except ConnectionRefusedError:
        return Verdict(True, f"unreachable from another host ({address}: connection refused)")
    return Verdict(False, f"answers on {address} too")


Probe = Callable[[str, int, Context], Verdict]
PROBES: dict[str, Probe] = {
    "zookeeper-client": probe_zookeeper_client,
    "tls-peer": probe_tls_peer,
    "kafka": probe_kafka,
    "cassandra-native": probe_cassandra_native,
    "jmx": probe_jmx,
    "jmx-rmi": probe_jmx_rmi,
    "spark-rpc": probe_spark_rpc,
    "ui-http": probe_ui_http,
    "ui-https": probe_ui_https,
    "prometheus": probe_prometheus,
    "grafana": probe_grafana,
    "exporter": probe_exporter,
    "x-api-simulator": probe_x_api_simulator,
    "local-secret": probe_local_secret,
    "ssh": probe_ssh,
    "loopback-only": probe_loopback_only,
}


def run_probe(name: str, address: str, port: int, context: Context) -> tuple[str, str]:
    """(result, detail): "refused", "NOT REFUSED", "gone" (closed before the probe:
    nothing listens there any more) or "ERROR" (the probe itself failed)."""
    try:
        verdict = PROBES[name](address, port, context)
    except ConnectionRefusedError:
        return "gone", "closed before the probe"
    except Exception as error:  # a probe's failure is a row of the table, not a crash
        return "ERROR", f"{type(error).__name__}: {error}"[:300]
    return ("refused" if verdict.refused else "NOT REFUSED"), verdict.detail


# --- the survey ----------------------------------------------------------------------

PASSING = frozenset({"refused", "gone"})


@dataclass
class Row:
    host: str
    listener: Listener
    owner: str
    what: str
    probe: str | None
    result: str = "UNCOVERED"
    detail: str = ""
    # Where the probe connects, when not where the socket is bound (probe_address).
    target: str | None = None

    @property
    def ok(self) -> bool:
        return self.result in PASSING


def probe_address(listener: Listener, host_address: str) -> str:
    """Where a client reaches a socket: its own address, the host's for a wildcard."""
    return host_address if listener.wildcard else listener.address


def survey(inventory: Inventory, rows: list[Row], context: Context) -> list[Row]:
    """Each row probed (those with a probe), in order."""
    for row in rows:
        if row.probe is None:
            row.detail = "no probe covers this port"
            continue
        address = row.target or probe_address(row.listener, inventory.address(row.host))
        row.result, row.detail = run_probe(row.probe, address, row.listener.port, context)
    return rows


def classify(inventory: Inventory, host: str, listener: Listener, owner: str,
             table: dict[tuple[str, int], Expected], *,
             proc: Path | None = Path("/proc")) -> Row:
    expected = table.get((host, listener.port)) or fallback_probe(
        listener, _groups_of(inventory, host), proc=proc,
        ui_tls_offset=int(inventory.var(host, "spark_ui_tls_port_offset", "spark")))
    if expected is None:
        return Row(host, listener, owner, "nothing the inventory names", None)
    return Row(host, listener, owner, expected.what, expected.probe)


def format_table(rows: list[Row], ignored: Iterable[Listener] = (),
                 missing: Iterable[str] = ()) -> str:
    header = ("host", "bound", "port", "process", "service", "what", "probe", "result")
    lines = [(row.host, row.listener.address, str(row.listener.port), row.listener.process,
              row.owner, row.what, row.probe or "-", f"{row.result}: {row.detail}")
             for row in rows]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header) - 1)]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
            + "  " + line[-1] for line in [header, *lines]]
    ignored = list(ignored)
    if ignored:
        text.append("not the stack's (no process of it, no host's address): " + ", ".join(
            f"{item.address}:{item.port} ({item.process})" for item in ignored))
    missing = list(missing)
    if missing:
        text.append("named by the inventory but not listening: " + ", ".join(missing))
    return "\n".join(text)


def plaintext_services(inventory: Inventory) -> list[str]:
    """The inventory's services that run unsecured: the variable that says so."""
    found = []
    for name, secured in (("zookeeper_tls_enabled", inventory.zookeeper_tls),
                          ("kafka_security_enabled", inventory.kafka_security),
                          ("cassandra_security_enabled", inventory.cassandra_security),
                          ("spark_security_enabled", inventory.spark_ui_cafile)):
        if secured() is None:
            found.append(name)
    for host in inventory.groups["prometheus"][:1]:
        if not _enabled(inventory.var(host, "prometheus_security_enabled", "prometheus")):
            found.append("prometheus_security_enabled")
    return found


# The stack the acceptance tests probe: the local one, or $EVILNET_SECURITY_INVENTORY.
SECURITY_INVENTORY = Path(os.environ.get(
    "EVILNET_SECURITY_INVENTORY", TESTS.parent / "inventories" / "local"))


def secured_inventory(purpose: str) -> Inventory:
    """SECURITY_INVENTORY, loaded; the calling test skips (saying ``purpose``) where
    a service of it runs unsecured."""
    import pytest
    from stack_guard import ROLES

    found = Inventory.load(SECURITY_INVENTORY, roles=ROLES)
    plaintext = plaintext_services(found)
    if plaintext:
        pytest.skip(f"{SECURITY_INVENTORY} runs services unsecured "
                    f"({', '.join(plaintext)} false): {purpose}")
    return found
