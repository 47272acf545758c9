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

from sqlalchemy import Integer, delete, exists, func, literal_column, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from control_plane.cleanup.manifest import Manifest, registry_boundary
from control_plane.cleanup.planner import CleanupPlan, Step, SystemTableRefused, build_plan
from control_plane.cleanup.schema import Schema, quote_ident, reflect_schema
from control_plane.db.dialect import for_dialect
from control_plane.db.models.controller import ChangeCounter, CleanupRun, ManagedObject, RowChange
from control_plane.environment import default_actor, is_production
from control_plane.errors import CplaneError
from control_plane.kinds import conditions

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
    """The production guards (docs/reference.md §3, §6); raises CleanupRefused."""
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


# System tables whose content moves with writes to other tables, by design: the change counters
# count cleanup's own deletes of user rows in mixed tables, and the row-change log names them.
# They are left out of the snapshot.
CHANGES_WITH_ANY_WRITE = frozenset({ChangeCounter.__tablename__, RowChange.__tablename__})


def system_scopes(manifest: Manifest, schema: Schema) -> list[tuple[str, ColumnElement[bool] | None]]:
    """(table, condition) of every system table (condition None) and the system rows of mixed
    tables: the registry's condition where the registry declares the table, else the manifest's.
    Raises VerificationFailed, naming the table, when a mixed table has no structured condition."""
    declared = registry_boundary()
    scopes: list[tuple[str, ColumnElement[bool] | None]] = []
    for table, entry in sorted(manifest.tables.items()):
        if table not in schema.tables or table in CHANGES_WITH_ANY_WRITE:
            continue
        if entry.data_class == "system" or declared.get(table, ("",))[0] == "system":
            scopes.append((table, None))
        elif entry.data_class == "mixed" or table in declared:
            cond = declared[table][1] if table in declared else entry.system_rows
            if not conditions.is_condition(cond):
                raise VerificationFailed(f"{table}: systemRows is not a structured condition; nothing was deleted "
                                         f"(run `cplane cleanup check`)")
            scopes.append((table, conditions.compile_condition(cond, schema.clause(table).c)))
    return scopes


def snapshot(conn: Connection, schema: Schema, scopes: list[tuple[str, ColumnElement[bool] | None]]) -> dict[str, tuple[int, str]]:
    """Row count and content checksum of each scope."""
    backend = for_dialect(schema.dialect)
    result: dict[str, tuple[int, str]] = {}
    for table, condition in scopes:
        info = schema.tables[table]
        result[table] = backend.checksum(conn, schema.clause(table), quote_ident(schema, table),
                                         [quote_ident(schema, c) for c in info.columns],
                                         [quote_ident(schema, c) for c in info.pk], condition)
    return result


# --- the guard: no batch deletes a system row ----------------------------------------------------


class _Guard:
    """Inside each batch's transaction, before it commits: the rows the batch deletes include no row
    cplane manages (cplane_managed_objects) and none that the registry's system-row condition
    selects. A failure rolls the batch back and raises VerificationFailed naming the table."""

    def __init__(self, schema: Schema, now: datetime):
        self.schema = schema
        self.now = now
        self.declared = registry_boundary()
        self.managed = ManagedObject.__table__

    def registry_rows(self, table: str) -> ColumnElement[bool] | None:
        declared = self.declared.get(table)
        if declared is None or declared[0] != "mixed":
            return None
        return conditions.compile_condition(declared[1], self.schema.clause(table).c, self.now)

    def violations(self, conn: Connection, table: str, where: ColumnElement[bool] | None) -> str | None:
        """Why deleting the rows of `table` matching `where` would delete system data, else None."""
        if self.declared.get(table, ("",))[0] == "system":
            return "the registry declares the whole table system data"
        tc = self.schema.clause(table)
        m = self.managed.c
        pk = self.schema.tables[table].pk
        if len(pk) == 1 and isinstance(tc.c[pk[0]].type, Integer):
            picked = select(tc.c[pk[0]])
            if where is not None:
                picked = picked.where(where)
            managed = exists().where(m.table_name == table, m.row_id.in_(picked))
        else:  # cplane's row ids are integers: such a table holds no managed row at all
            managed = exists().where(m.table_name == table)
        if conn.execute(select(managed)).scalar():
            return "it includes rows cplane manages (cplane_managed_objects)"
        system = self.registry_rows(table)
        if system is not None:
            stmt = select(func.count()).select_from(tc).where(*(c for c in (where, system) if c is not None))
            n = conn.execute(stmt).scalar_one()
            if n:
                return f"it includes {n} row(s) that the registry's system-row condition selects"
        return None


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
        self.guard = _Guard(schema, plan.now)

    def where(self, step: Step) -> ColumnElement[bool] | None:
        """The step's rows; for a mixed table `... AND NOT (<system rows>)` (the plan adds it)."""
        return self.plan.where(step)

    def _run_batch(self, step: Step, stmt) -> int:
        """One batch, one transaction: the guard over exactly the rows of the DELETE's WHERE, then
        the DELETE; the transaction commits only when the guard found no system row."""
        started = time.perf_counter()
        with self.engine.begin() as conn:
            why = self.guard.violations(conn, step.table, stmt.whereclause)
            if why:
                raise VerificationFailed(f"{step.table}: refusing to commit a batch that deletes system rows: "
                                         f"{why}; the batch was rolled back")
            n = conn.execute(stmt).rowcount
        elapsed = time.perf_counter() - started
        self.times.append(elapsed)
        if elapsed > self.longest[0]:
            self.longest = (elapsed, step.table)
        return max(n, 0)

    def _any_left(self, step: Step) -> bool:
        tc = self.schema.clause(step.table)
        where = self.where(step)
        stmt = select(literal_column("1")).select_from(tc)
        if where is not None:
            stmt = stmt.where(where)
        with self.engine.connect() as conn:
            return conn.execute(stmt.limit(1)).first() is not None

    def preflight(self, steps: list[Step]) -> None:
        """Before the first batch commits: no step would delete a system row."""
        with self.engine.connect() as conn:
            for step in steps:
                why = self.guard.violations(conn, step.table, self.where(step))
                if why:
                    raise VerificationFailed(f"{step.table}: refusing to delete: {why}; nothing was deleted")

    def delete(self, step: Step) -> int:
        delete_ = getattr(self, f"_delete_by_{for_dialect(self.schema.dialect).batch_walk}")
        info = self.schema.tables[step.table]
        if not any(fk.ref_table == step.table and fk.ondelete == "CASCADE" for fk in info.fks):
            return delete_(step)
        # A self-referencing cascade (content_taxonomies.parent_id) deletes descendants that the
        # statement's row count does not include (SQLite): count what went instead.
        before = self._count(step.table)
        delete_(step)
        return before - self._count(step.table)

    def _count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(self.schema.clause(table))).scalar_one()

    def _report(self, step: Step, done: int) -> None:
        if self.progress:
            self.progress(step.table, done, step.rows)

    def _delete_by_ctid(self, step: Step) -> int:
        qt = quote_ident(self.schema, step.table)
        tc = self.schema.clause(step.table)
        where = self.where(step)
        with self.engine.connect() as conn:
            pages, live = conn.execute(
                text(
                    "SELECT (pg_relation_size(c.oid) / current_setting('block_size')::int)::bigint, c.reltuples::bigint "
                    "FROM pg_class c WHERE c.oid = CAST(:t AS regclass)"
                ),
                {"t": qt},
            ).one()
            if live <= 0 and pages > 0:
                live = conn.execute(select(func.count()).select_from(tc)).scalar_one()
        done = 0
        ctid = literal_column("ctid")
        if step.rows > 0 and pages > 0 and live > 0:  # nothing planned: only the sweep below
            rows_per_page = max(1.0, live / pages)
            span = max(1, int(self.batch_size / rows_per_page))
            start = 0
            while start < pages:
                window = text("ctid >= CAST(:lo AS tid) AND ctid < CAST(:hi AS tid)").bindparams(
                    lo=f"({start},0)", hi=f"({start + span},0)")
                n = self._run_batch(step, delete(tc).where(*(c for c in (window, where) if c is not None)))
                start += span
                done += n
                if n:
                    self._report(step, done)
                if n > 2 * self.batch_size:  # stale statistics: more rows per block than estimated
                    span = max(1, int(span * self.batch_size / n))
        # Rows written behind the walk (or moved by an update while it ran).
        while self._any_left(step):
            picked = select(ctid).select_from(tc)
            if where is not None:
                picked = picked.where(where)
            n = self._run_batch(step, delete(tc).where(ctid.in_(picked.limit(self.batch_size))))
            done += n
            self._report(step, done)
        return done

    def _delete_by_rowid(self, step: Step) -> int:
        tc = self.schema.clause(step.table)
        where = self.where(step)
        rowid = literal_column("rowid")
        picked = select(rowid).select_from(tc)
        if where is not None:
            picked = picked.where(where)
        stmt = delete(tc).where(rowid.in_(picked.limit(self.batch_size)))
        done = 0
        while True:
            n = self._run_batch(step, stmt)
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
        try:
            plan = build_plan(engine, manifest, profile, schema, now=now, count=True)
        except SystemTableRefused as exc:
            raise VerificationFailed(f"{exc}; nothing was deleted") from exc
        batcher = _Batcher(engine, schema, plan, batch_size, progress)
        batcher.preflight(plan.steps)  # a bad manifest stops here, before the first commit
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
