"""Live state: the system rows in the database, in the shape of desired state."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol

from sqlalchemy import Connection, inspect, null, select

from control_plane.kinds.registry import ROW_KINDS, apply_order
from control_plane.secrets import SecretBox
from control_plane.state.rows import Row, managed_columns, values_maker


class ManagedRecord(Protocol):
    """A row of cplane_managed_objects (the SQLAlchemy row itself, to avoid copying 100,000 of them)."""

    id: int
    row_id: int
    fingerprint: str
    prevent_destroy: bool
    secret_refs: dict[str, Any] | None


class Managed(tuple):
    """A managed record as read_live keeps it: what plans and applies read of it (id, row_id,
    fingerprint, prevent_destroy, secret_refs), a tuple of five (~80 bytes beside its values)
    rather than the SQLAlchemy row with its kind and name (~250: at 100,000 rows, 16 MB of a full
    plan); made by tuple.__new__, without a Python-level __init__ per row."""

    __slots__ = ()

    def __new__(cls, id: int, row_id: int, fingerprint: str, prevent_destroy: bool, secret_refs: Any):
        return tuple.__new__(cls, (id, row_id, fingerprint, prevent_destroy, secret_refs))

    id = property(itemgetter(0))
    row_id = property(itemgetter(1))
    fingerprint = property(itemgetter(2))
    prevent_destroy = property(itemgetter(3))
    secret_refs = property(itemgetter(4))

    def __repr__(self) -> str:
        return (f"Managed(id={self.id!r}, row_id={self.row_id!r}, fingerprint={self.fingerprint!r}, "
                f"prevent_destroy={self.prevent_destroy!r}, secret_refs={self.secret_refs!r})")


class Unreadable:
    """A stored secret this key cannot decrypt. Plans refuse before comparing such a row (a wrong
    key is never drift); export still knows a secret is stored and writes its reference."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unreadable secret>"


UNREADABLE = Unreadable()


# Live rows are fetched from a server-side cursor in batches of this many (PostgreSQL: a named
# cursor; SQLite steps its cursor anyway), so that the driver never holds a table's rows twice.
BATCH = 5000
# Ids per IN list (parameters per statement stay well under SQLite's and PostgreSQL's limits).
IN_CHUNK = 1000


@dataclass(frozen=True)
class ChangedRows:
    """Of a kind read by row (reconcile/incremental.py): the ids of its rows written since the last
    recorded apply (db/counters.row_changes), and how many system rows its table held then (the
    kind's desired rows, which that apply left exactly)."""

    ids: frozenset[int]
    count: int


@dataclass
class LiveState:
    rows: dict[str, dict[str, Row]]
    managed: dict[str, dict[str, ManagedRecord]]
    ids: dict[str, dict[str, int]]
    # "Kind/name" of every row holding a stored secret the key cannot decrypt.
    unreadable: list[str] = field(default_factory=list)
    # The row kinds read in full (None: all of them). The others were found unchanged since the
    # last apply (reconcile/incremental.py): only their ids and natural keys are read, when a kind
    # read in full references them, and neither their rows nor their managed records are here.
    full: frozenset[str] | None = None
    # For the kinds not read in full: the managed rows as the last apply left them (which is the
    # desired state), in apply.run_rows' RunState shape, so that a run still keeps every row.
    carried: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # Kinds of `full` read only for some rows (natural keys; reconcile/incremental.py).
    keys: dict[str, frozenset[str]] = field(default_factory=dict)

    def is_full(self, kind: str) -> bool:
        return self.full is None or kind in self.full


def in_scope(live: LiveState, kind: str, rows: dict[str, Row]) -> dict[str, Row]:
    """The rows of `rows` (desired ones) that `live` read the kind's live side for."""
    if not live.is_full(kind):
        return {}
    keys = live.keys.get(kind)
    if keys is None:
        return rows
    return {key: rows[key] for key in keys if key in rows}


def out_of_scope(live: LiveState, kind: str, rows: dict[str, Row]) -> dict[str, Row]:
    if not live.is_full(kind):
        return rows
    keys = live.keys.get(kind)
    if keys is None:
        return {}
    return {key: row for key, row in rows.items() if key not in keys}


def out_of_scope_count(live: LiveState, kind: str, rows: dict[str, Row]) -> int:
    """len(out_of_scope(live, kind, rows)), without building it (100,000 rows)."""
    if not live.is_full(kind):
        return len(rows)
    keys = live.keys.get(kind)
    return 0 if keys is None else len(rows) - sum(1 for key in keys if key in rows)


def existing_tables(conn: Connection) -> set[str]:
    """Tables the database has now. Read-only commands run against a database whose migrations
    have not run (yet): a missing table is read as empty, never created and never an error."""
    return set(inspect(conn).get_table_names())


def stream(conn: Connection, stmt):
    """The statement's rows in batches from a server-side cursor: memory holds one batch, not a table."""
    # (On the statement: Connection.execution_options would change the connection for what follows.)
    return conn.execute(stmt.execution_options(stream_results=True, yield_per=BATCH))


def _needed_keys(full: frozenset[str] | None) -> set[str]:
    """The kinds not read in full whose ids and natural keys are still needed: those a kind read in
    full references (its references become natural keys; apply writes them back as ids), and
    those their own natural keys reference."""
    if full is None:
        return set()
    needed: set[str] = set()
    stack = [target for kind in full for target in ROW_KINDS[kind].refs.values()]
    while stack:
        kind = stack.pop()
        if kind in full or kind in needed:
            continue
        needed.add(kind)
        rk = ROW_KINDS[kind]
        stack.extend(rk.refs[c] for c in rk.key_columns if c in rk.refs)
    return needed


def read_live(conn: Connection, box: SecretBox, full: frozenset[str] | None = None,
              keys: dict[str, frozenset[str]] | None = None,
              records: dict[str, dict[str, ManagedRecord]] | None = None,
              changed: dict[str, ChangedRows] | None = None,
              desired: dict[str, dict[str, Row]] | None = None) -> LiveState:
    """The system rows of every row kind (of the kinds in `full`, when given), one streamed SELECT
    per table, references mapped to natural keys. Kinds outside `full` are read only as far as
    others need them: ids and natural keys. Kinds in `keys` only for those rows, found by the ids
    of their managed `records` (which the caller read: they are not read again). Kinds in
    `changed` (also in `keys`, with the records of the rows those ids were) only for the rows of
    those ids: their keys join the kind's, and the kind is read whole after all when the ids do not
    account for the table (`_by_row_holds`).

    `desired` (the desired rows, when the caller has them): a live row's natural key and its text
    values equal to its desired row's are kept as the desired row's strings, not as second copies
    (at 100,000 rows ~20 MB of a full plan), and so are its integers; equal decimals of a column
    are one object. Nothing else about the rows differs."""
    from control_plane.collector import paused_gc

    # (Hundreds of thousands of rows that stay alive: the cyclic collector would rescan them again
    # and again, finding nothing; collector.py.)
    with paused_gc():
        return _read_live(conn, box, full, keys, records, changed, desired)


def _read_live(conn: Connection, box: SecretBox, full: frozenset[str] | None = None,
              keys: dict[str, frozenset[str]] | None = None,
              records: dict[str, dict[str, ManagedRecord]] | None = None,
              changed: dict[str, ChangedRows] | None = None,
              desired: dict[str, dict[str, Row]] | None = None) -> LiveState:
    from control_plane.db.models import ManagedObject

    keys = dict(keys or {})
    records = dict(records or {})
    changed = changed or {}
    present = existing_tables(conn)
    rows: dict[str, dict[str, Row]] = {}
    ids: dict[str, dict[str, int]] = {}
    key_by_id: dict[str, dict[int, str]] = {}
    unreadable: list[str] = []
    keys_only = _needed_keys(full)
    # Kinds whose ids another kind's references are mapped from (the others keep no id -> key map).
    referenced = {target for other in ROW_KINDS.values() for target in other.refs.values()}
    for kind in apply_order():
        rk = ROW_KINDS[kind]
        whole = full is None or kind in full
        if rk.table_name not in present or not (whole or kind in keys_only):
            rows[kind], ids[kind], key_by_id[kind] = {}, {}, {}
            continue
        if not whole:
            ids[kind] = _read_keys(conn, rk, key_by_id)
            rows[kind] = {}
            key_by_id[kind] = {v: k for k, v in ids[kind].items()}
            continue
        columns = managed_columns(rk)
        table = rk.table
        selected = [table.c.id, *(table.c[c] for c in columns)]
        if rk.version_column:
            selected.append(table.c[rk.version_column])
        whole_stmt = rk.only_system_rows(select(*selected))
        stmts = [whole_stmt]
        if kind in keys:
            found = records.get(kind, {})
            wanted = {found[k].row_id for k in keys[kind] if k in found}
            if kind in changed:
                wanted |= changed[kind].ids
            wanted = sorted(wanted)
            stmts = [whole_stmt.where(table.c.id.in_(wanted[i : i + IN_CHUNK])) for i in range(0, len(wanted), IN_CHUNK)]
        kind_rows: dict[str, Row] = {}
        kind_ids: dict[str, int] = {}
        n = len(columns)
        ref_positions = [(columns.index(c), key_by_id[t]) for c, t in rk.refs.items()]
        secret_positions = [columns.index(c) for c in rk.secret_columns]
        key_positions = [columns.index(c) for c in rk.key_columns]
        single = key_positions[0] if len(key_positions) == 1 else None
        versioned = rk.version_column is not None
        holder = values_maker(columns).holder  # (make() inlined in add: one call less per row)
        wanted_rows = (desired or {}).get(kind) or {}
        # Text and integer columns (neither references, already the referenced keys, nor secrets):
        # shared with the desired row's equal values of the same type.
        shared_columns = [(i, c, _shared_type(rk.table.c[c].type)) for i, c in enumerate(columns)
                          if c not in rk.refs and c not in rk.secret_columns and _shared_type(rk.table.c[c].type)]
        # Decimals of a fixed scale (the database gives every one of such a column the same
        # exponent, so equal ones are the same value in every respect; zero is left alone, it may
        # carry a sign): one object per value.
        decimal_columns = [(i, {}) for i, c in enumerate(columns)
                           if c not in rk.secret_columns and _fixed_decimal(rk.table.c[c].type)]

        def add(record, kind=kind, kind_rows=kind_rows, kind_ids=kind_ids, columns=columns, n=n,
                ref_positions=ref_positions, secret_positions=secret_positions, key_positions=key_positions,
                single=single, versioned=versioned, holder=holder, wanted_rows=wanted_rows,
                shared_columns=shared_columns, decimal_columns=decimal_columns) -> None:
            vals = list(record[1 : 1 + n])
            for i, names in ref_positions:
                if vals[i] is not None:
                    vals[i] = names.get(vals[i], f"#{vals[i]}")
            stored = None
            if secret_positions:
                stored = {columns[i]: vals[i] for i in secret_positions}
                for i in secret_positions:
                    vals[i] = _decrypt(vals[i], box)
            key = str(vals[single]) if single is not None else "/".join([str(vals[i]) for i in key_positions])
            if secret_positions and any(_has_unreadable(vals[i]) for i in secret_positions):
                unreadable.append(f"{kind}/{key}")
            want = wanted_rows.get(key)
            if want is not None:
                key = want.key
                get = want.values.get
                for i, c, cls in shared_columns:
                    other = get(c)
                    if other.__class__ is cls and vals[i].__class__ is cls and vals[i] == other:
                        vals[i] = other
            for i, seen in decimal_columns:
                value = vals[i]
                if value and len(seen) < DECIMALS_KEPT:
                    vals[i] = seen.setdefault(value, value)
            values = holder().__dict__
            values.update(zip(columns, vals, strict=True))
            kind_rows[key] = Row(kind, key, values, None, False, record[0],
                                 record[-1] if versioned else None, stored)
            kind_ids[key] = record[0]

        for stmt in stmts:
            for record in stream(conn, stmt):
                add(record)
        if kind in changed:
            if _by_row_holds(conn, rk, changed[kind], kind_rows, records.get(kind, {})):
                keys[kind] = keys[kind] | frozenset(kind_rows)
            else:  # the ids do not account for the table: read it whole, as without the log
                kind_rows.clear()
                kind_ids.clear()
                del keys[kind]
                records.pop(kind, None)
                for record in stream(conn, whole_stmt):
                    add(record)
        rows[kind] = kind_rows
        ids[kind] = kind_ids
        key_by_id[kind] = {v: k for k, v in kind_ids.items()} if kind in referenced else {}

    managed: dict[str, dict[str, ManagedRecord]] = defaultdict(dict)
    mo = ManagedObject.__table__
    if mo.name in present and (full is None or full):
        refs = mo.c.secret_refs if "secret_refs" in {c["name"] for c in inspect(conn).get_columns(mo.name)} \
            else null().label("secret_refs")
        base = select(mo.c.id, mo.c.kind, mo.c.name, mo.c.row_id, mo.c.fingerprint, mo.c.prevent_destroy, refs)
        stmts = [base]
        if full is not None:
            whole = sorted(k for k in full if k not in keys)
            stmts = [base.where(mo.c.kind.in_(whole))] if whole else []
            for kind in keys:
                managed[kind] = dict(records.get(kind, {}))
        new_managed = tuple.__new__
        for stmt in stmts:
            for id_, kind, name, row_id, fp, prevent, secret_refs in stream(conn, stmt):
                # (The natural key is the live row's own string when there is one: not a second copy.)
                row = rows.get(kind, {}).get(name)
                if row is not None:
                    name = row.key
                    if row.id == row_id:
                        row_id = row.id
                managed[kind][name] = new_managed(Managed, (id_, row_id, fp, prevent, secret_refs))
    return LiveState(rows, dict(managed), ids, unreadable, full, keys=keys)


def _by_row_holds(conn: Connection, rk, changed: ChangedRows, read: dict[str, Row],
                  records: dict[str, ManagedRecord]) -> bool:
    """Whether the rows read by id (`read`, by natural key) and the managed `records` of the rows
    those ids were account for the kind's whole table: every row not named by the log is as the
    last apply left it, so it is neither read nor compared. Checked here, where the rows are:

    - no row read carries the key of a managed record outside the ids (a second row with the key
      of a row that did not move: the table is not what the record says);
    - the table's system rows number what the record left, minus the rows those ids were, plus
      those they are now. A write that bypasses the triggers (SQLite's REPLACE deletes the rows it
      conflicts with without firing delete triggers) shows here as one row too few."""
    from sqlalchemy import func

    from control_plane.db.models import ManagedObject

    mo = ManagedObject.__table__
    others = sorted(k for k in read if k not in records)
    for i in range(0, len(others), IN_CHUNK):
        stmt = select(mo.c.row_id).where(mo.c.kind == rk.name, mo.c.name.in_(others[i : i + IN_CHUNK]))
        if any(row_id not in changed.ids for row_id in conn.execute(stmt).scalars()):
            return False
    was = sum(1 for r in records.values() if r.row_id in changed.ids)
    now = conn.execute(rk.only_system_rows(select(func.count()).select_from(rk.table))).scalar_one()
    return now == changed.count - was + len(read)


def _shared_type(column_type) -> type | None:
    """str for a String or Text column, int for an Integer one (not JSON, decimals, times, booleans)."""
    from sqlalchemy import Integer, String

    return str if isinstance(column_type, String) else int if isinstance(column_type, Integer) else None


def _fixed_decimal(column_type) -> bool:
    from sqlalchemy import Numeric

    return isinstance(column_type, Numeric) and bool(column_type.asdecimal) and column_type.scale is not None


# Distinct decimals kept per column for sharing (prices and the like repeat; beyond this, a new one is its own).
DECIMALS_KEPT = 4096


def _read_keys(conn: Connection, rk, key_by_id: dict[str, dict[int, str]]) -> dict[str, int]:
    """{natural key: id} of a row kind's system rows (references in its key mapped as read_live does)."""
    table = rk.table
    stmt = rk.only_system_rows(select(table.c.id, *(table.c[c] for c in rk.key_columns)))
    maps = [key_by_id.get(rk.refs[c], {}) if c in rk.refs else None for c in rk.key_columns]
    found: dict[str, int] = {}
    for record in stream(conn, stmt):
        parts = []
        for value, names in zip(record[1:], maps, strict=True):
            if names is not None and value is not None:
                value = names.get(value, f"#{value}")
            parts.append(str(value))
        found["/".join(parts)] = record[0]
    return found


def _decrypt_one(token: Any, box: SecretBox) -> Any:
    if not isinstance(token, str):
        return UNREADABLE
    value = box.decrypt(token)
    return UNREADABLE if value is None else value


def _decrypt(stored: Any, box: SecretBox) -> Any:
    if stored is None:
        return None
    if isinstance(stored, dict):
        return {k: _decrypt_one(v, box) if v else None for k, v in stored.items()}
    return _decrypt_one(stored, box)


def _has_unreadable(value: Any) -> bool:
    if isinstance(value, dict):
        return any(v is UNREADABLE for v in value.values())
    return value is UNREADABLE


def encrypt(value: Any, box: SecretBox) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: box.encrypt(v) for k, v in value.items() if v is not None}
    return box.encrypt(value)
