"""How a client logs in to a secured Cassandra: the one home of its roles and settings.

A secured cluster (the cassandra role's ``cassandra_security_enabled``) runs
``PasswordAuthenticator`` and ``CassandraAuthorizer`` and accepts clients over TLS
only (``client_encryption_options``, not optional). Every client, the ``evilnet``
commands, the stream job, the health checks, reads its login from one file: a
cqlshrc (0600, its owner's alone), the file cqlsh itself takes (``--cqlshrc``), with
the role's name and password and the CA bundle that verifies the nodes. The password
lives there and nowhere else: never on a command line or in an environment.
Grafana's datasource gets the reader's password from its own provisioning file
(the grafana role).
"""

from __future__ import annotations

import configparser
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Role:
    """A login role of the cluster and its password's name in the secrets catalog
    (evilnet.platform.secrets)."""

    name: str
    secret: str


# The one home of the cluster's roles: the cassandra role creates them and their
# grants from these (`evilnet schema superuser` and `evilnet schema roles`).
ADMIN = Role("evilnet_admin", "cassandra_admin_password")  # superuser: roles, schema
STREAM_JOB = Role("evilnet_stream_job", "cassandra_stream_job_password")  # writes its tables
READER = Role("evilnet_reader", "cassandra_reader_password")  # Grafana, `evilnet query`
ROLES: tuple[Role, ...] = (ADMIN, STREAM_JOB, READER)
# What each role but the superuser may do on the pipeline's keyspace (its tables),
# and nothing else: no CREATE, ALTER, DROP or AUTHORIZE, no other keyspace.
KEYSPACE_PERMISSIONS: dict[Role, frozenset[str]] = {
    STREAM_JOB: frozenset({"SELECT", "MODIFY"}),
    READER: frozenset({"SELECT"}),
}
# The superuser a new cluster starts with (PasswordAuthenticator's default login):
# replaced by ADMIN, then kept unable to log in.
DEFAULT_SUPERUSER = "cassandra"
DEFAULT_SUPERUSER_PASSWORD = "cassandra"  # Cassandra's published default


class LoginFileError(ValueError):
    """A login file cannot be used (its message never quotes a password)."""


@dataclass(frozen=True)
class CassandraSecurity:
    """How a client logs in: its role and password, and the CA bundle (PEM) it
    verifies the nodes' certificates with (their names: host names are checked)."""

    username: str
    password: str = field(repr=False)
    cafile: str

    def ssl_context(self) -> ssl.SSLContext:
        # check_hostname: cassandra-driver then names each node's address to the
        # handshake, which the node's certificate must carry (the pki role's SANs).
        context = ssl.create_default_context(cafile=self.cafile)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def driver_kwargs(self) -> dict[str, Any]:
        """cassandra-driver's ``Cluster`` settings: TLS and the role's login."""
        from cassandra.auth import PlainTextAuthProvider

        return {"ssl_context": self.ssl_context(),
                "auth_provider": PlainTextAuthProvider(self.username, self.password)}

    def as_role(self, role: Role | str, password: str) -> CassandraSecurity:
        """Another role's login with the same CA bundle."""
        return CassandraSecurity(role.name if isinstance(role, Role) else role, password,
                                 self.cafile)

    def cqlshrc_text(self) -> str:
        """The login file's text (write it 0600: it holds the password). cqlsh reads
        it too (``cqlsh --cqlshrc FILE HOST``)."""
        return (f"[authentication]\nusername = {self.username}\npassword = {self.password}\n\n"
                f"[connection]\nssl = true\n\n[ssl]\ncertfile = {self.cafile}\nvalidate = true\n")

    @classmethod
    def from_cqlshrc(cls, path: Path) -> CassandraSecurity:
        """Read a login file (the cassandra role's, or a cqlshrc written by hand):
        ``[authentication]`` username and password, ``[ssl]`` certfile, validation on."""
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with path.open() as text:
                parser.read_file(text)
        except OSError as error:
            raise LoginFileError(f"cannot read {path}: {error.strerror}") from None
        except configparser.Error:
            raise LoginFileError(f"{path} is not a cqlshrc file") from None

        def need(section: str, key: str) -> str:
            value = parser.get(section, key, fallback="").strip()
            if not value:
                raise LoginFileError(f"{path}: [{section}] {key} must be set")
            return value

        username, password = need("authentication", "username"), need("authentication", "password")
        if parser.get("ssl", "validate", fallback="true").strip().lower() in ("false", "0", "no"):
            raise LoginFileError(f"{path}: [ssl] validate must stay true (the nodes' "
                                 "certificates are checked)")
        cafile = Path(need("ssl", "certfile")).expanduser()
        if not cafile.is_absolute():
            cafile = path.parent / cafile
        return cls(username, password, str(cafile))


def driver_kwargs(security: CassandraSecurity | None) -> dict[str, Any]:
    """cassandra-driver's security settings; none for a plaintext cluster."""
    return security.driver_kwargs() if security else {}


def login_from_file(path: Path | None) -> CassandraSecurity | None:
    return CassandraSecurity.from_cqlshrc(path) if path else None
