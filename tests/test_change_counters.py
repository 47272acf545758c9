"""Change counters move on every write to a counted table, by SQL too, and on nothing else."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from control_plane.db import counters
from control_plane.kinds.registry import ROW_KINDS


def test_every_table_a_plan_reads_is_counted():
    tables = {rk.table_name for rk in ROW_KINDS.values()}
    assert tables - set(counters.COUNTED_TABLES) == set(), "system tables without change counters"


def test_a_migrated_database_counts_every_counted_table(migrated_engine):
    with migrated_engine.connect() as conn:
        assert set(counters.COUNTED_TABLES) - counters.counted_tables(conn) == set()
        assert set(counters.versions(conn)) == set(counters.COUNTED_TABLES)


def _version(engine, table: str) -> int:
    with engine.connect() as conn:
        return counters.versions(conn, [table])[table]


def _run(engine, sql: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql))


def test_insert_update_delete_by_sql_move_the_version_and_reads_do_not(migrated_engine):
    engine = migrated_engine
    start = _version(engine, "permissions")
    other = _version(engine, "roles")
    _run(engine, "INSERT INTO permissions (codename, name, description) VALUES ('x:read', 'X', '')")
    after_insert = _version(engine, "permissions")
    assert after_insert > start
    _run(engine, "UPDATE permissions SET name = 'Y' WHERE codename = 'x:read'")
    after_update = _version(engine, "permissions")
    assert after_update > after_insert
    _run(engine, "SELECT count(*) FROM permissions")
    assert _version(engine, "permissions") == after_update
    _run(engine, "DELETE FROM permissions")
    assert _version(engine, "permissions") > after_update
    assert _version(engine, "roles") == other, "a write to one table moved another's counter"


def test_a_rolled_back_write_leaves_the_version(migrated_engine):
    engine = migrated_engine
    start = _version(engine, "permissions")
    with engine.connect() as conn:
        conn.execute(text("INSERT INTO permissions (codename, name, description) VALUES ('x:read', 'X', '')"))
        conn.rollback()
    assert _version(engine, "permissions") == start


def test_truncate_moves_the_version_on_postgresql(pg_engine):
    start = _version(pg_engine, "seed_keywords")
    _run(pg_engine, "TRUNCATE seed_keywords CASCADE")
    assert _version(pg_engine, "seed_keywords") > start


def test_versions_start_apart_in_two_databases(db_url, engine_for, tmp_path):
    """A database created again does not repeat the versions a client cached (random start)."""
    from control_plane.db.engine import upgrade

    first = engine_for(db_url)
    upgrade(first)
    second = engine_for(f"sqlite:///{tmp_path / 'second.db'}")
    upgrade(second)
    with first.connect() as a, second.connect() as b:
        assert counters.versions(a) != counters.versions(b)


@pytest.mark.parametrize("table", ["plans", "global_ai_prompts"])
def test_unmigrated_database_has_no_versions(tmp_path, engine_for, table):
    engine = engine_for(f"sqlite:///{tmp_path / 'empty.db'}")
    with engine.connect() as conn:
        assert counters.versions(conn, [table]) is None
