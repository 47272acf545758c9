"""What a `cplane plan` or `cplane apply` process imports when the no-change fast path does not
answer: a plan never loads apply's machinery, Alembic (with Mako and Pygments) or the user-data
models; an apply against a schema at head neither Alembic nor the user models. Checked on the
modules a real process has loaded (a subprocess), not by timing it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

from helpers import REPO

# The process runs `cplane` as the console script does (control_plane/__main__.py) and writes
# the names of the modules it loaded when it exits, whatever its exit code.
RUN = """
import atexit, json, os, runpy, sys
atexit.register(lambda: open(os.environ["MODULES_OUT"], "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["cplane", *json.loads(os.environ["CPLANE_ARGS"])]
runpy.run_module("control_plane", run_name="__main__", alter_sys=True)
"""

NEVER_IN_A_PLAN = ("alembic", "mako", "pygments", "control_plane.db.models.user", "control_plane.apply.execute")
NEVER_IN_AN_APPLY_AT_HEAD = ("alembic", "mako", "pygments", "control_plane.db.models.user")


def _run(script: str, tmp_path, url: str, *args: str) -> tuple[object, str]:
    """(what `script` wrote to MODULES_OUT, stdout) of a cplane process run with `args` on the repo's config."""
    out = tmp_path / "out.json"
    env = {**os.environ, "DATABASE_URL": url, "CPLANE_SECRET_KEY": "test-secret-key", "MODULES_OUT": str(out),
           "CPLANE_ARGS": json.dumps(["--config", str(REPO / "config"), *args])}
    env.pop("CPLANE_ENV", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode in (0, 2), done.stderr
    return json.loads(out.read_text()), done.stdout


def _modules(tmp_path, url: str, *args: str) -> set[str]:
    return set(_run(RUN, tmp_path, url, *args)[0])


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_plans_and_applies_past_the_fast_path_import_only_what_they_use(tmp_path):
    db = tmp_path / "cplane.db"
    url = f"sqlite:///{db}"
    first = _modules(tmp_path, url, "apply", "--auto-approve")
    assert "alembic" in first  # a fresh database is migrated first
    # A drifted row: neither no-change path answers.
    with sqlite3.connect(db) as conn:
        (applied,) = conn.execute("SELECT max_sites FROM plans WHERE slug = 'pro'").fetchone()
        assert conn.execute("UPDATE plans SET max_sites = max_sites + 1 WHERE slug = 'pro'").rowcount == 1
    for args in (("plan",), ("plan", "--no-fast-path"), ("plan", "--format", "json")):
        modules = _modules(tmp_path, url, *args)
        assert "control_plane.plans.compare" in modules  # (the full plan ran)
        assert _loaded(modules, NEVER_IN_A_PLAN) == [], args
    modules = _modules(tmp_path, url, "apply", "--auto-approve")
    assert "control_plane.apply.execute" in modules
    assert _loaded(modules, NEVER_IN_AN_APPLY_AT_HEAD) == []
    with sqlite3.connect(db) as conn:  # the apply healed the drift
        assert conn.execute("SELECT max_sites FROM plans WHERE slug = 'pro'").fetchone() == (applied,)


# The same process, counting how often the config tree is hashed and the record of the last apply read.
COUNTED = """
import atexit, json, os, runpy, sys
from control_plane.reconcile import nochange
calls = {"tree_digest": 0, "read_record": 0}
def counted(name, function):
    def call(*args, **kwargs):
        calls[name] += 1
        return function(*args, **kwargs)
    return call
nochange.tree_digest = counted("tree_digest", nochange.tree_digest)
nochange.read_record = counted("read_record", nochange.read_record)
atexit.register(lambda: open(os.environ["MODULES_OUT"], "w").write(json.dumps(calls)))
sys.argv = ["cplane", *json.loads(os.environ["CPLANE_ARGS"])]
runpy.run_module("control_plane", run_name="__main__", alter_sys=True)
"""


def _counted(tmp_path, url: str, *args: str) -> tuple[dict[str, int], str]:
    return _run(COUNTED, tmp_path, url, *args)


def test_a_drift_plan_or_apply_hashes_the_tree_once(tmp_path):
    """The raw path (cli/entry.py) hashed the tree and read the record, which did not vouch for
    `No changes`: the click command of the same process asks neither again and plans with the
    inputs it hashed (an incremental plan that names the drifted row)."""
    db = tmp_path / "cplane.db"
    url = f"sqlite:///{db}"
    _modules(tmp_path, url, "apply", "--auto-approve")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE plans SET max_sites = max_sites + 1 WHERE slug = 'pro'")
    calls, out = _counted(tmp_path, url, "plan")
    assert "Plan/pro will be updated in place (drift: edited outside cplane)" in out
    assert calls["tree_digest"] == 1
    assert calls["read_record"] <= 3  # the raw path's, the incremental plan's two (before and after the parse)
    # A command line the raw path leaves to click: click's no-change question and its plan share one hash.
    calls, out = _counted(tmp_path, url, "plan", "--format", "json")
    assert [(c["kind"], c["name"], c["cause"]) for c in json.loads(out)["changes"]] == [("Plan", "pro", "drift")]
    assert calls["tree_digest"] == 1
    calls, out = _counted(tmp_path, url, "apply", "--auto-approve")
    assert "Apply complete. 0 to create, 1 to update" in out
    assert calls["tree_digest"] == 1
    calls, out = _counted(tmp_path, url, "plan")
    assert "No changes." in out and calls == {"tree_digest": 1, "read_record": 1}  # the raw path answered


def test_the_raw_paths_inputs_serve_only_the_same_command_line(tmp_path):
    from pathlib import Path

    from control_plane.cli import decided, entry

    options = entry.parse(["plan", "--config", str(tmp_path), "--env", "staging"])
    decided.DECIDED[:] = [(options, "inputs")]
    assert decided.take_decided("apply", tmp_path, "staging", None) is None
    assert decided.DECIDED == []  # taken once, whatever the answer
    decided.DECIDED[:] = [(options, "inputs")]
    assert decided.take_decided("plan", Path(tmp_path), "production", None) is None
    decided.DECIDED[:] = [(options, "inputs")]
    assert decided.take_decided("plan", tmp_path, "staging", "sqlite:///other.db") is None
    decided.DECIDED[:] = [(options, "inputs")]
    assert decided.take_decided("plan", Path(tmp_path), "staging", None) == "inputs"
    assert decided.take_decided("plan", Path(tmp_path), "staging", None) is None
