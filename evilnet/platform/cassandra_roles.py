"""A secured Cassandra's superuser, roles and grants, kept as evilnet/cassandra_clients.py
says (docs/security.md, "Cassandra").

Two steps, each idempotent and safe to run again after a failure at any point:

1. :func:`ensure_superuser`, once per cluster, after every node started: ``system_auth``
   is replicated like the pipeline's keyspace (NetworkTopologyStrategy), then our
   superuser (ADMIN) replaces the default ``cassandra`` one, which gets a random
   password and can no longer log in. Before ADMIN exists it logs in as ``cassandra``;
   afterwards as ADMIN, and it changes nothing.
2. :func:`ensure_roles`, as ADMIN, after the schema: the job's and the reader's roles
   with their passwords, and exactly their grants on the keyspace (what is missing is
   granted, anything else on it or wider taken back). Grants on another keyspace or
   its tables (a test's, a benchmark's, given by whoever made it) are left alone:
   they reach no pipeline data, and taking them back would break that keyspace's
   user in the middle of its work.

Role statements take no bind markers: a password is written into the statement's text,
sent over TLS, and never logged (the passwords are letters and digits, quoted anyway).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from evilnet.cassandra_clients import (
    DEFAULT_SUPERUSER,
    DEFAULT_SUPERUSER_PASSWORD,
    KEYSPACE_PERMISSIONS,
    CassandraSecurity,
    Role,
)
from evilnet.platform import secrets

AUTH_KEYSPACE = "system_auth"


class RolesError(RuntimeError):
    """The roles cannot be made as evilnet/cassandra_clients.py says."""


@dataclass(frozen=True)
class Session:
    """A driver session and the cluster it belongs to, shut down together."""

    cluster: object
    session: object

    def execute(self, statement: str, parameters: Sequence | None = None):
        return self.session.execute(statement, parameters)

    def close(self) -> None:
        self.cluster.shutdown()


# Cassandra 5.0 lets a role's password change once per 5 s (seen: "Password for role
# X can only be changed every 5000ms", an Overloaded error): a run resumed right after
# another waits that long once, then tries again.
PASSWORD_CHANGE_INTERVAL = 5.5


def _change_password(session: Session, statement: str) -> None:
    """An ALTER ROLE ... WITH PASSWORD, retried once after Cassandra's interval. The
    driver reports the refusal as no host available, the node's reason inside."""
    try:
        session.execute(statement)
    except Exception as error:
        if "can only be changed every" not in str(error):
            raise
        time.sleep(PASSWORD_CHANGE_INTERVAL)
        session.execute(statement)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _connect(hosts: Sequence[str], port: int, security: CassandraSecurity) -> Session:
    from evilnet.spark.store import connect

    cluster, session = connect(hosts, port, connect_timeout=10, security=security)
    return Session(cluster, session)


def _refused_login(error: BaseException) -> bool:
    from cassandra import AuthenticationFailed
    from cassandra.cluster import NoHostAvailable

    return (isinstance(error, NoHostAvailable) and bool(error.errors)
            and all(isinstance(e, AuthenticationFailed) for e in error.errors.values()))


def can_log_in(hosts: Sequence[str], port: int, security: CassandraSecurity) -> bool:
    """Whether the cluster lets ``security``'s role in (a refused login is False;
    an unreachable cluster raises)."""
    try:
        _connect(hosts, port, security).close()
    except Exception as error:
        if _refused_login(error):
            return False
        raise
    return True


def _replication(session: Session, keyspace: str) -> dict[str, str]:
    row = session.execute("SELECT replication FROM system_schema.keyspaces "
                          "WHERE keyspace_name = %s", (keyspace,)).one()
    return dict(row.replication) if row else {}


def _ensure_auth_replication(session: Session, datacenter: str,
                             replication_factor: int) -> list[str]:
    wanted = {"class": "org.apache.cassandra.locator.NetworkTopologyStrategy",
              datacenter: str(replication_factor)}
    if _replication(session, AUTH_KEYSPACE) == wanted:
        return []
    session.execute(f"ALTER KEYSPACE {AUTH_KEYSPACE} WITH replication = "
                    f"{{'class': 'NetworkTopologyStrategy', {_quote(datacenter)}: "
                    f"{int(replication_factor)}}}")
    return [f"{AUTH_KEYSPACE} replicated {replication_factor} in {datacenter}"]


def _role(session: Session, name: str):
    return session.execute("SELECT role, can_login, is_superuser FROM system_auth.roles "
                           "WHERE role = %s", (name,)).one()


def _first_login(hosts: Sequence[str], port: int, logins: Sequence[CassandraSecurity],
                 wait: float) -> tuple[CassandraSecurity, Session]:
    """A session as the first of ``logins`` the cluster lets in, trying for ``wait``
    seconds: a new node makes its default superuser some seconds after it serves CQL
    (CassandraRoleManager's setup delay)."""
    deadline = time.monotonic() + wait
    while True:
        for login in logins:
            try:
                return login, _connect(hosts, port, login)
            except Exception as error:
                if not _refused_login(error):
                    raise
        if time.monotonic() >= deadline:
            raise RolesError(f"none of {', '.join(login.username for login in logins)} can "
                             f"log in: is {logins[0].username}'s password the one the "
                             "cluster knows?")
        time.sleep(2)


def ensure_superuser(hosts: Sequence[str], port: int, admin: CassandraSecurity,
                     datacenter: str, replication_factor: int, wait: float = 0) -> list[str]:
    """Step 1 (module docstring): ``system_auth``'s replication, ADMIN a superuser
    with its password, ``cassandra`` unable to log in. The changes made, one line each
    (no password in any)."""
    changes: list[str] = []
    created = False
    default = admin.as_role(DEFAULT_SUPERUSER, DEFAULT_SUPERUSER_PASSWORD)
    login, session = _first_login(hosts, port, (admin, default), wait)
    if login is default:
        try:
            # Replicated before any role is written, so that no role lives on one node.
            changes += _ensure_auth_replication(session, datacenter, replication_factor)
            created = True
            existed = _role(session, admin.username) is not None
            verb = "ALTER" if existed else "CREATE"
            _change_password(session, f"{verb} ROLE {admin.username} WITH PASSWORD = "
                            f"{_quote(admin.password)} AND SUPERUSER = true AND LOGIN = true")
            changes.append(f"{'password of' if existed else 'created'} superuser "
                           f"{admin.username}")
        finally:
            session.close()
        session = _connect(hosts, port, admin)
    try:
        changes += _ensure_auth_replication(session, datacenter, replication_factor)
        found = _role(session, DEFAULT_SUPERUSER)
        # Just replaced: disabled whatever this read finds, as the freshly
        # re-replicated system_auth's one old replica may not be among those it asks.
        if created or (found is not None and (found.can_login or found.is_superuser)):
            # A random password too: should LOGIN ever be turned on again by hand, the
            # published default does not let anyone in.
            _change_password(session, f"ALTER ROLE {DEFAULT_SUPERUSER} WITH PASSWORD = "
                            f"{_quote(secrets.generate(32))} AND SUPERUSER = false "
                            "AND LOGIN = false")
            changes.append(f"{DEFAULT_SUPERUSER} can no longer log in")
    finally:
        session.close()
    return changes


def _permissions(session: Session, role: str) -> set[tuple[str, str]]:
    """(resource, permission) granted to ``role`` itself (NORECURSIVE)."""
    return {(row.resource, row.permission) for row in
            session.execute(f"LIST ALL PERMISSIONS OF {role} NORECURSIVE")}


def ensure_roles(hosts: Sequence[str], port: int, admin: CassandraSecurity, keyspace: str,
                 logins: Mapping[Role, CassandraSecurity]) -> list[str]:
    """Step 2 (module docstring): each of ``logins``' roles exists, logs in with its
    password, is no superuser, and has exactly KEYSPACE_PERMISSIONS on ``keyspace``.
    The changes made, one line each (no password in any)."""
    unknown = sorted(role.name for role in logins if role not in KEYSPACE_PERMISSIONS)
    if unknown:
        raise RolesError(f"no permissions are defined for {', '.join(unknown)} "
                         "(evilnet/cassandra_clients.py)")
    changes: list[str] = []
    session = _connect(hosts, port, admin)
    try:
        if not _replication(session, keyspace):
            raise RolesError(f"keyspace {keyspace} does not exist (`evilnet schema apply` "
                             "creates it)")
        for role, login in logins.items():
            found = _role(session, role.name)
            if found is None:
                session.execute(f"CREATE ROLE {role.name} WITH PASSWORD = "
                                f"{_quote(login.password)} AND LOGIN = true")
                changes.append(f"created role {role.name}")
            elif found.is_superuser or not found.can_login:
                _change_password(session, f"ALTER ROLE {role.name} WITH PASSWORD = "
                                f"{_quote(login.password)} AND SUPERUSER = false "
                                "AND LOGIN = true")
                changes.append(f"role {role.name}: login, no superuser")
            elif not can_log_in(hosts, port, login):
                _change_password(session, f"ALTER ROLE {role.name} WITH PASSWORD = "
                                f"{_quote(login.password)}")
                changes.append(f"password of role {role.name}")
            resource = f"<keyspace {keyspace}>"
            wanted = {(resource, permission) for permission in KEYSPACE_PERMISSIONS[role]}
            granted = _permissions(session, role.name)
            for _, permission in sorted(wanted - granted):
                session.execute(f"GRANT {permission} ON KEYSPACE {keyspace} TO {role.name}")
                changes.append(f"granted {permission} on {keyspace} to {role.name}")
            for held_on, permission in sorted(granted - wanted):
                if _on_another_keyspace(held_on, keyspace):
                    continue
                session.execute(f"REVOKE {permission} ON {_resource_cql(held_on)} "
                                f"FROM {role.name}")
                changes.append(f"revoked {permission} on {held_on} from {role.name}")
    finally:
        session.close()
    return changes


def _on_another_keyspace(resource: str, keyspace: str) -> bool:
    """Whether LIST PERMISSIONS' ``resource`` is another keyspace or one of its tables."""
    named = re.fullmatch(r"<(?:keyspace (\w+)|table (\w+)\.\w+)>", resource)
    return named is not None and (named[1] or named[2]) != keyspace


def _resource_cql(resource: str) -> str:
    """LIST PERMISSIONS' resource name (``<keyspace ks>``, ``<table ks.t>``, ``<all
    keyspaces>``, ``<role r>``, ``<all roles>``...) as GRANT and REVOKE name it."""
    inner = resource.strip("<>")
    kind, _, name = inner.partition(" ")
    if inner in ("all keyspaces", "all roles", "all functions", "all mbeans"):
        return inner.upper()
    if kind in ("keyspace", "table", "role", "mbean", "mbeans"):
        return f"{kind.upper()} {name}"
    raise RolesError(f"cannot take back a grant on {resource}: revoke it by hand")

