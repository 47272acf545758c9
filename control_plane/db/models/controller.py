"""cplane's own bookkeeping: which rows it manages, and what it did."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, LargeBinary, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, int_pk


class ManagedObject(Base):
    """One row per (kind, natural key) that cplane created or adopted.

    `fingerprint` is the hash of the row as cplane last wrote it: a live row that no longer
    matches it was edited outside cplane (drift).
    """

    __tablename__ = "cplane_managed_objects"
    __table_args__ = (UniqueConstraint("kind", "name"),)
    id: Mapped[int] = int_pk()
    kind: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(400))
    table_name: Mapped[str] = mapped_column(String(100))
    row_id: Mapped[int]
    fingerprint: Mapped[str] = mapped_column(String(64))
    # Remembered from the object's annotations so that removing it from config cannot bypass the guard.
    prevent_destroy: Mapped[bool] = mapped_column(default=False)
    # The references ({column: VAR} or {column: {sub: VAR}}) of the secrets cplane last wrote, so
    # that `cplane export` writes back the variable names the config used (names, never values).
    secret_refs: Mapped[dict[str, Any] | None]
    applied_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ApplyRun(Base):
    __tablename__ = "cplane_apply_runs"
    id: Mapped[int] = int_pk()
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]
    actor: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(100), default="")
    config_revision: Mapped[str] = mapped_column(String(100), default="")
    config_digest: Mapped[str] = mapped_column(String(64), default="")
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    plan: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # apply | saved-plan | adopt | saved-plan+adopt
    kind: Mapped[str] = mapped_column(String(30), default="apply", server_default="apply")
    # "staging -> production" when the apply changed the database's recorded environment.
    environment_change: Mapped[str] = mapped_column(String(250), default="", server_default="")


class RunRows(Base):
    """The desired rows an apply run left (managed rows, secrets by reference only), as compressed
    JSON: what `cplane rollback --to RUN` restores. Kept for the newest runs only (retention)."""

    __tablename__ = "cplane_run_rows"
    id: Mapped[int] = int_pk()
    run_id: Mapped[int] = mapped_column(unique=True)
    row_count: Mapped[int] = mapped_column(default=0)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ScheduledChange(Base):
    """The changes the applied config schedules for later, one row per object and time, replaced by
    every apply: what the runtime's catalog announces (`upcoming`)."""

    __tablename__ = "cplane_scheduled_changes"
    id: Mapped[int] = int_pk()
    at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(400))
    action: Mapped[str] = mapped_column(String(20))
    fields: Mapped[list[Any]] = mapped_column(default=list)
    entries: Mapped[list[Any]] = mapped_column(default=list)
    run_id: Mapped[int | None]


class DatabaseIdentity(Base):
    """One row, written once by the migration that creates it: the database's lineage id, which
    saved plans are bound to, and the environment its first apply recorded (None until then)."""

    __tablename__ = "cplane_database"
    id: Mapped[int] = int_pk()
    lineage: Mapped[str] = mapped_column(String(36), unique=True)
    environment: Mapped[str | None] = mapped_column(String(100))
    environment_recorded_at: Mapped[datetime | None]


class CleanupRun(Base):
    __tablename__ = "cplane_cleanup_runs"
    id: Mapped[int] = int_pk()
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]
    actor: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(100), default="")
    profile: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(30), default="running")
    rows_deleted: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message: Mapped[str] = mapped_column(Text, default="")


class Operator(Base):
    """A staff member's key for `/v1/admin` (`cplane operators create`): only its SHA-256 is kept."""

    __tablename__ = "cplane_operators"
    __table_args__ = (CheckConstraint("role IN ('admin', 'finance', 'support')", name="role"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class SecretKey(Base):
    """The key ids the stored secrets were encrypted with, and the audit of every key change.

    The current key is the row with `retired_at` NULL; a rotation retires it and adds the new one
    (actor, time and the number of secrets re-encrypted per column). Key ids are HMACs, never keys.
    """

    __tablename__ = "cplane_secret_keys"
    id: Mapped[int] = int_pk()
    key_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(30))  # recorded | rotated
    actor: Mapped[str] = mapped_column(String(200), default="")
    previous_key_id: Mapped[str | None] = mapped_column(String(64))
    reencrypted: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    retired_at: Mapped[datetime | None]


class ChangeCounter(Base):
    """One row per counted table: `version` moves on every write to that table.

    Triggers bump it (db/dialect.py: per statement on PostgreSQL, TRUNCATE included; per row on
    SQLite), so a write by SQL, outside cplane, moves it too. Readers compare versions, never
    rows: an unchanged version means the table is as it was. Versions start at a random value, so
    that a database dropped and created again does not repeat the versions a client remembers.
    """

    __tablename__ = "cplane_change_counters"
    table_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class AppliedState(Base):
    """What the last apply left behind, so that a plan can tell "nothing changed" without reading
    the config or a row (reconcile/fastpath.py). At most one row: every apply that writes replaces
    it, or removes it when the result cannot be vouched for (a saved plan, rows kept retired...).

    `inputs_digest` covers the config files' bytes, the environment, cplane's version and schema
    head, the secret key's id and the schedule bucket; `secrets_digest` is an HMAC (keyed by the
    secret key) of the values of `variables`, the environment variables the config's secrets name;
    `versions` the change-counter version of every table a plan reads, after apply's own writes.
    """

    __tablename__ = "cplane_applied_state"
    id: Mapped[int] = int_pk()
    apply_run_id: Mapped[int | None]
    inputs_digest: Mapped[str] = mapped_column(String(64))
    # The applied plan's config digest (what a plan made now would carry).
    config_digest: Mapped[str] = mapped_column(String(64))
    secrets_digest: Mapped[str] = mapped_column(String(64))
    variables: Mapped[list[Any]] = mapped_column(default=list)
    versions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The plan's warnings (secret variables not set), which a plan from this record repeats.
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    # The incremental plan's part (revision 0013): {"context": digest, "kinds": {kind: digest of
    # its desired rows}}; None: every table is read (reconcile/incremental.py).
    tables: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    recorded_at: Mapped[datetime] = mapped_column(server_default=func.now())


class RowChange(Base):
    """The row-change log (revision 0014): which rows of a logged table a write touched, and the
    table's change-counter version that write produced (db/counters.py, db/dialect.py).

    The same triggers that move the counter write it, after the bump: one INSERT ... SELECT per
    statement on PostgreSQL (from its transition tables), one row per row on SQLite. A plan whose
    record says a table was at version v0 and finds it at v1 reads the entries of (v0, v1]; they
    say which rows moved only when every version of that range has an entry (a TRUNCATE, a
    statement that changed no row, a write while cplane applies leave none: the table is read
    whole). cplane's own apply is not logged, and prunes what its record made obsolete.
    """

    __tablename__ = "cplane_row_changes"
    table_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    row_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
