"""The raw-driver no-change plan (cli/entry.py, db/raw.py, reconcile/nochange.py): whole `cplane`
processes, on PostgreSQL and SQLite. After an apply, `cplane plan` answers `No changes` without
importing SQLAlchemy, click or the kinds, with the bytes and exit code the click command prints;
anything else goes to the click command and is correct there."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from control_plane.cli import entry
from control_plane.db import raw
from control_plane.plans.model import Plan
from control_plane.reconcile.controller import apply_config
from control_plane.render.plan import render_text
from control_plane.render.words import no_change_text

SECRETS = {"STRIPE_SECRET_KEY": "sk_1", "STRIPE_WEBHOOK_SECRET": "wh_1", "PAYPAL_CLIENT_SECRET": "pp_1",
           "PAYPAL_WEBHOOK_ID": "pw_1", "OPENAI_API_KEY": "oa_1", "RUNWARE_API_KEY": "rw_1"}
# A `cplane` process (the console script's entry, or the click command alone: today's path), which
# writes to $REPORT the heavy modules it imported.
PROCESS = """
import atexit, json, os, sys
atexit.register(lambda: open(os.environ["REPORT"], "w").write(json.dumps(
    {m: m in sys.modules for m in ("sqlalchemy", "click", "pydantic", "control_plane.kinds.registry")})))
sys.argv[0] = "cplane"
if os.environ.get("CLICK_ONLY"):
    from control_plane.cli.main import main
    main(prog_name="cplane")
else:
    from control_plane.cli.entry import main
    main()
"""


def cplane(args, tmp_path, *, click_only=False):
    report = tmp_path / "imported.json"
    env = {**os.environ, "REPORT": str(report), **({"CLICK_ONLY": "1"} if click_only else {})}
    proc = subprocess.run([sys.executable, "-c", PROCESS, *args], capture_output=True, text=True, env=env,
                          timeout=120)
    return proc, json.loads(report.read_text())


@pytest.fixture
def applied(config_tree, migrated_engine, monkeypatch, db_url):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    assert apply_config(migrated_engine, config_tree.root, actor="test").applied
    return config_tree, migrated_engine, ["--config", str(config_tree.root), "--database-url", db_url]


def without_time(output: str) -> str:
    return re.sub(r'"created_at": "[^"]*"', '"created_at": ""', output)


@pytest.mark.parametrize("extra", [[], ["--detailed-exitcode"], ["--debug", "--no-color"],
                                   ["--format=markdown", "--compact", "--artifact", "https://ci/plan"]])
def test_a_no_change_plan_imports_no_sqlalchemy_and_prints_what_the_command_prints(applied, tmp_path, extra):
    tree, _, where = applied
    fast, imported = cplane(["plan", *where, *extra], tmp_path)
    assert not any(imported.values()), imported
    today, imported = cplane(["plan", *where, *extra], tmp_path, click_only=True)
    assert imported["sqlalchemy"] and imported["click"]
    assert (fast.returncode, without_time(fast.stdout), fast.stderr) == \
        (today.returncode, without_time(today.stdout), today.stderr)
    assert fast.returncode == 0 and "No changes" in fast.stdout


def test_the_shared_options_before_the_command_and_from_the_environment(applied, tmp_path, monkeypatch):
    tree, _, (_, config, _, url) = applied
    monkeypatch.setenv("CPLANE_CONFIG_DIR", config)
    monkeypatch.setenv("DATABASE_URL", url)
    fast, imported = cplane(["--debug", "plan"], tmp_path)
    assert not imported["sqlalchemy"] and fast.returncode == 0
    assert fast.stdout == "No changes. The database matches the configuration.\n"
    assert "nothing changed since the last apply" in fast.stderr


def test_a_write_by_sql_goes_to_the_full_plan_which_names_the_drift(applied, tmp_path):
    tree, engine, where = applied
    with engine.begin() as conn:
        conn.execute(text("UPDATE plans SET name = 'Edited by hand' WHERE slug = 'test-plan'"))
    proc, imported = cplane(["plan", *where, "--detailed-exitcode"], tmp_path)
    assert imported["sqlalchemy"] and proc.returncode == 2, proc.stderr
    assert "test-plan" in proc.stdout and "Edited by hand" in proc.stdout


def test_a_changed_file_or_secret_goes_to_the_full_plan(applied, tmp_path, monkeypatch):
    tree, _, where = applied
    tree.test_plan(price="29")
    proc, imported = cplane(["plan", *where, "--detailed-exitcode"], tmp_path)
    assert imported["sqlalchemy"] and proc.returncode == 2 and "price_monthly" in proc.stdout
    tree.test_plan()
    monkeypatch.setenv("OPENAI_API_KEY", "oa_2")
    proc, imported = cplane(["plan", *where, "--detailed-exitcode"], tmp_path)
    assert imported["sqlalchemy"] and proc.returncode == 2, proc.stdout


def test_an_unreachable_database_or_unknown_url_is_reported_by_the_command(config_tree, tmp_path):
    for url in ("postgresql://postgres@127.0.0.1:1/none", "mysql://x@y/z"):
        proc, imported = cplane(["plan", "--config", str(config_tree.root), "--database-url", url], tmp_path)
        assert proc.returncode == 1 and imported["click"]
        assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_sqlite_file_that_does_not_exist_is_not_created(config_tree, tmp_path):
    missing = tmp_path / "none.db"
    proc, _ = cplane(["plan", "--config", str(config_tree.root), "--database-url", f"sqlite:///{missing}"], tmp_path)
    assert proc.returncode == 0 and not missing.exists()


@pytest.mark.parametrize("args", [
    ["plan", "--out", "p.json"], ["plan", "--at", "2027-01-01T00:00:00Z"], ["plan", "--adopt"],
    ["plan", "--no-fast-path"], ["plan", "--help"], ["-h"], ["reconcile", "plan"], ["plan", "--format", "xml"], ["plan", "--format", "json"],
    ["plan", "--format"], ["plan", "--env", "--debug"], ["plan", "--debug=1"], ["plan", "--", "x"], ["plan", "-x"],
    ["apply"], ["validate"], ["--version"], ["plan", "--config="],
])
def test_command_lines_the_raw_path_leaves_to_the_command(args):
    assert entry.parse_plan(args) is None


def test_a_config_option_naming_a_file_is_left_to_the_command(tmp_path):
    (tmp_path / "f.yaml").write_text("")
    assert entry.parse_plan(["plan", "--config", str(tmp_path / "f.yaml")]) is None
    assert entry.parse_plan(["--config", str(tmp_path / "f.yaml"), "plan", "--config", str(tmp_path)]) is None
    options = entry.parse_plan(["--config", "a", "--env", "x", "plan", "--config=b", "--format=markdown"])
    assert (str(options["config_dir"]), options["environment"], options["format"]) == ("b", "x", "markdown")


@pytest.mark.parametrize("url", [
    "sqlite:///cplane.db", "sqlite:////tmp/x.db", "sqlite:///a%20b.db", "sqlite+pysqlite:///x.db",
    "postgresql://postgres@127.0.0.1:5432/test", "postgresql+psycopg://u:p%40x@h:1/db", "postgresql:///db",
    "postgresql://h/db?sslmode=require", "postgresql://u@h", "postgresql://u:@h/db",
])
def test_urls_read_as_sqlalchemy_reads_them(url):
    target = raw.parse(url)
    parsed = make_url(url)
    assert target is not None
    assert (target.dialect, target.database) == (parsed.get_backend_name(), parsed.database)
    if target.dialect == "postgresql":
        expected = {"user": parsed.username, "password": parsed.password, "host": parsed.host,
                    "port": str(parsed.port) if parsed.port else None, "dbname": parsed.database, **parsed.query}
        assert target.params == {k: v for k, v in expected.items() if v}


@pytest.mark.parametrize("url", [
    "sqlite://", "sqlite:///:memory:", "sqlite:///file:x.db?mode=ro&uri=true", "sqlite:///x.db?timeout=3",
    "mysql://u@h/db", "postgresql+psycopg2://h/db", "postgresql://h/db?options=-csearch_path%3Dx",
    "postgresql://u:p@ss@h/db", "postgresql://h1,h2/db", "postgresql://[::1]/db", "not a url",
])
def test_urls_the_raw_path_leaves_to_sqlalchemy(url):
    target = raw.parse(url)
    assert target is None or raw.connect(target) is None  # (SQLite in memory: nothing recorded there)


@pytest.mark.parametrize("warnings", [[], ["STRIPE_SECRET_KEY is not set"], ["a", "b: c"]])
def test_the_no_change_words_are_render_texts(warnings):
    assert no_change_text(warnings) == render_text(Plan(warnings=list(warnings)))
    assert no_change_text(warnings) == render_text(Plan(warnings=list(warnings)), colour=True, compact=True)


# --- the no-op apply ------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [["--auto-approve"], [], ["--auto-approve", "--actor", "ci", "--lock-timeout", "2s"]])
def test_a_no_op_apply_imports_no_sqlalchemy_and_prints_what_the_command_prints(applied, tmp_path, extra):
    tree, _, where = applied
    fast, imported = cplane(["apply", *where, *extra], tmp_path)
    assert not any(imported.values()), imported
    today, imported = cplane(["apply", *where, *extra], tmp_path, click_only=True)
    assert imported["sqlalchemy"]
    assert (fast.returncode, fast.stdout, fast.stderr) == (today.returncode, today.stdout, today.stderr)
    assert fast.returncode == 0 and "No changes" in fast.stdout and fast.stderr == "apply: locking\n"


def test_a_no_op_apply_while_another_holds_the_lock_is_refused_by_the_command(applied, tmp_path):
    from control_plane.apply.lock import LOCK_MESSAGE, apply_lock

    tree, engine, where = applied
    with engine.begin() as conn, apply_lock(conn):
        proc, imported = cplane(["apply", *where, "--auto-approve"], tmp_path)
        today, _ = cplane(["apply", *where, "--auto-approve"], tmp_path, click_only=True)
    assert imported["sqlalchemy"] and proc.returncode == 1 and LOCK_MESSAGE in proc.stderr
    assert (proc.returncode, proc.stdout, proc.stderr) == (today.returncode, today.stdout, today.stderr)
    assert entry.fast_answer(["apply", *where]) is not None  # once the lock is free


def test_a_config_that_mentions_sync_windows_is_applied_by_the_command(applied):
    tree, engine, where = applied
    path = tree.root / "roles" / sorted(p.name for p in (tree.root / "roles").iterdir())[0]
    path.write_text(path.read_text() + "# a SyncWindow could be declared here\n")
    assert apply_config(engine, tree.root, actor="test").applied is False  # records the tree again
    assert entry.fast_answer(["plan", *where]) is not None
    assert entry.fast_answer(["apply", *where, "--auto-approve"]) is None


@pytest.mark.parametrize("args", [["apply", "plan.json"], ["apply", "--format", "json"], ["apply", "--adopt"],
                                  ["apply", "--lock-timeout", "soon"], ["apply", "--no-fast-path"]])
def test_apply_command_lines_the_raw_path_leaves_to_the_command(args):
    assert entry.parse(args) is None


@pytest.mark.parametrize("colour", [False, True])
def test_the_apply_line_is_the_reporters(capsys, colour):
    from control_plane.cli.progress import ApplyReporter

    ApplyReporter(bar=False, colour=colour).phase("locking")
    assert capsys.readouterr().err == entry.apply_says("locking", colour)
