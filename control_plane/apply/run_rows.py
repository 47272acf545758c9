"""What an apply run keeps besides its audit record: the desired rows it left (for rollback) and the
changes its config schedules for later (what the catalog announces).

Run rows are the managed rows as the run leaves them: the live rows it read under the lock with the
plan's changes laid over them, never re-read. Values only, references by natural key; secret columns
are never kept, only their references (a rollback reads the values from the environment again, or
keeps the stored ones). Compressed JSON, one row per run, kept for the newest
`CPLANE_RUN_ROWS_RETENTION` runs (default 100).

Format 2 stores each kind by columns: the column names once, then per row its key and its values as
a list (a row whose columns differ from the kind's keeps its map); secret references only for the
rows that have any, `prevent_destroy` as the list of keys that set it. A 100,000-row run encodes in
about half the time of format 1's map per row (which repeated every column name and both flags per
row); format 1 runs, written by earlier versions, are still read.
"""

from __future__ import annotations

import json
import os
import zlib
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from control_plane.db.models import RunRows, ScheduledChange
from control_plane.errors import CplaneError
from control_plane.kinds.registry import ROW_KINDS
from control_plane.plans.model import WRITES, Action, Plan
from control_plane.plans.planfile import _typed, json_default
from control_plane.state.live import LiveState
from control_plane.state.schedule import parse_time

RETENTION_VARIABLE = "CPLANE_RUN_ROWS_RETENTION"
DEFAULT_RETENTION = 100
FORMAT = 2
READABLE_FORMATS = (1, 2)

# {kind: {key: {"values": {...}, "secret_refs": {...}, "prevent_destroy": bool}}}
RunState = dict[str, dict[str, dict[str, Any]]]


def retention(environ=None) -> int:
    environ = os.environ if environ is None else environ
    raw = environ.get(RETENTION_VARIABLE, "")
    try:
        value = int(raw) if raw else DEFAULT_RETENTION
    except ValueError:
        raise CplaneError(f"{RETENTION_VARIABLE}={raw!r}: expected a number of runs") from None
    if value < 1:
        raise CplaneError(f"{RETENTION_VARIABLE}={raw!r}: keep at least 1 run")
    return value


def _plain(rk, values: dict[str, Any]) -> dict[str, Any]:
    """The values without the secret columns; the dict itself when the kind has none (it is only
    serialized, never changed: a retire replaces it), so a 100,000-row run copies nothing."""
    secret = rk.secret_columns
    if not secret:
        return values
    return {c: v for c, v in values.items() if c not in secret}


def post_state(plan: Plan, live: LiveState) -> RunState:
    """The managed rows once `plan` is applied over `live`."""
    # Kinds the plan found unchanged were not read: their rows are the ones the last apply left.
    state: RunState = {kind: dict(rows) for kind, rows in live.carried.items()}
    for kind, records in live.managed.items():
        rk = ROW_KINDS.get(kind)
        rows = live.rows.get(kind, {})
        if rk is None:
            continue
        for key, record in records.items():
            row = rows.get(key)
            if row is not None:
                refs = dict(getattr(record, "secret_refs", None) or {})
                for column in rk.secret_columns:  # a secret left unset: keep its shape (an empty map, or none)
                    refs.setdefault(column, {} if isinstance(row.values.get(column), dict) else None)
                state.setdefault(kind, {})[key] = {
                    "values": _plain(rk, row.values), "secret_refs": refs,
                    "prevent_destroy": bool(record.prevent_destroy)}
    for change in plan.changes:
        rk = ROW_KINDS[change.kind]
        if change.action in WRITES:
            # The references as the config named them (a variable unset then may be set by the rollback).
            state.setdefault(change.kind, {})[change.name] = {
                "values": _plain(rk, change.values), "secret_refs": dict(change.secret_refs or {}),
                "prevent_destroy": change.prevent_destroy}
        elif change.action == Action.RETIRE:
            entry = state.get(change.kind, {}).get(change.name)
            if entry is not None:
                entry["values"] = {**entry["values"], rk.retire_column: False}
        elif change.action == Action.DELETE:
            state.get(change.kind, {}).pop(change.name, None)
    return state


def encode_state(state: RunState) -> dict[str, Any]:
    """A RunState in format 2 (see the module's docstring): JSON-ready but for decimals and times."""
    kinds: dict[str, Any] = {}
    for kind, entries in state.items():
        columns: list[str] | None = None
        keys, rows, refs, prevent = [], [], {}, []
        for key, entry in entries.items():
            values = entry["values"]
            if columns is None:
                columns = list(values)
                shape = tuple(columns)
            keys.append(key)
            rows.append(list(values.values()) if tuple(values) == shape else values)
            if entry["secret_refs"]:
                refs[key] = entry["secret_refs"]
            if entry["prevent_destroy"]:
                prevent.append(key)
        kinds[kind] = {"columns": columns or [], "keys": keys, "rows": rows, "secret_refs": refs,
                       "prevent_destroy": prevent}
    return {"format": FORMAT, "kinds": kinds}


def decode_state(stored: dict[str, Any]) -> RunState:
    """The RunState of a stored run, format 1 or 2 (values as JSON gave them, not yet typed)."""
    if stored.get("format") == 1:
        return stored["rows"]
    state: RunState = {}
    for kind, data in stored["kinds"].items():
        columns, refs, prevent = data["columns"], data["secret_refs"], set(data["prevent_destroy"])
        state[kind] = {key: {"values": dict(zip(columns, row, strict=True)) if isinstance(row, list) else row,
                             "secret_refs": refs.get(key, {}), "prevent_destroy": key in prevent}
                       for key, row in zip(data["keys"], data["rows"], strict=True)}
    return state


def record_run_rows(conn: Connection, run_id: int, state: RunState, environ=None) -> None:
    data = zlib.compress(json.dumps(encode_state(state), default=json_default,
                                    separators=(",", ":")).encode(), 1)  # fast: applies of large trees stay quick
    count = sum(len(rows) for rows in state.values())
    conn.execute(insert(RunRows.__table__), {"run_id": run_id, "row_count": count, "data": data})
    keep = retention(environ)
    table = RunRows.__table__
    cutoff = conn.execute(select(table.c.run_id).order_by(table.c.run_id.desc()).offset(keep - 1).limit(1)).scalar()
    if cutoff is not None:
        conn.execute(delete(table).where(table.c.run_id < cutoff))


def read_run_rows(conn: Connection, run_id: int) -> RunState | None:
    """The rows run `run_id` left, typed as the live rows are (None: not kept, or never recorded)."""
    table = RunRows.__table__
    data = conn.execute(select(table.c.data).where(table.c.run_id == run_id)).scalar()
    if data is None:
        return None
    stored = json.loads(zlib.decompress(data))
    if stored.get("format") not in READABLE_FORMATS:
        raise CplaneError(f"apply run #{run_id}: its rows are in format {stored.get('format')!r}; "
                          f"this cplane reads {', '.join(map(str, READABLE_FORMATS))}")
    state = decode_state(stored)
    for kind, rows in state.items():
        rk = ROW_KINDS.get(kind)
        if rk is None:
            continue
        for entry in rows.values():
            entry["values"] = _typed(rk, entry["values"])
    return state


def schedule_entries(plan: Plan) -> list[dict[str, Any]]:
    """The plan's Scheduled steps as the rows cplane_scheduled_changes holds (comparable form)."""
    out = []
    for step in plan.scheduled:
        for change in step.changes:
            out.append({"at": step.at, "kind": change.kind, "name": change.name, "action": str(change.action),
                        "fields": [{"field": f.field, "before": f.before, "after": f.after} for f in change.fields],
                        "entries": step.entries})
    return out


def publish_schedule(conn: Connection, plan: Plan, run_id: int) -> None:
    table = ScheduledChange.__table__
    conn.execute(delete(table))
    rows = [{**entry, "at": parse_time(entry["at"]), "run_id": run_id} for entry in schedule_entries(plan)]
    if rows:
        conn.execute(insert(table), rows)
