"""What an apply run keeps besides its audit record: the desired rows it left (for rollback) and the
changes its config schedules for later (what the catalog announces).

Run rows are the managed rows as the run leaves them: the live rows it read under the lock with the
plan's changes laid over them, never re-read. Values only, references by natural key; secret columns
are never kept, only their references (a rollback reads the values from the environment again, or
keeps the stored ones). Compressed JSON, one row per run, kept for the newest
`CPLANE_RUN_ROWS_RETENTION` runs (default 100) and the runs they refer to (format 3).

Format 2 stores each kind by columns: the column names once, then per row its key and its values as
a list (a row whose columns differ from the kind's keeps its map); secret references only for the
rows that have any, `prevent_destroy` as the list of keys that set it. A 100,000-row run encodes in
about half the time of format 1's map per row (which repeated every column name and both flags per
row); format 1 runs, written by earlier versions, are still read.

Format 3 is what an incremental apply writes (reconcile/incremental.py): it read only what changed,
and the rows it did not read are exactly those the run of the record it trusted left (that run's
id: `base`). It stores format 2 of the rows it read, and per kind it did not read in full the keys
of the base's rows to drop (`from_base`: the rows read and gone); the rest of such a kind is the
base's. Its header comes first (`{"format":3,"base":N,"depth":d`), so that retention finds the bases
of the kept runs from a record's first bytes and keeps them too; a chain is at most MAX_DEPTH links
(then every row is stored again, as it is when the base is missing). A 100,000-row tree with 1,000
rows edited records those 1,000, not 100,000.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from control_plane.db.models import RunRows, ScheduledChange
from control_plane.errors import CplaneError
from control_plane.kinds.registry import ROW_KINDS
from control_plane.plans.model import WRITES, Action, Plan
from control_plane.plans.planfile import _typed, json_default
from control_plane.state.live import LiveState
from control_plane.state.rows import values_maker
from control_plane.state.schedule import parse_time

RETENTION_VARIABLE = "CPLANE_RUN_ROWS_RETENTION"
DEFAULT_RETENTION = 100
FORMAT = 2
READABLE_FORMATS = (1, 2, 3)

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


class Delta(dict):
    """A RunState of the rows an apply read (and wrote), with the rows it did not read left where
    they are: `carried` (reconcile/incremental.Carried) says which kinds, from which base run."""

    carried: Any = None


# A RunState entry: {"values", "secret_refs", "prevent_destroy"}, as dicts sharing their keys
# (state.rows.values_maker: ~80 bytes less per row, 8 MB of a 100,000-row first apply's record).
_entry = values_maker(("values", "secret_refs", "prevent_destroy"))


def post_state(plan: Plan, live: LiveState) -> RunState:
    """The managed rows once `plan` is applied over `live`. When the rows not read are those of a
    base run (incremental.Carried), they are not built: a Delta, which record_run_rows stores as
    "as in the base run" (format 3), or completes."""
    base = getattr(live.carried, "base_run", None)
    if base is not None:
        state: RunState = Delta()
        state.carried = live.carried  # type: ignore[attr-defined]
    else:
        # Kinds the plan found unchanged were not read: their rows are the ones the last apply left.
        state = {kind: dict(rows) for kind, rows in live.carried.items()}
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
                state.setdefault(kind, {})[key] = _entry((_plain(rk, row.values), refs, bool(record.prevent_destroy)))
    for change in plan.changes:
        rk = ROW_KINDS[change.kind]
        if change.action in WRITES:
            # The references as the config named them (a variable unset then may be set by the rollback).
            state.setdefault(change.kind, {})[change.name] = _entry(
                (_plain(rk, change.values), dict(change.secret_refs or {}), change.prevent_destroy))
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
    # (Format 3 is format 2 of the rows read, plus its base: read_run_rows resolves it.)
    state: RunState = {}
    for kind, data in stored["kinds"].items():
        columns, refs, prevent = data["columns"], data["secret_refs"], set(data["prevent_destroy"])
        state[kind] = {key: {"values": dict(zip(columns, row, strict=True)) if isinstance(row, list) else row,
                             "secret_refs": refs.get(key, {}), "prevent_destroy": key in prevent}
                       for key, row in zip(data["keys"], data["rows"], strict=True)}
    return state


def encoded_run_rows(state: RunState) -> tuple[int, bytes] | None:
    """(row count, stored bytes) of a run's rows that refer to no base run (not a Delta): what
    record_run_rows stores for them, computed without a connection (so that an apply can encode
    them while the database is busy with its writes). None for a Delta, which is encoded against
    its base run by record_run_rows itself."""
    if getattr(state, "carried", None) is not None:
        return None
    return sum(len(rows) for rows in state.values()), compress_json(encode_state(state))


def compress_json(document: dict[str, Any]) -> bytes:
    """The document's compact JSON, compressed (level 1: applies of large trees stay quick) as it is
    written out a few thousand list items at a time: a 100,000-row run is 14 MB of JSON, never
    held whole (nor its bytes beside it). The text is exactly `json.dumps(document)`'s."""
    compressor = zlib.compressobj(1)
    out: list[bytes] = []
    batch: list[str] = []
    size = 0
    for piece in _json_pieces(document):
        batch.append(piece)
        size += len(piece)
        if size >= 1 << 20:
            out.append(compressor.compress("".join(batch).encode()))
            batch, size = [], 0
    out.append(compressor.compress("".join(batch).encode()))
    out.append(compressor.flush())
    return b"".join(out)


_JSON_SLICE = 2000  # list items dumped per piece


def _dumps(value: Any) -> str:
    return json.dumps(value, default=json_default, separators=(",", ":"))


def _json_pieces(value: Any):
    """`_dumps(value)` in pieces: dicts with string keys and long lists are walked, anything
    else (and every short list) is dumped whole."""
    if value.__class__ is dict and all(k.__class__ is str for k in value):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield f"{',' if i else ''}{_dumps(key)}:"
            yield from _json_pieces(item)
        yield "}"
    elif value.__class__ is list and len(value) > _JSON_SLICE:
        yield "["
        for start in range(0, len(value), _JSON_SLICE):
            text = _dumps(value[start : start + _JSON_SLICE])
            yield f"{',' if start else ''}{text[1:-1]}"
        yield "]"
    else:
        yield _dumps(value)


def record_run_rows(conn: Connection, run_id: int, state: RunState | None, environ=None,
                    encoded: tuple[int, bytes] | None = None) -> None:
    """Store the rows run `run_id` left: `state`, or `encoded` (encoded_run_rows of it) when given."""
    table = RunRows.__table__
    if encoded is not None:
        count, data = encoded
        conn.execute(insert(table), {"run_id": run_id, "row_count": count, "data": data})
        _prune(conn, environ)
        return
    carried = getattr(state, "carried", None)
    document: dict[str, Any] | None = None
    count = sum(len(rows) for rows in state.values())
    if carried is not None:
        base = _header(conn, carried.base_run)
        if base is not None and base[1] < MAX_DEPTH:
            # The rows not read, by reference: each carried kind is the base run's, less the keys
            # read and now gone, plus (overriding) the rows read.
            from_base = {}
            for kind in carried.kinds():
                read = carried.live.keys.get(kind, ()) if carried.live.is_full(kind) else ()
                mine = state.get(kind, {})
                from_base[kind] = sorted(key for key in read if key not in mine)
            document = {"format": DELTA_FORMAT, "base": carried.base_run, "depth": base[1] + 1,
                        "from_base": from_base, **encode_state(state)}
            document["format"] = DELTA_FORMAT  # (encode_state's own format key came after)
            count += carried.count()
        else:  # no base to refer to (pruned, unreadable, or too deep a chain): every row, as always
            for kind, rows in carried.rows().items():
                state[kind] = {**rows, **state.get(kind, {})}
            count = sum(len(rows) for rows in state.values())
    if document is None:
        document = encode_state(state)
    conn.execute(insert(table), {"run_id": run_id, "row_count": count, "data": compress_json(document)})
    _prune(conn, environ)


def _prune(conn: Connection, environ) -> None:
    """Retention: the newest runs are kept, and every base one of them is stored against."""
    table = RunRows.__table__
    keep = retention(environ)
    cutoff = conn.execute(select(table.c.run_id).order_by(table.c.run_id.desc()).offset(keep - 1).limit(1)).scalar()
    if cutoff is not None:
        # The runs kept, and every base one of them is stored against (format 3), however old.
        kept = set(conn.execute(select(table.c.run_id).where(table.c.run_id >= cutoff)).scalars())
        needed, frontier = set(kept), set(kept)
        while frontier:
            bases = {b for b, _ in _headers(conn, sorted(frontier)).values() if b is not None} - needed
            needed |= bases
            frontier = bases
        old = set(conn.execute(select(table.c.run_id).where(table.c.run_id < cutoff)).scalars()) - needed
        for i in range(0, len(old), 500):
            conn.execute(delete(table).where(table.c.run_id.in_(sorted(old)[i : i + 500])))


# A format-3 record refers to a base run, which may refer to another: at most this many links
# before a record stores every row again (a rollback reads the chain).
MAX_DEPTH = 8
DELTA_FORMAT = 3
_HEAD = re.compile(rb'\{"format":(\d+)(?:,"base":(\d+),"depth":(\d+))?')


def _headers(conn: Connection, run_ids: list[int]) -> dict[int, tuple[int | None, int]]:
    """(base run or None, depth) of each stored run of `run_ids`, read from the first bytes of its
    data (the header format 3 writes first); a run not stored is left out."""
    table = RunRows.__table__
    found: dict[int, tuple[int | None, int]] = {}
    for i in range(0, len(run_ids), 500):
        chunk = run_ids[i : i + 500]
        for run_id, head in conn.execute(select(table.c.run_id, func.substr(table.c.data, 1, 1024))
                                         .where(table.c.run_id.in_(chunk))):
            try:
                text_ = zlib.decompressobj().decompress(bytes(head))
            except (zlib.error, TypeError):
                text_ = b""
            match = _HEAD.match(text_)
            if match is not None:
                found[run_id] = (int(match.group(2)), int(match.group(3))) if match.group(2) else (None, 0)
                continue
            # A header longer than the prefix read (never written so): the whole record.
            data = conn.execute(select(table.c.data).where(table.c.run_id == run_id)).scalar()
            try:
                stored = json.loads(zlib.decompress(data))
                found[run_id] = (stored.get("base"), int(stored.get("depth") or 0))
            except (zlib.error, ValueError, TypeError, AttributeError):
                found[run_id] = (None, 0)
    return found


def _header(conn: Connection, run_id: int | None) -> tuple[int | None, int] | None:
    return None if run_id is None else _headers(conn, [run_id]).get(run_id)


def _read_stored(conn: Connection, run_id: int, depth: int = 0) -> RunState | None:
    """The untyped RunState of a stored run, its base resolved (format 3)."""
    table = RunRows.__table__
    data = conn.execute(select(table.c.data).where(table.c.run_id == run_id)).scalar()
    if data is None:
        return None
    stored = json.loads(zlib.decompress(data))
    if stored.get("format") not in READABLE_FORMATS:
        raise CplaneError(f"apply run #{run_id}: its rows are in format {stored.get('format')!r}; "
                          f"this cplane reads {', '.join(map(str, READABLE_FORMATS))}")
    state = decode_state(stored)
    if stored.get("format") == DELTA_FORMAT:
        base = _read_stored(conn, stored["base"], depth + 1) if depth <= MAX_DEPTH else None
        if base is None:
            raise CplaneError(f"apply run #{run_id}: the rows of run #{stored['base']} it refers to are not kept")
        for kind, gone in stored["from_base"].items():
            rows = base.get(kind, {})
            for key in gone:
                rows.pop(key, None)
            rows.update(state.get(kind, {}))
            state[kind] = rows
    return state


def read_run_rows(conn: Connection, run_id: int) -> RunState | None:
    """The rows run `run_id` left, typed as the live rows are (None: not kept, or never recorded)."""
    state = _read_stored(conn, run_id)
    if state is None:
        return None
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
