"""From payloads to records and dead letters: the contract the Spark job relies on."""

from __future__ import annotations

import base64
import itertools
import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from producer_helpers import CollectingSink

from evilnet.contracts import (
    DEAD_LETTER_TOPIC,
    TWEETS_TOPIC,
    DeadLetter,
    DeadLetterReason,
    PostRecord,
)
from evilnet.producer.metrics import DEAD_LETTERS, POSTS_RECEIVED, ProducerMetrics
from evilnet.producer.routing import Line, Router, split_lines
from evilnet.producer.sink import Pipeline

LIMIT = 64 * 1024


def _line(payload: bytes | str | dict) -> Line:
    if isinstance(payload, dict):
        payload = json.dumps(payload, ensure_ascii=False)
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return Line(payload, len(payload))


def _post(**data_changes: object) -> dict:
    data = {"id": "1796874333189046272", "created_at": "2024-06-01T12:00:00.013Z",
            "author_id": "1589791400005", "text": "Go Habs! #Montréal", "lang": "fr",
            "edit_history_tweet_ids": ["1796874333189046272"]}
    data.update(data_changes)
    return {"data": {key: value for key, value in data.items() if value is not None},
            "matching_rules": [{"id": "11", "tag": "city=Montréal;topic=hockey"}]}


def route(payload: bytes | str | dict):
    return Router(LIMIT, source="test").route(_line(payload))


def test_a_post_becomes_one_record_with_the_fields_the_job_needs() -> None:
    (record,) = route(_post()).records

    assert record == PostRecord(
        id="1796874333189046272", created_at=datetime(2024, 6, 1, 12, 0, 0, 13000, tzinfo=UTC),
        author_id="1589791400005", is_retweet=False, city="Montréal", topics=["hockey"],
        lang="fr", text="Go Habs! #Montréal")
    assert json.loads(record.model_dump_json())["created_at"] == "2024-06-01T12:00:00.013000Z"


def test_a_post_matching_several_topics_of_a_city_is_one_record_with_all_of_them() -> None:
    post = _post()
    post["matching_rules"] = [
        {"id": "1", "tag": "city=Montréal;topic=hockey"},
        {"id": "2", "tag": "city=Montréal;topic=food"},
        {"id": "3", "tag": "city=St. John's;topic=food"},
        {"id": "4", "tag": "city=Montréal;topic=hockey"},
        {"id": "5", "tag": "a rule set by hand"},
    ]

    records = route(post).records

    assert [(record.city, record.topics) for record in records] == [
        ("Montréal", ["food", "hockey"]), ("St. John's", ["food"])]


def test_a_retweet_is_flagged_and_a_reply_is_not() -> None:
    retweet = route(_post(referenced_tweets=[{"type": "retweeted", "id": "1"}])).records[0]
    reply = route(_post(referenced_tweets=[{"type": "replied_to", "id": "1"}])).records[0]

    assert (retweet.is_retweet, reply.is_retweet) == (True, False)


def test_a_tag_in_decomposed_unicode_names_the_same_city() -> None:
    post = _post()
    post["matching_rules"] = [{"id": "1", "tag": "city=Montre\u0301al;topic=hockey"}]

    assert route(post).records[0].city == "Montréal"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe not utf-8", DeadLetterReason.INVALID_UTF8),
        (b'{"data": {"id": "1"', DeadLetterReason.INVALID_JSON),
        (b"[" * 50_000, DeadLetterReason.INVALID_JSON),  # deeper than the parser's recursion
        (b"[1, 2, 3]", DeadLetterReason.NOT_A_POST),
        (_post(id=None), DeadLetterReason.MISSING_FIELD),
        (_post(created_at=None), DeadLetterReason.MISSING_FIELD),
        (_post(author_id=None), DeadLetterReason.MISSING_FIELD),
        (_post(id=12345), DeadLetterReason.INVALID_FIELD),
        (_post(id="not-digits"), DeadLetterReason.INVALID_FIELD),
        (_post(created_at="yesterday"), DeadLetterReason.INVALID_FIELD),
        (_post(created_at="2024-06-01T12:00:00"), DeadLetterReason.INVALID_FIELD),
        (_post(referenced_tweets="retweeted"), DeadLetterReason.INVALID_FIELD),
        ({"data": _post()["data"]}, DeadLetterReason.NO_MATCHING_RULES),
        ({**_post(), "matching_rules": [{"id": "1", "tag": "montreal-hockey"}]},
         DeadLetterReason.UNKNOWN_TAG_FORMAT),
        ({**_post(), "matching_rules": [{"id": "1"}]}, DeadLetterReason.UNKNOWN_TAG_FORMAT),
    ],
)
def test_what_cannot_become_a_record_is_a_dead_letter_with_its_reason(payload, reason) -> None:
    routed = route(payload)

    assert routed.records == ()
    assert routed.dead_letter is not None
    assert routed.dead_letter.reason is reason
    assert routed.dead_letter.detail


def test_a_dead_letter_keeps_the_payload_losslessly() -> None:
    raw = b'{"data": \xc3\x28 broken'

    letter = route(raw).dead_letter

    assert letter.payload_encoding == "base64"
    assert base64.b64decode(letter.payload) == raw
    assert DeadLetter.model_validate_json(letter.model_dump_json()) == letter


def test_a_huge_payload_is_cut_to_the_limit_and_says_so() -> None:
    huge = json.dumps(_post(text="x" * (3 * LIMIT))).encode()
    (line,) = split_lines([huge[i:i + 4096] for i in range(0, len(huge), 4096)], LIMIT)

    letter = Router(LIMIT).route(line).dead_letter

    assert letter.reason is DeadLetterReason.TOO_LARGE
    assert letter.truncated
    assert len(letter.payload) == LIMIT
    assert str(len(huge)) in letter.detail


def test_an_api_notice_is_reported_not_dead_lettered() -> None:
    routed = route({"errors": [{"title": "operational-disconnect",
                                "disconnect_type": "UpstreamOperationalDisconnect"}]})

    assert (routed.records, routed.dead_letter) == ((), None)
    assert routed.notice[0]["title"] == "operational-disconnect"


def test_lines_are_split_across_chunks_and_keep_alives_are_empty() -> None:
    chunks = [b'{"a"', b": 1}\r\n\r", b"\n{}\n", b"tail-without-newline"]

    lines = list(split_lines(chunks, 100))

    assert [line.data for line in lines] == [b'{"a": 1}', b"", b"{}", b"tail-without-newline"]
    assert not any(line.cut for line in lines)


def test_the_pipeline_keys_records_by_city_and_sends_dead_letters_aside() -> None:
    sink, metrics = CollectingSink(), ProducerMetrics("t")
    pipeline = Pipeline(Router(LIMIT, source="test"), sink, metrics, TWEETS_TOPIC,
                        DEAD_LETTER_TOPIC)

    pipeline.handle(_line(_post()))
    pipeline.handle(_line(b"not json"))

    (topic, key, value), (dead_topic, dead_key, dead_value) = sink.sent
    assert (topic, key) == (TWEETS_TOPIC, "Montréal".encode())
    assert PostRecord.model_validate_json(value).id == "1796874333189046272"
    assert (dead_topic, dead_key) == (DEAD_LETTER_TOPIC, None)
    assert DeadLetter.model_validate_json(dead_value).reason is DeadLetterReason.INVALID_JSON
    assert metrics.value(POSTS_RECEIVED + "_total", source="test") == 2
    assert metrics.value(DEAD_LETTERS + "_total", reason="invalid-json") == 1


# --- garbage never stops the producer ---------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
plausible_posts = st.fixed_dictionaries(
    {"data": st.dictionaries(
        st.sampled_from(["id", "created_at", "author_id", "text", "lang", "referenced_tweets"]),
        json_values | st.from_regex(r"\d{1,22}", fullmatch=True)
        | st.just("2024-06-01T12:00:00.000Z")),
     "matching_rules": st.lists(st.fixed_dictionaries(
         {"id": st.text(max_size=5), "tag": st.text(max_size=30)
          | st.builds("city={};topic={}".format, st.text(max_size=12), st.text(max_size=12))}),
         max_size=3)},
)
garbage = (
    st.binary(max_size=2000)
    | json_values.map(lambda value: json.dumps(value).encode())
    | plausible_posts.map(lambda value: json.dumps(value, ensure_ascii=False).encode())
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(garbage, max_size=8))
def test_generated_garbage_is_routed_or_dead_lettered_and_never_raises(payloads) -> None:
    sink = CollectingSink()
    pipeline = Pipeline(Router(1024, source="fuzz"), sink, ProducerMetrics("fuzz"),
                        TWEETS_TOPIC, DEAD_LETTER_TOPIC)
    stream = b"\n".join(payloads)

    lines = [line for line in split_lines([stream[:7], stream[7:]], 1024) if line.size]
    for line in lines:
        routed = pipeline.handle(line)
        # Exactly one outcome per line: records, a dead letter, or an API notice.
        assert sum((bool(routed.records), routed.dead_letter is not None,
                    routed.notice is not None)) == 1

    for topic, _, value in sink.sent:
        if topic == TWEETS_TOPIC:
            PostRecord.model_validate_json(value)
        else:
            DeadLetter.model_validate_json(value)


@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=300), max_size=6),
       st.integers(min_value=1, max_value=40))
def test_split_lines_matches_a_plain_split_wherever_the_chunks_break(data, cuts, limit) -> None:
    bounds = sorted({0, len(data), *(cut for cut in cuts if cut < len(data))})
    chunks = [data[start:end] for start, end in itertools.pairwise(bounds)]

    lines = list(split_lines(chunks, limit))

    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()  # a final newline ends the last line; it does not start one
    expected = [part.removesuffix(b"\r") for part in parts]
    assert [line.size for line in lines] == [len(part) for part in expected]
    assert [line.data for line in lines] == [part[:limit] for part in expected]
