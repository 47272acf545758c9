"""Execute a Plan: one transaction, one lock, bulk statements, bookkeeping and an audit record."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, text, update

from control_plane.apply.audit import audit_form
from control_plane.apply.lock import APPLY_LOCK_ID, LOCK_MESSAGE, ApplyLocked, apply_lock  # noqa: F401 (re-exported)
from control_plane.apply.run_rows import encoded_run_rows, post_state, publish_schedule, record_run_rows
from control_plane.collector import paused_gc
from control_plane.db.counters import unlogged
from control_plane.db.dialect import for_dialect
from control_plane.db.identity import check_environment, read_identity, record_environment
from control_plane.db.identity import environment_change as _change
from control_plane.db.models import ApplyRun, ManagedObject
from control_plane.errors import CplaneError
from control_plane.kinds.registry import ROW_KINDS, RowKind, apply_order
from control_plane.plans.compare import secret_refs_recorded
from control_plane.plans.model import WRITES, Action, Change, Plan
from control_plane.secrets import SecretBox
from control_plane.state.desired import resolve_secret_refs
from control_plane.state.keys import check_key, record_key
from control_plane.state.live import LiveState, encrypt, read_live
from control_plane.state.rows import Row, columns_differ, managed_columns, row_fingerprint

DELETE_CHUNK = 5000
WRITE_CHUNK = 5000  # rows per insert/update statement: bounded statements, and progress between them


class PlanStale(CplaneError):
    code = "plan_stale"


class AdoptionNotApproved(CplaneError):
    pass


def refuse_unapproved_adoptions(plan: Plan, adopt: bool) -> None:
    """A plan that takes rows cplane did not create under management needs --adopt (on the plan or
    on the apply)."""
    adoptions = plan.adoptions
    if not adoptions or adopt or plan.adopt:
        return
    names = [f"{c.kind}/{c.name}" for c in adoptions]
    shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    raise AdoptionNotApproved(
        f"refusing to apply: {len(names)} row(s) named in the config exist but were not created by cplane: {shown}; "
        "pass --adopt to take them under management with the values of the config"
    )


def run_kind(plan: Plan, saved: bool) -> str:
    """What cplane_apply_runs.kind says of a run: apply, saved-plan, adopt or saved-plan+adopt."""
    parts = (["saved-plan"] if saved else []) + (["adopt"] if plan.adoptions else []) + (
        ["rollback"] if plan.rollback_to is not None else [])
    return "+".join(parts) or "apply"


@dataclass
class ApplyResult:
    applied: bool
    summary: dict[str, int]
    rows_written: int = 0
    apply_run_id: int | None = None
    plan: Plan | None = None


class ApplyProgress:
    """What an apply tells its caller as it goes (the CLI prints it on stderr). Does nothing itself."""

    def phase(self, name: str, detail: str = "") -> None:
        """locking, migrating, planning, writing, committing."""

    def waiting(self, timeout: float) -> None:
        """The apply lock is held by another run: waiting up to `timeout` seconds (--lock-timeout)."""

    def start_writes(self, total: int) -> None:
        """About to write rows for `total` changes."""

    def wrote(self, kind: str, action: str, rows: int) -> None:
        """One statement (or batch) of `rows` rows of `kind` was written (action: create, update, ...)."""


QUIET = ApplyProgress()


def _resolve_secrets(change: Change, environ, current: Row | None) -> dict[str, Any]:
    """The secrets a change writes: from the environment, an unset variable keeping the stored value."""
    return resolve_secret_refs(change.secret_refs, environ, current.values if current is not None else None)


def execute(
    engine: Engine,
    plan: Plan | Callable[[Connection, LiveState], Plan],
    box: SecretBox,
    *,
    actor: str,
    environment: str | None,
    saved: bool = False,
    adopt: bool = False,
    allow_environment_change: bool = False,
    environ=None,
    lock_timeout: float = 0,
    progress: ApplyProgress | None = None,
    recorder=None,
    read: Callable[[Connection], LiveState] | None = None,
) -> ApplyResult:
    """Apply `plan` in one transaction under the apply lock.

    `plan` is either a Plan computed earlier (every row it was computed from is re-checked, and the
    apply refused if one moved) or a function that computes it from the live state read under the lock.
    Under the lock the database's recorded environment is checked against `environment` (and
    recorded by the apply); adopt changes need `adopt` or a plan made with it. `recorder`
    (reconcile.fastpath.Recorder with a plan computed under the lock, PlannedRecorder with a Plan
    that carries its draft) records what the apply left behind for the no-change fast path: start()
    before the first read, lock() before the first write, finish() after the last. `read` reads the
    live state under the lock in read_live's stead: with a plan function, e.g. only the tables that
    changed since the last apply (reconcile/incremental.py); with a Plan, the rows it names
    (reconcile/saved.py). Either way what it leaves out carries the rows the run record keeps of
    it (LiveState.carried).
    """
    environ = os.environ if environ is None else environ
    progress = progress or QUIET
    if isinstance(plan, Plan):
        if plan.errors:
            raise CplaneError("; ".join(plan.errors))
        if not plan.has_changes:
            return ApplyResult(False, plan.summary, plan=plan)
        refuse_unapproved_adoptions(plan, adopt)
    progress.phase("locking")
    # The lock is let go only after the commit (SQLite's lock file; PostgreSQL's goes with the transaction).
    with paused_gc(), engine.begin() as conn, apply_lock(conn, lock_timeout, progress.waiting):
        if recorder is not None:
            recorder.start(conn)
        identity = read_identity(conn)
        live = read(conn) if read is not None else read_live(conn, box)
        check_key(conn, box, live.unreadable)  # a wrong key is refused, never written over
        if not isinstance(plan, Plan):
            progress.phase("planning")
            plan = plan(conn, live)
            if plan.errors:
                raise CplaneError("; ".join(plan.errors))
        # A change the reviewed plan already names (made with --allow-environment-change) is approved.
        approved = allow_environment_change or (bool(plan.environment_change)
                                                and plan.environment_change == _change(identity, environment))
        change = check_environment(identity, environment, approved)
        if not plan.has_changes:
            if recorder is not None:
                recorder.finish(conn, plan, live, None, wrote=False)
            return ApplyResult(False, plan.summary, plan=plan)
        refuse_unapproved_adoptions(plan, adopt)
        desired_values = _check_and_resolve(plan, live, box, environ, saved)
        if recorder is not None:
            recorder.lock(conn)
        progress.start_writes(len(plan.changes))
        # The run's rows are encoded (and the recorder's digests computed) by a second thread while
        # this one waits on the database for the writes (COPY is the server's work): the plan, the
        # live state and the desired rows are only read by both.
        run_rows = _Background(lambda: _run_rows(plan, live, recorder))
        try:
            with unlogged(conn):  # counted, not logged row by row: the record covers cplane's own writes
                written = _write(conn, plan, live, desired_values, box, progress)
        except BaseException:
            run_rows.join()
            raise
        record_key(conn, box, actor)
        run_id = conn.execute(
            insert(ApplyRun.__table__).returning(ApplyRun.__table__.c.id),
            {
                "actor": actor,
                "environment": environment or "",
                "config_revision": plan.config_revision,
                "config_digest": plan.config_digest,
                "summary": plan.summary,
                "plan": {**audit_form(plan), "saved": saved},
                "kind": run_kind(plan, saved),
                "environment_change": change or "",
                "finished_at": None,
            },
        ).scalar_one()
        state, encoded = run_rows.result()
        record_run_rows(conn, run_id, state, environ, encoded=encoded)
        del state, encoded
        if plan.rollback_to is None:  # a rollback leaves the config's schedule announced as it was
            publish_schedule(conn, plan, run_id)
        record_environment(conn, environment)
        if recorder is not None:
            recorder.finish(conn, plan, live, run_id, wrote=True)
        conn.execute(
            update(ApplyRun.__table__).where(ApplyRun.__table__.c.id == run_id).values(finished_at=text("CURRENT_TIMESTAMP"))
        )
        progress.phase("committing")
        conn.commit()
    return ApplyResult(True, plan.summary, written, run_id, plan=plan)


def _run_rows(plan: Plan, live: LiveState, recorder=None) -> tuple[Any, tuple[int, bytes] | None]:
    """(the run's rows, None) when they refer to a base run, else (None, their stored form); the
    recorder's digests prepared on the way."""
    if recorder is not None:
        try:
            recorder.prepare(plan, live)
        except Exception:  # noqa: BLE001 - only a head start: finish() computes what it needs (and raises) itself
            pass
    state = post_state(plan, live)
    encoded = encoded_run_rows(state)
    return (None, encoded) if encoded is not None else (state, None)


class _Background:
    """`work()` in a thread of its own, started at once; result() waits for it and returns its
    value or raises its exception."""

    def __init__(self, work: Callable[[], Any]):
        import threading

        self._value: Any = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = work()
            except BaseException as exc:  # noqa: BLE001 - handed to result()
                self._error = exc

        self._thread = threading.Thread(target=run, name="cplane-run-rows", daemon=True)
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        value, self._value = self._value, None
        return value


def _check_and_resolve(plan: Plan, live: LiveState, box: SecretBox, environ, saved: bool) -> dict[tuple[str, str], dict]:
    """Refuses a plan whose rows moved; returns the values (secrets resolved) of the writes that read secrets."""
    moved: list[str] = []
    values: dict[tuple[str, str], dict] = {}
    for change in plan.changes:
        rk = ROW_KINDS[change.kind]
        current = live.rows.get(change.kind, {}).get(change.name)
        label = f"{change.kind}/{change.name}"
        if change.action == Action.CREATE:
            if current is not None:
                moved.append(f"{label} (now exists)")
        elif current is None:
            moved.append(f"{label} (no longer exists)")
        elif row_fingerprint(rk, current.values, box) != change.live_fingerprint:
            moved.append(f"{label} (changed)")
        if change.action == Action.RETIRE and change.desired_fingerprint is None:
            raise PlanStale(f"refusing to apply: {label}: the plan was made by an older cplane; make a new plan")
        if change.action in WRITES and change.secret_refs:
            # Secrets are the only input not carried by the plan itself: they must still match.
            # (Only these are kept: every other write writes its change's values, a first apply's
            # 100,000 of them without a dict entry each.)
            full = dict(change.values)
            full.update(_resolve_secrets(change, environ, current if change.action != Action.CREATE else None))
            if row_fingerprint(rk, full, box) != change.desired_fingerprint:
                moved.append(f"{label} (a secret it reads from the environment differs from when the plan was made)")
            values[(change.kind, change.name)] = full
    if moved:
        shown = ", ".join(moved[:20]) + (f" and {len(moved) - 20} more" if len(moved) > 20 else "")
        what = "the database changed since the plan was made" if saved else "the database changed during planning"
        raise PlanStale(f"refusing to apply: {what}: {shown}; make a new plan")
    return values


# The columns of a new cplane_managed_objects row, in the order _write builds them.
MANAGED_COLUMNS = ("kind", "name", "table_name", "row_id", "fingerprint", "prevent_destroy", "secret_refs")


def _write(conn: Connection, plan: Plan, live: LiveState, desired: dict, box: SecretBox,
           progress: ApplyProgress = QUIET) -> int:
    """`desired`: the values of the writes whose secrets were resolved (_check_and_resolve); every
    other write writes its change's values as they are."""
    def values_of(change: Change) -> dict[str, Any]:
        return desired.get((change.kind, change.name), change.values) if desired else change.values

    by_kind: dict[str, list[Change]] = defaultdict(list)
    for change in plan.changes:
        by_kind[change.kind].append(change)
    ids = {k: dict(v) for k, v in live.ids.items()}
    written = 0
    bookkeeping_new: list[tuple] = []
    bookkeeping_update: list[dict] = []
    bookkeeping_delete: list[int] = []

    for kind in apply_order():
        rk = ROW_KINDS[kind]
        changes = by_kind.get(kind, [])
        creates = [c for c in changes if c.action == Action.CREATE]
        updates = [c for c in changes if c.action in (Action.UPDATE, Action.ADOPT)]
        if creates:
            make = _create_row_maker(rk, ids, box)
            # The new rows' ids: from the insert itself where the backend hands them out (PostgreSQL),
            # else read back from the table. Rows are made a chunk at a time: never all 100,000 at once.
            new_ids: list[int] | None = []
            for start in range(0, len(creates), WRITE_CHUNK):
                rows = [make(values_of(c)) for c in creates[start : start + WRITE_CHUNK]]
                if rk.version_column:
                    for row in rows:
                        row[rk.version_column] = 1
                got = for_dialect(conn).bulk_insert_ids(conn, rk.table, rows)
                new_ids = None if got is None or new_ids is None else new_ids + got
                progress.wrote(kind, "create", len(rows))
                del rows
            written += len(creates)
            if new_ids is None:
                ids[kind] = _read_ids(conn, rk, ids)
            else:
                ids[kind] = {**ids.get(kind, {}), **dict(zip((c.name for c in creates), new_ids, strict=True))}
            if rk.history is not None:
                _record_versions(conn, rk, [(ids[kind][c.name], 1, values_of(c)) for c in creates])
        if updates:
            current = live.rows.get(kind, {})
            rows, versions = [], []
            stored = _latest_versions(conn, rk, [current[c.name].id for c in updates]) if rk.history else {}
            for c in updates:
                row = _db_row(rk, values_of(c), ids, box, current[c.name])
                row["_id"] = current[c.name].id
                if rk.history is not None:
                    before = current[c.name]
                    # A new version only for new text: compared with the latest stored version, so
                    # that healing drift back to it keeps the version (and accounts' customizations current).
                    latest_version, latest_values = stored.get(before.id, (before.version or 1, before.values))
                    changed = columns_differ(rk, latest_values, values_of(c), rk.history.columns, box)
                    row[rk.version_column] = max(latest_version, before.version or 1) + 1 if changed else latest_version
                    if changed:
                        versions.append((before.id, row[rk.version_column], values_of(c)))
                rows.append(row)
            columns = [c for c in rows[0] if c != "_id"]
            stmt = update(rk.table).where(rk.table.c.id == bindparam("_id")).values({c: bindparam(c) for c in columns})
            for start in range(0, len(rows), WRITE_CHUNK):
                conn.execute(stmt, rows[start : start + WRITE_CHUNK])
                progress.wrote(kind, "update", len(rows[start : start + WRITE_CHUNK]))
            written += len(rows)
            if versions:
                _record_versions(conn, rk, versions)
        managed, kind_ids, table_name, secret = live.managed.get(kind, {}), ids.get(kind, {}), rk.table_name, bool(
            rk.secret_columns)  # (looked up once per kind: this loop runs once per row written)
        for c in creates + updates:
            record = managed.get(c.name)
            # (a tuple in MANAGED_COLUMNS order: a first apply keeps 100,000 of them until they are written)
            entry = (kind, c.name, table_name, kind_ids[c.name], c.desired_fingerprint, c.prevent_destroy,
                     secret_refs_recorded(c.secret_refs, values_of(c)) if secret else None)
            if record is None:
                bookkeeping_new.append(entry)
            else:
                bookkeeping_update.append({**dict(zip(MANAGED_COLUMNS, entry, strict=True)), "_mid": record.id})

    for kind in reversed(apply_order()):
        rk = ROW_KINDS[kind]
        changes = by_kind.get(kind, [])
        current = live.rows.get(kind, {})
        deletes = [c for c in changes if c.action == Action.DELETE]
        retires = [c for c in changes if c.action == Action.RETIRE]
        if retires:
            retire_ids = [current[c.name].id for c in retires]
            conn.execute(update(rk.table).where(rk.table.c.id.in_(retire_ids)).values({rk.retire_column: False}))
            progress.wrote(kind, "retire", len(retire_ids))
            written += len(retire_ids)
            for c in retires:
                record = live.managed[kind][c.name]
                bookkeeping_update.append({"kind": kind, "name": c.name, "table_name": rk.table_name,
                                           "row_id": record.row_id, "fingerprint": c.desired_fingerprint,
                                           "prevent_destroy": record.prevent_destroy,
                                           "secret_refs": getattr(record, "secret_refs", None), "_mid": record.id})
        if deletes:
            delete_ids = [current[c.name].id for c in deletes]
            for start in range(0, len(delete_ids), DELETE_CHUNK):
                conn.execute(delete(rk.table).where(rk.table.c.id.in_(delete_ids[start : start + DELETE_CHUNK])))
                progress.wrote(kind, "delete", len(delete_ids[start : start + DELETE_CHUNK]))
            written += len(delete_ids)
            bookkeeping_delete.extend(live.managed[kind][c.name].id for c in deletes)

    mo = ManagedObject.__table__
    if bookkeeping_new:
        for_dialect(conn).bulk_insert_rows(conn, mo, list(MANAGED_COLUMNS), bookkeeping_new)
    if bookkeeping_update:
        conn.execute(
            update(mo).where(mo.c.id == bindparam("_mid")).values(
                row_id=bindparam("row_id"), fingerprint=bindparam("fingerprint"),
                prevent_destroy=bindparam("prevent_destroy"), secret_refs=bindparam("secret_refs", type_=mo.c.secret_refs.type),
                applied_at=text("CURRENT_TIMESTAMP"),
            ),
            [{k: v for k, v in e.items() if k in ("_mid", "row_id", "fingerprint", "prevent_destroy", "secret_refs")}
             for e in bookkeeping_update],
        )
    for start in range(0, len(bookkeeping_delete), DELETE_CHUNK):
        conn.execute(delete(mo).where(mo.c.id.in_(bookkeeping_delete[start : start + DELETE_CHUNK])))
    return written


def _create_row_maker(rk: RowKind, ids: dict[str, dict[str, int]], box: SecretBox) -> Callable[[dict], dict]:
    """`_db_row` for creates, with the kind's columns and references looked up once instead of per
    row (a first apply makes 100,000 rows of one kind). Kinds with secret columns take `_db_row`."""
    if rk.secret_columns:
        return lambda values: _db_row(rk, values, ids, box)
    columns = managed_columns(rk)
    refs = [(column, rk.refs[column], ids.get(rk.refs[column], {})) for column in columns if column in rk.refs]
    pick = _values_picker(tuple(columns))

    def make(values: dict[str, Any]) -> dict[str, Any]:
        row = pick(values.get)
        for column, target_kind, target in refs:
            value = row[column]
            if value is not None:
                if value not in target:
                    raise CplaneError(f"{rk.name}: {column} names {target_kind} {value!r}, which does not exist")
                row[column] = target[value]
        return row

    return make


@cache
def _values_picker(columns: tuple[str, ...]) -> Callable[[Callable[[str], Any]], dict[str, Any]]:
    """`lambda get: {column: get(column) for column in columns}` as one dict display (generated
    once per column list): a first apply makes 100,000 rows of one kind with it."""
    entries = ", ".join(f"{column!r}: get({column!r})" for column in columns)
    namespace: dict[str, Any] = {}
    exec(compile(f"def pick(get):\n    return {{{entries}}}\n", "<apply row>", "exec"), namespace)  # noqa: S102 (our own text)
    return namespace["pick"]


def _db_row(rk: RowKind, values: dict[str, Any], ids: dict[str, dict[str, int]], box: SecretBox,
            current: Row | None = None) -> dict[str, Any]:
    """The row to write; a secret whose value is unchanged keeps its stored ciphertext byte for byte."""
    row = {}
    for column in managed_columns(rk):
        value = values.get(column)
        if column in rk.refs and value is not None:
            target = ids.get(rk.refs[column], {})
            if value not in target:
                raise CplaneError(f"{rk.name}: {column} names {rk.refs[column]} {value!r}, which does not exist")
            value = target[value]
        elif column in rk.secret_columns:
            value = _keep_ciphertext(value, current, column) if current is not None else _ENCRYPT
            if value is _ENCRYPT:
                value = encrypt(values.get(column), box)
            elif isinstance(value, dict):
                value = {k: (box.encrypt(values[column][k]) if v is _ENCRYPT else v) for k, v in value.items()}
        row[column] = value
    return row


_ENCRYPT = object()


def _keep_ciphertext(value: Any, current: Row, column: str) -> Any:
    """The stored token where the value is the live one, else _ENCRYPT (per entry of a map)."""
    stored = (current.stored or {}).get(column)
    live = current.values.get(column)
    if value is None:
        return None
    if isinstance(value, dict):
        if not isinstance(stored, dict) or not isinstance(live, dict):
            return _ENCRYPT
        return {k: stored[k] if live.get(k) == v and stored.get(k) else _ENCRYPT
                for k, v in value.items() if v is not None}
    return stored if stored is not None and live == value else _ENCRYPT


def _read_ids(conn: Connection, rk: RowKind, ids: dict[str, dict[str, int]]) -> dict[str, int]:
    """Natural key -> id of every system row of the kind, as natural_key() spells keys (parts joined
    by "/", references by their target's natural key), computed without a dict per row."""
    keys_by_id = {target: {v: k for k, v in ids.get(target, {}).items()} for target in set(rk.refs.values())}
    stmt = rk.only_system_rows(select(rk.table.c.id, *(rk.table.c[c] for c in rk.key_columns)))
    maps = [keys_by_id[rk.refs[c]] if c in rk.refs else None for c in rk.key_columns]
    result = {}
    if not any(m is not None for m in maps):
        if len(maps) == 1:
            return {str(key): row_id for row_id, key in conn.execute(stmt)}
        return {"/".join([str(v) for v in parts]): row_id for row_id, *parts in conn.execute(stmt)}
    for row_id, *parts in conn.execute(stmt):
        result["/".join([str(m.get(v) if m is not None and v is not None else v)
                         for v, m in zip(parts, maps, strict=True)])] = row_id
    return result


def _latest_versions(conn: Connection, rk: RowKind, row_ids: list[int]) -> dict[int, tuple[int, dict[str, Any]]]:
    """Per row id: its latest stored version number and the versioned columns' values in it."""
    history = rk.history
    table = history.model.__table__
    row_col, version_col = table.c[history.row_column], table.c[history.version_column]
    latest: dict[int, tuple[int, dict[str, Any]]] = {}
    for start in range(0, len(row_ids), DELETE_CHUNK):
        chunk = row_ids[start : start + DELETE_CHUNK]
        newest = (select(row_col.label("row_id"), func.max(version_col).label("version"))
                  .where(row_col.in_(chunk)).group_by(row_col).subquery())
        stmt = select(row_col, version_col, *(table.c[c] for c in history.columns)).join(
            newest, (row_col == newest.c.row_id) & (version_col == newest.c.version))
        for record in conn.execute(stmt):
            latest[record[0]] = (record[1], dict(zip(history.columns, record[2:], strict=True)))
    return latest


def _record_versions(conn: Connection, rk: RowKind, entries: list[tuple[int, int, dict]]) -> None:
    history = rk.history
    rows = [
        {history.row_column: row_id, history.version_column: version, **{c: values.get(c) for c in history.columns}}
        for row_id, version, values in entries
    ]
    table = history.model.__table__
    for_dialect(conn).bulk_insert(conn, table, rows)
