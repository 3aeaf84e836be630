"""The reference implementation, pinned by a few posts whose numbers are worked out by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd

from evilnet.spark import reference

FIVE, ONE = timedelta(minutes=5), timedelta(minutes=1)


def _line(post_id: str, at: str, author: str, tags: list[str], retweet: bool = False) -> str:
    data = {"id": post_id, "created_at": at, "author_id": author, "text": "…"}
    if retweet:
        data["referenced_tweets"] = [{"type": "retweeted", "id": "1"}]
    return json.dumps({"data": data, "matching_rules": [{"id": "9", "tag": t} for t in tags]},
                      ensure_ascii=False)


LINES = [
    _line("101", "2024-06-01T12:00:30.000Z", "1", ["city=Montréal;topic=hockey"]),
    _line("102", "2024-06-01T12:01:10.000Z", "2",
          ["city=Montréal;topic=hockey", "city=Montréal;topic=food"], retweet=True),
    _line("102", "2024-06-01T12:01:10.000Z", "2",  # delivered twice
          ["city=Montréal;topic=hockey", "city=Montréal;topic=food"], retweet=True),
    _line("103", "2024-06-01T12:03:59.999Z", "1",  # two cities
          ["city=Montréal;topic=food", "city=St. John's;topic=traffic"]),
    _line("104", "2024-06-01T12:05:00.000Z", "3", ["city=St. John's;topic=traffic"],
          retweet=True),
    '{"errors": [{"title": "operational-disconnect"}]}',
    "not json",
    _line("105", "2024-06-01T12:02:00.000Z", "4", ["no tag format"]),
]


def _rows(frame: pd.DataFrame, city: str, topic: str = "") -> dict[str, tuple[int, int, int]]:
    mine = frame[(frame["city"] == city) & (frame["topic"] == topic)]
    return {start.strftime("%H:%M"): (tweets, retweets, users) for start, tweets, retweets, users
            in zip(mine["window_start"], mine["tweets"], mine["retweets"], mine["unique_users"],
                   strict=True)}


def test_posts_per_city_once_and_garbage_ignored() -> None:
    posts = reference.read_posts(LINES)
    assert [(p.id, p.city) for p in posts] == [
        ("101", "Montréal"), ("102", "Montréal"), ("103", "Montréal"), ("103", "St. John's"),
        ("104", "St. John's")]
    assert posts[1].topics == {"hockey", "food"} and posts[1].is_retweet


def test_five_minute_windows_per_city_by_hand() -> None:
    frame = reference.aggregate(reference.read_posts(LINES), FIVE, ONE)
    # 101 @12:00:30 (user 1), 102 @12:01:10 (user 2, retweet), 103 @12:03:59.999 (user 1)
    assert _rows(frame, "Montréal") == {
        "11:56": (1, 0, 1), "11:57": (2, 1, 2), "11:58": (2, 1, 2), "11:59": (3, 1, 2),
        "12:00": (3, 1, 2), "12:01": (2, 1, 2), "12:02": (1, 0, 1), "12:03": (1, 0, 1)}
    # 103 @12:03:59.999 (user 1), 104 @12:05:00.000 (user 3, retweet): windows are
    # half-open, so [12:00, 12:05) holds 103 only.
    assert _rows(frame, "St. John's") == {
        "11:59": (1, 0, 1), "12:00": (1, 0, 1), "12:01": (2, 1, 2), "12:02": (2, 1, 2),
        "12:03": (2, 1, 2), "12:04": (1, 1, 1), "12:05": (1, 1, 1)}
    first = frame.iloc[0]
    assert first["window_end"] - first["window_start"] == pd.Timedelta(minutes=5)
    assert first["window_start"].tzinfo is not None


def test_five_minute_windows_per_city_and_topic_by_hand() -> None:
    frame = reference.aggregate(reference.read_posts(LINES), FIVE, ONE, by_topic=True)
    assert _rows(frame, "Montréal", "hockey") == {  # 101, 102
        "11:56": (1, 0, 1), "11:57": (2, 1, 2), "11:58": (2, 1, 2), "11:59": (2, 1, 2),
        "12:00": (2, 1, 2), "12:01": (1, 1, 1)}
    assert _rows(frame, "Montréal", "food") == {  # 102, 103
        "11:57": (1, 1, 1), "11:58": (1, 1, 1), "11:59": (2, 1, 2), "12:00": (2, 1, 2),
        "12:01": (2, 1, 2), "12:02": (1, 0, 1), "12:03": (1, 0, 1)}
    assert set(frame["topic"]) == {"hockey", "food", "traffic"}


def test_hour_and_leaderboard_distinct_users_over_the_hour() -> None:
    hours = reference.aggregate(reference.read_posts(LINES), timedelta(hours=1), ONE)
    end = datetime(2024, 6, 1, 12, 5, tzinfo=UTC)  # the hour [11:05, 12:05)
    # Montréal: 3 posts, 1 retweet, users {1, 2}; St. John's: post 103 only (104 is at 12:05).
    assert reference.top_cities(hours, end, "tweets") == [("Montréal", 3), ("St. John's", 1)]
    assert reference.top_cities(hours, end, "unique_users") == [("Montréal", 2),
                                                                ("St. John's", 1)]
    later = end + ONE  # [11:06, 12:06): St. John's now has 104 too; ties by city name
    assert reference.top_cities(hours, later, "retweets") == [("Montréal", 1),
                                                              ("St. John's", 1)]
    assert reference.top_cities(hours, later, "tweets", limit=1) == [("Montréal", 3)]
