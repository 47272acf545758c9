"""The command line's contract: help, version, one-line errors for bad databases, db upgrade."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from control_plane import __version__

CPLANE = [sys.executable, "-m", "control_plane"]


def run(*args, cwd=None):
    return subprocess.run([*CPLANE, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_help_and_version():
    assert run("--help").returncode == 0
    version = run("--version")
    assert version.returncode == 0 and __version__ in version.stdout
    for command in ("validate", "plan", "apply", "status", "history", "export", "db", "cleanup", "accounts", "serve"):
        assert run(command, "--help").returncode == 0, command


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://user:hunter2@nohost.invalid/db", "cannot connect to postgresql+psycopg://user:***@nohost.invalid/db"),
        ("mysql://user:hunter2@localhost/db", "unsupported database scheme 'mysql'"),
        ("postgresql://postgres@127.0.0.1:1/db", "cannot connect to postgresql+psycopg://postgres@127.0.0.1:1/db"),
        ("not a url", "invalid DATABASE_URL"),
    ],
)
def test_bad_database_url_is_one_line_and_exit_1(url, expected, tmp_path):
    result = run("db", "upgrade", "--database-url", url, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_db_upgrade_on_default_sqlite_twice(tmp_path):
    first = run("db", "upgrade", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (Path(tmp_path) / "cplane.db").exists()
    assert "upgraded (empty) ->" in first.stdout
    second = run("db", "upgrade", cwd=tmp_path)
    assert second.returncode == 0 and "already at" in second.stdout


def test_postgres_scheme_alias(pg_url):
    url = pg_url.replace("postgresql://", "postgres://")
    result = run("db", "upgrade", "--database-url", url)
    assert result.returncode == 0, result.stderr
    assert "postgresql+psycopg://" in result.stdout
