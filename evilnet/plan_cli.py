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
from evilnet.planner import (
    PlanError,
    describe_diff,
    diff_plans,
    make_plan,
    render_plan,
    write_plan,
)
from evilnet.platform.inventory import (
    DEFAULT_ROLES,
    Inventory,
    InventoryError,
    deployed_shards,
)

EXIT_BAD_INPUT = 2


def _fail(error: Exception) -> None:
    click.echo(f"evilnet plan: {error}", err=True)
    sys.exit(EXIT_BAD_INPUT)


@click.command()
@click.option("--cities", multiple=True, required=True,
              help="Cities, comma-separated or one per line (repeatable).")
@click.option("--topics", multiple=True, required=True,
              help="Topics (keywords or phrases), comma-separated or one per line.")
@click.option("--inventory", required=True,
              type=click.Path(exists=True, path_type=Path), help="inventories/<env>")
@click.option("--roles", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_ROLES, show_default=True,
              help="The Ansible roles whose defaults fill in what the inventory does not set "
                   "(relative to the current directory: run from the repository root).")
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
def plan(cities: tuple[str, ...], topics: tuple[str, ...], inventory: Path, roles: Path,
         out: Path | None, check: bool, no_render: bool, show_diff: bool,
         deployed: Path | None, redundancy: int | None) -> None:
    """Plan CITIES x TOPICS into X API rules, shards and producer hosts."""
    try:
        settings = Inventory.load(inventory, roles=roles).planner_settings()
        if redundancy is not None:
            settings.redundancy = redundancy
        the_plan = make_plan(split_cities(cities), split_list(topics), settings)
    except (PlanInputError, PlanError, InventoryError) as error:
        _fail(error)
    document = the_plan.to_json()
    shards = [s for s in document["shards"] if s["copy"] == 1]  # copies share the rules
    copies = f", {settings.redundancy} producers each" if settings.redundancy > 1 else ""
    summary = (f"{len(the_plan.cities)} cities x {len(the_plan.topics)} topics = "
               f"{sum(len(s['rules']) for s in shards)} rules in "
               f"{len(shards)} shard(s){copies} ({settings.access_level}: "
               f"{settings.limits.rules_per_app} rules per app, "
               f"{settings.limits.rule_max_length} characters per rule)")
    click.echo(summary)
    for shard in document["shards"]:
        copy = f" (copy {shard['copy']})" if settings.redundancy > 1 else ""
        click.echo(f"  {shard['name']}{copy} on {shard['host']}: {', '.join(shard['cities'])}")
    if check:
        return
    if out is not None:
        write_plan(the_plan, out)
        if not no_render:
            try:
                render_plan(out)
            except PlanError as error:
                _fail(error)
        click.echo(f"wrote {out}")
    if show_diff:
        try:
            current = (json.loads(deployed.read_text(encoding="utf-8"))["shards"] if deployed
                       else deployed_shards(inventory))
        except InventoryError as error:
            _fail(error)
        changes = diff_plans(current, document["shards"])
        click.echo(describe_diff(changes))
        if out is not None:
            (out / "diff.json").write_text(json.dumps(changes, ensure_ascii=False, indent=2)
                                           + "\n", encoding="utf-8")


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
