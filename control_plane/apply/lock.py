"""The apply lock, in a module of its own: the no-change fast path takes it without importing the
models or the apply machinery (control_plane.apply.execute re-exports these names), and the
raw-driver path (cli/entry.py) reads the lock's id without importing SQLAlchemy."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from control_plane.errors import LockHeld

if TYPE_CHECKING:
    from sqlalchemy import Connection

APPLY_LOCK_ID = 0x63706C616E65  # "cplane"
LOCK_MESSAGE = "another cplane apply is in progress on this database (apply lock held); try again when it finishes"


class ApplyLocked(LockHeld):
    pass


@contextmanager
def apply_lock(conn: Connection, timeout: float = 0, on_wait=None):
    """Database-wide, for the apply transaction (db.dialect: how each backend does it): fails at once
    when another apply holds it, or after waiting up to `timeout` seconds."""
    # (imported here: the raw-driver path imports APPLY_LOCK_ID without SQLAlchemy)
    from control_plane.db.dialect import for_dialect

    message = LOCK_MESSAGE if timeout <= 0 else f"{LOCK_MESSAGE} (waited {timeout:g}s, --lock-timeout)"
    with for_dialect(conn).xact_lock(conn, APPLY_LOCK_ID, "apply", ApplyLocked(message), timeout=timeout,
                                     on_wait=on_wait):
        yield
