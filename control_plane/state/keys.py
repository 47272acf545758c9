"""Which key the stored secrets were written with, and whether this process's key reads them.

Every encrypted column of the database (system and user data alike) is found from the models: a
column whose name ends in `_encrypted` holds a Fernet token, or a JSON map of them. The database
records the key id of the key its secrets are encrypted with (cplane_secret_keys); a key that
cannot read them is an error that names the objects and the key id, never drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import JSON, Column, Connection, Table, insert, select, text, update

from control_plane.secrets import KEY_VARIABLE, SecretBox, SecretKeyError
from control_plane.state.live import existing_tables

ENCRYPTED_SUFFIX = "_encrypted"


@dataclass(frozen=True)
class EncryptedColumn:
    table: Table
    column: Column
    is_map: bool  # a JSON map {name: token}

    @property
    def label(self) -> str:
        return f"{self.table.name}.{self.column.name}"


@cache
def encrypted_columns() -> tuple[EncryptedColumn, ...]:
    """Every column of the database that holds encrypted secrets."""
    from control_plane.db.models import metadata

    found = []
    for table in sorted(metadata.tables.values(), key=lambda t: t.name):
        for column in table.columns:
            if column.name.endswith(ENCRYPTED_SUFFIX):
                found.append(EncryptedColumn(table, column, isinstance(column.type, JSON)))
    return tuple(found)


def tokens_of(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [v for v in value.values() if v]
    return [value]


def recorded_key_id(conn: Connection) -> str | None:
    """The key id the database's secrets are encrypted with (None: never recorded)."""
    from control_plane.db.models import SecretKey

    table = SecretKey.__table__
    if table.name not in existing_tables(conn):
        return None
    return conn.execute(
        select(table.c.key_id).where(table.c.retired_at.is_(None)).order_by(table.c.id.desc()).limit(1)
    ).scalar()


def _user_labels(conn: Connection, box: SecretBox, *, only_unreadable: bool, limit: int | None = None) -> list[str]:
    """'table (N stored secrets)' for the user-data rows (account_id set) holding secrets."""
    present = existing_tables(conn)
    labels = []
    for ec in encrypted_columns():
        table, column = ec.table, ec.column
        if table.name not in present or "account_id" not in table.c:
            continue
        stmt = select(column).where(column.is_not(None), table.c.account_id.is_not(None))
        if limit:
            stmt = stmt.limit(limit)
        n = 0
        for (value,) in conn.execute(stmt):
            tokens = tokens_of(value)
            if only_unreadable:
                n += sum(1 for t in tokens if not box.can_read(t))
            else:
                n += len(tokens)
        if n:
            labels.append(f"{ec.label} ({n} stored secret{'s' if n > 1 else ''})")
    return labels


def _refusal(labels: list[str], recorded: str | None, box: SecretBox) -> SecretKeyError:
    shown = ", ".join(labels[:20]) + (f" and {len(labels) - 20} more" if len(labels) > 20 else "")
    plural = len(labels) > 1
    secret = "secrets were" if plural else "secret was"
    if recorded is not None and recorded == box.key_id:
        return SecretKeyError(
            f"{shown}: the stored {secret} not readable with the key they are recorded under (key id {recorded}): "
            f"changed outside cplane; set {'them' if plural else 'it'} again"
        )
    was = f"key id {recorded}" if recorded else "key id not recorded"
    return SecretKeyError(
        f"{shown}: the stored {secret} encrypted with another key ({was}; {KEY_VARIABLE} is key id {box.key_id}); "
        f"set the {KEY_VARIABLE} it was written with, or run cplane secrets rotate-key"
    )


def check_key(conn: Connection, box: SecretBox, unreadable: list[str]) -> None:
    """Refuse when `box` cannot read the stored secrets: `unreadable` (the system rows read_live
    could not decrypt), or a recorded key id that is not this key's while user data holds secrets."""
    recorded = recorded_key_id(conn)
    if unreadable:
        raise _refusal(list(unreadable), recorded, box)
    if recorded is not None and recorded != box.key_id:
        labels = _user_labels(conn, box, only_unreadable=False)
        if labels:
            raise _refusal(labels, recorded, box)


def secrets_problem(conn: Connection, box: SecretBox, *, sample: int = 200) -> str | None:
    """Why the stored secrets cannot be read with `box` (None: they can). For /readyz and serve:
    system rows are all tried, user data up to `sample` rows per column."""
    recorded = recorded_key_id(conn)
    present = existing_tables(conn)
    labels: list[str] = []
    from control_plane.kinds.registry import ROW_KINDS

    for kind, rk in ROW_KINDS.items():
        if not rk.secret_columns or rk.table_name not in present:
            continue
        key_cols = [rk.table.c[c] for c in rk.key_columns]
        stmt = rk.only_system_rows(select(*key_cols, *(rk.table.c[c] for c in rk.secret_columns)))
        for row in conn.execute(stmt):
            keys, values = row[: len(key_cols)], row[len(key_cols):]
            if any(not box.can_read(t) for v in values for t in tokens_of(v)):
                labels.append(f"{kind}/{'/'.join(str(k) for k in keys)}")
    if not labels and recorded is not None and recorded != box.key_id:
        labels = _user_labels(conn, box, only_unreadable=False, limit=sample)
    if not labels:
        labels = _user_labels(conn, box, only_unreadable=True, limit=sample)
    return str(_refusal(labels, recorded, box)) if labels else None


def record_key(conn: Connection, box: SecretBox, actor: str) -> None:
    """Inside an apply: the database's secrets are (now) encrypted with `box`'s key."""
    from control_plane.db.models import SecretKey

    table = SecretKey.__table__
    recorded = recorded_key_id(conn)
    if recorded == box.key_id:
        return
    if recorded is not None:  # check_key found no secret under the old key: nothing is lost
        conn.execute(update(table).where(table.c.retired_at.is_(None)).values(retired_at=text("CURRENT_TIMESTAMP")))
    conn.execute(insert(table), {"key_id": box.key_id, "event": "recorded", "actor": actor,
                                 "previous_key_id": recorded, "reencrypted": {}})
