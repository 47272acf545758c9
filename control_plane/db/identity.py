"""The database's identity: the lineage id saved plans are bound to, and the environment the first
apply recorded. Reading never writes (the row is made by the migration that creates the table)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, inspect, select, text, update

from control_plane.db.models import DatabaseIdentity
from control_plane.environment import is_production
from control_plane.errors import CplaneError

TABLE = DatabaseIdentity.__table__


class EnvironmentMismatch(CplaneError):
    pass


@dataclass(frozen=True)
class Identity:
    dialect: str
    lineage: str | None  # None: a database cplane has not migrated yet
    environment: str | None  # None: no apply has recorded one

    def as_dict(self) -> dict[str, str | None]:
        return {"dialect": self.dialect, "lineage": self.lineage, "environment": self.environment}


def read_identity(conn: Connection) -> Identity:
    dialect = conn.dialect.name
    if not inspect(conn).has_table(TABLE.name):
        return Identity(dialect, None, None)
    row = conn.execute(select(TABLE.c.lineage, TABLE.c.environment).order_by(TABLE.c.id).limit(1)).first()
    if row is None:
        return Identity(dialect, None, None)
    return Identity(dialect, row.lineage, row.environment or None)


def environment_change(identity: Identity, environment: str | None) -> str | None:
    """None when `environment` may use this database as it is; else what would change, as
    "recorded -> environment". A database no apply has bound yet takes any environment; one bound
    to an environment refuses another, and no environment at all only when it is production."""
    recorded = identity.environment
    if recorded is None or recorded == environment:
        return None
    if environment is None and not is_production(recorded):
        return None
    return f"{recorded} -> {environment or '(none)'}"


def check_environment(identity: Identity, environment: str | None, allow: bool) -> str | None:
    """The environment change allowed by `allow` (None when there is none); raises when not allowed."""
    change = environment_change(identity, environment)
    if change and not allow:
        raise EnvironmentMismatch(
            f"refusing: this database is recorded as environment {identity.environment!r}, and this run is for "
            f"{_name(environment)}; pass --allow-environment-change if the database really changes environment"
        )
    return change


def record_environment(conn: Connection, environment: str | None) -> None:
    """Bind the database to `environment` (inside the apply transaction)."""
    if environment is None:
        return
    conn.execute(
        update(TABLE).where(TABLE.c.environment.is_distinct_from(environment))
        .values(environment=environment, environment_recorded_at=text("CURRENT_TIMESTAMP"))
    )


def _name(environment: str | None) -> str:
    return repr(environment) if environment else "no environment"
