"""Change counters: one version per table that moves on every write to it, by SQL too.

The plan's fast path (nothing changed since the last apply) and the runtime's caches (catalog
ETags, global prompts) compare these versions instead of reading rows. Triggers maintain them
(`db/dialect.py` holds the per-backend DDL); this module says which tables are counted and reads
the versions in one query.

The row-change log (revision 0014, `cplane_row_changes`) says which rows moved: the same triggers
log, for the row kinds' tables, the ids each write touched with the version it produced, so that a
plan reads a drifted table by row (`row_changes`). The log is exact only when it accounts for every
version of the range asked (anything else, a TRUNCATE, a write of cplane's own apply, a pruned or
deleted log, reads as "unknown": the caller reads the table). A PostgreSQL statement logs row id 0
as well, its marker: one that touched no row still accounts for its version.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, inspect, select, text

from control_plane.db.dialect import for_dialect
from control_plane.db.models.controller import ChangeCounter, RowChange

# The tables whose writes the row-change log names row by row: the row kinds' own tables (each
# with an integer `id`), which a plan can read by id. The bookkeeping tables are left out (any
# write to them sends the plan the full way) and so are the version history and runtime tables
# (read whole when they move). tests/test_schema.py checks it against the registry.
LOGGED_TABLES: tuple[str, ...] = (
    "ai_integration_settings", "content_templates", "content_type_configs", "credit_cost_configs",
    "credit_packages", "global_ai_prompts", "global_author_profiles", "global_strategies", "industries",
    "industry_sectors", "notification_configs", "payment_method_configs", "permissions", "plans",
    "publishing_channels", "role_permissions", "roles", "seed_keywords", "system_settings",
    "taxonomy_configs",
)

# The mixed tables among them and the column whose NULL marks a system row (the registry's
# system_rows of their row kinds; tests/test_schema.py checks the two agree). A tenant's write to
# one logs its statement marker only (revision 0016): it accounts for the version and names no
# row, so the plan's fast path still holds while tenants write their own rows.
TENANT_COLUMNS: dict[str, str] = {"seed_keywords": "account_id", "ai_integration_settings": "account_id"}

# Every table a plan reads (the system tables of the registry's row kinds, the prompt version
# history, cplane's bookkeeping that decides drift and secrets) and every table a runtime cache
# serves. tests/test_schema.py checks that the registry's tables are all here and that a migrated
# database carries the triggers of each. A migration that adds a table to this list installs its
# triggers with install() (and one that rebuilds a counted table on SQLite, batch mode, reinstalls
# them: SQLite drops a table's triggers with it).
COUNTED_TABLES: tuple[str, ...] = (
    *LOGGED_TABLES,
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


def triggers_always(conn: Connection, always: bool = True) -> None:
    """Every counting and logging trigger of this database enabled ALWAYS (revision 0015; the DDL of
    install() and install_row_log() does it already for what they create), or, always=False, back
    to firing in 'origin' sessions only (0015's downgrade)."""
    for statement in for_dialect(conn).triggers_always_ddl(conn, always):
        conn.execute(text(statement))


def install_row_log(conn: Connection, tables: Iterable[str], tenant_columns: dict[str, str] | None = None) -> None:
    """The row-change log's triggers on `tables` (counted already); idempotent. A migration that
    rebuilds a logged table on SQLite reinstalls them after install() (which writes the plain
    counting triggers): without them the log misses that table's versions and plans read it whole."""
    for statement in for_dialect(conn).row_log_ddl(list(tables), tenant_columns):
        conn.execute(text(statement))


def uninstall_row_log(conn: Connection, tables: Iterable[str]) -> None:
    for statement in for_dialect(conn).drop_row_log_ddl(list(tables)):
        conn.execute(text(statement))


def row_changes(conn: Connection, table: str, since: int, until: int, limit: int) -> frozenset[int] | None:
    """The ids of `table`'s rows written by the writes that moved its counter from `since` to
    `until`, when the log accounts for every version in between and names at most `limit` rows;
    None when it does not (then nothing is known about which rows moved). Every logged write
    produced its own version (the counter's row lock orders them) and logged every row it touched
    under it, so a range whose versions all have entries has every written row among them."""
    if until == since:
        return frozenset()
    if until < since or until - since > limit or not inspect(conn).has_table(RowChange.__tablename__):
        return None
    log = RowChange.__table__
    stmt = (select(log.c.version, log.c.row_id)
            .where(log.c.table_name == table, log.c.version > since, log.c.version <= until).limit(limit + 1))
    entries = conn.execute(stmt).all()
    if len(entries) > limit or len({version for version, _ in entries}) != until - since:
        return None
    return frozenset(int(row_id) for _, row_id in entries)


def prune(conn: Connection) -> None:
    """Drop the log entries at or below each table's current version: the record an apply has just
    written (or removed) needs none of them. Called under the Recorder's counter locks, so no
    other transaction's entry can be at or below a version read here and still be needed."""
    if inspect(conn).has_table(RowChange.__tablename__):
        conn.execute(text(
            f"DELETE FROM {RowChange.__tablename__} WHERE version <= (SELECT c.version FROM "
            f"{ChangeCounter.__tablename__} c WHERE c.table_name = {RowChange.__tablename__}.table_name)"))


@contextmanager
def unlogged(conn: Connection) -> Iterator[None]:
    """cplane's own writes (an apply's) within: counted, never logged. The apply's record is
    written with the versions after them, so a later plan never asks the log about them; a
    100,000-row first apply would otherwise log 100,000 entries only to prune them."""
    backend = for_dialect(conn)
    if backend.name == "sqlite" and not inspect(conn).has_table(RowChange.__tablename__):
        yield
        return
    backend.unlogged_writes(conn, True)
    yield
    backend.unlogged_writes(conn, False)
