"""Read-only commands are read-only: validate, plan, status, history and export never write to the
database (no migrations, no bookkeeping, no lock rows), on PostgreSQL and SQLite. A database whose
schema is missing or behind is planned against as it is and the plan says how many migrations
apply will run first; `serve` refuses such a database instead of migrating it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect, text

from control_plane.cli.main import main as cplane_main

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CPLANE_SECRET_KEY", "read-only-tests-secret-key")
    monkeypatch.delenv("CPLANE_ENV", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)


def cli(*args: str, url: str):
    return CliRunner().invoke(cplane_main, [*args, "--database-url", url, "--config", str(CONFIG)])


def migrations_in_scripts() -> int:
    from alembic.script import ScriptDirectory

    from control_plane.db.engine import alembic_config, make_engine

    return sum(1 for _ in ScriptDirectory.from_config(alembic_config(make_engine("sqlite://"))).walk_revisions())


def read_only_commands(out_dir: Path) -> list[tuple[str, ...]]:
    return [
        ("validate",),
        ("plan",),
        ("plan", "--format", "markdown"),
        ("plan", "--format", "json"),
        ("plan", "--detailed-exitcode"),
        ("status",),
        ("status", "--format", "json"),
        ("history",),
        ("history", "--format", "json"),
        ("export", "--out", str(out_dir)),
        ("plan", "--at", "2030-01-01T00:00:00Z"),
        ("rollback", "--to", "1"),
        ("rollback", "--to", "1", "--format", "json"),
    ]


def run_all(url: str, tmp_path: Path) -> dict[tuple[str, ...], object]:
    results = {}
    for i, args in enumerate(read_only_commands(tmp_path / "export")):
        if args[0] == "export":
            args = ("export", "--out", str(tmp_path / f"export-{i}"))
        result = cli(*args, url=url)
        assert "Traceback" not in result.output, (args, result.output)
        results[args] = result
    return results


def database_content(engine) -> dict[str, tuple[int, str]]:
    """Every table's row count and a digest of its rows, in a stable order."""
    content = {}
    with engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            rows = conn.execute(text(f'SELECT * FROM "{table}"')).all()
            digest = hashlib.sha256("\n".join(sorted(repr(tuple(r)) for r in rows)).encode()).hexdigest()
            content[table] = (len(rows), digest)
    return content


def pg_relations(engine) -> list[str]:
    """Every relation (table, sequence, index, view) in the public schema."""
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' ORDER BY 1"
        )).scalars().all()


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def test_read_only_commands_leave_an_empty_database_empty(db_url, engine_for, tmp_path):
    results = run_all(db_url, tmp_path)
    if db_url.startswith("sqlite"):
        path = sqlite_path(db_url)
        assert not path.exists(), "reading a SQLite database that does not exist must not create it"
        assert not list(path.parent.glob(f"{path.name}*")), "no -wal, -shm or lock files either"
    else:
        engine = engine_for(db_url)
        assert pg_relations(engine) == []
    # The commands still did their job, against an empty database.
    assert results[("validate",)].exit_code == 0
    assert results[("history",)].exit_code == 0 and "No applies yet." in results[("history",)].output
    assert json.loads(results[("history", "--format", "json")].output) == []
    assert results[("plan", "--detailed-exitcode")].exit_code == 2
    assert results[("rollback", "--to", "1")].exit_code == 1 and "no kept rows" in results[("rollback", "--to", "1")].output


def test_read_only_commands_on_an_existing_empty_sqlite_file(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    url = f"sqlite:///{path}"
    run_all(url, tmp_path)
    assert path.stat().st_size == 0, "the empty file stays empty: no tables, no header written"
    assert sorted(p.name for p in tmp_path.glob("empty.db*")) == ["empty.db"]


def test_read_only_commands_write_zero_rows_to_a_migrated_database(migrated_engine, tmp_path):
    from control_plane.reconcile.controller import apply_config

    apply_config(migrated_engine, CONFIG, actor="test")
    with migrated_engine.begin() as conn:  # drift, so that plan and status have something to report
        conn.execute(text("UPDATE plans SET max_sites = max_sites + 1 WHERE slug = 'pro'"))
    url = migrated_engine.url.render_as_string(hide_password=False)
    before = database_content(migrated_engine)
    results = run_all(url, tmp_path)
    assert database_content(migrated_engine) == before
    assert results[("status",)].exit_code == 2 and "1 update" in results[("status",)].output
    assert len(json.loads(results[("history", "--format", "json")].output)) == 1
    assert results[("rollback", "--to", "1")].exit_code == 0, results[("rollback", "--to", "1")].output
    assert "~ Plan/pro" in results[("rollback", "--to", "1")].output  # back to run 1: the drift healed


def test_plan_on_an_empty_database_creates_everything_and_says_migrations_are_pending(db_url, engine_for, tmp_path):
    pending = migrations_in_scripts()
    note = f"Schema: {pending} migrations pending (apply runs them first)"

    text_plan = cli("plan", url=db_url)
    assert text_plan.exit_code == 0, text_plan.output
    assert note in text_plan.stdout.splitlines()
    markdown = cli("plan", "--format", "markdown", url=db_url)
    assert note in markdown.stdout.splitlines()
    before = json.loads(cli("plan", "--format", "json", url=db_url).stdout)
    assert before["pending_migrations"] == pending and before["schema"] == note
    assert {c["action"] for c in before["changes"]} == {"create"}

    # The same database once migrated (still empty): exactly the same creates, nothing pending.
    assert cli("db", "upgrade", url=db_url).exit_code == 0
    after = json.loads(cli("plan", "--format", "json", url=db_url).stdout)
    assert after["pending_migrations"] == 0 and "schema" not in after
    assert sorted((c["kind"], c["name"]) for c in before["changes"]) == \
        sorted((c["kind"], c["name"]) for c in after["changes"])
    assert before["summary"] == after["summary"] and before["summary"]["create"] > 0
    assert "migrations pending" not in cli("plan", url=db_url).stdout


def test_saved_plan_of_an_empty_database_applies_after_the_migrations(db_url, engine_for, tmp_path):
    planfile = tmp_path / "plan.json"
    assert cli("plan", "--out", str(planfile), url=db_url).exit_code == 0
    applied = cli("apply", str(planfile), "--auto-approve", url=db_url)
    assert applied.exit_code == 0, applied.output
    assert "Apply complete." in applied.stdout
    status = cli("status", url=db_url)
    assert status.exit_code == 0, status.output
    assert "migrations pending" not in status.output and "in sync" in status.output


def test_status_reports_pending_migrations_and_is_out_of_sync(db_url):
    pending = migrations_in_scripts()
    result = cli("status", url=db_url)
    assert result.exit_code == 2
    assert f"schema:          {pending} migrations pending (apply runs them first)" in result.stdout
    assert "OUT OF SYNC" in result.stdout
    info = json.loads(cli("status", "--format", "json", url=db_url).stdout)
    assert info["pending_migrations"] == pending and info["schema_revision"] is None
    assert info["in_sync"] is False and info["last_apply"] is None
    assert info["pending"]["create"] > 0 and set(info["rows"].values()) == {0}


def test_serve_refuses_a_database_behind_head_with_one_line(db_url, engine_for, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "control_plane", "serve", "--port", "0", "--database-url", db_url],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: the database schema is behind head") and "cplane db upgrade" in lines[0]
    assert proc.stdout == ""
    if db_url.startswith("sqlite"):
        assert not sqlite_path(db_url).exists()
    else:
        assert pg_relations(engine_for(db_url)) == []
