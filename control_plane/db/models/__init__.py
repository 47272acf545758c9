"""The whole database: system data, user data and cplane's own bookkeeping."""

from control_plane.db.models.base import Base
from control_plane.db.models.controller import (
    AppliedState,
    ApplyRun,
    ChangeCounter,
    CleanupRun,
    DatabaseIdentity,
    ManagedObject,
    Operator,
    RowChange,
    RunRows,
    ScheduledChange,
    SecretKey,
)
from control_plane.db.models.system import *  # noqa: F403
from control_plane.db.models.user import *  # noqa: F403

metadata = Base.metadata

__all__ = ["Base", "metadata", "AppliedState", "ApplyRun", "ChangeCounter", "CleanupRun", "DatabaseIdentity", "ManagedObject",
           "Operator", "RowChange", "RunRows", "ScheduledChange", "SecretKey"]
