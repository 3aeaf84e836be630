"""City catalog and normalization, topic validation."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from evilnet.cities import (
    PlanInputError,
    canonical_cities,
    check_tags,
    fold,
    load_catalog,
    normalize_cities,
    normalize_topic,
    normalize_topics,
    split_cities,
    split_list,
)
from evilnet.contracts import RuleTag

CATALOG = load_catalog()


def test_catalog_is_canadian_with_provinces_and_coordinates() -> None:
    assert len(CATALOG.cities) > 1100
    assert {c.province for c in CATALOG.cities} >= {"ON", "QC", "BC", "NL", "AB", "NS"}
    for city in CATALOG.cities:
        assert 41.6 < city.lat < 83.2 and -141.1 < city.lon < -52.5, city
        RuleTag(city.name, "hockey")  # every name fits the tag format
    montreal = CATALOG.resolve("Montréal")
    where = (montreal.province, round(montreal.lat, 1), round(montreal.lon, 1))
    assert where == ("QC", 45.5, -73.6)


@pytest.mark.parametrize(("given", "expected"), [
    ("montreal", "Montréal"), ("MONTRÉAL", "Montréal"), ("  Toronto ", "Toronto"),
    ("St Johns", "St. John's"), ("saint john's", "St. John's"), ("St. John\u2019s", "St. John's"),
    ("trois rivieres", "Trois-Rivières"), ("Quebec City", "Québec"), ("quebec", "Québec"),
    ("Saint John", "Saint John"), ("vancouver", "Vancouver"),
])
def test_names_resolve_with_accents_and_alternate_spellings(given: str, expected: str) -> None:
    assert CATALOG.resolve(given).name == expected


def test_homonyms_resolve_to_the_most_populous_unless_the_province_is_given() -> None:
    assert CATALOG.resolve("Richmond").province == "BC"
    assert CATALOG.resolve("Richmond, AB").province == "AB"
    assert CATALOG.resolve("Windsor, QC").province == "QC"
    assert CATALOG.resolve("Hamilton (Ontario)").province == "ON"


def test_unknown_city_fails_with_the_closest_suggestions() -> None:
    suggestion = r"unknown city 'Torontoo'; did you mean Toronto \(ON\)"
    with pytest.raises(PlanInputError, match=suggestion):
        CATALOG.resolve("Torontoo")
    with pytest.raises(PlanInputError, match=r"unknown city 'Qwxzv'$"):
        CATALOG.resolve("Qwxzv")


def test_city_list_refuses_empty_duplicates_and_names_every_problem() -> None:
    with pytest.raises(PlanInputError, match="the list is empty"):
        normalize_cities([])
    with pytest.raises(PlanInputError) as error:
        normalize_cities(["Toronto", "montreal", "TORONTO", "Nowhereville", "Montréal"])
    message = str(error.value)
    assert "Toronto is listed twice" in message and "Montréal is listed twice" in message
    assert "unknown city 'Nowhereville'" in message
    with pytest.raises(PlanInputError, match="two cities named Richmond"):
        normalize_cities(["Richmond, BC", "Richmond (Alberta)"])


def test_jenkins_lists_split_on_lines_and_commas() -> None:
    assert split_list("Toronto\r\nMontréal, Vancouver\n\n,St. John's") == [
        "Toronto", "Montréal", "Vancouver", "St. John's"]
    assert split_list(("a,b", "c")) == ["a", "b", "c"]


def test_a_province_code_in_a_comma_list_belongs_to_the_city_before_it() -> None:
    assert split_cities("Hamilton, ON, Toronto\nRichmond, bc") == [
        "Hamilton, ON", "Toronto", "Richmond, BC"]
    # Québec is a city as well as a province: only the two-letter codes are joined.
    assert split_cities("Toronto, Québec") == ["Toronto", "Québec"]
    cities = normalize_cities(split_cities("Hamilton, ON, Toronto, London, ON"))
    assert [(c.name, c.province) for c in cities] == [
        ("Hamilton", "ON"), ("Toronto", "ON"), ("London", "ON")]


def test_names_typed_at_the_command_line_become_the_catalog_names() -> None:
    assert canonical_cities(("toronto", "Montreal", "St John's", "Hamilton, ON, Toronto")) == [
        "Toronto", "Montréal", "St. John's", "Hamilton"]
    with pytest.raises(PlanInputError, match=r"unknown city 'Torontoo'; did you mean Toronto"):
        canonical_cities(("Torontoo",))


def test_rule_tags_of_a_posts_file_must_be_the_planners_spelling() -> None:
    check_tags({("Montréal", "hockey"), ("St. John's", "food")})
    with pytest.raises(PlanInputError) as refused:
        check_tags({("montreal", "hockey"), ("Toronto", "Hockey"), ("Atlantis", "x")})
    message = str(refused.value)
    assert "'montreal' is spelt 'Montréal'" in message
    assert "'Hockey' is 'hockey'" in message and "unknown city 'Atlantis'" in message


@pytest.mark.parametrize("topic", [
    "", "   ", "hockey OR lang:fr", "hockey AND cats", "NOT hockey", "-is:retweet",
    'point_radius:[0 0 1km]', '"quoted"', "(hockey)", "{{ lookup('env','HOME') }}",
    "{% raw %}", "a;topic=b", "x=y", "$(rm -rf /)", "`id`", "a | b", "hockey\nevil: true",
    "x" * 65, "hockey #", "#", "@",
])
def test_hostile_or_malformed_topics_are_refused(topic: str) -> None:
    with pytest.raises(PlanInputError, match="TOPICS"):
        normalize_topic(topic)


def test_topics_normalize_and_duplicates_are_refused() -> None:
    assert normalize_topics(["Hockey", "ice  hockey", "#NHL", "@NHL", "transit-strike"]) == [
        "hockey", "ice hockey", "#nhl", "@nhl", "transit-strike"]
    with pytest.raises(PlanInputError, match="'hockey' is listed twice"):
        normalize_topics(["hockey", "HOCKEY"])
    with pytest.raises(PlanInputError, match="the list is empty"):
        normalize_topics([])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CATALOG.cities), st.sampled_from(["lower", "upper", "fold", "same"]))
def test_every_catalog_city_resolves_from_its_spellings(city, how) -> None:
    text = {"lower": city.name.lower(), "upper": city.name.upper(), "fold": fold(city.name),
            "same": city.name}[how]
    resolved = CATALOG.resolve(text)
    # Names that fold alike resolve to the most populous of them: the same key.
    assert fold(resolved.name) == fold(city.name)
    assert resolved.population >= city.population or resolved == city


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
# Found by this test: case folding decomposes U+1FD2, which the tag composes again.
@example("\u1fd2")
@example("Straße")
def test_any_topic_is_refused_or_fits_the_tag_format(text: str) -> None:
    try:
        topic = normalize_topic(text)
    except PlanInputError:
        return
    assert RuleTag("Toronto", topic).topic == topic
    assert not set(topic) & set("\"'():[]{}%;=$`|<>\\\n\r")
