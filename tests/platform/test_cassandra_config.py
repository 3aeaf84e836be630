"""The cassandra role's secured configuration as ansible-playbook renders it on a small
local-connection site (tests/platform/pki_site.py), and the login every Cassandra
client reads. No service runs here: what the node does with these files is
tests/platform/test_cassandra_security.py's part.

Users rely on: a secured node runs PasswordAuthenticator and CassandraAuthorizer, takes
clients over TLS only and its peers over mutual TLS, with its own key and the
inventory's CA; the admin's login file is the service account's alone and holds what
a client needs; a plaintext inventory gets the old settings back; a login file that
would skip the nodes' certificates or lacks a password is refused; the job and the
reader get no more than their tables.
"""

from __future__ import annotations

import re
import ssl
import stat
from pathlib import Path

import pytest
import yaml
from pki_site import REPO_ROOT, write_inventory

from evilnet.cassandra_clients import (
    ADMIN,
    KEYSPACE_PERMISSIONS,
    READER,
    ROLES,
    STREAM_JOB,
    CassandraSecurity,
    LoginFileError,
)
from evilnet.platform import secrets
from evilnet.platform.playbook import run_playbook

GROUP_VARS = REPO_ROOT / "ansible" / "playbooks" / "group_vars" / "all"
NODE, ADDRESS = "cass1", "127.0.2.21"  # never contacted


def _render(root: Path, **settings: object) -> Path:
    """Run the role's certificate and configure steps on the site; its hosts' roots."""
    staged = {"cassandra_archive": {"name": "cassandra", "path": "/nonexistent/c.tar.gz",
                                    "sha256": "0" * 64, "version": "0"}}
    inventory = write_inventory(root, {"cassandra": {NODE: ADDRESS}},
                                evilnet_java_home="/nonexistent/java", **staged, **settings)
    playbook = root / "render.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Render cassandra", "hosts": "cassandra", "gather_facts": False,
        "tasks": [{"name": "Make the configuration and tools' directories",
                   "ansible.builtin.file": {"path": "{{ evilnet_root }}/{{ item }}",
                                            "state": "directory", "mode": "0755"},
                   "loop": ["etc/cassandra", "bin"]},
                  {"name": "cassandra security", "ansible.builtin.include_role": {
                      "name": "cassandra", "tasks_from": "security"},
                   # As tasks/main.yml imports it (the role's default: true).
                   "when": "cassandra_security_enabled | default(true) | bool"},
                  {"name": "cassandra configure", "ansible.builtin.include_role": {
                      "name": "cassandra", "tasks_from": "configure"}}]}]))
    run = run_playbook(playbook, inventory, project_dir=REPO_ROOT, timeout=600,
                       extra_args=[f"-e@{GROUP_VARS / 'contracts.yml'}",
                                   f"-e@{GROUP_VARS / 'conventions.yml'}"])
    assert run.returncode == 0, run.output[-3000:]
    return root / "hosts" / NODE / "etc" / "cassandra"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _render(tmp_path_factory.mktemp("secured"))


def _config(conf_dir: Path) -> dict:
    return yaml.safe_load((conf_dir / "cassandra.yaml").read_text())


def test_a_secured_node_authenticates_and_authorizes_every_client(secured: Path) -> None:
    config = _config(secured)
    assert config["authenticator"] == "PasswordAuthenticator"
    assert config["authorizer"] == "CassandraAuthorizer"
    assert config["role_manager"] == "CassandraRoleManager"


def _pem_factory(options: dict, pki_dir: Path) -> None:
    assert options["ssl_context_factory"]["class_name"] == (
        "org.apache.cassandra.security.PEMBasedSslContextFactory")
    keystore = Path(options["keystore"]).resolve()
    assert keystore == pki_dir / "host.pem"
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in keystore.read_bytes()
    assert Path(options["truststore"]).read_bytes().startswith(b"-----BEGIN CERT")


def test_clients_come_in_over_tls_only(secured: Path) -> None:
    options = _config(secured)["client_encryption_options"]
    assert options["enabled"] is True
    assert options["optional"] is False  # a plaintext client is refused
    _pem_factory(options, (secured / "tls").resolve())


def test_nodes_talk_over_mutual_tls(secured: Path) -> None:
    options = _config(secured)["server_encryption_options"]
    assert options["internode_encryption"] == "all"
    assert options["require_client_auth"] is True  # a peer without our CA's certificate is refused
    assert options["optional"] is False
    assert Path(options["outbound_keystore"]).resolve() == (secured / "tls" / "host.pem").resolve()
    _pem_factory(options, (secured / "tls").resolve())


def test_the_admins_login_file_is_its_owners_alone_and_complete(secured: Path) -> None:
    login_file = secured / "logins" / f"{ADMIN.name}.cqlshrc"
    assert stat.S_IMODE(login_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(login_file.parent.stat().st_mode) == 0o700
    login = CassandraSecurity.from_cqlshrc(login_file)
    password = secrets.read(secured.parents[3] / "state" / "secrets", ADMIN.secret)
    assert (login.username, login.password) == (ADMIN.name, password)
    assert Path(login.cafile).resolve() == (secured / "tls" / "ca.crt").resolve()
    # No other rendered file holds it, whatever its mode.
    others = [path for path in secured.rglob("*") if path.is_file() and path != login_file
              and password.encode() in path.read_bytes()]
    assert others == []


def _options(conf_dir: Path, name: str) -> list[str]:
    """A Java argument file's options (comments and blank lines dropped)."""
    return [line.strip() for line in (conf_dir / name).read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


JMX_EXPORT = "--add-exports java.management/com.sun.jmx.remote.security=ALL-UNNAMED"


def test_a_secured_nodes_jmx_asks_for_the_password_files_login(secured: Path) -> None:
    password_file = secured / "logins" / "jmxremote.password"
    access_file = secured / "jmxremote.access"
    options = _options(secured, "jvm-server.options")
    assert "-Dcom.sun.management.jmxremote.authenticate=true" in options
    assert "-Dcom.sun.management.jmxremote.authenticate=false" not in options
    named = {option.split("=", 1)[0]: Path(option.split("=", 1)[1]).resolve()
             for option in options if option.startswith("-Dcom.sun.management.jmxremote.")
             and option.split("=", 1)[0].endswith("file")}
    assert named == {"-Dcom.sun.management.jmxremote.password.file": password_file.resolve(),
                     "-Dcom.sun.management.jmxremote.access.file": access_file.resolve()}
    # Without the export, 5.0.7 does not start on Java 17 (IllegalAccessException on
    # the JVM's JMXPluggableAuthenticator, seen on a live node).
    assert JMX_EXPORT in _options(secured, "jvm17-server.options")
    password = secrets.read(secured.parents[3] / "state" / "secrets", "cassandra_jmx_password")
    assert password_file.read_text() == f"evilnet_jmx {password}\n"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert access_file.read_text() == "evilnet_jmx readwrite\n"
    assert password.encode() not in access_file.read_bytes()


def test_nodetool_logs_in_from_the_jmx_password_file(secured: Path) -> None:
    nodetool = (secured.parents[1] / "bin" / "nodetool").read_text()
    (user, password_file), = re.findall(r"-u (\S+) -pwf (\S+)", nodetool)
    # The JVM's password file: nodetool reads the password from it, never an argument.
    assert (user, Path(password_file).resolve()) == (
        "evilnet_jmx", (secured / "logins" / "jmxremote.password").resolve())
    password = secrets.read(secured.parents[3] / "state" / "secrets", "cassandra_jmx_password")
    assert password not in nodetool


def test_a_plaintext_inventory_gets_the_plaintext_settings(tmp_path: Path) -> None:
    conf_dir = _render(tmp_path, cassandra_security_enabled=False)
    config = _config(conf_dir)
    assert config["authenticator"] == "AllowAllAuthenticator"
    assert config["authorizer"] == "AllowAllAuthorizer"
    assert "client_encryption_options" not in config
    assert "server_encryption_options" not in config
    assert not (conf_dir / "logins").exists()
    assert "-Dcom.sun.management.jmxremote.authenticate=false" in _options(
        conf_dir, "jvm-server.options")
    assert not (conf_dir / "jmxremote.access").exists()
    assert "-pwf" not in (conf_dir.parents[1] / "bin" / "nodetool").read_text()


# --- The clients' login ----------------------------------------------------------------


def test_a_login_survives_its_own_file(tmp_path: Path) -> None:
    login = CassandraSecurity(READER.name, "s3cret'with quote", "/etc/evilnet/ca.crt")
    login_file = tmp_path / "reader.cqlshrc"
    login_file.write_text(login.cqlshrc_text())
    assert CassandraSecurity.from_cqlshrc(login_file) == login
    assert "s3cret" not in repr(login)  # never printed


def test_a_relative_ca_bundle_is_relative_to_the_login_file(tmp_path: Path) -> None:
    login_file = tmp_path / "job.cqlshrc"
    login_file.write_text("[authentication]\nusername = evilnet_stream_job\npassword = pw\n"
                          "[ssl]\ncertfile = tls/ca.crt\n")
    assert CassandraSecurity.from_cqlshrc(login_file).cafile == str(tmp_path / "tls" / "ca.crt")


@pytest.mark.parametrize(("text", "wrong"), [
    ("[authentication]\nusername = r\n[ssl]\ncertfile = /ca.crt\n", "password"),
    ("[authentication]\npassword = s3cret\n[ssl]\ncertfile = /ca.crt\n", "username"),
    ("[authentication]\nusername = r\npassword = s3cret\n", "certfile"),
    ("[authentication]\nusername = r\npassword = s3cret\n[ssl]\ncertfile = /ca.crt\n"
     "validate = false\n", "validate"),
    ("username = r\npassword = s3cret\n", "not a cqlshrc"),
])
def test_a_login_file_that_would_not_verify_or_log_in_is_refused(
        tmp_path: Path, text: str, wrong: str) -> None:
    login_file = tmp_path / "bad.cqlshrc"
    login_file.write_text(text)
    with pytest.raises(LoginFileError, match=wrong) as refused:
        CassandraSecurity.from_cqlshrc(login_file)
    assert "s3cret" not in str(refused.value)


def test_the_driver_checks_the_nodes_names_against_the_ca(tmp_path: Path, secured: Path) -> None:
    login = CassandraSecurity.from_cqlshrc(secured / "logins" / f"{ADMIN.name}.cqlshrc")
    settings = login.driver_kwargs()
    context = settings["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert settings["auth_provider"].username == ADMIN.name


# --- The roles ---------------------------------------------------------------------


def test_every_role_has_a_secret_of_the_catalog() -> None:
    assert {role.secret for role in ROLES} <= set(secrets.BY_NAME)
    assert len({role.name for role in ROLES}) == len(ROLES)


def test_the_job_may_only_read_and_write_and_the_reader_only_read() -> None:
    assert {STREAM_JOB: {"SELECT", "MODIFY"}, READER: {"SELECT"}} == KEYSPACE_PERMISSIONS
    # The superuser needs no grant: one naming it would only hide a lost SUPERUSER.
    assert ADMIN not in KEYSPACE_PERMISSIONS


def test_the_controller_logs_in_with_the_inventorys_files(secured: Path, tmp_path: Path) -> None:
    from evilnet.platform.inventory import Inventory

    root = secured.parents[3]
    inventory = Inventory.load(root / "inventory", roles=REPO_ROOT / "ansible" / "roles")
    for role in ROLES:  # the admin's exists (the role rendered its login file), not all
        secrets.ensure(root / "state" / "secrets", role.secret)
    for role in ROLES:
        login = inventory.cassandra_security(role)
        assert login == CassandraSecurity(role.name,
                                          secrets.read(root / "state" / "secrets", role.secret),
                                          str((root / "state" / "pki" / "ca.crt").resolve()))
    assert inventory.cassandra_security().username == READER.name  # by default: read only
    plaintext = write_inventory(tmp_path, {"cassandra": {NODE: ADDRESS}},
                                cassandra_security_enabled=False)
    assert Inventory.load(plaintext, roles=REPO_ROOT / "ansible" / "roles") \
        .cassandra_security() is None


@pytest.mark.parametrize(("listed", "cql"), [
    ("<keyspace evilnet>", "KEYSPACE evilnet"), ("<table evilnet.job_progress>",
                                                 "TABLE evilnet.job_progress"),
    ("<all keyspaces>", "ALL KEYSPACES"), ("<role evilnet_admin>", "ROLE evilnet_admin"),
    ("<all roles>", "ALL ROLES"),
])
def test_a_stray_grant_is_taken_back_on_the_resource_it_was_given_on(listed: str,
                                                                       cql: str) -> None:
    # LIST PERMISSIONS names resources one way, GRANT and REVOKE another.
    from evilnet.platform.cassandra_roles import RolesError, _resource_cql

    assert _resource_cql(listed) == cql
    with pytest.raises(RolesError, match="by hand"):
        _resource_cql("<function evilnet.f(int)>")
