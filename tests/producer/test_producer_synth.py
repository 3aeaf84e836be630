"""Synthetic data, the shipped sample, and replay's reading and pacing (without Kafka)."""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from datetime import UTC, datetime
from importlib import resources

from click.testing import CliRunner
from producer_helpers import CollectingSink

from evilnet.cli import main
from evilnet.contracts import DEAD_LETTER_TOPIC, TWEETS_TOPIC
from evilnet.producer.generator import PostGenerator, synthesize, synthetic_rules
from evilnet.producer.metrics import ProducerMetrics
from evilnet.producer.routing import Line, Router
from evilnet.producer.service import file_lines, replay
from evilnet.producer.sink import Pipeline

CITIES = ["Montréal", "St. John's", "Trois-Rivières", "Toronto"]
TOPICS = ["hockey", "food", "traffic"]
SYNTH_ARGS = ["synth", "--cities", "Montréal,St. John's", "--cities", "Trois-Rivières,Toronto",
              "--topics", "hockey,food,traffic", "--posts", "500"]


def test_synth_is_deterministic_for_a_seed_and_differs_across_seeds() -> None:
    runner = CliRunner()

    first = runner.invoke(main, [*SYNTH_ARGS, "--seed", "5"])
    again = runner.invoke(main, [*SYNTH_ARGS, "--seed", "5"])
    other = runner.invoke(main, [*SYNTH_ARGS, "--seed", "6"])

    assert first.exit_code == 0, first.output
    assert first.stdout == again.stdout != other.stdout
    assert len(first.stdout.splitlines()) == 500


def test_synth_refuses_a_city_the_catalog_does_not_know_with_suggestions() -> None:
    result = CliRunner().invoke(main, ["synth", "--cities", "Mont=réal", "--topics", "x",
                                       "--posts", "1"])

    assert result.exit_code == 2
    assert "unknown city 'Mont=réal'" in result.output and "Montréal (QC)" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_synth_resolves_cities_as_the_planner_does() -> None:
    result = CliRunner().invoke(main, ["synth", "--cities", "Hamilton, ON, toronto",
                                       "--cities", "St Johns", "--topics", "Hockey",
                                       "--posts", "200", "--seed", "1"])

    assert result.exit_code == 0, result.output
    tags = {rule["tag"] for line in result.stdout.splitlines()
            for rule in json.loads(line)["matching_rules"]}
    assert {tag.split(";")[0] for tag in tags} == {"city=Hamilton", "city=Toronto",
                                                   "city=St. John's"}
    assert {tag.split(";")[1] for tag in tags} == {"topic=hockey"}


def test_synth_ids_of_two_seeds_never_meet() -> None:
    rules = synthetic_rules(["Laval"], ["snow"])
    ids = [{post["data"]["id"] for post in synthesize(rules, posts=3000, seed=seed)}
           for seed in (1, 2)]

    assert len(ids[0]) == len(ids[1]) == 3000
    assert not ids[0] & ids[1]


def _routed(payloads):
    router = Router(256 * 1024)
    return [router.route(Line(payload, len(payload))) for payload in payloads]


def test_synthetic_posts_look_like_a_real_stream() -> None:
    posts = list(synthesize(synthetic_rules(CITIES, TOPICS), posts=5000, seed=3))
    outcomes = _routed([json.dumps(post).encode() for post in posts])
    records = [record for outcome in outcomes for record in outcome.records]

    assert all(outcome.records and outcome.dead_letter is None for outcome in outcomes)
    ids = [post["data"]["id"] for post in posts]
    assert len(set(ids)) == len(ids) and ids == sorted(ids, key=int)
    retweets = sum(record.is_retweet for record in records) / len(records)
    assert 0.15 < retweets < 0.4
    authors = Counter(record.author_id for record in records)
    top_tenth = sum(count for _, count in authors.most_common(len(authors) // 10))
    assert top_tenth > 0.35 * len(records)  # skewed: a tenth of the users post a third or more
    assert {record.city for record in records} == set(CITIES)
    assert any(len(record.topics) > 1 for record in records)
    assert len({post["matching_rules"][0]["tag"] for post in posts}) == len(CITIES) * len(TOPICS)
    assert any(len({r["tag"].split(";")[0] for r in post["matching_rules"]}) > 1
               for post in posts)  # a post of two cities: one record for each


def test_bursts_make_one_rule_dominate_for_a_while() -> None:
    generator = PostGenerator(synthetic_rules(CITIES, TOPICS), seed=1, burst_probability=1.0)
    tags = [generator.next_post(i, datetime.now(UTC))["matching_rules"][0]["tag"]
            for i in range(100)]

    assert Counter(tags).most_common(1)[0][1] > 50  # 12 rules would give ~8 each without it


def test_the_shipped_sample_routes_entirely_to_records() -> None:
    sample = resources.files("evilnet").joinpath("data/sample-posts.jsonl").read_bytes()
    outcomes = _routed(sample.splitlines())

    assert len(outcomes) >= 200
    assert all(outcome.records and outcome.dead_letter is None for outcome in outcomes)
    cities = {record.city for outcome in outcomes for record in outcome.records}
    assert {"Montréal", "St. John's", "Trois-Rivières"} <= cities


def _pipeline() -> tuple[Pipeline, CollectingSink]:
    sink = CollectingSink()
    return Pipeline(Router(4096, source="replay"), sink, ProducerMetrics("t"), TWEETS_TOPIC,
                    DEAD_LETTER_TOPIC), sink


def test_replay_skips_blank_lines_and_resumes_after_skip() -> None:
    payloads = [json.dumps(post).encode() for post in synthesize(
        synthetic_rules(["Laval"], ["snow"]), posts=10, seed=1)]
    content = b"\n\n".join(payloads) + b"\r\n"

    pipeline, sink = _pipeline()
    summary = replay(file_lines(io.BytesIO(content), 4096, skip=4), pipeline)

    assert (summary.lines_read, summary.records, summary.interrupted) == (6, 6, False)
    assert [value for _, _, value in sink.sent] == [
        record.model_dump_json().encode()
        for outcome in _routed(payloads[4:]) for record in outcome.records]


def test_replay_paces_lines_by_rate_and_stops_when_asked() -> None:
    payloads = [json.dumps(post).encode() for post in synthesize(
        synthetic_rules(["Laval"], ["snow"]), posts=30, seed=1)]
    lines = [Line(payload, len(payload)) for payload in payloads]
    pipeline, sink = _pipeline()

    started = time.monotonic()
    paced = replay(iter(lines[:11]), pipeline, rate=50)
    elapsed = time.monotonic() - started
    stopped = replay(iter(lines), pipeline, should_stop=lambda: len(sink.sent) >= 11 + 5)

    assert paced.lines_read == 11 and 0.19 <= elapsed < 1.0  # 10 intervals of 20 ms
    assert (stopped.lines_read, stopped.interrupted) == (5, True)
