"""The whole database: system data, user data and cplane's own bookkeeping.

cplane's own tables (controller.py) are imported with the package; the system models (system.py)
and the user models (user.py) when a name of theirs is first asked for (`from
control_plane.db.models import Plan`, `getattr(models, name)`), and `metadata` imports them all (it
is the whole schema: Alembic, DDL, anything that walks every table). A plan or an apply touches
only cplane's tables and the system tables, so it never pays for declaring the fifty user models
(tests/test_imports.py). The user models are imported after the system ones, as they always were
(their foreign keys name system tables). An ORM Session's flush sorts every mapped table, so code
that writes through a Session asks for `metadata` first (the runtime imports every model anyway):
with the system models alone, seed_keywords.account_id names a table not declared yet.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

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

__all__ = ["Base", "metadata", "AppliedState", "ApplyRun", "ChangeCounter", "CleanupRun", "DatabaseIdentity", "ManagedObject",
           "Operator", "RowChange", "RunRows", "ScheduledChange", "SecretKey"]


def _public(module) -> dict[str, Any]:
    """What `from module import *` gives: its __all__, or every name not starting with `_`."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    return {n: getattr(module, n) for n in names}


def _bind(names: dict[str, Any]) -> None:
    namespace = globals()
    for name, value in names.items():
        namespace.setdefault(name, value)


def __getattr__(name: str) -> Any:
    # The names `from .system import *` and `from .user import *` used to bind here, bound on
    # first use (each found once: afterwards an ordinary attribute of the package).
    if name.startswith("__"):
        raise AttributeError(name)
    if name == "metadata":
        for sub in ("system", "user"):
            _bind(_public(import_module(f"{__name__}.{sub}")))
        globals()["metadata"] = Base.metadata
        return Base.metadata
    for sub in ("system", "user"):
        found = _public(import_module(f"{__name__}.{sub}"))
        if name in found:
            _bind(found)
            return found[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
