"""Windows composed from panes (spark/panes.py) against a direct computation from the posts."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evilnet.spark.panes import Pane, Window, compose, neighbour_ranges, window_starts

SLIDE = 60_000

# A post: (city, topic or None, minute, author, is_retweet); ids are their index.
posts_strategy = st.lists(
    st.tuples(st.sampled_from(["Montréal", "St. John's"]), st.sampled_from([None, "hockey"]),
              st.integers(0, 40), st.integers(1, 6), st.booleans()),
    max_size=60)


def panes_of(posts) -> dict[tuple, Pane]:
    """The panes of the posts, by (city, topic, start)."""
    groups: dict[tuple, list] = defaultdict(list)
    for city, topic, minute, author, retweet in posts:
        groups[(city, topic, minute * SLIDE)].append((author, retweet))
    return {key: Pane(key[0], key[1], key[2], len(rows), sum(r for _, r in rows),
                      frozenset(a for a, _ in rows)) for key, rows in groups.items()}


def direct(posts, keys_starts: set[tuple], window_ms: int) -> list[Window]:
    """Each asked window counted from the posts themselves."""
    out = []
    for city, topic, start in sorted(keys_starts, key=lambda k: (k[0], k[1] is not None,
                                                                   k[1] or "", k[2])):
        inside = [p for p in posts if (p[0], p[1]) == (city, topic)
                  and start <= p[2] * SLIDE < start + window_ms]
        out.append(Window(city, topic, start, start + window_ms, len(inside),
                          sum(p[4] for p in inside), len({p[3] for p in inside})))
    return out


@settings(max_examples=300, deadline=None)
@given(old=posts_strategy, new=posts_strategy, window_minutes=st.sampled_from([1, 2, 5, 7]),
       junk=st.booleans())
def test_compose_equals_direct_count(old, new, window_minutes, junk) -> None:
    """Posts of earlier batches are stored panes; a batch's posts change some panes:
    every window holding a changed pane equals a direct count of all posts."""
    window_ms = window_minutes * SLIDE
    everything = old + new
    panes = panes_of(everything)
    changed_keys = {(c, t, m * SLIDE) for c, t, m, _, _ in new}
    changed = [panes[key] for key in changed_keys]
    stored = [pane for key, pane in panes_of(old).items()]
    if junk:  # stale stored versions of changed panes must lose to the batch's
        stored += [Pane(p.city, p.topic, p.start, 99, 99, frozenset({-1})) for p in changed]
    expected_windows = {(c, t, s) for c, t, start in changed_keys
                        for s in window_starts([start], window_ms, SLIDE)}
    assert compose(changed, stored, window_ms, SLIDE) == direct(everything, expected_windows,
                                                                window_ms)


@settings(max_examples=200, deadline=None)
@given(old=posts_strategy, new=posts_strategy, window_minutes=st.sampled_from([1, 5, 60]))
def test_neighbour_ranges_hold_every_pane_needed(old, new, window_minutes) -> None:
    """Stored panes outside neighbour_ranges() change nothing."""
    window_ms = window_minutes * SLIDE
    panes = panes_of(old + new)
    changed = [panes[(c, t, m * SLIDE)] for c, t, m, _, _ in new]
    stored = list(panes_of(old).values())
    ranges = neighbour_ranges(changed, window_ms, SLIDE)
    needed = [p for p in stored if p.key in ranges
              and ranges[p.key][0] <= p.start <= ranges[p.key][1]]
    assert compose(changed, needed, window_ms, SLIDE) == compose(changed, stored, window_ms,
                                                                 SLIDE)


def test_hand_checked_hour_across_a_gap() -> None:
    """Two panes far apart: the windows of each, never the empty ones between."""
    a = Pane("Montréal", None, 0, 2, 1, frozenset({1, 2}))
    b = Pane("Montréal", None, 10 * SLIDE, 1, 0, frozenset({2}))
    c = Pane("Montréal", None, 100 * SLIDE, 3, 3, frozenset({7, 8, 9}))
    windows = compose([a, c], [b], 60 * SLIDE, SLIDE)
    starts = [w.start for w in windows]
    assert starts == list(range(-59 * SLIDE, SLIDE, SLIDE)) + list(
        range(41 * SLIDE, 101 * SLIDE, SLIDE))
    by_start = {w.start: w for w in windows}
    # [-49, 11) holds a and b; [1, 61) none of a, hence not composed; [41, 101) holds c.
    assert (by_start[-49 * SLIDE].tweets, by_start[-49 * SLIDE].retweets,
            by_start[-49 * SLIDE].unique_users) == (3, 1, 2)
    assert (by_start[-50 * SLIDE].tweets, by_start[-50 * SLIDE].unique_users) == (2, 2)
    assert (by_start[41 * SLIDE].tweets, by_start[41 * SLIDE].unique_users) == (3, 3)
    assert by_start[-59 * SLIDE].end == SLIDE


def test_compose_refuses_misaligned_panes() -> None:
    with pytest.raises(ValueError):
        compose([Pane("X", None, 30_000, 1, 0, frozenset({1}))], [], 5 * SLIDE, SLIDE)
    with pytest.raises(ValueError):
        compose([], [], 90_000, SLIDE)
