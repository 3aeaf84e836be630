"""The city catalog the planner validates CITIES against, and input normalization.

The catalog (``evilnet/data/cities-ca.json``) lists 1,293 Canadian populated places
of at least 5,000 inhabitants from GeoNames (CC BY 4.0), with province,
coordinates, population and alternate names; ``evilnet/data/build_city_catalog.py``
rebuilds it. A name given by an operator resolves to one catalog city:

1. its folded form (accents, case, apostrophes, periods, hyphens and
   ``Saint``/``St`` ignored) equals a city's official name: ``montreal`` ->
   ``Montréal``, ``St Johns`` -> ``St. John's``;
2. else it equals one of a city's alternate names (``Quebec City`` -> ``Québec``);
3. a name shared by several cities resolves to the most populous; add the
   province to pick another (``Hamilton, ON``; ``Richmond (BC)``).

An unknown name fails with the closest catalog names (difflib).
Topics are validated here too: see :func:`normalize_topics`.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from evilnet.contracts import TOPIC_MAX_LENGTH, RuleTag, TagError

CATALOG_PATH = Path(__file__).resolve().parent / "data" / "cities-ca.json"
# Longer input is refused before any lookup (no catalog name comes close).
INPUT_MAX_LENGTH = 100
# Words X reads as operators in a rule; a topic is a keyword or a phrase, never logic.
_RULE_OPERATOR_WORDS = {"OR", "AND", "NOT"}


class PlanInputError(ValueError):
    """CITIES or TOPICS that cannot be planned; the message names the problem."""


@dataclass(frozen=True)
class City:
    name: str
    province: str
    lat: float
    lon: float
    population: int
    geonameid: int

    def to_json(self) -> dict:
        return {"name": self.name, "province": self.province, "lat": self.lat,
                "lon": self.lon, "population": self.population, "geonameid": self.geonameid}


def fold(text: str) -> str:
    """The lookup key of a name: no accents, case, punctuation; ``saint`` == ``st``."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    bare = re.sub(r"['\u2019`.]", "", bare)
    bare = re.sub(r"[-_\s]+", " ", bare).strip()
    aliases = {"saint": "st", "sainte": "ste"}
    return " ".join(aliases.get(word, word) for word in bare.split(" "))


class Catalog:
    """Catalog cities by folded official name and by folded alternate name."""

    def __init__(self, document: dict) -> None:
        self.provinces: dict[str, str] = document["provinces"]
        self.cities: list[City] = []
        self._official: dict[str, list[City]] = {}
        self._alternate: dict[str, list[City]] = {}
        for entry in document["cities"]:  # most populous first
            city = City(entry["name"], entry["province"], entry["lat"], entry["lon"],
                        entry["population"], entry["geonameid"])
            self.cities.append(city)
            self._official.setdefault(fold(city.name), []).append(city)
            for alternate in entry.get("alternates", []):
                bucket = self._alternate.setdefault(fold(alternate), [])
                if city not in bucket:
                    bucket.append(city)
        self._province_keys = {fold(code): code for code in self.provinces}
        self._province_keys.update({fold(name): code for code, name in self.provinces.items()})

    def resolve(self, given: str) -> City:
        text = unicodedata.normalize("NFC", given).strip()
        if not text:
            raise PlanInputError("CITIES: an empty city name")
        if len(text) > INPUT_MAX_LENGTH or not text.isprintable():
            raise PlanInputError(f"CITIES: not a city name: {text[:INPUT_MAX_LENGTH]!r}")
        name, province = self._split_province(text)
        key = fold(name)
        for index in (self._official, self._alternate):
            matches = [c for c in index.get(key, []) if province in (None, c.province)]
            if matches:
                return matches[0]
        suggestions = self.suggest(name)
        where = f" in {self.provinces[province]}" if province else ""
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        raise PlanInputError(f"CITIES: unknown city {name!r}{where}{hint}")

    def suggest(self, name: str, limit: int = 3) -> list[str]:
        keys = difflib.get_close_matches(fold(name), list(self._official), n=limit, cutoff=0.6)
        return [f"{city.name} ({city.province})" for key in keys
                for city in self._official[key][:1]]

    def _split_province(self, text: str) -> tuple[str, str | None]:
        match = re.fullmatch(r"(?P<name>.+?)\s*(?:,\s*(?P<a>[^,()]+)|\((?P<b>[^()]+)\))", text)
        if match:
            code = self._province_keys.get(fold(match["a"] or match["b"]))
            if code:
                return match["name"].strip(), code
        return text, None


@cache
def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    return Catalog(json.loads(path.read_text(encoding="utf-8")))


def split_list(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """Jenkins' multi-line parameters: one item per line or comma-separated, or both."""
    parts = [text] if isinstance(text, str) else list(text)
    return [item.strip() for part in parts for line in part.splitlines()
            for item in line.split(",") if item.strip()]


def split_cities(text: str | list[str] | tuple[str, ...], catalog: Catalog | None = None
                 ) -> list[str]:
    """CITIES as :func:`split_list` reads them, with ``Name, PROVINCE`` kept together.

    An item that is a province's two-letter code (``ON``, ``qc``) belongs to the
    city before it: ``Hamilton, ON, Toronto`` is Hamilton (ON) and Toronto. A full
    province name is not joined (``Québec`` is also a city): write ``Hamilton, ON``
    or ``Hamilton (Ontario)``.
    """
    catalog = catalog or load_catalog()
    codes = {code.casefold() for code in catalog.provinces}
    names: list[str] = []
    for item in split_list(text):
        if names and item.casefold() in codes:
            names[-1] = f"{names[-1]}, {item.upper()}"
        else:
            names.append(item)
    return names


def normalize_cities(given: list[str], catalog: Catalog | None = None) -> list[City]:
    """Resolve every name; refuses an empty list and a city named twice."""
    catalog = catalog or load_catalog()
    if not given:
        raise PlanInputError("CITIES: the list is empty")
    cities: list[City] = []
    problems: list[str] = []
    for name in given:
        try:
            city = catalog.resolve(name)
        except PlanInputError as error:
            problems.append(str(error))
            continue
        if any(other.name == city.name for other in cities):
            same = next(other for other in cities if other.name == city.name)
            if same == city:
                problems.append(f"CITIES: {city.name} is listed twice ({name!r})")
            else:
                problems.append(f"CITIES: two cities named {city.name} ({same.province} and "
                                f"{city.province}): the rule tag could not tell them apart")
            continue
        cities.append(city)
    if problems:
        raise PlanInputError("\n".join(problems))
    return cities


def canonical_cities(given: list[str] | tuple[str, ...],
                     catalog: Catalog | None = None) -> list[str]:
    """The catalog names of cities an operator typed (``toronto`` -> ``Toronto``).

    For commands that read or write a city by name (``query --city``, ``synth``):
    each item of :func:`split_cities`, resolved; one line naming every unknown one.
    """
    catalog = catalog or load_catalog()
    names: list[str] = []
    problems: list[str] = []
    for item in split_cities(list(given), catalog):
        try:
            names.append(catalog.resolve(item).name)
        except PlanInputError as error:
            problems.append(str(error).removeprefix("CITIES: "))
    if problems:
        raise PlanInputError("; ".join(problems))
    return list(dict.fromkeys(names))


def check_tags(tags: set[tuple[str, str]], catalog: Catalog | None = None) -> None:
    """Refuse rule tags whose city is not a catalog name or whose topic is not normal.

    A posts file for ``replay`` or ``check`` names its cities in ``matching_rules``
    tags, as the planner writes them; a tag the planner could not have written
    (``city=toronto``) would make rows under a city no dashboard lists.
    """
    catalog = catalog or load_catalog()
    problems: list[str] = []
    for city, topic in sorted(tags):
        try:
            known = catalog.resolve(city).name
        except PlanInputError as error:
            problems.append(str(error).removeprefix("CITIES: "))
            continue
        if known != city:
            problems.append(f"city {city!r} is spelt {known!r} in the catalog")
        try:
            if normalize_topic(topic) != topic:
                problems.append(f"topic {topic!r} is {normalize_topic(topic)!r} once normalized")
        except PlanInputError as error:
            problems.append(str(error).removeprefix("TOPICS: "))
    if problems:
        raise PlanInputError("rule tags: " + "; ".join(dict.fromkeys(problems)))


def normalize_topic(given: str) -> str:
    """One topic: a keyword, a phrase, a #hashtag or an @account, lower case.

    Rule operators (upper-case words) are looked for as given; everything else is
    checked in the final form: case folding may decompose a character (``ῒ``) or
    lengthen a word (``ß``), so the folded text is composed (NFC) again first.
    """
    text = re.sub(r"\s+", " ", unicodedata.normalize("NFC", given)).strip()
    if not text:
        raise PlanInputError("TOPICS: an empty topic")
    operators = [word for word in text.split(" ") if word in _RULE_OPERATOR_WORDS]
    if operators:
        raise PlanInputError(f"TOPICS: {text!r} holds the rule operator {operators[0]}: "
                             "a topic is a keyword or a phrase")
    topic = unicodedata.normalize("NFC", text.casefold())
    if len(topic) > TOPIC_MAX_LENGTH:
        raise PlanInputError(f"TOPICS: longer than {TOPIC_MAX_LENGTH} characters: "
                             f"{text[:TOPIC_MAX_LENGTH]!r}...")
    try:
        RuleTag("Toronto", topic)
    except TagError:
        raise PlanInputError(
            f"TOPICS: {text!r} is not a keyword or phrase (letters, digits, spaces and "
            "hyphens, optionally starting with # or @; no quotes, colons, brackets "
            "or other rule operators)") from None
    return topic


def normalize_topics(given: list[str]) -> list[str]:
    """Every topic normalized; refuses an empty list and duplicates (case-insensitive)."""
    if not given:
        raise PlanInputError("TOPICS: the list is empty")
    topics: list[str] = []
    problems: list[str] = []
    for item in given:
        try:
            topic = normalize_topic(item)
        except PlanInputError as error:
            problems.append(str(error))
            continue
        if topic in topics:
            problems.append(f"TOPICS: {topic!r} is listed twice")
            continue
        topics.append(topic)
    if problems:
        raise PlanInputError("\n".join(problems))
    return topics
