"""Rules within the access level's limits, packing into shards, stability."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from planner_helpers import make_settings

from evilnet.cities import PlanInputError, load_catalog
from evilnet.contracts import RuleTag
from evilnet.planner import (
    ACCESS_LEVELS,
    AccessLevel,
    PlanError,
    diff_plans,
    make_plan,
    topic_expression,
)

CITY_NAMES = [c.name for c in load_catalog().cities]
TOPIC = st.from_regex(r"[a-z][a-z0-9]{1,14}( [a-z0-9]{1,10})?", fullmatch=True)


def shard_of(plan) -> dict[str, str]:
    return {city: s["name"] for s in plan.to_json()["shards"] for city in s["cities"]}


def test_a_rule_per_city_and_topic_with_location_operators_and_tag() -> None:
    plan = make_plan(["montreal", "St Johns"], ["hockey", "ice hockey"], make_settings())
    rules = {r["tag"]: r["value"] for s in plan.to_json()["shards"] for r in s["rules"]}
    assert set(rules) == {"city=Montréal;topic=hockey", "city=Montréal;topic=ice hockey",
                          "city=St. John's;topic=hockey", "city=St. John's;topic=ice hockey"}
    assert rules["city=Montréal;topic=hockey"] == (
        '(hockey OR #hockey) (point_radius:[-73.5878 45.5088 25km] OR place:"Montréal")')
    assert rules["city=St. John's;topic=ice hockey"].startswith('("ice hockey" OR #icehockey) ')
    assert topic_expression("#nhl") == "#nhl" and topic_expression("@nhl") == "@nhl"


def test_no_token_in_the_plan_only_credential_references() -> None:
    document = make_plan(["Toronto"], ["hockey"], make_settings()).to_json()
    assert document["shards"][0]["credential"] == {"env": "X_BEARER_TOKEN_APP_" +
                                                   document["shards"][0]["name"][-1]}


def test_too_many_rules_for_the_apps_is_refused_with_the_remedy() -> None:
    with pytest.raises(PlanError, match="do not fit in 2 app"):
        make_plan(CITY_NAMES[:60], ["hockey"], make_settings(apps=2, level="basic"))
    with pytest.raises(PlanError, match="one city needs 3 rules"):
        make_plan(["Toronto"], ["a1", "b2", "c3"], make_settings(max_rules=2))


def test_a_rule_over_the_length_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    long_topic = "a" * 30 + " " + "b" * 33
    plan = make_plan(["Toronto"], [long_topic], make_settings(level="basic"))
    assert all(len(r["value"]) <= 512 for s in plan.to_json()["shards"] for r in s["rules"])
    monkeypatch.setitem(ACCESS_LEVELS, "tiny", AccessLevel(rule_max_length=120, rules_per_app=9))
    with pytest.raises(PlanError, match=r"is 194 characters, over the 120 of the tiny access"):
        make_plan(["Toronto"], [long_topic], make_settings(level="tiny"))


@settings(max_examples=60, deadline=None)
@given(cities=st.lists(st.sampled_from(CITY_NAMES), min_size=1, max_size=40, unique=True),
       topics=st.lists(TOPIC, min_size=1, max_size=5, unique=True),
       level=st.sampled_from(["basic", "pro"]))
def test_rules_are_within_limits_and_every_city_topic_has_one(cities, topics, level) -> None:
    settings_ = make_settings(apps=8, level=level)
    try:
        plan = make_plan(cities, topics, settings_)
    except PlanInputError:
        return  # two topics or cities that fold alike
    except PlanError as error:
        assert "do not fit" in str(error)
        return
    document = plan.to_json()
    limits = settings_.limits
    tags = []
    for shard in document["shards"]:
        assert len(shard["rules"]) <= limits.rules_per_app
        assert len({r["value"] for r in shard["rules"]}) == len(shard["rules"])
        for rule in shard["rules"]:
            assert len(rule["value"]) <= limits.rule_max_length
            tag = RuleTag.parse(rule["tag"])
            assert tag.city in shard["cities"]
            tags.append(tag)
    assert len(tags) == len(set(tags)) == len(plan.cities) * len(plan.topics)
    names = [s["name"] for s in document["shards"]]
    assert len(names) == len(set(names))  # one app per shard, never shared
    assert len({json.dumps(s["credential"]) for s in document["shards"]}) == len(names)


@settings(max_examples=80, deadline=None)
@given(cities=st.lists(st.sampled_from(CITY_NAMES), min_size=1, max_size=30, unique=True),
       extra=st.sampled_from(CITY_NAMES))
def test_adding_a_city_changes_only_the_shard_that_receives_it(cities, extra) -> None:
    settings_ = make_settings(apps=6)
    try:
        before = make_plan(cities, ["hockey", "transit"], settings_)
        after = make_plan([*cities, extra], ["hockey", "transit"], settings_)
    except PlanInputError:
        return  # the extra city was already there (or folds alike)
    old, new = before.to_json()["shards"], after.to_json()["shards"]
    changes = diff_plans(old, new)
    touched = [c["shard"] for c in changes["change"]] + [a["shard"] for a in changes["add"]]
    assert touched == [shard_of(after)[after.cities[-1].name]]
    assert changes["remove"] == []
    added = after.cities[-1].name
    assert {c: s for c, s in shard_of(after).items() if c != added} == shard_of(before)


@settings(max_examples=40, deadline=None)
@given(cities=st.lists(st.sampled_from(CITY_NAMES), min_size=1, max_size=30, unique=True))
def test_adding_an_app_moves_cities_only_onto_the_new_app(cities) -> None:
    try:
        before = shard_of(make_plan(cities, ["hockey"], make_settings(apps=4)))
    except PlanInputError:
        return
    after = shard_of(make_plan(cities, ["hockey"], make_settings(apps=5)))
    assert all(after[c] in (before[c], "app-5") for c in before)


def test_shards_spread_over_the_producer_hosts_stably() -> None:
    plan = make_plan(CITY_NAMES[:40], ["hockey"], make_settings(apps=12, hosts=3))
    hosts = {s["name"]: s["host"] for s in plan.to_json()["shards"]}
    assert len(set(hosts.values())) > 1
    more = make_plan(CITY_NAMES[:40], ["hockey"], make_settings(apps=12, hosts=4))
    assert all(h == hosts[n] or h == "producer4"
               for n, h in ((s["name"], s["host"]) for s in more.to_json()["shards"]))
