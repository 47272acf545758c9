"""The no-change fast path (reconcile/fastpath.py): a plan after an apply answers `No changes` from
the recorded state without reading a row, and every input that can change the answer makes it fall
back to the full plan, which is then correct. On PostgreSQL and SQLite."""

from __future__ import annotations

import re
from contextlib import contextmanager

import pytest
from click.testing import CliRunner
from helpers import PLAN_SECRETS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, text

from control_plane.cli import entry
from control_plane.cli.main import main
from control_plane.db import counters
from control_plane.kinds.registry import ROW_KINDS
from control_plane.plans import planfile
from control_plane.reconcile import nochange
from control_plane.reconcile.controller import apply_config, apply_plan, make_plan

SECRETS = PLAN_SECRETS
# Every table whose rows a full plan reads; the fast path reads none of them.
ROW_TABLES = sorted({rk.table_name for rk in ROW_KINDS.values()} | {"cplane_managed_objects", "global_ai_prompt_versions"})


@contextmanager
def statements(engine):
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def rows_read(seen: list[str]) -> list[str]:
    """The statements that read (or write) a system table or cplane_managed_objects."""
    pattern = re.compile(r'\b(FROM|JOIN|INTO|UPDATE|COPY)\s+"?(' + "|".join(ROW_TABLES) + r')"?\b', re.I)
    return [s for s in seen if pattern.search(s)]


def shape(plan):
    """What a user sees of a plan, without its creation time."""
    return ([(c.kind, c.name, str(c.action), c.cause, [(f.field, f.before, f.after) for f in c.fields])
             for c in plan.changes], plan.unmanaged, plan.warnings, plan.errors, plan.config_digest,
            plan.environment, plan.database, plan.pending_migrations)


def raw_answer(engine, root, *, environment=None, require_secrets=False, **_):
    """What the raw-driver path (cli/entry.py, before SQLAlchemy is imported) answers `cplane plan`
    with: (stdout, stderr) of `No changes`, or None when it leaves the plan to the click command."""
    args = ["plan", "--config", str(root), "--database-url", engine.url.render_as_string(hide_password=False)]
    args += ["--env", environment] if environment else []
    args += ["--require-secrets"] if require_secrets else []
    return entry.fast_plan(args)


def plan_both(engine, root, **kwargs):
    """(fast plan result, full plan): the plan as cplane makes it, and the one made without the fast path.
    The raw-driver path makes the same decision as the SQLAlchemy one."""
    fast = make_plan(engine, root, **kwargs)
    full = make_plan(engine, root, fast_path=False, **kwargs)
    assert shape(fast.plan) == shape(full.plan)
    if not kwargs.get("adopt") and kwargs.get("at") is None:  # (the raw path serves neither)
        raw = raw_answer(engine, root, **kwargs)
        assert (raw is not None) == fast.fast_path, raw
    return fast, full.plan


def drift_named(engine, root, kind: str, name: str) -> None:
    """The plan leaves the fast path and names the one row edited by SQL as drift (the plans agree)."""
    fast, full = plan_both(engine, root)
    assert not fast.fast_path
    [change] = full.changes
    assert (change.kind, change.name, change.cause) == (kind, name, "drift")


def fast_both(engine, root) -> bool:
    """Whether the plan takes the fast path, the SQLAlchemy one and the raw-driver one agreeing."""
    fast = make_plan(engine, root).fast_path
    assert (raw_answer(engine, root) is not None) == fast
    return fast


def test_a_no_change_plan_after_apply_reads_no_row(applied):
    tree, engine = applied
    with statements(engine) as seen:
        result = make_plan(engine, tree.root)
    assert result.fast_path and not result.plan.changes
    assert rows_read(seen) == [], rows_read(seen)
    assert len(seen) < 20, seen
    assert result.plan.config_digest and result.plan.database["lineage"]
    # The full plan says the same, and reads the rows.
    with statements(engine) as seen:
        full = make_plan(engine, tree.root, fast_path=False)
    assert not full.fast_path and rows_read(seen)
    assert shape(full.plan) == shape(result.plan)


def test_a_no_op_apply_takes_the_fast_path_and_writes_nothing(applied):
    tree, engine = applied
    with statements(engine) as seen:
        again = apply_config(engine, tree.root, actor="test")
    assert again.applied is False and again.rows_written == 0
    assert rows_read(seen) == []
    assert not [s for s in seen if re.match(r"\s*(INSERT|UPDATE|DELETE)", s, re.I)]


def test_cli_plan_says_no_changes_and_debug_names_the_recorded_state(applied, db_url):
    tree, _ = applied
    args = ["plan", "--config", str(tree.root), "--database-url", db_url, "--detailed-exitcode"]
    fast = CliRunner().invoke(main, [*args, "--debug"], catch_exceptions=False)
    assert fast.exit_code == 0, fast.output
    assert "No changes. The database matches the configuration." in fast.output
    assert "nothing changed since the last apply" in fast.stderr
    full = CliRunner().invoke(main, [*args, "--no-fast-path", "--debug"], catch_exceptions=False)
    assert full.exit_code == 0 and "No changes." in full.output
    assert "nothing changed since the last apply" not in full.stderr


def test_a_write_by_sql_falls_back_and_the_plan_names_the_drift(applied):
    tree, engine = applied
    with engine.begin() as conn:
        conn.execute(text("UPDATE plans SET name = 'Edited by hand' WHERE slug = 'test-plan'"))
    drift_named(engine, tree.root, "Plan", "test-plan")
    # Writing the value back by SQL still moved the counter: the full plan says No changes.
    with engine.begin() as conn:
        conn.execute(text("UPDATE plans SET name = 'Test Plan' WHERE slug = 'test-plan'"))
    fast, full = plan_both(engine, tree.root)
    assert not fast.fast_path and not full.changes
    # The next apply that finds nothing to do records the state again.
    assert apply_config(engine, tree.root, actor="test").applied is False
    assert fast_both(engine, tree.root)


def test_writes_to_the_bookkeeping_fall_back(applied):
    tree, engine = applied
    with engine.begin() as conn:
        conn.execute(text("UPDATE cplane_managed_objects SET fingerprint = 'x' WHERE name = 'test-plan'"))
    fast, full = plan_both(engine, tree.root)
    assert not fast.fast_path and not full.changes  # the row still holds the config's values


def test_an_unmanaged_row_added_by_sql_falls_back(applied):
    tree, engine = applied
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO permissions (codename, name, description) VALUES ('x:read', 'X', '')"))
    fast, full = plan_both(engine, tree.root)
    assert not fast.fast_path
    assert {"kind": "Permission", "name": "x:read"}.items() <= full.unmanaged[0].items()


def test_a_changed_file_falls_back(applied):
    tree, engine = applied
    tree.test_plan(price="29")
    fast, full = plan_both(engine, tree.root)
    assert not fast.fast_path
    assert [(c.name, c.fields[0].field) for c in full.changes] == [("test-plan", "price_monthly")]
    # A file that changes only in a comment: still a full plan, with no changes.
    tree.test_plan()
    (tree.root / "plans" / "test-plan.yaml").write_text((tree.root / "plans" / "test-plan.yaml").read_text() + "# note\n")
    fast, full = plan_both(engine, tree.root)
    assert not fast.fast_path and not full.changes


def test_a_changed_overlay_and_another_environment_fall_back(applied):
    tree, engine = applied
    overlay = tree.root / "environments" / "staging.yaml"
    overlay.write_text(overlay.read_text() + "# edited\n")
    fast, full = plan_both(engine, tree.root)
    assert not fast.fast_path and not full.changes
    assert apply_config(engine, tree.root, actor="test").applied is False  # records again
    assert fast_both(engine, tree.root)
    # Another environment selected: not the desired state that was applied.
    staging = make_plan(engine, tree.root, environment="staging", allow_environment_change=True)
    assert not staging.fast_path and staging.plan.changes


def test_a_changed_or_unset_secret_variable_falls_back(applied, monkeypatch):
    tree, engine = applied
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_2")
    fast, full = plan_both(engine, tree.root)
    assert not fast.fast_path
    assert [(c.kind, c.name) for c in full.changes] == [("PaymentMethod", "stripe")]
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_1")
    assert fast_both(engine, tree.root)
    monkeypatch.delenv("STRIPE_SECRET_KEY")
    fast, full = plan_both(engine, tree.root)
    assert not fast.fast_path and not full.changes
    assert any("STRIPE_SECRET_KEY" in w for w in full.warnings)


def test_unset_variables_recorded_repeat_their_warnings(config_tree, migrated_engine, monkeypatch):
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    assert apply_config(migrated_engine, config_tree.root, actor="test").applied
    fast, full = plan_both(migrated_engine, config_tree.root)
    assert fast.fast_path and any("STRIPE_SECRET_KEY" in w for w in full.warnings)
    # --require-secrets makes an unset variable an error: the full plan says so.
    with pytest.raises(Exception, match="STRIPE_SECRET_KEY"):
        make_plan(migrated_engine, config_tree.root, require_secrets=True)


def test_another_cplane_version_another_key_or_adopt_fall_back(applied, monkeypatch):
    tree, engine = applied
    assert fast_both(engine, tree.root)
    assert not make_plan(engine, tree.root, adopt=True).fast_path
    monkeypatch.setattr(nochange, "__version__", "999.0")  # (the version the record binds)
    fast, full = plan_both(engine, tree.root)
    assert not fast.fast_path and not full.changes
    monkeypatch.undo()
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CPLANE_SECRET_KEY", "another-key")
    assert raw_answer(engine, tree.root) is None
    with pytest.raises(Exception, match="key"):  # the full plan refuses a key that cannot read the secrets
        make_plan(engine, tree.root)


def test_a_missing_counter_or_trigger_falls_back(applied):
    tree, engine = applied
    from control_plane.db.dialect import for_dialect

    with engine.begin() as conn:
        for statement in for_dialect(conn).drop_change_counter_ddl(["seed_keywords"]):
            if "FUNCTION" not in statement:  # the other tables keep theirs
                conn.execute(text(statement))
    assert not fast_both(engine, tree.root)
    with engine.begin() as conn:
        counters.install(conn, ["seed_keywords"])
        conn.execute(text("DELETE FROM cplane_change_counters WHERE table_name = 'plans'"))
    assert not fast_both(engine, tree.root)


def test_a_write_in_replica_mode_or_under_a_disabled_trigger_is_not_missed(applied):
    """PostgreSQL skips ordinary triggers in a session_replication_role = 'replica' session and
    skips a trigger disabled by hand: cplane's triggers fire ALWAYS, and a plan that finds one in
    any other state does not trust its table's counter."""
    tree, engine = applied
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's replication role and trigger states")
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("UPDATE plans SET name = 'Edited by a replica' WHERE slug = 'test-plan'"))
    drift_named(engine, tree.root, "Plan", "test-plan")
    assert apply_config(engine, tree.root, actor="test").applied
    assert fast_both(engine, tree.root)

    # Disabled by hand, then a write nothing counts: the plan reads the table and names it.
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE plans DISABLE TRIGGER cplane_count_changes"))
        conn.execute(text("UPDATE plans SET name = 'Edited unseen' WHERE slug = 'test-plan'"))
    drift_named(engine, tree.root, "Plan", "test-plan")
    # Enabled again, but only for 'origin' sessions (what a bare ENABLE does): still not trusted.
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE plans ENABLE TRIGGER cplane_count_changes"))
    assert apply_config(engine, tree.root, actor="test").applied
    assert not fast_both(engine, tree.root)
    with engine.begin() as conn:
        counters.triggers_always(conn)
    assert apply_config(engine, tree.root, actor="test").applied is False
    assert fast_both(engine, tree.root)


def test_a_saved_plan_apply_leaves_no_record_it_cannot_vouch_for(applied, tmp_path):
    tree, engine = applied
    tree.test_plan(price="39")
    plan = make_plan(engine, tree.root).plan
    planfile.write_plan(plan, tmp_path / "plan.json")
    # Drift made after the plan, on a row the plan does not touch.
    with engine.begin() as conn:
        conn.execute(text("UPDATE roles SET name = 'Hand' WHERE slug = 'viewer'"))
    apply_plan(engine, planfile.read_plan(tmp_path / "plan.json"), environment=None, saved=True, actor="test")
    fast, full = plan_both(engine, tree.root)
    assert not fast.fast_path
    assert [(c.kind, c.name, c.cause) for c in full.changes] == [("Role", "viewer", "drift")]


EDITS = st.lists(st.sampled_from(["price", "sector", "comment", "sql-drift", "sql-revert", "secret", "apply"]),
                 min_size=1, max_size=5)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS)
def test_fast_and_full_plans_agree_on_random_edits(applied, monkeypatch, edits):
    tree, engine = applied
    for step, edit in enumerate(edits):
        if edit == "price":
            tree.test_plan(price=str(20 + step))
        elif edit == "sector":
            tree.test_industry(sector=f"s{step}")
        elif edit == "comment":
            path = tree.root / "roles" / sorted(p.name for p in (tree.root / "roles").iterdir())[0]
            path.write_text(path.read_text() + f"# {step}\n")
        elif edit in ("sql-drift", "sql-revert"):
            with engine.begin() as conn:
                name = "Drifted" if edit == "sql-drift" else "Test Plan"
                conn.execute(text("UPDATE plans SET name = :n WHERE slug = 'test-plan'"), {"n": name})
        elif edit == "secret":
            monkeypatch.setenv("OPENAI_API_KEY", f"oa_{step}")
        else:
            apply_config(engine, tree.root, actor="test")
        plan_both(engine, tree.root)
    apply_config(engine, tree.root, actor="test")
    fast, full = plan_both(engine, tree.root)
    assert fast.fast_path and not full.changes
