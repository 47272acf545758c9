"""Tenants' writes to their own rows of a mixed table (seed_keywords, ai_integration_settings: rows
with account_id set) are not system data: the row-change log names no row for them (revision 0016),
so on PostgreSQL a plan after such writes still answers `No changes` from the record without
reading a row, and any write that touches a system row still sends it the full way and names the
drift. On SQLite the log carries markers only too, but its REPLACE can remove a system row unseen,
so its plan reads the table (and agrees)."""

from __future__ import annotations

import uuid

from sqlalchemy import Uuid, bindparam, text

from control_plane.db.models.user import Account
from control_plane.reconcile.controller import apply_config, make_plan
from tests.test_plan_fastpath import fast_both, plan_both, statements


def _account(conn) -> uuid.UUID:
    account = uuid.uuid4()
    conn.execute(Account.__table__.insert().values(id=account, name="Tenant", slug=f"t-{account.hex[:8]}"))
    return account


def _tenant_keywords(conn, account, words):
    industry, sector = conn.execute(text(
        "SELECT industry_id, id FROM industry_sectors ORDER BY id LIMIT 1")).one()
    for word in words:
        conn.execute(text("INSERT INTO seed_keywords (account_id, industry_id, sector_id, keyword, intent, is_active) "
                          "VALUES (:a, :i, :s, :k, 'informational', true)").bindparams(bindparam("a", type_=Uuid)),
                     {"a": account, "i": industry, "s": sector, "k": word})


def _log(conn, table="seed_keywords") -> list[int]:
    return [int(r) for r in conn.execute(text("SELECT row_id FROM cplane_row_changes WHERE table_name = :t"),
                                         {"t": table}).scalars()]


def test_tenant_writes_leave_the_plan_on_the_fast_path(applied):
    tree, engine = applied
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        account = _account(conn)
        _tenant_keywords(conn, account, ["tenant one", "tenant two"])
        conn.execute(text("UPDATE seed_keywords SET search_volume = 5 WHERE account_id IS NOT NULL"))
        conn.execute(text("DELETE FROM seed_keywords WHERE keyword = 'tenant two' AND account_id IS NOT NULL"))
    with engine.connect() as conn:
        assert set(_log(conn)) == {0}  # the writes are accounted for; none names a row
    fast, full = plan_both(engine, tree.root)  # (the two agree, and so does the raw-driver path)
    assert not full.changes
    assert fast.fast_path is postgres
    # A no-op apply writes nothing and the next plan still holds (on SQLite: once it has re-recorded).
    assert apply_config(engine, tree.root, actor="test").applied is False
    assert fast_both(engine, tree.root)

    # A write that touches a system row beside tenant rows: the full way, the drift named.
    with engine.begin() as conn:
        conn.execute(text("UPDATE seed_keywords SET search_volume = 7 "
                          "WHERE keyword IN ('tenant one', 'alpha one')"))
        system_id = conn.execute(text("SELECT id FROM seed_keywords WHERE keyword = 'alpha one' "
                                      "AND account_id IS NULL")).scalar_one()
        assert system_id in _log(conn)
    fast, full = plan_both(engine, tree.root)
    assert not fast.fast_path
    assert [(c.kind, c.name, c.cause) for c in full.changes] == [
        ("SeedKeyword", "test-industry/first/alpha one", "drift")]


def test_a_tenant_write_to_the_other_mixed_table_is_quiet_too(applied):
    tree, engine = applied
    with engine.begin() as conn:
        account = _account(conn)
        names = ", ".join(k for k in conn.execute(text("SELECT * FROM ai_integration_settings LIMIT 1")).keys()
                          if k not in ("id", "account_id"))
        conn.execute(text(f"INSERT INTO ai_integration_settings (account_id, {names}) SELECT :account, {names} "
                          "FROM ai_integration_settings WHERE account_id IS NULL LIMIT 1")
                     .bindparams(bindparam("account", type_=Uuid)), {"account": account})
        assert set(_log(conn, "ai_integration_settings")) == {0}
    fast, full = plan_both(engine, tree.root)
    assert not full.changes
    assert fast.fast_path is (engine.dialect.name == "postgresql")


def test_make_plan_reads_no_seed_keyword_after_tenant_writes(applied):
    """The incremental plan (SQLite's way here, and PostgreSQL's with --no-fast-path's sibling,
    the incremental read) reads no seed keyword row for tenants' writes: the log names none."""
    tree, engine = applied
    with engine.begin() as conn:
        _tenant_keywords(conn, _account(conn), ["tenant three"])
    with statements(engine) as seen:
        result = make_plan(engine, tree.root)
    assert not result.plan.changes
    reads = [q for q in seen if "FROM seed_keywords" in q.replace('"', "")]
    assert all(" IN " in q or "count(" in q.lower() for q in reads), reads


def test_the_tenant_columns_are_the_registrys_system_rows():
    """db/counters.TENANT_COLUMNS (which the triggers filter on) says what the registry says."""
    from control_plane.db.counters import LOGGED_TABLES, TENANT_COLUMNS
    from control_plane.kinds import conditions
    from control_plane.kinds.registry import ROW_KINDS

    mixed = {rk.table_name: rk.system_rows for rk in ROW_KINDS.values()
             if rk.system_rows is not None and rk.table_name in LOGGED_TABLES}
    assert set(mixed) == set(TENANT_COLUMNS)
    for table, condition in mixed.items():
        assert condition == conditions.parse({"column": TENANT_COLUMNS[table], "op": "isNull"}), table


def test_tenant_markers_do_not_pile_up(applied, monkeypatch):
    """Past QUIET_RANGE_MAX versions since the record the fast path defers to the plan, whose no-op
    apply records the state again and prunes the log: the markers are bounded."""
    from control_plane.db import raw

    tree, engine = applied
    monkeypatch.setattr(raw, "QUIET_RANGE_MAX", 3)
    with engine.begin() as conn:
        account = _account(conn)
    for i in range(5):  # five statements, five versions
        with engine.begin() as conn:
            _tenant_keywords(conn, account, [f"tenant {i}"])
    with engine.connect() as conn:
        assert len(_log(conn)) == 5
    fast, full = plan_both(engine, tree.root)
    assert not fast.fast_path and not full.changes
    assert apply_config(engine, tree.root, actor="test").applied is False
    with engine.connect() as conn:
        assert _log(conn) == []
    assert fast_both(engine, tree.root)
