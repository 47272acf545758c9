"""Change counters: one version per table that moves on every write to it, by SQL too.

The plan's fast path (nothing changed since the last apply) and the runtime's caches (catalog
ETags, global prompts) compare these versions instead of reading rows. Triggers maintain them
(`db/dialect.py` holds the per-backend DDL); this module says which tables are counted and reads
the versions in one query.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from sqlalchemy import Connection, inspect, select, text

from control_plane.db.dialect import for_dialect
from control_plane.db.models.controller import ChangeCounter

# Every table a plan reads (the system tables of the registry's row kinds, the prompt version
# history, cplane's bookkeeping that decides drift and secrets) and every table a runtime cache
# serves. tests/test_schema.py checks that the registry's tables are all here and that a migrated
# database carries the triggers of each. A migration that adds a table to this list installs its
# triggers with install() (and one that rebuilds a counted table on SQLite, batch mode, reinstalls
# them: SQLite drops a table's triggers with it).
COUNTED_TABLES: tuple[str, ...] = (
    "ai_integration_settings", "content_templates", "content_type_configs", "credit_cost_configs",
    "credit_packages", "global_ai_prompts", "global_author_profiles", "global_strategies", "industries",
    "industry_sectors", "notification_configs", "payment_method_configs", "permissions", "plans",
    "publishing_channels", "role_permissions", "roles", "seed_keywords", "system_settings",
    "taxonomy_configs",
    "global_ai_prompt_versions", "ai_prompts",
    "cplane_managed_objects", "cplane_secret_keys", "cplane_database",
)


def install(conn: Connection, tables: Iterable[str]) -> None:
    """Counter rows (at a random start) and triggers for `tables`; idempotent."""
    tables = list(tables)
    existing = set(conn.execute(select(ChangeCounter.table_name)).scalars())
    for table in tables:
        if table not in existing:
            conn.execute(ChangeCounter.__table__.insert().values(table_name=table, version=secrets.randbelow(2**40) + 1))
    for statement in for_dialect(conn).change_counter_ddl(tables):
        conn.execute(text(statement))


def uninstall(conn: Connection, tables: Iterable[str]) -> None:
    for statement in for_dialect(conn).drop_change_counter_ddl(list(tables)):
        conn.execute(text(statement))


def versions(conn: Connection, tables: Iterable[str] | None = None) -> dict[str, int] | None:
    """{table: version} for the counted `tables` (all when None), in one query; None when the
    database has no counters yet (not migrated this far), so callers fall back to reading rows."""
    if not inspect(conn).has_table(ChangeCounter.__tablename__):
        return None
    stmt = select(ChangeCounter.table_name, ChangeCounter.version)
    if tables is not None:
        stmt = stmt.where(ChangeCounter.table_name.in_(list(tables)))
    return {name: int(version) for name, version in conn.execute(stmt)}


def counted_tables(conn: Connection) -> set[str]:
    """The tables of this database whose triggers are in place."""
    return for_dialect(conn).counted_tables(conn)
