"""Fault injection (issue 8.1): `cplane apply` and `cplane cleanup apply` SIGKILLed at chosen points.

Each kill point is made deterministic instead of timed: the test parks the command's PostgreSQL
backend at the statement it wants (a table lock the test holds, or an advisory lock a trigger waits
on), checks in `pg_stat_activity` that the backend is exactly there, SIGKILLs the client process and
then lets the backend go. The backend never receives a COMMIT, so PostgreSQL must roll back whatever
that transaction wrote; the tests prove it by comparing full dumps of every table.

    apply:   startup (config parsed, blocked reading the schema revision) · first write (transaction open, apply lock held)
             · mid-COPY (half the seed keywords streamed) · pre-commit (every row and the bookkeeping
             written, blocked on the audit INSERT)
    cleanup: killed inside a batch of the first, a middle and the last table of the deletion order
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from helpers import cplane_cmd, libpq_url, load_script
from sqlalchemy import literal_column, select, text
from sqlalchemy import table as sa_table

from control_plane.cleanup import build_plan, load_manifest, reflect_schema
from control_plane.cleanup.executor import system_scopes
from control_plane.db.models import metadata
from control_plane.db.models.user import USER_TABLES

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"
APPLY_ROWS = int(os.environ.get("CPLANE_FAULT_ROWS", "30000"))
PAUSE_LOCK = 0x5245_4C46  # the advisory lock a fault trigger waits on ("RELF")


def dump_all(conn: psycopg.Connection) -> dict[str, list[str]]:
    """Every row of every table in the database as text, ordered by primary key."""
    tables = [r[0] for r in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
    out = {}
    for table in tables:
        pk = [r[0] for r in conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY a.attnum",
            (f'"{table}"',))]
        order = ", ".join(f'"{c}"' for c in pk) or "1"
        out[table] = [r[0] for r in conn.execute(f'SELECT t::text FROM "{table}" t ORDER BY {order}')]
    return out


def backends(conn: psycopg.Connection, app: str) -> list[dict]:
    cur = conn.execute(
        "SELECT pid, state, wait_event_type, wait_event, backend_xid::text, query FROM pg_stat_activity "
        "WHERE application_name = %s", (app,))
    cols = [d.name for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur]


def wait_for(predicate, what: str, proc: subprocess.Popen, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def wait_gone(conn: psycopg.Connection, app: str, timeout: float = 60.0) -> None:
    """A killed client's backend lingers until it notices; nothing is 'before' until it is gone."""
    deadline = time.monotonic() + timeout
    while backends(conn, app):
        assert time.monotonic() < deadline, f"backend of {app} still there: {backends(conn, app)}"
        time.sleep(0.02)


def spawn(args: list[str], app: str) -> subprocess.Popen:
    env = dict(os.environ, PGAPPNAME=app, CPLANE_SECRET_KEY=os.environ.get("CPLANE_SECRET_KEY", "fault-key"))
    env.pop("CPLANE_ENV", None)
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def sigkill(proc: subprocess.Popen) -> None:
    assert proc.poll() is None, "the command finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL


def pause_trigger_sql(table: str, at_row: int, op: str) -> list[str]:
    """A row trigger that, at the `at_row`-th row, waits on the advisory lock the test holds."""
    return [
        "CREATE SEQUENCE IF NOT EXISTS rel_fault_seq",
        "SELECT setval('rel_fault_seq', 1, false)",
        f"""CREATE OR REPLACE FUNCTION rel_fault_pause() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF nextval('rel_fault_seq') = {int(at_row)} THEN PERFORM pg_advisory_xact_lock({PAUSE_LOCK}); END IF;
              RETURN {'NEW' if op == 'INSERT' else 'OLD'};
            END $$""",
        f'CREATE TRIGGER rel_fault_pause BEFORE {op} ON "{table}" FOR EACH ROW EXECUTE FUNCTION rel_fault_pause()',
    ]


def drop_trigger(conn: psycopg.Connection, table: str) -> None:
    conn.execute(f'DROP TRIGGER IF EXISTS rel_fault_pause ON "{table}"')


# --- apply ---------------------------------------------------------------------------------------


@pytest.fixture
def applied_base(pg_engine, monkeypatch):
    """A PostgreSQL database holding the repo's config (about 1,000 rows) applied by cplane."""
    from control_plane.reconcile.controller import apply_config
    from control_plane.secrets import _key_material

    monkeypatch.setenv("CPLANE_SECRET_KEY", "fault-key")
    _key_material.cache_clear()  # the same key as the subprocesses, not one cached by an earlier test
    apply_config(pg_engine, CONFIG, environment=None, actor="test")
    yield pg_engine
    _key_material.cache_clear()


def test_apply_killed_at_every_point_leaves_the_database_as_it_was(applied_base, tmp_path):
    big = load_script("bench/genconfig.py").generate(tmp_path / "config", APPLY_ROWS)
    url = libpq_url(applied_base)
    apply_args = cplane_cmd("apply", "--auto-approve", "--config", str(big), "--database-url", url)
    with psycopg.connect(url, autocommit=True) as admin:
        before = dump_all(admin)
        assert sum(map(len, before.values())) > 500
        seen: dict[str, str] = {}

        # 1. startup: the config is parsed and the process reads the schema revision; nothing is
        # written and no transaction id exists yet. The read blocks on a lock the test holds, so
        # the kill lands exactly there.
        with psycopg.connect(url) as holder:
            holder.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
            proc = spawn(apply_args, "fault-startup")
            [b] = wait_for(lambda: [b for b in backends(admin, "fault-startup") if b["wait_event_type"] == "Lock"],
                           "the apply to read the schema revision", proc)
            assert "alembic_version" in b["query"] and b["backend_xid"] is None, b
            sigkill(proc)
            holder.rollback()
        wait_gone(admin, "fault-startup")
        assert dump_all(admin) == before
        seen["startup"] = b["query"][:60]

        # 2. first write: the apply transaction holds the apply lock and is blocked on its first INSERT.
        with psycopg.connect(url) as holder:
            holder.execute("LOCK TABLE industries IN EXCLUSIVE MODE")  # reads pass, writes wait
            proc = spawn(apply_args, "fault-first-write")
            [b] = wait_for(lambda: [b for b in backends(admin, "fault-first-write") if b["wait_event_type"] == "Lock"],
                           "the apply to block on its first write", proc)
            assert "industries" in b["query"], b
            held = admin.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s",
                                 (b["pid"],)).fetchone()[0]
            assert held == 1  # the apply lock is taken before anything is written
            sigkill(proc)
            holder.rollback()
        wait_gone(admin, "fault-first-write")
        assert dump_all(admin) == before
        seen["first-write"] = b["query"][:60]

        # 3. mid-COPY: half the seed keywords streamed into the table, the statement not finished.
        for stmt in pause_trigger_sql("seed_keywords", APPLY_ROWS // 2, "INSERT"):
            admin.execute(stmt)
        admin.execute("SELECT pg_advisory_lock(%s)", (PAUSE_LOCK,))
        proc = spawn(apply_args, "fault-mid-copy")
        [b] = wait_for(lambda: [b for b in backends(admin, "fault-mid-copy") if b["wait_event"] == "advisory"],
                       "the COPY to reach the middle of the seed keywords", proc)
        assert b["query"].startswith('COPY "seed_keywords"') and b["backend_xid"], b
        sigkill(proc)
        admin.execute("SELECT pg_advisory_unlock(%s)", (PAUSE_LOCK,))
        wait_gone(admin, "fault-mid-copy")
        drop_trigger(admin, "seed_keywords")
        assert dump_all(admin) == before
        seen["mid-copy"] = b["query"][:60]

        # 4. pre-commit: every row and the bookkeeping written; blocked on the audit record.
        with psycopg.connect(url) as holder:
            holder.execute("LOCK TABLE cplane_apply_runs IN EXCLUSIVE MODE")
            proc = spawn(apply_args, "fault-pre-commit")
            [b] = wait_for(lambda: [b for b in backends(admin, "fault-pre-commit") if b["wait_event_type"] == "Lock"],
                           "the apply to block on its audit INSERT", proc)
            assert "INSERT INTO cplane_apply_runs" in b["query"] and b["backend_xid"], b
            sigkill(proc)
            holder.rollback()
        wait_gone(admin, "fault-pre-commit")
        assert dump_all(admin) == before
        seen["pre-commit"] = b["query"][:60]
        locks = admin.execute("SELECT pid, classid, objid FROM pg_locks WHERE locktype = 'advisory' AND "
                              "database = (SELECT oid FROM pg_database WHERE datname = current_database())").fetchall()
        assert locks == []  # the killed applies left no apply lock behind

    # After the four kills: a normal apply succeeds, and a plan then finds nothing to do.
    done = subprocess.run(apply_args, capture_output=True, text=True, env={**os.environ, "CPLANE_SECRET_KEY": "fault-key"},
                          cwd=REPO, timeout=300)
    assert done.returncode == 0 and "Apply complete." in done.stdout, done.stdout + done.stderr
    plan = subprocess.run(cplane_cmd("plan", "--config", str(big), "--database-url", url, "--detailed-exitcode"),
                          capture_output=True, text=True, env={**os.environ, "CPLANE_SECRET_KEY": "fault-key"},
                          cwd=REPO, timeout=300)
    assert plan.returncode == 0 and "No changes." in plan.stdout, plan.stdout + plan.stderr
    with applied_base.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM cplane_apply_runs")).scalar_one() == 2
        assert conn.execute(text("SELECT count(*) FROM seed_keywords WHERE account_id IS NULL")).scalar_one() >= APPLY_ROWS * 0.9
    print("apply kill points:", seen)


# --- cleanup -------------------------------------------------------------------------------------


def fk_orphans(conn) -> list[str]:
    """Every foreign key of the models checked by hand: child rows whose parent is missing."""
    found = []
    for table in metadata.sorted_tables:
        for fk in table.foreign_key_constraints:
            cols = [c.name for c in fk.columns]
            refs = [e.column.name for e in fk.elements]
            parent = fk.referred_table.name
            cond = " AND ".join(f'p."{r}" = c."{c}"' for c, r in zip(cols, refs, strict=True))
            notnull = " AND ".join(f'c."{c}" IS NOT NULL' for c in cols)
            n = conn.execute(text(f'SELECT count(*) FROM "{table.name}" c WHERE {notnull} '
                                  f'AND NOT EXISTS (SELECT 1 FROM "{parent}" p WHERE {cond})')).scalar_one()
            if n:
                found.append(f"{table.name}.{','.join(cols)} -> {parent}: {n} orphans")
    return found


def system_dump(engine) -> dict[str, list[str]]:
    manifest = load_manifest(CONFIG)
    out = {}
    with engine.connect() as conn:
        for table, cond in system_scopes(manifest, reflect_schema(engine)):
            if table == "cplane_cleanup_runs":
                continue
            # Whole rows as text; the condition (a SQLAlchemy clause) names its own table for the FROM.
            row = literal_column(f'"{table}"::text')
            stmt = select(row).where(cond) if cond is not None else select(row).select_from(sa_table(table))
            out[table] = [r[0] for r in conn.execute(stmt.order_by(row))]
    return out


def remaining(engine) -> list[tuple[str, int]]:
    """(table, rows the test-data profile would still delete), in deletion order."""
    plan = build_plan(engine, load_manifest(CONFIG), "test-data", reflect_schema(engine), count=True)
    return [(s.table, s.rows) for s in plan.steps]


def test_cleanup_killed_inside_first_middle_and_last_table_stays_consistent(pg_engine, monkeypatch):
    from control_plane.reconcile.controller import apply_config

    monkeypatch.setenv("CPLANE_SECRET_KEY", "fault-key")
    userdata = load_script("bench/userdata.py")
    apply_config(pg_engine, CONFIG, environment=None, actor="test")
    userdata.ensure_system_data(pg_engine)
    userdata.generate(pg_engine, accounts=3)
    system_before = system_dump(pg_engine)
    initial = remaining(pg_engine)
    order = [t for t, n in initial if n > 0]
    start = dict(initial)
    # Tables big enough that a batch of 50 in the middle of them can be interrupted.
    big = [t for t in order if start[t] >= 200]
    targets = [big[0], big[len(big) // 2], order[-1]]
    assert order[-1] == "accounts"
    url = libpq_url(pg_engine)
    args = cplane_cmd("cleanup", "apply", "--profile", "test-data", "--yes", "--batch-size", "50",
                      "--config", str(CONFIG), "--database-url", url)
    with psycopg.connect(url, autocommit=True) as admin:
        for i, table in enumerate(targets):
            left_before = dict(remaining(pg_engine))
            at_row = max(1, left_before[table] // 2) if left_before[table] > 100 else left_before[table]
            for stmt in pause_trigger_sql(table, at_row, "DELETE"):
                admin.execute(stmt)
            admin.execute("SELECT pg_advisory_lock(%s)", (PAUSE_LOCK,))
            app = f"fault-cleanup-{i}"
            proc = spawn(args, app)
            [b] = wait_for(lambda app=app: [b for b in backends(admin, app) if b["wait_event"] == "advisory"],
                           f"the cleanup to block inside a batch of {table}", proc)
            assert b["query"].startswith(f'DELETE FROM "{table}"') or b["query"].startswith(f"DELETE FROM {table}"), b
            sigkill(proc)
            admin.execute("SELECT pg_advisory_unlock(%s)", (PAUSE_LOCK,))
            wait_gone(admin, app)
            drop_trigger(admin, table)

            # Consistent: no orphan anywhere, system data untouched, and the deletion order is a
            # clean prefix: every table before the killed one done, every table after it intact.
            with pg_engine.connect() as conn:
                assert fk_orphans(conn) == []
            assert system_dump(pg_engine) == system_before
            now = dict(remaining(pg_engine))
            k = order.index(table)
            assert all(now[t] == 0 for t in order[:k]), {t: now[t] for t in order[:k] if now[t]}
            assert 0 < now[table] <= left_before[table], (table, now[table], left_before[table])
            if table != "accounts":
                assert now[table] < start[table]  # some batches of it had committed before the kill
            assert all(now[t] == start[t] for t in order[k + 1:]), {t: (now[t], start[t]) for t in order[k + 1:]}

    done = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "CPLANE_SECRET_KEY": "fault-key"})
    assert done.returncode == 0, done.stdout + done.stderr
    with pg_engine.connect() as conn:
        for table in USER_TABLES:
            assert conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one() == 0, table
        statuses = [r[0] for r in conn.execute(text("SELECT status FROM cplane_cleanup_runs ORDER BY id"))]
        assert fk_orphans(conn) == []
    # The killed runs never recorded an end; the next run, holding the cleanup lock, marked them.
    assert statuses == ["interrupted"] * 3 + ["succeeded"]
    assert system_dump(pg_engine) == system_before
    print("cleanup kill points:", targets)
