"""The pipeline across the bed's hosts: `evilnet check` equal to the reference, also
through the faults of issue 13 (a Cassandra node stopped during the replay, a broker
killed, the executor's Spark worker restarted, a producer host cut off for 60 s).

Each fault is undone before its test ends and the services' health is waited for, so
the tests run in any order on one deployed bed."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cluster_helpers import REPO_ROOT, Cluster, evilnet
from conftest import Deployment, Rollout

from evilnet.platform import health
from evilnet.platform.inventory import deployed_shards
from evilnet.spark import reference
from evilnet.waiting import poll_until

CHECK_TIMEOUT = 600
# Seconds a stopped or killed service gets to be healthy again.
RECOVERY_SECONDS = 420


def _acceptance_lines() -> list[str]:
    """The analytics tier's fixture lines (tests/analytics/analytics_helpers.py): retweets,
    accents, apostrophes, duplicate deliveries, disorder. Loaded by path, since the
    two tiers' helper modules are not on each other's path."""
    path = REPO_ROOT / "tests" / "analytics" / "analytics_helpers.py"
    spec = importlib.util.spec_from_file_location("evilnet_analytics_helpers", path)
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    # Some 200 s of stream time: `check` shifts it into the minutes the job accepts.
    return helpers.acceptance_lines(datetime(2024, 6, 1, 12, tzinfo=UTC), posts=300)


@pytest.fixture(scope="module")
def fixture_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cluster-check") / "posts.jsonl"
    path.write_text("\n".join(_acceptance_lines()) + "\n", encoding="utf-8")
    return path


def _check(fixture: Path) -> dict:
    """`evilnet check` of the fixture on the bed: its JSON summary (asserts exit 0, equal)."""
    result = evilnet("check", str(fixture), "--timeout", str(CHECK_TIMEOUT),
                     timeout=CHECK_TIMEOUT + 120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["equal"], summary
    return summary


def _wait_all_healthy() -> None:
    ok, status = poll_until(lambda: evilnet("status", "--format", "json"),
                            lambda result: result.returncode == 0, RECOVERY_SECONDS,
                            interval=10)
    assert ok, status.stdout + status.stderr


@contextmanager
def _during(action: Callable[[], None], delay: float) -> Iterator[None]:
    """Run ``action`` ``delay`` seconds into the block (the replay is under way)."""
    errors: list[BaseException] = []

    def later() -> None:
        time.sleep(delay)
        try:
            action()
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)

    thread = threading.Thread(target=later, daemon=True)
    thread.start()
    yield
    thread.join()
    if errors:
        raise errors[0]


def _systemctl(cluster: Cluster, host: str, *arguments: str) -> str:
    result = cluster.run("ansible.builtin.command", f"systemctl {' '.join(arguments)}",
                         hosts=(host,))[host]
    assert result.status == "ok", result.result
    return result.stdout


def _unit_state(cluster: Cluster, host: str, unit: str) -> str:
    """`systemctl is-active`: its answer, whatever its exit status (3 when not active)."""
    result = cluster.run("ansible.builtin.command", f"systemctl is-active {unit}",
                         hosts=(host,))[host]
    assert result.result.get("rc") in (0, 3), result.result
    return result.stdout


def test_the_fixture_holds_what_the_check_must_get_right(fixture_file: Path) -> None:
    lines = fixture_file.read_bytes().splitlines()
    posts = reference.read_posts(lines)
    ids = [json.loads(line)["data"]["id"] for line in lines]
    assert len(ids) > len(set(ids)), "no duplicate delivery"
    times = [json.loads(line)["data"]["created_at"] for line in lines]
    assert times != sorted(times), "no disorder"
    assert any(re.search(r"[À-ÿ]", post.city) for post in posts)
    assert any("'" in post.city for post in posts)
    assert any(b'"retweeted"' in line for line in lines)


def test_check_passes_across_hosts(deployment: Deployment, fixture_file: Path) -> None:
    summary = _check(fixture_file)
    assert summary["rows"]["city,topic"] > summary["rows"]["city"] > 0, summary


def test_check_passes_with_a_cassandra_node_stopped_during_the_replay(
        cluster: Cluster, deployment: Deployment,
        fixture_file: Path) -> None:
    node = cluster.inventory.groups["cassandra"][-1]
    try:
        # The job and the check write and read at LOCAL_QUORUM: 2 of 3 replicas answer.
        with _during(lambda: _systemctl(cluster, node, "stop", "cassandra"), delay=5):
            _check(fixture_file)
        assert _unit_state(cluster, node, "cassandra") == "inactive"
    finally:
        _systemctl(cluster, node, "start", "cassandra")
    address = cluster.address(node)
    assert health.wait_until_healthy(lambda: health.cassandra_node(address),
                                     RECOVERY_SECONDS).ok
    _wait_all_healthy()


def _main_pid(cluster: Cluster, host: str, unit: str) -> int:
    return int(_systemctl(cluster, host, "show", "-p", "MainPID", "--value", unit))


def test_check_passes_with_a_broker_killed(cluster: Cluster, deployment: Deployment,
                                            fixture_file: Path) -> None:
    broker = cluster.inventory.groups["kafka"][1]
    killed = _main_pid(cluster, broker, "kafka")
    with _during(lambda: cluster.run("ansible.builtin.command", f"kill -9 {killed}",
                                     hosts=(broker,)), delay=5):
        _check(fixture_file)
    # systemd brings it back (Restart=on-failure): a new process, the cluster whole.
    assert _main_pid(cluster, broker, "kafka") not in (0, killed)
    _wait_all_healthy()


def _executor_workers(master_ui: str) -> list[str]:
    """The addresses of the workers running an executor of the stream job."""
    with urllib.request.urlopen(f"{master_ui}/json/", timeout=5) as response:
        state = json.load(response)
    return [worker["host"] for worker in state["workers"]
            if worker["state"] == "ALIVE" and worker["coresused"] > 0]


def test_check_passes_with_the_executors_worker_restarted(
        cluster: Cluster, deployment: Deployment,
        fixture_file: Path) -> None:
    (master,) = cluster.inventory.groups["spark_master"]
    master_ui = f"http://{cluster.address(master)}:8080"
    running = _executor_workers(master_ui)
    assert running, "the stream job has no executor"
    by_address = {cluster.address(host): host for host in cluster.inventory.groups["spark_workers"]}
    worker = by_address[running[0]]
    with _during(lambda: _systemctl(cluster, worker, "restart", "spark-worker"), delay=5):
        _check(fixture_file)
    _wait_all_healthy()


def _metric(address: str, port: int, name: str) -> dict[str, float]:
    """A producer's counter by its labels (Prometheus text format)."""
    with urllib.request.urlopen(f"http://{address}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            values[labels[len(name):]] = float(value)
    return values


def _veth(address: str) -> str:
    """The controller's end of a host's veth pair (testbed.network: evb<last octet>)."""
    return f"evb{address.rsplit('.', 1)[1]}"


def test_a_producer_host_cut_off_for_60_seconds_reconnects(
        cluster: Cluster, rollout: Rollout, fixture_file: Path) -> None:
    """The host of a shard is cut off (its veth down) for 60 s while a replay flows:
    the replay's rows still equal the reference, and the shard reconnects by the
    documented policy and produces again."""
    shards = deployed_shards(cluster.inventory.path)
    simulator_host = cluster.address(cluster.inventory.groups["producers"][0])
    # A host without the simulator: cut off, it loses the stream and Kafka alike.
    cut = [shard for shard in shards if shard["address"] != simulator_host]
    if not cut:
        pytest.fail(f"no shard runs on a producer host without the simulator: {shards}")
    shard = cut[0]
    address, port = shard["address"], int(shard["metrics_port"])
    reconnects = "evilnet_producer_reconnects_total"
    produced = "evilnet_producer_records_produced_total"
    before = sum(_metric(address, port, reconnects).values())
    link = _veth(address)

    def cut_for_60_seconds() -> None:
        subprocess.run(["ip", "link", "set", link, "down"], check=True)
        try:
            time.sleep(60)
        finally:
            subprocess.run(["ip", "link", "set", link, "up"], check=True)

    try:
        with _during(cut_for_60_seconds, delay=5):
            _check(fixture_file)
    finally:
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
    # The documented policy: a stall after 20 s without a byte, then waits of at most
    # 16 s between attempts; once back, the stream delivers and records are produced.
    ok, _ = poll_until(lambda: sum(_metric(address, port, reconnects).values()),
                       lambda value: value > before, 60, interval=2)
    assert ok, "no reconnect counted"
    produced_after = sum(_metric(address, port, produced).values())
    ok, last = poll_until(lambda: sum(_metric(address, port, produced).values()),
                          lambda value: value > produced_after, 120, interval=5)
    assert ok, f"no record produced after the network came back ({last})"
    _wait_all_healthy()


def test_deployed_shards_file_is_read_over_ssh(cluster: Cluster,
                                               deployment: Deployment) -> None:
    shards = deployed_shards(Path(cluster.inventory.path))
    producer_addresses = {cluster.address(host) for host in cluster.inventory.groups["producers"]}
    assert shards and {shard["address"] for shard in shards} <= producer_addresses
