"""Realistic filtered-stream posts, deterministic for a seed.

Used by the simulator (live, ``created_at`` = now) and by ``evilnet synth``
(synthetic time). What makes the data realistic enough to exercise the pipeline:

* many users per city with a Zipf-distributed activity: a few accounts post a
  lot, most post rarely (so "unique users" is much smaller than "posts");
* retweets of recent posts on the same topic and city (with the original in
  ``includes.tweets``), replies and quotes, besides originals;
* several topics per city, posts that match two topics of a city (one record
  with both topics) and, rarely, rules of two cities (one record per city);
* bursts: for a while one (city, topic) takes most of the traffic and the
  arrival rate jumps;
* accents and apostrophes kept as they are (``Montréal``, ``St. John's``).

Every object has the shape the API sends when asked for
:data:`evilnet.producer.xapi.STREAM_PARAMETERS`; the simulator strips the
fields a client did not ask for.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from evilnet.contracts import RuleTag

# X ids are "snowflakes": milliseconds since this epoch, shifted left by 22 bits.
SNOWFLAKE_EPOCH_MS = 1288834974657

_OPENERS = ("Big news on", "Loving the", "Anyone else following", "Hot take about",
            "Can't stop thinking about", "Live updates:", "Thread on", "Wow,")
_CLOSERS = ("tonight", "right now", "this week", "🔥", "!!", "— thoughts?", "😂", "again")
_HANDLE_STEMS = ("fan", "news", "daily", "local", "real", "the", "its", "just")


def snowflake(moment: datetime, sequence: int = 0) -> int:
    """The smallest X-style id for ``moment``, plus ``sequence``."""
    milliseconds = int(moment.timestamp() * 1000) - SNOWFLAKE_EPOCH_MS
    return (milliseconds << 22) + sequence


def x_timestamp(moment: datetime) -> str:
    """``created_at`` as the API writes it: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class MatchableRule:
    """A registered rule as the generator needs it: its id and its parsed tag."""

    id: str
    tag: RuleTag


@dataclass(frozen=True)
class _User:
    id: str
    username: str
    name: str


@dataclass(frozen=True)
class _Recent:
    post: dict
    author: _User


class PostGenerator:
    """Makes one filtered-stream object per call; same seed and calls, same objects."""

    def __init__(
        self,
        rules: Sequence[MatchableRule],
        *,
        seed: int,
        users_per_city: int = 400,
        zipf_exponent: float = 1.15,
        burst_probability: float = 0.004,
        geo_probability: float = 0.3,
    ) -> None:
        self._random = random.Random(seed)
        self._users_per_city = users_per_city
        self._burst_probability = burst_probability
        self._geo_probability = geo_probability
        # Zipf weights by activity rank: user k posts about 1/k^s as often as user 1.
        self._rank_cumulative = list(itertools.accumulate(
            1 / rank**zipf_exponent for rank in range(1, users_per_city + 1)))
        self._users: dict[str, list[_User]] = {}
        self._recent: dict[RuleTag, deque[_Recent]] = {}
        self._burst_rule: MatchableRule | None = None
        self._burst_left = 0
        self.set_rules(rules)

    def set_rules(self, rules: Sequence[MatchableRule]) -> None:
        """Generate for these rules from now on (the simulator's rules change live)."""
        self._rules = sorted(rules, key=lambda rule: (rule.tag, rule.id))
        self._rules_by_city: dict[str, list[MatchableRule]] = {}
        for rule in self._rules:
            self._rules_by_city.setdefault(rule.tag.city, []).append(rule)
        # Some cities are much busier than others; the weight is fixed per city name
        # so that adding a rule does not reshuffle the others.
        self._cities = sorted(self._rules_by_city)
        self._city_weights = [1 + _stable_unit(city) * 9 for city in self._cities]
        if self._burst_rule not in self._rules:
            self._burst_rule, self._burst_left = None, 0

    @property
    def has_rules(self) -> bool:
        return bool(self._rules)

    def next_gap(self, mean_rate: float) -> float:
        """Seconds until the next post, for a mean rate (posts/s) outside bursts."""
        rate = mean_rate * (6 if self._burst_left else 1)
        return self._random.expovariate(rate)

    def next_post(self, post_id: int, created_at: datetime) -> dict:
        """One filtered-stream object (``data``, ``includes``, ``matching_rules``)."""
        if not self._rules:
            raise ValueError("no rules to generate posts for")
        rng = self._random
        primary = self._pick_rule()
        city = primary.tag.city
        matched = {primary}
        siblings = self._rules_by_city[city]
        if len(siblings) > 1 and rng.random() < 0.15:
            matched.add(rng.choice(siblings))
        if len(self._cities) > 1 and rng.random() < 0.03:
            matched.add(self._rules[rng.randrange(len(self._rules))])

        author = self._pick_user(city)
        post: dict = {
            "id": str(post_id),
            "edit_history_tweet_ids": [str(post_id)],
            "created_at": x_timestamp(created_at),
            "author_id": author.id,
            "lang": "fr" if any(ord(letter) > 127 for letter in city) and rng.random() < 0.7
            else "en",
        }
        includes: dict = {"users": [_user_object(author)]}
        # Retweets, replies and quotes refer to recent posts on the same topic and city.
        recent = self._recent.setdefault(primary.tag, deque(maxlen=50))
        kind = rng.random()
        if recent and kind < 0.28:
            original = recent[rng.randrange(len(recent))]
            post["text"] = f"RT @{original.author.username}: {original.post['text']}"[:280]
            post["referenced_tweets"] = [{"type": "retweeted", "id": original.post["id"]}]
            includes["tweets"] = [original.post]
            includes["users"].append(_user_object(original.author))
        else:
            post["text"] = self._text(primary.tag)
            if recent and kind < 0.45:
                original = recent[rng.randrange(len(recent))]
                reference = "replied_to" if kind < 0.40 else "quoted"
                post["referenced_tweets"] = [{"type": reference, "id": original.post["id"]}]
                if reference == "replied_to":
                    post["in_reply_to_user_id"] = original.author.id
                    post["text"] = f"@{original.author.username} {post['text']}"
                includes["tweets"] = [original.post]
            recent.append(_Recent(dict(post), author))
        if rng.random() < self._geo_probability:
            place_id = _place_id(city)
            post["geo"] = {"place_id": place_id}
            includes["places"] = [{"id": place_id, "full_name": city, "place_type": "city"}]
        return {
            "data": post,
            "includes": includes,
            "matching_rules": [{"id": rule.id, "tag": rule.tag.tag}
                               for rule in sorted(matched, key=lambda rule: rule.id)],
        }

    def _pick_rule(self) -> MatchableRule:
        rng = self._random
        if self._burst_left:
            self._burst_left -= 1
            if rng.random() < 0.7:
                assert self._burst_rule is not None
                return self._burst_rule
        elif rng.random() < self._burst_probability:
            self._burst_rule = self._rules[rng.randrange(len(self._rules))]
            self._burst_left = rng.randint(50, 300)
        city = rng.choices(self._cities, self._city_weights)[0]
        return rng.choice(self._rules_by_city[city])

    def _pick_user(self, city: str) -> _User:
        users = self._users.get(city)
        if users is None:
            users = self._users[city] = self._make_users(city)
        point = self._random.random() * self._rank_cumulative[-1]
        return users[bisect.bisect_left(self._rank_cumulative, point)]

    def _make_users(self, city: str) -> list[_User]:
        # Ids derive from the city name, so a user keeps its id whatever the rules are.
        first_id = 10**12 + int(_stable_unit(city) * 10**9) * 1000
        slug = "".join(letter for letter in city.lower() if letter.isascii() and letter.isalnum())
        return [
            _User(str(first_id + rank), f"{_HANDLE_STEMS[rank % 8]}_{slug[:8]}{rank}",
                  f"{city} person {rank}")
            for rank in range(self._users_per_city)
        ]

    def _text(self, tag: RuleTag) -> str:
        rng = self._random
        hashtag = "#" + "".join(letter for letter in tag.city if letter.isalnum())
        return (f"{rng.choice(_OPENERS)} {tag.topic} in {tag.city} {hashtag} "
                f"{rng.choice(_CLOSERS)}")


def _stable_unit(text: str) -> float:
    """A number in [0, 1) that depends only on ``text`` (not on PYTHONHASHSEED)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _place_id(city: str) -> str:
    return hashlib.sha256(("place:" + city).encode("utf-8")).hexdigest()[:16]


def _user_object(user: _User) -> dict:
    return {"id": user.id, "username": user.username, "name": user.name}


SYNTH_START = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
SYNTH_RULE_ID_BASE = 1_790_000_000_000_000_000
# Seeds that differ modulo this make disjoint post ids (see synthesize).
SYNTH_SEED_STRIDE = 1024


def synthetic_rules(cities: Sequence[str], topics: Sequence[str]) -> list[MatchableRule]:
    """One rule per (city, topic), with stable ids, as the planner would register them."""
    tags = [RuleTag(city, topic) for city in cities for topic in topics]
    return [MatchableRule(str(SYNTH_RULE_ID_BASE + index), tag) for index, tag in enumerate(tags)]


def synthesize(
    rules: Sequence[MatchableRule],
    *,
    posts: int,
    seed: int,
    start: datetime = SYNTH_START,
    mean_rate: float = 20.0,
) -> Iterator[dict]:
    """``posts`` filtered-stream objects in synthetic time from ``start``.

    Post ids step by :data:`SYNTH_SEED_STRIDE` from the snowflake of ``start``, offset
    by the seed: files of other seeds (mod the stride) never share an id, whatever
    their length, so the stream job counts each of them in full.
    """
    generator = PostGenerator(rules, seed=seed)
    moment = start
    first_id = snowflake(start) + seed % SYNTH_SEED_STRIDE
    for index in range(posts):
        moment += timedelta(seconds=generator.next_gap(mean_rate))
        yield generator.next_post(first_id + index * SYNTH_SEED_STRIDE, moment)
