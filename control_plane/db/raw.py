"""The database without SQLAlchemy: what the no-change fast path needs to answer `cplane plan` in a
fraction of the time SQLAlchemy takes to import (docs/architecture.md, the fast path).

- `raw_url()`: which URL a command uses (explicit, else $DATABASE_URL, else ./cplane.db), the one
  place that rule lives (db/engine.py's resolve_url starts from it too);
- `parse()`: the URLs cplane accepts, read the way SQLAlchemy's make_url reads them, or None for
  anything this parser is not sure of (then the caller takes the SQLAlchemy path, which decides);
- `connect()`: a read-only psycopg or sqlite3 connection, as db/engine.py's read-only engine opens it;
- the catalog queries both the raw and the SQLAlchemy connection run (`has_table`, `counted_tables`),
  so that the two paths cannot disagree about them; db/dialect.py's counted_tables runs the same SQL.

Nothing here imports more than the standard library (psycopg only when connecting to PostgreSQL).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote

DEFAULT_SQLITE_FILE = "cplane.db"
# PostgreSQL query parameters passed through to libpq as they are; any other one: not sure, None.
_PG_QUERY = frozenset({"sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "target_session_attrs"})
_URL = re.compile(
    r"^(?P<name>[\w+]+)://"
    r"(?:(?P<user>[^:/@]*)(?::(?P<password>[^@]*))?@)?"
    r"(?P<host>[^/:?@,\[\]]*)?(?::(?P<port>\d+))?"
    r"(?:/(?P<database>[^?]*))?(?:\?(?P<query>.*))?$",
    re.S,
)
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def raw_url(url: str | None = None) -> str:
    """The URL a command uses: explicit, else DATABASE_URL, else ./cplane.db; `postgres://` is
    `postgresql://`."""
    raw = url or os.environ.get("DATABASE_URL") or f"sqlite:///{DEFAULT_SQLITE_FILE}"
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://"):]
    return raw


@dataclass(frozen=True)
class Target:
    """A database URL as SQLAlchemy reads it: the backend, the database (a file for SQLite) and,
    for PostgreSQL, libpq's connection parameters."""

    dialect: str
    database: str | None
    params: dict[str, str] = field(default_factory=dict)


def parse(raw: str) -> Target | None:
    """The URL's target, or None when it is anything this parser does not fully understand (another
    driver, a query it does not know, several hosts, a SQLite URI filename)."""
    match = _URL.match(raw)
    if match is None:
        return None
    name, user, password, host, port, database, query = match.group(
        "name", "user", "password", "host", "port", "database", "query")
    if name in ("sqlite", "sqlite+pysqlite"):
        if user is not None or host or port or query:
            return None
        database = unquote(database) if database else None
        if database and database.startswith("file:"):
            return None
        return Target("sqlite", database)
    if name not in ("postgresql", "postgresql+psycopg"):
        return None
    params: dict[str, str] = {}
    for key, value in parse_qsl(query or "", keep_blank_values=True, strict_parsing=bool(query)):
        if key not in _PG_QUERY or key in params:
            return None
        params[key] = value
    for key, value in (("user", user), ("password", password), ("host", host), ("port", port),
                       ("dbname", database)):
        if value:
            params[key] = unquote(value)
    return Target("postgresql", unquote(database) if database else None, params)


def connect(target: Target):
    """A connection that cannot write, opened as db/engine.py's read-only engine opens it (PostgreSQL:
    default_transaction_read_only, 5 s connect timeout; SQLite: mode=ro, 5 s busy timeout). None for
    a SQLite file that does not exist (nothing was ever applied there) or an in-memory database."""
    if target.dialect == "sqlite":
        import sqlite3
        from urllib.parse import quote

        if not target.database or target.database == ":memory:" or not Path(target.database).is_file():
            return None
        conn = sqlite3.connect(f"file:{quote(str(Path(target.database).resolve()))}?mode=ro", uri=True)
        conn.execute("PRAGMA busy_timeout=5000")
        return conn
    import psycopg

    return psycopg.connect(**target.params, connect_timeout=5, options="-c default_transaction_read_only=on")


def lock_file(database: str, name: str) -> Path:
    """SQLite's stand-in for the advisory lock `name`: the file beside the database that
    db/dialect.py's file_lock flocks."""
    return Path(database).with_name(f"{Path(database).name}.{name}-lock")


@contextmanager
def try_xact_lock(conn, target: Target, lock_id: int, name: str) -> Iterator[bool]:
    """One try of db/dialect.py's xact_lock (PostgreSQL: the advisory transaction lock `lock_id`,
    released when the transaction ends; SQLite: a non-blocking flock on lock_file(name)): yields
    whether it was taken. Waiting for a held lock is the click command's (--lock-timeout)."""
    if target.dialect == "postgresql":
        conn.rollback()  # a transaction of its own, as the SQLAlchemy path's engine.begin()
        try:
            yield bool(conn.execute(f"SELECT pg_try_advisory_xact_lock({int(lock_id)})").fetchone()[0])
        finally:
            conn.rollback()
        return
    import fcntl

    with open(lock_file(str(target.database), name), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class RawSource:
    """The tiny query interface of the no-change decision (reconcile/nochange.py) over a DB-API
    connection; reconcile/fastpath.py provides the same over a SQLAlchemy connection."""

    def __init__(self, conn, dialect: str):
        self.conn = conn
        self.dialect = dialect

    def rows(self, sql: str) -> list[tuple]:
        cursor = self.conn.cursor()
        try:
            cursor.execute(sql)
            return [tuple(r) for r in cursor.fetchall()]
        finally:
            cursor.close()


# --- the catalog queries (the backends' differences that must be reachable without SQLAlchemy) ----

_HAS_TABLE = {
    # What SQLAlchemy's inspector means by it: a table or view visible on the search path.
    "postgresql": "SELECT 1 FROM pg_catalog.pg_class c WHERE c.relname = '{name}' "
                  "AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND pg_catalog.pg_table_is_visible(c.oid)",
    "sqlite": "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = '{name}'",
}
COUNTED_TABLES_SQL = {
    "postgresql": "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                  # 'A' (ENABLE ALWAYS, as installed): one disabled, or enabled for one replication
                  # role only, may miss writes, and its table is then not counted.
                  "WHERE t.tgname = 'cplane_count_changes' AND NOT t.tgisinternal AND t.tgenabled = 'A'",
    "sqlite": "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'",
}
COUNTED_EVENTS = ("INSERT", "UPDATE", "DELETE")
# For a table whose counter moved from {since} to {until}: how many of those versions the row-change
# log accounts for and whether any entry names a row (row id 0 is a write's marker). A range fully
# accounted for by markers alone moved no system row (db/counters.TENANT_COLUMNS: a tenant's write).
# PostgreSQL only: SQLite's REPLACE deletes the rows it conflicts with without firing their delete
# triggers, so there a marker does not prove that no system row went; its plans read the table.
# Past this many versions since the record, the fast path leaves a quiet table to the plan: its
# no-op apply records the state again and prunes the log, so tenants' markers never pile up for
# want of an apply that changes something (and the check stays one short index range).
QUIET_RANGE_MAX = 10_000
QUIET_RANGE_SQL = {
    "postgresql": "SELECT count(DISTINCT version), coalesce(max(row_id), 0) FROM cplane_row_changes "
                  "WHERE table_name = '{table}' AND version > {since} AND version <= {until}",
}


def trigger_name(table: str, event: str) -> str:
    """SQLite's per-event change-counting trigger of `table` (PostgreSQL has one trigger per table)."""
    return f"cplane_count_{table}_{event.lower()}"


def _literal(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a table name: {name!r}")
    return name


def has_table(source, name: str) -> bool:
    return bool(source.rows(_HAS_TABLE[source.dialect].format(name=_literal(name))))


def counted_from_rows(dialect: str, rows) -> set[str]:
    """The tables that carry all of cplane's change-counting triggers, from COUNTED_TABLES_SQL's rows."""
    if dialect == "postgresql":
        return {r[0] for r in rows}
    found = {(tbl, name) for name, tbl in rows}
    tables = {tbl for tbl, _ in found}
    return {t for t in tables if all((t, trigger_name(t, e)) in found for e in COUNTED_EVENTS)}


def moved_no_system_row(source, table: str, since: int, until: int) -> bool:
    """Whether every write that moved `table`'s counter from `since` to `until` is logged and
    touched no system row (QUIET_RANGE_SQL); False whenever that cannot be told."""
    query = QUIET_RANGE_SQL.get(source.dialect)
    if query is None or until <= since or until - since > QUIET_RANGE_MAX or not has_table(source, "cplane_row_changes"):
        return False
    [(accounted, named)] = source.rows(query.format(table=_literal(table), since=int(since), until=int(until)))
    return int(accounted) == until - since and int(named) == 0


def counted_tables(source) -> set[str]:
    return counted_from_rows(source.dialect, source.rows(COUNTED_TABLES_SQL[source.dialect]))
