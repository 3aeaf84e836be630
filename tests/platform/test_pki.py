"""The inventory's CA (evilnet/platform/pki.py): what it issues verifies against it with
each host's names, keys stay private, a second run changes nothing, and what must be
re-issued is. Real keys, real signatures, real TLS handshakes; no service needed.

The expected names come from the inventory each test writes, never from the module.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from evilnet.platform import pki

# Hosts as an inventory gives them: name -> address (ansible_host), and the groups.
ADDRESSES = {"zk1": "127.0.2.1", "kafka1": "127.0.2.4", "kafka2": "127.0.2.5",
             "producer1": "producer1.evilnet.example"}
GROUPS = {"zookeeper": ["zk1"], "kafka": ["kafka1", "kafka2"], "producers": ["producer1"]}
STORE_PASSWORD = "store-password-for-tests"
KEYTOOL = Path("/usr/lib/jvm/java-17-openjdk-amd64/bin/keytool")


def _issue(authority: pki.Authority, addresses=ADDRESSES, *, days: int = 365,
           renew_within: int = 30, force=()) -> dict:
    authority.init()
    return authority.issue(pki.requests_for(addresses, GROUPS), store_password=STORE_PASSWORD,
                           days=days, renew_within=renew_within, force=force)


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> pki.Authority:
    authority = pki.Authority(tmp_path_factory.mktemp("pki") / "ca-dir", "testing")
    _issue(authority)
    return authority


def _certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _host_file(authority: pki.Authority, host: str, name: str = "host",
               kind: str = "crt") -> Path:
    return authority.directory / "hosts" / host / f"{name}.{kind}"


def _verifier(authority: pki.Authority):
    ca = _certificate(authority.bundle_path)
    return PolicyBuilder().store(Store([ca])).time(dt.datetime.now(dt.UTC))


@pytest.mark.parametrize("host", sorted(ADDRESSES))
def test_each_host_certificate_verifies_for_its_name_and_address(
        issued: pki.Authority, host: str) -> None:
    certificate = _certificate(_host_file(issued, host))
    address = ADDRESSES[host]
    names = [x509.DNSName(host)]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(address)))
    except ValueError:
        names.append(x509.DNSName(address))
    for name in names:
        # RFC 5280 path validation to the CA, with the server name checked.
        chain = _verifier(issued).build_server_verifier(name).verify(certificate, [])
        assert chain[-1] == _certificate(issued.ca_cert_path)
    # The same certificate authenticates the host as a client (ZooKeeper's quorum,
    # Cassandra's internode, the brokers towards ZooKeeper).
    _verifier(issued).build_client_verifier().verify(certificate, [])
    other = x509.DNSName("not-" + host)
    with pytest.raises(VerificationError, match="no matching subjectAltName"):
        _verifier(issued).build_server_verifier(other).verify(certificate, [])


def test_brokers_share_one_subject_towards_zookeeper_each_with_its_own_names(
        issued: pki.Authority) -> None:
    subjects = set()
    for broker in GROUPS["kafka"]:
        certificate = _certificate(_host_file(issued, broker, "zookeeper-client"))
        _verifier(issued).build_server_verifier(x509.DNSName(broker)).verify(certificate, [])
        subjects.add(certificate.subject)
    assert len(subjects) == 1
    assert not _host_file(issued, "zk1", "zookeeper-client").exists()
    own = {_certificate(_host_file(issued, broker)).subject for broker in GROUPS["kafka"]}
    assert len(own) == 2


def test_keys_and_keystores_are_readable_by_their_owner_only(issued: pki.Authority) -> None:
    private = [issued.ca_key_path, *(path for kind in ("key", "pem", "p12")
                                     for place in ("hosts/*", "clients")
                                     for path in issued.directory.glob(f"{place}/*.{kind}"))]
    assert len(private) == 1 + 3 * (len(ADDRESSES) + len(GROUPS["kafka"]) + 1)
    assert {path.stat().st_mode & 0o777 for path in private} == {0o600}
    # Every directory under the CA's is its owner's alone.
    directories = [issued.directory, *(p for p in issued.directory.rglob("*") if p.is_dir())]
    assert {path.stat().st_mode & 0o777 for path in directories} == {0o700}


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, server_name: str) -> str:
    """A TLS handshake over a socket pair (no network); the subject CN the client saw."""
    left, right = socket.socketpair()
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            with server.wrap_socket(right, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError) as error:
            failure.append(error)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(left, server_hostname=server_name) as tls:
            subject = dict(item[0] for item in tls.getpeercert()["subject"])
            tls.sendall(b"x")
    finally:
        thread.join(timeout=10)
    assert not failure, failure
    return subject["commonName"]


def _server(authority: pki.Authority, host: str, *, client_auth: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # The single-file PEM keystore (key, certificate, CA) the Java services read.
    context.load_cert_chain(_host_file(authority, host, kind="pem"))
    if client_auth:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(authority.bundle_path)
    return context


def _client(authority: pki.Authority, host: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(authority.bundle_path))
    if host:
        context.load_cert_chain(_host_file(authority, host), _host_file(authority, host,
                                                                       kind="key"))
    return context


def test_a_python_client_trusting_the_bundle_completes_mutual_tls_with_a_host(
        issued: pki.Authority) -> None:
    server = _server(issued, "kafka1", client_auth=True)
    assert _handshake(server, _client(issued, "producer1"), "kafka1") == "kafka1"
    # By address too, as clients given ansible_host connect.
    assert _handshake(server, _client(issued, "producer1"), "127.0.2.4") == "kafka1"


def test_the_controller_authenticates_as_a_client_and_can_serve_nothing(
        issued: pki.Authority) -> None:
    controller = issued.directory / "clients"
    certificate = _certificate(controller / "controller.crt")
    _verifier(issued).build_client_verifier().verify(certificate, [])
    client = ssl.create_default_context(cafile=str(issued.bundle_path))
    client.load_cert_chain(controller / "controller.crt", controller / "controller.key")
    assert _handshake(_server(issued, "zk1", client_auth=True), client, "zk1") == "zk1"
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(controller / "controller.pem")
    # Even under its own name, no client takes it for a server.
    with pytest.raises(ssl.SSLCertVerificationError, match="unsuitable certificate purpose"):
        _handshake(server, _client(issued), "evilnet-controller")


def test_a_client_refuses_a_host_under_another_name_and_a_foreign_ca(
        issued: pki.Authority, tmp_path: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _handshake(_server(issued, "kafka1"), _client(issued), "kafka2")
    stranger = pki.Authority(tmp_path / "other", "testing")
    _issue(stranger, {"kafka1": "127.0.2.4"})
    with pytest.raises(ssl.SSLCertVerificationError,
                       match="self-signed certificate in certificate chain"):
        _handshake(_server(stranger, "kafka1"), _client(issued), "kafka1")


def test_the_pkcs12_stores_hold_the_key_the_chain_and_the_ca(issued: pki.Authority) -> None:
    keystore = pkcs12.load_pkcs12(_host_file(issued, "zk1", kind="p12").read_bytes(),
                                  STORE_PASSWORD.encode())
    assert keystore.cert.certificate == _certificate(_host_file(issued, "zk1"))
    assert keystore.key.public_key().public_numbers() == (
        keystore.cert.certificate.public_key().public_numbers())
    ca = _certificate(issued.ca_cert_path)
    assert [entry.certificate for entry in keystore.additional_certs] == [ca]
    truststore = pkcs12.load_pkcs12(issued.truststore_path.read_bytes(), STORE_PASSWORD.encode())
    assert truststore.key is None
    assert [entry.certificate for entry in truststore.additional_certs] == [ca]
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(issued.truststore_path.read_bytes(), b"wrong")


@pytest.mark.skipif(not KEYTOOL.exists(), reason="no Java 17 keytool")
@pytest.mark.parametrize(("store", "entry"), [("truststore.p12", "trustedCertEntry"),
                                              ("hosts/kafka1/host.p12", "PrivateKeyEntry")])
def test_java_reads_the_keystore_and_truststore(issued: pki.Authority, tmp_path: Path,
                                                store: str, entry: str) -> None:
    password = tmp_path / "store.password"
    password.write_text(STORE_PASSWORD)
    password.chmod(0o600)
    # -storepass:file: the password never on keytool's command line.
    listing = subprocess.run(
        ["nice", str(KEYTOOL), "-list", "-keystore", str(issued.directory / store),
         "-storetype", "PKCS12", "-storepass:file", str(password)],
        capture_output=True, text=True, timeout=120, check=False)
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert "Your keystore contains 1 entry" in listing.stdout
    assert entry in listing.stdout


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {str(path.relative_to(directory)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(directory.rglob("*")) if path.is_file()}


def test_a_second_run_issues_nothing_and_rewrites_no_file(tmp_path: Path) -> None:
    authority = pki.Authority(tmp_path / "ca-dir", "testing")
    first = _issue(authority)
    assert set(first) == {(host, "host") for host in ADDRESSES} | {
        (broker, "zookeeper-client") for broker in GROUPS["kafka"]} | {("", "controller")}
    before = _snapshot(authority.directory)
    assert authority.init() is False
    assert _issue(authority) == {}
    assert _snapshot(authority.directory) == before


def test_a_certificate_within_the_renewal_window_is_reissued_once(tmp_path: Path) -> None:
    authority = pki.Authority(tmp_path / "ca-dir", "testing")
    _issue(authority, {"zk1": ADDRESSES["zk1"]}, days=20, renew_within=10)
    old = _certificate(_host_file(authority, "zk1"))
    # The same certificate, now judged against a 30-day window: it expires within it.
    again = _issue(authority, {"zk1": ADDRESSES["zk1"]}, days=365, renew_within=30)
    assert set(again) == {("zk1", "host"), ("", "controller")}
    assert again[("zk1", "host")].startswith("expires in 19 days")
    new = _certificate(_host_file(authority, "zk1"))
    assert new.serial_number != old.serial_number
    assert new.not_valid_after_utc - new.not_valid_before_utc > dt.timedelta(days=364)
    assert _issue(authority, {"zk1": ADDRESSES["zk1"]}) == {}
    rows = authority.status(pki.requests_for({"zk1": ADDRESSES["zk1"]}, GROUPS), renew_within=30,
                            now=dt.datetime.now(dt.UTC) + dt.timedelta(days=340))
    assert rows[0]["state"].startswith("expires in")


def test_a_moved_host_and_a_forced_host_are_reissued_and_no_other(tmp_path: Path) -> None:
    authority = pki.Authority(tmp_path / "ca-dir", "testing")
    _issue(authority)
    moved = {**ADDRESSES, "zk1": "127.0.2.11"}
    assert _issue(authority, moved) == {("zk1", "host"): "names changed"}
    names = _certificate(_host_file(authority, "zk1")).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.2.11"]
    assert _issue(authority, moved, force=["kafka2"]) == {
        ("kafka2", "host"): "forced", ("kafka2", "zookeeper-client"): "forced"}


def test_certificates_of_a_replaced_ca_are_reissued_under_the_new_one(tmp_path: Path) -> None:
    authority = pki.Authority(tmp_path / "ca-dir", "testing")
    _issue(authority)
    shutil.rmtree(authority.directory / "ca")
    issued = _issue(authority)
    assert set(issued.values()) == {"signed by another CA"}
    assert len(issued) == len(ADDRESSES) + len(GROUPS["kafka"]) + 1  # and the controller
    new_ca = _certificate(authority.ca_cert_path)
    assert _certificate(authority.bundle_path) == new_ca
    _certificate(_host_file(authority, "kafka2")).verify_directly_issued_by(new_ca)


def test_the_ca_key_is_encrypted_with_its_passphrase_and_refused_without(
        tmp_path: Path) -> None:
    directory = tmp_path / "ca-dir"
    authority = pki.Authority(directory, "production", b"a passphrase from vault")
    assert authority.init() is True
    assert b"ENCRYPTED PRIVATE KEY" in authority.ca_key_path.read_bytes()
    assert authority.ca_status()["key_encrypted"] is True
    with pytest.raises(pki.PkiError, match="encrypted: give its passphrase"):
        pki.Authority(directory, "production").load()
    with pytest.raises(pki.PkiError, match="wrong passphrase"):
        pki.Authority(directory, "production", b"another").load()
    subject = _certificate(authority.ca_cert_path).subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "EvilNet production CA"


def test_a_validity_shorter_than_its_renewal_window_is_refused(tmp_path: Path) -> None:
    authority = pki.Authority(tmp_path / "ca-dir", "testing")
    with pytest.raises(pki.PkiError, match="renewed on every run"):
        _issue(authority, days=30, renew_within=30)


def _snapshot_host(authority: pki.Authority, host: str, into: Path) -> Path:
    """What a host holds after a rollout: the trust bundle and its own certificate."""
    into.mkdir(parents=True)
    shutil.copy(authority.bundle_path, into / "ca.crt")
    for kind in ("pem", "crt", "key"):
        shutil.copy(_host_file(authority, host, kind=kind), into / f"host.{kind}")
    return into


def _mutual(server: Path, client: Path, server_name: str) -> str:
    """Mutual TLS between two hosts' snapshots, each trusting only its own bundle."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(server / "host.pem")
    server_context.verify_mode = ssl.CERT_REQUIRED
    server_context.load_verify_locations(server / "ca.crt")
    client_context = ssl.create_default_context(cafile=str(client / "ca.crt"))
    client_context.load_cert_chain(client / "host.crt", client / "host.key")
    return _handshake(server_context, client_context, server_name)


def test_a_ca_rotation_never_leaves_two_hosts_unable_to_trust_each_other(
        tmp_path: Path) -> None:
    addresses = {"kafka1": ADDRESSES["kafka1"], "kafka2": ADDRESSES["kafka2"]}
    authority = pki.Authority(tmp_path / "ca-dir", "testing", b"passphrase")
    _issue(authority, addresses)
    old_ca = _certificate(authority.ca_cert_path)
    # Both hosts as the last rollout left them; each step is rolled to kafka1 first.
    hosts = {host: _snapshot_host(authority, host, tmp_path / "0" / host) for host in addresses}
    for index, step in enumerate(("begin", "promote", "finish"), start=1):
        {"begin": authority.begin_rotation, "promote": authority.promote,
         "finish": authority.finish}[step]()
        assert authority.rotation() == {"begin": "begun", "promote": "promoted",
                                        "finish": "none"}[step]
        reissued = _issue(authority, addresses)
        assert set(reissued.values()) == ({"signed by another CA"} if step == "promote"
                                          else set()), step
        hosts["kafka1"] = _snapshot_host(authority, "kafka1", tmp_path / str(index) / "kafka1")
        # Mid-roll: kafka1 has this step's files, kafka2 still the previous step's.
        assert _mutual(hosts["kafka1"], hosts["kafka2"], "kafka1") == "kafka1", step
        assert _mutual(hosts["kafka2"], hosts["kafka1"], "kafka2") == "kafka2", step
        hosts["kafka2"] = _snapshot_host(authority, "kafka2", tmp_path / str(index) / "kafka2")
        assert _mutual(hosts["kafka2"], hosts["kafka1"], "kafka2") == "kafka2", step
    new_ca = _certificate(authority.ca_cert_path)
    assert new_ca != old_ca and new_ca.subject != old_ca.subject
    assert authority.trusted() == [new_ca]
    # The finished bundle refuses what the old CA signed.
    with pytest.raises(ssl.SSLCertVerificationError):
        _mutual(tmp_path / "0" / "kafka1", hosts["kafka2"], "kafka1")
    with pytest.raises(pki.PkiError, match="promote the next CA first"):
        authority.finish()


def test_the_truststore_holds_every_ca_trusted_during_a_rotation(tmp_path: Path) -> None:
    authority = pki.Authority(tmp_path / "ca-dir", "testing")
    _issue(authority, {"zk1": ADDRESSES["zk1"]})
    authority.begin_rotation()
    _issue(authority, {"zk1": ADDRESSES["zk1"]})
    store = pkcs12.load_pkcs12(authority.truststore_path.read_bytes(), STORE_PASSWORD.encode())
    assert [entry.certificate for entry in store.additional_certs] == authority.trusted()
    assert len(authority.trusted()) == 2
    with pytest.raises(pki.PkiError, match="already begun"):
        authority.begin_rotation()
