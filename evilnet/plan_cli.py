"""``evilnet plan`` and ``evilnet render``: the Jenkins stages (verify is ``evilnet health``).

| stage    | command |
|----------|---------|
| validate | ``evilnet plan --check --cities C --topics T --inventory I`` |
| validate rules | ``evilnet stream-rules validate --cities C --topics T --inventory I`` |
| plan     | ``evilnet plan --cities C --topics T --inventory I --out build/plan --no-render`` |
| render   | ``evilnet render build/plan`` |
| diff     | ``evilnet plan --diff --cities C --topics T --inventory I --out build/plan`` |
| roll out | ``ansible-playbook -i I ansible/playbooks/producers.yml -e producer_plan_dir=…`` |
| verify   | ``evilnet health producers --plan build/plan --wait 120`` |

Exit status 2: the input or the inventory cannot be planned (nothing was written).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from evilnet.cities import PlanInputError, split_cities, split_list
from evilnet.locations import LocationError, Stack, inventory_options
from evilnet.planner import (
    PlanError,
    describe_diff,
    diff_plans,
    make_plan,
    render_plan,
    write_plan,
)
from evilnet.platform.inventory import Inventory, InventoryError, deployed_shards

EXIT_BAD_INPUT = 2


def _fail(error: Exception) -> None:
    click.echo(f"evilnet plan: {error}", err=True)
    sys.exit(EXIT_BAD_INPUT)


@click.command()
@click.option("--cities", multiple=True, required=True,
              help="Cities, comma-separated or one per line (repeatable).")
@click.option("--topics", multiple=True, required=True,
              help="Topics (keywords or phrases), comma-separated or one per line.")
@inventory_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write plan.json (and the rendered shards) here.")
@click.option("--check", is_flag=True, help="Validate and plan, write nothing.")
@click.option("--no-render", is_flag=True, help="Write plan.json only (see `evilnet render`).")
@click.option("--diff", "show_diff", is_flag=True,
              help="Compare with what the producer hosts run (diff.json beside plan.json).")
@click.option("--deployed", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --diff: compare with this deployed.json instead of asking the hosts.")
@click.option("--redundancy", type=int, default=None,
              help="Producer copies per shard, each on its own host (default: the "
                   "inventory's planner_redundancy, else 1; 2 needs the enterprise level).")
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="json: the plan, where it was written, and the diff.")
def plan(cities: tuple[str, ...], topics: tuple[str, ...], out: Path | None, check: bool,
         no_render: bool, show_diff: bool, deployed: Path | None, redundancy: int | None,
         output: str) -> None:
    """Plan CITIES x TOPICS into X API rules, shards and producer hosts (of `evilnet -i`)."""
    try:
        inventory = Inventory.of(click.get_current_context().find_object(Stack))
        settings = inventory.planner_settings()
        if redundancy is not None:
            settings.redundancy = redundancy
        the_plan = make_plan(split_cities(cities), split_list(topics), settings)
    except (PlanInputError, PlanError, InventoryError, LocationError) as error:
        _fail(error)
    document = the_plan.to_json()
    # What runs now is read first: a diff that cannot be made writes nothing.
    current = _deployed(deployed, inventory.path) if show_diff and not check else None
    shards = [s for s in document["shards"] if s["copy"] == 1]  # copies share the rules
    copies = f", {settings.redundancy} producers each" if settings.redundancy > 1 else ""
    summary = (f"{len(the_plan.cities)} cities x {len(the_plan.topics)} topics = "
               f"{sum(len(s['rules']) for s in shards)} rules in "
               f"{len(shards)} shard(s){copies} ({settings.access_level}: "
               f"{settings.limits.rules_per_app} rules per app, "
               f"{settings.limits.rule_max_length} characters per rule)")
    if output == "table":
        click.echo(summary)
        for shard in document["shards"]:
            copy = f" (copy {shard['copy']})" if settings.redundancy > 1 else ""
            click.echo(f"  {shard['name']}{copy} on {shard['host']}: "
                       f"{', '.join(shard['cities'])}")
    report = {"summary": summary, "plan": document, "written": None, "diff": None}
    if check:
        if output == "json":
            click.echo(json.dumps(report, ensure_ascii=False))
        return
    if out is not None:
        write_plan(the_plan, out)
        if not no_render:
            try:
                render_plan(out)
            except PlanError as error:
                _fail(error)
        report["written"] = str(out)
        if output == "table":
            click.echo(f"wrote {out}")
    if current is not None:
        changes = diff_plans(current, document["shards"])
        report["diff"] = changes
        if output == "table":
            click.echo(describe_diff(changes))
        if out is not None:
            (out / "diff.json").write_text(json.dumps(changes, ensure_ascii=False, indent=2)
                                           + "\n", encoding="utf-8")
    if output == "json":
        click.echo(json.dumps(report, ensure_ascii=False))


def _deployed(path: Path | None, inventory: Path) -> list[dict]:
    """The shards that run now: a deployed.json's, or what the producer hosts say."""
    if path is None:
        try:
            return deployed_shards(inventory)
        except InventoryError as error:
            _fail(error)
    try:
        shards = json.loads(path.read_text(encoding="utf-8"))["shards"]
        if not isinstance(shards, list) or not all(
                isinstance(shard, dict) and {"name", "host", "cities", "rules"} <= shard.keys()
                and all(isinstance(r, dict) and {"tag", "value"} <= r.keys()
                        for r in shard["rules"])
                for shard in shards):
            raise ValueError("a shard lacks its name, host, cities or rules (tag, value)")
    except UnicodeDecodeError:
        _fail(f"not a deployed.json: not UTF-8 text ({path})")
    except json.JSONDecodeError as error:
        _fail(f"not a deployed.json: not JSON, {error.msg} at line {error.lineno} ({path})")
    except (KeyError, TypeError):
        _fail(f"not a deployed.json: no \"shards\" list ({path})")
    except ValueError as error:
        _fail(f"not a deployed.json: {error} ({path})")
    return shards


@click.command()
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
def render(out: Path) -> None:
    """Render OUT/plan.json into OUT/shards/<shard>/ (config + compose, from templates/)."""
    try:
        written = render_plan(out)
    except PlanError as error:
        _fail(error)
    for path in written:
        click.echo(str(path))
