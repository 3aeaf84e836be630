"""The monitoring tests' fixture, worked out by hand: windows, topics and leaderboards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from evilnet.spark.store import WindowRow

KEYSPACE = "evilnet_dashboards_test"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- the fixture, by hand -----------------------------------------------------------
# Five-minute windows around a UTC midnight (two day partitions). The dashboards'
# range is [RANGE_FROM, RANGE_TO): Montréal's 23:45 window starts before it and
# St. John's 00:30 window at its end, so neither is in it; Trois-Rivières has no
# window in it at all.
RANGE_FROM = at("2026-11-27T23:50:00")
RANGE_TO = at("2026-11-28T00:30:00")
FIVE = timedelta(minutes=5)

CITY_WINDOWS = {  # city: [(window_start, tweets, retweets, unique_users)]
    "Montréal": [("2026-11-27T23:45:00", 8, 8, 8), ("2026-11-27T23:50:00", 4, 1, 3),
                 ("2026-11-28T00:10:00", 7, 2, 5)],
    "St. John's": [("2026-11-27T23:55:00", 2, 0, 2), ("2026-11-28T00:00:00", 3, 1, 3),
                   ("2026-11-28T00:30:00", 6, 6, 6)],
    "Toronto": [("2026-11-27T23:55:00", 9, 4, 6)],
    # The 2026-10-29 window is on the oldest UTC day of the 30 days up to RANGE_TO.
    "Vancouver": [("2026-10-29T12:00:00", 11, 1, 10), ("2026-11-28T00:05:00", 5, 2, 4)],
    "Trois-Rivières": [("2026-11-28T00:40:00", 1, 0, 1)],
}
TOPIC_WINDOWS = {  # (city, topic): [(window_start, tweets, retweets, unique_users)]
    ("Montréal", "hockey"): [("2026-11-27T23:50:00", 3, 1, 2)],
    ("Montréal", "transit"): [("2026-11-28T00:10:00", 4, 1, 3)],
    ("St. John's", "hockey"): [("2026-11-28T00:00:00", 2, 1, 2)],
    ("Toronto", "hockey"): [("2026-11-27T23:55:00", 5, 2, 4)],
    ("Toronto", "food"): [("2026-11-27T23:55:00", 4, 2, 3)],
}

# The leaderboard of the hour ending at LEADER_END, and of the minutes around it
# (which the panel must not read): city: (tweets, retweets, unique_users).
LEADER_END = at("2026-11-28T00:30:00")
LEADER_HOURS = {
    LEADER_END: {"Montréal": (40, 10, 25), "Toronto": (55, 10, 30), "Vancouver": (40, 12, 18),
                 "St. John's": (12, 3, 9), "Québec": (30, 15, 22),
                 "Trois-Rivières": (8, 2, 7)},
    LEADER_END - timedelta(minutes=1): {"Trois-Rivières": (900, 900, 900)},
    LEADER_END + timedelta(minutes=1): {"Trois-Rivières": (999, 999, 999)},
}


def window_rows() -> list[WindowRow]:
    rows = [WindowRow(city, None, at(start), at(start) + FIVE, t, r, u)
            for city, windows in CITY_WINDOWS.items() for start, t, r, u in windows]
    rows += [WindowRow(city, topic, at(start), at(start) + FIVE, t, r, u)
             for (city, topic), windows in TOPIC_WINDOWS.items() for start, t, r, u in windows]
    return rows


def hour_rows() -> list[WindowRow]:
    return [WindowRow(city, None, end - timedelta(hours=1), end, t, r, u)
            for end, cities in LEADER_HOURS.items() for city, (t, r, u) in cities.items()]
