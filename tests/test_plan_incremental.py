"""The incremental plan (reconcile/incremental.py): after an apply, a plan reads and compares only
the tables whose desired or live side changed, and the plan is the full plan."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from control_plane.apply.run_rows import read_run_rows
from control_plane.kinds.registry import ROW_KINDS
from control_plane.reconcile.controller import apply_config, make_plan, prepare
from control_plane.reconcile.incremental import scope
from tests.test_plan_fastpath import shape, statements

ALWAYS_READ = {rk.table_name for rk in ROW_KINDS.values() if rk.secret_columns}  # a handful of rows


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


# --- by file (reconcile/byfile.py): a file edit is diffed against the applied content's cache entry ---


@pytest.fixture
def spied(monkeypatch):
    """The kinds whose managed records the plan scanned in full (incremental._edited_rows)."""
    from control_plane.reconcile import incremental

    scanned: list[str] = []
    scan = incremental._edited_rows

    def spy(conn, rk, rows, fingerprints):
        scanned.append(rk.name)
        return scan(conn, rk, rows, fingerprints)

    monkeypatch.setattr(incremental, "_edited_rows", spy)
    return scanned


def cache_dir(tree):
    return tree.root.resolve().parent / ".cplane" / "cache"


def test_a_one_file_edit_takes_the_rows_of_that_file_only(applied, spied):
    tree, engine = applied
    volumes(tree, 101)
    with statements(engine) as seen:
        result = make_plan(engine, tree.root)
    assert not result.fast_path and spied == []
    # No managed record of the kind is scanned: they are read by name, only the changed ones.
    managed = [s for s in seen if re.search(r"\bFROM cplane_managed_objects\b", s)]
    assert managed and all(" IN " in s for s in managed)
    keywords = [q for q in seen if re.search(r"\bFROM seed_keywords\b", q)]
    assert keywords and all(" IN " in q for q in keywords)
    plan, full = both(engine, tree.root)
    assert [(c.kind, c.name, c.cause) for c in plan.changes] == [
        ("SeedKeyword", "test-industry/first/alpha one", "config")]
    first = apply_config(engine, tree.root, actor="test")
    assert first.applied and make_plan(engine, tree.root).fast_path
    # The record now holds the new content's digests: the next edit of the file diffs against it.
    volumes(tree, 102)
    spied.clear()
    plan, _ = both(engine, tree.root)
    assert spied == [] and [c.name for c in plan.changes] == ["test-industry/first/alpha one"]


def test_a_one_file_apply_rolls_back_exactly(applied, spied):
    from control_plane.reconcile.controller import apply_plan
    from control_plane.reconcile.rollback import make_rollback_plan

    tree, engine = applied
    before = make_plan(engine, tree.root, fast_path=False).plan
    assert not before.changes
    with engine.connect() as conn:
        run1 = conn.execute(text("SELECT max(id) FROM cplane_apply_runs")).scalar_one()
    original = (tree.root / "industries" / "test-industry.yaml").read_text()
    volumes(tree, 103)
    tree.test_plan(price="21")
    result = apply_config(engine, tree.root, actor="test")
    assert result.applied and spied == []
    with engine.connect() as conn:
        kept = read_run_rows(conn, result.apply_run_id)
    prepared = prepare(tree.root)
    assert {k: sorted(v) for k, v in kept.items() if v} == {k: sorted(v) for k, v in prepared.desired.rows.items() if v}
    plan = make_rollback_plan(engine, tree.root, run1)
    assert sorted(c.name for c in plan.changes) == ["test-industry/first/alpha one", "test-plan"]
    assert apply_plan(engine, plan, environment=None, actor="test").applied
    (tree.root / "industries" / "test-industry.yaml").write_text(original)
    tree.test_plan()
    assert not make_plan(engine, tree.root, fast_path=False).plan.changes


def stored_run(engine, run_id: int) -> dict:
    import zlib

    with engine.connect() as conn:
        data = conn.execute(text("SELECT data FROM cplane_run_rows WHERE run_id = :r"), {"r": run_id}).scalar_one()
    return json.loads(zlib.decompress(bytes(data)))


def test_an_incremental_run_record_refers_to_its_base_and_reads_back_whole(applied, monkeypatch):
    from control_plane.apply import run_rows
    from control_plane.state.rows import row_fingerprint

    tree, engine = applied
    with engine.connect() as conn:
        run1 = conn.execute(text("SELECT max(run_id) FROM cplane_run_rows")).scalar_one()
    assert stored_run(engine, run1)["format"] == 2  # the first apply read everything: every row
    monkeypatch.setenv("CPLANE_RUN_ROWS_RETENTION", "1")
    monkeypatch.setattr(run_rows, "MAX_DEPTH", 2)
    runs = [run1]
    for step in range(4):
        volumes(tree, 200 + step)
        result = apply_config(engine, tree.root, actor="test")
        assert result.applied
        runs.append(result.apply_run_id)
        stored = stored_run(engine, result.apply_run_id)
        prepared = prepare(tree.root)
        with engine.connect() as conn:
            kept = read_run_rows(conn, result.apply_run_id)
            ids = sorted(conn.execute(text("SELECT run_id FROM cplane_run_rows")).scalars())
        # Chains of at most MAX_DEPTH links: the third incremental run stores every row again.
        if step in (0, 1, 3):
            assert stored["format"] == 3 and stored["base"] == runs[-2]
            # Stored: the kinds read (the edited keyword; the secret kinds, always read), no more.
            secret_kinds = {k for k, rk in ROW_KINDS.items() if rk.secret_columns}
            assert set(stored["kinds"]) == {"SeedKeyword"} | secret_kinds
            assert list(stored["kinds"]["SeedKeyword"]["keys"]) == ["test-industry/first/alpha one"]
            assert stored["from_base"]["SeedKeyword"] == [] and "Plan" in stored["from_base"]
        else:
            assert stored["format"] == 2
        # Retention keeps the newest run and the chain it refers to, nothing else.
        chain = [runs[-1]] + ([] if stored["format"] == 2 else [stored["base"]])
        if stored["format"] == 3 and stored_run(engine, stored["base"])["format"] == 3:
            chain.append(stored_run(engine, stored["base"])["base"])
        assert ids == sorted(chain)
        assert {k: sorted(v) for k, v in kept.items() if v} == {
            k: sorted(v) for k, v in prepared.desired.rows.items() if v}
        for kind, rows in prepared.desired.rows.items():
            rk = ROW_KINDS[kind]
            if rk.secret_columns:
                continue
            for key, row in rows.items():
                assert row_fingerprint(rk, kept[kind][key]["values"], prepared.box) == \
                    row_fingerprint(rk, row.values, prepared.box), (kind, key)
                assert kept[kind][key]["prevent_destroy"] == row.prevent_destroy
    # A rollback to a run stored against its base restores that run's rows.
    from control_plane.reconcile.controller import apply_plan
    from control_plane.reconcile.rollback import make_rollback_plan

    monkeypatch.setenv("CPLANE_RUN_ROWS_RETENTION", "100")
    volumes(tree, 300)
    assert stored_run(engine, apply_config(engine, tree.root, actor="test").apply_run_id)["format"] == 3
    plan = make_rollback_plan(engine, tree.root, runs[-1])
    assert [c.name for c in plan.changes] == ["test-industry/first/alpha one"]
    assert apply_plan(engine, plan, environment=None, actor="test").applied
    volumes(tree, 203)
    assert not make_plan(engine, tree.root, fast_path=False).plan.changes


@pytest.mark.parametrize("doubt", ["no-cache", "entries-gone", "entries-corrupt"])
def test_without_the_applied_contents_entry_the_plan_scans_and_is_the_same(applied, spied, monkeypatch, doubt):
    tree, engine = applied
    if doubt == "no-cache":
        monkeypatch.setenv("CPLANE_NO_CACHE", "1")
    elif doubt == "entries-gone":
        for entry in cache_dir(tree).glob("*.pickle"):
            entry.unlink()
    else:
        for entry in cache_dir(tree).glob("*.pickle"):
            entry.write_bytes(entry.read_bytes()[:40])
    volumes(tree, 104)
    plan, _ = both(engine, tree.root)
    assert "SeedKeyword" in spied  # the old content's rows are not known: the records are scanned
    assert [c.name for c in plan.changes] == ["test-industry/first/alpha one"]


def test_an_older_record_without_files_scans(applied, spied):
    tree, engine = applied
    with engine.begin() as conn:
        tables = json.loads(conn.execute(text("SELECT tables FROM cplane_applied_state")).scalar_one()) \
            if engine.dialect.name == "sqlite" else conn.execute(text("SELECT tables FROM cplane_applied_state")).scalar_one()
        assert "files" in tables and "salt" in tables
        tables.pop("files")
        conn.execute(text("UPDATE cplane_applied_state SET tables = :t"), {"t": json.dumps(tables)})
    volumes(tree, 105)
    plan, _ = both(engine, tree.root)
    assert [c.name for c in plan.changes] == ["test-industry/first/alpha one"]


def test_renamed_merged_and_removed_files_stay_exact(applied, spied):
    tree, engine = applied
    plan_text = (tree.root / "plans" / "test-plan.yaml").read_text()
    tree.remove("plans/test-plan.yaml")
    tree.write("plans/renamed.yaml", plan_text)  # the same rows, from another file
    plan, _ = both(engine, tree.root)
    assert not plan.changes and spied == []
    apply_config(engine, tree.root, actor="test")
    # Moved into another file beside a document already there (and edited on the way).
    tree.remove("plans/renamed.yaml")
    free = tree.root / "plans" / "free.yaml"
    free.write_text(free.read_text().rstrip("\n") + "\n---\n" + plan_text.replace("priceMonthly: 19", "priceMonthly: 22"))
    plan, _ = both(engine, tree.root)
    assert [(c.kind, c.name) for c in plan.changes] == [("Plan", "test-plan")] and spied == []
    apply_config(engine, tree.root, actor="test")
    free.write_text(free.read_text().split("\n---\n")[0] + "\n")
    plan, _ = both(engine, tree.root)
    assert [(c.kind, c.name, str(c.action)) for c in plan.changes] == [("Plan", "test-plan", "delete")]


def test_an_overlay_change_is_exact(applied, spied):
    tree, engine = applied
    apply_config(engine, tree.root, environment="staging", actor="test", allow_environment_change=True)
    apply_config(engine, tree.root, environment="staging", actor="test")  # (the first changed the binding: no record)
    volumes(tree, 106)
    incremental = make_plan(engine, tree.root, environment="staging").plan
    full = make_plan(engine, tree.root, environment="staging", fast_path=False).plan
    assert shape(incremental) == shape(full)
    assert [c.name for c in incremental.changes] == ["test-industry/first/alpha one"]
    overlay = tree.root / "environments" / "staging.yaml"
    overlay.write_text(overlay.read_text().replace("value: 1\n", "value: 2\n", 1))
    incremental = make_plan(engine, tree.root, environment="staging").plan
    full = make_plan(engine, tree.root, environment="staging", fast_path=False).plan
    assert shape(incremental) == shape(full)
    assert ("SystemSetting", "trial_days") in {(c.kind, c.name) for c in incremental.changes}


EDITS = st.lists(st.sampled_from([
    "price", "sector", "keywords", "volume", "remove-plan", "restore-plan", "sql-update", "sql-revert", "sql-insert",
    "sql-delete", "sql-keyword", "sql-keyword-insert", "sql-keyword-none", "secret", "apply",
    # File-level edits (reconcile/byfile.py): a renamed, merged or split file, the cache off or gone.
    "rename-plan", "merge-plan", "split-plan", "no-cache", "drop-cache",
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


def take_test_plan(tree) -> str | None:
    """The test plan's document, removed from wherever the edits put it (its file, a renamed
    file, or merged into plans/free.yaml); None when it is not in the tree."""
    plans = tree.root / "plans"
    found = None
    for path in (plans / "test-plan.yaml", plans / "moved.yaml"):
        if path.exists():
            found = path.read_text()
            path.unlink()
    free = plans / "free.yaml"
    head, _, merged = free.read_text().partition("\n---\n")
    if merged:
        free.write_text(head + "\n")
        found = found or merged
    return found


# No shrinking: each example is a few whole plans and applies on a real database.
@settings(max_examples=8, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate),
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS)
# A sector renamed while an unmanaged keyword (inserted by SQL) hangs under the old one: the old
# sector is retired, not deleted, and stays in the run record (found by the merged suite).
@example(edits=["sector", "remove-plan", "sql-keyword-insert", "rename-plan", "sql-keyword-none", "apply"])
def test_incremental_and_full_plans_agree_on_random_edits(applied, monkeypatch, edits):
    tree, engine = applied
    for step, edit in enumerate(edits):
        if edit == "price":
            take_test_plan(tree)
            tree.test_plan(price=str(20 + step))
        elif edit == "sector":
            tree.test_industry(sector=f"s{step}")
        elif edit == "volume":
            volumes(tree, 100 + step)
        elif edit == "keywords":
            tree.write("industries/test-industry.yaml", KEYWORDS.format(volume=100 + step, step=step))
        elif edit == "remove-plan":
            take_test_plan(tree)
        elif edit == "restore-plan":
            take_test_plan(tree)
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
        elif edit in ("rename-plan", "merge-plan", "split-plan"):
            moved = take_test_plan(tree)
            if moved is not None:
                if edit == "merge-plan":
                    free = tree.root / "plans" / "free.yaml"
                    free.write_text(free.read_text() + "---\n" + moved)
                else:
                    (tree.root / "plans" / ("moved.yaml" if edit == "rename-plan" else "test-plan.yaml")).write_text(moved)
        elif edit == "no-cache":
            monkeypatch.setenv("CPLANE_NO_CACHE", "0" if os.environ.get("CPLANE_NO_CACHE") == "1" else "1")
        elif edit == "drop-cache":
            shutil.rmtree(tree.root.resolve().parent / ".cplane" / "cache", ignore_errors=True)
        else:
            result = apply_config(engine, tree.root, actor="test")
            if result.applied:  # its run rows (format 2, or 3 against its base) read back as the managed rows
                # (the desired rows, and a retired row an unmanaged child keeps: sql-keyword-insert)
                with engine.connect() as conn:
                    kept = read_run_rows(conn, result.apply_run_id)
                    managed: dict[str, list[str]] = {}
                    for kind, name in conn.execute(text("SELECT kind, name FROM cplane_managed_objects")):
                        managed.setdefault(kind, []).append(name)
                assert {k: sorted(v) for k, v in kept.items() if v} == {k: sorted(v) for k, v in managed.items()}
        both(engine, tree.root)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM permissions WHERE codename = 'sql.inserted'"))
        conn.execute(text("DELETE FROM seed_keywords WHERE keyword = 'by sql'"))
    apply_config(engine, tree.root, actor="test")
    # (Not always the no-change fast path: a managed row deleted by SQL leaves a record that the
    # apply's exactness check does not vouch for, so the next plans stay full. Still equal.)
    incremental, full = both(engine, tree.root)
    assert not full.changes


# --- lazy desired rows (state/lazyrows.py): an incremental plan builds only the rows it compares ---


def lazy_kinds(prepared) -> dict[str, bool]:
    """Per kind whose desired rows are a KindRows: whether every row of it was built."""
    from control_plane.state.lazyrows import KindRows

    return {kind: rows._dict is not None for kind, rows in prepared.desired.rows.items() if isinstance(rows, KindRows)}


@pytest.mark.parametrize("edit", ["file", "sql"])
def test_an_incremental_plan_builds_only_the_rows_it_compares(applied, edit):
    tree, engine = applied
    if edit == "file":
        volumes(tree, 111)
    else:
        with engine.begin() as conn:
            conn.execute(text("UPDATE seed_keywords SET search_volume = 7 WHERE keyword = 'alpha one'"))
    prepared = prepare(tree.root, lazy=True, database_url=engine.url)
    built = lazy_kinds(prepared)
    # The cached files' rows are still packed runs: SeedKeyword (and its parents) among them.
    assert built and not any(built.values()) and "SeedKeyword" in built
    with engine.connect() as conn:
        plan = prepared.plan_against(conn, incremental=True)
    assert [(c.kind, c.name) for c in plan.changes] == [("SeedKeyword", "test-industry/first/alpha one")]
    assert lazy_kinds(prepared)["SeedKeyword"] is False  # compared by key: the one row built
    full = make_plan(engine, tree.root, fast_path=False).plan
    assert shape(plan) == shape(full)
    # The same desired rows, lazily or not, in the same order.
    eager = prepare(tree.root, database_url=engine.url)
    for kind, rows in eager.desired.rows.items():
        assert list(prepared.desired.rows[kind].items()) == list(rows.items()), kind
    # And the apply (which plans again under its lock) records what a later plan trusts.
    assert apply_config(engine, tree.root, actor="test").applied
    assert make_plan(engine, tree.root).fast_path


def test_column_limits_are_checked_for_the_files_not_marked_as_passed(applied, monkeypatch):
    from control_plane.errors import ConfigInvalid
    from control_plane.reconcile import validation

    tree, engine = applied
    assert list(cache_dir(tree).glob("*.limits"))  # the apply's config passed: its files are marked
    checked: list[set[str]] = []
    limits = validation.column_limit_issues

    def spy(config, rows):
        checked.append({key.split("/")[0] for kind_rows in rows.values() for key in kind_rows})
        return limits(config, rows)

    monkeypatch.setattr(validation, "column_limit_issues", spy)
    volumes(tree, 121)
    plan, _ = both(engine, tree.root)
    assert [c.name for c in plan.changes] == ["test-industry/first/alpha one"]
    # The incremental plan checked the edited file's rows (and the catalog's), not the marked ones.
    assert "test-industry" in checked[0] and "test-plan" not in checked[0]
    assert "test-plan" in checked[1]  # the full plan (--no-fast-path) checks every row, as always
    # A value too long in the edited file is found, whatever is marked.
    path = tree.root / "author_profiles" / "long.yaml"
    path.write_text("apiVersion: cplane/v1\nkind: AuthorProfile\nmetadata:\n  name: long\nspec:\n"
                    f"  displayName: Long\n  tone: calm\n  vocabulary: {'x' * 300}\n")
    with pytest.raises(ConfigInvalid, match="vocabulary is 300 characters; at most 100 fit"):
        make_plan(engine, tree.root)
    # And a marked file whose marker is gone is checked again (markers only skip, never report).
    for marker in cache_dir(tree).glob("*.limits"):
        marker.unlink()
    path.unlink()
    checked.clear()
    assert make_plan(engine, tree.root).plan.changes
    assert "test-plan" in checked[0]
