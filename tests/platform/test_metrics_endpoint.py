"""A Python exporter's secured endpoint (evilnet.metrics_endpoint), served for real on
loopback with a certificate of a test inventory's CA: what Prometheus relies on to
scrape it, and what keeps anyone else out.

Users rely on: only a client that verifies the host's certificate and sends the
scrape login reads the metrics; no login, a wrong password or user, plain HTTP, or a
client that does not trust our CA get nothing; the hash is the JMX exporter agent's,
so one login file format serves every exporter.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from pki_site import evilnet, write_inventory
from prometheus_client import CollectorRegistry, Gauge

from evilnet.metrics_endpoint import SCRAPE_USER, EndpointSecurity, ScrapeLogin, serve

# Loopback only, outside the local stack's 127.0.1.x.
ADDRESS = "127.0.3.60"
PASSWORD = "a-generated-scrape-password-0123"


def test_the_hash_is_the_jmx_exporter_agents() -> None:
    # The agent's documentation (1.3.0, "HTTP BASIC Authentication") hashes the password
    # "secret" with this salt to this SHA-256 value.
    login = ScrapeLogin("Prometheus", "U9i%=N+m]#i9yvUV:bA/3n4X9JdPXf=n",
                        "2bf7ed4906ac065bde39f7508d6102a6cdd7153a929ea883ff6cd04442772c99")
    assert login.accepts(_basic("Prometheus", "secret"))
    assert not login.accepts(_basic("Prometheus", "Secret"))
    assert not login.accepts(_basic("prometheus", "secret"))
    # The agent's form of the hash may carry colons and capitals: it drops and lowers them.
    spaced = ":".join(login.password_hash[i:i + 2].upper() for i in range(0, 64, 2))
    assert ScrapeLogin("Prometheus", login.salt, spaced).accepts(_basic("Prometheus", "secret"))


def test_a_new_login_has_its_own_salt_and_never_shows_its_hash() -> None:
    first, second = ScrapeLogin.of(PASSWORD), ScrapeLogin.of(PASSWORD)
    assert first.salt != second.salt and first.password_hash != second.password_hash
    assert ":" not in first.salt
    assert first.password_hash not in repr(first)
    no_colon = "Basic " + base64.b64encode(b"no-colon").decode()
    for header in (None, "", "Bearer x", "Basic !!!", no_colon):
        assert not first.accepts(header)


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory):
    """A registry served with a certificate issued for ADDRESS by a test inventory's CA."""
    root = tmp_path_factory.mktemp("endpoint")
    inventory = write_inventory(root, {"producers": {"producer1": ADDRESS}})
    issued = evilnet(inventory, "pki", "issue")
    assert issued.returncode == 0, issued.stdout + issued.stderr
    pki = root / "state" / "pki"
    login_file = root / "metrics-login.yml"
    login = ScrapeLogin.of(PASSWORD)
    login_file.write_text(yaml.safe_dump({
        "certfile": str(pki / "hosts" / "producer1" / "host.crt"),
        "keyfile": str(pki / "hosts" / "producer1" / "host.key"),
        "username": login.username, "algorithm": "SHA-256", "salt": login.salt,
        "password_hash": login.password_hash}))
    registry = CollectorRegistry()
    Gauge("evilnet_probe_value", "A value to find.", registry=registry).set(42)
    with socket.socket() as probe:  # a free port on the address
        probe.bind((ADDRESS, 0))
        port = probe.getsockname()[1]
    server, thread = serve(port, ADDRESS, registry, EndpointSecurity.from_file(login_file))
    yield f"https://{ADDRESS}:{port}/metrics", str(pki / "ca.crt")
    server.shutdown()
    server.server_close()
    thread.join(5)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _get(url: str, cafile: str | None, authorization: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": authorization}
                                     if authorization else {})
    context = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_scrape_login_reads_the_metrics(endpoint) -> None:
    url, cafile = endpoint
    status, body = _get(url, cafile, _basic(SCRAPE_USER, PASSWORD))
    assert status == 200
    assert "evilnet_probe_value 42.0" in body


@pytest.mark.parametrize("authorization", [None, _basic(SCRAPE_USER, "wrong"),
                                           _basic("evilnet", PASSWORD)],
                         ids=["no-login", "wrong-password", "wrong-user"])
def test_anything_else_is_refused_with_nothing_of_the_metrics(endpoint, authorization) -> None:
    url, cafile = endpoint
    status, body = _get(url, cafile, authorization)
    assert status == 401
    assert "evilnet_probe_value" not in body


def test_plain_http_and_an_untrusted_server_get_nothing(endpoint) -> None:
    url, _ = endpoint
    host, port = url.split("//")[1].split("/")[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    with pytest.raises((http.client.HTTPException, OSError)):
        connection.request("GET", "/metrics")
        connection.getresponse()
    connection.close()
    # A client that does not trust the inventory's CA does not even send its login.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        _get(url, None, _basic(SCRAPE_USER, PASSWORD))


def test_the_server_still_answers_after_a_failed_handshake(endpoint) -> None:
    url, cafile = endpoint
    with pytest.raises(urllib.error.URLError):
        _get(url, None)
    assert _get(url, cafile, _basic(SCRAPE_USER, PASSWORD))[0] == 200


def test_a_login_file_of_another_hash_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "login.yml"
    path.write_text(yaml.safe_dump({"certfile": "c", "keyfile": "k", "username": "u",
                                    "algorithm": "PBKDF2WithHmacSHA256", "salt": "s",
                                    "password_hash": "h"}))
    with pytest.raises(ValueError, match="PBKDF2WithHmacSHA256"):
        EndpointSecurity.from_file(path)
    path.write_text(yaml.safe_dump({"certfile": "c", "keyfile": "k", "username": "u"}))
    with pytest.raises(ValueError, match="salt"):
        EndpointSecurity.from_file(path)
