"""The incremental plan (reconcile/incremental.py): after an apply, a plan reads and compares only
the tables whose desired or live side changed, and the plan is the full plan."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from control_plane.apply.run_rows import read_run_rows
from control_plane.kinds.registry import ROW_KINDS
from control_plane.reconcile.controller import apply_config, make_plan, prepare
from control_plane.reconcile.incremental import scope
from tests.test_plan_fastpath import SECRETS, shape, statements

ALWAYS_READ = {rk.table_name for rk in ROW_KINDS.values() if rk.secret_columns}  # a handful of rows


@pytest.fixture
def applied(config_tree, migrated_engine, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    assert apply_config(migrated_engine, config_tree.root, actor="test").applied
    return config_tree, migrated_engine


def tables_read(seen: list[str]) -> set[str]:
    """The system tables whose rows were selected (any column)."""
    names = "|".join(sorted({rk.table_name for rk in ROW_KINDS.values()}))
    pattern = re.compile(r'\bFROM\s+"?(' + names + r')"?\b', re.I)
    return {m.group(1) for s in seen for m in pattern.finditer(s)}


def both(engine, root):
    """(the plan as cplane makes it, the full plan): they must be the same."""
    incremental = make_plan(engine, root).plan
    full = make_plan(engine, root, fast_path=False).plan
    assert shape(incremental) == shape(full)
    return incremental, full


def test_a_one_table_sql_edit_reads_only_that_table(applied):
    tree, engine = applied
    with engine.begin() as conn:
        conn.execute(text("UPDATE plans SET name = 'Drifted' WHERE slug = 'test-plan'"))
    with statements(engine) as seen:
        result = make_plan(engine, tree.root)
    assert not result.fast_path
    assert tables_read(seen) == {"plans"} | ALWAYS_READ
    managed = [s for s in seen if re.search(r"\bFROM cplane_managed_objects\b", s)]
    assert managed and all("IN" in s for s in managed)  # only the managed records of the kinds read
    with statements(engine) as seen_full:
        full = make_plan(engine, tree.root, fast_path=False)
    assert {"seed_keywords", "industries", "roles"} <= tables_read(seen_full)
    assert shape(result.plan) == shape(full.plan)
    assert [(c.kind, c.name, c.cause) for c in result.plan.changes] == [("Plan", "test-plan", "drift")]


def test_a_config_edit_reads_its_kind_and_what_descends_from_it(applied):
    tree, engine = applied
    tree.test_industry(sector="renamed")
    with engine.connect() as conn:
        prepared = prepare(tree.root)
        found = scope(conn, prepared.desired, prepared.kind_digest, None, prepared.box)
        kinds = found.full if found is not None else None
    # The sector rows changed (and their keywords with them); industries themselves did not.
    assert kinds is not None and {"IndustrySector", "SeedKeyword"} <= kinds
    assert "Industry" not in kinds and "Role" not in kinds
    both(engine, tree.root)


def volumes(tree, volume: int) -> None:
    """The test industry with only a keyword's search volume edited (no sector changes)."""
    path = tree.root / "industries" / "test-industry.yaml"
    path.write_text(re.sub(r"searchVolume: \d+", f"searchVolume: {volume}", path.read_text()))


def test_a_keyword_edit_reads_only_that_row(applied):
    tree, engine = applied
    volumes(tree, 101)
    with engine.connect() as conn:
        prepared = prepare(tree.root)
        found = scope(conn, prepared.desired, prepared.kind_digest, None, prepared.box)
    assert found is not None and found.keys == {"SeedKeyword": frozenset({"test-industry/first/alpha one"})}
    assert "IndustrySector" not in found.full
    with statements(engine) as seen:
        plan, _ = both(engine, tree.root)
    keywords = [q for q in seen[: len(seen) // 2] if re.search(r"\bFROM seed_keywords\b", q)]
    assert keywords and all(" IN " in q for q in keywords)
    assert [(c.kind, c.name, c.cause) for c in plan.changes] == [
        ("SeedKeyword", "test-industry/first/alpha one", "config")]
    result = apply_config(engine, tree.root, actor="test")
    assert result.applied
    with engine.connect() as conn:
        kept = read_run_rows(conn, result.apply_run_id)
    assert sorted(kept["SeedKeyword"]) == sorted(prepared.desired.rows["SeedKeyword"])
    assert make_plan(engine, tree.root).fast_path


def test_an_incremental_apply_keeps_every_row_in_its_run_and_records_again(applied):
    tree, engine = applied
    tree.test_plan(price="23")
    result = apply_config(engine, tree.root, actor="test")
    assert result.applied and [c.name for c in result.plan.changes] == ["test-plan"]
    prepared = prepare(tree.root)
    with engine.connect() as conn:
        kept = read_run_rows(conn, result.apply_run_id)
        assert scope(conn, prepared.desired, prepared.kind_digest, None, prepared.box).full == frozenset(
            k for k, rk in ROW_KINDS.items() if rk.secret_columns)
    assert {k: sorted(v) for k, v in kept.items() if v} == {
        k: sorted(v) for k, v in prepared.desired.rows.items() if v}
    assert kept["Plan"]["test-plan"]["values"]["price_monthly"] == 23
    assert make_plan(engine, tree.root).fast_path


def test_an_older_record_without_tables_reads_everything(applied):
    tree, engine = applied
    with engine.begin() as conn:
        conn.execute(text("UPDATE cplane_applied_state SET tables = NULL"))
        conn.execute(text("UPDATE plans SET name = 'Drifted' WHERE slug = 'test-plan'"))
    with statements(engine) as seen:
        both(engine, tree.root)
    assert "seed_keywords" in tables_read(seen)


EDITS = st.lists(st.sampled_from([
    "price", "sector", "keywords", "volume", "remove-plan", "restore-plan", "sql-update", "sql-revert", "sql-insert",
    "sql-delete", "sql-keyword", "sql-keyword-insert", "sql-keyword-none", "secret", "apply",
]), min_size=1, max_size=6)

KEYWORDS = """\
apiVersion: cplane/v1
kind: Industry
metadata:
  name: test-industry
spec:
  displayName: Test Industry
  sectors:
    - name: first
      displayName: First Sector
      seedKeywords:
        - keyword: alpha one
          searchVolume: {volume}
        - keyword: gamma {step}
"""


# No shrinking: each example is a few whole plans and applies on a real database.
@settings(max_examples=8, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate),
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS)
def test_incremental_and_full_plans_agree_on_random_edits(applied, monkeypatch, edits):
    tree, engine = applied
    for step, edit in enumerate(edits):
        if edit == "price":
            tree.test_plan(price=str(20 + step))
        elif edit == "sector":
            tree.test_industry(sector=f"s{step}")
        elif edit == "volume":
            volumes(tree, 100 + step)
        elif edit == "keywords":
            tree.write("industries/test-industry.yaml", KEYWORDS.format(volume=100 + step, step=step))
        elif edit == "remove-plan":
            if (tree.root / "plans" / "test-plan.yaml").exists():
                tree.remove("plans/test-plan.yaml")
        elif edit == "restore-plan":
            tree.test_plan()
        elif edit in ("sql-update", "sql-revert"):
            with engine.begin() as conn:
                name = "Drifted" if edit == "sql-update" else "Test Plan"
                conn.execute(text("UPDATE plans SET name = :n WHERE slug = 'test-plan'"), {"n": name})
        elif edit == "sql-insert":
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO permissions (codename, name, description) "
                                  "SELECT 'sql.inserted', 'By SQL', '' WHERE NOT EXISTS "
                                  "(SELECT 1 FROM permissions WHERE codename = 'sql.inserted')"))
        elif edit == "sql-delete":
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM permissions WHERE codename = 'sql.inserted'"))
                conn.execute(text("DELETE FROM seed_keywords WHERE keyword = 'alpha one'"))
        elif edit == "sql-keyword":
            with engine.begin() as conn:
                conn.execute(text("UPDATE seed_keywords SET search_volume = COALESCE(search_volume, 0) + 1 "
                                  "WHERE keyword = 'alpha one'"))
        elif edit == "sql-keyword-insert":  # an unmanaged keyword, read by row (the row-change log)
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO seed_keywords (industry_id, sector_id, keyword, intent, is_active) "
                                  "SELECT industry_id, sector_id, 'by sql', 'informational', true FROM seed_keywords "
                                  "WHERE keyword = 'alpha one' AND account_id IS NULL AND NOT EXISTS "
                                  "(SELECT 1 FROM seed_keywords WHERE keyword = 'by sql')"))
        elif edit == "sql-keyword-none":  # a statement that touches no row (its marker, on PostgreSQL)
            with engine.begin() as conn:
                conn.execute(text("UPDATE seed_keywords SET difficulty = 1 WHERE keyword = 'no such keyword'"))
        elif edit == "secret":
            monkeypatch.setenv("OPENAI_API_KEY", f"oa_{step}")
        else:
            apply_config(engine, tree.root, actor="test")
        both(engine, tree.root)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM permissions WHERE codename = 'sql.inserted'"))
        conn.execute(text("DELETE FROM seed_keywords WHERE keyword = 'by sql'"))
    apply_config(engine, tree.root, actor="test")
    # (Not always the no-change fast path: a managed row deleted by SQL leaves a record that the
    # apply's exactness check does not vouch for, so the next plans stay full. Still equal.)
    incremental, full = both(engine, tree.root)
    assert not full.changes
