"""The acceptance probes' own logic, without the stack (tests/security_probes.py and
evilnet.platform.secrets' scan): `ss` output parsed, sockets given to the right
host, ports to the right probe, probes that pass on a refusal and fail on a service
that lets a stranger in (throwaway servers on 127.0.4.x, stopped after each test),
and a secret scan that finds a secret where it must not be and spares a 0600 file.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import struct
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from security_probes import (
    WRONG_PASSWORD,
    Context,
    Listener,
    expected_ports,
    fallback_probe,
    owner_of,
    parse_ss,
    probe_exporter,
    probe_jmx,
    probe_local_secret,
    probe_loopback_only,
    probe_spark_rpc,
    probe_x_api_simulator,
    sasl_authenticate,
    scram_client_final,
    stranger_certificate,
    tls_client_verdict,
)
from stack_guard import ROLES

from evilnet.platform import secrets
from evilnet.platform.inventory import Inventory

REPO_ROOT = Path(__file__).resolve().parents[2]
# Throwaway servers only: never the local stack's 127.0.1.x.
HERE = "127.0.4.1"

SS_SAMPLE = """\
LISTEN 0      5               127.0.1.9:8080  0.0.0.0:* users:(("evilnet",pid=20613,fd=3))
LISTEN 0      50     [::ffff:127.0.1.2]:2181        *:* users:(("java",pid=17662,fd=31))
LISTEN 0      128               0.0.0.0:2024  0.0.0.0:*
LISTEN 0      4096   [::]:9100     [::]:* users:(("node",pid=7,fd=3),("node",pid=8,fd=3))
LISTEN 0      4096                    *:9093        *:* users:(("java",pid=11,fd=200))
LISTEN 0      4096        127.0.0.53%lo:53    0.0.0.0:* users:(("systemd-resolve",pid=5,fd=14))
LISTEN 0      50              127.0.0.1:7199  0.0.0.0:* users:(("java",pid=19107,fd=111))
"""


def test_ss_output_is_parsed_into_addresses_ports_and_holders() -> None:
    found = {(item.address, item.port): item for item in parse_ss(SS_SAMPLE)}
    assert set(found) == {("127.0.1.9", 8080), ("127.0.1.2", 2181), ("0.0.0.0", 2024),
                          ("::", 9100), ("0.0.0.0", 9093), ("127.0.0.53", 53),
                          ("127.0.0.1", 7199)}
    assert found[("127.0.1.2", 2181)].processes == (("java", 17662),)
    assert found[("::", 9100)].processes == (("node", 7), ("node", 8))
    assert found[("0.0.0.0", 2024)].processes == ()
    assert found[("::", 9100)].wildcard and found[("0.0.0.0", 9093)].wildcard
    assert found[("127.0.0.1", 7199)].loopback_only
    assert not found[("127.0.1.9", 8080)].wildcard


# --- whose a socket is ---------------------------------------------------------------

@contextlib.contextmanager
def _process(cwd: Path, env: dict[str, str] | None = None) -> Iterator[int]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             cwd=cwd, env=env or {})
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def test_a_socket_is_the_stacks_by_its_service_its_root_or_its_address(tmp_path: Path) -> None:
    roots = {"kafka1": tmp_path / "hosts" / "kafka1", "zk1": tmp_path / "hosts" / "zk1"}
    for root in roots.values():
        (root / "supervisor").mkdir(parents=True)
    supervised = {"SUPERVISOR_PROCESS_NAME": "kafka",
                  "SUPERVISOR_SERVER_URL": f"unix://{roots['kafka1']}/supervisor/s.sock"}
    addresses = {"127.0.1.4": "kafka1", "127.0.1.1": "zk1"}
    with _process(tmp_path, supervised) as service, _process(roots["zk1"]) as stray, \
            _process(tmp_path) as stranger:
        # A service bound to every address is still its host's.
        owner = owner_of(Listener("0.0.0.0", 9092, (("java", service),)), roots, addresses)
        assert (owner.host, owner.service) == ("kafka1", "kafka")
        # Not its service manager's, but running from the host's root.
        owner = owner_of(Listener("127.0.0.1", 41234, (("python", stray),)), roots, addresses)
        assert (owner.host, owner.service) == ("zk1", "unsupervised")
        # Someone else's process on a host's address is the host's business too.
        owner = owner_of(Listener("127.0.1.1", 8080, (("python", stranger),)), roots,
                         addresses)
        assert (owner.host, owner.service) == ("zk1", "unknown")
        # Neither: this machine's own.
        assert owner_of(Listener("0.0.0.0", 2024, (("python", stranger),)), roots,
                        addresses) is None


@pytest.fixture(scope="module")
def local() -> Inventory:
    return Inventory.load(REPO_ROOT / "inventories" / "local", roles=ROLES)


def test_the_inventorys_ports_map_to_their_probes(local: Inventory) -> None:
    shards = [{"name": "app-1", "address": "127.0.1.9", "metrics_port": 9401}]
    table = expected_ports(local, shards)
    probes = {key: expected.probe for key, expected in table.items()}
    # The standard ports (docs/security.md, the roles' READMEs).
    assert probes[("zk1", 2181)] == "zookeeper-client"
    assert probes[("zk2", 3888)] == probes[("cassandra1", 7000)] == "tls-peer"
    assert probes[("kafka2", 9092)] == "kafka"
    assert probes[("cassandra1", 9042)] == "cassandra-native"
    assert probes[("cassandra1", 7199)] == "jmx"
    assert probes[("spark-master", 7077)] == probes[("spark-worker1", 7078)] == "spark-rpc"
    assert probes[("spark-master", 8080)] == probes[("spark-master", 4040)] == "ui-http"
    assert probes[("producer1", 8080)] == "x-api-simulator"
    assert probes[("monitor", 9090)] == "prometheus"
    for exporter in [("zk3", 7070), ("kafka1", 7071), ("cassandra1", 7072),
                     ("spark-master", 9108), ("producer1", 9401), ("monitor", 9119)]:
        assert probes[exporter] == "exporter", exporter
    assert not table[("zk1", 2888)].required  # the quorum port: the leader's only
    # Local hosts are reached without SSH: no sshd of theirs to probe.
    assert "ssh" not in probes.values()


def test_a_secured_spark_adds_its_https_ports(local: Inventory) -> None:
    secured = Inventory(local.path, local.groups,
                        {host: {**variables, "spark_security_enabled": True}
                         for host, variables in local.hostvars.items()}, local.roles)
    probes = {key: expected.probe for key, expected in expected_ports(secured).items()}
    assert probes[("spark-master", 8480)] == probes[("spark-master", 4440)] == "ui-https"
    assert probes[("spark-worker1", 8481)] == "ui-https"


def test_ports_no_variable_names_go_by_what_holds_them() -> None:
    def probe(address: str, name: str, groups: set[str]) -> str | None:
        found = fallback_probe(Listener(address, 40000, ((name, 1),)), groups)
        return found.probe if found else None

    assert probe("127.0.1.7", "java", {"spark_master"}) == "spark-rpc"
    assert probe("127.0.1.8", "java", {"spark_workers"}) == "spark-rpc"
    assert probe("127.0.0.1", "java", {"spark_master"}) == "local-secret"
    assert probe("127.0.0.1", "python", {"spark_master"}) == "local-secret"
    assert probe("127.0.0.1", "java", {"cassandra"}) == "jmx-rmi"
    # Nothing known opens such a port: uncovered, so the acceptance test fails.
    assert probe("127.0.1.4", "java", {"kafka"}) is None
    assert probe("127.0.1.9", "python", {"producers"}) is None


def test_a_further_drivers_ui_is_known_by_its_own_spark_ui_port(tmp_path: Path) -> None:
    # A second job on the master (the analytics tests') names its UI port itself.
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "cmdline").write_bytes(
        b"java\0-cp\0jars\0org.apache.spark.deploy.SparkSubmit\0--conf\0"
        b"spark.ui.port=4041\0job.py\0")

    def probe(port: int) -> str | None:
        found = fallback_probe(Listener("127.0.1.7", port, (("java", 42),)), {"spark_master"},
                               ui_tls_offset=400, proc=tmp_path)
        return found.probe if found else None

    assert probe(4041) == "ui-http"
    assert probe(4441) == "ui-https"
    assert probe(4042) == "spark-rpc"


# --- the probes, against throwaway servers --------------------------------------------

@contextlib.contextmanager
def _tcp_server(handle: Callable[[socket.socket], None], wrap=None) -> Iterator[int]:
    """A one-thread TCP server on HERE: ``handle`` per connection (TLS by ``wrap``)."""
    listener = socket.create_server((HERE, 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError, ssl.SSLError), \
                    (wrap(connection) if wrap else connection) as peer:
                peer.settimeout(5)
                handle(peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _answer_http(peer: socket.socket) -> None:
    peer.recv(4096)
    peer.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nup 1\n")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path, Path]:
    return stranger_certificate(tmp_path / "ca")


def _tls(certificate, *, require_client: bool):
    crt, key, ca = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(ca)
    return lambda connection: context.wrap_socket(connection, server_side=True)


def test_the_tls_verdict_tells_refusal_from_acceptance_and_from_no_tls(certificate) -> None:
    crt, key, _ = certificate
    with _tcp_server(_answer_http, _tls(certificate, require_client=True)) as port:
        assert tls_client_verdict(HERE, port) == "refused"
        # Mutual TLS that refused everyone would pass the line above.
        assert tls_client_verdict(HERE, port, b"GET / HTTP/1.0\r\n\r\n", cert=crt,
                                  key=key) == "answered"
        assert tls_client_verdict(HERE, port, cert=crt, key=key) == "accepted"
    with _tcp_server(_answer_http, _tls(certificate, require_client=False)) as port:
        assert tls_client_verdict(HERE, port, b"GET / HTTP/1.0\r\n\r\n") == "answered"
        assert tls_client_verdict(HERE, port) == "accepted"
    with _tcp_server(lambda peer: peer.close()) as port:
        assert tls_client_verdict(HERE, port) == "not TLS"


def test_the_exporter_probe_takes_a_password_over_tls_for_a_refusal(certificate) -> None:
    def ask_a_password(peer: socket.socket) -> None:
        peer.recv(4096)
        peer.sendall(b"HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic\r\n\r\n")

    with _tcp_server(ask_a_password, _tls(certificate, require_client=False)) as port:
        verdict = probe_exporter(HERE, port, Context(None))
    assert verdict.refused and "password: 401" in verdict.detail


def test_the_exporter_probe_fails_on_plain_http_and_passes_on_mutual_tls(certificate) -> None:
    context = Context(inventory=None)  # the exporter probe needs nothing of it
    with _tcp_server(_answer_http) as port:
        verdict = probe_exporter(HERE, port, context)
        assert not verdict.refused and "metrics served to anyone" in verdict.detail
    with _tcp_server(_answer_http, _tls(certificate, require_client=True)) as port:
        assert probe_exporter(HERE, port, context).refused


def test_the_x_api_simulator_refuses_a_wrong_token_but_not_its_control_endpoints() -> None:
    from evilnet.producer.simulator import XApiSimulator

    simulator = XApiSimulator(["the-right-token-" + "x" * 20], rate=1)
    server = simulator.serve(HERE, 0)
    try:
        verdict = probe_x_api_simulator(HERE, server.server_address[1], Context(None))
    finally:
        simulator.shutdown()
    # The stand-in refuses strangers its stream and rules, and shows anyone its state:
    # the acceptance test fails on it until /_sim/ is closed too.
    assert "rules, no token: 401" in verdict.detail
    assert "rules, wrong token: 401" in verdict.detail
    assert "/_sim/state, no token: 200" in verdict.detail
    assert not verdict.refused


def _spark_failure(text: str) -> Callable[[socket.socket], None]:
    def handle(peer: socket.socket) -> None:
        frame = peer.recv(4096)
        request_id = frame[9:17]
        body = request_id + struct.pack(">i", len(text)) + text.encode()
        peer.sendall(struct.pack(">qb", 9 + len(body), 5) + body)
    return handle


def test_the_spark_probe_reads_the_rpc_failure_that_names_the_missing_sasl() -> None:
    refusal = ("java.lang.IllegalStateException: Expected SaslMessage, received something "
               "else (maybe your client does not have SASL enabled?)\n\tat ...")
    with _tcp_server(_spark_failure(refusal)) as port:
        verdict = probe_spark_rpc(HERE, port, Context(None))
    assert verdict.refused and "Expected SaslMessage" in verdict.detail
    # An unauthenticated RPC endpoint fails on the body, not on a missing login.
    with _tcp_server(_spark_failure("java.io.EOFException\n\tat ...")) as port:
        assert not probe_spark_rpc(HERE, port, Context(None)).refused


def test_the_loopback_probe_passes_on_a_wrong_secret_refused_only() -> None:
    def socket_auth(peer: socket.socket) -> None:  # pyspark's SocketAuthHelper
        (length,) = struct.unpack(">i", peer.recv(4))
        peer.recv(length)
        peer.sendall(struct.pack(">i", 3) + b"err")

    def accumulator_server(peer: socket.socket) -> None:  # pyspark's, a 44-byte token
        received = b""
        while len(received) < 44:
            chunk = peer.recv(44 - len(received))
            if not chunk:
                return
            received += chunk
        if received != b"t" * 44:
            return  # closed: the token is wrong
        peer.sendall(b"\1")

    def unauthenticated_py4j(peer: socket.socket) -> None:
        lines = peer.makefile("rb")
        if lines.readline() == b"g\n":
            lines.readline(), lines.readline()
            peer.sendall(b"!y\n")

    with _tcp_server(socket_auth) as port:
        assert probe_local_secret(HERE, port, Context(None)).refused
    with _tcp_server(accumulator_server) as port:
        assert probe_local_secret(HERE, port, Context(None)).refused
    with _tcp_server(unauthenticated_py4j) as port:
        verdict = probe_local_secret(HERE, port, Context(None))
    assert not verdict.refused and "py4j obeyed" in verdict.detail
    with _tcp_server(lambda peer: peer.sendall(b"!yv\n" + peer.recv(4096))) as port:
        assert not probe_local_secret(HERE, port, Context(None)).refused


def test_a_listener_of_one_address_is_unreachable_at_another() -> None:
    # The bed's loopback rows: the socket's address is not where another host connects.
    with _tcp_server(lambda peer: peer.close()) as port:
        assert probe_loopback_only("127.0.4.2", port, Context(None)).refused
        assert not probe_loopback_only(HERE, port, Context(None)).refused


def test_the_kafka_probe_speaks_kafkas_protocol_and_reads_its_refusal() -> None:
    from kafka.protocol.sasl import SaslAuthenticateRequest, SaslAuthenticateResponse

    # The request the probe sends is byte for byte kafka-python's (another
    # implementation of the protocol), and it reads the broker's refusal as encoded there.
    expected = SaslAuthenticateRequest(auth_bytes=b"n,,n=mallory,r=abc")
    expected.with_header(correlation_id=2, client_id="evilnet-security-probe")
    refusal = SaslAuthenticateResponse[1](
        error_code=58, error_message="Authentication failed during authentication due to "
        "invalid credentials with SASL mechanism SCRAM-SHA-512", auth_bytes=b"",
        session_lifetime_ms=0).encode(version=1)
    probe, broker = socket.socketpair()
    with probe, broker:
        broker.sendall(struct.pack(">ii", 4 + len(refusal), 2) + refusal)
        error, text, _ = sasl_authenticate(probe, 2, b"n,,n=mallory,r=abc")
        assert broker.recv(4096) == expected.encode(version=1, header=True, framed=True)
    assert error == 58 and text.startswith("Authentication failed")


def test_scram_client_final_matches_rfc_7677() -> None:
    # RFC 7677, section 3 (SCRAM-SHA-256): the same computation as SHA-512's.
    server_first = (b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    assert scram_client_final("user", "pencil", "rOprNGfwEbeRWgbNEkqO", server_first,
                              "sha256") == (
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")


def test_the_jmx_probe_runs_and_does_not_take_silence_for_a_refusal() -> None:
    java = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"
    if not Path(java).exists():
        pytest.skip("no Java 17 here")
    with socket.create_server((HERE, 0)) as closed:
        port = closed.getsockname()[1]
    verdict = probe_jmx(HERE, port, Context(None, java=java))
    assert not verdict.refused and "Connection refused" in verdict.detail


# A stand-in for `java JmxProbe.java HOST PORT [USER]`: answers as $ANSWER_<n> with exit
# $CODE_<n> (n: 4 with a user, 3 without), and logs its arguments and its stdin.
FAKE_JAVA = """#!/bin/sh
read -r password
echo "argv: $* stdin: $password" >> "$PROBE_LOG"
if [ $# -gt 3 ]; then echo "$ANSWER_4"; exit "$CODE_4"; fi
echo "$ANSWER_3"; exit "$CODE_3"
"""


@pytest.mark.parametrize(("without", "wrong", "refused"), [
    ((3, "refused: Authentication failed! Credentials required"),
     (3, "refused: Authentication failed! Invalid username or password"), True),
    ((3, "refused: Authentication failed! Credentials required"),
     (0, "answered as evilnet_jmx: 12 MBeans"), False),  # any password would do
    ((0, "answered without credentials: 12 MBeans"), (3, "refused: x"), False),
    ((3, "something else"), (3, "refused: x"), False),  # exit 3 without the refusal
    ((1, "no answer: java.net.ConnectException"), (1, "no answer"), False),
], ids=["both refused", "any password", "open", "unrecognised", "silent"])
def test_the_jmx_probe_passes_only_on_both_refusals(tmp_path: Path, monkeypatch,
                                                    without, wrong, refused: bool) -> None:
    java = tmp_path / "java"
    java.write_text(FAKE_JAVA)
    java.chmod(0o755)
    log = tmp_path / "probe.log"
    for arguments, (code, answer) in ((3, without), (4, wrong)):
        monkeypatch.setenv(f"CODE_{arguments}", str(code))
        monkeypatch.setenv(f"ANSWER_{arguments}", answer)
    monkeypatch.setenv("PROBE_LOG", str(log))
    verdict = probe_jmx("127.0.0.1", 7199, Context(None, java=str(java)))
    assert verdict.refused is refused, verdict.detail
    calls = log.read_text().splitlines()
    assert calls[0].endswith("127.0.0.1 7199 stdin: ")  # no credentials at all
    if refused:
        # The wrong password goes to the probe's stdin, never its command line.
        assert calls[1].endswith(f"127.0.0.1 7199 evilnet_jmx stdin: {WRONG_PASSWORD}")
        assert WRONG_PASSWORD not in calls[1].split(" stdin: ")[0]


# --- the secret scan -----------------------------------------------------------------

SECRET = b"FakeSecretValue0123456789abcdefXY"


def test_encoded_forms_find_a_value_inside_a_longer_encoded_string() -> None:
    forms = secrets.encoded_forms({"kafka/admin.password": SECRET,
                                   "x-api/app-1.token": b"AAAA%2Ftoken+with/odd=chars"})
    for prefix in (b"", b"a:", b"ab:", b"evilnet:"):  # every offset modulo 3
        header = base64.b64encode(prefix + SECRET)
        assert any(form in header for label, form in forms.items()
                   if label.startswith("kafka/admin.password (base64")), prefix
        urlsafe = base64.urlsafe_b64encode(prefix + b"\xfb\xff" + SECRET)
        assert any(form in urlsafe for label, form in forms.items()
                   if label.startswith("kafka/admin.password")), prefix
    quoted = urllib.parse.quote(b"AAAA%2Ftoken+with/odd=chars", safe="").encode()
    assert forms["x-api/app-1.token (url-encoded)"] == quoted
    # Letters and digits URL-encode to themselves: no form of its own.
    assert "kafka/admin.password (url-encoded)" not in forms


def _write(path: Path, content: bytes, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(mode)
    return path


def test_the_scan_finds_a_secret_in_a_readable_file_a_log_or_the_plan_only(
        tmp_path: Path) -> None:
    values = secrets.encoded_forms({"kafka/broker.password": SECRET})
    root = tmp_path / "hosts" / "kafka1"
    readable = _write(root / "etc" / "kafka" / "client.properties",
                      b"password=" + SECRET + b"\n", 0o644)
    private = _write(root / "etc" / "kafka" / "server.properties",
                     b"password=" + SECRET + b"\n", 0o600)
    log = _write(root / "log" / "kafka" / "server.out", b"login " + SECRET, 0o600)
    encoded = _write(root / "data" / "basic.json",
                     b'{"auth": "' + base64.b64encode(b"broker:" + SECRET) + b'"}', 0o640)
    plan = _write(tmp_path / "plan" / "shards" / "app-1" / "producer.yml",
                  b"token: " + SECRET, 0o600)
    _write(root / "dist" / "staged.tar.gz", SECRET, 0o644)
    clean = _write(root / "etc" / "kafka" / "log4j.properties", b"nothing here", 0o644)
    # The scanner's own source, installed in a host's venv, names the PEM header only.
    _write(root / "venv" / "secrets.py", Path(secrets.__file__).read_bytes(), 0o644)
    key = _write(root / "etc" / "backup" / "host.key",
                 b"-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n", 0o644)

    scan = secrets.scan_tree([root, tmp_path / "plan", root], values,
                             strict=(tmp_path / "plan",))
    found = {(Path(item.where), item.secret, item.why) for item in scan.findings}
    assert found == {(readable, "kafka/broker.password", "readable by others"),
                     (log, "kafka/broker.password", "a log"),
                     (encoded, "kafka/broker.password (base64 at offset 1)",
                      "readable by others"),
                     (plan, "kafka/broker.password", "the plan"),
                     (key, "a private key", "readable by others")}
    assert [(Path(item.where), item.why) for item in scan.private] == [(private, "private")]
    assert scan.compressed == [root / "dist" / "staged.tar.gz"]
    # Each file once, though its root was given twice: the eight read, the archive not.
    assert scan.read == 8 and clean.exists()


def test_the_process_scan_names_the_variable_never_the_value(tmp_path: Path) -> None:
    # A /proc of two processes (this machine's own processes are none of this test's
    # business): an executor with the secret in its environment, and a shell with it
    # on its command line.
    proc = tmp_path / "proc"
    for pid, comm, cmdline, environ in (
            ("4242", "java", b"java\0-cp\0/opt/spark/jars/*",
             b"PATH=/usr/bin\0_SPARK_AUTH_SECRET=" + SECRET + b"\0HOME=/"),
            ("4343", "sh", b"sh\0-c\0echo " + SECRET, b"PATH=/usr/bin\0")):
        _write(proc / pid / "comm", comm.encode() + b"\n", 0o644)
        _write(proc / pid / "cmdline", cmdline, 0o444)
        _write(proc / pid / "environ", environ, 0o400)
    (proc / "self").mkdir()
    found = secrets.scan_processes({"spark/auth.secret": SECRET}, proc=proc)
    assert sorted((item.where, item.why, item.variable) for item in found) == [
        ("pid 4242 (java) environ _SPARK_AUTH_SECRET", "an environment", "_SPARK_AUTH_SECRET"),
        ("pid 4343 (sh) cmdline", "a command line", None)]
    assert all(SECRET.decode() not in item.where for item in found)
