"""The producer processes against the real 2-broker Kafka.

Each test writes to topics of its own (created here with the pipeline's
replication, deleted after), so that it neither feeds the Spark job test data
nor reads another test's records.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from kafka import TopicPartition
from kafka.admin import NewTopic
from producer_helpers import TOKEN, Simulator, free_port, wait_until, write_config
from stack_clients import kafka_admin, kafka_consumer

from evilnet.contracts import (
    ACCESS_LEVELS,
    DEFAULT_ACCESS_LEVEL,
    DeadLetter,
    DeadLetterReason,
    PostRecord,
)
from evilnet.producer.generator import synthesize, synthetic_rules
from evilnet.producer.metrics import RECONNECTS
from evilnet.producer.routing import Line, Router
from evilnet.waiting import poll_until

pytestmark = pytest.mark.stack

EVILNET = [sys.executable, "-c", "from evilnet.cli import main; main()"]
LIMIT = 256 * 1024


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[tuple[str, str]]:
    prefix = f"test-producer-{uuid.uuid4().hex[:8]}"
    names = (f"{prefix}.tweets", f"{prefix}.dead-letter")
    admin = kafka_admin(kafka_bootstrap, client_id="producer-tests")
    admin.create_topics([NewTopic(name, 3, 2, topic_configs={"min.insync.replicas": "2"})
                         for name in names])
    yield names
    admin.delete_topics(list(names))
    admin.close()


def read_topic(bootstrap: str, topic: str, *, at_least: int = 0,
               timeout: float = 60) -> list[tuple[bytes | None, bytes]]:
    """Every record of ``topic`` (after waiting for ``at_least`` of them)."""
    consumer = kafka_consumer(bootstrap=bootstrap, enable_auto_commit=False,
                              isolation_level="read_committed")
    try:
        def partition_ends() -> tuple[list[TopicPartition], dict[TopicPartition, int]]:
            partitions = [TopicPartition(topic, p)
                          for p in consumer.partitions_for_topic(topic) or ()]
            return partitions, consumer.end_offsets(partitions) if partitions else {}

        _, (partitions, ends) = poll_until(
            partition_ends, lambda found: sum(found[1].values()) >= at_least, timeout,
            interval=0.2)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[tuple[bytes | None, bytes]] = []
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for batch in consumer.poll(timeout_ms=1000).values():
                records += [(record.key, record.value) for record in batch]
        return records
    finally:
        consumer.close()


def topic_size(bootstrap: str, topic: str) -> int:
    consumer = kafka_consumer(bootstrap=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values()) if partitions else 0
    finally:
        consumer.close()


def expected_records(payloads: list[bytes]) -> Counter:
    """(key, value) of every record the payloads should become, as the Router makes them."""
    router = Router(LIMIT)
    return Counter(
        (record.city.encode(), record.model_dump_json().encode())
        for payload in payloads for record in router.route(Line(payload, len(payload))).records
    )


def as_records(read: list[tuple[bytes | None, bytes]]) -> Counter:
    """(key, value) of records read back, each checked against the record schema.

    The stream service stamps each record with its producer and the time it read the
    line (PostRecord.producer, received_at), which a Router of the test does not know:
    the values are compared without those two.
    """
    unstamped = []
    for key, value in read:
        record = PostRecord.model_validate_json(value)
        assert record.city.encode() == key
        unstamped.append((key, record.model_copy(
            update={"producer": None, "received_at": None}).model_dump_json().encode()))
    return Counter(unstamped)


def start(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([*EVILNET, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **popen)


def stop(process: subprocess.Popen, timeout: float = 90) -> tuple[int, str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out.decode(), err.decode()


# --- the stream service ------------------------------------------------------------

@pytest.mark.kraft
def test_stream_to_kafka_end_to_end(tmp_path: Path, simulator: Simulator, producer_config: dict,
                                    kafka_bootstrap: str,
                                    producer_kafka: dict, topics: tuple[str, str]) -> None:
    metrics_port = free_port()
    config = write_config(tmp_path / "producer.yaml", **{
        **producer_config, **producer_kafka,
        "tweets_topic": topics[0], "dead_letter_topic": topics[1],
        "metrics_host": "127.0.0.1", "metrics_port": metrics_port})

    producer = start("produce", "--config", str(config), "--log-level", "DEBUG")
    wait_until(lambda: simulator.state()["posts_sent"] >= 300, what="300 posts")

    def rewrite(rules: list[dict]) -> None:
        write_config(config, **{**producer_config, **producer_kafka,
                                "tweets_topic": topics[0], "dead_letter_topic": topics[1],
                                "metrics_host": "127.0.0.1", "metrics_port": metrics_port,
                                "rules": rules})

    # SIGHUP: the rules change on the live connection.
    kept_rules = producer_config["rules"][1:]
    rewrite(kept_rules)
    producer.send_signal(signal.SIGHUP)
    removed_tag = producer_config["rules"][0]["tag"]
    wait_until(lambda: removed_tag not in {
        rule["tag"] for rule in simulator.state()["rules"]["app-1"]}, what="the SIGHUP")
    assert simulator.state()["connections_opened"] == 1

    # A SIGHUP whose rule the API refuses is logged; the producer streams on.
    calls = len(simulator.state()["rules_calls"])
    too_long = "z" * (ACCESS_LEVELS[DEFAULT_ACCESS_LEVEL].rule_max_length + 1)
    rewrite([*kept_rules, {"value": too_long, "tag": "city=Laval;topic=z"}])
    producer.send_signal(signal.SIGHUP)
    wait_until(lambda: any(call.get("action") == "add"
                           for call in simulator.state()["rules_calls"][calls:]),
               what="the refused SIGHUP")
    time.sleep(0.5)
    assert producer.poll() is None
    assert simulator.state()["connections_opened"] == 1
    rewrite(kept_rules)

    simulator.generation(paused=True)
    sent = simulator.sent_payloads()
    expected = expected_records(sent)
    read = read_topic(kafka_bootstrap, topics[0], at_least=sum(expected.values()))
    metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    code, _, logs = stop(producer)

    assert code == 0, logs[-2000:]
    assert as_records(read) == expected
    assert read_topic(kafka_bootstrap, topics[1], timeout=0) == []
    assert f'evilnet_producer_posts_received_total{{source="x-stream"}} {len(sent)}.0' in metrics
    assert TOKEN not in logs
    assert "Bearer ***" in logs  # tweepy's DEBUG lines did print the header, masked

    # A second start changes no rule: one read, no add, no delete.
    calls_before = len(simulator.state()["rules_calls"])
    connections_before = simulator.state()["connections_opened"]
    again = start("produce", "--config", str(config))
    wait_until(lambda: simulator.state()["connections_opened"] > connections_before,
               what="the second start")
    code, _, logs = stop(again)
    assert code == 0, logs[-2000:]
    calls = simulator.state()["rules_calls"][calls_before:]
    assert [call["method"] for call in calls] == ["GET"]


def test_faults_lose_no_post_sent_after_the_reconnect(
        tmp_path: Path, simulator: Simulator, producer_config: dict, kafka_bootstrap: str,
        producer_kafka: dict,
        topics: tuple[str, str]) -> None:
    metrics_port = free_port()
    config = write_config(tmp_path / "producer.yaml", **{
        **producer_config, **producer_kafka,
        "tweets_topic": topics[0], "dead_letter_topic": topics[1], "reconnect_time_scale": 0.02,
        "metrics_host": "127.0.0.1", "metrics_port": metrics_port})
    producer = start("produce", "--config", str(config))

    def connections() -> int:
        return simulator.state()["connections_opened"]

    def sent() -> int:
        return simulator.state()["posts_sent"]

    wait_until(lambda: sent() >= 100, what="posts before the faults")
    for faults in ([{"kind": "drop"}],
                   [{"kind": "refuse", "status": 503, "count": 2}, {"kind": "drop"}],
                   [{"kind": "refuse", "status": 429, "count": 1}, {"kind": "drop"}],
                   [{"kind": "stall"}]):
        opened, before = connections(), sent()
        for fault in faults:
            simulator.fault(**fault)
        wait_until(lambda opened=opened: connections() > opened, what=f"reconnect after {faults}")
        wait_until(lambda before=before: sent() >= before + 100, what="posts after it")

    simulator.generation(paused=True)
    expected = expected_records(simulator.sent_payloads())
    read = read_topic(kafka_bootstrap, topics[0], at_least=sum(expected.values()))
    metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    code, _, logs = stop(producer)

    assert code == 0, logs[-2000:]
    assert as_records(read) == expected
    reconnects = dict(re.findall(RECONNECTS + r'_total\{cause="([a-z-]+)"\} (\d+)', metrics))
    assert reconnects == {"dropped": "3", "http-error": "2", "rate-limited": "1", "stall": "1"}


def test_a_refused_token_stops_the_producer_with_a_clear_message(
        tmp_path: Path, simulator: Simulator, producer_config: dict, kafka_bootstrap: str,
        producer_kafka: dict,
        topics: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(producer_config["bearer_token_env"], "revoked-token-1234")
    config = write_config(tmp_path / "producer.yaml", **{
        **producer_config, **producer_kafka,
        "tweets_topic": topics[0], "dead_letter_topic": topics[1]})

    result = subprocess.run([*EVILNET, "produce", "--config", str(config)], capture_output=True,
                            text=True, timeout=60)

    assert result.returncode == 1
    assert ("the X API refused the bearer token from environment variable "
            "EVILNET_TEST_X_TOKEN (HTTP 401)") in result.stderr
    assert "revoked-token-1234" not in result.stderr + result.stdout


# --- replay ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_replay_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rules = synthetic_rules(["Montréal", "St. John's", "Trois-Rivières", "Toronto"],
                            ["hockey", "food", "traffic"])
    path = tmp_path_factory.mktemp("replay") / "posts.jsonl"
    with path.open("w", encoding="utf-8") as file:
        for post in synthesize(rules, posts=60_000, seed=11):
            file.write(json.dumps(post, ensure_ascii=False) + "\n")
    return path


def _replay(path: Path, kafka: dict, topics: tuple[str, str], *extra: str,
            **popen) -> subprocess.Popen:
    """``evilnet replay`` of ``path`` with a config whose Kafka part is ``kafka``
    (the producer_kafka fixture's)."""
    config = path.with_suffix(".yaml")
    write_config(config, shard="replay-test", rules=[{"value": "x", "tag": "city=Laval;topic=x"}],
                 **kafka, bearer_token_env="UNUSED_IN_REPLAY",
                 tweets_topic=topics[0], dead_letter_topic=topics[1])
    return start("replay", str(path), "--config", str(config), *extra, **popen)


def test_sigterm_during_a_fast_replay_leaves_what_was_read_in_kafka_exactly_once(
        big_replay_file: Path, kafka_bootstrap: str,
        producer_kafka: dict, topics: tuple[str, str]) -> None:
    replay = _replay(big_replay_file, producer_kafka, topics)
    wait_until(lambda: topic_size(kafka_bootstrap, topics[0]) >= 5000, timeout=120,
               what="the replay to be well under way")
    code, out, logs = stop(replay)
    summary = json.loads(out)

    lines = big_replay_file.read_bytes().splitlines()
    assert code == 0, logs[-2000:]
    assert summary["interrupted"] and 0 < summary["lines_read"] < len(lines)
    expected = expected_records(lines[:summary["lines_read"]])
    assert as_records(read_topic(kafka_bootstrap, topics[0])) == expected

    # Resuming after lines_read completes the file, still without a duplicate.
    resumed = _replay(big_replay_file, producer_kafka, topics, "--skip",
                      str(summary["lines_read"]))
    out, logs = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, logs.decode()[-2000:]
    assert as_records(read_topic(kafka_bootstrap, topics[0])) == expected_records(lines)


def test_malformed_lines_land_in_the_dead_letter_topic_and_the_replay_goes_on(
        tmp_path: Path, kafka_bootstrap: str,
        producer_kafka: dict, topics: tuple[str, str]) -> None:
    good = [json.dumps(post, ensure_ascii=False).encode() for post in synthesize(
        synthetic_rules(["Montréal"], ["hockey"]), posts=3, seed=1)]
    post = json.loads(good[0])
    malformed = {
        DeadLetterReason.INVALID_JSON: b'{"data": {"id": "1"',
        DeadLetterReason.MISSING_FIELD: json.dumps(
            {**post, "data": {k: v for k, v in post["data"].items() if k != "id"}}).encode(),
        DeadLetterReason.UNKNOWN_TAG_FORMAT: json.dumps(
            {**post, "matching_rules": [{"id": "1", "tag": "montreal/hockey"}]}).encode(),
        DeadLetterReason.TOO_LARGE: json.dumps(
            {**post, "data": {**post["data"], "text": "x" * (LIMIT + 10)}}).encode(),
        DeadLetterReason.INVALID_UTF8: b'{"data": "\xff\xfe"}',
    }
    noise = [random.Random(seed).randbytes(200).replace(b"\n", b" ") for seed in range(20)]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join([good[0], *malformed.values(), good[1], *noise, good[2]]) + b"\n")

    replay = _replay(path, producer_kafka, topics)
    out, logs = replay.communicate(timeout=120)

    assert replay.returncode == 0, logs.decode()[-2000:]
    summary = json.loads(out)
    assert summary["lines_read"] == 3 + len(malformed) + len(noise)
    assert as_records(read_topic(kafka_bootstrap, topics[0])) == expected_records(good)
    letters = [DeadLetter.model_validate_json(value)
               for _, value in read_topic(kafka_bootstrap, topics[1],
                                          at_least=len(malformed) + len(noise))]
    assert len(letters) == len(malformed) + len(noise)
    by_payload = {letter.payload: letter for letter in letters}
    for reason, payload in malformed.items():
        if reason is DeadLetterReason.TOO_LARGE:
            (letter,) = [one for one in letters if one.reason is reason]
            assert letter.truncated and payload.decode().startswith(letter.payload)
        elif reason is DeadLetterReason.INVALID_UTF8:
            assert any(one.reason is reason and one.payload_encoding == "base64"
                       for one in letters)
        else:
            assert by_payload[payload.decode()].reason is reason


def test_replay_paced_by_rate_takes_the_time_it_should(tmp_path: Path, kafka_bootstrap: str,
                                                       producer_kafka: dict,
                                                       topics: tuple[str, str]) -> None:
    path = tmp_path / "few.jsonl"
    path.write_text("".join(json.dumps(post) + "\n" for post in synthesize(
        synthetic_rules(["Laval"], ["snow"]), posts=40, seed=2)))

    replay = _replay(path, producer_kafka, topics, "--rate", "20")
    out, logs = replay.communicate(timeout=60)

    assert replay.returncode == 0, logs.decode()[-2000:]
    summary = json.loads(out)
    assert summary["records"] == 40
    assert 39 / 20 <= summary["seconds"] < 39 / 20 + 2  # 39 intervals of 50 ms, then a flush
