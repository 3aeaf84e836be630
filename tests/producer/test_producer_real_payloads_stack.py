"""The captured stream lines through `evilnet replay` into the real Kafka: the valid ones
with our tags are records there, every other line a dead letter with its reason."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from test_producer_real_payloads import INVALID, LINES, VALID, _with_our_tags
from test_producer_stack import _replay, read_topic, topics  # noqa: F401 (a fixture)

from evilnet.contracts import DeadLetter, DeadLetterReason, PostRecord

pytestmark = pytest.mark.stack


def test_real_lines_reach_kafka_as_records_and_dead_letters(
        tmp_path: Path, kafka_bootstrap: str, producer_kafka: dict,
        topics: tuple[str, str]) -> None:  # noqa: F811
    retagged = [_with_our_tags(LINES[n - 1]) if n != 8 else LINES[n - 1]
                for n in range(1, 20)]
    path = tmp_path / "real-lines.jsonl"
    path.write_bytes(b"\n".join([*LINES, *retagged]) + b"\n")

    replay = _replay(path, producer_kafka, topics)
    out, logs = replay.communicate(timeout=300)

    assert replay.returncode == 0, logs.decode()[-2000:]
    assert json.loads(out)["lines_read"] == 38
    records = [PostRecord.model_validate_json(value)
               for _, value in read_topic(kafka_bootstrap, topics[0], at_least=len(VALID))]
    assert sorted((r.created_at, r.author_id, r.is_retweet) for r in records) == sorted(
        (datetime.fromisoformat(created_at), author, retweet)
        for _, created_at, author, retweet in VALID.values())
    letters = [DeadLetter.model_validate_json(value)
               for _, value in read_topic(kafka_bootstrap, topics[1], at_least=24)]
    # As captured: every valid line has foreign tags; both times: the invalid lines.
    assert Counter(letter.reason for letter in letters) == Counter(
        [DeadLetterReason.UNKNOWN_TAG_FORMAT] * len(VALID) + list(INVALID.values()) * 2)
