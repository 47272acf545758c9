"""Issue 12 items 5, 6 and 8: exit codes of usage errors, colour, lock timeouts, JSON errors,
history and `history show`, dirty revisions, and a quick start that leaves `git status` clean."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from helpers import REPO, cplane_cmd, libpq_url

from control_plane.cli.main import main

CONFIG = REPO / "config"


def run(*args, cwd=None, env=None, timeout=300):
    return subprocess.run(cplane_cmd(*args), capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def cli(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def clean_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CPLANE_ENV", "NO_COLOR")}
    env.setdefault("CPLANE_SECRET_KEY", "conventions-key")
    return {**env, **extra}


# --- item 5: usage errors, colour, JSON errors ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["plan", "--formt", "x", "--detailed-exitcode"], "No such option '--formt'"),
        (["plan", "--format", "x", "--detailed-exitcode"], "Invalid value for '--format'"),
        (["history", "show"], "Missing argument 'ID'"),
        (["apply", "--lock-timeout", "soon"], "is not a duration"),
    ],
)
def test_usage_errors_exit_1_on_one_line_with_help_hint(args, expected, tmp_path):
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]
    command = " ".join(["cplane", *[a for a in args if not a.startswith("-")][:2]]).replace(" x", "").replace(" soon", "")
    assert f"Try '{command} --help' for help." in lines[0]
    assert result.stdout == "" and "Traceback" not in result.stderr


def test_usage_error_with_format_json_prints_the_error_on_stdout(tmp_path):
    result = run("plan", "--format", "json", "--formt", "x", cwd=tmp_path)
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["code"] == "usage_error"
    assert len(result.stderr.strip().splitlines()) == 1


def test_errors_carry_codes_in_json_and_are_printed_once(tmp_path):
    result = run("history", "show", "7", "--format", "json", "--database-url", f"sqlite:///{tmp_path / 'x.db'}",
                 cwd=tmp_path)
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"error": {"code": "not_found", "message": result.stderr.strip()[len("error: "):]}}
    assert result.stderr.count("error") == 1


def test_plan_errors_are_printed_once(config_tree, tmp_path):
    config_tree.test_plan(annotations='{"cplane/prevent-destroy": "true"}')
    url = f"sqlite:///{tmp_path / 'p.db'}"
    assert cli("apply", "--auto-approve", "--config", str(config_tree.root), "--database-url", url).exit_code == 0
    config_tree.remove("plans/test-plan.yaml")
    result = run("plan", "--config", str(config_tree.root), "--database-url", url, cwd=tmp_path, env=clean_env())
    assert result.returncode == 1
    assert "prevent-destroy" in result.stderr and "prevent-destroy" not in result.stdout
    assert [ln for ln in result.stderr.splitlines() if ln.lower().startswith("error")] == result.stderr.splitlines()[-1:]
    as_json = run("plan", "--format", "json", "--config", str(config_tree.root), "--database-url", url, cwd=tmp_path,
                  env=clean_env())
    data = json.loads(as_json.stdout)  # one JSON document: the error, and the plan it is about
    assert data["error"]["code"] == "plan_error" and data["plan"]["errors"]


def test_status_json_against_a_refused_port(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run("status", "--format", "json", "--database-url", f"postgresql://postgres:pw@127.0.0.1:{port}/db",
                 cwd=tmp_path)
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["reachable"] is False and data["error"]["code"] == "database_unavailable"
    assert "pw" not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _under_pty(args: list[str], env: dict[str, str], cwd) -> str:
    """Everything the command writes to a pseudo-terminal (stdout and stderr)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, env=env, cwd=cwd)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=300)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_colour_only_on_a_terminal_without_no_color(config_tree, tmp_path):
    args = cplane_cmd("plan", "--config", str(config_tree.root), "--database-url", f"sqlite:///{tmp_path / 'c.db'}")
    assert "\x1b[" in _under_pty(args, clean_env(), tmp_path)  # the yardstick: a terminal gets colour
    assert "\x1b[" not in _under_pty(args, clean_env(NO_COLOR="1"), tmp_path)
    assert "\x1b[" not in _under_pty([*args, "--no-color"], clean_env(), tmp_path)
    assert "\x1b[" not in run(*args[len(cplane_cmd()):], cwd=tmp_path, env=clean_env()).stdout  # not a terminal


def test_version_and_completion():
    version = run("version")
    assert version.returncode == 0 and version.stdout.startswith("cplane ")
    for shell, marker in (("bash", "complete "), ("zsh", "#compdef cplane"), ("fish", "complete ")):
        script = run("completion", shell)
        assert script.returncode == 0 and marker in script.stdout and "_CPLANE_COMPLETE" in script.stdout, shell
    assert run("completion", "tcsh").returncode == 1


# --- item 5: --lock-timeout ---------------------------------------------------------------------


class HeldApplyLock:
    """The apply lock held by someone else (as a first apply holds it), released on demand."""

    def __init__(self, url: str):
        from control_plane.apply.execute import APPLY_LOCK_ID

        self.url = url
        if url.startswith("sqlite"):
            path = Path(url.removeprefix("sqlite:///"))
            self.handle = open(path.with_name(f"{path.name}.apply-lock"), "a+")
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            self.conn = psycopg.connect(url)
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (APPLY_LOCK_ID,))

    def release(self) -> None:
        if self.url.startswith("sqlite"):
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
        else:
            self.conn.commit()
            self.conn.close()


def test_apply_with_lock_timeout_waits_for_the_lock_then_succeeds(migrated_engine, tmp_path):
    url = libpq_url(migrated_engine) if migrated_engine.dialect.name == "postgresql" else str(migrated_engine.url)
    held = HeldApplyLock(url)
    try:
        refused = run("apply", "--auto-approve", "--config", str(CONFIG), "--database-url", url, cwd=tmp_path,
                      env=clean_env())
        assert refused.returncode == 1 and "apply lock held" in refused.stderr  # default 0: fails at once
        short = run("apply", "--auto-approve", "--lock-timeout", "300ms", "--config", str(CONFIG), "--database-url", url,
                    cwd=tmp_path, env=clean_env())
        assert short.returncode == 1 and "waited 0.3s" in short.stderr
        proc = subprocess.Popen(
            cplane_cmd("apply", "--auto-approve", "--lock-timeout", "5s", "--config", str(CONFIG), "--database-url", url),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=clean_env())
        seen = []
        for line in proc.stderr:  # wait until it says it is waiting for the lock
            seen.append(line)
            if "waiting up to 5s" in line:
                break
        else:
            pytest.fail(f"apply never waited for the lock: {''.join(seen)}")
        assert proc.poll() is None
    finally:
        held.release()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, "".join(seen) + err
    assert "Apply complete." in out
    phases = [ln.split(":")[1].split()[0] for ln in "".join(seen).splitlines() + err.splitlines() if ln.startswith("apply:")]
    for phase in ("migrating", "locking", "writing", "committing"):
        assert phase in phases, phases
    assert re.search(r"^apply: writing Plan: \d+ row\(s\) \(\d+ create\)$", err, re.M), err


def test_cleanup_apply_takes_lock_timeout(tmp_path):
    result = run("cleanup", "apply", "--help")
    assert "--lock-timeout" in result.stdout


# --- item 6: history -------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_history_lists_runs_and_shows_their_plans(config_tree, db_url):
    root = str(config_tree.root)
    assert cli("apply", "--auto-approve", "--config", root, "--database-url", db_url).exit_code == 0
    config_tree.test_plan(price="29")
    plan_file = config_tree.root.parent / "plan.json"
    assert cli("plan", "--config", root, "--database-url", db_url, "--out", str(plan_file)).exit_code == 0
    assert cli("apply", str(plan_file), "--auto-approve", "--database-url", db_url).exit_code == 0

    entries = json.loads(cli("history", "--format", "json", "--database-url", db_url).stdout)
    assert [e["id"] for e in entries] == [2, 1]
    assert [e["kind"] for e in entries] == ["saved-plan", "apply"]
    for e in entries:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["started_at"]), e["started_at"]
        assert len(e["config_digest"]) == 64
    text = cli("history", "--database-url", db_url).stdout
    assert "kind=saved-plan" in text and f"digest={entries[0]['config_digest'][:12]}" in text

    shown = cli("history", "show", "2", "--database-url", db_url)
    assert shown.exit_code == 0, shown.output
    assert "~ Plan/test-plan" in shown.stdout and "price_monthly" in shown.stdout and "Plan: 0 to create, 1 to update" in shown.stdout
    first = cli("history", "show", "1", "--database-url", db_url).stdout
    assert "+ Plan/test-plan" in first and "+ Industry/test-industry" in first
    markdown = cli("history", "show", "2", "--format", "markdown", "--database-url", db_url).stdout
    assert "### cplane plan" in markdown and "test-plan" in markdown
    data = json.loads(cli("history", "show", "2", "--format", "json", "--database-url", db_url).stdout)
    assert data["id"] == 2 and data["plan"]["changes"][0]["name"] == "test-plan"
    missing = cli("history", "show", "99", "--database-url", db_url)
    assert missing.exit_code == 1 and "no apply run #99" in missing.output


def test_two_dirty_trees_have_different_revisions(config_tree, tmp_path):
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "config")
    _git(tmp_path, "commit", "-qm", "config")
    url = f"sqlite:///{tmp_path / 'h.db'}"
    root = str(config_tree.root)
    config_tree.test_plan(price="21")
    assert cli("apply", "--auto-approve", "--config", root, "--database-url", url).exit_code == 0
    config_tree.test_plan(price="22")
    assert cli("apply", "--auto-approve", "--config", root, "--database-url", url).exit_code == 0
    entries = json.loads(cli("history", "--format", "json", "--database-url", url).stdout)
    revisions = [e["config_revision"] for e in entries]
    assert len(set(revisions)) == 2, revisions
    for e in entries:
        assert re.fullmatch(r"[0-9a-f]{12}-dirty\+[0-9a-f]{12}", e["config_revision"])
        assert e["config_revision"].endswith("+" + e["config_digest"][:12])


# --- item 8: the quick start leaves git status clean -------------------------------------------------


@pytest.mark.slow
def test_quick_start_leaves_git_status_empty(tmp_path):
    readme = (REPO / "README.md").read_text()
    quick = re.search(r"## Quick start.*?```sh\n(.*?)\n```", readme, re.S).group(1).strip()
    assert quick == "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/cplane apply --auto-approve"
    copy = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    _git(copy, "init", "-q")
    _git(copy, "add", "-A")
    _git(copy, "commit", "-qm", "the repository")
    env = {k: v for k, v in clean_env().items() if k not in ("CPLANE_SECRET_KEY", "CPLANE_CONFIG_DIR")}
    # The quick start: a venv in the tree; the editable build of the tree (what `pip install -e .` writes
    # there: its metadata; a dry run, so that the test's own cplane stays installed), then apply on
    # the default SQLite file.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", ".venv"], cwd=copy, check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--dry-run", "-e", "."], cwd=copy,
                   check=True, capture_output=True, timeout=600)
    applied = run("apply", "--auto-approve", cwd=copy, env=env)
    assert applied.returncode == 0, applied.stderr
    # and the everyday commands that write beside the database
    for args in (("plan",), ("status",), ("history",), ("cleanup", "apply", "--profile", "retention", "--yes")):
        assert run(*args, cwd=copy, env=env).returncode == 0, args
    assert (copy / "cplane.db").exists() and (copy / "cplane.db.key").exists()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=copy, capture_output=True, text=True, check=True)
    assert status.stdout == "", status.stdout


def test_apply_reporter_draws_a_bar_for_large_writes_and_lists_kinds(capsys):
    from control_plane.cli.progress import BAR_THRESHOLD, ApplyReporter

    reporter = ApplyReporter(bar=True)
    reporter.phase("locking")
    reporter.start_writes(BAR_THRESHOLD + 1000)
    assert reporter.bar is not None
    reporter.wrote("SeedKeyword", "create", BAR_THRESHOLD)
    reporter.wrote("SeedKeyword", "update", 1000)
    reporter.phase("committing")
    assert reporter.bar is None
    err = capsys.readouterr().err
    assert "apply: writing SeedKeyword: 3,000 row(s) (2,000 create, 1,000 update)" in err
    assert err.rstrip().endswith("apply: committing")
    small = ApplyReporter(bar=True)
    small.start_writes(10)
    assert small.bar is None


def test_validate_json_failure_carries_the_error(tmp_path):
    (tmp_path / "config" / "plans").mkdir(parents=True)
    (tmp_path / "config" / "plans" / "bad.yaml").write_text("apiVersion: cplane/v1\nkind: Plan\nmetadata: {name: Bad}\n")
    result = run("validate", "--config", str(tmp_path / "config"), "--format", "json", cwd=tmp_path)
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False and data["error"]["code"] == "config_invalid"
