"""Dashboards as code: the checked-in JSON is what grafana/generate.py generates, of
the schema version the library emits, and its queries come from the contracts."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from grafana_foundation_sdk.models.dashboard import Dashboard
from monitoring_helpers import (
    GENERATOR,
    REPO_ROOT,
    cassandra_targets,
    interpolate_variable_query,
    prometheus_targets,
)

from evilnet.dashboards.interpolation import InterpolationError
from evilnet.producer import metrics as producer_metrics
from evilnet.schema import Statements
from evilnet.spark import metrics as job_metrics

DASHBOARDS = REPO_ROOT / "grafana" / "dashboards"


def test_checked_in_dashboards_are_what_the_code_generates(generator) -> None:
    generated = {name: generator.render(model) for name, model in generator.dashboards().items()}
    checked_in = {path.name: path.read_text("utf-8") for path in DASHBOARDS.glob("*.json")}
    assert checked_in == generated, (
        "grafana/dashboards differs from grafana/generate.py: run "
        ".venv/bin/python grafana/generate.py and commit the result")


def test_the_generator_check_mode_agrees(tmp_path) -> None:
    ok = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True,
                        text=True, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr
    # A stale copy is reported, and the command that fixes it named.
    for path in DASHBOARDS.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text("utf-8"))
    stale = tmp_path / "top-cities.json"
    stale.write_text(stale.read_text().replace("Top 5", "Top 6"))
    bad = subprocess.run([sys.executable, str(GENERATOR), "--check", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 1
    assert "top-cities.json: differs" in bad.stderr and "grafana/generate.py" in bad.stderr


def test_dashboards_are_valid_json_of_the_library_schema_version() -> None:
    version = Dashboard().schema_version
    uids = set()
    for path in DASHBOARDS.glob("*.json"):
        model = json.loads(path.read_text("utf-8"))
        assert model["schemaVersion"] == version, path.name
        assert model["uid"] not in uids
        uids.add(model["uid"])
        # The library reads it back as a dashboard of that version.
        parsed = Dashboard.from_json(model)
        assert parsed.schema_version == version and parsed.uid == model["uid"]
        assert parsed.panels
    assert uids == {"evilnet-city-trends", "evilnet-top-cities", "evilnet-pipeline-health"}


def _statement_pattern(statement: str) -> re.Pattern:
    """A statement's text with anything in place of its bind markers."""
    return re.compile("^" + "(.+?)".join(re.escape(p) for p in statement.split("?")) + "$")


def test_every_cassandra_query_is_a_statement_of_the_contract(generator) -> None:
    patterns = [_statement_pattern(text) for text in Statements().all().values()]
    queries = [target["target"] for board in generator.dashboards().values()
               for _, target in cassandra_targets(board)]
    queries += [variable["query"]["query"] for board in generator.dashboards().values()
                for variable in board.get("templating", {}).get("list", [])]
    assert len(queries) == 11
    for query in queries:
        assert any(pattern.match(query) for pattern in patterns), query
        assert "ALLOW FILTERING" not in query.upper()
        # Multi-value variables are quoted the CQL way (quotes doubled).
        for variable in re.findall(r"\$\{?(\w+)(?::(\w+))?\}?", query):
            name, fmt = variable
            assert name.startswith("__") or fmt == "sqlstring", query


def test_prometheus_queries_use_the_metric_names_of_the_code(generator) -> None:
    expressions = " ".join(target["expr"] for board in generator.dashboards().values()
                           for _, target in prometheus_targets(board))
    for name in (producer_metrics.POSTS_RECEIVED, producer_metrics.RECORDS_PRODUCED,
                 producer_metrics.DEAD_LETTERS, producer_metrics.RECONNECTS,
                 job_metrics.BATCH_DURATION, job_metrics.TRIGGER, job_metrics.END_OFFSET,
                 job_metrics.KAFKA_LOG_END_OFFSET):
        assert name in expressions, name


def test_the_dashboards_name_only_the_provisioned_datasources(generator) -> None:
    text = json.dumps(generator.dashboards())
    uids = set(re.findall(r'"datasource": \{"type": "[^"]+", "uid": "([^"]+)"\}', text))
    assert uids == {generator.CASSANDRA.uid, generator.PROMETHEUS.uid}


def test_variable_queries_hold_no_time_macro(generator) -> None:
    """The plugin substitutes $__timeFrom/$__timeTo in panel queries only: in a variable
    query they reach Cassandra as they are, and the dropdown stays empty."""
    for board in generator.dashboards().values():
        for variable in board.get("templating", {}).get("list", []):
            assert "$__" not in variable["query"]["query"], variable["name"]
    # The helper the stack tests run variable queries through refuses one.
    with pytest.raises(InterpolationError, match="unsubstituted macro"):
        interpolate_variable_query("SELECT city FROM t WHERE day = to_date($__timeFrom)", {})


def test_trend_panels_colour_series_by_name(generator) -> None:
    """The plugin's frames come in a random order (a Go map): only colours by series name
    keep a city's colour from one refresh, and one panel, to the next."""
    trends = [panel for panel, _ in cassandra_targets(generator.dashboards()["city-trends.json"])]
    assert len(trends) == 6
    for panel in trends:
        assert panel["fieldConfig"]["defaults"]["color"] == {"mode": "palette-classic-by-name"}
