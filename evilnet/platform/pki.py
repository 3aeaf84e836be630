"""The inventory's own certificate authority, kept on the controller (`evilnet pki`).

One CA per inventory signs one certificate per host (its inventory name and address
as subject alternative names, for server and client use alike), and the identities
some groups share (:data:`SHARED_IDENTITIES`). Everything lives under the
inventory's ``evilnet_pki_dir``::

    ca/ca.key                 the CA's private key (0600; encrypted with a passphrase
                              where one is given, as production does from Vault)
    ca/ca.crt                 the CA's certificate
    ca.crt                    the trust bundle hosts and clients verify peers with (PEM)
    truststore.p12            the same as a Java truststore (PKCS12, store password)
    hosts/<host>/<name>.key   a host's private key (PKCS#8 PEM, 0600)
    hosts/<host>/<name>.crt   its certificate (PEM)
    hosts/<host>/<name>.pem   key, certificate and CA in one file (0600): the PEM
                              keystore of Kafka 3.9, ZooKeeper 3.8 and Cassandra 5.0
    hosts/<host>/<name>.p12   key, certificate and CA as a PKCS12 keystore (0600)
    clients/controller.*      the controller's own client certificate, the same forms

Issuing is idempotent: a certificate is re-issued only when it is missing, expires
within ``renew_within`` days, names other names than its request, was signed by
another CA, or does not match its key. The pki role ships each host its own files.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from evilnet.platform.secrets import SECRET_MODE, make_private_dirs, write_private

# RSA: the one key type every PEM reader of the services parses (Kafka's, ZooKeeper's
# and Cassandra's PEM loaders, Java's PKCS12, Python's ssl, Go's crypto/tls).
CA_KEY_SIZE = 3072
KEY_SIZE = 2048
CA_VALIDITY_DAYS = 3650
PUBLIC_MODE = 0o644
ORGANIZATION = "EvilNet"
# Identities all hosts of a group present, each with its own host's names and
# addresses: ZooKeeper ACLs a client that authenticates with mTLS alone by its whole
# subject, so every broker must present the same one (Kafka's "ZooKeeper
# Authentication" docs, zookeeper.set.acl).
SHARED_IDENTITIES: dict[str, tuple[tuple[str, str], ...]] = {
    # group: ((certificate name, common name), ...)
    "kafka": (("zookeeper-client", "evilnet-kafka-brokers"),),
}
HOST_CERTIFICATE = "host"
# The controller's own client certificate (for client authentication only: it serves
# nothing), for the commands and health checks it runs against services that demand
# one (ZooKeeper's ssl.clientAuth=need). Its files are under clients/, never shipped
# to a host; its one name is its common name (RFC 5280 verifiers want one).
CONTROLLER_CERTIFICATE = ("controller", "evilnet-controller")


class PkiError(RuntimeError):
    """The CA or a certificate cannot be used as asked."""


@dataclass(frozen=True)
class Request:
    """A certificate a host needs: who it is and the names it answers to (``host``
    empty: the controller's client certificate)."""

    host: str
    name: str
    common_name: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]


def _names(host: str, address: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        return (host,), (str(ipaddress.ip_address(address)),)
    except ValueError:
        return tuple(dict.fromkeys((host, address))), ()


def requests_for(addresses: Mapping[str, str],
                 groups: Mapping[str, Iterable[str]]) -> list[Request]:
    """The certificates of an inventory: each host's own, and the shared identities of
    its groups; ``addresses`` maps every host to its address (ansible_host)."""
    found = []
    for host, address in sorted(addresses.items()):
        dns_names, ip_addresses = _names(host, address)
        found.append(Request(host, HOST_CERTIFICATE, host, dns_names, ip_addresses))
        for group, identities in SHARED_IDENTITIES.items():
            if host in groups.get(group, ()):
                found.extend(Request(host, name, common_name, dns_names, ip_addresses)
                             for name, common_name in identities)
    name, common_name = CONTROLLER_CERTIFICATE
    found.append(Request("", name, common_name, (common_name,), ()))
    return found


def _write(target: Path, content: bytes, mode: int) -> None:
    if mode == SECRET_MODE:
        write_private(target, content, replace=True)
        return
    make_private_dirs(target.parent)
    descriptor, staged = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.fchmod(descriptor, mode)
    with os.fdopen(descriptor, "wb") as staged_file:
        staged_file.write(content)
    os.replace(staged, target)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: rsa.RSAPrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Authority:
    """The CA of one inventory under ``directory``; ``inventory`` names it in subjects."""

    directory: Path
    inventory: str
    # The CA key's passphrase: its key is encrypted with it at creation and read with it.
    passphrase: bytes | None = None

    @property
    def ca_key_path(self) -> Path:
        return self.directory / "ca" / "ca.key"

    @property
    def ca_cert_path(self) -> Path:
        return self.directory / "ca" / "ca.crt"

    @property
    def bundle_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def truststore_path(self) -> Path:
        return self.directory / "truststore.p12"

    def paths(self, request: Request) -> dict[str, Path]:
        """A certificate's files, by kind (the module's doc)."""
        base = (self.directory / "hosts" / request.host / request.name if request.host
                else self.directory / "clients" / request.name)
        return {kind: base.with_suffix(f".{kind}") for kind in ("key", "crt", "pem", "p12")}

    def exists(self) -> bool:
        return self.ca_key_path.exists() and self.ca_cert_path.exists()

    def init(self) -> bool:
        """Create the CA if there is none; whether it was created. An existing CA is
        kept: replacing it means re-issuing every certificate (docs/security.md)."""
        make_private_dirs(self.directory)
        if self.exists():
            self.load()  # a wrong passphrase or a broken key is said now
            return False
        if self.ca_key_path.exists() or self.ca_cert_path.exists():
            raise PkiError(f"{self.directory / 'ca'} holds half a CA (a key or a "
                           "certificate alone): restore the other, or remove both")
        self._new_ca(self.ca_key_path, self.ca_cert_path)
        return True

    def _new_ca(self, key_path: Path, cert_path: Path) -> x509.Certificate:
        key = rsa.generate_private_key(public_exponent=65537, key_size=CA_KEY_SIZE)
        serial = x509.random_serial_number()
        # The serial in the subject too: during a rotation two CAs of one inventory are
        # trusted side by side, and Java finds a trust anchor by subject.
        subject = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, f"{serial:x}"[:16]),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{ORGANIZATION} {self.inventory} CA")])
        now = _now()
        certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_VALIDITY_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
        _write(key_path, _key_pem(key, self.passphrase), SECRET_MODE)
        _write(cert_path, _pem(certificate), PUBLIC_MODE)
        return certificate

    # Replacing the CA without a moment of mistrust, one rolling restart per step
    # (docs/security.md): `begin` makes the next CA and trusts it beside the current
    # one; `promote` signs with it from then on (the next issue re-issues every
    # certificate) and keeps trusting the old one; `finish` stops trusting the old one.

    @property
    def next_dir(self) -> Path:
        return self.directory / "ca" / "next"

    @property
    def retired_dir(self) -> Path:
        return self.directory / "ca" / "retired"

    def trusted(self) -> list[x509.Certificate]:
        """The CAs the hosts trust: the current one, then the next, then the retired."""
        found = [self.certificate()]
        for path in [self.next_dir / "ca.crt", *sorted(self.retired_dir.glob("*.crt"))]:
            if path.exists():
                found.append(x509.load_pem_x509_certificate(path.read_bytes()))
        return found

    def rotation(self) -> str:
        """Where a CA rotation stands: none, begun or promoted."""
        if (self.next_dir / "ca.crt").exists():
            return "begun"
        return "promoted" if any(self.retired_dir.glob("*.crt")) else "none"

    def begin_rotation(self) -> x509.Certificate:
        self.load()
        if self.rotation() != "none":
            raise PkiError(f"a CA rotation is already {self.rotation()}: finish it first")
        return self._new_ca(self.next_dir / "ca.key", self.next_dir / "ca.crt")

    def promote(self) -> x509.Certificate:
        """The next CA becomes the current one; the old one's key is deleted and its
        certificate kept as trusted until :meth:`finish`."""
        if self.rotation() != "begun":
            raise PkiError("no next CA to promote: begin a rotation first")
        old = self.certificate()
        _write(self.retired_dir / f"{old.serial_number:x}.crt", _pem(old), PUBLIC_MODE)
        # The old key goes with the first move: nothing can sign with it any more.
        os.replace(self.next_dir / "ca.key", self.ca_key_path)
        os.replace(self.next_dir / "ca.crt", self.ca_cert_path)
        self.next_dir.rmdir()
        return self.load()[1]

    def finish(self) -> list[x509.Certificate]:
        """Stop trusting the retired CAs (their certificates move to ca/archive/)."""
        if self.rotation() != "promoted":
            raise PkiError("no retired CA to stop trusting: promote the next CA first")
        archive = self.directory / "ca" / "archive"
        make_private_dirs(archive)
        retired = []
        for path in sorted(self.retired_dir.glob("*.crt")):
            retired.append(x509.load_pem_x509_certificate(path.read_bytes()))
            os.replace(path, archive / path.name)
        self.retired_dir.rmdir()
        return retired

    def certificate(self) -> x509.Certificate:
        """The CA's certificate (no key, no passphrase needed)."""
        if not self.exists():
            raise PkiError(f"no CA in {self.directory} (`evilnet pki init` creates it)")
        return x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())

    def load(self) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
        """The CA's key and certificate."""
        certificate = self.certificate()
        if self.ca_key_path.stat().st_mode & 0o077:
            self.ca_key_path.chmod(SECRET_MODE)
        try:
            key = serialization.load_pem_private_key(self.ca_key_path.read_bytes(),
                                                     password=self.passphrase)
        except TypeError:
            raise PkiError(f"{self.ca_key_path} is encrypted: give its passphrase") from None
        except ValueError:
            raise PkiError(f"cannot read {self.ca_key_path}: wrong passphrase, or not a "
                           "PEM private key") from None
        if certificate.public_key().public_numbers() != key.public_key().public_numbers():
            raise PkiError(f"{self.ca_cert_path} is not the certificate of {self.ca_key_path}")
        return key, certificate

    def why_issue(self, request: Request, ca: x509.Certificate, *, renew_within: int,
                  now: dt.datetime | None = None) -> str | None:
        """Why the request's certificate must be (re-)issued, or None if it is good."""
        files = self.paths(request)
        if not all(path.exists() for path in files.values()):
            return "missing"
        certificate = x509.load_pem_x509_certificate(files["crt"].read_bytes())
        left = certificate.not_valid_after_utc - (now or _now())
        if left < dt.timedelta(days=renew_within):
            return f"expires in {max(left.days, 0)} days (renewed within {renew_within})"
        if _requested_names(certificate) != _request_names(request):
            return "names changed"
        if certificate.subject != self._subject(request):
            return "subject changed"
        try:
            certificate.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError):
            return "signed by another CA"
        key = serialization.load_pem_private_key(files["key"].read_bytes(), password=None)
        if key.public_key().public_numbers() != certificate.public_key().public_numbers():
            return "key does not match"
        return None

    def issue(self, requests: Iterable[Request], *, store_password: str, days: int,
              renew_within: int, force: Iterable[str] = ()) -> dict[tuple[str, str], str]:
        """Issue what is missing, expiring or stale (and, for each host in ``force``,
        everything of that host); the reasons, by (host, certificate name)."""
        if renew_within >= days:
            raise PkiError(f"a certificate valid {days} days would be renewed on every run "
                           f"(renewed within {renew_within} days)")
        ca_key, ca = self.load()
        self._trust(store_password)
        forced = set(force)
        issued = {}
        for request in requests:
            reason = ("forced" if request.host in forced
                      else self.why_issue(request, ca, renew_within=renew_within))
            if reason:
                self._sign(request, ca_key, ca, store_password, days)
                issued[(request.host, request.name)] = reason
            else:
                self._private_modes(request)
        return issued

    def _trust(self, store_password: str) -> None:
        """The trust bundle and the Java truststore, rewritten when the trusted CAs
        changed (a rotation's steps)."""
        trusted = self.trusted()
        bundle = b"".join(_pem(ca) for ca in trusted)
        if not self.bundle_path.exists() or self.bundle_path.read_bytes() != bundle:
            _write(self.bundle_path, bundle, PUBLIC_MODE)
        try:
            stored = pkcs12.load_pkcs12(self.truststore_path.read_bytes(),
                                        store_password.encode())
            current = [entry.certificate for entry in stored.additional_certs] == trusted
        except (FileNotFoundError, ValueError):
            current = False
        if not current:
            store = pkcs12.serialize_java_truststore(
                [pkcs12.PKCS12Certificate(ca, f"evilnet-ca-{index}".encode())
                 for index, ca in enumerate(trusted)],
                serialization.BestAvailableEncryption(store_password.encode()))
            _write(self.truststore_path, store, PUBLIC_MODE)

    def _subject(self, request: Request) -> x509.Name:
        return x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, self.inventory),
            x509.NameAttribute(NameOID.COMMON_NAME, request.common_name)])

    def _sign(self, request: Request, ca_key: rsa.RSAPrivateKey, ca: x509.Certificate,
              store_password: str, days: int) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
        now = _now()
        names = [*(x509.DNSName(name) for name in request.dns_names),
                 *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in request.ip_addresses)]
        builder = (
            x509.CertificateBuilder().subject_name(self._subject(request)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(min(now + dt.timedelta(days=days), ca.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                if request.host else [ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False))
        certificate = builder.sign(ca_key, hashes.SHA256())
        files = self.paths(request)
        key_pem = _key_pem(key)
        _write(files["key"], key_pem, SECRET_MODE)
        _write(files["pem"], key_pem + _pem(certificate) + _pem(ca), SECRET_MODE)
        _write(files["p12"], pkcs12.serialize_key_and_certificates(
            request.name.encode(), key, certificate, [ca],
            serialization.BestAvailableEncryption(store_password.encode())), SECRET_MODE)
        # Last: a certificate without its key and stores is never taken for issued.
        _write(files["crt"], _pem(certificate), PUBLIC_MODE)

    def _private_modes(self, request: Request) -> None:
        for kind in ("key", "pem", "p12"):
            path = self.paths(request)[kind]
            if path.stat().st_mode & 0o777 != SECRET_MODE:
                path.chmod(SECRET_MODE)

    def status(self, requests: Iterable[Request], *, renew_within: int,
               now: dt.datetime | None = None) -> list[dict[str, object]]:
        """Each certificate's state, expiry and names (never a key)."""
        ca = self.certificate()
        rows = []
        for request in requests:
            files = self.paths(request)
            reason = self.why_issue(request, ca, renew_within=renew_within, now=now)
            row: dict[str, object] = {"host": request.host, "name": request.name,
                                      "state": reason or "ok", "not_after": None,
                                      "days_left": None,
                                      "names": list(_request_names(request))}
            if files["crt"].exists():
                certificate = x509.load_pem_x509_certificate(files["crt"].read_bytes())
                row["not_after"] = certificate.not_valid_after_utc.isoformat()
                row["days_left"] = (certificate.not_valid_after_utc - (now or _now())).days
                row["names"] = list(_requested_names(certificate))
            if files["key"].exists() and files["key"].stat().st_mode & 0o777 != SECRET_MODE:
                row["state"] = f"key mode {files['key'].stat().st_mode & 0o777:04o}"
            rows.append(row)
        return rows

    def ca_status(self, now: dt.datetime | None = None) -> dict[str, object]:
        ca = self.certificate()
        return {"subject": ca.subject.rfc4514_string(), "rotation": self.rotation(),
                "trusted": [trusted.subject.rfc4514_string() for trusted in self.trusted()],
                "not_after": ca.not_valid_after_utc.isoformat(),
                "days_left": (ca.not_valid_after_utc - (now or _now())).days,
                "key_encrypted": b"ENCRYPTED" in self.ca_key_path.read_bytes()[:64],
                "key_mode": f"{self.ca_key_path.stat().st_mode & 0o777:04o}"}


def _request_names(request: Request) -> tuple[str, ...]:
    return tuple(sorted([*(f"DNS:{name}" for name in request.dns_names),
                         *(f"IP:{ip}" for ip in request.ip_addresses)]))


def _requested_names(certificate: x509.Certificate) -> tuple[str, ...]:
    try:
        names = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(sorted([*(f"DNS:{name}" for name in names.get_values_for_type(x509.DNSName)),
                         *(f"IP:{ip}" for ip in names.get_values_for_type(x509.IPAddress))]))
