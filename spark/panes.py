"""Windows composed from per-minute panes (the ``panes`` layout of the stream job): no Spark.

A pane is what one slide (a minute) of event time holds for one key, a city (topic
None) or a city and topic: its posts (tweets), the retweets among them and the set
of its users (their author keys). Each post is in exactly one pane per key, so a
window ``[start, start + window)`` made of whole panes has

- tweets = the sum of its panes' tweets (posts are distinct: deduplicated upstream),
- retweets = the sum of its panes' retweets,
- unique users = the size of the union of its panes' user sets (exact).

:func:`compose` computes every window that holds a changed pane from the changed
panes and the stored ones around them (the changed ones win), sliding over each
key's panes in order: a pane's users are added once when it enters the window and
removed once when it leaves, so a key costs its panes' users twice, however many
windows overlap. :func:`neighbour_ranges` says which stored panes that needs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

Key = tuple[str, str | None]  # (city, topic or None)


@dataclass(frozen=True)
class Pane:
    """One slide of event time for one key; ``start`` in epoch milliseconds."""

    city: str
    topic: str | None
    start: int
    tweets: int
    retweets: int
    users: frozenset[int]

    @property
    def key(self) -> Key:
        return (self.city, self.topic)


@dataclass(frozen=True)
class Window:
    """The three numbers of ``[start, end)`` for one key, in epoch milliseconds."""

    city: str
    topic: str | None
    start: int
    end: int
    tweets: int
    retweets: int
    unique_users: int


def neighbour_ranges(changed: Iterable[Pane], window_ms: int,
                     slide_ms: int) -> dict[Key, tuple[int, int]]:
    """Per key of ``changed``, the first and last pane start (inclusive) that the
    windows holding its changed panes are made of."""
    reach = window_ms - slide_ms
    ranges: dict[Key, tuple[int, int]] = {}
    for pane in changed:
        low, high = ranges.get(pane.key, (pane.start, pane.start))
        ranges[pane.key] = (min(low, pane.start), max(high, pane.start))
    return {key: (low - reach, high + reach) for key, (low, high) in ranges.items()}


def window_starts(changed_starts: Iterable[int], window_ms: int, slide_ms: int) -> list[int]:
    """The starts (multiples of the slide) of every window holding one of the panes."""
    starts: set[int] = set()
    for start in changed_starts:
        starts.update(range(start - window_ms + slide_ms, start + 1, slide_ms))
    return sorted(starts)


def compose(changed: Iterable[Pane], stored: Iterable[Pane], window_ms: int,
            slide_ms: int) -> list[Window]:
    """Every window of ``window_ms`` sliding by ``slide_ms`` that holds a changed pane,
    made of the changed panes and the stored ones (a changed pane replaces the stored
    pane of its key and start; stored panes of other keys are ignored).

    Pane starts must be multiples of ``slide_ms``, and ``window_ms`` a multiple of it.
    Sorted by key (topic None first), then start.
    """
    if slide_ms <= 0 or window_ms % slide_ms:
        raise ValueError("window_ms must be a positive multiple of slide_ms")
    panes: dict[Key, dict[int, Pane]] = defaultdict(dict)
    changed_starts: dict[Key, list[int]] = defaultdict(list)
    for pane in changed:
        if pane.start % slide_ms:
            raise ValueError(f"pane start {pane.start} is not a multiple of the slide")
        panes[pane.key][pane.start] = pane
        changed_starts[pane.key].append(pane.start)
    for pane in stored:
        if pane.key in changed_starts and pane.start not in panes[pane.key]:
            panes[pane.key][pane.start] = pane
    out: list[Window] = []
    for key in sorted(changed_starts, key=lambda k: (k[0], k[1] is not None, k[1] or "")):
        out.extend(_slide(key, panes[key], window_starts(changed_starts[key], window_ms,
                                                         slide_ms), window_ms))
    return out


def _slide(key: Key, by_start: dict[int, Pane], starts: list[int],
           window_ms: int) -> list[Window]:
    """The windows of ``starts`` (ascending) of one key, by two pointers over its panes:
    ``ordered[leave:enter]`` are the panes of the current window."""
    ordered = [by_start[start] for start in sorted(by_start)]
    counts: dict[int, int] = {}
    tweets = retweets = 0
    enter = leave = 0
    out = []
    for start in starts:
        end = start + window_ms
        while leave < enter and ordered[leave].start < start:
            pane = ordered[leave]
            tweets -= pane.tweets
            retweets -= pane.retweets
            for user in pane.users:
                left = counts[user] - 1
                if left:
                    counts[user] = left
                else:
                    del counts[user]
            leave += 1
        while enter < len(ordered) and ordered[enter].start < end:
            pane = ordered[enter]
            enter += 1
            if pane.start < start:
                # Before this window, after the previous one (the starts jumped a gap):
                # every pane before it has left already.
                leave = enter
                continue
            tweets += pane.tweets
            retweets += pane.retweets
            for user in pane.users:
                counts[user] = counts.get(user, 0) + 1
        out.append(Window(key[0], key[1], start, end, tweets, retweets, len(counts)))
    return out
