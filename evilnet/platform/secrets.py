"""The pipeline's secrets: one catalog of their names, and the 0600 files that hold them.

Every password, SCRAM credential and shared secret the services use is named here,
once. An inventory says where its values live (``evilnet_secrets_source``):

- ``files`` (inventories/local, inventories/cluster): one file per secret under the
  inventory's ``evilnet_secrets_dir`` on the controller, generated at random the
  first time it is asked for and kept from then on (0600, in 0700 directories);
- ``vault`` (production): the Ansible Vault variable ``vault_evilnet_<name>`` of each
  secret, in the inventory's vault file (docs/security.md lists them).

Ansible reads them with ``lookup('evilnet_secret', NAME)``
(``ansible/plugins/lookup/evilnet_secret.py``), the command line with :func:`read`:
neither ever prints a value, and nothing here logs one.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import string
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from secrets import choice

SOURCES = ("files", "vault")
# Letters and digits only: safe unquoted in JAAS files, properties, YAML, CQL and URLs.
ALPHABET = string.ascii_letters + string.digits
SECRET_MODE = 0o600
DIRECTORY_MODE = 0o700


class SecretError(RuntimeError):
    """A secret cannot be read or stored."""


@dataclass(frozen=True)
class Secret:
    """One secret: ``name`` is how Ansible and the code ask for it."""

    name: str
    # Its file under the inventory's secrets directory (source `files`).
    file: str
    # Who uses it, for the docs and `evilnet secrets status`.
    purpose: str
    # Characters of a generated value: 32 of 62 symbols is 190 bits.
    length: int = 32

    @property
    def vault_variable(self) -> str:
        """Its Ansible Vault variable (source `vault`)."""
        return f"vault_evilnet_{self.name}"


SECRETS: tuple[Secret, ...] = (
    Secret("kafka_admin_password", "kafka/admin.password",
           "SCRAM-SHA-512 password of Kafka's admin principal: topics and ACLs "
           "(kafka role, `evilnet topics`)"),
    Secret("kafka_broker_password", "kafka/broker.password",
           "SCRAM-SHA-512 password the brokers use between themselves"),
    Secret("kafka_producer_password", "kafka/producer.password",
           "SCRAM-SHA-512 password of the producers' principal (write tweets and the "
           "dead-letter topic)"),
    Secret("kafka_stream_job_password", "kafka/stream-job.password",
           "SCRAM-SHA-512 password of the stream job's principal (read tweets with its "
           "consumer group)"),
    Secret("cassandra_admin_password", "cassandra/admin.password",
           "Cassandra superuser that replaces `cassandra`: roles and the schema"),
    Secret("cassandra_stream_job_password", "cassandra/stream-job.password",
           "Cassandra role of the stream job (writes its tables)"),
    Secret("cassandra_reader_password", "cassandra/reader.password",
           "Cassandra read-only role of Grafana and `evilnet query`"),
    Secret("cassandra_jmx_password", "cassandra/jmx.password",
           "JMX login of each Cassandra node (nodetool on the node, from its 0600 "
           "password file)"),
    Secret("spark_auth_secret", "spark/auth.secret",
           "spark.authenticate.secret shared by the master, the workers and the job", 64),
    Secret("prometheus_password", "prometheus/web.password",
           "basic-auth password of Prometheus's web endpoint (Grafana, `evilnet status`)"),
    Secret("prometheus_scrape_password", "prometheus/scrape.password",
           "basic-auth password Prometheus scrapes the exporters with (JMX agents, "
           "producers, stream job, footprint: evilnet.metrics_endpoint)"),
    Secret("pki_store_password", "pki/store.password",
           "password of the PKCS12 keystores and truststores (`evilnet pki`)"),
)
BY_NAME = {secret.name: secret for secret in SECRETS}


def secret(name: str) -> Secret:
    try:
        return BY_NAME[name]
    except KeyError:
        raise SecretError(f"{name}: no such secret (evilnet/platform/secrets.py names "
                          f"{', '.join(sorted(BY_NAME))})") from None


def generate(length: int) -> str:
    return "".join(choice(ALPHABET) for _ in range(length))


def path(directory: Path, name: str) -> Path:
    return directory / secret(name).file


def read(directory: Path, name: str) -> str:
    """The value of a secret of source `files` (it must exist: see :func:`ensure`)."""
    try:
        return path(directory, name).read_text().strip()
    except FileNotFoundError:
        raise SecretError(f"{name}: {path(directory, name)} does not exist "
                          f"(`evilnet secrets init` generates it)") from None


def make_private_dirs(directory: Path) -> None:
    """``directory`` and every missing parent, each its owner's alone (mkdir's mode
    applies to the last one only)."""
    missing = [directory, *directory.parents]
    for parent in reversed(missing[:next(i for i, p in enumerate(missing) if p.exists())]):
        parent.mkdir(mode=DIRECTORY_MODE, exist_ok=True)


def write_private(target: Path, content: bytes, *, replace: bool) -> bool:
    """Write ``content`` into ``target`` readable by its owner only: never a moment
    with other permissions (written to a 0600 file beside it, then moved or linked).
    With ``replace`` false an existing file is kept, even against a concurrent
    writer (the link fails if the name exists). Whether ``target`` was written."""
    make_private_dirs(target.parent)
    descriptor, staged = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        os.fchmod(descriptor, SECRET_MODE)
        with os.fdopen(descriptor, "wb") as staged_file:
            staged_file.write(content)
            staged_file.flush()
            os.fsync(staged_file.fileno())
        if replace:
            os.replace(staged, target)
            return True
        try:
            os.link(staged, target)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)


def ensure(directory: Path, name: str) -> bool:
    """Generate the secret's file if it does not exist; whether it was generated.
    An existing value is never replaced: a secret is generated once per inventory."""
    wanted = secret(name)
    target = directory / wanted.file
    if target.exists():
        _make_private(target)
        return False
    return write_private(target, (generate(wanted.length) + "\n").encode(), replace=False)


def _make_private(target: Path) -> None:
    if target.stat().st_mode & 0o777 != SECRET_MODE:
        target.chmod(SECRET_MODE)


def ensure_all(directory: Path) -> list[str]:
    """Every secret of the catalog present; the names generated now."""
    return [item.name for item in SECRETS if ensure(directory, item.name)]


def status(directory: Path) -> list[dict[str, object]]:
    """Each secret's file, whether it exists and its mode: never its value."""
    rows = []
    for item in SECRETS:
        target = directory / item.file
        mode = target.stat().st_mode & 0o777 if target.exists() else None
        rows.append({"name": item.name, "file": str(target), "exists": mode is not None,
                     "mode": f"{mode:04o}" if mode is not None else None,
                     "private": mode == SECRET_MODE, "purpose": item.purpose})
    return rows


# --- finding them where they must not be ------------------------------------------

# Where a secret may be written: a file its owner alone can read, outside any log.
LOG_DIRECTORIES = {"log", "logs"}
LOG_SUFFIXES = {".log", ".out", ".err"}
PRIVATE_KEY_MARK = b"PRIVATE KEY-----"
# A PEM private key's header (PKCS#8, RSA, EC, OpenSSH, encrypted): a pattern this
# very file does not match, so that its copies in the hosts' venvs are no finding.
PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
# Shorter values could match by chance; every generated one is 32 characters or more.
SHORTEST_VALUE = 16


# Compressed files: a value written into one is not there as bytes, so reading them
# proves nothing (the staged artifacts under a host's dist/, the venvs' wheels, jars).
COMPRESSED_SUFFIXES = frozenset({".gz", ".tgz", ".xz", ".bz2", ".zst", ".zip", ".whl",
                                 ".jar"})


@dataclass(frozen=True)
class Finding:
    """A secret seen where it must not be: never its value, only which one."""

    where: str
    # The secret's file relative to the secrets directory, or "a private key"; for a
    # value found encoded, followed by the encoding: "kafka/admin.password (base64)".
    secret: str
    why: str
    # The environment variable that holds it (an environment's finding).
    variable: str | None = None


def known_values(directory: Path) -> dict[str, bytes]:
    """Every value under a secrets directory (the catalog's files, the X API tokens),
    by its file relative to the directory."""
    values = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            value = path.read_bytes().strip()
            if len(value) >= SHORTEST_VALUE:
                values[str(path.relative_to(directory))] = value
    return values


def encoded_forms(values: dict[str, bytes]) -> dict[str, bytes]:
    """``values`` and the forms each takes when written encoded, by ``<name>
    (<form>)``: base64 and URL-safe base64 (an HTTP Basic header, a Kubernetes-style
    secret, a JSON blob), and URL-encoded (a query string, a DSN).

    Base64 encodes three bytes at a time, so a value inside a longer encoded string
    (``base64("user:" + password)``) takes one of three shapes, by its offset modulo
    3: each form is the run of characters that the value alone determines at that
    offset, which every encoding of a string holding the value contains. Forms equal
    to the value (a URL-encoded value of letters and digits) are left out."""
    forms = dict(values)
    for name, value in values.items():
        found = {value}
        for offset in range(3):
            encoded = base64.b64encode(b"\0" * offset + value)
            # Characters entirely within the value's bits: 6-bit groups from the first
            # one after the offset's 8 * offset bits to the last one before its end.
            core = encoded[-(-8 * offset // 6):8 * (offset + len(value)) // 6]
            for form, text in ((f"base64 at offset {offset}", core),
                               (f"url-safe base64 at offset {offset}",
                                core.translate(bytes.maketrans(b"+/", b"-_")))):
                if len(text) >= SHORTEST_VALUE and text not in found:
                    found.add(text)
                    forms[f"{name} ({form})"] = text
        for form, text in (("url-encoded", urllib.parse.quote_from_bytes(value, safe="")),
                           ("form-encoded", urllib.parse.quote_plus(value, safe=""))):
            if text.encode() not in found:
                found.add(text.encode())
                forms[f"{name} ({form})"] = text.encode()
    return forms


def _is_log(path: Path) -> bool:
    return path.suffix in LOG_SUFFIXES or bool(LOG_DIRECTORIES & set(path.parts[:-1]))


def is_private(path: Path) -> bool:
    """Whether only the file's owner (and root) may read it: mode 0600 or stricter."""
    return not path.stat().st_mode & 0o077


@dataclass
class FileScan:
    """What a scan of files found, and what it read."""

    findings: list[Finding] = field(default_factory=list)
    # The files that hold a secret and may: private, no log, not the plan.
    private: list[Finding] = field(default_factory=list)
    # How many files were read whole.
    read: int = 0
    too_large: list[Path] = field(default_factory=list)
    compressed: list[Path] = field(default_factory=list)


def scan_tree(roots: list[Path], values: dict[str, bytes], *, skip: tuple[Path, ...] = (),
              strict: tuple[Path, ...] = (), max_bytes: int = 64 << 20) -> FileScan:
    """Files under ``roots`` that hold a secret (or a private key) and are logs or
    readable by anyone but their owner, or lie under a ``strict`` path (the plan,
    which Jenkins archives: no secret belongs there whatever its mode). A file under
    several roots is read once."""
    scan = FileScan()
    skipped = tuple(path.resolve() for path in skip)
    strict_places = tuple(path.resolve() for path in strict)
    seen_files: set[Path] = set()
    for root in roots:
        for path in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if not path.is_file() or path.is_symlink():
                continue
            resolved = path.resolve()
            if resolved in seen_files or any(resolved.is_relative_to(p) for p in skipped):
                continue
            seen_files.add(resolved)
            if path.suffix in COMPRESSED_SUFFIXES:
                scan.compressed.append(path)
                continue
            if path.stat().st_size > max_bytes:
                scan.too_large.append(path)
                continue
            try:
                content = path.read_bytes()
            except OSError:
                continue
            scan.read += 1
            held = [label for label, value in values.items() if value in content]
            if PRIVATE_KEY_MARK in content and PRIVATE_KEY.search(content):
                held.append("a private key")
            if not held:
                continue
            why = ("a log" if _is_log(path)
                   else "the plan" if any(resolved.is_relative_to(p) for p in strict_places)
                   else "readable by others" if not is_private(path) else None)
            (scan.findings if why else scan.private).extend(
                Finding(str(path), label, why or "private") for label in held)
    return scan


def scan_files(roots: list[Path], values: dict[str, bytes], *, skip: tuple[Path, ...] = (),
               max_bytes: int = 64 << 20) -> tuple[list[Finding], list[Path]]:
    """Files under ``roots`` that hold a secret (or a private key) and are logs or
    readable by anyone but their owner; and the files too large to read."""
    scan = scan_tree(roots, values, skip=skip, max_bytes=max_bytes)
    return scan.findings, scan.too_large


def scan_processes(values: dict[str, bytes], *, proc: Path = Path("/proc")) -> list[Finding]:
    """Processes whose command line or environment holds a secret (other users read a
    command line always, an environment through `ps e` of their own processes); an
    environment's finding names the variable."""
    findings = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            name = (entry / "comm").read_text().strip()
            command_line = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone
        try:
            environment = (entry / "environ").read_bytes()
        except OSError:
            environment = b""  # another user's: not ours to read
        findings.extend(Finding(f"pid {entry.name} ({name}) cmdline", label, "a command line")
                        for label, value in values.items() if value in command_line)
        for variable in environment.split(b"\0"):
            key, _, setting = variable.partition(b"=")
            findings.extend(
                Finding(f"pid {entry.name} ({name}) environ {key.decode(errors='replace')}",
                        label, "an environment", key.decode(errors="replace"))
                for label, value in values.items() if value in setting)
    return findings
