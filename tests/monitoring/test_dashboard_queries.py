"""Every Cassandra query of every dashboard, run on the real Cassandra on a fixture.

The queries are taken from the generated dashboards (the same code as the
checked-in JSON, for the fixture's keyspace), interpolated as Grafana and the
Cassandra datasource plugin do, executed, and the plugin's frames compared with
rows worked out by hand (conftest.py).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from monitoring_fixture import LEADER_END, RANGE_FROM, RANGE_TO, at
from monitoring_helpers import (
    cassandra_targets,
    frames,
    interpolate,
    interpolate_variable_query,
)

from evilnet.schema import METRICS

pytestmark = pytest.mark.stack

CHOSEN = ["Montréal", "St. John's"]
ALL_CITIES = ["Montréal", "St. John's", "Toronto", "Trois-Rivières", "Vancouver"]


def run(data, text: str, variables: dict[str, list[str]], start=RANGE_FROM, end=RANGE_TO):
    cql = interpolate(text, variables, start, end)
    assert "ALLOW FILTERING" not in cql.upper()
    return list(data.session.execute(cql))


def run_variable(data, text: str, variables: dict[str, list[str]]):
    """A variable query, as the plugin runs it: no time range, no time macro."""
    return list(data.session.execute(interpolate_variable_query(text, variables)))


def variable(data, name: str) -> dict:
    (found,) = [v for v in data.dashboards["city-trends.json"]["templating"]["list"]
                if v["name"] == name]
    return found


def panels(data, board: str) -> dict[str, dict]:
    return {panel["title"]: target for panel, target in cassandra_targets(data.dashboards[board])}


def trend(rows, metric: str) -> dict[str, list[tuple]]:
    """A trend panel: per city, (window_start, metric) in time order (its transformation
    keeps these two fields of each frame)."""
    time = 1 if rows and len(rows[0]) == 5 else 2  # (city[, topic], window_start, ...)
    return {city: [(r[time].isoformat(timespec="minutes"), r[time + 1 + METRICS.index(metric)])
                   for r in group] for city, group in frames(rows).items()}


def test_city_variable_lists_every_city_seen(dashboard_data) -> None:
    var = variable(dashboard_data, "city")
    assert var["multi"] and var["includeAll"]
    rows = run_variable(dashboard_data, var["query"]["query"], {})
    assert sorted(r[0] for r in rows) == ALL_CITIES
    assert all(len(r) == 1 for r in rows)  # the plugin would take a 2nd column as the label


def test_topic_variable_lists_the_topics_of_the_chosen_cities(dashboard_data) -> None:
    var = variable(dashboard_data, "topic")
    assert var["multi"] and var["includeAll"]
    rows = run_variable(dashboard_data, var["query"]["query"], {"city": CHOSEN})
    assert sorted({r[0] for r in rows}) == ["hockey", "transit"]
    rows = run_variable(dashboard_data, var["query"]["query"], {"city": ["Toronto"]})
    assert sorted(r[0] for r in rows) == ["food", "hockey"]


EXPECTED_CHOSEN = {
    "tweets": {"Montréal": [("2026-11-27T23:50", 4), ("2026-11-28T00:10", 7)],
               "St. John's": [("2026-11-27T23:55", 2), ("2026-11-28T00:00", 3)]},
    "retweets": {"Montréal": [("2026-11-27T23:50", 1), ("2026-11-28T00:10", 2)],
                 "St. John's": [("2026-11-27T23:55", 0), ("2026-11-28T00:00", 1)]},
    "unique_users": {"Montréal": [("2026-11-27T23:50", 3), ("2026-11-28T00:10", 5)],
                     "St. John's": [("2026-11-27T23:55", 2), ("2026-11-28T00:00", 3)]},
}


@pytest.mark.parametrize("metric", METRICS)
def test_trends_of_two_chosen_cities_hold_only_those(dashboard_data, metric: str) -> None:
    title = {"tweets": "Tweets", "retweets": "Retweets", "unique_users": "Unique users"}[metric]
    target = panels(dashboard_data, "city-trends.json")[title]
    rows = run(dashboard_data, target["target"], {"city": CHOSEN})
    # Across the UTC midnight: both day partitions are read; the window before the
    # range and the one starting at its end are not.
    assert trend(rows, metric) == EXPECTED_CHOSEN[metric]


def test_trends_of_all_cities(dashboard_data) -> None:
    target = panels(dashboard_data, "city-trends.json")["Tweets"]
    rows = run(dashboard_data, target["target"], {"city": ALL_CITIES})  # "All"
    assert trend(rows, "tweets") == {
        **EXPECTED_CHOSEN["tweets"], "Toronto": [("2026-11-27T23:55", 9)],
        "Vancouver": [("2026-11-28T00:05", 5)]}


def test_trends_reach_back_a_week_of_day_partitions(dashboard_data) -> None:
    target = panels(dashboard_data, "city-trends.json")["Tweets"]
    week = run(dashboard_data, target["target"], {"city": CHOSEN},
               start=RANGE_FROM - timedelta(days=6), end=RANGE_TO)
    assert trend(week, "tweets")["St. John's"] == [("2026-11-27T23:55", 2),
                                                  ("2026-11-28T00:00", 3)]


def test_a_30_day_range_shows_its_newest_and_its_oldest_day(dashboard_data) -> None:
    """"Last 30 days" spans 31 UTC days: the newest (RANGE_TO's) must show, as must the
    oldest, and nothing before the range."""
    target = panels(dashboard_data, "city-trends.json")["Tweets"]
    month = run(dashboard_data, target["target"], {"city": ALL_CITIES},
                start=RANGE_TO - timedelta(days=30), end=RANGE_TO)
    shown = trend(month, "tweets")
    assert shown["Vancouver"] == [("2026-10-29T12:00", 11), ("2026-11-28T00:05", 5)]
    assert shown["Montréal"][-1] == ("2026-11-28T00:10", 7)
    # A range starting after the oldest window leaves it out.
    later = run(dashboard_data, target["target"], {"city": ["Vancouver"]},
                start=at("2026-10-29T12:01:00"), end=RANGE_TO)
    assert trend(later, "tweets") == {"Vancouver": [("2026-11-28T00:05", 5)]}


@pytest.mark.parametrize(("topic", "expected"), [
    ("hockey", {"Montréal": [("2026-11-27T23:50", 3)], "St. John's": [("2026-11-28T00:00", 2)]}),
    ("transit", {"Montréal": [("2026-11-28T00:10", 4)]}),
])
def test_topic_rows_hold_the_chosen_cities_of_their_topic(dashboard_data, topic: str,
                                                          expected: dict) -> None:
    targets = panels(dashboard_data, "city-trends.json")
    # The repeated row: Grafana gives each copy one value of $topic.
    rows = run(dashboard_data, targets["Tweets · $topic"]["target"],
               {"city": CHOSEN, "topic": [topic]})
    assert trend(rows, "tweets") == expected
    assert {r[1] for r in rows} == {topic}


EXPECTED_TOP = {
    "tweets": [("Toronto", 55), ("Montréal", 40), ("Vancouver", 40), ("Québec", 30),
               ("St. John's", 12)],
    "retweets": [("Québec", 15), ("Vancouver", 12), ("Montréal", 10), ("Toronto", 10),
                 ("St. John's", 3)],
    "unique_users": [("Toronto", 30), ("Montréal", 25), ("Québec", 22), ("Vancouver", 18),
                     ("St. John's", 9)],
}


@pytest.mark.parametrize("metric", METRICS)
def test_top_five_cities_come_in_order_from_the_query(dashboard_data, metric: str) -> None:
    title = {"tweets": "Top 5 cities by tweets", "retweets": "Top 5 cities by retweets",
             "unique_users": "Top 5 cities by unique users"}[metric]
    target = panels(dashboard_data, "top-cities.json")[title]
    # The panel reads the hour that ended 2 whole minutes before the end of its range.
    end = LEADER_END + timedelta(minutes=2, seconds=30)
    rows = run(dashboard_data, target["target"], {}, start=end - timedelta(hours=1), end=end)
    # One frame (the constant first column), rows in the query's order: no sorting needed.
    assert list(frames(rows)) == [metric]
    assert [(r[1], r[2]) for r in rows] == EXPECTED_TOP[metric]


def test_every_cassandra_query_of_every_dashboard_ran(dashboard_data) -> None:
    """The tests above cover each Cassandra panel and variable of the dashboards."""
    covered = {"Tweets", "Retweets", "Unique users", "Tweets · $topic", "Retweets · $topic",
               "Unique users · $topic", "Top 5 cities by tweets", "Top 5 cities by retweets",
               "Top 5 cities by unique users"}
    titles = {panel["title"] for board in dashboard_data.dashboards.values()
              for panel, _ in cassandra_targets(board)}
    assert titles == covered
    # The topic rows' other metrics run as the tweets one does.
    targets = panels(dashboard_data, "city-trends.json")
    hockey = {"retweets": {"Montréal": [("2026-11-27T23:50", 1)],
                           "St. John's": [("2026-11-28T00:00", 1)]},
              "unique_users": {"Montréal": [("2026-11-27T23:50", 2)],
                               "St. John's": [("2026-11-28T00:00", 2)]}}
    for metric, title in (("retweets", "Retweets · $topic"),
                          ("unique_users", "Unique users · $topic")):
        rows = run(dashboard_data, targets[title]["target"],
                   {"city": CHOSEN, "topic": ["hockey"]})
        assert trend(rows, metric) == hockey[metric]
    variables = [v["name"] for board in dashboard_data.dashboards.values()
                 for v in board.get("templating", {}).get("list", [])]
    assert variables == ["city", "topic"]


def test_an_empty_selection_returns_nothing(dashboard_data) -> None:
    target = panels(dashboard_data, "city-trends.json")["Tweets"]
    assert run(dashboard_data, target["target"], {"city": []}) == []


def test_fixture_day_boundary_is_real() -> None:
    assert RANGE_FROM.date() != RANGE_TO.date() and at("2026-11-28T00:00:00") < RANGE_TO
