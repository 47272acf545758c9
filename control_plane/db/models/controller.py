"""cplane's own bookkeeping: which rows it manages, and what it did."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text, UniqueConstraint, func
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
