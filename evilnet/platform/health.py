"""Health checks of the real services, shared by the roles, `evilnet status` and tests.

Each check asks the service itself over its own protocol and returns a
:class:`Health`. Waiting has one home here: :func:`wait_for` polls any condition
until it holds or a deadline passes, :func:`wait_until_healthy` does that for one
check and :func:`run_checks` runs a set of them once (the status table). The
Ansible roles run these on the hosts (after every start and restart), so what
"healthy" means is written once, here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from evilnet.cassandra_clients import CassandraSecurity, driver_kwargs
from evilnet.kafka_clients import COMMAND_CLIENT
from evilnet.waiting import GaveUp, WaitTimeout, poll, wait_for

__all__ = ["ClientTls", "Health", "WaitTimeout", "WebLogin", "run_checks", "wait_for",
           "wait_until_healthy"]


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


Check = Callable[[], Health]


# Errors of a service that is down or still starting: refused, reset, timed out,
# "no broker available", "no host available". Anything else is a bug and raised.
_NOT_READY_ERRORS: tuple[type[BaseException], ...] = (OSError,)


def not_ready_errors() -> tuple[type[BaseException], ...]:
    """What a service that is down or still starting raises (the clients load lazily)."""
    from cassandra import DriverException
    from cassandra.cluster import NoHostAvailable
    from kafka.errors import KafkaError

    return (*_NOT_READY_ERRORS, KafkaError, NoHostAvailable, DriverException)


def wait_until_healthy(check: Check, timeout: float, interval: float = 2.0) -> Health:
    """Run ``check`` until it is ok or ``timeout`` seconds have passed; the last result.

    A service that refuses connections is not ready yet, not an error.
    """
    result = poll(check, lambda health: health.ok, timeout, interval, not_ready_errors())
    if isinstance(result, GaveUp):
        outcome = result.outcome
        if outcome.failed:
            error = outcome.exception()
            return Health(False, f"{type(error).__name__}: {error}")
        return outcome.result()
    return result


def run_checks(checks: Iterable[tuple[str, str, Check]]) -> list[tuple[str, str, Health]]:
    """Every check once, in order: (service, endpoint, health); an error is unhealthy."""
    results = []
    for service, endpoint, check in checks:
        try:
            health = check()
        except Exception as error:
            health = Health(False, f"{type(error).__name__}: {error}")
        results.append((service, endpoint, health))
    return results


# --- ZooKeeper --------------------------------------------------------------------


@dataclass(frozen=True)
class ClientTls:
    """A TLS client's files: the CA bundle it verifies the server with, and the
    certificate and key it proves itself with (a ZooKeeper with
    ``ssl.clientAuth=need`` refuses a client without one)."""

    cafile: str
    certfile: str
    keyfile: str

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cafile)
        context.load_cert_chain(self.certfile, self.keyfile)
        return context


def four_letter_word(host: str, port: int, word: str, timeout: float = 3.0,
                     tls: ClientTls | None = None) -> str:
    """Send a ZooKeeper four-letter word and return the whole answer (over TLS to a
    secure client port, whose certificate must name ``host``)."""
    with socket.create_connection((host, port), timeout=timeout) as plain:
        connection = (tls.context().wrap_socket(plain, server_hostname=host) if tls
                      else plain)
        with connection:
            connection.sendall(word.encode())
            chunks = []
            while chunk := connection.recv(4096):
                chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def zookeeper_mode(host: str, port: int, tls: ClientTls | None = None) -> str:
    """``leader``, ``follower``, ``standalone``, or ``not serving``."""
    answer = four_letter_word(host, port, "srvr", tls=tls)
    for line in answer.splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return "not serving"


def zookeeper_node(host: str, port: int, tls: ClientTls | None = None) -> Health:
    """A node is healthy when it serves requests as part of a quorum."""
    mode = zookeeper_mode(host, port, tls)
    return Health(mode in ("leader", "follower", "standalone"), f"mode {mode}")


def zookeeper_node_in_ensemble(node: tuple[str, int], ensemble: list[tuple[str, int]],
                               tls: ClientTls | None = None) -> Health:
    """A (re)started node serves, or cannot yet because too few nodes run.

    During a rolling restart the rest of the ensemble has a quorum and the node must
    rejoin it. While an ensemble is first brought up node by node, the first nodes
    cannot serve until a majority runs: they are healthy once they answer.
    """
    mode = zookeeper_mode(*node, tls)
    if mode in ("leader", "follower", "standalone"):
        return Health(True, f"mode {mode}")
    others_serving = 0
    for other in ensemble:
        if other == node:
            continue
        with contextlib.suppress(OSError):  # a node not started yet
            others_serving += zookeeper_mode(*other, tls) in ("leader", "follower")
    quorum = len(ensemble) // 2 + 1
    if others_serving + 1 < quorum:
        return Health(True, f"running; no quorum yet ({others_serving + 1} of the "
                            f"{quorum} nodes needed serve or could)")
    return Health(False, f"mode {mode}, the ensemble has a quorum without it")


def zookeeper_ensemble(nodes: list[tuple[str, int]], tls: ClientTls | None = None) -> Health:
    """Exactly one leader, every other node a follower."""
    modes = {}
    for host, port in nodes:
        try:
            modes[f"{host}:{port}"] = zookeeper_mode(host, port, tls)
        except OSError as error:
            modes[f"{host}:{port}"] = f"unreachable ({error.strerror or error})"
    leaders = [node for node, mode in modes.items() if mode == "leader"]
    followers = [node for node, mode in modes.items() if mode == "follower"]
    ok = len(leaders) == 1 and len(followers) == len(nodes) - 1
    return Health(ok, ", ".join(f"{node} {mode}" for node, mode in modes.items()))


# --- Kafka ------------------------------------------------------------------------


def kafka_cluster(bootstrap: str, expected_brokers: set[int] | None = None,
                  topics: list[str] | None = None,
                  security: Mapping[str, str] | None = None) -> Health:
    """All expected brokers registered; no partition of ``topics`` under-replicated.

    With ``topics`` None every topic is checked; an empty list checks none.
    ``security``: kafka-python's settings for a secured cluster
    (evilnet.kafka_clients.security_kwargs).
    """
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000,
                             client_id="evilnet-health", **COMMAND_CLIENT, **(security or {}))
    try:
        registered = {broker["broker_id"] for broker in admin.describe_cluster()["brokers"]}
        if expected_brokers is not None and not expected_brokers <= registered:
            missing = sorted(expected_brokers - registered)
            return Health(False, f"brokers {sorted(registered)} registered, missing {missing}")
        names = admin.list_topics() if topics is None else topics
        under = [
            f"{topic['name']}/{partition['partition_index']}"
            for topic in (admin.describe_topics(names) if names else [])
            for partition in topic["partitions"]
            if len(partition["isr_nodes"]) < len(partition["replica_nodes"])
        ]
    finally:
        admin.close()
    if under:
        return Health(False, f"under-replicated partitions: {', '.join(sorted(under))}")
    return Health(True, f"brokers {sorted(registered)} registered, no under-replicated partitions")


def kraft_quorum(bootstrap: str, expected_voters: set[int], max_lag: int,
                 security: Mapping[str, str] | None = None) -> Health:
    """KRaft's metadata quorum, asked through the brokers (DescribeQuorum, which they
    forward to the active controller): it has a leader, its voters are exactly
    ``expected_voters``, and each voter's log is within ``max_lag`` records of the
    high watermark (the role's ``kafka_quorum_max_lag``)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000,
                             client_id="evilnet-health", **COMMAND_CLIENT, **(security or {}))
    try:
        quorum = admin.describe_metadata_quorum()
    finally:
        admin.close()
    partition = quorum["topics"][0]["partitions"][0]
    if partition["error"]:
        return Health(False, f"metadata quorum: {partition['error']}")
    voters = {voter["replica_id"]: partition["high_watermark"] - voter["log_end_offset"]
              for voter in partition["current_voters"]}
    leader = partition["leader_id"]
    detail = f"leader {leader}, voters " + ", ".join(
        f"{node} lag {lag}" for node, lag in sorted(voters.items()))
    if leader not in voters:
        return Health(False, f"no leader among the voters: {detail}")
    if set(voters) != expected_voters:
        return Health(False, f"voters {sorted(voters)}, expected {sorted(expected_voters)}")
    behind = sorted(node for node, lag in voters.items() if lag > max_lag)
    if behind:
        return Health(False, f"voters {behind} lag more than {max_lag} records: {detail}")
    return Health(True, detail)


# --- Cassandra --------------------------------------------------------------------


def cassandra_node(host: str, port: int = 9042, security: CassandraSecurity | None = None,
                   refused_login_serves: bool = False) -> Health:
    """The native port answers ``SELECT release_version FROM system.local``.

    ``security``: over TLS, logged in as its role (a secured cluster). With
    ``refused_login_serves``, a node that completes the TLS handshake and then refuses
    the login counts as serving CQL: a new cluster's nodes start before its roles exist
    (the cassandra role's restarts; `evilnet schema superuser` creates them after).
    """
    from cassandra import AuthenticationFailed
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
    from cassandra.policies import WhiteListRoundRobinPolicy

    only_this_node = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([host]))
    cluster = Cluster([host], port=port, connect_timeout=5, protocol_version=5,
                      execution_profiles={EXEC_PROFILE_DEFAULT: only_this_node},
                      **driver_kwargs(security))
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local").one()
    except NoHostAvailable as error:
        refusals = [e for e in error.errors.values() if isinstance(e, AuthenticationFailed)]
        if refused_login_serves and refusals and len(refusals) == len(error.errors):
            return Health(True, f"serves CQL over TLS; login as {security.username} refused "
                                "(no such role yet?)")
        raise
    finally:
        cluster.shutdown()
    login = f", logged in as {security.username} over TLS" if security else ""
    return Health(True, f"release {row.release_version}{login}")


# --- Spark ------------------------------------------------------------------------


def spark_master_status(ui_url: str, cafile: str | None = None) -> dict:
    """The master's /json/ status; an https UI (spark_security_enabled) is verified
    with ``cafile``, the inventory's CA bundle."""
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    with urllib.request.urlopen(f"{ui_url.rstrip('/')}/json/", timeout=5,
                                context=context) as response:
        return json.load(response)


def spark_cluster(ui_url: str, expected_workers: set[str] | None = None,
                  cafile: str | None = None) -> Health:
    """The master is ALIVE and lists every expected worker host ALIVE."""
    status = spark_master_status(ui_url, cafile)
    alive = {worker["host"] for worker in status.get("workers", []) if worker["state"] == "ALIVE"}
    if status.get("status") != "ALIVE":
        return Health(False, f"master status {status.get('status')}")
    if expected_workers is not None and not expected_workers <= alive:
        return Health(False, f"workers alive {sorted(alive)}, missing "
                             f"{sorted(expected_workers - alive)}")
    return Health(True, f"master ALIVE, workers alive {sorted(alive)}")


# --- The pipeline's own processes -----------------------------------------------------


def stream_job(hosts: list[str], port: int, keyspace: str, job: str,
               max_age_seconds: float | None = None,
               newer_than: datetime | None = None,
               security: CassandraSecurity | None = None) -> Health:
    """Every query of the job recorded a micro-batch (or an idle trigger) recently enough.

    The queries are the ones the job's latest recorded settings name (both, or the one
    of the ``plain_count`` baseline). A query's progress counts when it is at most
    ``max_age_seconds`` old and, after a (re)start, newer than ``newer_than``. The job
    records progress on every trigger, with or without new records, so a stale row
    means a stopped or stuck job, not an idle pipeline.
    """
    from evilnet.schema import JOB_QUERIES, job_queries
    from evilnet.spark.store import CassandraStore, connect

    cluster, session = connect(hosts, port, security=security)
    try:
        progress = CassandraStore(session, keyspace).progress(job)
    finally:
        cluster.shutdown()
    latest = max((row for row in progress.values() if row.config and row.updated_at),
                 key=lambda row: row.updated_at, default=None)
    queries = job_queries(json.loads(latest.config)) if latest else JOB_QUERIES
    now = datetime.now(UTC)
    updated = {query: row.updated_at.replace(tzinfo=UTC) for query, row in progress.items()
               if query in queries and row.updated_at}
    missing = [query for query in queries if query not in updated]
    if missing:
        return Health(False, f"{job}: no progress recorded for {', '.join(missing)}")
    ages = {query: (now - moment).total_seconds() for query, moment in updated.items()}
    detail = ", ".join(f"{query}: last micro-batch {age:.0f} s ago"
                       for query, age in sorted(ages.items()))
    stale = [query for query in queries
             if (max_age_seconds is not None and ages[query] > max_age_seconds)
             or (newer_than is not None and updated[query] <= newer_than)]
    if stale:
        since = f" since {newer_than.isoformat()}" if newer_than is not None else ""
        return Health(False, f"{job}: no recent progress{since} for {', '.join(stale)} "
                             f"({detail})")
    return Health(True, detail)


def producer_shard(address: str, port: int, min_posts: int = 0,
                   login: WebLogin | None = None) -> Health:
    """The shard's metrics endpoint answers with its stream connected (and enough posts);
    with ``login`` (secured metrics: Prometheus's scrape login) over HTTPS."""
    from prometheus_client.parser import text_string_to_metric_families

    from evilnet.producer.metrics import POSTS_RECEIVED, STREAM_CONNECTED

    url = f"{'https' if login else 'http'}://{address}:{port}/metrics"
    try:
        with open_url(url, login) as response:
            text = response.read().decode()
    except OSError as error:
        return Health(False, f"{url}: {error}")
    connected, posts = 0.0, 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == STREAM_CONNECTED:
                connected = sample.value
            elif sample.name == POSTS_RECEIVED + "_total":
                posts += sample.value
    if connected != 1:
        return Health(False, f"{url}: stream not connected")
    if posts < min_posts:
        return Health(False, f"{url}: {posts:.0f} posts received, waiting for {min_posts}")
    return Health(True, f"{url}: stream connected, {posts:.0f} posts received")


# --- The local X API and monitoring ----------------------------------------------------


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def x_api_simulator(url: str) -> Health:
    """The local X API simulator answers its admin endpoint (no token needed)."""
    state = _get_json(f"{url.rstrip('/')}/_sim/state")
    rules = sum(len(app_rules) for app_rules in state["rules"].values())
    return Health(True, f"{state['active_connections']} streams connected, {rules} rules, "
                        f"{state['posts_sent']} posts sent")


@dataclass(frozen=True)
class WebLogin:
    """How a client reaches a secured Prometheus (prometheus_security_enabled) or a
    secured exporter (Prometheus's scrape login, evilnet.metrics_endpoint): basic
    auth as ``username`` over TLS verified with ``cafile``. Never printed whole."""

    username: str
    password: str = field(repr=False)
    cafile: str

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile)

    def request(self, url: str) -> urllib.request.Request:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})


def open_url(url: str, login: WebLogin | None = None, timeout: float = 5):
    """``urlopen`` of ``url``, with ``login``'s credentials and trust where given."""
    if login is None:
        return urllib.request.urlopen(url, timeout=timeout)
    return urllib.request.urlopen(login.request(url), timeout=timeout, context=login.context())


def prometheus(url: str, login: WebLogin | None = None) -> Health:
    """Prometheus is ready; the detail counts its scrape targets that are up.

    A target that is down is the scraped service's problem, shown on that service's
    own row: it does not make Prometheus unhealthy (the prometheus role agrees).
    """
    base = url.rstrip("/")
    with open_url(f"{base}/-/ready", login):
        pass  # 200 when ready; 503 (raised) while it replays its write-ahead log
    with open_url(f"{base}/api/v1/targets?state=active", login) as response:
        targets = json.load(response)["data"]["activeTargets"]
    not_up = sorted(f"{t['labels'].get('job')} {t['labels'].get('instance')} ({t['health']})"
                    for t in targets if t["health"] != "up")
    detail = f"ready, {len(targets) - len(not_up)} of {len(targets)} scrape targets up"
    return Health(True, f"{detail}; not up: {', '.join(not_up)}" if not_up else detail)


def grafana(url: str) -> Health:
    """Grafana's health endpoint reports its database ok."""
    health = _get_json(f"{url.rstrip('/')}/api/health")
    if health.get("database") != "ok":
        return Health(False, f"database {health.get('database')}")
    return Health(True, f"version {health.get('version')}, database ok")
