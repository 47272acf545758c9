"""Live state: the system rows in the database, in the shape of desired state."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, inspect, select

from control_plane.kinds.registry import ROW_KINDS, apply_order
from control_plane.secrets import SecretBox
from control_plane.state.rows import Row, managed_columns


class ManagedRecord(Protocol):
    """A row of cplane_managed_objects (the SQLAlchemy row itself, to avoid copying 100,000 of them)."""

    id: int
    row_id: int
    fingerprint: str
    prevent_destroy: bool


@dataclass
class LiveState:
    rows: dict[str, dict[str, Row]]
    managed: dict[str, dict[str, ManagedRecord]]
    ids: dict[str, dict[str, int]]


def existing_tables(conn: Connection) -> set[str]:
    """Tables the database has now. Read-only commands run against a database whose migrations
    have not run (yet): a missing table is read as empty, never created and never an error."""
    return set(inspect(conn).get_table_names())


def read_live(conn: Connection, box: SecretBox) -> LiveState:
    """Every system row of every row kind, one SELECT per table, references mapped to natural keys."""
    from control_plane.db.models import ManagedObject

    present = existing_tables(conn)
    rows: dict[str, dict[str, Row]] = {}
    ids: dict[str, dict[str, int]] = {}
    key_by_id: dict[str, dict[int, str]] = {}
    for kind in apply_order():
        rk = ROW_KINDS[kind]
        if rk.table_name not in present:
            rows[kind], ids[kind], key_by_id[kind] = {}, {}, {}
            continue
        columns = managed_columns(rk)
        table = rk.table
        selected = [table.c.id, *(table.c[c] for c in columns)]
        if rk.version_column:
            selected.append(table.c[rk.version_column])
        stmt = rk.only_system_rows(select(*selected))
        kind_rows: dict[str, Row] = {}
        kind_ids: dict[str, int] = {}
        n = len(columns)
        ref_positions = [(columns.index(c), key_by_id[t]) for c, t in rk.refs.items()]
        secret_positions = [columns.index(c) for c in rk.secret_columns]
        key_positions = [columns.index(c) for c in rk.key_columns]
        versioned = rk.version_column is not None
        for record in conn.execute(stmt).all():
            vals = list(record[1 : 1 + n])
            for i, names in ref_positions:
                if vals[i] is not None:
                    vals[i] = names.get(vals[i], f"#{vals[i]}")
            for i in secret_positions:
                vals[i] = _decrypt(vals[i], box)
            key = str(vals[key_positions[0]]) if len(key_positions) == 1 else "/".join(
                [str(vals[i]) for i in key_positions]
            )
            kind_rows[key] = Row(kind, key, dict(zip(columns, vals, strict=True)), None, False, record[0],
                                 record[-1] if versioned else None)
            kind_ids[key] = record[0]
        rows[kind] = kind_rows
        ids[kind] = kind_ids
        key_by_id[kind] = {v: k for k, v in kind_ids.items()}

    managed: dict[str, dict[str, ManagedRecord]] = defaultdict(dict)
    mo = ManagedObject.__table__
    if mo.name in present:
        for r in conn.execute(select(mo.c.id, mo.c.kind, mo.c.name, mo.c.row_id, mo.c.fingerprint, mo.c.prevent_destroy)).all():
            managed[r.kind][r.name] = r
    return LiveState(rows, dict(managed), ids)


def _decrypt(stored: Any, box: SecretBox) -> Any:
    if stored is None:
        return None
    if isinstance(stored, dict):
        return {k: box.decrypt(v) if v else None for k, v in stored.items()}
    return box.decrypt(stored)


def encrypt(value: Any, box: SecretBox) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: box.encrypt(v) for k, v in value.items() if v is not None}
    return box.encrypt(value)
