"""What TLS costs the pipeline's Kafka clients: both transports of one broker, one run.

One throwaway Kafka (the staged ``kafka-kraft`` archive, KRaft, one node that is
broker and controller, replication factor 1) listens on one address with two client
listeners in the same JVM, on the same disk and heap:

* ``PLAINTEXT``;
* ``SASL_SSL``: TLS with a certificate the project's own CA code (evilnet.platform.pki)
  issues into the run's temporary directory, then a SCRAM-SHA-512 login as the admin
  principal, whose credential is written at format (``kafka-storage format
  --add-scram``), as the kafka role does.

So the two transports differ in nothing else: same process, same disk, same load.
No authorizer runs on either listener: the figure is the transport's cost.

Rounds alternate the transports (plaintext, tls, tls, plaintext, plaintext, tls, ...),
so that a drift of the machine's load over the run falls on both alike. In each
transport's turn four clients run, each against that listener:

1. the pipeline's producer replay path (routing and KafkaSink with the pipeline's
   settings: acks=all, idempotence, gzip, linger, batch size), as
   ``producer_throughput.py`` times it, into a fresh topic;
2. Kafka's ProducerPerformance with the same records and settings, into a fresh topic;
3. kafka-python's consumer reading one topic back in full (the producer's records,
   written once before the rounds by the pipeline's producer, so its batches are
   those the stream job reads), partitions assigned, from the first poll to the last
   record;
4. Kafka's ConsumerPerformance reading the same topic (the Java client, as the Spark
   Kafka source of the stream job uses it); its fetch rate, group join excluded.

The table gives each client's records/s per transport (median of the rounds, min,
max) and the ratio tls / plaintext of the medians: the ratios, measured in one
process and session, are the figure, not the absolute rates. ``--report FILE`` keeps
it all as JSON; ``--show FILE`` prints a saved report again.

    nice -n 19 .venv/bin/python benchmarks/tls_cost.py [--posts 100000] [--rounds 4]
        [--address 127.0.3.200] [--heap 384m] [--report FILE] [--show FILE]

Needs Java 17 ($EVILNET_JAVA17_HOME) and the staged kafka-kraft archive (`evilnet
stage`; $EVILNET_CACHE names another cache); the archive is unpacked into the run's
temporary directory, the cache is only read. The process lowers its own priority to
nice 19 (its JVMs inherit it) and stops the broker's process group at the end,
whatever happens. No password is ever on a command line: the format's arguments and
the tools' logins are 0600 files. This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from producer_throughput import (
    Inputs,
    client_config,
    measure_producer,
    measure_tool,
    run_java_tool,
    write_inputs,
)
from rich.console import Console
from rich.table import Table

from evilnet.kafka_clients import (
    ADMIN,
    COMMAND_CLIENT,
    SASL_MECHANISM,
    SCRAM_LOGIN_MODULE,
    KafkaSecurity,
)
from evilnet.platform import kraft, pki
from evilnet.platform.secrets import write_private
from evilnet.platform.staging import default_cache_dir

PLAINTEXT, TLS = "plaintext", "tls"
TRANSPORTS = (PLAINTEXT, TLS)
# Each transport's listener: its Kafka name, security protocol and port.
LISTENERS = {PLAINTEXT: ("PLAINTEXT", 9092), TLS: ("SASL_SSL", 9093)}
CONTROLLER_PORT = 9094
# Only 127.0.3.200-210 are this benchmark's to use on the shared machine.
DEFAULT_ADDRESS = "127.0.3.200"
DEFAULT_HEAP = "384m"  # inventories/local's kafka_heap_size
PARTITIONS = 6  # as the tweets topic
SCRAM_ITERATIONS = 8192  # the kafka role's kafka_scram_iterations
TOOL_JVM = ("-Xmx512m",)  # the heap Kafka's perf-test scripts give their tools
READ_TOPIC = "tls-cost.read"
CLIENTS = ("evilnet producer", "ProducerPerformance", "kafka-python consumer",
           "ConsumerPerformance")
JAVA_HOME = Path(os.environ.get("EVILNET_JAVA17_HOME", "/usr/lib/jvm/java-17-openjdk-amd64"))
# Wide enough for the table when the output is a file, not a terminal.
console = Console(stderr=True, width=130)


# --- the broker's configuration (pure: tests/benchmarks check it) -------------------------

def server_properties(address: str, data_dir: Path, keystore: Path, truststore: Path) -> str:
    """One KRaft node, broker and controller, with a PLAINTEXT and a SASL_SSL client
    listener. Between broker and controller: plaintext (one process; no client crosses
    it). The SCRAM listener's JAAS line names no password: a broker checks logins
    against the credentials in its metadata log."""
    listeners = [f"{name}://{address}:{port}" for name, port in LISTENERS.values()]
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{address}:{CONTROLLER_PORT}",
        "controller.listener.names": "CONTROLLER",
        "listeners": ",".join([*listeners, f"CONTROLLER://{address}:{CONTROLLER_PORT}"]),
        "advertised.listeners": ",".join(listeners),
        "listener.security.protocol.map":
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
        "inter.broker.listener.name": "PLAINTEXT",
        "sasl.enabled.mechanisms": SASL_MECHANISM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            f"{SCRAM_LOGIN_MODULE} required;",
        # The kafka role's TLS settings: PEM key and certificate, PEM trust bundle.
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(truststore),
        "log.dirs": str(data_dir),
        "auto.create.topics.enable": "false",
        # One node: every internal topic has one replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # ConsumerPerformance joins a group on every run: no 3 s wait for others.
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def format_arguments(cluster_id: str, config: Path, username: str, password: str) -> str:
    """The storage tool's main class and arguments, for java's ``@file`` (0600: it
    holds the SCRAM password), as the kafka role's storage-format.args."""
    scram = (f"SCRAM-SHA-512=[name={username},iterations={SCRAM_ITERATIONS},"
             f"password={password}]")
    arguments = ["kafka.tools.StorageTool", "format", "--cluster-id", cluster_id,
                 "--config", f'"{config}"', "--add-scram", f'"{scram}"']
    return "\n".join(arguments) + "\n"


TOOLS_LOG4J2 = """\
status = warn
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
"""


# --- the rounds and their summary (pure) --------------------------------------------------

def round_order(rounds: int) -> list[tuple[int, str]]:
    """(round, transport) in measuring order: each round swaps the previous one's
    order, so a steady drift of the machine weighs on both transports alike."""
    order = []
    for number in range(rounds):
        pair = TRANSPORTS if number % 2 == 0 else TRANSPORTS[::-1]
        order.extend((number, transport) for transport in pair)
    return order


def summarize(rates: dict[str, dict[str, list[float]]]) -> dict[str, dict]:
    """Per client: each transport's rates (records/s, in round order), their median,
    min and max, and the ratio tls / plaintext of the medians (with the median and
    range of the rounds' own ratios, each round's tls against its plaintext)."""
    summary = {}
    for client, by_transport in rates.items():
        entry: dict = {transport: {"rounds": values, "median": statistics.median(values),
                                   "min": min(values), "max": max(values)}
                       for transport, values in by_transport.items()}
        paired = [tls / plain for plain, tls in zip(by_transport[PLAINTEXT],
                                                    by_transport[TLS], strict=True)]
        entry["ratio"] = entry[TLS]["median"] / entry[PLAINTEXT]["median"]
        entry["round_ratios"] = {"median": statistics.median(paired), "min": min(paired),
                                 "max": max(paired)}
        summary[client] = entry
    return summary


def consumer_performance_rate(output: str, expected: int) -> float:
    """ConsumerPerformance's fetch rate (records/s while fetching, the group join
    excluded), after checking it read every record."""
    lines = [line for line in output.splitlines() if line.strip()]
    header = next((n for n, line in enumerate(lines) if line.startswith("start.time")), None)
    if header is None or header + 1 >= len(lines):
        sys.exit(f"could not read ConsumerPerformance's summary:\n{output}")
    row = dict(zip((name.strip() for name in lines[header].split(",")),
                   (value.strip() for value in lines[header + 1].split(",")), strict=False))
    if int(row["data.consumed.in.nMsg"]) != expected:
        sys.exit(f"ConsumerPerformance read {row['data.consumed.in.nMsg']} records "
                 f"of {expected}")
    return float(row["fetch.nMsg.sec"])


def render(report: dict) -> Table:
    """The report's table: records/s per transport and client, the ratio."""
    table = Table(title=f"TLS cost: {report['records']:,} records x {report['rounds']} "
                        f"rounds per transport, Kafka {report['kafka']} on one node")
    for column in ("client", "plaintext median (min-max)", "tls median (min-max)",
                   "tls / plaintext", "rounds' ratios median (min-max)"):
        table.add_column(column, justify="left" if column == "client" else "right")
    for client, entry in report["clients"].items():
        cells = [f"{entry[t]['median']:,.0f} ({entry[t]['min']:,.0f}-{entry[t]['max']:,.0f})"
                 for t in TRANSPORTS]
        paired = entry["round_ratios"]
        table.add_row(client, *cells, f"{entry['ratio']:.2f}",
                      f"{paired['median']:.2f} ({paired['min']:.2f}-{paired['max']:.2f})")
    return table


# --- the throwaway broker -----------------------------------------------------------------

@dataclass
class Broker:
    """The running node: its JVM, where it listens, the admin's SCRAM login."""

    address: str
    kafka_lib: Path
    java: str
    security: KafkaSecurity
    tools_log4j: Path
    process: subprocess.Popen | None = None

    def bootstrap(self, transport: str) -> str:
        return f"{self.address}:{LISTENERS[transport][1]}"

    def login(self, transport: str) -> KafkaSecurity | None:
        return self.security if transport == TLS else None

    def kwargs(self, transport: str) -> dict[str, str]:
        login = self.login(transport)
        return login.kwargs() if login else {}

    @property
    def tool_jvm(self) -> list[str]:
        return [*TOOL_JVM, f"-Dlog4j2.configurationFile={self.tools_log4j}"]


def staged_kafka(cache: Path) -> tuple[Path, str]:
    """The staged kafka-kraft archive and its version."""
    manifest = cache / "manifest.json"
    if not manifest.is_file():
        sys.exit(f"no {manifest}: run `evilnet stage` (or set $EVILNET_CACHE)")
    staged = json.loads(manifest.read_text())["maven"].get("kafka-kraft")
    if not staged:
        sys.exit(f"{manifest} has no kafka-kraft archive: run `evilnet stage`")
    return Path(staged["path"]), staged["version"]


def unpack(archive: Path, into: Path) -> Path:
    """The archive's lib directory, unpacked under ``into`` (the cache stays as it is)."""
    with tarfile.open(archive) as packed:
        packed.extractall(into, filter="data")
    (lib,) = into.glob("*/lib")
    return lib


def issue_certificate(pki_dir: Path, address: str) -> tuple[Path, Path]:
    """The broker's PEM keystore and the CA bundle, from a fresh CA of the project's
    own code (a host named ``broker`` at ``address``)."""
    authority = pki.Authority(pki_dir, "tls-cost")
    authority.init()
    (request,) = [r for r in pki.requests_for({"broker": address}, {})
                  if r.name == pki.HOST_CERTIFICATE]
    authority.issue([request], store_password=secrets.token_urlsafe(16), days=2,
                    renew_within=1)
    return authority.paths(request)["pem"], authority.bundle_path


def _refuse_if_taken(address: str) -> None:
    for port in (*(port for _, port in LISTENERS.values()), CONTROLLER_PORT):
        with socket.socket() as probe:
            if probe.connect_ex((address, port)) == 0:
                sys.exit(f"{address}:{port} is in use: give another --address")


def prepare(workdir: Path, address: str, java: str, cache: Path) -> tuple[Broker, str]:
    """Unpack Kafka, issue the certificate, write the configuration and format the
    storage with the admin's SCRAM credential; the broker (not started) and Kafka's
    version."""
    _refuse_if_taken(address)
    archive, version = staged_kafka(cache)
    lib = unpack(archive, workdir / "kafka")
    keystore, truststore = issue_certificate(workdir / "pki", address)
    config = workdir / "server.properties"
    write_private(config, server_properties(address, workdir / "data", keystore,
                                            truststore).encode(), replace=True)
    tools_log4j = workdir / "tools-log4j2.properties"
    tools_log4j.write_text(TOOLS_LOG4J2)
    security = KafkaSecurity(ADMIN.name, secrets.token_urlsafe(24), str(truststore))
    arguments = workdir / "storage-format.args"
    write_private(arguments, format_arguments(kraft.new_cluster_id(), config,
                                              security.username,
                                              security.password).encode(), replace=True)
    try:
        subprocess.run([java, f"-Dlog4j2.configurationFile={tools_log4j}", "-cp",
                        f"{lib}/*", f"@{arguments}"], check=True, capture_output=True)
    finally:
        arguments.unlink()
    return Broker(address, lib, java, security, tools_log4j), version


@contextmanager
def running(broker: Broker, workdir: Path, heap: str) -> Iterator[Broker]:
    """The broker's JVM (the kafka role's options), in its own process group, stopped
    at the end whatever happened."""
    log = (workdir / "kafka.out").open("ab")
    broker.process = subprocess.Popen(
        ["nice", "-n", "19", broker.java, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
         "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
         f"-Dlog4j2.configurationFile={broker.tools_log4j}", "-cp", f"{broker.kafka_lib}/*",
         "kafka.Kafka", str(workdir / "server.properties")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(broker, workdir / "kafka.out")
        yield broker
    finally:
        _stop(broker.process)
        log.close()


def _wait_ready(broker: Broker, log: Path, timeout: float = 120) -> None:
    """Until an admin client gets the cluster's metadata over each listener."""
    deadline = time.monotonic() + timeout
    for transport in TRANSPORTS:
        while True:
            if broker.process.poll() is not None:
                sys.exit(f"the broker exited ({broker.process.returncode}):\n"
                         + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
            try:
                admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap(transport),
                                         client_id="tls-cost", **COMMAND_CLIENT,
                                         **broker.kwargs(transport))
                admin.describe_cluster()
                admin.close()
                break
            except Exception as error:  # any failure: not ready yet
                if time.monotonic() > deadline:
                    sys.exit(f"the broker's {transport} listener is not ready: {error}")
                time.sleep(1)


def _stop(process: subprocess.Popen) -> None:
    """The whole process group: SIGTERM (a clean shutdown), then SIGKILL."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


# --- the measurements ---------------------------------------------------------------------

def create_topics(broker: Broker, names: Sequence[str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap(PLAINTEXT), client_id="tls-cost")
    try:
        admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
    finally:
        admin.close()


def consume_with_kafka_python(broker: Broker, transport: str, topic: str,
                              expected: int) -> float:
    """kafka-python's records/s reading ``topic`` in full, partitions assigned (as the
    Spark source reads), from the first poll to the last record."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap(transport),
                             client_id="tls-cost", enable_auto_commit=False,
                             **broker.kwargs(transport))
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        read = 0
        started = time.perf_counter()
        deadline = time.monotonic() + 600
        while read < expected and time.monotonic() < deadline:
            read += sum(len(records) for records in consumer.poll(timeout_ms=1000).values())
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
    if read != expected:
        sys.exit(f"kafka-python read {read} records of {expected} over {transport}")
    return read / elapsed


def consume_with_tool(broker: Broker, transport: str, topic: str, expected: int,
                      workdir: Path, group: str) -> float:
    config = client_config(workdir / "consumer.properties", broker.login(transport))
    output = run_java_tool(broker.java, broker.kafka_lib,
                           "org.apache.kafka.tools.ConsumerPerformance", [
                               "--bootstrap-server", broker.bootstrap(transport),
                               "--topic", topic, "--num-records", str(expected),
                               "--group", group, "--timeout", "30000",
                               *(["--command-config", str(config)] if config else []),
                           ], broker.tool_jvm)
    return consumer_performance_rate(output, expected)


def measure_turn(broker: Broker, inputs: Inputs, number: int, transport: str,
                 workdir: Path) -> dict[str, float]:
    """The four clients' records/s over one transport in one round."""
    prefix = f"tls-cost.{number}.{transport}"
    create_topics(broker, [f"{prefix}.evilnet", f"{prefix}.evilnet.dead-letter",
                           f"{prefix}.tool"])
    login = broker.login(transport)
    _, evilnet = measure_producer(inputs.stream_file, [broker.bootstrap(transport)],
                                  f"{prefix}.evilnet", login)
    tool = measure_tool(broker.java, broker.kafka_lib, broker.bootstrap(transport), inputs,
                        f"{prefix}.tool", login, broker.tool_jvm)
    python = consume_with_kafka_python(broker, transport, READ_TOPIC, inputs.records)
    java = consume_with_tool(broker, transport, READ_TOPIC, inputs.records, workdir,
                             group=f"{prefix}.consumer")
    return dict(zip(CLIENTS, (evilnet, tool, python, java), strict=True))


def run(args: argparse.Namespace) -> dict:
    rates: dict[str, dict[str, list[float]]] = {c: {t: [] for t in TRANSPORTS} for c in CLIENTS}
    loads: list[float] = []
    started_at, load_start = datetime.now(UTC), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tls-cost-") as temporary:
        workdir = Path(temporary)
        console.log(f"synthesizing {args.posts:,} posts")
        inputs = write_inputs(workdir, args.posts)
        broker, version = prepare(workdir, args.address, args.java, args.cache)
        with running(broker, workdir, args.heap):
            console.log(f"Kafka {version} up on {args.address}; writing {READ_TOPIC}")
            create_topics(broker, [READ_TOPIC, READ_TOPIC + ".dead-letter"])
            # Also the broker's warm-up: its JIT has seen a full load before round 1.
            measure_producer(inputs.stream_file, [broker.bootstrap(PLAINTEXT)], READ_TOPIC,
                             None)
            for number, transport in round_order(args.rounds):
                loads.append(os.getloadavg()[0])
                turn = measure_turn(broker, inputs, number, transport, workdir)
                for client, rate in turn.items():
                    rates[client][transport].append(rate)
                console.log(f"round {number + 1} {transport}: "
                            + ", ".join(f"{c} {r:,.0f}/s" for c, r in turn.items()))
            loads.append(os.getloadavg()[0])
    return {
        "benchmark": "tls_cost", "started": started_at.isoformat(timespec="seconds"),
        "elapsed_s": round((datetime.now(UTC) - started_at).total_seconds()),
        "kafka": version, "address": args.address, "heap": args.heap,
        "listeners": {t: f"{name}://{args.address}:{port}"
                      for t, (name, port) in LISTENERS.items()},
        "tls": f"SASL_SSL, {SASL_MECHANISM} as {ADMIN.name}, RSA {pki.KEY_SIZE} certificate",
        "partitions": PARTITIONS, "replication": 1, "posts": args.posts,
        "records": inputs.records, "mean_record_bytes": round(inputs.mean_size, 1),
        "rounds": args.rounds, "order": [t for _, t in round_order(args.rounds)],
        "load_average": {"start": load_start, "end": os.getloadavg(),
                         "1min_during": {"min": min(loads), "median": statistics.median(loads),
                                         "max": max(loads)}},
        "clients": summarize(rates),
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=100_000)
    # An even count: the order (P T T P P T T P) then cancels a steady drift exactly.
    parser.add_argument("--rounds", type=int, default=4, help="per transport")
    parser.add_argument("--address", default=DEFAULT_ADDRESS)
    parser.add_argument("--heap", default=DEFAULT_HEAP, help="the broker's")
    parser.add_argument("--java", default=str(JAVA_HOME / "bin" / "java"))
    parser.add_argument("--cache", type=Path, default=default_cache_dir())
    parser.add_argument("--report", type=Path, help="write the figures there as JSON")
    parser.add_argument("--show", type=Path, help="print a saved report, measure nothing")
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    if args.show:
        console.print(render(json.loads(args.show.read_text())))
        return
    os.nice(19)  # another engineer's CI shares the cores: its figures come first
    report = run(args)
    text = json.dumps(report, indent=2) + "\n"
    if args.report:
        args.report.write_text(text)
    console.print(render(report))
    print(text, end="")


if __name__ == "__main__":
    main()
