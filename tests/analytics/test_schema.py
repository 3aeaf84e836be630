"""The schema: versioned and idempotent migrations, and every CQL statement of the project
runs against the real Cassandra; none needs ALLOW FILTERING."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from analytics_helpers import REPO_ROOT, evilnet
from stack_clients import CASSANDRA_ADMIN, cassandra_connect

from evilnet.schema import (
    MIGRATIONS_DIR,
    SchemaError,
    Statements,
    apply_schema,
    migrations,
    replication_map,
)

pytestmark = pytest.mark.stack

SAMPLE = {"text": "Montréal", "varchar": "Montréal", "int": 60, "bigint": 7,
          "date": date(2024, 6, 1), "timestamp": datetime(2024, 6, 1, 12, 0, tzinfo=UTC),
          "blob": (7).to_bytes(8, "big", signed=True)}


def _value(cql_type):
    if cql_type.typename == "map":
        return {1: 2}
    if cql_type.typename == "list":  # `IN ?` (the dashboards' statements)
        return [_value(cql_type.subtypes[0])]
    return SAMPLE[cql_type.typename]


def _project_cql() -> dict[str, str]:
    """Every statement of the project: the Statements contract and the migrations."""
    statements = {f"Statements.{name}": text for name, text in Statements().all().items()}
    for migration in migrations():
        for index, text in enumerate(migration.statements("evilnet")):
            statements[f"{migration.version:03d}_{migration.name}[{index}]"] = text
    return statements


def test_no_statement_uses_allow_filtering() -> None:
    for name, text in _project_cql().items():
        assert "ALLOW FILTERING" not in text.upper(), name
    # The dashboards' queries (grafana/) too.
    for path in REPO_ROOT.glob("grafana/**/*"):
        if path.is_file() and path.suffix in {".json", ".yml", ".yaml"}:
            assert "ALLOW FILTERING" not in path.read_text("utf-8", "replace").upper(), path


def test_every_statement_runs_against_cassandra(store) -> None:
    session = store.session
    keyspace = store.cql.keyspace
    ran = []
    for name, text in Statements(keyspace).all().items():
        if "{replication}" in text:
            session.execute(text.format(replication=replication_map("dc1", 1)))
        elif "?" not in text:
            session.execute(text)
        else:
            prepared = session.prepare(text)
            session.execute(prepared, [_value(column.type) for column in
                                       prepared.column_metadata])
        ran.append(name)
    assert len(ran) == len(Statements().all()) >= 20
    # What the sample values wrote is read back by the reading statements (the keyspace
    # is the analytics tests': other tests' topics of Montréal may be there too).
    assert "Montréal" in store.topics("Montréal")


def test_schema_apply_is_versioned_and_idempotent(keyspace: str,
                                                  store) -> None:
    # On the inventory's node (cassandra_host's): the command logs in as its admin.
    again = evilnet("schema", "apply", "--keyspace", keyspace)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"keyspace": keyspace, "applied": [],
                                        "versions": [m.version for m in migrations()],
                                        "changed": False}
    rows = list(store.session.execute(
        f"SELECT version, name, checksum FROM {keyspace}.schema_versions WHERE scope = 'schema'"))
    assert [(r.version, r.name, r.checksum) for r in rows] == [
        (m.version, m.name, m.checksum) for m in migrations()]


def test_a_changed_migration_is_refused_and_a_new_one_applied(cassandra_host: str,
                                                              tmp_path: Path) -> None:
    scratch = "evilnet_test_migrations"
    directory = tmp_path / "cql"
    shutil.copytree(MIGRATIONS_DIR, directory)
    known = [m.version for m in migrations()]
    extra = len(known) + 1
    # The admin: the test drops and creates a keyspace of its own.
    cluster, session = cassandra_connect([cassandra_host], role=CASSANDRA_ADMIN)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {scratch}", timeout=120)
        assert [m.version for m in apply_schema(session, scratch, directory=directory)] == known
        (directory / f"{extra:03d}_extra.cql").write_text(
            "-- a later version\n"
            "CREATE TABLE IF NOT EXISTS {keyspace}.extra (k int PRIMARY KEY);\n")
        assert [m.version for m in apply_schema(session, scratch, directory=directory)] == [extra]
        assert apply_schema(session, scratch, directory=directory) == []
        first = directory / "001_init.cql"
        first.write_text(first.read_text() + "\n-- edited after it was applied\n")
        with pytest.raises(SchemaError, match="changed after it was applied"):
            apply_schema(session, scratch, directory=directory)
        (directory / f"{extra + 2:03d}_gap.cql").write_text("SELECT 1;")
        with pytest.raises(SchemaError, match="without gaps"):
            apply_schema(session, scratch, directory=directory)
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {scratch}", timeout=120)
        cluster.shutdown()
