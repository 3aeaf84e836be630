"""The producers' and the stream job's Kafka logins, as their roles rendered them,
against a secured broker (issue 14): a producer service started from a shard's
rendered config writes posts, and a Spark batch read with the Kafka source options
made from the job's rendered client properties file reads them back; the same
read with a wrong password is refused.

The stack is the local one (inventories/local, host roots under .run/hosts), or
the inventory named by $EVILNET_SECURITY_INVENTORY with its host roots under
$EVILNET_SECURITY_ROOTS (a throwaway secured pair, as the branch's verification
ran). The Spark read runs in a Python with pyspark ($EVILNET_SPARK_PYTHON, default
the Spark master's venv) with the staged Kafka connector's jars
($EVILNET_SPARK_KAFKA_JARS, default the spark.jars of the master's
spark-defaults.conf), in local mode: the options it is given are the ones the job
passes to its executors. The login goes to that process on stdin, never on its
command line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from stack_guard import ROLES

from evilnet.contracts import TWEETS_TOPIC
from evilnet.kafka_clients import COMMAND_CLIENT, STREAM_JOB, KafkaSecurity
from evilnet.platform.inventory import Inventory

pytestmark = pytest.mark.stack

REPO_ROOT = Path(__file__).resolve().parents[2]
INVENTORY = Path(os.environ.get("EVILNET_SECURITY_INVENTORY",
                                REPO_ROOT / "inventories" / "local"))
ROOTS = Path(os.environ.get("EVILNET_SECURITY_ROOTS", REPO_ROOT / ".run" / "hosts"))
EVILNET = str(Path(sys.executable).with_name("evilnet"))

# Reads the topic in one batch with the options on stdin (JSON) and prints how many
# records name the producer given as argument, or the error's class and first line.
SPARK_READ = """
import json, sys
from pyspark.sql import SparkSession, functions as F
options, producer = json.load(sys.stdin), sys.argv[1]
spark = (SparkSession.builder.master("local[1]").appName("evilnet-login-test")
         .config("spark.jars", sys.argv[2]).config("spark.ui.enabled", "false")
         .config("spark.eventLog.enabled", "true").config("spark.eventLog.dir", sys.argv[3])
         .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
try:
    rows = (spark.read.format("kafka").options(**options).load()
            .select(F.get_json_object(F.col("value").cast("string"), "$.producer").alias("p"))
            .where(F.col("p") == producer).count())
    print(json.dumps({"rows": rows}))
except Exception as error:
    print(json.dumps({"error": type(error).__name__, "message": str(error)[:2000]}))
finally:
    spark.stop()
"""


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    found = Inventory.load(INVENTORY, roles=ROLES)
    if found.kafka_security() is None:
        pytest.skip(f"{INVENTORY} runs Kafka in plaintext (kafka_security_enabled false)")
    return found


def _rendered_shard(inventory: Inventory) -> Path:
    host = inventory.groups["producers"][0]
    shards = sorted((ROOTS / host / "producers").glob("*/producer.yml"))
    assert shards, f"no shard rendered under {ROOTS / host}: run the producer role"
    return shards[0]


def _job_login(inventory: Inventory) -> Path:
    master = inventory.groups["spark_master"][0]
    config = yaml.safe_load((ROOTS / master / "etc" / "stream-job" / "stream-job.yml")
                            .read_text())
    assert config.get("kafka_client_config"), "the job's config names no Kafka login"
    return Path(config["kafka_client_config"])


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def produced(inventory: Inventory, tmp_path_factory: pytest.TempPathFactory):
    """A producer service from the first shard's rendered config: the Kafka part as
    rendered (brokers, kafka_client_config), its own simulator, shard name and id."""
    rendered = _rendered_shard(inventory)
    config = yaml.safe_load(rendered.read_text())
    assert config.get("kafka_client_config"), f"{rendered} names no Kafka login"
    work = tmp_path_factory.mktemp("producer")
    address = config["metrics_host"]
    port = _free_port(address)
    producer_id = f"login-test-{uuid.uuid4().hex[:8]}"
    token = rendered.parent / config["bearer_token_file"]
    config.update(x_api_base_url=f"http://{address}:{port}", producer_id=producer_id,
                  metrics_port=0, bearer_token_file=str(token))
    (work / "producer.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    simulator = subprocess.Popen(
        [EVILNET, "simulate-x-api", "--host", address, "--port", str(port), "--rate", "20",
         "--token-file", str(token)], stdout=(work / "simulator.log").open("w"),
        stderr=subprocess.STDOUT)
    producer = None
    try:
        time.sleep(3)
        producer = subprocess.Popen([EVILNET, "produce", "--config", str(work / "producer.yml")],
                                    stdout=(work / "producer.log").open("w"),
                                    stderr=subprocess.STDOUT, cwd=work)
        yield producer_id, producer, work
    finally:
        for process in (producer, simulator):
            if process is not None:
                process.terminate()
                process.wait(timeout=90)


def _records_of(inventory: Inventory, producer_id: str, timeout: float) -> int:
    """Records in the posts topic that name ``producer_id``, read as the job's principal
    (assigned partitions, no group), waiting up to ``timeout`` for the first."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=inventory.kafka_bootstrap(),
                             client_id="evilnet-login-test", enable_auto_commit=False,
                             **COMMAND_CLIENT, **inventory.kafka_security(STREAM_JOB).kwargs())
    try:
        partitions = [TopicPartition(TWEETS_TOPIC, p)
                      for p in consumer.partitions_for_topic(TWEETS_TOPIC)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        found, deadline = 0, time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=2_000).values():
                found += sum(json.loads(r.value).get("producer") == producer_id for r in records)
            if found:
                return found
        return found
    finally:
        consumer.close()


def test_a_producer_service_writes_with_its_rendered_login(inventory: Inventory,
                                                           produced) -> None:
    producer_id, producer, work = produced
    found = _records_of(inventory, producer_id, timeout=90)
    assert producer.poll() is None, (work / "producer.log").read_text()[-3000:]
    assert found > 0, (work / "producer.log").read_text()[-3000:]


def _spark_read(inventory: Inventory, options: dict[str, str], producer_id: str,
                events: Path) -> tuple[dict, str]:
    """The read's outcome, and everything the Spark process wrote (its log)."""
    master = inventory.groups["spark_master"][0]
    python = os.environ.get("EVILNET_SPARK_PYTHON", str(ROOTS / master / "venv" / "bin" / "python"))
    jars = os.environ.get("EVILNET_SPARK_KAFKA_JARS")
    if jars is None:
        defaults = ROOTS / master / "etc" / "spark" / "spark-defaults.conf"
        jars = next(line.split(None, 1)[1].strip() for line in defaults.read_text().splitlines()
                    if line.startswith("spark.jars "))
    events.mkdir(exist_ok=True)
    source = {"kafka.bootstrap.servers": inventory.kafka_bootstrap(), "subscribe": TWEETS_TOPIC,
              "startingOffsets": "earliest", "endingOffsets": "latest", **options}
    result = subprocess.run([python, "-c", SPARK_READ, producer_id, jars, str(events)],
                            input=json.dumps(source), capture_output=True, text=True,
                            timeout=300, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(lines[-1]), result.stdout + result.stderr


def test_the_jobs_source_options_read_and_a_wrong_password_is_refused(
        inventory: Inventory, produced, tmp_path: Path) -> None:
    producer_id, _, _ = produced
    assert _records_of(inventory, producer_id, timeout=90) > 0
    login = KafkaSecurity.from_properties(_job_login(inventory))
    assert login.username == STREAM_JOB.name
    read, output = _spark_read(inventory, login.spark_source_options(), producer_id,
                               tmp_path / "events")
    assert read.get("rows", 0) > 0, read
    # Neither Spark's log nor its event log (what its UI and history server show)
    # holds the password.
    events = b"".join(path.read_bytes() for path in (tmp_path / "events").rglob("*")
                      if path.is_file())
    assert events and login.password.encode() not in events
    assert login.password not in output

    wrong = KafkaSecurity(login.username, "not-" + "x" * 28, login.cafile)
    refused, _ = _spark_read(inventory, wrong.spark_source_options(), producer_id,
                             tmp_path / "events-wrong")
    assert "rows" not in refused and "uthentication" in refused["message"], refused
