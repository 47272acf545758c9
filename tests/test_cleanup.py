"""Cleanup by classification manifest (issue 6, DESIGN §6): check, plan, apply, guards, restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from cryptography.fernet import Fernet
from helpers import load_script
from sqlalchemy import inspect, text

from control_plane.cleanup import build_plan, execute, load_manifest, reflect_schema
from control_plane.cleanup.executor import system_scopes
from control_plane.db.models.user import USER_TABLES

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"
MANIFEST = CONFIG / "cleanup" / "manifest.yaml"


userdata = load_script("bench/userdata.py")


@pytest.fixture(autouse=True)
def _secret_key(monkeypatch):
    monkeypatch.setenv("CPLANE_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.delenv("CPLANE_ENV", raising=False)


def cli(*args: str, url: str, config: Path = CONFIG):
    from control_plane.cli.main import main

    result = CliRunner().invoke(main, [*args, "--database-url", url, "--config", str(config)], catch_exceptions=False)
    return result


def url_of(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def system_engine(migrated_engine):
    """A migrated database holding the repo's system config plus the system rows user data points at."""
    from control_plane.reconcile.controller import apply_config

    apply_config(migrated_engine, CONFIG, environment=None, actor="test")
    userdata.ensure_system_data(migrated_engine)
    return migrated_engine


def dump(engine, table: str, where: str | None = None) -> list[tuple]:
    """Every row of `table` (or its rows matching `where`), ordered by primary key."""
    insp = inspect(engine)
    cols = [c["name"] for c in insp.get_columns(table)]
    pk = insp.get_pk_constraint(table)["constrained_columns"] or cols
    sql = f"SELECT {', '.join(cols)} FROM {table}" + (f" WHERE {where}" if where else "") + f" ORDER BY {', '.join(pk)}"
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def system_dump(engine) -> dict[str, list[tuple]]:
    manifest = load_manifest(CONFIG)
    scopes = system_scopes(manifest, reflect_schema(engine))
    return {t: dump(engine, t, cond) for t, cond in scopes if t != "cplane_cleanup_runs"}


def count(engine, table: str, where: str = "TRUE") -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar_one()


def runs(engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT profile, status, actor, environment, rows_deleted, message "
                                 "FROM cplane_cleanup_runs ORDER BY id")).mappings().all()
    out = []
    for r in rows:
        r = dict(r)
        if isinstance(r["rows_deleted"], str):
            r["rows_deleted"] = json.loads(r["rows_deleted"])
        out.append(r)
    return out


# --- check --------------------------------------------------------------------------------------


def test_check_passes_on_repo_manifest(migrated_engine):
    db_url = url_of(migrated_engine)
    result = cli("cleanup", "check", url=db_url)
    assert result.exit_code == 0, result.output
    assert "cleanup check ok" in result.output
    data = json.loads(cli("cleanup", "check", "--format", "json", url=db_url).output)
    assert data["ok"] and data["problems"] == []
    assert data["classes"]["mixed"] == 2


def test_manifest_classifies_every_model_table():
    from control_plane.db.models import metadata

    manifest = load_manifest(CONFIG)
    assert set(metadata.tables) | {"alembic_version"} == set(manifest.tables)
    assert {t for t, e in manifest.tables.items() if e.data_class == "user"} == set(USER_TABLES)
    assert all(manifest.tables[t].data_class == "system" for t in manifest.tables if t.startswith("cplane_"))
    assert manifest.profiles["test-data"].allow_in_production is False
    assert MANIFEST.read_text().splitlines()[0] == "# yaml-language-server: $schema=../../schemas/CleanupManifest.json"


def test_check_fails_on_unclassified_table(migrated_engine):
    with migrated_engine.begin() as conn:
        conn.execute(text("CREATE TABLE stray_things (id INTEGER PRIMARY KEY, note TEXT)"))
    result = cli("cleanup", "check", url=url_of(migrated_engine))
    assert result.exit_code == 1
    assert "stray_things" in result.output and "not classified" in result.output
    # plan and apply refuse too, naming the table
    result = cli("cleanup", "plan", "--profile", "retention", url=url_of(migrated_engine))
    assert result.exit_code == 1 and "stray_things" in result.output


def _broken_config(tmp_path: Path, mutate) -> Path:
    root = tmp_path / "config"
    (root / "cleanup").mkdir(parents=True)
    doc = yaml.safe_load(MANIFEST.read_text())
    mutate(doc["spec"])
    (root / "cleanup" / "manifest.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return root


def test_check_fails_on_missing_table_column_rule_and_bad_condition(tmp_path, migrated_engine):
    def mutate(spec):
        spec["tables"].append({"table": "ghost_table", "class": "user", "reason": "not real"})
        spec["tables"] = [t for t in spec["tables"] if t["table"] != "sync_events"]
        for t in spec["tables"]:
            if t["table"] == "seed_keywords":
                t["systemRows"] = "no_such_col IS NULL"
        spec["retention"].append({"name": "bad-column", "table": "sessions", "column": "no_such_column", "expired": True})
        spec["retention"].append({"name": "on-system", "table": "plans", "column": "created_at", "maxAgeDays": 1})
        spec["profiles"][0]["rules"].append("no-such-rule")

    root = _broken_config(tmp_path, mutate)
    result = cli("cleanup", "check", "--format", "json", url=url_of(migrated_engine), config=root)
    assert result.exit_code == 1
    problems = json.loads(result.output)["problems"]
    text_ = "\n".join(f"{p['table']}: {p['message']}" for p in problems)
    assert "ghost_table: classified in the manifest but does not exist" in text_
    assert "sync_events: table in the database is not classified" in text_
    assert "seed_keywords: systemRows 'no_such_col IS NULL' is not a valid condition" in text_
    assert "sessions: retention rule bad-column: column no_such_column does not exist" in text_
    assert "plans: retention rule on-system would delete from a system table" in text_
    assert "unknown retention rule 'no-such-rule'" in text_


def test_check_and_plan_report_a_missing_schema_and_never_migrate(db_url, engine_for):
    from alembic.script import ScriptDirectory

    from control_plane.db.engine import alembic_config, make_engine

    migrations = sum(1 for _ in ScriptDirectory.from_config(alembic_config(make_engine("sqlite://"))).walk_revisions())
    for args in (("cleanup", "check"), ("cleanup", "plan", "--profile", "retention")):
        result = cli(*args, url=db_url)
        assert result.exit_code == 1, result.output
        assert result.output.strip().splitlines() == [
            f"error: the database schema is behind head ({migrations} migrations pending); "
            "run `cplane db upgrade` first (cleanup check and plan never migrate)"
        ]
    from sqlalchemy import inspect

    if db_url.startswith("sqlite"):
        assert not Path(db_url.removeprefix("sqlite:///")).exists()
    else:
        assert inspect(engine_for(db_url)).get_table_names() == []


def test_check_reports_validation_errors(tmp_path, sqlite_url):
    def mutate(spec):
        spec["tables"][0]["clas"] = "system"

    root = _broken_config(tmp_path, mutate)
    result = cli("cleanup", "check", url=sqlite_url, config=root)
    assert result.exit_code == 1
    assert "manifest.yaml:" in result.output and "unknown field 'clas'" in result.output


# --- plan ---------------------------------------------------------------------------------------


def test_plan_order_and_exit_codes(system_engine):
    url = url_of(system_engine)
    assert cli("cleanup", "plan", "--profile", "test-data", "--detailed-exitcode", url=url).exit_code == 0
    userdata.generate(system_engine, accounts=2)
    result = cli("cleanup", "plan", "--profile", "test-data", "--format", "json", "--detailed-exitcode", url=url)
    assert result.exit_code == 2, result.output
    plan = json.loads(result.output)
    order = [t["table"] for t in plan["tables"]]
    assert set(USER_TABLES) | {"seed_keywords", "ai_integration_settings"} == set(order)
    schema = reflect_schema(system_engine)
    position = {t: i for i, t in enumerate(order)}
    for table in order:
        for fk in schema.tables[table].fks:
            if fk.ref_table in position and fk.ref_table != table and fk.ondelete != "SET NULL":
                assert position[table] < position[fk.ref_table], f"{table} must go before {fk.ref_table}"
    assert position["users"] < position["accounts"]
    assert plan["total"] == sum(t["rows"] for t in plan["tables"]) > 0
    with system_engine.connect() as conn:
        for t in plan["tables"]:
            if t["table"] in USER_TABLES:
                assert t["rows"] == conn.execute(text(f"SELECT count(*) FROM {t['table']}")).scalar_one()
    assert cli("cleanup", "plan", "--profile", "nope", url=url).exit_code == 1


# --- apply: test-data ---------------------------------------------------------------------------


def test_test_data_leaves_exactly_the_system_data(system_engine):
    url = url_of(system_engine)
    userdata.generate(system_engine, accounts=3)
    before = system_dump(system_engine)
    assert count(system_engine, "seed_keywords", "account_id IS NOT NULL") > 0
    assert count(system_engine, "ai_integration_settings", "account_id IS NOT NULL") > 0
    planned = json.loads(cli("cleanup", "plan", "--profile", "test-data", "--format", "json", url=url).output)

    result = cli("cleanup", "apply", "--profile", "test-data", "--yes", "--batch-size", "700", "--actor", "ci",
                 "--format", "json", url=url)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    for table in USER_TABLES:
        assert count(system_engine, table) == 0, table
    assert system_dump(system_engine) == before  # byte for byte, mixed tables' system rows included
    assert count(system_engine, "seed_keywords") == len(before["seed_keywords"]) > 0
    assert count(system_engine, "ai_integration_settings") == len(before["ai_integration_settings"]) > 0
    assert out["total"] == planned["total"]
    assert {t["table"]: t["rows"] for t in planned["tables"]} == out["rows_deleted"]
    (run,) = runs(system_engine)
    assert run["profile"] == "test-data" and run["status"] == "succeeded" and run["actor"] == "ci"
    assert run["rows_deleted"] == out["rows_deleted"]
    # a second run has nothing left to do
    again = cli("cleanup", "apply", "--profile", "test-data", "--yes", "--format", "json", url=url)
    assert again.exit_code == 0 and json.loads(again.output)["total"] == 0


def test_apply_refuses_off_a_terminal_without_yes(system_engine):
    result = cli("cleanup", "apply", "--profile", "retention", url=url_of(system_engine))
    assert result.exit_code == 1 and "--yes" in result.output
    assert runs(system_engine) == []


# --- apply: retention ---------------------------------------------------------------------------


def _boundary_rows(engine, now: datetime) -> dict[str, tuple[list[str], list[str]]]:
    """Rows just past and just inside each retention limit: {table: (ids that go, ids that stay)}."""
    import uuid

    with engine.connect() as conn:
        def first(table):
            return uuid.UUID(str(conn.execute(text(f"SELECT id FROM {table} LIMIT 1")).scalar_one()))

        account, user, site = first("accounts"), first("users"), first("sites")
        config, integration = first("automation_configs"), first("site_integrations")
    expected: dict[str, tuple[list[str], list[str]]] = {}
    rows: list[tuple[str, dict]] = []

    def add(table: str, goes: bool, **values):
        rid = uuid.uuid4()
        rows.append((table, {"id": rid, **values}))
        expected.setdefault(table, ([], []))[0 if goes else 1].append(rid)

    for days, limit in ((89, 90), (91, 90)):
        ts = now - timedelta(days=days)
        goes = days > limit
        add("ai_task_logs", goes, account_id=account, operation="x", created_at=ts)
        add("credit_usage_logs", goes, account_id=account, operation="x", credits_used=1, created_at=ts)
        add("admin_log_entries", goes, user_id=user, action_time=ts, action_flag=1)
        add("automation_runs", goes, account_id=account, site_id=site, config_id=config, created_at=ts)
    for days in (29, 31):
        ts = now - timedelta(days=days)
        add("task_results", days > 30, task_id=f"t{uuid.uuid4()}", date_done=ts)
        add("group_results", days > 30, group_id=f"g{uuid.uuid4()}", date_done=ts)
        add("sync_events", days > 30, account_id=account, integration_id=integration, event_type="push",
            created_at=ts)
    add("task_results", False, task_id="not-done", date_done=None)
    for delta, goes in ((timedelta(minutes=-1), True), (timedelta(hours=1), False)):
        add("sessions", goes, user_id=user, session_key_hash=uuid.uuid4().hex, expires_at=now + delta)
        add("password_reset_tokens", goes, user_id=user, token_hash=uuid.uuid4().hex, expires_at=now + delta)
    userdata.insert_rows(engine, {t: [r for tt, r in rows if tt == t] for t in {t for t, _ in rows}})
    return expected


def _ids(engine, table: str) -> set:
    import uuid

    with engine.connect() as conn:
        return {v if isinstance(v, uuid.UUID) else uuid.UUID(str(v))
                for v in conn.execute(text(f"SELECT id FROM {table}")).scalars()}


def test_retention_deletes_exactly_rows_past_their_age(system_engine):
    url = url_of(system_engine)
    now = datetime.now(UTC)
    userdata.generate(system_engine, accounts=1, now=now - timedelta(minutes=5))
    expected = _boundary_rows(system_engine, now)
    before_ids = {t: _ids(system_engine, t) for t in expected}
    other = {t: count(system_engine, t) for t in ("keywords", "content", "credit_transactions", "accounts")}
    system_before = system_dump(system_engine)

    result = cli("cleanup", "apply", "--profile", "retention", "--yes", url=url)
    assert result.exit_code == 0, result.output
    for table, (goes, stays) in expected.items():
        after = _ids(system_engine, table)
        assert not set(goes) & after, f"{table}: rows past the limit must go"
        assert set(stays) <= after, f"{table}: rows inside the limit must stay"
    assert {t: count(system_engine, t) for t in other} == other
    assert system_dump(system_engine) == system_before
    (run,) = runs(system_engine)
    assert run["status"] == "succeeded"
    assert run["rows_deleted"]["ai_task_logs"] == len(before_ids["ai_task_logs"] - _ids(system_engine, "ai_task_logs"))


def test_retention_exact_set_with_fixed_now(system_engine):
    """Against the generated year of data: exactly the rows strictly older than the cutoff go."""
    now = datetime.now(UTC).replace(microsecond=0)
    userdata.generate(system_engine, accounts=2, now=now)
    manifest = load_manifest(CONFIG)
    exact = now - timedelta(days=90)
    with system_engine.begin() as conn:  # a row exactly at the limit stays
        conn.execute(text("UPDATE ai_task_logs SET created_at = :t WHERE id IN (SELECT id FROM ai_task_logs LIMIT 1)"),
                     {"t": exact if system_engine.dialect.name == "postgresql" else exact.strftime("%Y-%m-%d %H:%M:%S.%f")})
    expect_left = {}
    for rule in manifest.rules.values():
        cutoff = now if rule.expired else now - timedelta(days=rule.max_age_days)
        with system_engine.connect() as conn:
            values = conn.execute(text(f"SELECT {rule.column} FROM {rule.table}")).scalars().all()
        expect_left[rule.table] = sum(1 for v in values if v is None or _aware(v) >= cutoff)
    result = execute(system_engine, manifest, "retention", batch_size=97, now=now, actor="t")
    assert result.total > 0
    for table, left in expect_left.items():
        assert count(system_engine, table) == left, table


def _aware(value) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- guards -------------------------------------------------------------------------------------


def test_production_guard(system_engine, monkeypatch):
    url = url_of(system_engine)
    userdata.generate(system_engine, accounts=1)
    result = cli("cleanup", "apply", "--profile", "retention", "--yes", "--env", "production", url=url)
    assert result.exit_code == 1
    assert "production" in result.output and "--allow-production" in result.output
    assert runs(system_engine) == []

    monkeypatch.setenv("CPLANE_ENV", "production")
    result = cli("cleanup", "apply", "--profile", "test-data", "--yes", "--allow-production", url=url)
    assert result.exit_code == 1 and "allowInProduction" in result.output
    assert count(system_engine, "accounts") == 1

    result = cli("cleanup", "apply", "--profile", "retention", "--yes", "--allow-production", url=url)
    assert result.exit_code == 0, result.output
    (run,) = runs(system_engine)
    assert run["environment"] == "production" and run["status"] == "succeeded"


# --- restartability -----------------------------------------------------------------------------


def test_interrupted_run_finishes_when_run_again(system_engine):
    userdata.generate(system_engine, accounts=2)
    before = system_dump(system_engine)
    manifest = load_manifest(CONFIG)

    class Boom(Exception):
        pass

    def explode(n):
        if n == 4:
            raise Boom("killed after 4 batches")

    with pytest.raises(Boom):
        execute(system_engine, manifest, "test-data", batch_size=100, on_batch=explode)
    assert count(system_engine, "accounts") == 2  # parents still there: deleted last
    assert runs(system_engine)[0]["status"] == "failed"
    result = cli("cleanup", "apply", "--profile", "test-data", "--yes", url=url_of(system_engine))
    assert result.exit_code == 0, result.output
    for table in USER_TABLES:
        assert count(system_engine, table) == 0, table
    assert system_dump(system_engine) == before


def test_killed_subprocess_run_finishes_when_run_again(pg_engine):
    """A real SIGKILL in the middle of a PostgreSQL cleanup, then the same command again."""
    from control_plane.reconcile.controller import apply_config

    apply_config(pg_engine, CONFIG, environment=None, actor="test")
    userdata.ensure_system_data(pg_engine)
    userdata.generate(pg_engine, accounts=4)
    before = system_dump(pg_engine)
    total_before = sum(count(pg_engine, t) for t in USER_TABLES)
    url = url_of(pg_engine)
    cmd = [sys.executable, "-c", "from control_plane.cli.main import main; main()", "cleanup", "apply",
           "--profile", "test-data", "--yes", "--batch-size", "20", "--database-url", url, "--config", str(CONFIG)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ), cwd=REPO)
    deadline = time.monotonic() + 60
    attributes = count(pg_engine, "content_attributes")
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if count(pg_engine, "content_attributes") < attributes // 2:  # killed in the middle of a table
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the cleanup finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = sum(count(pg_engine, t) for t in USER_TABLES)
    assert 0 < left < total_before
    assert runs(pg_engine)[-1]["status"] == "running"  # the killed run never finished

    result = cli("cleanup", "apply", "--profile", "test-data", "--yes", url=url)
    assert result.exit_code == 0, result.output
    for table in USER_TABLES:
        assert count(pg_engine, table) == 0, table
    assert system_dump(pg_engine) == before
    assert [r["status"] for r in runs(pg_engine)[-2:]] == ["interrupted", "succeeded"]


# --- verification -------------------------------------------------------------------------------


def test_verification_fails_loudly_when_system_data_changes(system_engine):
    """A cascade into system rows (here: a system seed keyword made to look like a user row's child)."""
    manifest = load_manifest(CONFIG)
    userdata.generate(system_engine, accounts=1)
    with system_engine.connect() as conn:
        account = conn.execute(text("SELECT id FROM accounts LIMIT 1")).scalar_one()
    # Corrupt the manifest in memory: treat every seed keyword as system; an account's seed then
    # cascades with its account and the verification must notice.
    manifest.tables["seed_keywords"] = manifest.tables["seed_keywords"].model_copy(update={"system_rows": "TRUE"})
    with system_engine.begin() as conn:
        conn.execute(text("UPDATE keywords SET seed_keyword_id = NULL"))
    assert count(system_engine, "seed_keywords", "account_id IS NOT NULL") > 0
    from control_plane.cleanup.executor import VerificationFailed

    with pytest.raises(VerificationFailed, match="seed_keywords"):
        execute(system_engine, manifest, "test-data")
    assert runs(system_engine)[-1]["status"] == "failed"
    assert account is not None


def test_plan_builds_for_every_profile_on_sqlite_and_pg(system_engine):
    manifest = load_manifest(CONFIG)
    for profile in manifest.profiles:
        plan = build_plan(system_engine, manifest, profile)
        assert plan.total == 0


def test_a_second_cleanup_is_refused_while_one_runs(system_engine):
    """The cleanup lock: database-wide on PostgreSQL (advisory), a lock file beside SQLite."""
    from control_plane.cleanup.executor import CLEANUP_LOCK_ID, CLEANUP_LOCK_MESSAGE
    from control_plane.db.dialect import for_dialect
    from control_plane.errors import CplaneError

    url = system_engine.url.render_as_string(hide_password=False)
    with for_dialect(system_engine).session_lock(system_engine, CLEANUP_LOCK_ID, "cleanup", CplaneError("held by the test")):
        refused = cli("cleanup", "apply", "--profile", "retention", "--yes", url=url)
        assert refused.exit_code == 1
        assert CLEANUP_LOCK_MESSAGE in refused.output
    assert runs(system_engine) == []  # the refused run recorded nothing
    assert cli("cleanup", "apply", "--profile", "retention", "--yes", url=url).exit_code == 0
