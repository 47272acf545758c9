"""Run a cleanup: bounded batches in foreign-key-safe order, system data verified, audit recorded.

Every batch is its own short transaction: locks are held for one batch only, and a run killed
halfway leaves a consistent database that the next run simply finishes (the plan is recomputed
from what is left).

PostgreSQL batches walk the table's heap by block ranges (`ctid` range scans): each batch reads only
its own blocks, so the cost of a batch does not grow with the dead tuples left by earlier ones (a
`LIMIT` subquery rescans them every time). A final sweep catches rows written behind the walk.
SQLite batches go by `rowid`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.engine import Connection, Engine

from control_plane.cleanup.manifest import Manifest
from control_plane.cleanup.planner import CleanupPlan, Step, bind_params, build_plan
from control_plane.cleanup.schema import Schema, quote_ident, reflect_schema
from control_plane.db.dialect import for_dialect
from control_plane.db.models.controller import CleanupRun
from control_plane.environment import default_actor, is_production
from control_plane.errors import CplaneError

DEFAULT_BATCH_SIZE = 5000

Progress = Callable[[str, int, int], None]  # table, rows done, rows planned


class CleanupRefused(CplaneError):
    code = "cleanup_refused"


class VerificationFailed(CplaneError):
    code = "verification_failed"


@dataclass
class CleanupResult:
    run_id: int | None
    profile: str
    rows_deleted: dict[str, int]
    batches: int = 0
    longest_batch_s: float = 0.0
    longest_batch_table: str = ""
    elapsed_s: float = 0.0
    verified_tables: int = 0
    batch_times: list[float] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.rows_deleted.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "profile": self.profile,
            "status": "succeeded",
            "rows_deleted": self.rows_deleted,
            "total": self.total,
            "batches": self.batches,
            "longest_batch_seconds": round(self.longest_batch_s, 4),
            "longest_batch_table": self.longest_batch_table,
            "elapsed_seconds": round(self.elapsed_s, 3),
            "verified_tables": self.verified_tables,
        }


CLEANUP_LOCK_ID = 0x63706C616E63  # "cplanc"
CLEANUP_LOCK_MESSAGE = "another cplane cleanup is running on this database; try again when it finishes"


def guard(manifest: Manifest, profile_name: str, environment: str | None, allow_production: bool) -> None:
    """The production guards (DESIGN §3, §6); raises CleanupRefused."""
    profile = manifest.profiles.get(profile_name)
    if profile is None:
        known = ", ".join(manifest.profiles) or "(none)"
        raise CleanupRefused(f"unknown cleanup profile {profile_name!r}; known: {known}")
    if not is_production(environment):
        return
    if not profile.allow_in_production:
        raise CleanupRefused(
            f"refusing to run cleanup profile {profile_name!r} in production: the manifest does not allow it "
            f"(allowInProduction is false), even with --allow-production"
        )
    if not allow_production:
        raise CleanupRefused(
            f"refusing to run cleanup profile {profile_name!r} in environment {environment!r} without --allow-production"
        )


# --- system data snapshot ------------------------------------------------------------------------


def system_scopes(manifest: Manifest, schema: Schema) -> list[tuple[str, str | None]]:
    """(table, condition) of every system table (condition None) and the system rows of mixed tables."""
    scopes: list[tuple[str, str | None]] = []
    for table, entry in sorted(manifest.tables.items()):
        if table not in schema.tables:
            continue
        if entry.data_class == "system":
            scopes.append((table, None))
        elif entry.data_class == "mixed":
            scopes.append((table, entry.system_rows))
    return scopes


def snapshot(conn: Connection, schema: Schema, scopes: list[tuple[str, str | None]]) -> dict[str, tuple[int, str]]:
    """Row count and content checksum of each scope."""
    backend = for_dialect(schema.dialect)
    result: dict[str, tuple[int, str]] = {}
    for table, condition in scopes:
        info = schema.tables[table]
        where = f" WHERE ({condition})" if condition else ""
        result[table] = backend.checksum(conn, quote_ident(schema, table),
                                         [quote_ident(schema, c) for c in info.columns],
                                         [quote_ident(schema, c) for c in info.pk], where)
    return result


# --- batches -------------------------------------------------------------------------------------


class _Batcher:
    def __init__(self, engine: Engine, schema: Schema, plan: CleanupPlan, batch_size: int, progress: Progress | None):
        self.engine = engine
        self.schema = schema
        self.plan = plan
        self.batch_size = batch_size
        self.progress = progress
        self.times: list[float] = []
        self.longest = (0.0, "")

    def _run_batch(self, step: Step, sql: str, extra: dict[str, Any] | None = None) -> int:
        stmt, values = bind_params(sql, self.plan.params)
        values.update(extra or {})
        started = time.perf_counter()
        with self.engine.begin() as conn:
            n = conn.execute(stmt, values).rowcount
        elapsed = time.perf_counter() - started
        self.times.append(elapsed)
        if elapsed > self.longest[0]:
            self.longest = (elapsed, step.table)
        return max(n, 0)

    def _any_left(self, step: Step) -> bool:
        qt = quote_ident(self.schema, step.table)
        stmt, values = bind_params(f"SELECT 1 FROM {qt} WHERE {step.predicate} LIMIT 1", self.plan.params)
        with self.engine.connect() as conn:
            return conn.execute(stmt, values).first() is not None

    def delete(self, step: Step) -> int:
        delete = getattr(self, f"_delete_by_{for_dialect(self.schema.dialect).batch_walk}")
        info = self.schema.tables[step.table]
        if not any(fk.ref_table == step.table and fk.ondelete == "CASCADE" for fk in info.fks):
            return delete(step)
        # A self-referencing cascade (content_taxonomies.parent_id) deletes descendants that the
        # statement's row count does not include (SQLite): count what went instead.
        before = self._count(step.table)
        delete(step)
        return before - self._count(step.table)

    def _count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(text(f"SELECT count(*) FROM {quote_ident(self.schema, table)}")).scalar_one()

    def _report(self, step: Step, done: int) -> None:
        if self.progress:
            self.progress(step.table, done, step.rows)

    def _delete_by_ctid(self, step: Step) -> int:
        qt = quote_ident(self.schema, step.table)
        with self.engine.connect() as conn:
            pages, live = conn.execute(
                text(
                    "SELECT (pg_relation_size(c.oid) / current_setting('block_size')::int)::bigint, c.reltuples::bigint "
                    "FROM pg_class c WHERE c.oid = CAST(:t AS regclass)"
                ),
                {"t": qt},
            ).one()
            if live <= 0 and pages > 0:
                live = conn.execute(text(f"SELECT count(*) FROM {qt}")).scalar_one()
        done = 0
        if step.rows > 0 and pages > 0 and live > 0:  # nothing planned: only the sweep below
            rows_per_page = max(1.0, live / pages)
            span = max(1, int(self.batch_size / rows_per_page))
            where = "" if step.everything else f" AND ({step.predicate})"
            sql = f"DELETE FROM {qt} WHERE ctid >= CAST(:lo AS tid) AND ctid < CAST(:hi AS tid){where}"
            start = 0
            while start < pages:
                n = self._run_batch(step, sql, {"lo": f"({start},0)", "hi": f"({start + span},0)"})
                start += span
                done += n
                if n:
                    self._report(step, done)
                if n > 2 * self.batch_size:  # stale statistics: more rows per block than estimated
                    span = max(1, int(span * self.batch_size / n))
        # Rows written behind the walk (or moved by an update while it ran).
        sweep = (
            f"DELETE FROM {qt} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {qt} WHERE {step.predicate} "
            f"LIMIT :batch_limit))"
        )
        while self._any_left(step):
            n = self._run_batch(step, sweep, {"batch_limit": self.batch_size})
            done += n
            self._report(step, done)
        return done

    def _delete_by_rowid(self, step: Step) -> int:
        qt = quote_ident(self.schema, step.table)
        sql = f"DELETE FROM {qt} WHERE rowid IN (SELECT rowid FROM {qt} WHERE {step.predicate} LIMIT :batch_limit)"
        done = 0
        while True:
            n = self._run_batch(step, sql, {"batch_limit": self.batch_size})
            if n == 0:
                break
            done += n
            self._report(step, done)
        return done


# --- the run -------------------------------------------------------------------------------------


def execute(
    engine: Engine,
    manifest: Manifest,
    profile: str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    actor: str | None = None,
    environment: str | None = None,
    allow_production: bool = False,
    progress: Progress | None = None,
    schema: Schema | None = None,
    on_batch: Callable[[int], None] | None = None,
    now: datetime | None = None,
    lock_timeout: float = 0,
    on_lock_wait: Callable[[float], None] | None = None,
) -> CleanupResult:
    """Delete what `profile` selects; verify system data; record the run in cplane_cleanup_runs."""
    if batch_size < 1:
        raise CleanupRefused("--batch-size must be at least 1")
    guard(manifest, profile, environment, allow_production)
    schema = schema or reflect_schema(engine)
    message = CLEANUP_LOCK_MESSAGE if lock_timeout <= 0 else f"{CLEANUP_LOCK_MESSAGE} (waited {lock_timeout:g}s, --lock-timeout)"
    with for_dialect(engine).session_lock(engine, CLEANUP_LOCK_ID, "cleanup", CleanupRefused(message, code="lock_held"),
                                          timeout=lock_timeout, on_wait=on_lock_wait):
        return _execute_locked(engine, manifest, profile, schema, batch_size, actor, environment, progress,
                               on_batch, now)


def _execute_locked(engine, manifest, profile, schema, batch_size, actor, environment, progress, on_batch, now):
    started = time.perf_counter()
    with engine.begin() as conn:
        # Holding the lock, any run still marked running is one whose process died mid-way.
        t = CleanupRun.__table__
        conn.execute(
            update(t).where(t.c.status == "running").values(
                status="interrupted", finished_at=datetime.now(UTC),
                message="the process ended before finishing (killed or crashed); a later run completed its work",
            )
        )
        run_id = conn.execute(
            CleanupRun.__table__.insert()
            .values(actor=actor or default_actor(), environment=environment or "", profile=profile, status="running",
                    rows_deleted={}, message="")
            .returning(CleanupRun.__table__.c.id)
        ).scalar_one()
    rows: dict[str, int] = {}
    try:
        scopes = system_scopes(manifest, schema)
        with engine.connect() as conn:
            before = snapshot(conn, schema, scopes)
        plan = build_plan(engine, manifest, profile, schema, now=now, count=True)
        batcher = _Batcher(engine, schema, plan, batch_size, progress)
        if on_batch is not None:
            original = batcher._run_batch

            def counted(*args, **kwargs):
                n = original(*args, **kwargs)
                on_batch(len(batcher.times))
                return n

            batcher._run_batch = counted  # type: ignore[method-assign]
        for step in plan.steps:
            rows[step.table] = batcher.delete(step)
        with engine.connect() as conn:
            after = snapshot(conn, schema, scopes)
        changed = sorted(t for t in before if before[t] != after.get(t))
        if changed:
            details = ", ".join(
                f"{t} (rows {before[t][0]} -> {after[t][0]}{', content changed' if before[t][0] == after[t][0] else ''})"
                for t in changed
            )
            raise VerificationFailed(f"SYSTEM DATA CHANGED during cleanup {profile!r}: {details}")
    except BaseException as exc:
        _finish(engine, run_id, "failed", rows, _one_line(exc))
        raise
    result = CleanupResult(
        run_id,
        profile,
        rows,
        batches=len(batcher.times),
        longest_batch_s=batcher.longest[0],
        longest_batch_table=batcher.longest[1],
        elapsed_s=time.perf_counter() - started,
        verified_tables=len(scopes),
        batch_times=batcher.times,
    )
    _finish(engine, run_id, "succeeded", rows, f"{result.total} rows deleted in {result.batches} batches; "
            f"{len(scopes)} system scopes verified unchanged")
    return result


def _one_line(exc: BaseException) -> str:
    text_ = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text_[0] if text_ else ''}"[:2000]


def _finish(engine: Engine, run_id: int, status: str, rows: dict[str, int], message: str) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(
                update(CleanupRun.__table__)
                .where(CleanupRun.__table__.c.id == run_id)
                .values(status=status, rows_deleted=dict(rows), message=message, finished_at=datetime.now(UTC))
            )
    except Exception:  # the audit update must not hide the original error
        if status == "succeeded":
            raise
