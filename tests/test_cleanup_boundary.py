"""Issue 15, cleanup half: conditions as data (no manifest text reaches SQL) and one system/user
boundary (registry and manifest agree; no batch commits a system row)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from helpers import load_script
from sqlalchemy import inspect, text

from control_plane.cleanup import execute, load_manifest, reflect_schema
from control_plane.cleanup.executor import VerificationFailed
from control_plane.cleanup.planner import MixedTable, SystemTableRefused, UserTable, build_plan
from control_plane.kinds import conditions

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"
MANIFEST = CONFIG / "cleanup" / "manifest.yaml"
POSITION = re.compile(r"manifest\.yaml:(\d+):(\d+): ")

userdata = load_script("bench/userdata.py")


@pytest.fixture
def pg_url(pg_url):
    """A fresh PostgreSQL database at head: cleanup check and plan never migrate (they are read-only)."""
    from control_plane.db.engine import make_engine, upgrade

    engine = make_engine(pg_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return pg_url


@pytest.fixture(autouse=True)
def _secret_key(monkeypatch):
    monkeypatch.setenv("CPLANE_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.delenv("CPLANE_ENV", raising=False)


def cli(*args: str, url: str, config: Path = CONFIG):
    from control_plane.cli.main import main

    return CliRunner().invoke(main, [*args, "--database-url", url, "--config", str(config)], catch_exceptions=False)


def manifest_with(tmp_path: Path, edit) -> Path:
    """A config tree holding the repo's manifest with `edit(text) -> text` applied (text, so that
    positions are the ones a person would see)."""
    root = tmp_path / "config"
    (root / "cleanup").mkdir(parents=True)
    edited = edit(MANIFEST.read_text())
    assert edited != MANIFEST.read_text()
    (root / "cleanup" / "manifest.yaml").write_text(edited)
    return root


def seed_rows(value: str):
    """Replace seed_keywords' systemRows (the first mixed table) with `value`."""
    def edit(text_: str) -> str:
        return text_.replace("      systemRows: {column: account_id, op: isNull}\n", f"      systemRows: {value}\n", 1)
    return edit


def line_of(root: Path, needle: str) -> int:
    return next(i for i, line in enumerate((root / "cleanup" / "manifest.yaml").read_text().splitlines(), 1)
                if needle in line)


def errors(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error: ")]


def all_tables_digest(engine) -> dict[str, tuple[int, str]]:
    """Count and md5 of every table's rows (PostgreSQL), to prove nothing changed."""
    with engine.connect() as conn:
        return {
            t: tuple(conn.execute(text(
                f'SELECT count(*), md5(coalesce(string_agg(x::text, E\'\\n\' ORDER BY x::text), \'\')) FROM "{t}" x'
            )).one())
            for t in inspect(engine).get_table_names()
        }


@pytest.fixture
def pg_system_engine(pg_engine):
    from control_plane.reconcile.controller import apply_config

    apply_config(pg_engine, CONFIG, environment=None, actor="test")
    userdata.ensure_system_data(pg_engine)
    return pg_engine


def url_of(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


# --- conditions ---------------------------------------------------------------------------------


def test_values_are_bound_parameters_never_sql_text():
    from sqlalchemy import String, column, table
    from sqlalchemy.dialects import postgresql

    t = table("seed_keywords", column("keyword", String()), column("account_id", String()))
    cond = conditions.parse({"or": [{"column": "keyword", "op": "eq", "value": "x') OR (1=1"},
                                    {"not": {"column": "account_id", "op": "in", "value": ["a", "b"]}}]})
    compiled = conditions.compile_condition(cond, t.c).compile(dialect=postgresql.dialect())
    sql = str(compiled)
    assert "1=1" not in sql and "'a'" not in sql
    assert "x') OR (1=1" in compiled.params.values()
    assert "%(" in sql  # psycopg placeholders


def test_canonical_form_compares_meaning_not_spelling():
    a = conditions.parse({"column": "account_id", "op": "isNull"})
    assert conditions.canonical(a) == conditions.canonical(
        conditions.parse({"and": [{"column": "account_id", "op": "isNull"}]}))
    assert conditions.canonical(conditions.parse({"not": {"column": "account_id", "op": "notNull"}})) == \
        conditions.canonical(a)
    flipped = conditions.parse({"column": "account_id", "op": "notNull"})
    assert conditions.canonical(flipped) != conditions.canonical(a)
    assert conditions.canonical(conditions.parse({"not": a.model_dump()})) == conditions.canonical(flipped)


def test_the_repo_manifest_agrees_with_the_registry():
    from control_plane.cleanup.manifest import boundary_problems

    assert boundary_problems(load_manifest(CONFIG)) == []


def test_a_delete_target_cannot_be_a_system_table():
    with pytest.raises(SystemTableRefused, match="plans"):
        UserTable("plans")
    with pytest.raises(SystemTableRefused, match="cplane_managed_objects"):
        UserTable("cplane_managed_objects")
    with pytest.raises(SystemTableRefused, match="plans"):
        MixedTable("plans", conditions.parse({"column": "id", "op": "notNull"}))
    with pytest.raises(SystemTableRefused, match="seed_keywords"):
        UserTable("seed_keywords")  # mixed: only its user rows, with its condition
    with pytest.raises(SystemTableRefused, match="structured"):
        MixedTable("seed_keywords", "account_id IS NULL")
    assert UserTable("accounts").name == "accounts"


def test_every_delete_of_a_mixed_table_carries_not_system_rows(pg_system_engine):
    from sqlalchemy import delete
    from sqlalchemy.dialects import postgresql

    manifest = load_manifest(CONFIG)
    schema = reflect_schema(pg_system_engine)
    for profile in manifest.profiles:
        plan = build_plan(pg_system_engine, manifest, profile, schema, count=False)
        for step in plan.steps:
            if isinstance(step.target, MixedTable):
                sql = str(delete(schema.clause(step.table)).where(plan.where(step)).compile(dialect=postgresql.dialect()))
                assert "account_id IS NOT NULL" in sql, (profile, step.table, sql)


# --- cleanup check: the Done-when cases -----------------------------------------------------------


def test_check_refuses_sql_text_with_its_position(tmp_path, pg_url):
    root = manifest_with(tmp_path, seed_rows('"account_id IS NULL) OR (1"'))
    result = cli("cleanup", "check", url=pg_url, config=root)
    assert result.exit_code == 1
    (line,) = [e for e in errors(result) if "seed_keywords" in e and "not a valid condition" in e]
    m = POSITION.search(line)
    assert m and int(m.group(1)) == line_of(root, "account_id IS NULL) OR (1"), line
    assert "SQL text is not accepted" in line
    # plan and apply refuse too, before anything runs
    assert cli("cleanup", "plan", "--profile", "test-data", url=pg_url, config=root).exit_code == 1
    applied = cli("cleanup", "apply", "--profile", "test-data", "--yes", url=pg_url, config=root)
    assert applied.exit_code == 1 and "seed_keywords" in applied.output


def test_check_refuses_an_unknown_column_with_its_position(tmp_path, pg_url):
    root = manifest_with(tmp_path, seed_rows("{column: acount_id, op: isNull}"))
    result = cli("cleanup", "check", url=pg_url, config=root)
    assert result.exit_code == 1
    (line,) = [e for e in errors(result) if "column acount_id does not exist" in e]
    m = POSITION.search(line)
    row = line_of(root, "acount_id")
    text_line = (root / "cleanup" / "manifest.yaml").read_text().splitlines()[row - 1]
    assert m and (int(m.group(1)), int(m.group(2))) == (row, text_line.index("column") + 1), line
    assert line[m.end():].startswith("seed_keywords: systemRows: column acount_id does not exist")


def test_check_refuses_a_value_of_the_wrong_type_with_its_position(tmp_path, pg_url):
    def edit(text_: str) -> str:
        return text_.replace(
            "    - {name: sync-events, table: sync_events, column: created_at, maxAgeDays: 30}\n",
            "    - {name: sync-events, table: sync_events, column: created_at, maxAgeDays: 30,\n"
            "       where: {column: event_type, op: eq, value: 7}}\n",
        )

    root = manifest_with(tmp_path, edit)
    result = cli("cleanup", "check", "--format", "json", url=pg_url, config=root)
    assert result.exit_code == 1
    (problem,) = json.loads(result.output)["problems"]
    assert problem["table"] == "sync_events"
    assert "value 7 does not fit column event_type (string)" in problem["message"]
    row = line_of(root, "value: 7")
    col = (root / "cleanup" / "manifest.yaml").read_text().splitlines()[row - 1].index("value") + 1
    assert problem["at"].endswith(f"manifest.yaml:{row}:{col}")


def test_check_refuses_a_malformed_condition_at_load(tmp_path, pg_url):
    root = manifest_with(tmp_path, seed_rows("{column: account_id, op: like, value: x}"))
    result = cli("cleanup", "check", url=pg_url, config=root)
    assert result.exit_code == 1
    # the document check reports it (at the systemRows key: the parser cannot point inside the union)
    m = POSITION.search(result.output)
    assert m and int(m.group(1)) == line_of(root, "op: like"), result.output
    assert "'isNull', 'notNull'" in result.output


def test_check_refuses_registry_and_manifest_disagreeing_about_a_table(tmp_path, pg_url):
    root = manifest_with(tmp_path, lambda t: t.replace(
        "{table: credit_packages, class: system,", "{table: credit_packages, class: user,"))
    result = cli("cleanup", "check", url=pg_url, config=root)
    assert result.exit_code == 1
    (line,) = [e for e in errors(result) if "registry and manifest disagree" in e]
    assert "credit_packages: registry and manifest disagree" in line and "classifies it user" in line
    assert POSITION.search(line)

    root2 = manifest_with(tmp_path / "2", lambda t: t.replace(
        "- table: ai_integration_settings\n      class: mixed\n      systemRows: {column: account_id, op: isNull}\n",
        "- table: ai_integration_settings\n      class: system\n"))
    result = cli("cleanup", "check", url=pg_url, config=root2)
    assert result.exit_code == 1
    assert any("ai_integration_settings: registry and manifest disagree" in e for e in errors(result)), result.output


def test_flipped_system_rows_refused_by_check_and_stopped_before_the_first_commit(tmp_path, pg_system_engine,
                                                                                 monkeypatch):
    """`systemRows: account_id IS NOT NULL` in structured form: check refuses it; with the check
    bypassed, apply stops before its first commit and every table is byte-identical."""
    url = url_of(pg_system_engine)
    root = manifest_with(tmp_path, seed_rows("{column: account_id, op: notNull}"))
    result = cli("cleanup", "check", url=url, config=root)
    assert result.exit_code == 1
    assert any("seed_keywords: registry and manifest disagree: systemRows is account_id notNull" in e
               for e in errors(result)), result.output

    userdata.generate(pg_system_engine, accounts=2)
    with pg_system_engine.connect() as conn:
        system_seeds = conn.execute(text("SELECT count(*) FROM seed_keywords WHERE account_id IS NULL")).scalar_one()
    assert system_seeds > 0
    before = all_tables_digest(pg_system_engine)

    import control_plane.cleanup.manifest as manifest_module

    monkeypatch.setattr(manifest_module, "check_manifest", lambda engine, manifest, schema: [])
    applied = cli("cleanup", "apply", "--profile", "test-data", "--yes", url=url, config=root)
    assert applied.exit_code == 1
    (message,) = [line for line in applied.output.splitlines() if line.strip()]
    assert "seed_keywords" in message and "nothing was deleted" in message

    after = all_tables_digest(pg_system_engine)
    runs = after.pop("cplane_cleanup_runs")
    assert runs[0] == before.pop("cplane_cleanup_runs")[0] + 1  # only the audit record of the refused run
    assert after == before
    with pg_system_engine.connect() as conn:
        status, msg = conn.execute(text("SELECT status, message FROM cplane_cleanup_runs ORDER BY id DESC LIMIT 1")).one()
    assert status == "failed" and "seed_keywords" in msg


def test_the_batch_guard_rolls_back_a_batch_that_would_delete_system_rows(tmp_path, pg_system_engine, monkeypatch):
    """Preflight bypassed too: the first batch of seed_keywords is rolled back inside its own
    transaction; no system seed keyword is lost."""
    from control_plane.cleanup import executor

    root = manifest_with(tmp_path, seed_rows("{column: account_id, op: notNull}"))
    manifest = load_manifest(root)
    userdata.generate(pg_system_engine, accounts=1)
    with pg_system_engine.connect() as conn:
        seeds = conn.execute(text("SELECT count(*), md5(string_agg(s::text, ',' ORDER BY id)) FROM seed_keywords s "
                                  "WHERE account_id IS NULL")).one()
    monkeypatch.setattr(executor._Batcher, "preflight", lambda self, steps: None)
    with pytest.raises(VerificationFailed, match=r"seed_keywords: refusing to commit a batch that deletes system rows"):
        execute(pg_system_engine, manifest, "test-data", batch_size=50)
    with pg_system_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*), md5(string_agg(s::text, ',' ORDER BY id)) FROM seed_keywords s "
                                 "WHERE account_id IS NULL")).one() == seeds


def test_the_batch_guard_refuses_rows_cplane_manages(pg_system_engine, monkeypatch):
    """A managed row that the manifest's (and even the registry's) condition calls a user row:
    cplane_managed_objects still knows it, and the batch is refused."""
    from control_plane.cleanup import executor

    manifest = load_manifest(CONFIG)
    userdata.generate(pg_system_engine, accounts=1)
    with pg_system_engine.begin() as conn:
        account = conn.execute(text("SELECT id FROM accounts LIMIT 1")).scalar_one()
        seed = conn.execute(text("SELECT row_id FROM cplane_managed_objects WHERE table_name = 'seed_keywords' "
                                 "LIMIT 1")).scalar_one()
        conn.execute(text("UPDATE seed_keywords SET account_id = :a WHERE id = :i"), {"a": account, "i": seed})
    with pytest.raises(VerificationFailed, match=r"seed_keywords: refusing to delete: it includes rows cplane manages"):
        execute(pg_system_engine, manifest, "test-data")
    monkeypatch.setattr(executor._Batcher, "preflight", lambda self, steps: None)
    with pytest.raises(VerificationFailed, match=r"seed_keywords: refusing to commit a batch .* cplane manages"):
        execute(pg_system_engine, manifest, "test-data")
    with pg_system_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM seed_keywords WHERE id = :i"), {"i": seed}).scalar_one() == 1


def test_no_manifest_text_in_cleanup_sql():
    """No f-string in the cleanup package puts a manifest value into SQL."""
    offenders = []
    for path in (REPO / "control_plane" / "cleanup").glob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"system_rows\}|predicate\}|\.where\}|condition\}", line) and 'f"' in line:
                offenders.append(f"{path.name}:{n}: {line.strip()}")
            if "text(f" in line:
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert offenders == []


def test_profile_filter_limits_what_goes(pg_system_engine, tmp_path):
    def edit(text_: str) -> str:
        return text_.replace(
            "      classes: [user, mixed]\n      allowInProduction: false\n",
            "      classes: [user, mixed]\n      allowInProduction: false\n"
            "    - name: old-logs\n      classes: [user]\n"
            "      filters:\n        - {table: ai_task_logs, where: {column: operation, op: in, value: [x, y]}}\n",
        )

    root = manifest_with(tmp_path, edit)
    assert cli("cleanup", "check", url=url_of(pg_system_engine), config=root).exit_code == 0
    manifest = load_manifest(root)
    plan = build_plan(pg_system_engine, manifest, "old-logs")
    (step,) = [s for s in plan.steps if s.table == "ai_task_logs"]
    assert "profile filter" in step.reasons


def test_documented_filter_and_where_compile_and_count_exactly(migrated_engine, tmp_path):
    """docs/config.md's example (a retention `where`, a profile filter with and/olderThan), on both
    backends: `cleanup check` passes and the plan counts exactly the rows the conditions describe."""
    from datetime import UTC, datetime, timedelta

    def edit(text_: str) -> str:
        text_ = text_.replace(
            "    - {name: sync-events, table: sync_events, column: created_at, maxAgeDays: 30}\n",
            "    - {name: sync-events, table: sync_events, column: created_at, maxAgeDays: 30,\n"
            "       where: {column: event_type, op: in, value: [push, pull]}}\n",
        )
        return text_ + (
            "    - name: old-pushes\n      rules: [sync-events]\n      filters:\n        - table: sync_events\n"
            "          where:\n            and:\n              - {column: event_type, op: eq, value: push}\n"
            "              - {column: created_at, op: olderThan, value: 60d}\n"
        )

    from control_plane.reconcile.controller import apply_config

    apply_config(migrated_engine, CONFIG, environment=None, actor="test")
    userdata.ensure_system_data(migrated_engine)
    now = datetime.now(UTC)
    userdata.generate(migrated_engine, accounts=2, now=now)
    with migrated_engine.begin() as conn:
        conn.execute(text("UPDATE sync_events SET event_type = 'pull' WHERE id IN (SELECT id FROM sync_events LIMIT 5)"))
    root = manifest_with(tmp_path, edit)
    result = cli("cleanup", "check", url=url_of(migrated_engine), config=root)
    assert result.exit_code == 0, result.output
    manifest = load_manifest(root)
    plan = build_plan(migrated_engine, manifest, "old-pushes", now=now)
    (step,) = plan.steps
    assert step.table == "sync_events" and "profile filter" in step.reasons
    with migrated_engine.connect() as conn:
        rows = conn.execute(text("SELECT event_type, created_at FROM sync_events")).all()

    def aware(v):
        v = datetime.fromisoformat(v) if isinstance(v, str) else v
        return v if v.tzinfo else v.replace(tzinfo=UTC)

    expected = sum(1 for e, c in rows if e == "push" and aware(c) < now - timedelta(days=60))
    assert 0 < step.rows == expected < len(rows)
    retention = build_plan(migrated_engine, manifest, "retention", now=now)
    (sync,) = [s for s in retention.steps if s.table == "sync_events"]
    assert sync.rows == sum(1 for e, c in rows if e in ("push", "pull") and aware(c) < now - timedelta(days=30))
