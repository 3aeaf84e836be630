"""``evilnet plan``, ``evilnet render`` and ``evilnet producer-health``: the Jenkins stages.

| stage    | command |
|----------|---------|
| validate | ``evilnet plan --check --cities C --topics T --inventory I`` |
| plan     | ``evilnet plan --cities C --topics T --inventory I --out build/plan --no-render`` |
| render   | ``evilnet render build/plan`` |
| diff     | ``evilnet plan --diff --cities C --topics T --inventory I --out build/plan`` |
| roll out | ``ansible-playbook -i I ansible/playbooks/producers.yml -e producer_plan_dir=…`` |
| verify   | ``evilnet producer-health --plan build/plan --wait 120`` |

Exit status 2: the input or the inventory cannot be planned (nothing was written).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from evilnet.cities import PlanInputError, split_list
from evilnet.planner import (
    PlanError,
    describe_diff,
    diff_plans,
    make_plan,
    read_plan,
    render_plan,
    write_plan,
)
from evilnet.platform.health import producer_shard
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
        the_plan = make_plan(split_list(cities), split_list(topics), settings)
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


@click.command("producer-health")
@click.option("--plan", "plan_dir", required=True,
              type=click.Path(exists=True, path_type=Path), help="The plan directory or file.")
@click.option("--host", default=None, help="Only the shards of this inventory host.")
@click.option("--shard", "only_shards", multiple=True, help="Only these shards (repeatable).")
@click.option("--wait", default=60.0, show_default=True, help="Seconds to wait for health.")
@click.option("--min-posts", default=0, show_default=True,
              help="Also wait until each shard received this many posts.")
def producer_health(plan_dir: Path, host: str | None, only_shards: tuple[str, ...],
                    wait: float, min_posts: int) -> None:
    """Every planned shard's metrics endpoint answers and its stream is connected."""
    try:
        document = read_plan(plan_dir)
    except PlanError as error:
        _fail(error)
    shards = [s for s in document["shards"] if (host is None or s["host"] == host)
              and (not only_shards or s["name"] in only_shards)]
    deadline = time.monotonic() + wait
    while True:
        results = {s["name"]: producer_shard(s["address"], s["metrics_port"], min_posts)
                   for s in shards}
        if all(r.ok for r in results.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    for name, result in results.items():
        click.echo(f"{name}: {'ok' if result.ok else 'UNHEALTHY'}: {result.detail}")
    if not all(r.ok for r in results.values()):
        sys.exit(1)
