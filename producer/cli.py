"""``evilnet produce``, ``evilnet replay``, ``evilnet simulate-x-api`` and ``evilnet synth``."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from evilnet.cities import PlanInputError, canonical_cities, check_tags, normalize_topics
from evilnet.contracts import ACCESS_LEVELS, DEFAULT_ACCESS_LEVEL, RuleTag, TagError
from evilnet.kafka_clients import COMMAND_CLIENT
from evilnet.locations import Endpoint, Endpoints, kafka_login, location, remember_where
from evilnet.producer.config import ConfigError, load_config, read_secret_file
from evilnet.producer.generator import SYNTH_START, synthesize, synthetic_rules
from evilnet.producer.logs import configure as configure_logs

# The service, its sink and X API client (tweepy, kafka-python, requests) are imported
# by the commands that run them: `evilnet --help` loads this module to list them.

console = Console(stderr=True)
EXIT_BAD_CONFIG = 2

_log_level = click.option("--log-level", default="INFO", show_default=True,
                          type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"],
                                            case_sensitive=False))


def _split(values: tuple[str, ...]) -> list[str]:
    """Values given as a comma-separated list, a repeated option, or both."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


@click.command()
@click.option("--config", "config_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The shard's producer config (YAML).")
@_log_level
def produce(config_path: Path, log_level: str) -> None:
    """Stream the shard's rules from the X API into Kafka (SIGHUP: reload rules)."""
    from kafka.errors import KafkaError

    from evilnet.producer.service import run_stream
    from evilnet.producer.xapi import RuleReconcileError, XApiAuthError

    configure_logs(log_level)
    try:
        code = run_stream(config_path)
    except ConfigError as error:
        click.echo(f"evilnet produce: {error}", err=True)
        sys.exit(EXIT_BAD_CONFIG)
    except (XApiAuthError, RuleReconcileError) as error:
        click.echo(f"evilnet produce: {error}", err=True)
        sys.exit(1)
    except KafkaError as error:
        click.echo(f"evilnet produce: Kafka: {error!r}", err=True)
        sys.exit(1)
    sys.exit(code)


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Lines per second [default: as fast as possible].")
@click.option("--config", "config_path", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Take brokers, topics and limits from a producer config.")
@click.option("--bootstrap-servers", type=Endpoints(), envvar="EVILNET_BOOTSTRAP_SERVERS",
              show_envvar=True,
              help="Kafka brokers (without --config) [default: the inventory's].")
@click.option("--skip", type=click.IntRange(min=0), default=0,
              help="Skip this many lines first (resume: the last run printed lines_read).")
@_log_level
def replay(file: Path, rate: float | None, config_path: Path | None,
           bootstrap_servers: tuple[Endpoint, ...] | None, skip: int, log_level: str) -> None:
    """Replay X API filtered-stream JSON lines from FILE into Kafka.

    Prints a JSON summary on stdout; after SIGTERM, its lines_read lines are all
    in Kafka, each once.
    """
    from evilnet.producer.service import ReplaySummary, kafka_sink, run_replay
    from evilnet.producer.sink import KafkaSettings, KafkaSink

    configure_logs(log_level)
    if log_level.upper() != "DEBUG":
        # kafka-python logs each refused connection while it retries; a command says
        # the outcome itself (a summary, or one line and exit 2).
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        check_tags(_file_tags(file, skip))
    except PlanInputError as error:
        click.echo(f"evilnet replay: {file}: {' '.join(str(error).split())}", err=True)
        sys.exit(EXIT_BAD_CONFIG)
    if config_path is not None:
        try:
            config = load_config(config_path)
        except ConfigError as error:
            click.echo(f"evilnet replay: {error}", err=True)
            sys.exit(EXIT_BAD_CONFIG)
        options = {"shard": config.shard, "tweets_topic": config.tweets_topic,
                   "dead_letter_topic": config.dead_letter_topic,
                   "max_payload_bytes": config.max_payload_bytes}

        def sink_factory(metrics):
            return kafka_sink(config, metrics, COMMAND_CLIENT)
    else:
        # Read only now: with --config, the inventory is not needed (nor read).
        servers = [str(server) for server in
                   bootstrap_servers or location("bootstrap_servers", "--bootstrap-servers")]
        remember_where("Kafka", servers)
        options = {}
        # The inventory's login when its brokers are the ones replayed into.
        login = {} if bootstrap_servers else kafka_login()

        def sink_factory(metrics):
            return KafkaSink(KafkaSettings(servers, client_id="evilnet-replay",
                                           client_settings={**COMMAND_CLIENT, **login}), metrics)

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(f"replaying {file.name}")

        def progress(summary: ReplaySummary) -> None:
            if summary.lines_read % 1000 == 0:
                bar.update(task, description=f"replaying {file.name}: {summary.lines_read} lines")

        # Kafka's errors end the command as exit 2, in one line (evilnet.cli).
        summary, _ = run_replay(file, sink_factory=sink_factory, rate=rate, skip=skip,
                                progress=progress, **options)
    click.echo(summary.to_json())
    if summary.lines_read and not summary.records:
        click.echo(f"evilnet replay: {file}: no line was a post (every line a notice, "
                   "dead letter or blank)", err=True)
        sys.exit(EXIT_BAD_CONFIG)
    sys.exit(1 if summary.unacknowledged else 0)


def _file_tags(file: Path, skip: int) -> set[tuple[str, str]]:
    """The (city, topic) of every parseable rule tag of FILE's lines after ``skip``."""
    tags: set[tuple[str, str]] = set()
    with file.open("rb") as lines:
        for number, line in enumerate(lines):
            if number < skip or not line.strip():
                continue
            try:
                rules = json.loads(line).get("matching_rules") or []
            except (ValueError, AttributeError):
                continue  # not a post: the replay routes it to the dead letters
            for rule in rules if isinstance(rules, list) else []:
                try:
                    tag = RuleTag.parse(rule.get("tag", "") if isinstance(rule, dict) else "")
                except TagError:
                    continue
                tags.add((tag.city, tag.topic))
    return tags


@click.command("simulate-x-api")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token-env", "token_envs", multiple=True, default=("X_BEARER_TOKEN",),
              show_default=True, help="Accept the bearer token in this variable (repeatable).")
@click.option("--token-file", "token_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Accept the bearer token in this 0600 file (repeatable).")
@click.option("--rate", default=20.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Mean posts per second on each app's stream (bursts go higher).")
@click.option("--keep-alive", default=5.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds of silence after which a keep-alive newline is sent.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--max-posts", default=None, type=click.IntRange(min=0),
              help="Stop making posts after this many (keep-alives go on).")
@click.option("--access-level", default=DEFAULT_ACCESS_LEVEL, show_default=True,
              type=click.Choice(list(ACCESS_LEVELS)),
              help="Refuse rules longer, or more of them, than this level allows "
                   "(the plan's planner_access_level).")
@_log_level
def simulate_x_api(host: str, port: int, token_envs: tuple[str, ...],
                   token_files: tuple[Path, ...], rate: float, keep_alive: float, seed: int,
                   max_posts: int | None, access_level: str, log_level: str) -> None:
    """Serve a local X API v2 filtered stream (rules, stream, /_sim/ fault injection)."""
    from evilnet.producer.simulator import XApiSimulator

    configure_logs(log_level)
    try:
        tokens = [read_secret_file(path, key="--token-file") for path in token_files]
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    tokens += [os.environ[name] for name in token_envs if os.environ.get(name)]
    if not tokens:
        raise click.UsageError(f"no bearer token to accept: set {', '.join(token_envs)} "
                               "or give --token-file")
    simulator = XApiSimulator(tokens, rate=rate, keep_alive_seconds=keep_alive, seed=seed,
                              max_posts=max_posts, access_level=access_level)
    simulator.serve(host, port)
    console.print(f"X API simulator on {simulator.base_url} ({len(tokens)} app(s))")
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    simulator.shutdown()


@click.command()
@click.option("--cities", multiple=True, required=True,
              help="Comma-separated city names (repeatable), resolved like the planner's "
                   "CITIES, e.g. \"Montréal,St. John's\" or \"Hamilton, ON, Toronto\".")
@click.option("--topics", multiple=True, required=True,
              help="Comma-separated topics (repeatable).")
@click.option("--posts", required=True, type=click.IntRange(min=0))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--rate", default=20.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Mean posts per second of synthetic time.")
@click.option("--start", default=SYNTH_START.isoformat(), show_default=True,
              type=datetime.fromisoformat, help="created_at of the first post (ISO 8601).")
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-",
              help="Where to write [default: stdout].")
def synth(cities: tuple[str, ...], topics: tuple[str, ...], posts: int, seed: int,
          rate: float, start: datetime, output) -> None:
    """Write synthetic filtered-stream JSON lines, the same for the same arguments."""
    try:
        rules = synthetic_rules(canonical_cities(cities), normalize_topics(_split(topics)))
    except ValueError as error:  # PlanInputError names CITIES or TOPICS
        raise click.BadParameter(" ".join(str(error).split()), param_hint="--cities/--topics"
                                 ) from None
    if start.tzinfo is None:
        raise click.BadParameter("--start needs a time zone (e.g. ...Z or +00:00)")
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("synthesizing", total=posts)
        for index, post in enumerate(synthesize(rules, posts=posts, seed=seed, start=start,
                                                mean_rate=rate), start=1):
            output.write(json.dumps(post, ensure_ascii=False) + "\n")
            if index % 1000 == 0:
                bar.update(task, completed=index)


