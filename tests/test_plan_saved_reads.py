"""The apply of a plan made earlier reads the kinds the plan changes (reconcile/saved.py), the run it
records still reads back as every row the database holds, and a saved plan's apply leaves the
fast path's record when nothing moved since the plan (fastpath.PlannedRecorder), on both backends."""

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
from tests.test_plan_fastpath import drift_named, fast_both, rows_read, statements
from tests.test_plan_incremental import ALWAYS_READ, both, stored_run, tables_read, volumes

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


# --- what a saved plan's apply records for the fast path ----------------------------------------------


def saved(engine, root, tmp_path, name="plan.json"):
    """`cplane plan --out` as the CLI makes it (the draft of its record included), read back."""
    from control_plane.plans.planfile import read_plan, write_plan

    plan = make_plan(engine, root, record=True).plan
    path = tmp_path / name
    write_plan(plan, path)
    return read_plan(path)


def test_after_a_saved_plan_the_next_plan_takes_the_fast_path(applied, tmp_path):
    tree, engine = applied
    volumes(tree, 160)
    plan = saved(engine, tree.root, tmp_path)
    assert plan.record is not None and plan.record["versions"]
    assert apply_plan(engine, plan, environment=None, actor="test", saved=True).applied
    with statements(engine) as seen:
        after = make_plan(engine, tree.root)
    assert after.fast_path and not after.plan.changes
    assert rows_read(seen) == [], rows_read(seen)
    assert fast_both(engine, tree.root)
    # And the record vouches for exactly that state: an edit by SQL, or to the config, is seen.
    drift_rows = "UPDATE seed_keywords SET search_volume = 7 WHERE keyword = 'beta one'"
    with engine.begin() as conn:
        conn.execute(text(drift_rows))
    drift_named(engine, tree.root, "SeedKeyword", "test-industry/second/beta one")
    volumes(tree, 161)
    both(engine, tree.root)


def test_a_saved_plan_whose_tables_moved_since_records_nothing(applied, tmp_path):
    tree, engine = applied
    volumes(tree, 162)
    plan = saved(engine, tree.root, tmp_path)
    with engine.connect() as conn:
        before = conn.execute(text("SELECT apply_run_id, versions FROM cplane_applied_state")).one()
    with engine.begin() as conn:  # another table moved between the plan and its apply
        conn.execute(text("UPDATE plans SET name = 'Edited by SQL' WHERE slug = 'test-plan'"))
    assert apply_plan(engine, plan, environment=None, actor="test", saved=True).applied
    with engine.connect() as conn:  # the last record stays: it still vouches for what did not move
        assert conn.execute(text("SELECT apply_run_id, versions FROM cplane_applied_state")).one() == before
    drift_named(engine, tree.root, "Plan", "test-plan")


def test_a_plan_that_read_moving_tables_carries_no_record(applied, monkeypatch, tmp_path):
    """The draft is made only when no plan table moved while the plan read."""
    from control_plane.reconcile import fastpath

    tree, engine = applied
    volumes(tree, 163)
    real = fastpath.Recorder.start

    def start_then_write(self, conn):
        real(self, conn)
        with engine.begin() as other:
            other.execute(text("UPDATE plans SET name = 'Meanwhile' WHERE slug = 'test-plan'"))

    monkeypatch.setattr(fastpath.Recorder, "start", start_then_write)
    plan = make_plan(engine, tree.root, record=True).plan
    assert plan.changes and plan.record is None


def test_the_record_of_a_saved_plan_is_part_of_its_digest(applied, tmp_path):
    import pytest

    from control_plane.plans.planfile import read_plan

    tree, engine = applied
    volumes(tree, 164)
    path = tmp_path / "plan.json"
    saved(engine, tree.root, tmp_path)
    data = json.loads(path.read_text())
    data["record"]["inputs_digest"] = "sha256:" + "0" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(Exception, match="digest"):
        read_plan(path)


def test_plan_out_then_apply_the_file_then_plan_says_no_changes(applied, tmp_path):
    """The reviewed workflow from the command line, as docs/gitops.md runs it."""
    from click.testing import CliRunner
    from helpers import libpq_url

    from control_plane.cli.main import main

    tree, engine = applied
    url = libpq_url(engine) if engine.dialect.name == "postgresql" else engine.url.render_as_string(hide_password=False)
    common = ["--config", str(tree.root), "--database-url", url]
    volumes(tree, 165)
    out = tmp_path / "reviewed.json"
    made = CliRunner().invoke(main, ["plan", "--out", str(out), *common], catch_exceptions=False)
    assert made.exit_code == 0, made.output
    assert len(json.loads(out.read_text())["record"]["inputs_digest"]) == 64  # (a SHA-256, hex)
    applied_file = CliRunner().invoke(main, ["apply", str(out), *common], catch_exceptions=False)
    assert applied_file.exit_code == 0 and "Apply complete." in applied_file.output, applied_file.output
    with statements(engine) as seen:
        again = make_plan(engine, tree.root)
    assert again.fast_path and not again.plan.changes and rows_read(seen) == []


def test_a_saved_no_change_plan_applies_as_nothing_to_do(applied, tmp_path):
    """`plan --out` answered by the fast path (no parse, so no policies' digest) applies as `No
    changes`, not as a plan whose policies changed."""
    from click.testing import CliRunner
    from helpers import libpq_url

    from control_plane.cli.main import main

    tree, engine = applied
    url = libpq_url(engine) if engine.dialect.name == "postgresql" else engine.url.render_as_string(hide_password=False)
    common = ["--config", str(tree.root), "--database-url", url]
    out = tmp_path / "nothing.json"
    made = CliRunner().invoke(main, ["plan", "--out", str(out), *common], catch_exceptions=False)
    assert made.exit_code == 0 and "No changes." in made.output, made.output
    assert json.loads(out.read_text())["policies_digest"] == ""
    done = CliRunner().invoke(main, ["apply", str(out), *common], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert "policies changed" not in done.output


def test_a_malformed_record_records_nothing_and_the_plan_still_applies(applied, tmp_path):
    tree, engine = applied
    volumes(tree, 166)
    plan = saved(engine, tree.root, tmp_path)
    del plan.record["inputs_digest"]
    with engine.connect() as conn:
        before = conn.execute(text("SELECT apply_run_id, versions FROM cplane_applied_state")).one()
    assert apply_plan(engine, plan, environment=None, actor="test", saved=True).applied
    with engine.connect() as conn:
        assert conn.execute(text("SELECT apply_run_id, versions FROM cplane_applied_state")).one() == before
    both(engine, tree.root)
