"""What the commands print: tables that fold at 80 columns and never cut a cell, and
``--format json`` for status, plan and health, with no address given (the inventory's).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from stack_clients import CASSANDRA_ADMIN, cassandra_connect, grant_keyspace

from evilnet.spark.store import CassandraStore, WindowRow

REPO_ROOT = Path(__file__).resolve().parents[1]
EVILNET = str(Path(sys.executable).with_name("evilnet"))


def _evilnet(*arguments: str, columns: int = 80) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("EVILNET_")}
    return subprocess.run([EVILNET, *arguments], capture_output=True, text=True, cwd=REPO_ROOT,
                          env={**env, "COLUMNS": str(columns), "NO_COLOR": "1"}, timeout=180,
                          check=False)


def _table_rows(text: str, border: str = "│") -> list[list[str]]:
    """A rich table's rows, each cell's folded lines joined (whitespace dropped); with
    the header's border (┃), its one row."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        if not line.startswith(border):
            continue
        cells = [cell.strip() for cell in line.strip().strip(border).split(border)]
        if (cells[0] and border == "│") or not rows:
            rows.append(cells)
        else:
            rows[-1] = [a + b for a, b in zip(rows[-1], cells, strict=True)]
    return [[re.sub(r"\s", "", cell) for cell in row] for row in rows]


def _squeezed(value: object) -> str:
    return re.sub(r"\s", "", str(value))


def test_status_at_80_columns_folds_every_endpoint_and_detail_whole(stack) -> None:
    as_json = _evilnet("status", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    services = json.loads(as_json.stdout)
    table = _evilnet("status")
    assert table.returncode == 0, table.stderr
    assert all(len(line) <= 80 for line in table.stdout.splitlines())
    assert "…" not in table.stdout
    rows = _table_rows(table.stdout)
    # Details change from one run to the next (ages, counts); names and endpoints do not.
    assert [(row[0], row[1]) for row in rows] == [
        (_squeezed(s["service"]), _squeezed(s["endpoint"])) for s in services]
    assert any(":" in s["endpoint"] for s in services)  # ports are there to be cut


WINDOWS_KEYSPACE = "evilnet_cli_output"


@pytest.fixture(scope="module")
def windows_keyspace(stack) -> Iterator[tuple[str, datetime]]:
    """A keyspace of this module's own, with 20 minutes of windows an hour ago (however
    long the stack has run, whatever ran before), for long names and quotes."""
    host = stack.address(stack.groups["cassandra"][0])
    # The admin: the keyspace is dropped and its rows written here.
    cluster, session = cassandra_connect([host], inventory=stack, role=CASSANDRA_ADMIN)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {WINDOWS_KEYSPACE}", timeout=120)
        applied = _evilnet("schema", "apply", "--keyspace", WINDOWS_KEYSPACE)
        assert applied.returncode == 0, applied.stderr
        grant_keyspace(session, WINDOWS_KEYSPACE, stack)  # `evilnet query` reads as the reader
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
        rows = [WindowRow(city, topic, start + timedelta(minutes=m),
                          start + timedelta(minutes=m + 5), 10 * m + 7, m, 3 + m % 4)
                for city in ("Trois-Rivières", "St. John's", "Montréal")
                for topic in ("hockey", "traffic") for m in range(20)]
        CassandraStore(session, WINDOWS_KEYSPACE).write_windows(rows, datetime.now(UTC))
        yield WINDOWS_KEYSPACE, start
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {WINDOWS_KEYSPACE}", timeout=120)
        cluster.shutdown()


def test_query_windows_at_80_columns_shows_whole_windows(windows_keyspace) -> None:
    keyspace, start = windows_keyspace
    window = ["--from", start.isoformat(), "--to", (start + timedelta(minutes=20)).isoformat(),
              "--by", "city,topic", "--keyspace", keyspace]
    as_json = _evilnet("query", "windows", *window, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    records = json.loads(as_json.stdout)
    assert len(records) == 3 * 2 * 20
    table = _evilnet("query", "windows", *window)
    assert table.returncode == 0, table.stderr
    assert all(len(line) <= 80 for line in table.stdout.splitlines())
    assert "…" not in table.stdout
    [header], rows = _table_rows(table.stdout, "┃"), _table_rows(table.stdout)
    assert header == ["city", "topic", "window(UTC)", "tweets", "retweets", "unique_users"]

    def shown(moment: str) -> str:
        return datetime.fromisoformat(moment).strftime("%H:%M")

    expected = [[_squeezed(r["city"]), _squeezed(r["topic"]),
                 f"{shown(r['window_start'])}-{shown(r['window_end'])}",
                 str(r["tweets"]), str(r["retweets"]), str(r["unique_users"])] for r in records]
    if len({r["window_start"][:10] for r in records} | {r["window_end"][:10] for r in records}) > 1:
        expected = [[*row[:2], None, *row[3:]] for row in expected]
        rows = [[*row[:2], None, *row[3:]] for row in rows]
    assert rows == expected


def test_health_json_names_each_target_with_no_address_given(stack) -> None:
    result = _evilnet("health", "cassandra", "--format", "json")
    assert result.returncode == 0, result.stderr
    cassandra = [f"{stack.address(h)}:{stack.var(h, 'cassandra_native_port', 'cassandra')}"
                 for h in stack.groups["cassandra"]]
    assert [(t["target"], t["ok"]) for t in json.loads(result.stdout)] == [
        (address, True) for address in cassandra]


def test_plan_json_is_the_plan_and_writes_nothing_with_check(tmp_path: Path) -> None:
    result = _evilnet("plan", "--cities", "Toronto, Halifax", "--topics", "hockey",
                      "--check", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["written"] is None and report["diff"] is None
    assert sorted(c for s in report["plan"]["shards"] for c in s["cities"]) == [
        "Halifax", "Toronto"]
    assert report["plan"]["inventory"] == "inventories/local"  # ansible.cfg's, found
