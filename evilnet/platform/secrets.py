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

import contextlib
import os
import string
import tempfile
from dataclasses import dataclass
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
    Secret("spark_auth_secret", "spark/auth.secret",
           "spark.authenticate.secret shared by the master, the workers and the job", 64),
    Secret("prometheus_password", "prometheus/web.password",
           "basic-auth password of Prometheus's web endpoint (Grafana, `evilnet status`)"),
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
