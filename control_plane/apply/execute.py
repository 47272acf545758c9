"""Execute a Plan: one transaction, one lock, bulk statements, bookkeeping and an audit record."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import JSON, Connection, Engine, Numeric, bindparam, delete, insert, select, text, update

from control_plane.db.engine import sqlite_file_lock
from control_plane.db.models import ApplyRun, ManagedObject
from control_plane.errors import CplaneError
from control_plane.kinds.registry import ROW_KINDS, RowKind, apply_order
from control_plane.plans.model import Change, Plan
from control_plane.secrets import SecretBox
from control_plane.state.rows import (
    LiveState,
    canonical,
    canonical_column,
    encrypt,
    fingerprint,
    managed_columns,
    natural_key,
    read_live,
)

APPLY_LOCK_ID = 0x63706C616E65  # "cplane"
LOCK_MESSAGE = "another cplane apply is in progress on this database (apply lock held); try again when it finishes"
DELETE_CHUNK = 5000


class ApplyLocked(CplaneError):
    pass


class PlanStale(CplaneError):
    pass


@dataclass
class ApplyResult:
    applied: bool
    summary: dict[str, int]
    rows_written: int = 0
    apply_run_id: int | None = None
    plan: Plan | None = None


@contextmanager
def apply_lock(conn: Connection):
    """Database-wide and fail-fast: PostgreSQL advisory xact lock; SQLite a lock file beside the db."""
    if conn.dialect.name == "postgresql":
        if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": APPLY_LOCK_ID}).scalar():
            raise ApplyLocked(LOCK_MESSAGE)
        yield
        return
    with sqlite_file_lock(conn.engine, "apply", ApplyLocked(LOCK_MESSAGE)):
        yield


@cache
def _numeric_columns(rk: RowKind) -> tuple[str, ...]:
    return tuple(c for c in managed_columns(rk) if isinstance(rk.table.c[c].type, Numeric))


def _typed(rk: RowKind, values: dict[str, Any]) -> dict[str, Any]:
    """Values of a plan read from JSON carry numbers as strings; give numeric columns their Decimal back."""
    stale = [c for c in _numeric_columns(rk) if values.get(c) is not None and not isinstance(values[c], Decimal)]
    if not stale:
        return values
    out = dict(values)
    for column in stale:
        out[column] = Decimal(str(out[column]))
    return out


def _resolve_secrets(change: Change, environ) -> dict[str, Any]:
    resolved = {}
    for column, ref in change.secret_refs.items():
        if ref is None:
            resolved[column] = None
        elif isinstance(ref, dict):
            resolved[column] = {k: environ[v] for k, v in ref.items() if v in environ}
        else:
            resolved[column] = environ.get(ref)
    return resolved


def execute(
    engine: Engine,
    plan: Plan | Callable[[Connection, LiveState], Plan],
    box: SecretBox,
    *,
    actor: str,
    environment: str | None,
    saved: bool = False,
    environ=None,
) -> ApplyResult:
    """Apply `plan` in one transaction under the apply lock.

    `plan` is either a Plan computed earlier (every row it was computed from is re-checked, and the
    apply refused if one moved) or a function that computes it from the live state read under the lock.
    """
    environ = os.environ if environ is None else environ
    if isinstance(plan, Plan):
        if plan.errors:
            raise CplaneError("; ".join(plan.errors))
        if not plan.changes:
            return ApplyResult(False, plan.summary, plan=plan)
    with engine.begin() as conn, apply_lock(conn):
        live = read_live(conn, box)
        if not isinstance(plan, Plan):
            plan = plan(conn, live)
            if plan.errors:
                raise CplaneError("; ".join(plan.errors))
            if not plan.changes:
                return ApplyResult(False, plan.summary, plan=plan)
        desired_values = _check_and_resolve(plan, live, box, environ, saved)
        written = _write(conn, plan, live, desired_values, box)
        run_id = conn.execute(
            insert(ApplyRun.__table__).returning(ApplyRun.__table__.c.id),
            {
                "actor": actor,
                "environment": environment or "",
                "config_revision": plan.config_revision,
                "config_digest": plan.config_digest,
                "summary": plan.summary,
                "plan": plan.audit_dict(),
                "finished_at": None,
            },
        ).scalar_one()
        conn.execute(
            update(ApplyRun.__table__).where(ApplyRun.__table__.c.id == run_id).values(finished_at=text("CURRENT_TIMESTAMP"))
        )
    return ApplyResult(True, plan.summary, written, run_id, plan=plan)


def _check_and_resolve(plan: Plan, live: LiveState, box: SecretBox, environ, saved: bool) -> dict[tuple[str, str], dict]:
    moved: list[str] = []
    values: dict[tuple[str, str], dict] = {}
    for change in plan.changes:
        rk = ROW_KINDS[change.kind]
        current = live.rows.get(change.kind, {}).get(change.name)
        label = f"{change.kind}/{change.name}"
        if change.action == "create":
            if current is not None:
                moved.append(f"{label} (now exists)")
        elif current is None:
            moved.append(f"{label} (no longer exists)")
        elif fingerprint(canonical(rk, current.values, box)) != change.live_fingerprint:
            moved.append(f"{label} (changed)")
        if change.action in ("create", "update", "adopt"):
            full = _typed(rk, change.values)
            if change.secret_refs:
                full = dict(full)
                # Secrets are the only input not carried by the plan itself: they must still match.
                full.update(_resolve_secrets(change, environ))
                if fingerprint(canonical(rk, full, box)) != change.desired_fingerprint:
                    moved.append(f"{label} (a secret it reads from the environment differs from when the plan was made)")
            values[(change.kind, change.name)] = full
    if moved:
        shown = ", ".join(moved[:20]) + (f" and {len(moved) - 20} more" if len(moved) > 20 else "")
        what = "the database changed since the plan was made" if saved else "the database changed during planning"
        raise PlanStale(f"refusing to apply: {what}: {shown}; make a new plan")
    return values


def _write(conn: Connection, plan: Plan, live: LiveState, desired: dict, box: SecretBox) -> int:
    by_kind: dict[str, list[Change]] = defaultdict(list)
    for change in plan.changes:
        by_kind[change.kind].append(change)
    ids = {k: dict(v) for k, v in live.ids.items()}
    written = 0
    bookkeeping_new: list[dict] = []
    bookkeeping_update: list[dict] = []
    bookkeeping_delete: list[int] = []

    for kind in apply_order():
        rk = ROW_KINDS[kind]
        changes = by_kind.get(kind, [])
        creates = [c for c in changes if c.action == "create"]
        updates = [c for c in changes if c.action in ("update", "adopt")]
        if creates:
            rows = [_db_row(rk, desired[(kind, c.name)], ids, box) for c in creates]
            if rk.version_column:
                for row in rows:
                    row[rk.version_column] = 1
            bulk_insert(conn, rk.table, rows)
            written += len(rows)
            ids[kind] = _read_ids(conn, rk, ids)
            if rk.history_model is not None:
                _record_versions(conn, rk, [(ids[kind][c.name], 1, desired[(kind, c.name)]) for c in creates])
        if updates:
            current = live.rows.get(kind, {})
            rows, versions = [], []
            for c in updates:
                row = _db_row(rk, desired[(kind, c.name)], ids, box)
                row["_id"] = current[c.name].id
                if rk.version_column:
                    before = current[c.name]
                    changed = any(
                        canonical_column(rk, col, before.values.get(col), box)
                        != canonical_column(rk, col, desired[(kind, c.name)].get(col), box)
                        for col in rk.versioned_columns
                    )
                    row[rk.version_column] = (before.version or 1) + (1 if changed else 0)
                    if changed:
                        versions.append((before.id, row[rk.version_column], desired[(kind, c.name)]))
                rows.append(row)
            columns = [c for c in rows[0] if c != "_id"]
            stmt = update(rk.table).where(rk.table.c.id == bindparam("_id")).values({c: bindparam(c) for c in columns})
            conn.execute(stmt, rows)
            written += len(rows)
            if versions:
                _record_versions(conn, rk, versions)
        for c in creates + updates:
            record = live.managed.get(kind, {}).get(c.name)
            entry = {"kind": kind, "name": c.name, "table_name": rk.table_name, "row_id": ids[kind][c.name],
                     "fingerprint": c.desired_fingerprint, "prevent_destroy": c.prevent_destroy}
            if record is None:
                bookkeeping_new.append(entry)
            else:
                bookkeeping_update.append({**entry, "_mid": record.id})

    for kind in reversed(apply_order()):
        rk = ROW_KINDS[kind]
        changes = by_kind.get(kind, [])
        current = live.rows.get(kind, {})
        deletes = [c for c in changes if c.action == "delete"]
        retires = [c for c in changes if c.action == "retire"]
        if retires:
            retire_ids = [current[c.name].id for c in retires]
            conn.execute(update(rk.table).where(rk.table.c.id.in_(retire_ids)).values({rk.retire_column: False}))
            written += len(retire_ids)
            for c in retires:
                after = dict(current[c.name].values)
                after[rk.retire_column] = False
                record = live.managed[kind][c.name]
                bookkeeping_update.append({"kind": kind, "name": c.name, "table_name": rk.table_name,
                                           "row_id": record.row_id, "fingerprint": fingerprint(canonical(rk, after, box)),
                                           "prevent_destroy": record.prevent_destroy, "_mid": record.id})
        if deletes:
            delete_ids = [current[c.name].id for c in deletes]
            for start in range(0, len(delete_ids), DELETE_CHUNK):
                conn.execute(delete(rk.table).where(rk.table.c.id.in_(delete_ids[start : start + DELETE_CHUNK])))
            written += len(delete_ids)
            bookkeeping_delete.extend(live.managed[kind][c.name].id for c in deletes)

    mo = ManagedObject.__table__
    if bookkeeping_new:
        bulk_insert(conn, mo, bookkeeping_new)
    if bookkeeping_update:
        conn.execute(
            update(mo).where(mo.c.id == bindparam("_mid")).values(
                row_id=bindparam("row_id"), fingerprint=bindparam("fingerprint"),
                prevent_destroy=bindparam("prevent_destroy"), applied_at=text("CURRENT_TIMESTAMP"),
            ),
            [{k: v for k, v in e.items() if k in ("_mid", "row_id", "fingerprint", "prevent_destroy")} for e in bookkeeping_update],
        )
    for start in range(0, len(bookkeeping_delete), DELETE_CHUNK):
        conn.execute(delete(mo).where(mo.c.id.in_(bookkeeping_delete[start : start + DELETE_CHUNK])))
    return written


def _db_row(rk: RowKind, values: dict[str, Any], ids: dict[str, dict[str, int]], box: SecretBox) -> dict[str, Any]:
    row = {}
    for column in managed_columns(rk):
        value = values.get(column)
        if column in rk.refs and value is not None:
            target = ids.get(rk.refs[column], {})
            if value not in target:
                raise CplaneError(f"{rk.name}: {column} names {rk.refs[column]} {value!r}, which does not exist")
            value = target[value]
        elif column in rk.secret_columns:
            value = encrypt(value, box)
        row[column] = value
    return row


def _read_ids(conn: Connection, rk: RowKind, ids: dict[str, dict[str, int]]) -> dict[str, int]:
    keys_by_id = {target: {v: k for k, v in ids.get(target, {}).items()} for target in set(rk.refs.values())}
    stmt = select(rk.table.c.id, *(rk.table.c[c] for c in rk.key_columns))
    if rk.system_rows:
        stmt = stmt.where(text(rk.system_rows))
    result = {}
    for record in conn.execute(stmt).all():
        values = dict(zip(rk.key_columns, record[1:], strict=True))
        for column, target in rk.refs.items():
            if column in values and values[column] is not None:
                values[column] = keys_by_id[target].get(values[column])
        result[natural_key(rk, values)] = record[0]
    return result


def _record_versions(conn: Connection, rk: RowKind, entries: list[tuple[int, int, dict]]) -> None:
    table = rk.history_model.__table__
    rows = [
        {"prompt_id": row_id, "version": version, **{c: values.get(c) for c in rk.versioned_columns}}
        for row_id, version, values in entries
    ]
    bulk_insert(conn, table, rows)


def bulk_insert(conn: Connection, table, rows: list[dict]) -> None:
    """PostgreSQL: COPY (an order of magnitude faster than INSERT for large sets); else executemany."""
    if not rows:
        return
    if conn.dialect.name != "postgresql" or len(rows) < 200:
        conn.execute(insert(table), rows)
        return
    columns = list(rows[0])
    json_columns = {c for c in columns if isinstance(table.c[c].type, JSON)}
    raw = conn.connection.driver_connection
    stmt = f'COPY "{table.name}" ({", ".join(chr(34) + c + chr(34) for c in columns)}) FROM STDIN'
    with raw.cursor() as cursor, cursor.copy(stmt) as copy:
        for row in rows:
            copy.write_row(
                [json.dumps(row[c], default=str) if c in json_columns and row[c] is not None else row[c] for c in columns]
            )
