"""Two producers of one shard, on two stream connections that lose posts: the fidelity
report against the truth of the simulator's record, over real HTTP and the real Kafka.

The simulator (Enterprise access: two connections per app) gives both connections
every post and drops a seeded fraction on each; ``/_sim/sent`` says what went out on
which connection. The producers are the real service (tweepy's StreamingClient), the
report is the real ``evilnet fidelity`` reading the test's own topic.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from producer_helpers import RULES, TOKEN, Simulator, wait_until, write_config
from stack_clients import inventory_options
from test_producer_stack import (  # noqa: F401 (topics: the fixture of the stack tests)
    EVILNET,
    expected_records,
    read_topic,
    start,
    stop,
    topics,
)

from evilnet.contracts import PostRecord
from evilnet.producer.simulator import XApiSimulator

pytestmark = pytest.mark.stack

POSTS = 4000
DROPS = {"test-01@host-a": (1, 0.02, 11), "test-01@host-b": (2, 0.005, 12)}


@pytest.fixture
def enterprise_simulator() -> Iterator[Simulator]:
    simulator = XApiSimulator([TOKEN], rate=400, keep_alive_seconds=0.05, seed=3,
                              access_level="enterprise")
    simulator.serve("127.0.0.1", 0)
    yield Simulator(simulator)
    simulator.shutdown()


def test_the_report_finds_each_connections_recall_and_every_post_reaches_kafka(
        tmp_path: Path, enterprise_simulator: Simulator, token_env: str, kafka_bootstrap: str,
        producer_kafka: dict,
        topics: tuple[str, str]) -> None:  # noqa: F811
    simulator = enterprise_simulator
    started = datetime.now(UTC)
    simulator.generation(paused=True, max_posts=POSTS)
    for connection, fraction, seed in DROPS.values():
        requests.post(f"{simulator.base_url}/_sim/connections", timeout=5, json={
            "connection": connection, "drop_fraction": fraction, "seed": seed,
        }).raise_for_status()
    producers = []
    for producer_id, (connection, _, _) in DROPS.items():
        config = write_config(tmp_path / f"{producer_id}.yaml", shard="test-01",
                              producer_id=producer_id, rules=RULES,
                              **producer_kafka,
                              tweets_topic=topics[0], dead_letter_topic=topics[1],
                              bearer_token_env=token_env, x_api_base_url=simulator.base_url,
                              metrics_port=0, reconnect_time_scale=0.05)
        producers.append(start("produce", "--config", str(config)))
        # Connections are numbered in the order they open: A is 1, B is 2.
        wait_until(lambda c=connection: simulator.state()["active_connections"] == c,
                   what=f"connection {connection}")

    simulator.generation(paused=False)
    wait_until(lambda: all(c["held"] == 0 for c in _connections(simulator))
               and simulator.api.sent() and _made(simulator) >= POSTS,
               timeout=60, what=f"{POSTS} posts made and sent")
    sent = simulator.api.sent()
    truth = {producer_id: {json.loads(entry["payload"])["data"]["id"] for entry in sent
                           if entry["connection"] == connection}
             for producer_id, (connection, _, _) in DROPS.items()}
    union = set().union(*truth.values())
    # One record per post and matched city, from each producer that received the post.
    records_expected = sum(expected_records([e["payload"].encode() for e in sent]).values())
    read = read_topic(kafka_bootstrap, topics[0], at_least=records_expected)
    outcomes = [stop(process) for process in producers]
    assert [code for code, _, _ in outcomes] == [0, 0], [err[-2000:] for _, _, err in outcomes]
    assert simulator.state()["connections_opened"] == 2  # nobody reconnected: numbers hold

    # Every post the simulator sent reached Kafka at least once, named by its producer.
    records = [PostRecord.model_validate_json(value) for _, value in read]
    assert {r.id for r in records} == union
    for producer_id, ids in truth.items():
        assert {r.id for r in records if r.producer == producer_id} == ids
    assert all(r.received_at is not None and r.received_at >= r.created_at for r in records)

    report = subprocess.run(
        # The inventory's brokers (kafka_bootstrap), so the report logs in by itself.
        [*EVILNET, *inventory_options(), "fidelity",
         "--from", (started - timedelta(seconds=1)).isoformat(),
         "--to", (datetime.now(UTC) + timedelta(seconds=1)).isoformat(), "--format", "json",
         "--topic", topics[0]],
        capture_output=True, text=True, timeout=120, check=False)
    assert report.returncode == 0, report.stderr
    rows = {row["producer"]: row for row in json.loads(report.stdout)}
    print(report.stdout, {p: len(ids) / len(union) for p, ids in truth.items()})  # with -s

    assert set(rows) == set(DROPS)
    for producer_id, ids in truth.items():
        true_recall = len(ids) / len(union)
        row = rows[producer_id]
        assert row["shard"] == "test-01" and row["union"] == len(union)
        assert abs(100 * row["recall"] - 100 * true_recall) <= 0.2, (producer_id, row)
        (other,) = set(truth) - {producer_id}
        assert row["missed"] == len(truth[other] - ids)
        assert 0 <= row["delay_p50_s"] <= row["delay_p95_s"] < 10
    # The seeded drops took about what was asked of each connection.
    for producer_id, (_, fraction, _) in DROPS.items():
        assert abs((1 - rows[producer_id]["recall"]) - fraction) < 0.01


def test_a_stalled_connection_shows_as_delay_not_as_loss(
        tmp_path: Path, enterprise_simulator: Simulator, token_env: str, kafka_bootstrap: str,
        producer_kafka: dict,
        topics: tuple[str, str]) -> None:  # noqa: F811
    simulator = enterprise_simulator
    started = datetime.now(UTC)
    simulator.generation(paused=True, max_posts=1200)
    producers = []
    for copy, name in enumerate(("host-a", "host-b"), start=1):
        # A stall timeout of 10 s: the 2-s stall below is congestion, not a dead stream.
        config = write_config(tmp_path / f"{name}.yaml", shard="test-01",
                              producer_id=f"test-01@{name}", rules=RULES,
                              **producer_kafka,
                              tweets_topic=topics[0], dead_letter_topic=topics[1],
                              bearer_token_env=token_env, x_api_base_url=simulator.base_url,
                              metrics_port=0, reconnect_time_scale=0.5)
        producers.append(start("produce", "--config", str(config)))
        wait_until(lambda c=copy: simulator.state()["active_connections"] == c,
                   what=f"connection {copy}")
    requests.post(f"{simulator.base_url}/_sim/connections", timeout=5,
                  json={"connection": 2, "stall_seconds": 2}).raise_for_status()
    simulator.generation(paused=False)
    wait_until(lambda: _made(simulator) >= 1200
               and all(c["held"] == 0 for c in _connections(simulator)),
               timeout=60, what="every post made and sent")
    sent = simulator.api.sent()
    read_topic(kafka_bootstrap, topics[0],
               at_least=sum(expected_records([e["payload"].encode() for e in sent]).values()))
    outcomes = [stop(process) for process in producers]
    assert [code for code, _, _ in outcomes] == [0, 0], [err[-2000:] for _, _, err in outcomes]
    assert simulator.state()["connections_opened"] == 2

    report = subprocess.run(
        # The inventory's brokers (kafka_bootstrap), so the report logs in by itself.
        [*EVILNET, *inventory_options(), "fidelity",
         "--from", (started - timedelta(seconds=1)).isoformat(),
         "--to", (datetime.now(UTC) + timedelta(seconds=1)).isoformat(), "--format", "json",
         "--topic", topics[0]],
        capture_output=True, text=True, timeout=120, check=False)
    assert report.returncode == 0, report.stderr
    rows = {row["producer"]: row for row in json.loads(report.stdout)}
    print(report.stdout)  # with -s
    fast, stalled = rows["test-01@host-a"], rows["test-01@host-b"]
    assert fast["recall"] == stalled["recall"] == 1.0 and fast["union"] == 1200
    # About 2 s of posts (of ~3 s at 400/s) waited out the stall: over a second late.
    assert stalled["delay_p50_s"] > 0.5 and stalled["delay_p95_s"] > 1.5
    assert fast["delay_p95_s"] < 1.0


def _connections(simulator: Simulator) -> list[dict]:
    return requests.get(f"{simulator.base_url}/_sim/connections",
                        timeout=5).json()["connections"]


def _made(simulator: Simulator) -> int:
    return simulator.state()["posts_made"]
