"""`cplane secrets rotate-key`: every stored secret re-encrypted to a new key, in one transaction.

System and user data alike (every `*_encrypted` column, state.keys), read with the old or the new
key and written with the new one (MultiFernet), under the apply lock; the fingerprints cplane keeps
of its managed rows are re-made with the new key (secrets enter them as an HMAC keyed by the key),
so that a plan afterwards is `No changes`; the rotation is recorded in cplane_secret_keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.fernet import InvalidToken
from sqlalchemy import Engine, bindparam, insert, select, text, update

from control_plane.apply.execute import apply_lock
from control_plane.kinds.registry import ROW_KINDS
from control_plane.secrets import KEY_VARIABLE, NEW_KEY_VARIABLE, Rotation, SecretBox, SecretKeyError
from control_plane.state.keys import encrypted_columns, recorded_key_id
from control_plane.state.live import existing_tables, read_live
from control_plane.state.rows import row_fingerprint


@dataclass
class RotationResult:
    old_key_id: str
    new_key_id: str
    reencrypted: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.reencrypted.values())


def rotate_key(engine: Engine, old: SecretBox, new: SecretBox, *, actor: str) -> RotationResult:
    from control_plane.db.models import ManagedObject, SecretKey

    if old.key_id == new.key_id:
        raise SecretKeyError(f"{NEW_KEY_VARIABLE} is the same key as {KEY_VARIABLE} (key id {old.key_id})")
    rotation = Rotation(old, new)
    result = RotationResult(old.key_id, new.key_id)
    with engine.begin() as conn, apply_lock(conn):
        recorded = recorded_key_id(conn)
        if recorded is not None and recorded not in (old.key_id, new.key_id):
            raise SecretKeyError(
                f"the stored secrets were encrypted with key id {recorded}, and {KEY_VARIABLE} is key id "
                f"{old.key_id}; set {KEY_VARIABLE} to the key they were written with"
            )
        # The fingerprints cplane recorded, checked with the old key before anything changes.
        before = read_live(conn, old) if recorded != new.key_id else None
        present = existing_tables(conn)
        unreadable: list[str] = []
        for ec in encrypted_columns():
            if ec.table.name not in present:
                continue
            pk = ec.table.primary_key.columns.values()[0]
            updates = []
            n = 0
            for row_id, value in conn.execute(select(pk, ec.column).where(ec.column.is_not(None))):
                try:
                    if isinstance(value, dict):
                        rotated = {k: rotation.rotate(v) if v else v for k, v in value.items()}
                        n += sum(1 for v in value.values() if v)
                    else:
                        rotated = rotation.rotate(value)
                        n += 1
                except InvalidToken:
                    unreadable.append(f"{ec.label} {row_id}")
                    continue
                if rotated != value:
                    updates.append({"_pk": row_id, "_value": rotated})
            if updates:
                conn.execute(update(ec.table).where(pk == bindparam("_pk"))
                             .values({ec.column.name: bindparam("_value", type_=ec.column.type)}), updates)
            if n:
                result.reencrypted[ec.label] = n
        if unreadable:
            shown = ", ".join(unreadable[:10]) + (f" and {len(unreadable) - 10} more" if len(unreadable) > 10 else "")
            raise SecretKeyError(
                f"{shown}: neither {KEY_VARIABLE} (key id {old.key_id}) nor {NEW_KEY_VARIABLE} (key id {new.key_id}) "
                "can decrypt these stored secrets; nothing was changed"
            )
        if before is not None:
            _refingerprint(conn, before, old, new, ManagedObject.__table__)
        keys = SecretKey.__table__
        conn.execute(update(keys).where(keys.c.retired_at.is_(None)).values(retired_at=text("CURRENT_TIMESTAMP")))
        conn.execute(insert(keys), {"key_id": new.key_id, "event": "rotated", "actor": actor,
                                    "previous_key_id": old.key_id, "reencrypted": result.reencrypted})
    return result


def _refingerprint(conn, before, old: SecretBox, new: SecretBox, mo) -> None:
    """Managed rows with secrets: a fingerprint that matched under the old key is re-made under the
    new one (same values, new HMAC); one that did not (drift) stays as it is, still drift."""
    updates = []
    skip = set(before.unreadable)
    for kind, rows in before.rows.items():
        rk = ROW_KINDS[kind]
        if not rk.secret_columns:
            continue
        for key, record in before.managed.get(kind, {}).items():
            row = rows.get(key)
            if row is None or f"{kind}/{key}" in skip or record.fingerprint != row_fingerprint(rk, row.values, old):
                continue
            updates.append({"_mid": record.id, "_fp": row_fingerprint(rk, row.values, new)})
    if updates:
        conn.execute(update(mo).where(mo.c.id == bindparam("_mid")).values(fingerprint=bindparam("_fp")), updates)

