"""The stream job's highest sustained rate and its freshness, beside a plain count.

Instances of ``spark/job.py`` are deployed in turn by the stream_job role, one
per mode (:data:`MODES`), each with one executor core (``stream_job_cores: 1``)
and the same trigger, reading one fresh benchmark topic (6 partitions,
replication 2, like ``tweets``) from its latest offset:

* **job**: the real job as the role deploys it (production windows and
  watermark) writing into its own keyspace; **two**, **one** and **rocksdb**:
  the job with two queries, with one query, and with one query on the RocksDB
  state store (changelog checkpointing), whatever the role's defaults;
* **plain**: the same job with ``plain_count: true``: one query reading the same
  topic with the same source options and only counting each micro-batch's
  records (no parsing, windows, deduplication or state).

The posts are those of ``--cities`` cities, 5 topics each: up to 20, the list
below; beyond, these and then the catalog's most populous cities (the seed's
1,130 cities: ``--cities 1130``). ``--city-zipf S`` skews the cities' activity:
the k-th city of the list posts about 1/k^S as often as the first (0: the
generator's own weights, 1 to 10 per city).

For each rate of a ladder (after a warm-up at the first rate), this process
produces realistic ``PostRecord`` values (the generator's cities, topics,
authors and retweets, one unique post id per record, keyed and partitioned by
city like the producer, with kafka-python and the producer's settings) at that
paced rate for ``--step-seconds``, with ``created_at`` = the moment of sending.
It then waits until the instance has consumed them all. After the job, the plain
count runs at the job's highest sustained rate (the freshness ratio), then at
the ladder's top rate (its own limit), bisecting below it if it fails there.

* **Sustained**: every micro-batch of the step (``triggerExecution``, from the
  job's log; both queries of the real job) finished within the trigger, the
  instance consumed the step's last record within two triggers (plus 5 s) of its
  sending, and the producer really offered the rate (at least 97 %). The
  ladder stops at the first rate that is not sustained, then bisects
  ``--refine`` times between the last sustained rate and it.
* **Freshness** of a post: from its ``created_at`` to the moment a reader sees
  the ``job_progress`` row whose end offsets include it (polled every 0.2 s;
  the job writes that row right after the micro-batch, whose window rows are
  already in Cassandra). The same measure for both instances; p50 and p95 over
  every post of the step.

The figures are printed as a table and as ratios (job / plain); ``--out`` keeps
them as JSON and ``--report FILE...`` prints saved runs again (e.g. the two
modes measured in separate runs). This is a benchmark, not a test: it asserts
nothing. It needs the local stack up, a free Spark core, and several minutes.

The brokers, Cassandra and the Spark master's UI are inventories/local's (or as
given), with its logins where it is secured, read as ``evilnet`` reads them: the
benchmark writes and reads its topic as the Kafka admin, lets the job's principal
read it (an ACL, taken back at the end: the job's principal reads ``tweets``
only), reads ``job_progress`` as the Cassandra admin after giving the job's role
and the reader on its keyspace what they hold on ``evilnet``, and verifies the
UI's HTTPS with the inventory's CA. The figures are then those of the secured
transport: run it on both to compare (docs/security.md).

    .venv/bin/python benchmarks/stream_job_throughput.py [--rates 250,1000,4000]
        [--trigger-seconds 60] [--step-seconds 180] [--warmup-seconds 90] [--cities 20]
        [--city-zipf 0] [--modes job,plain] [--refine 1] [--out FILE] [--report FILE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import threading
import time
import uuid
from array import array
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    NewTopic,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)
from kafka.partitioner.default import murmur2
from rich.console import Console
from rich.table import Table

from evilnet.cassandra_clients import ADMIN as CASSANDRA_ADMIN
from evilnet.cassandra_clients import KEYSPACE_PERMISSIONS
from evilnet.cities import load_catalog
from evilnet.contracts import PostRecord
from evilnet.kafka_clients import ADMIN, STREAM_JOB
from evilnet.platform.inventory import Inventory
from evilnet.platform.playbook import run_playbook
from evilnet.producer.generator import snowflake, synthesize, synthetic_rules
from evilnet.producer.routing import Line, Router
from evilnet.producer.sink import KafkaSettings
from evilnet.schema import JOB_QUERIES, PLAIN_COUNT_QUERY, POSTS_QUERY, WINDOWS_QUERY
from evilnet.spark.store import CassandraStore, connect

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SPARK_HOST = REPO / ".run" / "hosts" / "spark-master"
INVENTORY = REPO / "inventories" / "local"  # the stack the instances are deployed on
PARTITIONS = 6  # as the tweets topic (kafka role: kafka_tweets_partitions)
CITIES = ["Montréal", "St. John's", "Trois-Rivières", "Toronto", "Vancouver", "Halifax",
          "Québec", "Calgary", "Edmonton", "Ottawa", "Winnipeg", "Victoria", "Saskatoon",
          "Regina", "Sherbrooke", "Gatineau", "Moncton", "Fredericton", "Kelowna", "Laval"]
TOPICS = ["hockey", "food", "traffic", "weather", "music"]
# The instances a run can measure, in the order given: job settings of each
# (stream_job_extra_config) beside the benchmark's own.
MODES = {
    "job": {},
    "two": {"layout": "two", "state_store": "hdfs"},
    "one": {"layout": "one", "state_store": "hdfs"},
    "rocksdb": {"layout": "one", "state_store": "rocksdb"},
    "plain": {"plain_count": True},
}
# Records in the pool the producer sends round-robin (more with many cities).
POOL_RECORDS = 20_000
# Placeholders in a serialized record, replaced at send time.
_ID_MARK = "9999999999999999999"
_TIME_MARK = datetime(2000, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
SETTINGS = KafkaSettings(bootstrap_servers=(), client_id="evilnet-stream-benchmark")
POLL_SECONDS = 0.2
console = Console(width=150)


# --- the records ----------------------------------------------------------------------

@dataclass(frozen=True)
class Template:
    key: bytes
    partition: int
    head: bytes  # ... "id":"
    middle: bytes  # ","created_at":"
    tail: bytes  # ", ...


def benchmark_cities(count: int) -> list[str]:
    """CITIES, then the catalog's most populous cities not among them, ``count`` in all."""
    names = list(CITIES)
    for city in load_catalog().cities:
        if len(names) >= count:
            break
        if city.name not in names:
            names.append(city.name)
    if len(names) < count:
        raise SystemExit(f"the catalog has {len(names)} cities, not {count}")
    return names[:count]


def templates(count: int, cities: list[str], seed: int = 7, zipf: float = 0.0) -> list[Template]:
    """Serialized PostRecords of realistic posts, with the id and created_at left open.

    ``zipf`` 0: the generator's posts of all cities (its own city weights). Above 0,
    each city's own posts (its users, topics and retweets), as many as its Zipf
    weight of ``count`` (at least 8), shuffled together.
    """
    if zipf <= 0:
        return _templates(synthesize(synthetic_rules(cities, TOPICS), posts=count, seed=seed))
    import random

    weights = [1 / rank**zipf for rank in range(1, len(cities) + 1)]
    total = sum(weights)
    out: list[Template] = []
    for index, (city, weight) in enumerate(zip(cities, weights, strict=True)):
        posts = max(8, round(count * weight / total))
        out.extend(_templates(synthesize(synthetic_rules([city], TOPICS), posts=posts,
                                         seed=seed + index * 1024)))
    random.Random(seed).shuffle(out)
    return out


def _templates(posts) -> list[Template]:
    router, out = Router(256 * 1024), []
    marks = (json.dumps(_ID_MARK).encode(), json.dumps(_TIME_MARK.isoformat()
                                                        .replace("+00:00", "Z")).encode())
    for post in posts:
        line = json.dumps(post, ensure_ascii=False).encode()
        for record in router.route(Line(line, len(line))).records:
            value = PostRecord(**{**record.model_dump(), "id": _ID_MARK,
                                  "created_at": _TIME_MARK}).model_dump_json().encode()
            head, rest = value.split(marks[0])
            middle, tail = rest.split(marks[1])
            key = record.city.encode()
            out.append(Template(key, (murmur2(key) & 0x7FFFFFFF) % PARTITIONS,
                                head + b'"', b'"' + middle + b'"', b'"' + tail))
    return out


def iso(moment: float) -> bytes:
    """created_at as PostRecord serializes it (UTC, microseconds, Z)."""
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
            + f".{int(moment * 1_000_000) % 1_000_000:06d}Z").encode()


class PacedProducer:
    """Sends the templates round-robin at a paced rate; remembers each record's created_at
    per partition, in offset order (the partition is chosen here, so offsets follow)."""

    def __init__(self, bootstrap: list[str], topic: str, pool: list[Template],
                 login: dict[str, str]) -> None:
        self.topic, self.pool, self.index = topic, pool, 0
        self.next_id = snowflake(datetime.now(UTC))
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap, client_id=SETTINGS.client_id, acks="all",
            enable_idempotence=True, compression_type="gzip", linger_ms=SETTINGS.linger_ms,
            batch_size=SETTINGS.batch_size, **login)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id=SETTINGS.client_id,
                                      **login)
        self.partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    def end_offsets(self) -> dict[int, int]:
        return {tp.partition: offset for tp, offset in
                self.consumer.end_offsets(self.partitions).items()}

    def run(self, rate: float, seconds: float) -> Sent:
        start_offsets = self.end_offsets()
        created = {p: array("d") for p in range(PARTITIONS)}
        pool, send, topic = self.pool, self.producer.send, self.topic
        started = time.time()
        sent = 0
        while True:
            now = time.time()
            if now - started >= seconds:
                break
            due = min(int(rate * (now - started)) - sent, max(int(rate / 20), 1))
            stamp = iso(now)
            for _ in range(due):
                template = pool[self.index]
                self.index = (self.index + 1) % len(pool)
                value = b"".join((template.head, str(self.next_id).encode(), template.middle,
                                  stamp, template.tail))
                self.next_id += 1
                send(topic, key=template.key, value=value, partition=template.partition)
                created[template.partition].append(now)
            sent += due
            time.sleep(max(0.0, 0.005 - (time.time() - now)))
        ended = time.time()
        self.producer.flush(timeout=120)
        end_offsets = self.end_offsets()
        for p in range(PARTITIONS):
            if end_offsets[p] - start_offsets[p] != len(created[p]):
                raise SystemExit(f"partition {p}: {end_offsets[p] - start_offsets[p]} records "
                                 f"written, {len(created[p])} sent: another writer?")
        return Sent(rate, started, ended, sent, start_offsets, end_offsets, created)

    def close(self) -> None:
        self.producer.close(timeout=30)
        self.consumer.close()


@dataclass
class Sent:
    rate: float
    started: float
    ended: float
    count: int
    start_offsets: dict[int, int]
    end_offsets: dict[int, int]
    created: dict[int, array]

    @property
    def achieved(self) -> float:
        return self.count / (self.ended - self.started)


# --- watching the job -----------------------------------------------------------------

@dataclass(frozen=True)
class Seen:
    """A job_progress row as a reader saw it first."""

    at: float
    query: str
    batch_id: int
    end_offsets: dict[int, int]


class ProgressPoller(threading.Thread):
    """Reads the instance's job_progress rows every POLL_SECONDS; keeps each new one."""

    def __init__(self, store: CassandraStore, job: str) -> None:
        super().__init__(daemon=True)
        self.store, self.job = store, job
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self) -> None:
        last: dict[str, tuple] = {}
        while not self.stopping.is_set():
            try:
                rows = self.store.progress(self.job)
            except Exception as error:  # a slow read: try again
                console.log(f"[yellow]job_progress read failed: {error}")
                rows = {}
            at = time.time()
            for query, row in rows.items():
                offsets = dict(row.end_offsets or {})
                if last.get(query) != (row.batch_id, tuple(sorted(offsets.items()))):
                    last[query] = (row.batch_id, tuple(sorted(offsets.items())))
                    with self.lock:
                        self.seen.append(Seen(at, query, row.batch_id, offsets))
            self.stopping.wait(POLL_SECONDS)

    def rows(self, query: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.query == query]

    def caught_up(self, queries: tuple[str, ...], target: dict[int, int]) -> float | None:
        """When every query's end offsets first reached ``target``, else None."""
        moments = []
        for query in queries:
            moment = next((s.at for s in self.rows(query) if all(
                s.end_offsets.get(p, 0) >= offset for p, offset in target.items())), None)
            if moment is None:
                return None
            moments.append(moment)
        return max(moments)


def batch_log(path: Path, offset: int) -> dict[tuple[str, int], dict]:
    """The job's per-batch log lines (query, batch) -> {duration_ms, input_rows}, after offset."""
    out = {}
    if not path.exists():
        return out
    with path.open("rb") as log:
        log.seek(offset)
        for line in log:
            text = line.decode("utf-8", "replace")
            if '"event": "batch"' in text:
                record = json.loads(text[text.index("{"):])
                out[(record["query"], record["batch"])] = record
    return out


# --- one instance ------------------------------------------------------------------------

@dataclass
class Step:
    mode: str
    rate: float
    achieved: float
    posts: int
    batches: int
    max_batch_s: float
    median_batch_s: float
    max_batch_posts: int
    caught_up_s: float | None  # from the last record sent to the instance having read it
    fresh_p50_s: float | None
    fresh_p95_s: float | None
    not_visible: int
    sustained: bool
    why: str = ""
    warmup: bool = False
    longest_s: dict[str, float] = field(default_factory=dict)  # per query
    trigger_s: int = 0
    load_1m: float = 0.0  # the machine's load average at the step's end


@dataclass
class Instance:
    mode: str
    name: str
    queries: tuple[str, ...]
    fresh_query: str
    deploy_s: float = 0.0
    steps: list[Step] = field(default_factory=list)


def supervisorctl(*args: str) -> str:
    result = subprocess.run([str(SPARK_HOST / "venv" / "bin" / "supervisorctl"), "-c",
                             str(SPARK_HOST / "supervisor" / "supervisord.conf"), *args],
                            capture_output=True, text=True, timeout=120, check=False)
    return result.stdout.strip()


def deploy(variables: dict) -> None:
    """ansible/playbooks/stream-job.yml with these role variables (a deployment waits for
    its health)."""
    run = run_playbook("ansible/playbooks/stream-job.yml", INVENTORY,
                       project_dir=REPO, extra_args=("-e", json.dumps(variables)), timeout=900)
    if run.returncode != 0:
        raise SystemExit("the stream-job playbook failed for the benchmark instance:\n"
                         + run.output[-4500:])


def free_cores(master_ui: str, cafile: str | None = None) -> int | None:
    """The master's free cores (its UI's /json/; HTTPS verified with ``cafile``)."""
    import urllib.request
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(f"{master_ui}/json/", timeout=10,
                                    context=context) as response:
            state = json.load(response)
        return state["cores"] - state["coresused"]
    except OSError:
        return None


def measure_step(instance: Instance, poller: ProgressPoller, producer: PacedProducer,
                 log: tuple[Path, int], rate: float, args: argparse.Namespace,
                 warmup: bool = False) -> Step:
    trigger = args.trigger_seconds
    before = {q: max((s.batch_id for s in poller.rows(q)), default=-1) for q in instance.queries}
    sent = producer.run(rate, args.warmup_seconds if warmup else args.step_seconds)
    deadline = sent.ended + max(60.0, args.wait_triggers * trigger)
    while (done := poller.caught_up(instance.queries, sent.end_offsets)) is None \
            and time.time() < deadline:
        time.sleep(POLL_SECONDS)
    time.sleep(1.0)  # the log line of the last batch
    caught_up = None if done is None else done - sent.ended
    durations = batch_log(*log)
    # The one-query job logs each batch once, as POSTS_QUERY's, for both its outputs.
    logged: dict[tuple[str, int], dict | None] = {}
    for key in {(s.query, s.batch_id) for q in instance.queries for s in poller.rows(q)
                if s.batch_id > before[q]}:
        record = durations.get(key) or durations.get((POSTS_QUERY, key[1]))
        logged[(record["query"], record["batch"]) if record else key] = record
    missing = sum(1 for b in logged.values() if b is None)
    batches = [b for b in logged.values() if b is not None]
    seconds = [b["duration_ms"] / 1000 for b in batches] or [0.0]
    fresh, not_visible = freshness(poller.rows(instance.fresh_query), sent)
    reasons = []
    if sent.achieved < 0.97 * rate:
        reasons.append(f"producer offered only {sent.achieved:.0f}/s")
    if max(seconds) > trigger:
        reasons.append(f"a batch took {max(seconds):.1f} s > trigger")
    if caught_up is None or caught_up > 2 * trigger + 5:
        reasons.append("not caught up within 2 triggers" if caught_up is not None
                       else f"not caught up {deadline - sent.ended:.0f} s after the step")
    if missing:
        reasons.append(f"{missing} batches without a log line")
    quantiles = statistics.quantiles(fresh, n=100) if len(fresh) >= 2 else None
    return Step(instance.mode, rate, sent.achieved, sent.count, len(batches), max(seconds),
                statistics.median(seconds),
                max((b["input_rows"] for b in batches), default=0), caught_up,
                quantiles[49] if quantiles else None, quantiles[94] if quantiles else None,
                not_visible, not reasons, "; ".join(reasons), warmup,
                {q: max((b["duration_ms"] / 1000 for b in batches if b["query"] == q),
                        default=0.0) for q in sorted({b["query"] for b in batches})},
                trigger, os.getloadavg()[0])


def freshness(seen: list[Seen], sent: Sent) -> tuple[list[float], int]:
    """Seconds from each sent record's created_at to the first row that includes it."""
    out: list[float] = []
    not_visible = 0
    for partition, created in sent.created.items():
        first = sent.start_offsets[partition]
        position = 0  # index into created: offset first + position
        for row in seen:
            end = row.end_offsets.get(partition, 0) - first
            while position < min(end, len(created)):
                out.append(row.at - created[position])
                position += 1
        not_visible += len(created) - position
    return out, not_visible


def run_instance(mode: str, args: argparse.Namespace, topic: str, store: CassandraStore,
                 producer: PacedProducer, ladder: list[float], done: list[Instance]) -> None:
    """Deploy the mode's instance, climb the ladder, stop it; ``done`` gets it at once."""
    plain = mode == "plain"
    name = (f"{args.name}-count" if plain else args.name if mode == "job"
            else f"{args.name}-{mode}")
    instance = Instance(mode, name, (PLAIN_COUNT_QUERY,) if plain else JOB_QUERIES,
                        PLAIN_COUNT_QUERY if plain else WINDOWS_QUERY)
    done.append(instance)
    supervisorctl("stop", name)
    shutil.rmtree(SPARK_HOST / "data" / "stream-job" / name / "checkpoint", ignore_errors=True)
    cores = free_cores(args.spark_ui, args.spark_ui_cafile)
    if cores is not None and cores < 1:
        console.log(f"[yellow]the Spark master has no free core: {name} will wait for one")
    log_path = SPARK_HOST / "log" / "stream-job" / f"{name}.out"
    log_offset = log_path.stat().st_size if log_path.exists() else 0
    console.log(f"[bold]{mode}[/]: deploying {name} (trigger {args.trigger_seconds} s, 1 core)")
    started = time.time()
    deploy({"stream_job_name": name, "stream_job_topic": topic,
            "stream_job_keyspace": args.keyspace, "stream_job_cores": 1,
            "stream_job_trigger_seconds": args.trigger_seconds,
            "stream_job_health_timeout": 300,
            # The production instance's metrics endpoint and Spark UI (Prometheus
            # scrapes them) stay its own; the tests' instance has UI port 4041.
            "stream_job_metrics_port": 0, "stream_job_ui_port": 4043 if plain else 4042,
            # The job's own limit is measured: no bound on a batch.
            "stream_job_max_offsets_per_trigger": 0,
            "stream_job_extra_config": {"starting_offsets": "latest", "plain_count": plain,
                                        **MODES[mode]}})
    instance.deploy_s = time.time() - started
    poller = ProgressPoller(store, name)
    poller.start()
    log = (log_path, log_offset)
    try:
        console.log(f"{mode}: warm-up, {args.warmup_seconds} s at {ladder[0]:g} posts/s")
        instance.steps.append(measure_step(instance, poller, producer, log, ladder[0],
                                           args, warmup=True))
        console.log(_step_line(instance.steps[-1]))
        passed, failed = None, None
        for rate in ladder:
            step = measure_step(instance, poller, producer, log, rate, args)
            instance.steps.append(step)
            console.log(_step_line(step))
            if not step.sustained:
                failed = rate
                break
            passed = rate
        for _ in range(args.refine if passed is not None and failed is not None else 0):
            rate = round((passed + failed) / 2, -1)
            if rate in (passed, failed):
                break
            step = measure_step(instance, poller, producer, log, rate, args)
            instance.steps.append(step)
            console.log(_step_line(step))
            passed, failed = (rate, failed) if step.sustained else (passed, rate)
    finally:
        poller.stopping.set()
        poller.join()
        # Stopped and undefined: a later `make up` must not start it again.
        deploy({"stream_job_name": name, "stream_job_state": "absent"})


def _step_line(step: Step) -> str:
    verdict = "[green]sustained" if step.sustained else f"[red]not sustained[/] ({step.why})"
    fresh = (f"freshness p50 {step.fresh_p50_s:.1f} s, p95 {step.fresh_p95_s:.1f} s"
             if step.fresh_p50_s is not None else "no freshness")
    label = "warm-up " if step.warmup else ""
    longest = ", ".join(f"{q} {s:.1f} s" for q, s in step.longest_s.items())
    return (f"{step.mode} {label}{step.rate:g}/s: offered {step.achieved:.0f}/s, "
            f"{step.batches} batches, longest {longest}, {fresh}: {verdict}")


# --- the report ---------------------------------------------------------------------------

def best(instance: dict) -> dict | None:
    sustained = [s for s in instance["steps"] if s["sustained"] and not s["warmup"]]
    return max(sustained, key=lambda s: s["rate"]) if sustained else None


def report(results: list[dict]) -> None:
    instances = {i["mode"]: {**i, "meta": result["meta"]}
                 for result in results for i in result["instances"]}
    meta = results[-1]["meta"]
    table = Table(title=f"stream job vs plain count ({meta.get('cities', 20)} cities x "
                        f"{meta.get('topics_per_city', 5)} topics, {meta['step_seconds']:g} s "
                        "per rate, 1 executor core each)")
    for column in ("mode", "trigger s", "posts/s offered", "achieved", "batches",
                   "longest batch s", "median batch s", "caught up s", "fresh p50 s",
                   "fresh p95 s", "load", "sustained"):
        table.add_column(column, justify="left" if column in ("mode", "sustained") else "right")

    def fmt(value, digits=1):
        return "-" if value is None else f"{value:.{digits}f}"

    for mode in (m for m in MODES if m in instances):
        for step in sorted((s for s in instances.get(mode, {"steps": []})["steps"]
                            if not s["warmup"]), key=lambda s: s["rate"]):
            table.add_row(mode, str(instances[mode]["meta"]["trigger_seconds"]),
                          f"{step['rate']:g}", f"{step['achieved']:.0f}",
                          str(step["batches"]), " / ".join(
                              f"{q} {v:.1f}" for q, v in step.get("longest_s", {}).items())
                          or fmt(step["max_batch_s"]),
                          fmt(step["median_batch_s"]), fmt(step["caught_up_s"]),
                          fmt(step["fresh_p50_s"]), fmt(step["fresh_p95_s"]),
                          fmt(step.get("load_1m")),
                          "yes" if step["sustained"] else f"no: {step['why']}")
    console.print(table)
    tops = {mode: best(instances[mode]) for mode in MODES if mode in instances}
    for mode, top in tops.items():
        console.print(f"{mode}: highest sustained rate "
                      f"{'none' if top is None else format(top['rate'], 'g')} posts/s")
    plain = tops.get("plain")
    for mode, job in tops.items():
        if mode == "plain" or not (job and plain):
            continue
        plain_limited = all(s["sustained"] or "producer" in s["why"]
                            for s in instances["plain"]["steps"])
        console.print(f"sustained rate, {mode} / plain count: {job['rate'] / plain['rate']:.2f}"
                      + (" (at most: the plain count was never saturated)"
                         if plain_limited else ""))
        same = next((s for s in instances["plain"]["steps"]
                     if s["rate"] == job["rate"] and not s["warmup"]), None)
        if same and same["fresh_p50_s"] and job["fresh_p50_s"]:
            console.print(
                f"freshness at {job['rate']:g} posts/s, {mode} / plain count: "
                f"p50 {job['fresh_p50_s']:.1f} / {same['fresh_p50_s']:.1f} s = "
                f"{job['fresh_p50_s'] / same['fresh_p50_s']:.2f}, "
                f"p95 {job['fresh_p95_s']:.1f} / {same['fresh_p95_s']:.1f} s = "
                f"{job['fresh_p95_s'] / same['fresh_p95_s']:.2f}")
    console.print(f"measured {meta['started']} on {meta['machine']}")


# --- main ----------------------------------------------------------------------------------

def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="250,1000,4000",
                        type=lambda text: [float(r) for r in text.split(",")],
                        help="posts/s, increasing (default: %(default)s)")
    # The production trigger: the hour query's per-batch cost (~25-45 s here) exceeds
    # shorter triggers at any rate.
    parser.add_argument("--trigger-seconds", type=int, default=60)
    parser.add_argument("--step-seconds", type=float, default=180,
                        help="seconds of production per rate (default: 3 triggers)")
    parser.add_argument("--warmup-seconds", type=float, default=90)
    parser.add_argument("--cities", type=int, default=len(CITIES),
                        help="cities of the posts, 5 topics each: the list's, then the "
                        "catalog's most populous (default: %(default)s)")
    parser.add_argument("--city-zipf", type=float, default=0.0,
                        help="Zipf exponent of the cities' activity, 0 for the generator's "
                        "weights (default: %(default)s)")
    parser.add_argument("--wait-triggers", type=float, default=4,
                        help="how long to wait for the instance to catch up after a step, "
                        "in triggers (beyond 2 triggers + 5 s a step is not sustained "
                        "anyway; default: %(default)s)")
    parser.add_argument("--refine", type=int, default=1,
                        help="bisections between the last sustained rate and the first not")
    parser.add_argument("--modes", default="job,plain",
                        help=f"the instances, in order, of: {', '.join(MODES)} "
                        "(default: %(default)s)")
    parser.add_argument("--name", default="stream-job-bench", help="the instance's name "
                        "(the plain count's is NAME-count)")
    parser.add_argument("--keyspace", default="evilnet_bench")
    parser.add_argument("--bootstrap", default=os.environ.get("EVILNET_KAFKA_BOOTSTRAP"),
                        help="the brokers [default: the inventory's]")
    parser.add_argument("--cassandra", default=os.environ.get("EVILNET_CASSANDRA_HOSTS"),
                        help="Cassandra's nodes [default: the inventory's]")
    parser.add_argument("--spark-ui", help="the master's web UI [default: the inventory's]")
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    parser.add_argument("--report", type=Path, nargs="+", help="print saved runs, measure nothing")
    return parser.parse_args()


def _job_may_read(admin: KafkaAdminClient, topic: str, revoke: bool = False) -> None:
    """Let the job's principal read the benchmark's topic (a secured Kafka: it reads
    ``tweets`` only), or take that back."""
    user = f"User:{STREAM_JOB.name}"
    if revoke:
        admin.delete_acls([ACLFilter(user, "*", ACLOperation.READ, ACLPermissionType.ALLOW,
                                     ResourcePatternFilter(ResourceType.TOPIC, topic,
                                                           ACLResourcePatternType.LITERAL))])
        return
    result = admin.create_acls([ACL(user, "*", ACLOperation.READ, ACLPermissionType.ALLOW,
                                    ResourcePattern(ResourceType.TOPIC, topic,
                                                    ACLResourcePatternType.LITERAL))])
    if result["failed"]:
        raise SystemExit(f"cannot let {user} read {topic}: {result['failed']}")


def _grant_keyspace(session, keyspace: str) -> None:
    """Give the job's role and the reader on the benchmark's keyspace what they hold on
    the pipeline's (a secured Cassandra: their grants name ``evilnet`` only)."""
    for role, permissions in KEYSPACE_PERMISSIONS.items():
        for permission in sorted(permissions):
            session.execute(f"GRANT {permission} ON KEYSPACE {keyspace} TO {role.name}")


def main() -> None:
    args = _arguments()
    if args.report:
        report([json.loads(path.read_text()) for path in args.report])
        return
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= set(MODES):
        raise SystemExit(f"--modes takes some of {', '.join(MODES)}")
    meta = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{os.cpu_count()} cores, shared with the whole local stack",
            "trigger_seconds": args.trigger_seconds, "step_seconds": args.step_seconds,
            "warmup_seconds": args.warmup_seconds, "rates": args.rates,
            "cities": args.cities, "city_zipf": args.city_zipf,
            "topics_per_city": len(TOPICS), "modes": modes}
    inventory = Inventory.load(INVENTORY, roles=REPO / "ansible" / "roles")
    kafka = inventory.kafka_security(ADMIN)
    login = kafka.kwargs() if kafka else {}
    args.bootstrap = args.bootstrap or inventory.kafka_bootstrap()
    # Nodes named by hand are plaintext (evilnet's rule); the inventory's get its admin's
    # login, and `evilnet schema apply` on the inventory takes it by itself.
    if args.cassandra:
        cassandra = None
        schema = [str(BIN / "evilnet"), "schema", "apply", "--cassandra", args.cassandra]
    else:
        cassandra = inventory.cassandra_security(CASSANDRA_ADMIN)
        schema = [str(BIN / "evilnet"), "-i", str(INVENTORY), "--roles", str(inventory.roles),
                  "schema", "apply"]
        args.cassandra = ",".join(inventory.address(host)
                                  for host in inventory.groups["cassandra"])
    args.spark_ui = args.spark_ui or inventory.spark_master_ui()
    args.spark_ui_cafile = inventory.spark_ui_cafile()
    result = subprocess.run([*schema, "--keyspace", args.keyspace], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"evilnet schema apply failed: {result.stderr}")
    bootstrap = [server.strip() for server in args.bootstrap.split(",")]
    topic = f"evilnet.bench.tweets-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=SETTINGS.client_id,
                             **login)
    admin.create_topics([NewTopic(topic, PARTITIONS, 2,
                                  topic_configs={"retention.ms": "86400000"})])
    if kafka:
        _job_may_read(admin, topic)
    console.log(f"topic {topic}; records from the generator")
    cities = benchmark_cities(args.cities)
    pool = templates(max(POOL_RECORDS, 50 * len(cities)), cities, zipf=args.city_zipf)
    console.log(f"{len(pool)} records of {len({t.key for t in pool})} cities in the pool")
    check = PostRecord.model_validate_json(b"".join((pool[0].head, b"1", pool[0].middle,
                                                    iso(time.time()), pool[0].tail)))
    assert check.city.encode() == pool[0].key
    cluster, session = connect(args.cassandra.split(","), security=cassandra)
    if cassandra:
        _grant_keyspace(session, args.keyspace)
    producer = PacedProducer(bootstrap, topic, pool, login)
    instances: list[Instance] = []
    try:
        for mode in modes:
            ladder = list(args.rates)
            job = max((top for i in instances if i.mode != "plain"
                       and (top := best(asdict(i))) is not None),
                      key=lambda step: step["rate"], default=None)
            if mode == "plain" and job is not None:
                # The plain count at the job's highest sustained rate (the freshness
                # ratio), then at the top rate (its own limit).
                ladder = [job["rate"], *(rate for rate in ladder[-1:] if rate > job["rate"])]
            run_instance(mode, args, topic, CassandraStore(session, args.keyspace), producer,
                         ladder, instances)
    finally:
        producer.close()
        cluster.shutdown()
        if kafka:
            _job_may_read(admin, topic, revoke=True)
        admin.delete_topics([topic])
        admin.close()
        saved = {"meta": meta, "instances": [asdict(i) for i in instances]}
        if args.out:
            args.out.write_text(json.dumps(saved, indent=1))
    report([saved])


if __name__ == "__main__":
    main()
