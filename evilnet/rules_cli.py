"""``evilnet stream-rules validate``: a plan's rules, checked by the X API before a rollout.

The Jenkins stage ``validate rules`` (parameter ``VALIDATE_RULES``, off by default:
the simulator-free CI has no API to ask) plans CITIES x TOPICS as ``evilnet plan``
does, then sends each shard's rules to the plan's X API with ``dry_run=true``: the
API says what it would refuse (too long for the app's level, invalid syntax) and
changes nothing. Rules an app holds already come back as duplicates and are fine.

Exit status: 0 when every rule would be accepted, 2 when the input cannot be
planned or the API would refuse a rule, 1 when the API cannot be asked (no token,
refused token, unreachable).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from pydantic import SecretStr

from evilnet.cities import PlanInputError, split_cities, split_list
from evilnet.locations import LocationError, Stack, inventory_options
from evilnet.planner import PlanError, make_plan
from evilnet.platform.inventory import Inventory, InventoryError
from evilnet.producer.config import ConfigError, Rule, read_secret_file

# The X API client (tweepy, requests) is imported by `validate`, which asks the API:
# `evilnet --help` loads this module to list its commands.

EXIT_CANNOT_ASK = 1
EXIT_REFUSED = 2


def _token(credential: dict[str, str], inventory: Path) -> SecretStr:
    """The bearer token a plan's credential reference names (env, or a file relative
    to the inventory)."""
    kind, name = next(iter(credential.items()))
    if kind == "env":
        if not os.environ.get(name):
            raise ConfigError(f"environment variable {name} is not set")
        return SecretStr(os.environ[name].strip())
    if kind == "file":
        return SecretStr(read_secret_file(inventory / name, key="credential file"))
    raise ConfigError(f"a {kind} credential is read on the producer hosts only: "
                      "give the token through an environment variable here")


@click.group("stream-rules")
def stream_rules() -> None:
    """The X API filtered-stream rules of a plan."""


@stream_rules.command()
@click.option("--cities", multiple=True, required=True,
              help="Cities, comma-separated or one per line (repeatable).")
@click.option("--topics", multiple=True, required=True,
              help="Topics (keywords or phrases), comma-separated or one per line.")
@inventory_options
def validate(cities: tuple[str, ...], topics: tuple[str, ...]) -> None:
    """Dry-run the planned rules of every shard at the plan's X API (changes nothing)."""
    import requests
    import tweepy

    from evilnet.producer.xapi import rules_client, validate_rules

    try:
        loaded = Inventory.of(click.get_current_context().find_object(Stack))
        inventory = loaded.path
        settings = loaded.planner_settings()
        document = make_plan(split_cities(cities), split_list(topics), settings).to_json()
    except (PlanInputError, PlanError, InventoryError, LocationError) as error:
        click.echo(f"evilnet stream-rules validate: {error}", err=True)
        sys.exit(EXIT_REFUSED)
    refused = 0
    # Redundant copies of a shard share its app and rules: ask once per app.
    for shard in [s for s in document["shards"] if s.get("copy", 1) == 1]:
        try:
            token = _token(shard["credential"], inventory)
            client = rules_client(document["x_api_base_url"], token)
            problems = validate_rules(client, [Rule(**rule) for rule in shard["rules"]])
        except ConfigError as error:
            click.echo(f"{shard['name']}: no token: {error}", err=True)
            sys.exit(EXIT_CANNOT_ASK)
        except (tweepy.HTTPException, requests.RequestException) as error:
            click.echo(f"{shard['name']}: the X API could not be asked: {error}", err=True)
            sys.exit(EXIT_CANNOT_ASK)
        refused += len(problems)
        click.echo(f"{shard['name']}: {len(shard['rules'])} rules, "
                   f"{'all accepted' if not problems else f'{len(problems)} refused'}")
        for problem in problems:
            click.echo(f"  {problem}")
    if refused:
        sys.exit(EXIT_REFUSED)
