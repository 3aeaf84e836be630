"""benchmarks/tls_cost.py cannot rot unseen: its broker configuration, the order of its
rounds, its summary and its parsing of Kafka's tools are checked without a stack; the
staged Kafka must hold the classes it runs; and one tiny run (300 posts, one round,
on 127.0.3.201) starts its throwaway broker (about 10 s), measures every client
over both listeners and leaves no JVM behind.

The live run needs Java 17 and the staged kafka-kraft archive (`evilnet stage`);
it is skipped without them.
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import stat
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

# The benchmarks are scripts, not a package: their modules are found through the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import producer_throughput
import tls_cost

from evilnet.kafka_clients import KafkaSecurity
from evilnet.platform.staging import default_cache_dir

TEST_ADDRESS = "127.0.3.201"  # the benchmark's own runs default to 127.0.3.200


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_the_broker_serves_both_transports_from_one_node() -> None:
    properties = _properties(tls_cost.server_properties(
        "127.0.3.200", Path("/d"), Path("/pki/host.pem"), Path("/pki/ca.crt")))
    assert properties["process.roles"] == "broker,controller"
    assert properties["listeners"] == ("PLAINTEXT://127.0.3.200:9092,SASL_SSL://127.0.3.200:9093,"
                                       "CONTROLLER://127.0.3.200:9094")
    # Clients are told of both client listeners, never of the controller's.
    assert properties["advertised.listeners"] == ("PLAINTEXT://127.0.3.200:9092,"
                                                  "SASL_SSL://127.0.3.200:9093")
    assert properties["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert properties["ssl.keystore.location"] == "/pki/host.pem"
    assert properties["offsets.topic.replication.factor"] == "1"
    assert "password" not in tls_cost.server_properties(
        "127.0.3.200", Path("/d"), Path("/k"), Path("/t"))


def test_the_scram_credential_goes_to_the_format_in_its_argument_file() -> None:
    text = tls_cost.format_arguments("AAAAAAAAAAAAAAAAAAAAAA", Path("/w/server.properties"),
                                     "admin", "s3cret")
    lines = text.splitlines()
    assert lines[:2] == ["kafka.tools.StorageTool", "format"]
    assert lines[lines.index("--add-scram") + 1] == (
        '"SCRAM-SHA-512=[name=admin,iterations=8192,password=s3cret]"')


def test_the_rounds_alternate_so_a_steady_drift_cancels() -> None:
    order = [transport for _, transport in tls_cost.round_order(4)]
    assert order == ["plaintext", "tls", "tls", "plaintext", "plaintext", "tls", "tls",
                     "plaintext"]
    # Even rounds: the mean position of each transport in the run is the same.
    positions = {t: [n for n, seen in enumerate(order) if seen == t] for t in tls_cost.TRANSPORTS}
    assert sum(positions["plaintext"]) == sum(positions["tls"])


def test_the_summary_gives_medians_their_range_and_the_ratio() -> None:
    summary = tls_cost.summarize({"client": {"plaintext": [100.0, 300.0, 200.0],
                                             "tls": [50.0, 90.0, 200.0]}})["client"]
    assert summary["plaintext"] == {"rounds": [100.0, 300.0, 200.0], "median": 200.0,
                                    "min": 100.0, "max": 300.0}
    assert summary["tls"]["median"] == 90.0
    assert summary["ratio"] == pytest.approx(0.45)
    assert summary["round_ratios"] == {"median": pytest.approx(0.5), "min": pytest.approx(0.3),
                                       "max": pytest.approx(1.0)}


def test_the_tools_summaries_are_read() -> None:
    consumer = ("WARNING: something\n"
                "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, "
                "nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n"
                "2026-12-02 18:10:20:000, 2026-12-02 18:10:22:000, 0.9, 0.45, 3096, 1548.0, "
                "1800, 200, 4.5, 15480.0\n")
    assert tls_cost.consumer_performance_rate(consumer, 3096) == 15480.0
    with pytest.raises(SystemExit, match="read 3096 records of 4000"):
        tls_cost.consumer_performance_rate(consumer, 4000)
    producer = ("5000 records sent, 1000.0 records/sec (0.29 MB/sec), 3.0 ms avg latency\n"
                "20000 records sent, 9876.5 records/sec (2.80 MB/sec), 4.0 ms avg latency, "
                "90.0 ms max latency, 3 ms 50th, 8 ms 95th, 12 ms 99th, 80 ms 99.9th.\n")
    assert producer_throughput.producer_performance_rate(producer) == 9876.5


def test_a_tools_login_is_a_private_file_and_plaintext_has_none(tmp_path: Path) -> None:
    security = KafkaSecurity("admin", "s3cret", str(tmp_path / "ca.crt"))
    config = producer_throughput.client_config(tmp_path / "c.properties", security)
    assert config is not None and "s3cret" in config.read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert producer_throughput.client_config(tmp_path / "p.properties", None) is None


def test_the_table_renders_a_report() -> None:
    rates = {client: {"plaintext": [100.0], "tls": [80.0]} for client in tls_cost.CLIENTS}
    report = {"records": 3096, "rounds": 1, "kafka": "4.3.2",
              "clients": tls_cost.summarize(rates)}
    with tls_cost.console.capture() as captured:
        tls_cost.console.print(tls_cost.render(report))
    lines = [line for line in captured.get().splitlines() if "0.80 (0.80-0.80)" in line]
    assert len(lines) == len(tls_cost.CLIENTS)
    assert all("100 (100-100)" in line and "80 (80-80)" in line for line in lines)


def _staged_archive() -> Path:
    manifest = default_cache_dir() / "manifest.json"
    if not manifest.is_file():
        pytest.skip(f"needs `evilnet stage` (no {manifest})")
    staged = json.loads(manifest.read_text())["maven"].get("kafka-kraft")
    if not staged:
        pytest.skip("needs the staged kafka-kraft archive (`evilnet stage`)")
    return Path(staged["path"])


def test_the_staged_kafka_holds_the_classes_the_benchmark_runs() -> None:
    wanted = {"kafka/Kafka.class", "kafka/tools/StorageTool.class",
              "org/apache/kafka/tools/ProducerPerformance.class",
              "org/apache/kafka/tools/ConsumerPerformance.class"}
    found = set()
    with tarfile.open(_staged_archive()) as archive:
        for member in archive:
            if member.name.endswith(".jar") and "/lib/kafka" in member.name:
                jar = zipfile.ZipFile(io.BytesIO(archive.extractfile(member).read()))
                found |= wanted & set(jar.namelist())
    assert found == wanted


@pytest.mark.timeout(240)
def test_a_tiny_run_measures_every_client_and_stops_its_broker() -> None:
    _staged_archive()
    if not (tls_cost.JAVA_HOME / "bin" / "java").exists():
        pytest.skip(f"needs Java 17 at {tls_cost.JAVA_HOME} ($EVILNET_JAVA17_HOME)")
    with socket.socket() as probe:
        if probe.connect_ex((TEST_ADDRESS, 9092)) == 0:
            pytest.skip(f"{TEST_ADDRESS}:9092 is in use")
    report = tls_cost.run(argparse.Namespace(
        posts=300, rounds=1, address=TEST_ADDRESS, heap="256m",
        java=str(tls_cost.JAVA_HOME / "bin" / "java"), cache=default_cache_dir()))
    assert report["records"] > 300 and report["order"] == ["plaintext", "tls"]
    for client in tls_cost.CLIENTS:
        entry = report["clients"][client]
        assert entry["plaintext"]["median"] > 0 and entry["tls"]["median"] > 0, client
    for port in (9092, 9093, 9094):  # the JVM is gone
        with socket.socket() as probe:
            assert probe.connect_ex((TEST_ADDRESS, port)) != 0, port
