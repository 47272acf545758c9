"""The row-change log (db/counters.py, revision 0014): after an apply, a row edited by SQL is read
and compared by id, not its whole table, and the plan is the full plan; whenever the log does not
account for every write since the record (a TRUNCATE, a log deleted by hand, a write while cplane
applies, SQLite's REPLACE) the table is read whole, and the plan is the same."""

from __future__ import annotations

import re
import threading

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, create_engine, event, text

from control_plane.cli.main import main
from control_plane.db.counters import LOGGED_TABLES, counted_tables
from control_plane.kinds.registry import ROW_KINDS
from control_plane.reconcile import fastpath
from control_plane.reconcile.controller import apply_config, make_plan, prepare
from control_plane.reconcile.incremental import scope
from tests.test_plan_fastpath import shape, statements

KEYWORD = "SeedKeyword"
ALPHA = "test-industry/first/alpha one"


def found_scope(engine, root):
    with engine.connect() as conn:
        prepared = prepare(root)
        return scope(conn, prepared.desired, prepared.kind_digest, None, prepared.box)


def keyword_reads(seen: list[str]) -> list[str]:
    """The statements that selected seed_keywords rows."""
    return [q for q in seen if re.search(r'\bFROM "?seed_keywords"?\b', q)]


def by_row(seen: list[str]) -> bool:
    """seed_keywords was read by id (and counted), never whole."""
    reads = keyword_reads(seen)
    return bool(reads) and all(" IN " in q or "count(" in q.lower() for q in reads)


def both(engine, root):
    """(the plan as cplane makes it, the statements it ran, the full plan): the plans must agree."""
    with statements(engine) as seen:
        incremental = make_plan(engine, root).plan
    full = make_plan(engine, root, fast_path=False).plan
    assert shape(incremental) == shape(full)
    return incremental, list(seen), full


def keyword_id(engine, keyword="alpha one") -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT id FROM seed_keywords WHERE keyword = :k AND account_id IS NULL"),
                            {"k": keyword}).scalar_one()


def log_entries(engine, table="seed_keywords") -> list[tuple[int, int]]:
    """The log's entries of `table`, without PostgreSQL's statement markers (row id 0)."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT version, row_id FROM cplane_row_changes WHERE table_name = :t AND row_id <> 0 "
            "ORDER BY version"), {"t": table})]


def changed_ids(found) -> set[int]:
    return set(found.changed[KEYWORD].ids) - {0}  # (0: PostgreSQL's statement marker)


def test_every_row_kind_table_is_logged_and_migrated_with_its_triggers(migrated_engine):
    assert set(LOGGED_TABLES) == {rk.table_name for rk in ROW_KINDS.values()}
    with migrated_engine.connect() as conn:
        assert set(LOGGED_TABLES) <= counted_tables(conn)
        if conn.dialect.name == "postgresql":
            found = {(t, n) for t, n in conn.execute(text(
                "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE t.tgname LIKE 'cplane_log_changes_%'"))}
            assert {(t, f"cplane_log_changes_{s}") for t in LOGGED_TABLES for s in ("ins", "upd", "del")} <= found


def test_an_apply_logs_nothing_and_a_sql_write_logs_its_rows_with_its_version(applied):
    tree, engine = applied
    assert log_entries(engine) == []  # cplane's own writes are counted, not logged
    row = keyword_id(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE seed_keywords SET search_volume = 7 WHERE id = :i"), {"i": row})
        version = conn.execute(text("SELECT version FROM cplane_change_counters WHERE table_name = 'seed_keywords'")).scalar()
    assert log_entries(engine) == [(version, row)]
    assert apply_config(engine, tree.root, actor="test").applied  # repairs the drift ...
    assert log_entries(engine) == []  # ... and prunes what its record made obsolete
    assert make_plan(engine, tree.root).fast_path


def test_a_keyword_edited_by_sql_is_read_by_row_and_named_as_drift(applied):
    tree, engine = applied
    row = keyword_id(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE seed_keywords SET search_volume = 7 WHERE id = :i"), {"i": row})
    found = found_scope(engine, tree.root)
    assert found is not None and set(found.changed) == {KEYWORD} and changed_ids(found) == {row}
    assert found.keys[KEYWORD] == frozenset({ALPHA})
    plan, seen, full = both(engine, tree.root)
    assert by_row(seen)
    assert [(c.kind, c.name, c.cause) for c in plan.changes] == [(KEYWORD, ALPHA, "drift")]
    # The apply under the lock reads by row too, keeps every row in its run, and records again.
    with statements(engine) as seen:
        assert apply_config(engine, tree.root, actor="test").applied
    assert by_row(seen)
    assert make_plan(engine, tree.root).fast_path


def test_a_keyword_deleted_by_sql_is_recreated(applied):
    tree, engine = applied
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM seed_keywords WHERE keyword = 'alpha one' AND account_id IS NULL"))
    plan, seen, full = both(engine, tree.root)
    assert by_row(seen)
    assert [(c.kind, c.name, str(c.action)) for c in plan.changes] == [(KEYWORD, ALPHA, "create")]
    assert apply_config(engine, tree.root, actor="test").applied
    assert not make_plan(engine, tree.root, fast_path=False).plan.changes


def test_a_keyword_inserted_by_sql_is_listed_unmanaged(applied):
    tree, engine = applied
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO seed_keywords (industry_id, sector_id, keyword, intent, is_active) "
                          "SELECT industry_id, sector_id, 'by sql', 'informational', true FROM seed_keywords "
                          "WHERE keyword = 'alpha one' AND account_id IS NULL"))
    plan, seen, full = both(engine, tree.root)
    assert by_row(seen)
    assert not plan.changes and [u["name"] for u in plan.unmanaged] == ["test-industry/first/by sql"]


def test_a_keyword_renamed_and_another_inserted_with_its_old_name(applied):
    """Two SQL writes whose rows trade a natural key: each read by id, the same plan as in full."""
    tree, engine = applied
    row = keyword_id(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE seed_keywords SET keyword = 'renamed' WHERE id = :i"), {"i": row})
        conn.execute(text("INSERT INTO seed_keywords (industry_id, sector_id, keyword, search_volume, intent, is_active) "
                          "SELECT industry_id, sector_id, 'alpha one', 5, 'informational', true FROM seed_keywords "
                          "WHERE id = :i"), {"i": row})
    plan, seen, full = both(engine, tree.root)
    assert by_row(seen)
    assert plan.unmanaged and plan.changes


def test_a_statement_that_touched_no_row_is_accounted_for(applied):
    """PostgreSQL counts the statement and logs its marker; SQLite counts nothing: by row on both."""
    tree, engine = applied
    row = keyword_id(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE seed_keywords SET search_volume = 7 WHERE id = :i"), {"i": row})
        conn.execute(text("UPDATE seed_keywords SET search_volume = 1 WHERE keyword = 'no such keyword'"))
    found = found_scope(engine, tree.root)
    assert found is not None and changed_ids(found) == {row}
    plan, seen, full = both(engine, tree.root)
    assert by_row(seen) and [(c.kind, c.name, c.cause) for c in plan.changes] == [(KEYWORD, ALPHA, "drift")]


@pytest.mark.parametrize("doubt", ["log-deleted", "sql-while-applying", "truncate", "log-dropped"])
def test_a_write_the_log_does_not_account_for_reads_the_table_whole(applied, doubt):
    tree, engine = applied
    pg = engine.dialect.name == "postgresql"
    row = keyword_id(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE seed_keywords SET search_volume = 7 WHERE id = :i"), {"i": row})
        if doubt == "log-deleted":
            conn.execute(text("DELETE FROM cplane_row_changes"))
        elif doubt == "sql-while-applying":  # a writer that claims to be cplane's apply is not logged
            if pg:
                conn.execute(text("SELECT set_config('cplane.applying', 'on', true)"))
            else:
                conn.execute(text("INSERT INTO cplane_row_changes VALUES ('', 0, 0)"))
            conn.execute(text("UPDATE seed_keywords SET difficulty = 3 WHERE keyword = 'alpha one'"))
            if not pg:
                conn.execute(text("DELETE FROM cplane_row_changes WHERE table_name = ''"))
        elif doubt == "truncate":
            if pg:
                conn.execute(text("TRUNCATE seed_keywords CASCADE"))
            else:  # (SQLite: no TRUNCATE; a DELETE of every row logs every row: more than the share read by id)
                conn.execute(text("DELETE FROM seed_keywords"))
        elif doubt == "log-dropped":
            conn.execute(text("DROP TABLE cplane_row_changes"))
            if not pg:  # SQLite's triggers would fail without it: back to the counting triggers alone
                from control_plane.db import counters

                counters.uninstall_row_log(conn, LOGGED_TABLES)
            conn.execute(text("UPDATE seed_keywords SET difficulty = 3 WHERE keyword = 'alpha one'"))
    found = found_scope(engine, tree.root)
    assert found is not None and KEYWORD in found.full and KEYWORD not in found.changed and KEYWORD not in found.keys
    plan, seen, full = both(engine, tree.root)
    assert keyword_reads(seen) and not by_row(seen)
    assert plan.changes


def test_a_row_deleted_without_its_delete_trigger_is_caught_by_the_count(applied):
    """SQLite's REPLACE deletes the rows it conflicts with without firing delete triggers: the log
    names only the row inserted, and the count of the table tells that one more went."""
    tree, engine = applied
    if engine.dialect.name != "sqlite":
        pytest.skip("REPLACE is SQLite's")
    with engine.begin() as conn:
        first, second = conn.execute(text("SELECT id FROM seed_keywords WHERE account_id IS NULL ORDER BY id LIMIT 2")).scalars()
        # Takes the second row's id and the first row's natural key: both rows go, one comes.
        conn.execute(text("INSERT OR REPLACE INTO seed_keywords (id, industry_id, sector_id, keyword, intent, is_active, "
                          "created_at, updated_at) SELECT :second, industry_id, sector_id, keyword, 'informational', true, "
                          "created_at, updated_at FROM seed_keywords WHERE id = :first"), {"first": first, "second": second})
    plan, seen, full = both(engine, tree.root)
    assert keyword_reads(seen) and not by_row(seen)


def test_concurrent_sql_writers_are_both_logged(applied):
    """Two SQL transactions on the same table: the second waits on the counter's row lock (PostgreSQL)
    or the database lock (SQLite); either way each write has its version and its rows."""
    tree, engine = applied
    rows = [keyword_id(engine), keyword_id(engine, "beta two")] if _has(engine, "beta two") else None
    if rows is None:
        rows = list(_two_ids(engine))
    other = create_engine(engine.url)
    try:
        with engine.begin() as first:
            first.execute(text("UPDATE seed_keywords SET search_volume = 11 WHERE id = :i"), {"i": rows[0]})
            errors: list[BaseException] = []

            def second() -> None:
                try:
                    with other.begin() as conn:
                        conn.execute(text("UPDATE seed_keywords SET search_volume = 12 WHERE id = :i"), {"i": rows[1]})
                except BaseException as e:  # noqa: BLE001 - reported below
                    errors.append(e)

            if engine.dialect.name == "postgresql":
                thread = threading.Thread(target=second)
                thread.start()
        if engine.dialect.name == "postgresql":
            thread.join()
            assert not errors
        else:
            second()
    finally:
        other.dispose()
    found = found_scope(engine, tree.root)
    assert found is not None and changed_ids(found) == set(rows)
    plan, seen, full = both(engine, tree.root)
    assert by_row(seen) and len(plan.changes) == 2


def test_a_sql_write_during_an_apply_leaves_no_record_and_the_next_plan_is_right(applied, monkeypatch):
    tree, engine = applied
    tree.test_plan(price="31")
    other = create_engine(engine.url)
    lock = fastpath.Recorder.lock

    def write_then_lock(self, conn):
        with other.begin() as writer:  # commits before the apply locks the counters
            writer.execute(text("UPDATE seed_keywords SET search_volume = 9 WHERE keyword = 'alpha one'"))
        lock(self, conn)

    monkeypatch.setattr(fastpath.Recorder, "lock", write_then_lock)
    try:
        assert apply_config(engine, tree.root, actor="test").applied
    finally:
        other.dispose()
    monkeypatch.setattr(fastpath.Recorder, "lock", lock)
    with engine.connect() as conn:
        assert fastpath.read_record(conn) is None
    plan, seen, full = both(engine, tree.root)
    assert [(c.kind, c.name, c.cause) for c in plan.changes] == [(KEYWORD, ALPHA, "drift")]


def _has(engine, keyword: str) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text("SELECT 1 FROM seed_keywords WHERE keyword = :k"), {"k": keyword}).first())


def _two_ids(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT id FROM seed_keywords WHERE account_id IS NULL ORDER BY id LIMIT 2")).scalars().all()


def test_the_cplane_plan_command_reads_the_drifted_row_only(applied):
    """The CLI asks the record first itself, then makes the plan incrementally (not in full), and
    `--no-fast-path` still reads every row."""
    tree, engine = applied
    with engine.begin() as conn:
        conn.execute(text("UPDATE seed_keywords SET search_volume = 7 WHERE keyword = 'alpha one'"))
    url = engine.url.render_as_string(hide_password=False)
    outputs = {}
    for args in ([], ["--no-fast-path"]):
        seen: list[str] = []

        def record(conn, cursor, statement, parameters, context, executemany, seen=seen):
            seen.append(statement)

        event.listen(Engine, "before_cursor_execute", record)
        try:
            result = CliRunner().invoke(main, ["plan", *args, "--config", str(tree.root), "--database-url", url],
                                        catch_exceptions=False)
        finally:
            event.remove(Engine, "before_cursor_execute", record)
        assert result.exit_code == 0, result.output
        outputs[bool(args)] = (result.output, by_row(seen))
    assert outputs[False][1] and not outputs[True][1]
    assert outputs[False][0] == outputs[True][0] and f"~ {KEYWORD}/{ALPHA}" in outputs[False][0]
