"""The planner: CITIES x TOPICS -> X API rules -> shards -> producer hosts -> rendered files.

One rule per (city, topic)::

    (hockey OR #hockey) (point_radius:[-73.5878 45.5088 25km] OR place:"Montréal")

tagged ``city=Montréal;topic=hockey`` (:class:`evilnet.contracts.RuleTag`). The topic
matches as a keyword and as a hashtag (a phrase as the exact phrase); the city as
the posts geo-tagged within ``planner_radius_km`` of its centre (``point_radius``,
radius under 25 mi per X's operator docs) or tagged with a place of that name.

Shards. A shard is one X app: one bearer token, one stream connection, its own
rules (an app's connections all receive every match of its rules, so two shards
never share an app). The apps are listed in the inventory (``planner_apps``,
each with a credential reference, never the token). A city's rules stay
together; a city goes to the app that ranks highest for it by rendezvous hashing
(sha256 of app and city), or the next one with room when that app is full.
Adding a city therefore changes only the shard that receives it, and adding an
app only takes cities onto the new app, as long as no app is full. Shards go to
the hosts of the ``producers`` group the same way (rendezvous on shard and host).

Limits (``planner_access_level``): X's filtered-stream limits per app, rule
length and rules per app, as documented for the access levels
(:data:`evilnet.contracts.ACCESS_LEVELS`). ``planner_max_rules_per_shard`` lowers
the rules per app (smaller shards restart faster).

Redundant producers (``planner_redundancy``, ``evilnet plan --redundancy``): with 2,
each shard runs on the two hosts that rank highest for it, both copies on the same
app and rules (two stream connections of one app: an access level whose
``stream_connections`` allows it, Enterprise; refused otherwise). The plan lists
one entry per copy: ``copy`` 1 and 2, ``producer_id`` ``<shard>@<host>`` (written
in every record, :func:`evilnet.contracts.producer_id`), its own metrics port, and
``dir``, where its files render under ``shards/``: the shard's name when it runs
once, the producer id when it has copies. Copy 1 stays on the host the shard had
without redundancy; ``evilnet fidelity`` compares the copies.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jinja2
import yaml

from evilnet import __version__
from evilnet.cities import City, PlanInputError, normalize_cities, normalize_topics
from evilnet.contracts import (
    ACCESS_LEVELS,
    DEFAULT_ACCESS_LEVEL,
    X_API_BASE_URL,
    AccessLevel,
    RuleTag,
    producer_id,
)
from evilnet.producer.config import parse_config

PLAN_VERSION = 1
PLAN_FILE = "plan.json"
# The jinja2 sources of the rendered files: the top-level templates/ folder, installed
# as this package's data (pyproject maps it), so the wheel renders without a checkout.
TEMPLATES_PACKAGE = "evilnet.templates"
# The file a shard's token is written to, in the shard's directory on its host
# (the service's working directory): bearer_token_file is relative to it.
TOKEN_FILE = "bearer-token"
PRODUCER_CONFIG_FILE = "producer.yml"
COMPOSE_FILE = "compose.yml"
_APP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_CREDENTIAL_KINDS = ("env", "file", "vault")


class PlanError(RuntimeError):
    """A plan that cannot be made from valid input (limits, inventory settings)."""


@dataclass(frozen=True)
class App:
    """One X app: a shard's name and where its bearer token comes from."""

    name: str
    credential: dict[str, str]
    index: int


@dataclass
class Settings:
    """What the planner reads from the inventory (group_vars of ``producers``)."""

    inventory: str
    hosts: dict[str, str]  # producer host -> address
    apps: list[App]
    kafka_bootstrap_servers: str
    x_api_base_url: str
    access_level: str = DEFAULT_ACCESS_LEVEL
    max_rules_per_shard: int | None = None
    redundancy: int = 1  # producer copies per shard, each on its own host and connection
    radius_km: int = 25
    metrics_base_port: int = 9400
    reconnect_time_scale: float = 1.0
    image: str = f"evilnet/producer:{__version__}"

    @property
    def limits(self) -> AccessLevel:
        level = ACCESS_LEVELS[self.access_level]
        per_app = min(level.rules_per_app, self.max_rules_per_shard or level.rules_per_app)
        return replace(level, rules_per_app=per_app)

    @classmethod
    def from_variables(cls, inventory: str, hosts: dict[str, str],
                       variables: Mapping[str, Any], kafka_bootstrap_servers: str) -> Settings:
        """Settings from the inventory's ``producers`` group, as the platform reads it.

        ``hosts`` maps each producer host to its address, in inventory order;
        ``variables`` are the first host's (the group's planner_* settings).
        """
        if not hosts:
            raise PlanError(f"{inventory}: the inventory has no host in the group 'producers'")
        apps = _apps(variables.get("planner_apps"), inventory)
        level = variables.get("planner_access_level", DEFAULT_ACCESS_LEVEL)
        if level not in ACCESS_LEVELS:
            raise PlanError(f"{inventory}: planner_access_level must be one of "
                            f"{', '.join(ACCESS_LEVELS)}, not {level!r}")
        base_url = variables.get("planner_x_api_base_url")
        if not base_url:
            if variables.get("x_api_simulator_enabled"):
                port = variables.get("x_api_simulator_port", 8080)
                base_url = f"http://{next(iter(hosts.values()))}:{port}"
            else:
                base_url = X_API_BASE_URL
        settings = cls(
            inventory=inventory, hosts=dict(hosts), apps=apps,
            kafka_bootstrap_servers=kafka_bootstrap_servers, x_api_base_url=base_url,
            access_level=level,
            max_rules_per_shard=variables.get("planner_max_rules_per_shard"),
            redundancy=int(variables.get("planner_redundancy", 1)),
            radius_km=int(variables.get("planner_radius_km", 25)),
            metrics_base_port=int(variables.get("planner_metrics_base_port", 9400)),
            reconnect_time_scale=float(variables.get("planner_reconnect_time_scale", 1.0)),
            image=variables.get("planner_producer_image", cls.image),
        )
        if not 1 <= settings.radius_km <= 40:
            raise PlanError("planner_radius_km: X accepts a point_radius under 25 mi (40 km)")
        return settings


def _apps(raw: Any, origin: str) -> list[App]:
    if not isinstance(raw, list) or not raw:
        raise PlanError(f"{origin}: planner_apps must list the X apps (one per shard), "
                        "each {name: ..., credential: {env|file|vault: ...}}")
    apps: list[App] = []
    for index, entry in enumerate(raw):
        name = entry.get("name") if isinstance(entry, dict) else None
        credential = entry.get("credential") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not _APP_NAME.match(name):
            raise PlanError(f"planner_apps.{index}.name: expected [a-z][a-z0-9-]*, got {name!r}")
        if (not isinstance(credential, dict) or len(credential) != 1
                or next(iter(credential)) not in _CREDENTIAL_KINDS
                or not isinstance(next(iter(credential.values())), str)):
            raise PlanError(f"planner_apps.{index}.credential: exactly one of "
                            f"{', '.join(_CREDENTIAL_KINDS)} naming where the token is "
                            "(an environment variable, a file, an Ansible Vault variable)")
        if any(app.name == name for app in apps):
            raise PlanError(f"planner_apps.{index}.name: {name} is listed twice")
        if any(app.credential == credential for app in apps):
            raise PlanError(f"planner_apps.{index}.credential: shared with another app; "
                            "a bearer token opens one stream per app, shards never share one")
        apps.append(App(name, dict(credential), index))
    return apps


# --- rules ---------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class PlannedRule:
    city: str
    topic: str
    value: str

    @property
    def tag(self) -> str:
        return RuleTag(self.city, self.topic).tag

    def to_json(self) -> dict[str, str]:
        return {"value": self.value, "tag": self.tag}


def topic_expression(topic: str) -> str:
    """The X query of a topic: keyword and hashtag, or the exact phrase (and hashtag)."""
    if topic[0] in "#@":
        return topic
    compact = re.sub(r"[\s-]+", "", topic)
    terms = [f'"{topic}"' if re.search(r"[\s-]", topic) else topic]
    if re.fullmatch(r"\w+", compact) and not compact.isdigit():
        terms.append(f"#{compact}")
    return terms[0] if len(terms) == 1 else f"({' OR '.join(terms)})"


def location_expression(city: City, radius_km: int) -> str:
    return (f"(point_radius:[{city.lon:.4f} {city.lat:.4f} {radius_km}km]"
            f' OR place:"{city.name}")')


def build_rules(cities: Iterable[City], topics: Iterable[str], settings: Settings
                ) -> list[PlannedRule]:
    topics = list(topics)
    rules = []
    for city in cities:
        where = location_expression(city, settings.radius_km)
        for topic in topics:
            rule = PlannedRule(city.name, topic, f"{topic_expression(topic)} {where}")
            if len(rule.value) > settings.limits.rule_max_length:
                raise PlanError(f"the rule for {rule.tag} is {len(rule.value)} characters, "
                                f"over the {settings.limits.rule_max_length} of the "
                                f"{settings.access_level} access level")
            rules.append(rule)
    return rules


# --- shards ----------------------------------------------------------------------------


def _weight(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\0".join(parts).encode()).digest()[:8], "big")


def assign_cities(cities: list[str], rules_per_city: int, apps: list[App], capacity: int
                  ) -> dict[str, App]:
    """City -> app: highest rendezvous weight with room (cities in name order)."""
    if rules_per_city > capacity:
        raise PlanError(f"one city needs {rules_per_city} rules, more than the {capacity} "
                        "an app may hold: fewer topics, or a higher access level")
    used = {app.name: 0 for app in apps}
    assignment: dict[str, App] = {}
    for city in sorted(cities, key=lambda name: (name.casefold(), name)):
        for app in sorted(apps, key=lambda a: _weight(a.name, city), reverse=True):
            if used[app.name] + rules_per_city <= capacity:
                used[app.name] += rules_per_city
                assignment[city] = app
                break
        else:
            raise PlanError(f"{len(cities) * rules_per_city} rules do not fit in "
                            f"{len(apps)} app(s) of {capacity} rules: add X apps to "
                            "planner_apps (one per shard) or plan fewer cities or topics")
    return assignment


def assign_host(shard: str, hosts: list[str]) -> str:
    return assign_hosts(shard, hosts, 1)[0]


def assign_hosts(shard: str, hosts: list[str], copies: int) -> list[str]:
    """The ``copies`` hosts that rank highest for the shard (rendezvous), best first."""
    return sorted(hosts, key=lambda host: _weight(shard, host), reverse=True)[:copies]


def check_redundancy(settings: Settings) -> None:
    """Redundant copies need as many stream connections per app, and as many hosts."""
    copies = settings.redundancy
    allowed = ACCESS_LEVELS[settings.access_level].stream_connections
    if copies < 1:
        raise PlanError(f"planner_redundancy must be 1 or more, not {copies}")
    if copies > allowed:
        raise PlanError(f"planner_redundancy {copies} needs {copies} stream connections per "
                        f"app; the {settings.access_level} access level allows {allowed}")
    if copies > len(settings.hosts):
        raise PlanError(f"planner_redundancy {copies} needs {copies} producer hosts; the "
                        f"inventory's group 'producers' has {len(settings.hosts)}")


@dataclass
class Plan:
    settings: Settings
    cities: list[City]
    topics: list[str]
    shards: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        limits = self.settings.limits
        return {
            "plan_version": PLAN_VERSION,
            "inventory": self.settings.inventory,
            "access_level": self.settings.access_level,
            "limits": {"rule_max_length": limits.rule_max_length,
                       "rules_per_app": limits.rules_per_app},
            "cities": [city.to_json() for city in self.cities],
            "topics": self.topics,
            "x_api_base_url": self.settings.x_api_base_url,
            "kafka_bootstrap_servers": self.settings.kafka_bootstrap_servers,
            "image": self.settings.image,
            "reconnect_time_scale": self.settings.reconnect_time_scale,
            "redundancy": self.settings.redundancy,
            "shards": self.shards,
        }


def make_plan(cities_given: list[str], topics_given: list[str], settings: Settings) -> Plan:
    """Validate the input and plan it (raises PlanInputError / PlanError)."""
    check_redundancy(settings)
    cities = normalize_cities(cities_given)
    topics = normalize_topics(topics_given)
    rules = build_rules(cities, topics, settings)
    assignment = assign_cities([c.name for c in cities], len(topics), settings.apps,
                               settings.limits.rules_per_app)
    plan = Plan(settings, cities, topics)
    for app in settings.apps:
        shard_cities = [c.name for c in cities if assignment[c.name] == app]
        if not shard_cities:
            continue
        copies = settings.redundancy
        hosts = assign_hosts(app.name, sorted(settings.hosts), copies)
        for copy, host in enumerate(hosts, start=1):
            producer = producer_id(app.name, host)
            plan.shards.append({
                "name": app.name,
                "copy": copy,
                "producer_id": producer,
                "dir": app.name if copies == 1 else producer,
                "service": f"producer-{app.name}",
                "host": host,
                "address": settings.hosts[host],
                # Each copy its own port, so copies never collide even on one address.
                "metrics_port": settings.metrics_base_port + app.index * copies + copy,
                "credential": app.credential,
                "cities": sorted(shard_cities, key=str.casefold),
                "rules": [rule.to_json() for rule in sorted(rules)
                          if rule.city in shard_cities],
            })
    return plan


# --- rendering --------------------------------------------------------------------------


def _quote(value: Any) -> str:
    """A YAML scalar that reads back as exactly ``value`` (JSON is YAML's flow subset)."""
    text = json.dumps(value, ensure_ascii=False)
    # JSON leaves these unescaped, YAML would read them as line breaks or drop them.
    return re.sub(r"[^\S ]|[\x7f-\x9f\u2028\u2029\ufeff]",
                  lambda m: f"\\u{ord(m.group()):04x}", text)


def template_environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader(TEMPLATES_PACKAGE, "."),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["q"] = _quote
    return env


def render_shard(plan: dict[str, Any], shard: dict[str, Any],
                 env: jinja2.Environment | None = None) -> dict[str, str]:
    """The shard's files (name -> text); the producer config is validated by its own model."""
    env = env or template_environment()
    context = {"plan": plan, "shard": shard, "token_file": TOKEN_FILE,
               "config_file": PRODUCER_CONFIG_FILE}
    files = {PRODUCER_CONFIG_FILE: env.get_template("producer.yml.j2").render(context),
             COMPOSE_FILE: env.get_template("compose.yml.j2").render(context)}
    config = parse_config(yaml.safe_load(files[PRODUCER_CONFIG_FILE]),
                          origin=f"{shard['name']}/{PRODUCER_CONFIG_FILE}")
    wanted = [(r["value"], r["tag"]) for r in shard["rules"]]
    if [(r.value, r.tag) for r in config.rules] != wanted:
        raise PlanError(f"{shard['name']}: the rendered config does not read back as planned")
    return files


def write_plan(plan: Plan, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    target = out / PLAN_FILE
    target.write_text(json.dumps(plan.to_json(), ensure_ascii=False, indent=2) + "\n",
                      encoding="utf-8")
    return target


def render_plan(out: Path) -> list[Path]:
    """Render every shard (copy) of ``out/plan.json`` into ``out/shards/<dir>/``."""
    plan = read_plan(out)
    env = template_environment()
    shards_dir = out / "shards"
    written = []
    rendered = {shard["dir"]: render_shard(plan, shard, env) for shard in plan["shards"]}
    if shards_dir.exists():
        for old in sorted(shards_dir.glob("*/*")):
            old.unlink()
        for old in sorted(shards_dir.iterdir()):
            old.rmdir()
    for name, files in rendered.items():
        (shards_dir / name).mkdir(parents=True, exist_ok=True)
        for file_name, text in files.items():
            path = shards_dir / name / file_name
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def read_plan(out: Path) -> dict[str, Any]:
    path = out / PLAN_FILE if out.is_dir() else out
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PlanError(f"cannot read the plan {path}: {error}") from None
    if plan.get("plan_version") != PLAN_VERSION:
        raise PlanError(f"{path}: plan_version {plan.get('plan_version')!r}, "
                        f"expected {PLAN_VERSION}")
    return plan


# --- diff ---------------------------------------------------------------------------------


def shard_digest(shard: dict[str, Any]) -> dict[str, Any]:
    """What a host records of a deployed shard (deployed.json), and what --diff compares."""
    return dict(shard)


def _copy_key(shard: dict[str, Any]) -> tuple[str, int]:
    # A deployed.json written before redundancy existed has no copy: its shards ran once.
    return shard["name"], shard.get("copy", 1)


def _label(name: str, copy: int) -> str:
    return name if copy == 1 else f"{name} (copy {copy})"


def diff_plans(deployed: list[dict[str, Any]], planned: list[dict[str, Any]]) -> dict[str, Any]:
    """Shards added, removed, changed (rules added/removed, moved host) and unchanged.

    Each copy of a redundant shard is compared with the same copy deployed; the items
    name the shard, and the copy when it is not the first.
    """
    before = {_copy_key(s): s for s in deployed}
    after = {_copy_key(s): shard_digest(s) for s in planned}
    changes: dict[str, Any] = {"add": [], "remove": [], "change": [], "unchanged": []}
    for name, copy in sorted(set(before) | set(after)):
        old, new = before.get((name, copy)), after.get((name, copy))
        which = {"shard": name, **({"copy": copy} if copy != 1 else {})}
        if old is None:
            changes["add"].append({**which, "host": new["host"], "cities": new["cities"],
                                   "rules": len(new["rules"])})
        elif new is None:
            changes["remove"].append({**which, "host": old["host"], "cities": old["cities"]})
        elif old == new:
            changes["unchanged"].append(_label(name, copy))
        else:
            old_rules = {r["tag"]: r["value"] for r in old["rules"]}
            new_rules = {r["tag"]: r["value"] for r in new["rules"]}
            changes["change"].append({
                **which, "host": new["host"],
                **({"moved_from": old["host"]} if old["host"] != new["host"] else {}),
                "rules_added": sorted(t for t in new_rules if old_rules.get(t) != new_rules[t]),
                "rules_removed": sorted(t for t in old_rules if new_rules.get(t) != old_rules[t]),
            })
    return changes


def describe_diff(changes: dict[str, Any]) -> str:
    lines = []
    for item in changes["add"]:
        lines.append(f"+ shard {_label(item['shard'], item.get('copy', 1))} on {item['host']}: "
                     f"{', '.join(item['cities'])} "
                     f"({item['rules']} rules)")
    for item in changes["remove"]:
        lines.append(f"- shard {_label(item['shard'], item.get('copy', 1))} on {item['host']}: "
                     f"{', '.join(item['cities'])}")
    for item in changes["change"]:
        moved = f" (moved from {item['moved_from']})" if "moved_from" in item else ""
        lines.append(f"~ shard {_label(item['shard'], item.get('copy', 1))} on "
                     f"{item['host']}{moved}")
        lines += [f"    + {tag}" for tag in item["rules_added"]]
        lines += [f"    - {tag}" for tag in item["rules_removed"]]
    for name in changes["unchanged"]:
        lines.append(f"= shard {name} unchanged")
    return "\n".join(lines) if lines else "nothing deployed, nothing planned"


__all__ = ["ACCESS_LEVELS", "Plan", "PlanError", "PlanInputError", "Settings", "make_plan",
           "render_plan", "write_plan"]
