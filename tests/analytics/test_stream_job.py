"""The stream job on the real stack: every window row equals the plain-Python reference,
also across a killed driver and a killed Kafka broker; the queries read it back."""

from __future__ import annotations

import json
import os
import signal
import ssl
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from analytics_helpers import (
    CITIES,
    REPO_ROOT,
    acceptance_lines,
    evilnet,
    max_disorder,
    wait_until,
)
from stack_clients import kafka_consumer
from supervised import service_pid, supervisorctl

from evilnet.platform.playbook import PlaybookRun, run_playbook
from evilnet.schema import JOB_QUERIES, METRICS, PLAIN_COUNT_QUERY
from evilnet.spark import reference
from evilnet.spark.check import end_offsets, run_check

pytestmark = pytest.mark.stack


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_fixture_has_what_the_acceptance_needs(timeline) -> None:
    lines = acceptance_lines(timeline.next)
    posts = reference.read_posts(lines)
    ids = [json.loads(line)["data"]["id"] for line in lines]
    assert len(ids) > len(set(ids)), "duplicate deliveries"
    assert any(post.is_retweet for post in posts)
    assert any(len(post.topics) == 2 for post in posts), "a post matching two topics of a city"
    assert {"Montréal", "St. John's", "Trois-Rivières", "Québec"} <= {p.city for p in posts}
    assert timedelta(seconds=30) < max_disorder(lines) <= timedelta(minutes=1)


def test_every_window_equals_the_reference_and_queries_read_it(test_job, timeline,
                                                               tmp_path) -> None:
    start = timeline.take()
    lines = acceptance_lines(start)
    # The inventory's brokers and node (test_job's), so the command logs in by itself.
    result = evilnet("check", str(_write(tmp_path, lines)), "--topic", test_job.topic,
                     "--job", test_job.name, "--keyspace", test_job.keyspace,
                     "--shift-to", "none", "--timeout", "300")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["equal"] and summary["shift_seconds"] == 0
    assert summary["rows"]["city,topic"] > summary["rows"]["city"] > 50

    posts = reference.read_posts(lines)
    hours = reference.aggregate(posts, timedelta(hours=1), timedelta(minutes=1))
    last_hour = max(p.created_at for p in posts).replace(second=0, microsecond=0) \
        + timedelta(minutes=1)
    for metric in METRICS:
        top = evilnet("query", "top", "--metric", metric, "--at", last_hour.isoformat(),
                      "--format", "json", "--keyspace", test_job.keyspace)
        assert top.returncode == 0, top.stderr
        got = [(row["city"], row[metric]) for row in json.loads(top.stdout)]
        assert got == reference.top_cities(hours, last_hour, metric, 5)
        assert len(got) == 5 and len(CITIES) == 6  # one city left out

    chosen = ["Montréal", "St. John's"]
    end = start + timedelta(minutes=30)
    windows = evilnet("query", "windows", "--from", start.isoformat(), "--to", end.isoformat(),
                      "--city", chosen[0], "--city", chosen[1], "--format", "json",
                      "--keyspace", test_job.keyspace)
    assert windows.returncode == 0, windows.stderr
    rows = json.loads(windows.stdout)
    assert {row["city"] for row in rows} == set(chosen)
    expected = reference.aggregate(posts, timedelta(minutes=5), timedelta(minutes=1))
    expected = expected[expected["city"].isin(chosen)
                        & (expected["window_start"] >= pd.Timestamp(start))
                        & (expected["window_start"] < pd.Timestamp(end))]
    got = reference.frame((r["city"], r["topic"], r["window_start"], r["window_end"],
                           r["tweets"], r["retweets"], r["unique_users"]) for r in rows)
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True))

    csv = evilnet("query", "windows", "--from", start.isoformat(), "--to", end.isoformat(),
                  "--city", "Québec", "--by", "city,topic", "--format", "csv",
                  "--keyspace", test_job.keyspace)
    header, first = csv.stdout.splitlines()[:2]
    assert header == "city,topic,window_start,window_end,tweets,retweets,unique_users"
    assert first.startswith("Québec,") and first.split(",")[1] in {"hockey", "food", "traffic"}


def _in_background(action):
    """Run ``action`` in a thread (the replay needs the main thread: it handles SIGTERM)."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = action()
        except BaseException as error:  # reported by the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _check(test_job, store, lines, tmp_path, rate):
    return run_check(_write(tmp_path, lines), store=store, topic=test_job.topic,
                     job=test_job.name, bootstrap_servers=test_job.bootstrap.split(","),
                     shift_to=None, timeout=420, rate=rate, security=test_job.kafka_login)


@pytest.mark.disruptive
def test_killed_driver_is_restarted_and_rows_stay_exact(test_job, store, timeline,
                                                        tmp_path) -> None:
    lines = acceptance_lines(timeline.take(), seed=23)
    before = sum(end_offsets(test_job.bootstrap.split(","), test_job.topic,
                                 test_job.kafka_login).values())

    def kill_the_driver_mid_stream() -> tuple[int, int]:
        wait_until(lambda: min(sum((store.progress(test_job.name)[q].end_offsets or {}).values())
                               for q in JOB_QUERIES) > before + 100, 120,
                   "the job to consume part of the replay")
        driver = service_pid("spark-master", test_job.name)
        os.kill(driver, signal.SIGKILL)
        restarted = wait_until(lambda: (pid := service_pid("spark-master", test_job.name))
                               and pid != driver and pid, 60, "supervisord to restart the driver")
        return driver, restarted

    killer, outcome = _in_background(kill_the_driver_mid_stream)
    run = _check(test_job, store, lines, tmp_path, rate=30)
    killer.join(200)
    assert "error" not in outcome, outcome.get("error")
    driver, restarted = outcome["value"]
    assert restarted != driver
    assert run.comparison.differences() == {}
    assert "RUNNING" in supervisorctl("spark-master", "status", test_job.name)


@pytest.mark.kraft
@pytest.mark.disruptive
def test_killed_kafka_broker_during_replay_and_rows_stay_exact(test_job, store, timeline,
                                                               tmp_path) -> None:
    lines = acceptance_lines(timeline.take(), seed=37)

    def kill_a_broker_for_a_while() -> int:
        time.sleep(5)
        broker = service_pid("kafka1", "kafka")
        os.kill(broker, signal.SIGKILL)
        supervisorctl("kafka1", "stop", "kafka")  # keep it down (supervisord restarts it)
        time.sleep(20)
        supervisorctl("kafka1", "start", "kafka")
        return broker

    killer, outcome = _in_background(kill_a_broker_for_a_while)
    run = _check(test_job, store, lines, tmp_path, rate=25)
    killer.join(200)
    assert "error" not in outcome, outcome.get("error")
    assert "RUNNING" in supervisorctl("kafka1", "status", "kafka")
    assert run.replay_summary.unacknowledged == 0
    assert run.comparison.differences() == {}
    # That the broker rejoins every ISR before the next test is the guard's to check.


def test_stream_job_health_follows_the_plain_count_baseline(store, keyspace: str) -> None:
    """`evilnet health stream-job` (the role's check) expects the queries the job's settings
    name: the plain-count baseline of the benchmark runs one, "count"."""
    def healthy(job: str, *options: str) -> bool:
        result = evilnet("health", "stream-job", "--job", job, "--keyspace", keyspace,
                         *options)
        assert result.returncode in (0, 1), result.stderr
        return result.returncode == 0

    now = datetime.now(UTC)
    store.write_progress("plain-count-probe", PLAIN_COUNT_QUERY, 0, {0: 5}, 5, 0, 0, None,
                         json.dumps({"plain_count": True}), now)
    assert healthy("plain-count-probe")
    assert not healthy("plain-count-probe", "--newer-than", (now + timedelta(seconds=1))
                       .isoformat()), "progress from before a restart does not count"
    store.write_progress("windows-only-probe", JOB_QUERIES[0], 0, {0: 5}, 5, 0, 0, None,
                         json.dumps({"plain_count": False}), now)
    assert not healthy("windows-only-probe")


def test_two_producer_copies_delivering_every_post_count_it_once(test_job, store, timeline,
                                                                  tmp_path) -> None:
    """Redundant producers (planner_redundancy 2): both copies deliver every post, as
    version-2 records naming each copy; the tables still count each post once."""
    lines = acceptance_lines(timeline.take(), seed=41)
    copies = ("app-1@producer1", "app-1@producer2")
    before = sum(end_offsets(test_job.bootstrap.split(","), test_job.topic,
                                 test_job.kafka_login).values())
    run = run_check(_write(tmp_path, lines), store=store, topic=test_job.topic,
                    job=test_job.name, bootstrap_servers=test_job.bootstrap.split(","),
                    shift_to=None, timeout=420, copies=copies, security=test_job.kafka_login)
    assert run.replay_summary.unacknowledged == 0
    written = sum(end_offsets(test_job.bootstrap.split(","), test_job.topic,
                                 test_job.kafka_login).values()) - before
    delivered = _deliveries_by_producer(test_job)
    assert set(delivered) == set(copies)
    # A post of two cities is a record per city: each copy wrote the same records.
    assert delivered[copies[0]] == delivered[copies[1]] == written / 2 >= len(lines)
    assert run.comparison.differences() == {}


def _deliveries_by_producer(test_job) -> Counter:
    """Records of the test topic per producer copy that wrote them (a plain replay names none)."""
    consumer = kafka_consumer(test_job.topic, bootstrap=test_job.bootstrap.split(","),
                             auto_offset_reset="earliest", consumer_timeout_ms=5000,
                             enable_auto_commit=False)
    try:
        named = Counter(json.loads(record.value).get("producer") for record in consumer)
    finally:
        consumer.close()
    del named[None]
    return named


@pytest.mark.disruptive
def test_a_broker_certificate_rotated_during_replay_and_rows_stay_exact(stack, test_job, store,
                                                                        timeline, tmp_path) -> None:
    """docs/security.md, "Rotation": a host's certificate re-issued and rolled in by its
    play while posts flow; the broker then serves the new certificate, and every
    window still equals the reference (nothing lost or doubled across its restart)."""
    if stack.kafka_security() is None:
        pytest.skip("Kafka runs in plaintext here: no certificate to rotate")
    broker = "kafka1"
    address = (stack.address(broker), int(stack.var(broker, "kafka_port", "kafka")))
    served_before = ssl.get_server_certificate(address)
    lines = acceptance_lines(timeline.take(), seed=41)

    def rotate_and_roll() -> PlaybookRun:
        issued = evilnet("pki", "issue", "--force", broker, "--format", "json")
        assert issued.returncode == 0, issued.stderr
        assert any(row["host"] == broker for row in json.loads(issued.stdout)["issued"])
        return run_playbook("ansible/playbooks/kafka.yml", stack.path,
                            project_dir=REPO_ROOT, timeout=600)

    roller, outcome = _in_background(rotate_and_roll)
    # Slow enough that the posts still flow when the play restarts the broker.
    run = _check(test_job, store, lines, tmp_path, rate=6)
    roller.join(600)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["value"].returncode == 0, outcome["value"].output[-6000:]
    served_after = ssl.get_server_certificate(address)
    assert served_after != served_before
    assert "RUNNING" in supervisorctl("kafka1", "status", "kafka")
    assert run.replay_summary.unacknowledged == 0
    assert run.comparison.differences() == {}
