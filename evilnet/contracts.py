"""The contracts between the parts of the pipeline, in one place.

Planner, producer, Spark job, dashboards and tests import these names; none of
them spells a topic name, a tag or a record field on its own.

Rule tag
    Every X API rule the planner writes carries the tag ``city=<City>;topic=<topic>``.
    The producer reads a post's city and topic back from the tags of the rules it
    matched (the API's ``matching_rules`` field). City names may hold letters with
    accents, spaces, apostrophes, periods and hyphens (``Montréal``, ``St. John's``,
    ``Trois-Rivières``); topics are keywords or short phrases. Neither may contain
    ``;`` or ``=``, which delimit the tag.

Kafka record (topic :data:`TWEETS_TOPIC`)
    One record per post and matched city, keyed by the city (UTF-8), so that all
    posts of one city land in one partition in order. The value is the JSON
    object described by :class:`PostRecord`.

Dead letters (topic :data:`DEAD_LETTER_TOPIC`)
    A payload the producer cannot turn into records is written there as a
    :class:`DeadLetter`: a :class:`DeadLetterReason` code, a human detail and the
    raw payload (lossless, base64 when it is not valid UTF-8; only a payload
    larger than the producer's limit is cut, and then says so).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

# --- Kafka topics -----------------------------------------------------------------

TWEETS_TOPIC = "tweets"
DEAD_LETTER_TOPIC = "tweets.dead-letter"

# --- X API ------------------------------------------------------------------------

# The X API itself: what tweepy 4.17 hard-codes for both the rules calls and the
# stream, what live problem bodies still name in their ``type`` URIs, and where a
# producer connects unless its config (or the planner's inventory) says otherwise.
X_API_BASE_URL = "https://api.twitter.com"


@dataclass(frozen=True)
class AccessLevel:
    """What one X app may hold on the filtered stream at an access level."""

    rule_max_length: int  # characters of one rule's value
    rules_per_app: int
    # Stream connections open at once per app: a second one beyond this is refused
    # with HTTP 429 TooManyConnections (redundant connections are Enterprise only).
    stream_connections: int = 1
    # Posts delivered per monthly billing cycle before the API answers HTTP 429
    # UsageCapExceeded; None where the contract sets no fixed cap.
    monthly_post_cap: int | None = None
    # The most ``backfill_minutes`` a reconnect may ask for (0: not available).
    backfill_max_minutes: int = 0


# The filtered-stream limits per app (project), by the names ``planner_access_level``
# takes, as X documents them: pay-per-use (today's default self-serve plan) allows
# 1 connection and 1,000 rules of 1,024 characters, and caps post reads at 2 million
# a month (the post-cap page; a later pricing page says 3 million: the lower figure
# warns earlier); the earlier Pro had the same rule limits and 1 million posts a
# month; Enterprise allows 25,000 rules of 2,048 characters, 2 redundant connections
# and a backfill of up to 5 minutes, under a negotiated volume. ``basic`` stands for
# the small levels of 25 rules of 512 characters (2021-22's Elevated): X has no
# filtered stream at a level that small today and no cap is known for it, so none
# is metered (the local stack's simulator plays it, and must not alert on a cap).
ACCESS_LEVELS = {
    "basic": AccessLevel(rule_max_length=512, rules_per_app=25),
    "pay-per-use": AccessLevel(rule_max_length=1024, rules_per_app=1000,
                               monthly_post_cap=2_000_000),
    "pro": AccessLevel(rule_max_length=1024, rules_per_app=1000, monthly_post_cap=1_000_000),
    "enterprise": AccessLevel(rule_max_length=2048, rules_per_app=25000, stream_connections=2,
                              backfill_max_minutes=5),
}
# The level a plan (and the local X API simulator) assumes when none is given:
# today's default self-serve plan.
DEFAULT_ACCESS_LEVEL = "pay-per-use"
# The longest rule value any access level accepts: the producer's config takes
# rules up to this, and the API refuses what is too long for the app's own level.
RULE_VALUE_MAX_LENGTH = max(level.rule_max_length for level in ACCESS_LEVELS.values())

# --- Rule tags --------------------------------------------------------------------

# Letters of any script (with their combining accents), spaces, apostrophes
# (straight and typographic), periods and hyphens; must start with a letter.
_CITY_PATTERN = r"[^\W\d_](?:[^\W\d_]|[ '\u2019.\-])*"
# Keywords or phrases: letters, digits, spaces, hyphens, '#' and '@' prefixes.
_TOPIC_PATTERN = r"[#@]?[\w](?:[\w \-]*[\w])?"
TAG_RE = re.compile(rf"city=(?P<city>{_CITY_PATTERN});topic=(?P<topic>{_TOPIC_PATTERN})")
CITY_MAX_LENGTH = 64
TOPIC_MAX_LENGTH = 64


class TagError(ValueError):
    """A rule tag that does not follow ``city=<City>;topic=<topic>``."""


@dataclass(frozen=True, order=True)
class RuleTag:
    """The (city, topic) a rule stands for, and its tag text."""

    city: str
    topic: str

    def __post_init__(self) -> None:
        city = unicodedata.normalize("NFC", self.city)
        topic = unicodedata.normalize("NFC", self.topic)
        object.__setattr__(self, "city", city)
        object.__setattr__(self, "topic", topic)
        if not (0 < len(city) <= CITY_MAX_LENGTH and re.fullmatch(_CITY_PATTERN, city)):
            raise TagError(f"invalid city name in rule tag: {city!r}")
        if not (0 < len(topic) <= TOPIC_MAX_LENGTH and re.fullmatch(_TOPIC_PATTERN, topic)):
            raise TagError(f"invalid topic in rule tag: {topic!r}")

    @property
    def tag(self) -> str:
        return f"city={self.city};topic={self.topic}"

    @classmethod
    def parse(cls, tag: str) -> RuleTag:
        match = TAG_RE.fullmatch(unicodedata.normalize("NFC", tag or ""))
        if match is None:
            raise TagError(f"rule tag does not match 'city=<City>;topic=<topic>': {tag!r}")
        return cls(match["city"], match["topic"])


# --- Kafka record schema ----------------------------------------------------------

# Version 2 added ``producer`` and ``received_at`` (redundant producers, the fidelity
# report); both are optional, so a version-1 record still reads as a version-2 one.
RECORD_SCHEMA_VERSION = 2


class PostRecord(BaseModel):
    """The value of one record in :data:`TWEETS_TOPIC` (serialized as JSON).

    ``created_at`` is the post's own creation time (the job's event time), in UTC,
    ISO 8601 with a ``Z`` suffix. ``topics`` are the topics of ``city`` that the
    post matched, sorted and without repeats.

    Since version 2, ``producer`` names the producer copy that delivered the post
    (``<shard>@<host>``, :func:`producer_id`; the shard's name alone when it runs
    once) and ``received_at`` is when that producer read it off the stream (UTC).
    Two redundant producers of one shard each write their own record of a post;
    consumers count a post once by ``id`` (the stream job drops the duplicates),
    and the fidelity report compares the copies by these two fields.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = RECORD_SCHEMA_VERSION
    id: str = Field(pattern=r"^\d{1,19}$")
    created_at: datetime
    author_id: str = Field(pattern=r"^\d{1,19}$")
    is_retweet: bool
    city: str
    topics: list[str] = Field(min_length=1)
    lang: str | None = None
    text: str = ""
    producer: str | None = None
    received_at: datetime | None = None


def producer_id(shard: str, host: str | None = None) -> str:
    """The name a producer copy writes in :attr:`PostRecord.producer` and in its metrics."""
    return f"{shard}@{host}" if host else shard


def shard_of_producer(producer: str) -> str:
    """The shard a :func:`producer_id` belongs to."""
    return producer.partition("@")[0]


class DeadLetterReason(StrEnum):
    """Why a payload became a dead letter (the ``reason`` of :class:`DeadLetter`)."""

    INVALID_UTF8 = "invalid-utf8"
    INVALID_JSON = "invalid-json"
    NOT_A_POST = "not-a-post"  # valid JSON, but not a filtered-stream object with ``data``
    MISSING_FIELD = "missing-field"  # e.g. ``data.id``, ``data.created_at``, ``data.author_id``
    INVALID_FIELD = "invalid-field"  # present but malformed (an id that is not digits, a bad date)
    NO_MATCHING_RULES = "no-matching-rules"
    UNKNOWN_TAG_FORMAT = "unknown-tag-format"  # no matched rule's tag follows the tag format
    TOO_LARGE = "too-large"


class DeadLetter(BaseModel):
    """The value of one record in :data:`DEAD_LETTER_TOPIC`.

    ``truncated`` is true only for :attr:`DeadLetterReason.TOO_LARGE`, whose payload
    keeps the first bytes only (``detail`` gives the original size).
    """

    model_config = ConfigDict(extra="forbid")

    reason: DeadLetterReason
    detail: str = ""
    payload: str
    payload_encoding: str = "utf-8"  # or "base64" when the payload was not valid UTF-8
    truncated: bool = False
    source: str = ""
    received_at: datetime
