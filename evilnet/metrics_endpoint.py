"""The exporters' scrape login: HTTPS, and basic auth that only Prometheus passes.

Every metrics endpoint the prometheus role scrapes (the JMX exporter agents of
ZooKeeper, Kafka and Cassandra, the producers, the stream job, the footprint
exporter) is secured the same way when the inventory's Prometheus is
(``evilnet_metrics_secured``, docs/security.md "The exporters"): TLS with the host's
certificate of the inventory's CA, then basic auth as :data:`SCRAPE_USER` with the
secret :data:`SCRAPE_SECRET`. An exporter holds a salted hash of that password,
never the password; Prometheus holds the password (``basic_auth.password_file``).

Basic auth rather than mutual TLS, because the staged JMX exporter agent (1.0.1)
has no client-certificate option (its ``httpServer.ssl`` takes a keystore only),
and because every host of the inventory holds a client-capable certificate of the
same CA: "a certificate of our CA" would admit any of them, the password admits
only who holds it (the Prometheus host, and the controller's health checks).

The hash is the agent's own ``SHA-256`` form, so one file format and one function
serve the Java and the Python exporters alike: SHA-256 of ``"<salt>:<password>"``,
as lowercase hex without leading zeros (the agent compares
``BigInteger(1, digest).toString(16)``, read in its
``MessageDigestAuthenticator``). A fast hash is enough here: the password is a
generated secret of 190 bits (evilnet.platform.secrets), which no dictionary
holds, and a slow one (PBKDF2, bcrypt) would let any client that reaches the port
make the exporter burn CPU per wrong password.

:func:`serve` is prometheus-client's ``start_http_server`` with that login in front:
the library's server does TLS (and mutual TLS) but no basic auth.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import ssl
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

import yaml

# Who Prometheus logs in as, and the name of its password in the secrets catalog.
SCRAPE_USER = "prometheus"
SCRAPE_SECRET = "prometheus_scrape_password"
# Where the controller finds that password when the inventory keeps its secrets in
# Vault: the variable Jenkins binds it to (withCredentials), never a file.
SCRAPE_PASSWORD_ENV = "PROMETHEUS_SCRAPE_PASSWORD"
# The agent's name of the hash (httpServer.authentication.basic.algorithm).
HASH_ALGORITHM = "SHA-256"
_REALM = "metrics"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def password_hash(password: str, salt: str) -> str:
    """The JMX exporter agent's SHA-256 hash of ``password`` with ``salt``."""
    digest = hashlib.sha256(f"{salt}:{password}".encode()).digest()
    return format(int.from_bytes(digest, "big"), "x")


def new_salt() -> str:
    """A random salt (hex: no ``:``, which the agent's form would make ambiguous)."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class ScrapeLogin:
    """What an exporter checks a request's basic auth against. Never printed whole."""

    username: str
    salt: str
    password_hash: str = field(repr=False)

    @classmethod
    def of(cls, password: str, salt: str | None = None,
           username: str = SCRAPE_USER) -> ScrapeLogin:
        salt = salt or new_salt()
        return cls(username, salt, password_hash(password, salt))

    def accepts(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries this user and password."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        username, colon, password = decoded.partition(":")
        given = password_hash(password, self.salt)
        # Both compared in constant time: a timing difference tells nothing either.
        expected = self.password_hash.lower().replace(":", "")
        return (bool(colon) & hmac.compare_digest(username.encode(), self.username.encode())
                & hmac.compare_digest(given, expected))


@dataclass(frozen=True)
class EndpointSecurity:
    """A Python exporter's TLS and login, as its role writes them (one 0600 YAML file:
    ``certfile``, ``keyfile``, ``username``, ``algorithm``, ``salt``, ``password_hash``;
    the prometheus role's templates/exporter-login.yml.j2)."""

    certfile: str
    keyfile: str
    login: ScrapeLogin

    @classmethod
    def from_file(cls, path: Path) -> EndpointSecurity:
        settings = yaml.safe_load(Path(path).read_text("utf-8")) or {}
        if settings.get("algorithm", HASH_ALGORITHM) != HASH_ALGORITHM:
            raise ValueError(f"{path}: algorithm {settings['algorithm']!r}, expected "
                             f"{HASH_ALGORITHM}")
        try:
            return cls(str(settings["certfile"]), str(settings["keyfile"]),
                       ScrapeLogin(str(settings["username"]), str(settings["salt"]),
                                   str(settings["password_hash"])))
        except KeyError as missing:
            raise ValueError(f"{path}: no {missing.args[0]}") from None

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.certfile, self.keyfile)
        return context


def require_login(app: WsgiApp, login: ScrapeLogin) -> WsgiApp:
    """``app`` behind basic auth: 401 without the login, and nothing of ``app``."""
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if login.accepts(environ.get("HTTP_AUTHORIZATION")):
            return app(environ, start_response)
        start_response("401 Unauthorized", [
            ("WWW-Authenticate", f'Basic realm="{_REALM}", charset="UTF-8"'),
            ("Content-Type", "text/plain; charset=utf-8")])
        return [b"401 Unauthorized\n"]
    return guarded


def serve(port: int, address: str, registry: Any,
          security: EndpointSecurity | None = None) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``registry`` at ``address:port`` in a daemon thread: plain HTTP without
    ``security`` (prometheus-client's own server), HTTPS and the login with it."""
    from prometheus_client import exposition, make_wsgi_app, start_http_server

    if security is None:
        return start_http_server(port, address, registry=registry)
    # The pieces start_http_server itself uses (read in prometheus-client 0.26): the
    # threaded WSGI server, its address-family choice and its quiet handler. Two are
    # private names: tests/platform/test_metrics_endpoint.py fails if they change.

    class Server(exposition.ThreadingWSGIServer):
        """The library's threaded server, with the address family of ``address``."""

        def handle_error(self, request: Any, client_address: Any) -> None:
            # A client that fails the handshake (plain HTTP, another CA) or hangs up
            # is its own problem: no traceback in the service's log for it.
            if not isinstance(sys.exc_info()[1], OSError):
                super().handle_error(request, client_address)

    Server.address_family, address = exposition._get_best_family(address, port)
    context = security.ssl_context()  # before binding: a bad key fails without a port
    httpd = make_server(address, port, require_login(make_wsgi_app(registry), security.login),
                        Server, handler_class=exposition._SilentHandler)
    # The handshake at the first read, in the request's own thread: a client that
    # stalls it holds its thread only, never the accepting loop.
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True,
                                       do_handshake_on_connect=False)
    thread = threading.Thread(target=httpd.serve_forever, name="metrics-endpoint", daemon=True)
    thread.start()
    return httpd, thread
