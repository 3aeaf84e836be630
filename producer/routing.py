"""From one raw filtered-stream payload to Kafka records, or to one dead letter.

A payload is one line as the X API sends it (and as a replay file holds it)::

    {"data": {"id": "…", "created_at": "…", "author_id": "…", …},
     "includes": {…},
     "matching_rules": [{"id": "…", "tag": "city=Montréal;topic=hockey"}, …]}

It yields one :class:`~evilnet.contracts.PostRecord` per matched city, carrying
every topic of that city the post matched. Rules whose tag does not follow the
tag format are someone else's and are ignored, as long as one matched rule's tag
does. Anything else that stops us from building a complete record sends the
whole payload to the dead-letter topic with a :class:`DeadLetterReason`.

Stream lines that carry ``errors`` and no ``data`` are the API's own notices
(e.g. an operational disconnect): they are reported, not dead-lettered.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from evilnet.contracts import DeadLetter, DeadLetterReason, PostRecord, RuleTag, TagError

RETWEET_REFERENCE = "retweeted"


@dataclass(frozen=True)
class Line:
    """One line of a stream or file, without its line ending.

    ``size`` is the length the line really had; when it is larger than
    ``len(data)``, the line was too long and ``data`` holds its first bytes only.
    """

    data: bytes
    size: int

    @property
    def cut(self) -> bool:
        return self.size > len(self.data)


def split_lines(chunks: Iterable[bytes], max_line_bytes: int) -> Iterator[Line]:
    """The lines of a byte stream, with never more than ``max_line_bytes`` of one in memory.

    Lines end with ``\\n`` (an optional ``\\r`` before it is dropped). An empty line
    is yielded as ``Line(b"", 0)``: on the X stream that is a keep-alive.
    """
    kept = bytearray()
    size = 0
    ends_with_cr = False
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            room = max_line_bytes - len(kept)
            if room > 0:
                kept += piece[:room]
            if piece:
                size += len(piece)
                ends_with_cr = piece.endswith(b"\r")
            if end < 0:
                break
            yield _finish_line(kept, size, ends_with_cr)
            kept.clear()
            size, ends_with_cr = 0, False
            start = end + 1
    if size:
        yield _finish_line(kept, size, ends_with_cr)


def _finish_line(kept: bytearray, size: int, ends_with_cr: bool) -> Line:
    if ends_with_cr:  # a CRLF line ending: the CR is not part of the line
        size -= 1
    return Line(bytes(kept[:size]), size)


@dataclass(frozen=True)
class Routed:
    """What one payload became: records, a dead letter, or an API notice."""

    records: tuple[PostRecord, ...] = ()
    dead_letter: DeadLetter | None = None
    notice: Any = None  # the ``errors`` of a system message


class _Reject(Exception):
    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class Router:
    """Turns payloads into records; holds the limits, so it is built once per producer."""

    max_payload_bytes: int
    source: str = ""
    # The producer copy that reads a stream (PostRecord.producer): its records also say
    # when the line was read (received_at). A replay is not a delivery and names none.
    producer: str | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), repr=False)

    def route(self, line: Line) -> Routed:
        try:
            if line.size > self.max_payload_bytes:
                raise _Reject(
                    DeadLetterReason.TOO_LARGE,
                    f"payload of {line.size} bytes exceeds the limit of "
                    f"{self.max_payload_bytes} bytes; only its first bytes are kept",
                )
            try:
                text = line.data.decode("utf-8")
            except UnicodeDecodeError as error:
                raise _Reject(DeadLetterReason.INVALID_UTF8, str(error)) from None
            try:
                message = json.loads(text)
            except (ValueError, RecursionError) as error:
                raise _Reject(DeadLetterReason.INVALID_JSON, str(error)[:200]) from None
            if isinstance(message, dict) and "data" not in message and "errors" in message:
                return Routed(notice=message["errors"])
            received_at = self.clock() if self.producer is not None else None
            return _records_of(message, self.producer, received_at)
        except _Reject as rejection:
            return Routed(dead_letter=self._dead_letter(line, rejection))

    def _dead_letter(self, line: Line, rejection: _Reject) -> DeadLetter:
        try:
            payload, encoding = line.data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(line.data).decode("ascii"), "base64"
        return DeadLetter(
            reason=rejection.reason,
            detail=rejection.detail,
            payload=payload,
            payload_encoding=encoding,
            truncated=line.cut,
            source=self.source,
            received_at=self.clock(),
        )


def _records_of(message: Any, producer: str | None, received_at: datetime | None) -> Routed:
    if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
        raise _Reject(DeadLetterReason.NOT_A_POST, "expected an object with a 'data' object")
    post = message["data"]
    post_id = _required_text(post, "id")
    created_at = _created_at(_required_text(post, "created_at"))
    author_id = _required_text(post, "author_id")
    topics_by_city = _topics_by_city(message.get("matching_rules"))
    lang = post.get("lang")
    text = post.get("text", "")
    if not (lang is None or isinstance(lang, str)) or not isinstance(text, str):
        raise _Reject(DeadLetterReason.INVALID_FIELD, "data.lang and data.text must be strings")
    try:
        records = tuple(
            PostRecord(
                id=post_id,
                created_at=created_at,
                author_id=author_id,
                is_retweet=_is_retweet(post.get("referenced_tweets")),
                city=city,
                topics=sorted(topics),
                lang=lang,
                text=text,
                producer=producer,
                received_at=received_at,
            )
            for city, topics in sorted(topics_by_city.items())
        )
    except ValidationError as error:
        problem = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise _Reject(DeadLetterReason.INVALID_FIELD, f"{where}: {problem['msg']}") from None
    return Routed(records=records)


def _required_text(post: dict[str, Any], name: str) -> str:
    value = post.get(name)
    if value is None:
        raise _Reject(DeadLetterReason.MISSING_FIELD, f"data.{name} is missing")
    if not isinstance(value, str) or not value:
        raise _Reject(DeadLetterReason.INVALID_FIELD, f"data.{name} must be a non-empty string")
    return value


def _created_at(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Reject(DeadLetterReason.INVALID_FIELD, f"data.created_at: {text[:40]!r}") from None
    if moment.tzinfo is None:
        raise _Reject(DeadLetterReason.INVALID_FIELD, "data.created_at has no time zone")
    return moment.astimezone(UTC)


def _topics_by_city(matching_rules: Any) -> dict[str, set[str]]:
    if not isinstance(matching_rules, list) or not matching_rules:
        raise _Reject(DeadLetterReason.NO_MATCHING_RULES, "matching_rules is missing or empty")
    topics_by_city: dict[str, set[str]] = defaultdict(set)
    for rule in matching_rules:
        tag = rule.get("tag") if isinstance(rule, dict) else None
        try:
            parsed = RuleTag.parse(tag) if isinstance(tag, str) else None
        except TagError:
            parsed = None
        if parsed is not None:
            topics_by_city[parsed.city].add(parsed.topic)
    if not topics_by_city:
        tags = [rule.get("tag") if isinstance(rule, dict) else rule for rule in matching_rules]
        detail = f"no tag follows the format: {tags!r}"[:300]
        raise _Reject(DeadLetterReason.UNKNOWN_TAG_FORMAT, detail)
    return topics_by_city


def _is_retweet(references: Any) -> bool:
    if references is None:
        return False
    if not isinstance(references, list) or not all(isinstance(r, dict) for r in references):
        raise _Reject(DeadLetterReason.INVALID_FIELD, "data.referenced_tweets must be a list")
    return any(reference.get("type") == RETWEET_REFERENCE for reference in references)
