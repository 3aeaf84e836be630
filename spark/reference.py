"""The reference: DESIGN.md's numbers computed from a posts file in plain Python (no Spark).

``evilnet check`` compares the job's tables with these frames. The rules, written
out independently of the job and of the producer's router:

- a stream line is a post if it is a JSON object whose ``data`` has a digits-only
  ``id`` and ``author_id`` and an ISO ``created_at`` with a time zone; other lines
  (notices, garbage) count nothing;
- the post belongs to every city named by a parseable tag of its ``matching_rules``
  (``city=<City>;topic=<topic>``), under every topic of that city it matched;
- a post delivered more than once counts once per city (its first delivery);
- it is a retweet if ``referenced_tweets`` has an entry of type ``retweeted``;
- a window ``[start, start + window)`` starts on a multiple of the slide (epoch
  aligned) and holds the posts with ``start <= created_at < start + window``;
- tweets = distinct post ids, retweets = those that are retweets, unique_users =
  distinct author ids.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from evilnet.contracts import RuleTag, TagError
from evilnet.schema import METRICS, WINDOW_COLUMNS

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Post:
    """One post as matched to one city."""

    id: str
    created_at: datetime
    author_id: str
    is_retweet: bool
    city: str
    topics: frozenset[str]


def parse_line(line: str | bytes) -> list[Post]:
    """The posts (one per matched city) of one stream line; [] if it is not a post."""
    try:
        message = json.loads(line)
        data = message["data"]
        post_id, author_id = data["id"], data["author_id"]
        created_at = datetime.fromisoformat(data["created_at"])
    except (ValueError, TypeError, KeyError):
        return []
    if not (isinstance(post_id, str) and post_id.isdigit() and isinstance(author_id, str)
            and author_id.isdigit() and created_at.tzinfo is not None):
        return []
    topics: dict[str, set[str]] = defaultdict(set)
    for rule in message.get("matching_rules") or []:
        try:
            tag = RuleTag.parse(rule.get("tag", "") if isinstance(rule, dict) else "")
        except TagError:
            continue
        topics[tag.city].add(tag.topic)
    retweet = any(isinstance(ref, dict) and ref.get("type") == "retweeted"
                  for ref in data.get("referenced_tweets") or [])
    return [Post(post_id, created_at.astimezone(UTC), author_id, retweet, city,
                 frozenset(city_topics)) for city, city_topics in sorted(topics.items())]


def read_posts(lines: Iterable[str | bytes]) -> list[Post]:
    """Every post of a file of stream lines, first deliveries only, in file order."""
    seen: set[tuple[str, str]] = set()
    posts = []
    for line in lines:
        if not line.strip():
            continue
        for post in parse_line(line):
            if (post.city, post.id) not in seen:
                seen.add((post.city, post.id))
                posts.append(post)
    return posts


def window_starts(moment: datetime, window: timedelta, slide: timedelta) -> list[datetime]:
    """The starts of every window that holds ``moment``."""
    latest = EPOCH + (moment - EPOCH) // slide * slide
    return [latest - n * slide for n in range(window // slide)]


def aggregate(posts: Iterable[Post], window: timedelta, slide: timedelta, *,
              by_topic: bool = False) -> pd.DataFrame:
    """One row per (city, topic, window) with posts: WINDOW_COLUMNS, topic '' per city."""
    groups: dict[tuple[str, str, datetime], tuple[set, set, set]] = defaultdict(
        lambda: (set(), set(), set()))
    for post in posts:
        for topic in (sorted(post.topics) if by_topic else [""]):
            for start in window_starts(post.created_at, window, slide):
                ids, retweets, users = groups[(post.city, topic, start)]
                ids.add(post.id)
                users.add(post.author_id)
                if post.is_retweet:
                    retweets.add(post.id)
    rows = [(city, topic, start, start + window, len(ids), len(retweets), len(users))
            for (city, topic, start), (ids, retweets, users) in groups.items()]
    return frame(rows)


def frame(rows: Iterable[tuple]) -> pd.DataFrame:
    """Rows of WINDOW_COLUMNS as a frame in a canonical order and dtypes (for comparing)."""
    result = pd.DataFrame(list(rows), columns=list(WINDOW_COLUMNS))
    for column in ("window_start", "window_end"):
        result[column] = pd.to_datetime(result[column], utc=True)
    result["topic"] = result["topic"].fillna("").astype(str)
    result = result.astype({"city": str, **dict.fromkeys(METRICS, "int64")})
    return result.sort_values(["city", "topic", "window_start"]).reset_index(drop=True)


def top_cities(hours: pd.DataFrame, window_end: datetime, metric: str,
               limit: int = 5) -> list[tuple[str, int]]:
    """The leaderboard of the hour ending at ``window_end``: value descending, then city."""
    ending = hours[hours["window_end"] == pd.Timestamp(window_end)]
    ranked = sorted(zip(ending["city"], ending[metric].astype(int), strict=True),
                    key=lambda pair: (-pair[1], pair[0]))
    return ranked[:limit]
