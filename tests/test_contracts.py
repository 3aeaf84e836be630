"""The rule tag format, `city=<City>;topic=<topic>`: what it accepts and what it refuses."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evilnet.contracts import RuleTag, TagError


@pytest.mark.parametrize(("city", "topic"), [
    ("Montréal", "hockey"),
    ("St. John's", "transit"),
    ("Trois-Rivières", "#habs"),
    ("Saint-Jean-sur-Richelieu", "snow removal"),
    ("Île-Perrot", "@stm_info"),
    ("Whitehorse", "covid-19"),
])
def test_real_city_names_and_topics_round_trip(city: str, topic: str) -> None:
    tag = RuleTag(city, topic).tag
    assert tag == f"city={city};topic={topic}"
    assert RuleTag.parse(tag) == RuleTag(city, topic)


def test_decomposed_accents_are_the_same_city() -> None:
    decomposed = unicodedata.normalize("NFD", "Montréal")
    assert decomposed != "Montréal"
    assert RuleTag.parse(f"city={decomposed};topic=hockey").city == "Montréal"


@pytest.mark.parametrize("tag", [
    "",
    "city=Toronto",
    "topic=hockey;city=Toronto",
    "city=;topic=hockey",
    "city=Toronto;topic=",
    "city=Toronto;topic=hockey;extra=1",
    "city=Tor;onto;topic=hockey",
    "city=Toronto;topic=a=b",
    "city=42nd Street;topic=hockey",
    "city=Toronto;topic=hockey OR from:someone",
    "city=Toronto;topic=" + "x" * 65,
])
def test_malformed_tags_are_refused(tag: str) -> None:
    with pytest.raises(TagError):
        RuleTag.parse(tag)


@given(st.text())
def test_parsing_any_text_either_refuses_or_round_trips(text: str) -> None:
    try:
        parsed = RuleTag.parse(text)
    except TagError:
        return
    assert RuleTag.parse(parsed.tag) == parsed
