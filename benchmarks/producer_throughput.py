"""The producer's sustained throughput beside Kafka's own ProducerPerformance tool.

Both write to the same brokers, into a fresh topic with the pipeline's settings
(replication 2, min.insync.replicas 2), with the same acks (all), idempotence,
compression (gzip), linger and batch size, and the same records: the tool gets
the producer's own PostRecord values as its payload file, so record size and
compressibility match. The producer is timed from the first line read to the
last acknowledgement (``close()`` flushes), reading a synthetic stream file
through the whole routing path, as ``evilnet replay`` does.

    python benchmarks/producer_throughput.py [--posts 200000] [--inventory DIR]
        [--bootstrap HOST:PORT,...] [--kafka-lib DIR]

The brokers and the login are the inventory's (default inventories/local): on a
secured Kafka both clients log in as the admin principal over SASL_SSL (the
benchmark's topics are outside the producers' ACLs), with the password and CA
bundle from the inventory's files, as ``evilnet`` reads them; the tool gets them
in a 0600 ``--producer.config`` file, never on its command line. The figures of
one run are therefore those of the stack's own transport, TLS or not; TLS's own
cost, both transports of one broker at one load, is ``tls_cost.py``'s (it shares
this script's records, timing and tool run).

``--kafka-lib`` is the ``lib`` directory of a Kafka installation (it holds the
kafka-tools jar); by default the one the local stack installed under ``.run/``.
This is a benchmark, not a test: it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kafka.admin import KafkaAdminClient, NewTopic

from evilnet.kafka_clients import ADMIN, KafkaSecurity
from evilnet.platform.inventory import Inventory
from evilnet.platform.secrets import write_private
from evilnet.producer.generator import synthesize, synthetic_rules
from evilnet.producer.routing import Line, Router
from evilnet.producer.service import run_replay
from evilnet.producer.sink import KafkaSettings, KafkaSink

REPO = Path(__file__).resolve().parents[1]
CITIES = ["Montréal", "St. John's", "Trois-Rivières", "Toronto", "Vancouver", "Halifax"]
TOPICS = ["hockey", "food", "traffic", "weather", "music"]
SETTINGS = KafkaSettings(bootstrap_servers=(), client_id="evilnet-benchmark")
# ProducerPerformance's final line: "N records sent, R records/sec (M MB/sec), ..."
_SUMMARY = re.compile(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\)")


def _default_kafka_lib() -> Path | None:
    found = sorted(REPO.glob(".run/hosts/*/opt/kafka-*/lib"))
    return found[0] if found else None


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=200_000)
    parser.add_argument("--inventory", type=Path, default=REPO / "inventories" / "local",
                        help="whose brokers and login to use")
    parser.add_argument("--bootstrap", default=os.environ.get("EVILNET_KAFKA_BOOTSTRAP"),
                        help="the brokers [default: the inventory's]")
    parser.add_argument("--kafka-lib", type=Path,
                        default=os.environ.get("EVILNET_KAFKA_LIB") or _default_kafka_lib())
    parser.add_argument("--java", default=os.environ.get("JAVA", "java"))
    return parser.parse_args()


@dataclass(frozen=True)
class Inputs:
    """The same records for every client: the stream file the producer replays, the
    tool's payload file (the producer's own record values, one a line), how many
    records the posts make and their mean value size."""

    stream_file: Path
    payload_file: Path
    records: int
    mean_size: float


def write_inputs(workdir: Path, posts: int) -> Inputs:
    """Synthesize ``posts`` (seed 42) and route them as the producer does."""
    stream_file, payload_file = workdir / "stream.jsonl", workdir / "payloads.txt"
    router = Router(256 * 1024)
    records = total_bytes = 0
    with stream_file.open("wb") as stream, payload_file.open("wb") as payloads:
        for post in synthesize(synthetic_rules(CITIES, TOPICS), posts=posts, seed=42):
            line = json.dumps(post, ensure_ascii=False).encode()
            stream.write(line + b"\n")
            for record in router.route(Line(line, len(line))).records:
                value = record.model_dump_json().encode()
                payloads.write(value + b"\n")
                records += 1
                total_bytes += len(value)
    return Inputs(stream_file, payload_file, records, total_bytes / records)


def measure_producer(stream_file: Path, bootstrap: list[str], topic: str,
                     security: KafkaSecurity | None) -> tuple[float, float]:
    """Posts per second and records per second, first line read to last acknowledgement
    (``topic`` and ``topic.dead-letter`` must exist)."""
    settings = KafkaSettings(bootstrap, SETTINGS.client_id,
                             client_settings=security.kwargs() if security else {})
    started = time.perf_counter()
    summary, _ = run_replay(stream_file, sink_factory=lambda m: KafkaSink(settings, m),
                            tweets_topic=topic, dead_letter_topic=topic + ".dead-letter")
    elapsed = time.perf_counter() - started
    if summary.unacknowledged or summary.dead_letters:
        sys.exit(f"the producer run was not clean: {summary.to_json()}")
    return summary.lines_read / elapsed, summary.records / elapsed


def client_config(path: Path, security: KafkaSecurity | None) -> Path | None:
    """A Java tool's login: the client properties in a 0600 file at ``path`` (the
    password never on its command line; the tools' ``--producer.config`` or
    ``--command-config``), or None on a plaintext listener."""
    if security is None:
        return None
    write_private(path, security.properties_text().encode(), replace=True)
    return path


def run_java_tool(java: str, kafka_lib: Path, main_class: str, arguments: list[str],
                  jvm_options: Sequence[str] = ()) -> str:
    """A Kafka tool's standard output (its classes from ``kafka_lib``)."""
    command = [java, *jvm_options, "-cp", f"{kafka_lib}/*", main_class, *arguments]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def measure_tool(java: str, kafka_lib: Path, bootstrap: str, inputs: Inputs, topic: str,
                 security: KafkaSecurity | None, jvm_options: Sequence[str] = ()) -> float:
    """ProducerPerformance's records per second, the producer's settings and records."""
    config = client_config(inputs.payload_file.with_name("producer.properties"), security)
    output = run_java_tool(java, kafka_lib, "org.apache.kafka.tools.ProducerPerformance", [
        "--topic", topic, "--num-records", str(inputs.records), "--throughput", "-1",
        "--payload-file", str(inputs.payload_file), "--payload-delimiter", "\n",
        "--producer-props", f"bootstrap.servers={bootstrap}", "acks=all",
        "enable.idempotence=true", "compression.type=gzip",
        f"linger.ms={SETTINGS.linger_ms}", f"batch.size={SETTINGS.batch_size}",
        *(["--producer.config", str(config)] if config else []),
    ], jvm_options)
    return producer_performance_rate(output)


def producer_performance_rate(output: str) -> float:
    """The records/s of ProducerPerformance's last summary line."""
    summary = _SUMMARY.findall(output)
    if not summary:
        sys.exit(f"could not read ProducerPerformance's summary:\n{output}")
    return float(summary[-1][1])


def main() -> None:
    args = _arguments()
    if args.kafka_lib is None or not any(Path(args.kafka_lib).glob("kafka-tools-*.jar")):
        sys.exit("no kafka-tools jar: give --kafka-lib DIR (a Kafka installation's lib/)")
    inventory = Inventory.load(args.inventory, roles=REPO / "ansible" / "roles")
    args.bootstrap = args.bootstrap or inventory.kafka_bootstrap()
    security = inventory.kafka_security(ADMIN)
    bootstrap = [server.strip() for server in args.bootstrap.split(",")]
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    topics = [f"{prefix}.producer", f"{prefix}.producer.dead-letter", f"{prefix}.tool"]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="evilnet-benchmark",
                             **(security.kwargs() if security else {}))
    admin.create_topics([NewTopic(name, 6, 2, topic_configs={"min.insync.replicas": "2"})
                         for name in topics])
    try:
        with tempfile.TemporaryDirectory() as workdir:
            inputs = write_inputs(Path(workdir), args.posts)
            post_rate, producer_rate = measure_producer(inputs.stream_file, bootstrap,
                                                        topics[0], security)
            tool_rate = measure_tool(args.java, args.kafka_lib, args.bootstrap, inputs,
                                     topics[2], security)
    finally:
        admin.delete_topics(topics)
        admin.close()
    print(f"records: {inputs.records} from {args.posts} posts, "
          f"mean value {inputs.mean_size:.0f} bytes; "
          f"acks=all, idempotent, gzip, linger.ms={SETTINGS.linger_ms}, "
          f"batch.size={SETTINGS.batch_size}; brokers {args.bootstrap}, "
          f"{'SASL_SSL (SCRAM-SHA-512) as ' + security.username if security else 'PLAINTEXT'}")
    print(f"evilnet producer (routing + kafka-python): {producer_rate:10.0f} records/s "
          f"({post_rate:.0f} posts/s)")
    print(f"Kafka ProducerPerformance (Java client):   {tool_rate:10.0f} records/s")
    print(f"ratio producer / ProducerPerformance:      {producer_rate / tool_rate:10.2f}")


if __name__ == "__main__":
    main()
