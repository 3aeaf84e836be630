"""The panes layout in Spark local mode against the reference (spark/reference.py).

A small fixture, batch by batch, through the job's own parsing, deduplication,
aggregation and ``foreachBatch`` writer (tests/analytics/spark_local_driver.py, in a
Python with pyspark: $EVILNET_SPARK_PYTHON, default the Spark master's venv of the
local stack): duplicates within a batch and across batches, a retweet, posts on two
topics and two cities, window boundaries (a post at 12:03:59.999, one at 12:05:00, an
hour window made of panes of two hour partitions), a post within the watermark but
behind panes already written, posts late beyond the watermark, bad records, and a
batch replayed after its commit was deleted (as after a crash). Every 5-minute
window per city and per city and topic, every hour window and the whole
leaderboard of every hour must equal the reference's of the posts the job may count
(all but the late ones). The one layout runs the same steps and must write the same
rows.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from evilnet.producer.routing import Line, Router
from evilnet.schema import METRICS
from evilnet.spark import reference

REPO_ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("spark_local_driver.py")
SPARK_PYTHON = Path(os.environ.get(
    "EVILNET_SPARK_PYTHON", REPO_ROOT / ".run" / "hosts" / "spark-master" / "venv" / "bin" /
    "python"))

pytestmark = [
    pytest.mark.spark_local,
    pytest.mark.skipif(not SPARK_PYTHON.exists(),
                       reason=f"no Python with pyspark at {SPARK_PYTHON} (set "
                              "$EVILNET_SPARK_PYTHON, or stage the local stack: make up)"),
]

FIVE, HOUR, MINUTE = timedelta(minutes=5), timedelta(hours=1), timedelta(minutes=1)
MTL, SJ = "city=Montréal;topic=", "city=St. John's;topic="


def line(post_id: str, at: str, author: str, tags: list[str], retweet: bool = False) -> str:
    data = {"id": post_id, "created_at": f"2024-06-01T{at}Z", "author_id": author, "text": "…"}
    if retweet:
        data["referenced_tweets"] = [{"type": "retweeted", "id": "1"}]
    return json.dumps({"data": data, "matching_rules": [{"id": "9", "tag": t} for t in tags]},
                      ensure_ascii=False)


# The steps: stream lines per micro-batch (or a replay). Spark drops a row as late
# when it is behind the watermark of the batch before (for batch N: the latest event
# time up to batch N-2, minus the 10-minute delay): LATE lines are, when read.
P2 = line("102", "12:01:10.000", "2", [MTL + "hockey", MTL + "food"], retweet=True)
P10 = line("110", "13:00:20.000", "1", [MTL + "food"])
LATE = [line("112", "12:05:30.000", "3", [SJ + "traffic"]),  # behind 12:10 in batch 3
        line("113", "12:09:30.000", "8", [MTL + "hockey"])]
STEPS: list[list[str] | str] = [
    [line("101", "12:00:30.000", "1", [MTL + "hockey"]),
     P2, P2,  # delivered twice in one batch
     line("103", "12:03:59.999", "1", [MTL + "food", SJ + "traffic"]),
     line("104", "12:05:00.000", "3", [SJ + "traffic"], retweet=True)],
    [line("105", "12:20:00.000", "4", [MTL + "hockey"]),
     P2,  # again, a batch later (within the watermark: dropped as a duplicate)
     line("106", "12:04:30.000", "5", [MTL + "food"])],  # into a pane already written
    # 107 is behind this batch's watermark (12:10) but not the last one's (11:55): counted.
    [line("107", "12:09:00.000", "1", [MTL + "hockey"]),
     line("108", "12:59:30.000", "2", [MTL + "hockey"]),
     line("109", "13:00:10.000", "6", [SJ + "traffic"]),
     P10],
    "replay",
    [line("111", "12:58:00.000", "7", [MTL + "hockey"], retweet=True),
     P10,  # a duplicate of the last batch's
     *LATE],
]
BAD_VALUES = ["not json", '{"id": "1", "author_id": "x1"}']


def values(lines: list[str]) -> list[str]:
    """The Kafka record values the producer makes of stream lines (PostRecord JSON)."""
    router = Router(256 * 1024)
    return [record.model_dump_json() for text in lines
            for record in router.route(Line(text.encode(), len(text.encode()))).records]


def run_layout(layout: str, tmp_path: Path) -> dict:
    steps = [{"replay": True} if step == "replay" else {"values": values(step)}
             for step in STEPS]
    steps[0]["values"] += BAD_VALUES
    steps_file = tmp_path / "steps.json"
    steps_file.write_text(json.dumps(steps), "utf-8")
    out = tmp_path / f"{layout}.json"
    result = subprocess.run(
        ["nice", "-n", "19", str(SPARK_PYTHON), str(DRIVER), str(REPO_ROOT), layout,
         str(steps_file), str(tmp_path / layout), str(out)],
        capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return json.loads(out.read_text("utf-8"))


def frame(rows: list[list]) -> pd.DataFrame:
    return reference.frame([(c, t, pd.Timestamp(s), pd.Timestamp(e), *n)
                            for c, t, s, e, *n in rows])


def counted_posts() -> list[reference.Post]:
    lines = [text for step in STEPS if step != "replay" for text in step]
    return reference.read_posts([text for text in lines if text not in LATE])


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, dict]:
    return {layout: run_layout(layout, tmp_path_factory.mktemp(layout))
            for layout in ("panes", "one")}


def test_panes_equal_the_reference(tables) -> None:
    got, posts = tables["panes"], counted_posts()
    pd.testing.assert_frame_equal(frame(got["windows"]), reference.aggregate(posts, FIVE, MINUTE))
    pd.testing.assert_frame_equal(frame(got["topic_windows"]),
                                  reference.aggregate(posts, FIVE, MINUTE, by_topic=True))
    hours = reference.aggregate(posts, HOUR, MINUTE)
    pd.testing.assert_frame_equal(frame(got["hours"]), hours)
    # The whole leaderboard of every hour: no entry left behind by a changed value.
    board: dict[tuple[str, str], list] = {}
    for metric, end, value, city in got["top"]:
        board.setdefault((metric, end), []).append((city, value))
    expected = {(metric, end.isoformat()): reference.top_cities(hours, end, metric, 10**6)
                for metric in METRICS for end in hours["window_end"].dt.to_pydatetime()}
    assert {key: sorted(entries, key=lambda e: (-e[1], e[0]))
            for key, entries in board.items()} == expected
    assert got["cities"] == ["Montréal", "St. John's"]
    assert sorted(map(tuple, got["city_topics"])) == [
        ("Montréal", "food"), ("Montréal", "hockey"), ("St. John's", "traffic")]


def test_the_fixture_holds_what_it_claims(tables) -> None:
    """The late posts would change windows, the replay ran a batch again with rows,
    the bad records were counted, and the hour partitions were both read."""
    got = tables["panes"]
    with_late = reference.read_posts([t for s in STEPS if s != "replay" for t in s])
    assert len(with_late) == len(counted_posts()) + len(LATE)
    replayed = got["runs"][STEPS.index("replay")]
    assert replayed["replay"] and [b["batch"] for b in replayed["batches"]] == [
        got["runs"][STEPS.index("replay") - 1]["batches"][-1]["batch"]]
    assert replayed["batches"][0]["rows"]["hours"] > 0
    assert got["runs"][0]["batches"][0]["bad_records"] == len(BAD_VALUES)
    assert {end[:13] for _, _, _, end, *_ in got["hours"]} >= {"2024-06-01T13", "2024-06-01T14"}


def test_panes_write_the_same_rows_as_one(tables) -> None:
    panes, one = tables["panes"], tables["one"]
    for table in ("windows", "topic_windows", "top", "cities", "city_topics"):
        assert panes[table] == one[table], table
    assert sorted(panes["hours"]) == sorted(one["hours"])
