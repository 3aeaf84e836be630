"""The suite's stack clients (tests/stack_clients.py) take their logins from the
inventory: none on a plaintext one, the inventory's files on a secured one. An
inventory of a few hosts here, never contacted (tests/platform/pki_site.py)."""

from __future__ import annotations

import base64
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import stack_clients
from pki_site import write_inventory
from stack_clients import CASSANDRA_ADMIN, ROLES, Prometheus

from evilnet.kafka_clients import STREAM_JOB, KafkaSecurity
from evilnet.platform import secrets
from evilnet.platform.health import WebLogin
from evilnet.platform.inventory import Inventory

HOSTS = {"kafka": {"kafka1": "127.0.2.4"}, "cassandra": {"cassandra1": "127.0.2.21"},
         "spark_master": {"spark-master": "127.0.2.11"},
         "spark_workers": {"spark-worker1": "127.0.2.12"},
         "prometheus": {"monitor": "127.0.2.30"}}
PLAINTEXT = {"kafka_security_enabled": False, "cassandra_security_enabled": False,
             "spark_security_enabled": False, "prometheus_security_enabled": False}


def _inventory(root: Path, **settings: object) -> Inventory:
    inventory = Inventory.load(write_inventory(root, hosts=HOSTS, **settings), roles=ROLES)
    secrets.ensure_all(root / "state" / "secrets")
    return inventory


@pytest.fixture(scope="module")
def plaintext(tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    return _inventory(tmp_path_factory.mktemp("plaintext"), **PLAINTEXT)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    """The roles' defaults: every service secured."""
    return _inventory(tmp_path_factory.mktemp("secured"))


def _secret(inventory: Inventory, name: str) -> str:
    """The password as the inventory's 0600 file holds it."""
    directory = Path(inventory.path).parent / "state" / "secrets"
    return secrets.path(directory, name).read_text().strip()


def _ca(inventory: Inventory) -> str:
    return str((Path(inventory.path).parent / "state" / "pki" / "ca.crt").resolve())


def test_a_plaintext_inventory_gives_no_login(plaintext: Inventory, tmp_path: Path) -> None:
    assert stack_clients.kafka_login(plaintext) == {}
    assert stack_clients.kafka_client_config(tmp_path, plaintext) is None
    assert list(tmp_path.iterdir()) == []
    assert stack_clients.cassandra_login(plaintext) is None
    assert stack_clients.cassandra_login(plaintext, CASSANDRA_ADMIN) is None
    prometheus = Prometheus.of(plaintext)
    assert prometheus.login is None and prometheus.url == "http://127.0.2.30:9090"
    assert stack_clients.spark_ui_verify(plaintext) is True


def test_a_secured_inventory_gives_the_admins_kafka_login(secured: Inventory,
                                                          tmp_path: Path) -> None:
    login = stack_clients.kafka_login(secured)
    assert login == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                     "sasl_plain_username": "admin",
                     "sasl_plain_password": _secret(secured, "kafka_admin_password"),
                     "ssl_cafile": _ca(secured)}
    assert stack_clients.kafka_login(secured, STREAM_JOB)["sasl_plain_password"] == _secret(
        secured, "kafka_stream_job_password")

    config = stack_clients.kafka_client_config(tmp_path / "login", secured)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert KafkaSecurity.from_properties(config).kwargs() == login


def test_a_secured_inventory_gives_cassandra_prometheus_and_spark_logins(
        secured: Inventory) -> None:
    reader = stack_clients.cassandra_login(secured)
    assert (reader.username, reader.password, reader.cafile) == (
        "evilnet_reader", _secret(secured, "cassandra_reader_password"), _ca(secured))
    admin = stack_clients.cassandra_login(secured, CASSANDRA_ADMIN)
    assert (admin.username, admin.password) == (
        "evilnet_admin", _secret(secured, "cassandra_admin_password"))

    prometheus = Prometheus.of(secured)
    assert prometheus.url == "https://127.0.2.30:9090"
    assert (prometheus.login.username, prometheus.login.password, prometheus.login.cafile) == (
        "evilnet", _secret(secured, "prometheus_password"), _ca(secured))
    assert stack_clients.spark_ui_verify(secured) == _ca(secured)


def test_evilnet_commands_name_the_inventory(secured: Inventory) -> None:
    assert stack_clients.evilnet_command("evilnet", secured) == [
        "evilnet", "-i", str(secured.path), "--roles", str(ROLES)]


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict]]]:
    """A local HTTP server that records each request's path and Authorization header."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
            body = b'{"status": "success", "data": {"result": [{"value": [0, "1"]}]}}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_prometheus_sends_its_login_with_every_request(recorder) -> None:
    url, seen = recorder
    assert Prometheus(url).query("up") == [{"value": [0, "1"]}]
    login = WebLogin("evilnet", "not-the-real-one", "/nonexistent/ca.crt")
    assert Prometheus(url, login).query("up") == [{"value": [0, "1"]}]
    assert [request["path"] for request in seen] == ["/api/v1/query?query=up"] * 2
    assert seen[0]["auth"] is None
    assert seen[1]["auth"] == "Basic " + base64.b64encode(b"evilnet:not-the-real-one").decode()
