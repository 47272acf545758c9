"""The apply of a plan made earlier reads the kinds the plan changes (reconcile/saved.py), and the
run it records still reads back as every row the database holds, on both backends."""

from __future__ import annotations

import json

from sqlalchemy import text

from control_plane.apply import run_rows
from control_plane.apply.run_rows import post_state, read_run_rows
from control_plane.kinds.registry import ROW_KINDS
from control_plane.plans.model import Plan
from control_plane.reconcile.controller import apply_config, apply_plan, make_plan
from control_plane.secrets import SecretBox
from control_plane.state.live import read_live
from control_plane.state.rows import row_fingerprint
from tests.test_plan_fastpath import statements
from tests.test_plan_incremental import ALWAYS_READ, stored_run, tables_read, volumes

# Besides the kinds a keyword plan changes: the tables whose ids and natural keys its references
# are mapped through (a keyword names its sector, a sector its industry).
KEYWORD_TABLES = {"seed_keywords", "industry_sectors", "industries"}


def every_row(engine) -> dict:
    """The run rows a full read of the database gives now, as `comparable` shows them."""
    with engine.connect() as conn:
        return comparable(post_state(Plan(), read_live(conn, SecretBox(None, engine.url))), engine)


def recorded(engine, run_id: int) -> dict:
    """The run's rows as `comparable` shows them; the count stored beside them is theirs."""
    with engine.connect() as conn:
        state = read_run_rows(conn, run_id)
        count = conn.execute(text("SELECT row_count FROM cplane_run_rows WHERE run_id = :r"), {"r": run_id}).scalar_one()
    assert count == sum(len(rows) for rows in state.values())
    return comparable(state, engine)


def comparable(state, engine) -> dict:
    """Per kind and key: the row's fingerprint (its managed columns, canonically: a record made from
    a plan's values holds columns a read of the table leaves out), secret references, prevent_destroy."""
    box = SecretBox(None, engine.url)
    return {kind: {key: (row_fingerprint(ROW_KINDS[kind], entry["values"], box), json.dumps(entry["secret_refs"], sort_keys=True),
                         bool(entry["prevent_destroy"])) for key, entry in rows.items()}
            for kind, rows in state.items() if rows}


def last_run(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT max(run_id) FROM cplane_run_rows")).scalar_one()


def test_a_saved_plan_reads_what_it_changes_and_its_run_refers_to_the_base(applied):
    tree, engine = applied
    base = last_run(engine)
    volumes(tree, 150)
    plan = make_plan(engine, tree.root).plan
    assert [c.kind for c in plan.changes] == ["SeedKeyword"]
    with statements(engine) as seen:
        result = apply_plan(engine, plan, environment=None, actor="test", saved=True)
    assert result.applied
    read = tables_read(seen)
    assert "seed_keywords" in read and read <= KEYWORD_TABLES | ALWAYS_READ, read
    assert not {"plans", "global_ai_prompts", "roles", "system_settings"} & read
    keyword_reads = [s for s in seen if "FROM seed_keywords" in s]
    assert keyword_reads and all(" IN " in s for s in keyword_reads)  # by id: the rows it names
    stored = stored_run(engine, result.apply_run_id)
    assert stored["format"] == 3 and stored["base"] == base
    assert "Plan" in stored["from_base"] and stored["from_base"]["SeedKeyword"] == []
    assert list(stored["kinds"]["SeedKeyword"]["keys"]) == ["test-industry/first/alpha one"]
    assert recorded(engine, result.apply_run_id) == every_row(engine)


def test_creates_and_deletes_of_a_kind_read_by_key(applied):
    tree, engine = applied
    path = tree.root / "industries" / "test-industry.yaml"
    path.write_text(path.read_text().replace("        - keyword: alpha two\n", "        - keyword: alpha three\n"))
    plan = make_plan(engine, tree.root).plan
    assert sorted((c.action, c.name) for c in plan.changes) == [
        ("create", "test-industry/first/alpha three"), ("delete", "test-industry/first/alpha two")]
    result = apply_plan(engine, plan, environment=None, actor="test", saved=True)
    stored = stored_run(engine, result.apply_run_id)
    assert stored["format"] == 3 and stored["from_base"]["SeedKeyword"] == ["test-industry/first/alpha two"]
    assert recorded(engine, result.apply_run_id) == every_row(engine)
    with engine.connect() as conn:
        kept = read_run_rows(conn, result.apply_run_id)
    assert "test-industry/first/alpha three" in kept["SeedKeyword"]
    assert "test-industry/first/alpha two" not in kept["SeedKeyword"]


def test_a_kind_edited_by_sql_after_the_plan_is_read_and_recorded_as_it_is(applied):
    tree, engine = applied
    volumes(tree, 151)
    plan = make_plan(engine, tree.root).plan
    with engine.begin() as conn:  # not in the plan: the run must still record the table as it is now
        conn.execute(text("UPDATE plans SET name = 'Edited by SQL' WHERE slug = 'test-plan'"))
    with statements(engine) as seen:
        result = apply_plan(engine, plan, environment=None, actor="test", saved=True)
    assert "plans" in tables_read(seen)
    assert stored_run(engine, result.apply_run_id)["format"] == 3
    with engine.connect() as conn:
        kept = read_run_rows(conn, result.apply_run_id)
    assert kept["Plan"]["test-plan"]["values"]["name"] == "Edited by SQL"
    assert recorded(engine, result.apply_run_id) == every_row(engine)


def test_a_run_that_cannot_refer_to_its_base_stores_every_row(applied, monkeypatch):
    tree, engine = applied
    monkeypatch.setattr(run_rows, "MAX_DEPTH", 0)  # every base is "too deep": the rows are read
    volumes(tree, 152)
    plan = make_plan(engine, tree.root).plan
    result = apply_plan(engine, plan, environment=None, actor="test", saved=True)
    assert stored_run(engine, result.apply_run_id)["format"] == 2
    assert recorded(engine, result.apply_run_id) == every_row(engine)


def test_without_a_record_to_trust_everything_is_read(applied):
    tree, engine = applied
    with engine.begin() as conn:  # a write to the bookkeeping: the record vouches for nothing
        conn.execute(text("UPDATE cplane_managed_objects SET fingerprint = fingerprint WHERE kind = 'Plan'"))
    volumes(tree, 153)
    plan = make_plan(engine, tree.root).plan
    with statements(engine) as seen:
        result = apply_plan(engine, plan, environment=None, actor="test", saved=True)
    assert {"plans", "global_ai_prompts", "roles"} <= tables_read(seen)
    assert stored_run(engine, result.apply_run_id)["format"] == 2
    assert recorded(engine, result.apply_run_id) == every_row(engine)


def test_a_saved_plan_after_a_saved_plan_still_records_every_row(applied):
    """The second apply's record is the first's (which a saved apply leaves as it was): the kinds
    the first wrote moved since, so they are read; the others still come from the base."""
    tree, engine = applied
    volumes(tree, 154)
    apply_plan(engine, make_plan(engine, tree.root).plan, environment=None, actor="test", saved=True)
    tree.test_plan(price="23")
    plan = make_plan(engine, tree.root).plan
    assert {c.kind for c in plan.changes} == {"Plan"}
    with statements(engine) as seen:
        result = apply_plan(engine, plan, environment=None, actor="test", saved=True)
    assert {"plans", "seed_keywords"} <= tables_read(seen)
    assert recorded(engine, result.apply_run_id) == every_row(engine)
    again = apply_config(engine, tree.root, actor="test")  # and the next plan agrees: nothing to do
    assert not again.applied
