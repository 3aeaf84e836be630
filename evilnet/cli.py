"""The ``evilnet`` command line: one subcommand per job an operator does."""

from __future__ import annotations

import click

from evilnet import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="evilnet")
def main() -> None:
    """Plan, deploy, feed and check the EvilNet pipeline."""


def _register() -> None:
    # Subcommands live next to the code they drive; they are attached here so that
    # `evilnet --help` lists the whole tool.
    from evilnet.platform.cli import fidelity, health, stage, status, topics

    for command in (stage, health, status, topics, fidelity):
        main.add_command(command)

    from evilnet.platform.footprint_cli import footprint

    main.add_command(footprint)

    from evilnet.dashboards.cli import dashboards

    main.add_command(dashboards)

    from evilnet.producer.cli import produce, replay, simulate_x_api, synth

    main.add_command(produce)
    main.add_command(replay)
    main.add_command(simulate_x_api)
    main.add_command(synth)

    from evilnet.rules_cli import stream_rules

    main.add_command(stream_rules)

    from evilnet.spark.cli import check, locate, query, schema

    main.add_command(schema)
    main.add_command(query)
    main.add_command(check)
    main.add_command(locate)

    from evilnet.plan_cli import plan, render

    for command in (plan, render):
        main.add_command(command)


_register()
