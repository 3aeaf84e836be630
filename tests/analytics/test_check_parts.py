"""The parts of `evilnet check` that make it re-runnable, without services: a run's own
ids, where `auto` puts the posts, and the after - before comparison that leaves out
the windows other posts reach."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd

from evilnet.spark import reference
from evilnet.spark.check import (
    JobWindows,
    compare,
    expected_frames,
    own_identities,
    placement,
    touched,
)

JOB = JobWindows(window=timedelta(minutes=5), slide=timedelta(minutes=1),
                 hour=timedelta(hours=1), watermark=timedelta(minutes=10),
                 trigger=timedelta(seconds=60))


def _line(post_id: str, at: str, author: str, tag: str, retweet_of: str | None = None) -> bytes:
    data = {"id": post_id, "edit_history_tweet_ids": [post_id], "created_at": at,
            "author_id": author}
    message: dict = {"data": data, "includes": {"users": [{"id": author}]},
                     "matching_rules": [{"id": "9", "tag": tag}]}
    if retweet_of:
        data["referenced_tweets"] = [{"type": "retweeted", "id": retweet_of}]
        message["includes"]["tweets"] = [{"id": retweet_of, "author_id": "77"}]
    return json.dumps(message, ensure_ascii=False).encode()


LINES = [
    _line("101", "2024-06-01T12:00:30.000Z", "1", "city=Montréal;topic=hockey"),
    _line("102", "2024-06-01T12:01:10.000Z", "2", "city=Montréal;topic=hockey", "101"),
    _line("102", "2024-06-01T12:01:10.000Z", "2", "city=Montréal;topic=hockey", "101"),
    _line("103", "2024-06-01T12:03:00.000Z", "1", "city=Toronto;topic=food"),
    b'{"errors": [{"title": "operational-disconnect"}]}',
]


def test_each_run_gets_ids_of_its_own_and_keeps_what_the_numbers_depend_on() -> None:
    first = own_identities(LINES, datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    second = own_identities(LINES, datetime(2026, 12, 1, 9, 0, 0, 1000, tzinfo=UTC))
    runs = [[json.loads(line) for line in run[:4]] for run in (first, second)]

    ids = [{m["data"]["id"] for m in run} for run in runs]
    assert len(ids[0]) == len(ids[1]) == 3 and not ids[0] & ids[1]
    assert not ids[0] & {"101", "102", "103"}
    for run in runs:
        assert run[1] == run[2]  # a post delivered twice still has one id
        assert run[1]["data"]["referenced_tweets"][0]["id"] == run[0]["data"]["id"]
        assert run[0]["data"]["author_id"] == run[3]["data"]["author_id"]  # the same author
        assert run[0]["includes"]["users"][0]["id"] == run[0]["data"]["author_id"]
        assert all(len(m["data"]["id"]) <= 19 and m["data"]["id"].isdigit() for m in run)
    assert first[4] == LINES[4]  # not a post: as it was
    # What the reference counts is unchanged, ids aside.
    counts = [reference.aggregate(reference.read_posts(lines), JOB.window, JOB.slide)
              for lines in (LINES, first)]
    pd.testing.assert_frame_equal(counts[0], counts[1])


def test_auto_puts_the_posts_after_the_watermark_and_before_the_live_windows() -> None:
    now = datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC)
    posts = reference.read_posts(LINES)  # 2 min 30 s of posts
    first = placement(posts, JOB, now)

    # Newer than the watermark the job will have when it reads them (a trigger on).
    assert first > now + JOB.trigger - JOB.watermark
    # Too long a file to also end its windows before the live posts: it keeps the first.
    short = placement(posts[:1], JOB, now)
    assert short + JOB.window + JOB.slide <= now - JOB.trigger


def test_windows_other_posts_reach_are_left_out_and_the_rest_compare_as_deltas() -> None:
    posts = reference.read_posts(LINES)
    expected = expected_frames(posts, JOB)
    # The job's rows before: another source's posts already in Montréal's windows.
    other = reference.read_posts([_line("900", "2024-06-01T12:00:40.000Z", "50",
                                        "city=Montréal;topic=hockey")])
    before = expected_frames(other, JOB)
    after = expected_frames(other + posts, JOB)
    late = [("Toronto", frozenset({"food"}), datetime(2024, 6, 1, 12, 2, 30, tzinfo=UTC))]

    comparison = compare(expected, before, after, touched(late, JOB))

    assert comparison.differences() == {}
    # Toronto's post at 12:03 is in 5-minute windows starting 11:59..12:03 and hours
    # starting 11:04..12:03; the other post at 12:02:30 shares all but the last one.
    assert comparison.skipped == {"city": 4, "city,topic": 4, "city, hour": 59}
    assert len(comparison.expected["city"]) == len(expected["city"]) - 4

    wrong = {view: frame.assign(tweets=frame["tweets"] + (frame["city"] == "Montréal"))
             for view, frame in after.items()}
    assert set(compare(expected, before, wrong, touched(late, JOB)).differences()) == {
        "city", "city,topic", "city, hour"}
