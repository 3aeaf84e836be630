"""The fidelity report's arithmetic on hand-made deliveries (no Kafka: the stack test
test_producer_redundancy.py reads real records), and the simulator's connection faults."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
from producer_helpers import Simulator

from evilnet.platform.fidelity import Delivery, percentile, render, report

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
END = T0 + timedelta(hours=1)


def delivered(producer: str, post: int, delay_s: float, created_s: float = 60) -> Delivery:
    created = T0 + timedelta(seconds=created_s)
    return Delivery(str(post), producer, created, created + timedelta(seconds=delay_s))


def test_recall_missed_and_union_per_shard_and_producer() -> None:
    # app-1: A has posts 1-4, B has 2-5; app-2 runs once. Post 9 was created after the
    # window and post 8 before it: neither counts.
    deliveries = [*(delivered("app-1@a", p, 0.1 * p) for p in (1, 2, 3, 4)),
                  *(delivered("app-1@b", p, 1.0) for p in (2, 3, 4, 5)),
                  delivered("app-1@b", 3, 5.0),  # the same post again (a second city)
                  delivered("app-2@a", 7, 2.0),
                  delivered("app-1@a", 9, 0.1, created_s=3600),
                  delivered("app-1@b", 8, 0.1, created_s=-1)]

    rows = {row.producer: row for row in report(deliveries, T0, END)}

    a, b, single = rows["app-1@a"], rows["app-1@b"], rows["app-2@a"]
    assert (a.shard, a.received, a.missed, a.union, a.recall) == ("app-1", 4, 1, 5, 0.8)
    assert (b.received, b.missed, b.union, b.recall) == (4, 1, 5, 0.8)
    assert (single.shard, single.received, single.missed, single.recall) == ("app-2", 1, 0, 1.0)
    # A's delays 0.1..0.4 s: p50 between the middle two; B's first delivery of post 3 counts.
    assert a.delay_p50_s == 0.25 and a.delay_p95_s == 0.385
    assert b.delay_p50_s == b.delay_p95_s == 1.0
    assert list(rows) == ["app-1@a", "app-1@b", "app-2@a"]


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([4.0, 1.0, 2.0, 3.0], 0.5) == 2.5
    assert percentile(list(map(float, range(101))), 0.95) == 95.0


def test_the_three_formats() -> None:
    rows = report([delivered("app-1@a", 1, 0.5), delivered("app-1@b", 2, 1.5)], T0, END)
    table = render(rows, "table").splitlines()
    assert table[0].split() == ["shard", "producer", "received", "missed", "union", "recall",
                                "%", "delay", "p50", "s", "delay", "p95", "s"]
    assert table[1].split() == ["app-1", "app-1@a", "1", "1", "2", "50.00", "0.500", "0.500"]
    parsed = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    assert parsed[1] == {"shard": "app-1", "producer": "app-1@b", "received": "1",
                         "missed": "1", "union": "2", "recall": "0.5", "delay_p50_s": "1.5",
                         "delay_p95_s": "1.5"}
    assert json.loads(render(rows, "json"))[0]["recall"] == 0.5
    assert render([], "table") == "no post delivered by a named producer in the window"


def test_connection_faults_are_refused_when_out_of_range(simulator: Simulator) -> None:
    for bad in ({"connection": 1, "drop_fraction": 1.5}, {"connection": 1, "stall_seconds": -1},
                {"drop_fraction": 0.1}):
        answer = requests.post(f"{simulator.base_url}/_sim/connections", json=bad, timeout=5)
        assert answer.status_code == 400, bad
    requests.post(f"{simulator.base_url}/_sim/connections", timeout=5,
                  json={"connection": 3, "drop_fraction": 0.25}).raise_for_status()
    (known,) = requests.get(f"{simulator.base_url}/_sim/connections",
                            timeout=5).json()["connections"]
    assert known == {"connection": 3, "app": None, "open": False, "posts_sent": 0, "held": 0,
                     "drop_fraction": 0.25, "dropped": 0}


@pytest.mark.parametrize("fraction", [0.02, 0.3])
def test_seeded_drops_take_the_fraction_asked(fraction: float) -> None:
    from evilnet.producer.simulator import _ConnectionFaults

    faults = _ConnectionFaults(drop_fraction=fraction, seed=5)
    drops = [faults.drops_next() for _ in range(20_000)]
    assert abs(sum(drops) / len(drops) - fraction) < 0.01
    again = _ConnectionFaults(drop_fraction=fraction, seed=5)
    assert [again.drops_next() for _ in range(20_000)] == drops  # seeded: the same posts
