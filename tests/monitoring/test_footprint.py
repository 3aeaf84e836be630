"""`evilnet footprint`: memory and disk per host and service against their limits, the
alerts at 80 % of them (promtool, on the rules the prometheus role renders), and, on
the local stack, the exporter's series in Prometheus with a host's disk limit filled."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from monitoring_helpers import BIN, REPO_ROOT, promtool_test_rules
from stack_clients import LOCAL_INVENTORY
from supervised import host_root, running_programs, supervisorctl

from evilnet.platform import footprint as fp
from evilnet.platform import footprint_metrics as names
from evilnet.platform.inventory import Inventory
from evilnet.waiting import wait_for

MIB = 1024 * 1024


def test_sizes_read_as_the_jvm_and_the_roles_write_them() -> None:
    assert fp.parse_size("384m") == 384 * MIB
    assert fp.parse_size("4G") == 4 * 1024 * MIB
    assert fp.parse_size("2GiB") == 2 * 1024 * MIB
    assert fp.parse_size(1024) == 1024
    with pytest.raises(fp.FootprintError, match="not a size"):
        fp.parse_size("{{ kafka_heap }}")


def _inventory(tmp_path: Path, hostvars: dict) -> Inventory:
    return Inventory(tmp_path / "inventory", {}, {"h1": hostvars}, REPO_ROOT / "ansible" / "roles")


def _write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))


def test_disk_counts_each_service_against_the_hosts_limit(tmp_path: Path) -> None:
    root = tmp_path / "h1"
    _write(root / "data" / "kafka" / "tweets-0" / "00000000000000000000.log", 3 * MIB)
    # A preallocated index: 10 MiB long, nothing written, so nothing on disk.
    index = root / "data" / "kafka" / "tweets-0" / "00000000000000000000.index"
    with index.open("wb") as sparse:
        sparse.truncate(10 * MIB)
    _write(root / "data" / "cassandra" / "data" / "evilnet" / "t-1" / "nb-1-big-Data.db", MIB)
    _write(root / "data" / "cassandra" / "commitlog" / "CommitLog-1.log", 2 * MIB)
    _write(root / "log" / "kafka" / "server.log", MIB)
    usages = fp.disk(_inventory(tmp_path, {"runtime_disk_limit": "8m"}), {"h1": root})
    by_key = {(u.service, u.part): u for u in usages}
    # st_blocks may round up to the filesystem's block; a few KiB at most.
    close = pytest.approx
    assert by_key["kafka", "data"].used == close(3 * MIB, abs=64 * 1024)
    assert by_key["kafka", "segments"].used == close(3 * MIB, abs=64 * 1024)
    assert by_key["cassandra", "sstables"].used == close(MIB, abs=64 * 1024)
    assert by_key["cassandra", "data"].used == close(3 * MIB, abs=64 * 1024)
    assert by_key["kafka", "logs"].used == close(MIB, abs=64 * 1024)
    total = by_key["all", "total"]
    assert total.limit == 8 * MIB and total.source == "runtime_disk_limit"
    assert total.share == close(7 / 8, abs=0.02)
    assert total.alerted and not by_key["kafka", "data"].alerted
    # The table marks the host's share at 80 % and more.
    (marked,) = [row for row in fp.rows(usages) if row[6].endswith("!")]
    assert marked[:4] == ("h1", "all", "disk", "total")


def test_memory_is_the_rss_of_what_a_hosts_supervisor_runs(tmp_path: Path) -> None:
    root = tmp_path / "h1"
    (root / "supervisor" / "run").mkdir(parents=True)
    # A process as supervisord starts it: the program's name and the host's socket.
    env = {**os.environ, "SUPERVISOR_PROCESS_NAME": "kafka",
           "SUPERVISOR_SERVER_URL": f"unix://{root}/supervisor/run/supervisor.sock"}
    hog = subprocess.Popen([sys.executable, "-c",
                            "import sys, time; b = bytearray(64 * 1024 * 1024); "
                            "b[::4096] = b'x' * len(b[::4096]); print(1, flush=True); "
                            "time.sleep(60)"], env=env, stdout=subprocess.PIPE)
    try:
        assert hog.stdout.readline().strip() == b"1"
        usages = fp.memory(_inventory(tmp_path, {"kafka_heap_size": "256m"}), {"h1": root})
    finally:
        hog.kill()
        hog.wait()
    (kafka,) = [u for u in usages if u.host == "h1"]
    assert kafka.service == "kafka" and kafka.part == "rss"
    assert 64 * MIB <= kafka.used < 200 * MIB
    # No cgroup limit here: the heap, as a reference only.
    assert (kafka.limit, kafka.source, kafka.alerted) == (256 * MIB, "heap", False)


def test_a_hosts_file_is_measured_without_an_inventory(tmp_path: Path) -> None:
    """The prometheus role's exporter reads its hosts and limits from the file the role
    writes (the host has no inventory and no Ansible); a root not on this machine is
    skipped."""
    root = tmp_path / "h1"
    _write(root / "data" / "zookeeper" / "version-2" / "snapshot.0", 3 * MIB)
    hosts = tmp_path / "footprint-hosts.json"
    hosts.write_text(json.dumps({
        "h1": {"evilnet_root": str(root), "runtime_disk_limit": "4m"},
        "elsewhere": {"evilnet_root": str(tmp_path / "not-here"), "runtime_disk_limit": "4m"}}))
    report = subprocess.run([str(BIN / "evilnet"), "-i", "/nonexistent", "footprint",
                             "--hosts-file", str(hosts), "--format", "json"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert report.returncode == 0, report.stderr
    usages = json.loads(report.stdout)
    (total,) = [u for u in usages if u["part"] == "total"]
    assert (total["host"], total["limit"]) == ("h1", 4 * MIB)
    assert total["share"] == pytest.approx(0.75, abs=0.02) and total["alerted"]
    hosts.write_text(json.dumps({"h1": {"runtime_disk_limit": "4m"}}))
    broken = subprocess.run([str(BIN / "evilnet"), "footprint", "--hosts-file", str(hosts)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert broken.returncode == 2
    assert broken.stderr == ("evilnet footprint: not a hosts file: each host needs its "
                             f"evilnet_root ({hosts})\n")


# --- the alerts, as the role renders them --------------------------------------------

@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_footprint_alerts_fire_at_80_percent_of_each_limit(tmp_path: Path) -> None:
    limit = 1000 * MIB
    series = [
        # h1: 500 + 310 MiB of 1000 (81 %) from 10 min on; h2: 790 of 1000 (79 %).
        {"series": f'{names.DISK_USED}{{host="h1",service="kafka",part="data"}}',
         "values": f"{500 * MIB}x9 {500 * MIB}x20"},
        {"series": f'{names.DISK_USED}{{host="h1",service="kafka",part="logs"}}',
         "values": f"{10 * MIB}x9 {310 * MIB}x20"},
        # A store's part is inside "data": not counted twice.
        {"series": f'{names.DISK_USED}{{host="h1",service="kafka",part="segments"}}',
         "values": f"{500 * MIB}x30"},
        {"series": f'{names.DISK_USED}{{host="h2",service="zookeeper",part="data"}}',
         "values": f"{790 * MIB}x30"},
        {"series": f'{names.DISK_LIMIT}{{host="h1"}}', "values": f"{limit}x30"},
        {"series": f'{names.DISK_LIMIT}{{host="h2"}}', "values": f"{limit}x30"},
        # Memory: an enforced limit alerts, a JVM heap does not.
        {"series": f'{names.MEMORY_USED}{{host="h1",service="producer-app-1"}}',
         "values": f"{90 * MIB}x30"},
        {"series": f'{names.MEMORY_LIMIT}{{host="h1",service="producer-app-1",'
                   f'source="memory.max"}}', "values": f"{100 * MIB}x30"},
        {"series": f'{names.MEMORY_USED}{{host="h1",service="cassandra"}}',
         "values": f"{1300 * MIB}x30"},
        {"series": f'{names.MEMORY_LIMIT}{{host="h1",service="cassandra",source="heap"}}',
         "values": f"{768 * MIB}x30"},
    ]
    disk = {"exp_labels": {"severity": "warning", "host": "h1"},
            "exp_annotations": {"summary": "h1 uses 81% of its disk limit (runtime_disk_limit)"}}
    memory = {"exp_labels": {"severity": "warning", "host": "h1", "service": "producer-app-1"},
              "exp_annotations": {"summary": "producer-app-1 on h1 uses 90% of its memory limit"}}
    cases = [("12m", "FootprintDiskAbove80Percent", []),  # above 80 % for 2 min only
             ("16m", "FootprintDiskAbove80Percent", [disk]),
             ("4m", "FootprintMemoryAbove80Percent", []),
             ("6m", "FootprintMemoryAbove80Percent", [memory])]
    promtool_test_rules(tmp_path, series, cases)


# --- the local stack -----------------------------------------------------------------

def _disk_used(stack: Inventory, host: str) -> int:
    """What the exporter counts against ``host``'s limit: its services' data and logs."""
    return next(u.used for u in fp.disk(stack, fp.host_roots(stack))
                if u.host == host and u.part == "total")


def _inventory_with_a_tiny_disk_limit(tmp_path: Path, host: str, limit: str) -> Path:
    """The local inventory with one host's runtime_disk_limit overridden. It sits two
    levels under a folder whose .run is the repository's, as the hosts' roots expect."""
    inventory = tmp_path / "inventories" / "local"
    shutil.copytree(LOCAL_INVENTORY, inventory)
    (inventory / "host_vars").mkdir(exist_ok=True)
    (inventory / "host_vars" / f"{host}.yml").write_text(f"runtime_disk_limit: {limit}\n")
    (tmp_path / ".run").symlink_to(REPO_ROOT / ".run")
    return inventory


@pytest.mark.stack
def test_the_report_covers_every_host_of_the_local_stack(stack) -> None:
    report = subprocess.run([str(BIN / "evilnet"), "footprint", "-i", str(LOCAL_INVENTORY),
                             "--format", "json"], capture_output=True, text=True, timeout=180,
                            check=False, cwd=REPO_ROOT)
    assert report.returncode == 0, report.stderr
    usages = json.loads(report.stdout)
    hosts = {host for group in stack.groups.values() for host in group}
    assert {u["host"] for u in usages if u["part"] == "total"} == hosts
    memory = {(u["host"], u["service"]) for u in usages if u["resource"] == "memory"}
    for host in stack.groups["kafka"]:
        assert (host, "kafka") in memory
    assert all(u["used"] > 0 for u in usages if u["resource"] == "memory")
    kafka = [u for u in usages if u["service"] == "kafka" and u["part"] == "segments"]
    assert len(kafka) == len(stack.groups["kafka"]) and all(u["used"] > 0 for u in kafka)


# The exporter the prometheus role runs (tasks/footprint.yml), as supervisord names it.
EXPORTER_PROGRAM = "footprint-exporter"


@pytest.mark.stack
def test_the_prometheus_host_runs_the_footprint_exporter(stack, prometheus) -> None:
    """make up leaves the exporter running and scraped: every host's disk and the
    services' memory are in Prometheus, with the local inventory's limits."""
    monitor = stack.groups["prometheus"][0]
    assert EXPORTER_PROGRAM in running_programs(monitor)
    hosts = {host for group in stack.groups.values() for host in group}
    limits = wait_for(lambda: prometheus.query(names.DISK_LIMIT), 120,
                      what="the footprint series in Prometheus", interval=5)
    expected = fp.parse_size(stack.var(monitor, "runtime_disk_limit", "runtime"))
    assert {r["metric"]["host"]: float(r["value"][1]) for r in limits} == dict.fromkeys(
        hosts, expected)
    kafka = prometheus.query(f'{names.MEMORY_USED}{{service="kafka"}}')
    assert {r["metric"]["host"] for r in kafka} == set(stack.groups["kafka"])


@pytest.mark.stack
@pytest.mark.disruptive
def test_a_filled_disk_limit_alerts_in_prometheus(stack, prometheus,
                                                   tmp_path: Path) -> None:
    """zk1 given a disk limit of a quarter of what it uses now: the exporter's series
    reach the local Prometheus, and the disk alert becomes pending there (promtool above
    checks that it fires once pending for prometheus_alert_for).

    The limit comes from zk1's usage, not a constant: a fresh ZooKeeper holds little
    (its transaction log is sparse), so early in a fresh CI run it can use less than
    80 % of a fixed 128 KiB, and the alert then rightly stays silent.

    The service's exporter is stopped meanwhile (two exporters would announce one
    file and serve one port), and started again after."""
    rules = host_root("monitor") / "etc" / "prometheus" / "evilnet.rules.yml"
    if "FootprintDiskAbove80Percent" not in rules.read_text():
        pytest.fail("the stack's Prometheus has no footprint rules: run the monitoring play "
                    "(ansible-playbook -i inventories/local ansible/playbooks/monitoring.yml)")
    used = _disk_used(stack, "zk1")
    limit = max(used // 4, 4096)
    assert used > limit / fp.ALERT_SHARE, f"zk1 uses only {used} bytes"
    inventory = _inventory_with_a_tiny_disk_limit(tmp_path, "zk1", str(limit))
    monitor = stack.groups["prometheus"][0]
    listen = (f"{stack.address(monitor)}:"
              f"{stack.var(monitor, 'prometheus_footprint_port', 'prometheus')}")
    targets = host_root("monitor") / "etc" / "prometheus" / "targets" / "footprint.json"
    # A secured Prometheus scrapes over TLS with its login: this exporter serves the
    # same login file as the service (the prometheus role's prometheus_footprint_login).
    login = host_root("monitor") / "etc" / "prometheus" / "footprint-login.yml"
    serve_login = ["--metrics-login", str(login)] if stack.metrics_login() else []
    supervisorctl(monitor, "stop", EXPORTER_PROGRAM)
    exporter = subprocess.Popen(
        [str(BIN / "evilnet"), "footprint", "-i", str(inventory), "--serve", listen,
         "--announce", str(targets), *serve_login], cwd=REPO_ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        # The limit this exporter serves (not the service's, until that one is stale).
        wait_for(lambda: prometheus.query(f'{names.DISK_LIMIT}{{host="zk1"}} == {limit}'),
                 120, what="the footprint series in Prometheus", interval=5)
        hosts = {r["metric"]["host"]
                 for r in prometheus.query(f"count by (host) ({names.DISK_USED})")}
        assert hosts == {host for group in stack.groups.values() for host in group}
        assert prometheus.query(f'{names.MEMORY_USED}{{service="kafka"}}')
        pending = wait_for(lambda: prometheus.query(
            'ALERTS{alertname="FootprintDiskAbove80Percent",host="zk1"}'), 90,
            what="FootprintDiskAbove80Percent for zk1", interval=5)
        assert pending[0]["metric"]["alertstate"] in ("pending", "firing")
        # The other hosts keep the local inventory's 2g: no alert for them.
        others = prometheus.query('ALERTS{alertname="FootprintDiskAbove80Percent",host!="zk1"}')
        assert others == []
    finally:
        exporter.send_signal(signal.SIGTERM)
        try:
            exporter.wait(timeout=30)
        except subprocess.TimeoutExpired:
            exporter.kill()
            exporter.wait()
        # It removed its target file on exit; the service writes its own on start.
        removed = not targets.exists()
        supervisorctl(monitor, "start", EXPORTER_PROGRAM)
    assert removed
