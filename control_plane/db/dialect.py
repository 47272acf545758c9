"""What PostgreSQL and SQLite do differently, one class per backend.

Locks, bulk inserts, read-only checks, content checksums and batched deletes: every place where
cplane behaves differently per backend asks `for_dialect(...)` and calls the strategy, instead of
testing the dialect's name itself.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Connection, Engine, insert, literal_column, select, text

from control_plane.db import raw

# Waiting for a held lock (--lock-timeout) polls its try-lock, backing off to this many seconds.
LOCK_POLL_MAX = 0.25

OnWait = Callable[[float], None]  # called once with the timeout when a lock is found held

# The row-change log's marker (SQLite) that cplane is applying: a table name no table has.
UNLOGGED_MARK = ""

# Below this many rows COPY's set-up costs more than executemany saves.
COPY_THRESHOLD = 200


class Backend:
    """What both backends share; each method a subclass overrides is a real difference."""

    name: str
    batch_walk: str
    # The driver returns every column type the models use as its Python value, SQLAlchemy adding no
    # result processing, so a SELECT may name columns without their types (export's reader does,
    # sparing the models' import). psycopg: yes (tests/test_export.py checks every column); sqlite3
    # gives booleans as ints and JSON as text: no.
    untyped_reads: bool = False

    def bulk_insert(self, conn: Connection, table, rows: list[dict]) -> None:
        """Insert `rows` (dicts with the same keys)."""
        if rows:
            columns = list(rows[0])
            self.bulk_insert_rows(conn, table, columns, _Picked(rows, _picker(columns)))

    def bulk_insert_rows(self, conn: Connection, table, columns: list[str], rows: Sequence[tuple]) -> None:
        """Insert `rows`, each a tuple of values in `columns` order: what a caller writing many rows
        builds instead of a dict per row (a first apply's 100,000 bookkeeping rows)."""
        if rows:
            conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])

    def bulk_insert_ids(self, conn: Connection, table, rows: list[dict]) -> list[int] | None:
        """Insert `rows` (none carrying `id`) and return the id each got, in the order of `rows`, or
        None: the caller reads them back. SQLite answers None: its executemany and one SELECT of the
        keys measured about 3 s faster per 100,000 rows than INSERT ... RETURNING sorted into
        parameter order, and assuming consecutive rowids would be a guess."""
        self.bulk_insert(conn, table, rows)
        return None

    def triggers_always_ddl(self, conn: Connection, always: bool = True) -> list[str]:
        """Statements that make every installed counting and logging trigger fire in any session
        (PostgreSQL's ENABLE ALWAYS, see _always), or with always=False in 'origin' sessions only
        (PostgreSQL's default, for a downgrade). SQLite triggers always fire: nothing to do."""
        return []


def _picker(columns: list[str]) -> Callable[[dict], tuple]:
    """A row's values in `columns` order, one C call per row."""
    if len(columns) == 1:
        only = columns[0]
        return lambda row: (row[only],)
    return itemgetter(*columns)


class _Picked(Sequence):
    """Dict rows seen as tuples in `pick`'s order, made one at a time as they are written."""

    def __init__(self, rows: list[dict], pick: Callable[[dict], tuple]):
        self.rows, self.pick = rows, pick

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.pick(self.rows[i])

    def __iter__(self) -> Iterator[tuple]:
        return map(self.pick, self.rows)


class SQLite(Backend):
    name = "sqlite"
    # Batched deletes walk the table by rowid (see cleanup.executor).
    batch_walk = "rowid"

    def bulk_insert_rows(self, conn: Connection, table, columns: list[str], rows: Sequence[tuple]) -> None:
        """executemany of plain tuples: each column's bind processor (booleans, decimals, JSON)
        applied only where the type has one. SQLAlchemy's own executemany processes every parameter
        set as a dict, which was most of the time of a 100,000-row insert. Tables whose client-side
        defaults would fill columns the rows leave out take SQLAlchemy's path, which applies them."""
        if len(rows) < COPY_THRESHOLD or any(c.default is not None and c.name not in columns for c in table.c):
            super().bulk_insert_rows(conn, table, columns, rows)
            return
        dialect = conn.dialect
        processors = [(i, p) for i, c in enumerate(columns)
                      if (p := table.c[c].type.dialect_impl(dialect).bind_processor(dialect)) is not None]
        params = rows if isinstance(rows, list) and not processors else []
        if params is not rows:
            for values in rows:
                if processors:
                    values = list(values)
                    for i, process in processors:
                        values[i] = process(values[i])
                    values = tuple(values)
                params.append(values)
        quoted = ", ".join(f'"{c}"' for c in columns)
        conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({quoted}) VALUES ({", ".join("?" * len(columns))})', params)

    @contextmanager
    def xact_lock(self, conn: Connection, lock_id: int, name: str, error: Exception, *,
                  timeout: float = 0, on_wait: OnWait | None = None) -> Iterator[None]:
        """Database-wide, for the length of the transaction: a lock file beside the database.
        Fails at once when held, or after waiting up to `timeout` seconds."""
        with file_lock(conn.engine, name, error, timeout=timeout, on_wait=on_wait):
            yield

    @contextmanager
    def session_lock(self, engine: Engine, lock_id: int, name: str, error: Exception, *,
                     timeout: float = 0, on_wait: OnWait | None = None) -> Iterator[None]:
        """Database-wide, held across several transactions (fail-fast unless `timeout`)."""
        with file_lock(engine, name, error, timeout=timeout, on_wait=on_wait):
            yield

    @contextmanager
    def migration_lock(self, engine: Engine, lock_id: int) -> Iterator[None]:
        # SQLite serializes writers itself; the migration's own transaction is enough.
        yield

    def set_read_only(self, conn: Connection) -> None:
        """SQLite has no read-only transactions; callers roll back what they ran."""

    def checksum(self, conn: Connection, table, quoted_table: str, columns: list[str], pk: list[str],
                 where=None) -> tuple[int, str]:
        """(row count, content digest) of the rows of `table` (a TableClause; `quoted_table` its
        quoted name) matching `where` (a SQLAlchemy condition, None for all); `columns` and `pk` quoted."""
        digest = hashlib.sha256()
        n = 0
        stmt = select(*(literal_column(c) for c in columns)).select_from(table)
        if where is not None:
            stmt = stmt.where(where)
        rows = conn.execute(stmt.order_by(*(literal_column(c) for c in pk or columns)))
        for row in rows:
            digest.update(repr(tuple(row)).encode())
            digest.update(b"\n")
            n += 1
        return n, digest.hexdigest()


    def change_counter_ddl(self, tables: list[str]) -> list[str]:
        """Triggers that bump each table's row in cplane_change_counters. SQLite has row triggers
        only; a DELETE without WHERE fires them too (triggers turn off its truncate shortcut)."""
        statements = []
        for table in tables:
            for event in ("INSERT", "UPDATE", "DELETE"):
                statements.append(
                    f'CREATE TRIGGER IF NOT EXISTS "{_trigger_name(table, event)}" AFTER {event} ON "{table}" '
                    f"BEGIN UPDATE cplane_change_counters SET version = version + 1 "
                    f"WHERE table_name = '{table}'; END"
                )
        return statements

    def drop_change_counter_ddl(self, tables: list[str]) -> list[str]:
        return [f'DROP TRIGGER IF EXISTS "{_trigger_name(t, e)}"' for t in tables for e in ("INSERT", "UPDATE", "DELETE")]

    def row_log_ddl(self, tables: list[str], tenant_columns: dict[str, str] | None = None) -> list[str]:
        """The row-change log (db/counters.py): each counting trigger of `tables` is replaced by one
        that bumps the counter and then logs the row's id with the version it just produced (an
        UPDATE that moves the id logs both). Same names, so counted_tables still finds them, and one
        trigger body, so the order of the two is the statement order (SQLite does not promise an
        order between triggers). Not logged while cplane applies (unlogged_writes' marker row).
        A table in `tenant_columns` (a mixed table: rows whose column is NULL are system rows) logs
        a write that touched only a tenant row as row id 0, which accounts for its version and
        names no row a plan reads."""
        tenant_columns = tenant_columns or {}
        statements = []
        for table in tables:
            column = tenant_columns.get(table)
            for event in ("INSERT", "UPDATE", "DELETE"):
                name = _trigger_name(table, event)
                sides = {"INSERT": ("NEW",), "DELETE": ("OLD",), "UPDATE": ("NEW", "OLD")}[event]
                system = " OR ".join(f"{side}.{column} IS NULL" for side in sides) if column else None
                ids = {"INSERT": [("NEW.id", "")], "DELETE": [("OLD.id", "")],
                       "UPDATE": [("NEW.id", ""), ("OLD.id", " AND OLD.id IS NOT NEW.id")]}[event]
                body = f"UPDATE cplane_change_counters SET version = version + 1 WHERE table_name = '{table}'; "
                for position, (ref, extra) in enumerate(ids):
                    if system is not None:
                        # The first entry logs 0 for a tenant row; a second one (the id an UPDATE
                        # moved) only for a system row: one marker per version is all the key allows.
                        ref, extra = ((f"CASE WHEN {system} THEN {ref} ELSE 0 END", extra) if position == 0
                                      else (ref, f"{extra} AND ({system})"))
                    body += (f"INSERT INTO cplane_row_changes (table_name, version, row_id) "
                             f"SELECT '{table}', version, {ref} FROM cplane_change_counters "
                             f"WHERE table_name = '{table}'{extra} AND NOT EXISTS "
                             f"(SELECT 1 FROM cplane_row_changes WHERE table_name = '{UNLOGGED_MARK}'); ")
                statements.append(f'DROP TRIGGER IF EXISTS "{name}"')
                statements.append(f'CREATE TRIGGER "{name}" AFTER {event} ON "{table}" BEGIN {body}END')
        return statements

    def drop_row_log_ddl(self, tables: list[str]) -> list[str]:
        """Back to the counting triggers alone."""
        return self.drop_change_counter_ddl(tables) + self.change_counter_ddl(tables)

    def unlogged_writes(self, conn: Connection, on: bool) -> None:
        """Turn the row-change log off (on=True) for the rest of this transaction's writes, or back
        on. SQLite has no transaction-local setting: a marker row the triggers look for, which only
        this transaction sees (SQLite has one writer at a time) and which is gone with a rollback."""
        if on:
            conn.execute(text(f"INSERT INTO cplane_row_changes (table_name, version, row_id) "
                              f"VALUES ('{UNLOGGED_MARK}', 0, 0)"))
        else:
            conn.execute(text(f"DELETE FROM cplane_row_changes WHERE table_name = '{UNLOGGED_MARK}'"))

    def counted_tables(self, conn: Connection) -> set[str]:
        """Tables that carry all of cplane's change-counting triggers."""
        # The SQL and its reading live in db/raw.py, which the raw-driver fast path runs too.
        return raw.counted_from_rows(self.name, conn.execute(text(raw.COUNTED_TABLES_SQL[self.name])).all())


class PostgreSQL(Backend):
    name = "postgresql"
    untyped_reads = True
    # Batched deletes walk the heap by block ranges (ctid), see cleanup.executor.
    batch_walk = "ctid"

    @contextmanager
    def xact_lock(self, conn: Connection, lock_id: int, name: str, error: Exception, *,
                  timeout: float = 0, on_wait: OnWait | None = None) -> Iterator[None]:
        """An advisory transaction lock: released with the transaction, or by the server if the
        process dies. Fails at once when held, or after polling it for up to `timeout` seconds."""
        def attempt() -> bool:
            return bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": lock_id}).scalar())

        poll_lock(attempt, error, timeout, on_wait)
        yield

    @contextmanager
    def session_lock(self, engine: Engine, lock_id: int, name: str, error: Exception, *,
                     timeout: float = 0, on_wait: OnWait | None = None) -> Iterator[None]:
        """A session advisory lock on a connection of its own, released by the server if the process
        dies. Fails at once when held, or after polling it for up to `timeout` seconds."""
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            def attempt() -> bool:
                return bool(conn.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": lock_id}).scalar())

            poll_lock(attempt, error, timeout, on_wait)
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})

    @contextmanager
    def migration_lock(self, engine: Engine, lock_id: int) -> Iterator[None]:
        """A blocking session advisory lock, so that processes migrating the same fresh database at
        once (several `cplane apply` started together) wait for each other instead of racing on CREATE."""
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})

    def bulk_insert_rows(self, conn: Connection, table, columns: list[str], rows: Sequence[tuple]) -> None:
        """COPY: an order of magnitude faster than INSERT for large sets. Not into a table under
        row-level security that applies to this role (tenant tables, forced, db/tenancy.py: every
        role but a superuser or BYPASSRLS): PostgreSQL refuses COPY FROM there, so those take INSERT."""
        if len(rows) < COPY_THRESHOLD or conn.execute(
                text("SELECT row_security_active(to_regclass(:t))"), {"t": f'"{table.name}"'}).scalar():
            super().bulk_insert_rows(conn, table, columns, rows)
            return
        json_at = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, JSON)]
        raw = conn.connection.driver_connection
        stmt = f'COPY "{table.name}" ({", ".join(chr(34) + c + chr(34) for c in columns)}) FROM STDIN'
        with raw.cursor() as cursor, cursor.copy(stmt) as copy:
            write = copy.write_row
            if not json_at:  # only JSON columns are touched in Python
                for row in rows:
                    write(row)
                return
            for row in rows:
                values = list(row)
                for i in json_at:
                    if values[i] is not None:
                        values[i] = json.dumps(values[i], default=str)
                write(values)

    def bulk_insert_ids(self, conn: Connection, table, rows: list[dict]) -> list[int]:
        """The ids are drawn from the table's sequence first (one query for all of them), then the
        rows written with them by COPY (or INSERT, see bulk_insert): RETURNING is not available to
        COPY. Sequence values are never handed out twice, so rows other transactions insert
        meanwhile cannot collide."""
        if not rows:
            return []
        sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": f'"{table.name}"'}).scalar()
        if sequence is None:  # an id without a sequence of its own: write as usual, the caller reads them back
            return super().bulk_insert_ids(conn, table, rows)
        ids = list(conn.execute(text("SELECT nextval(:s) FROM generate_series(1, :n)"),
                                {"s": sequence, "n": len(rows)}).scalars())
        columns = list(rows[0])
        pick = _picker(columns)
        self.bulk_insert_rows(conn, table, ["id", *columns],
                              [(row_id, *pick(row)) for row_id, row in zip(ids, rows, strict=True)])
        return ids

    def set_read_only(self, conn: Connection) -> None:
        conn.execute(text("SET TRANSACTION READ ONLY"))

    def change_counter_ddl(self, tables: list[str]) -> list[str]:
        """One statement-level trigger per table (TRUNCATE included) calling a function that bumps
        the table's counter: a bulk write costs one counter update, not one per row. SECURITY
        DEFINER so that a role that may write a table but not the counters (the runtime's) still
        counts its writes."""
        statements = [
            """CREATE OR REPLACE FUNCTION cplane_bump_change_counter() RETURNS trigger
            LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
            BEGIN
                UPDATE cplane_change_counters SET version = version + 1 WHERE table_name = TG_TABLE_NAME;
                RETURN NULL;
            END $$"""
        ]
        for table in tables:
            statements.append(f'DROP TRIGGER IF EXISTS cplane_count_changes ON "{table}"')
            statements.append(
                f'CREATE TRIGGER cplane_count_changes AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "{table}" '
                "FOR EACH STATEMENT EXECUTE FUNCTION cplane_bump_change_counter()"
            )
            statements.append(_always(table, "cplane_count_changes"))
        return statements

    def drop_change_counter_ddl(self, tables: list[str]) -> list[str]:
        return [f'DROP TRIGGER IF EXISTS cplane_count_changes ON "{t}"' for t in tables] + [
            "DROP FUNCTION IF EXISTS cplane_bump_change_counter()"
        ]

    def row_log_ddl(self, tables: list[str], tenant_columns: dict[str, str] | None = None) -> list[str]:
        """The row-change log (db/counters.py): per table, three statement-level triggers with
        transition tables (PostgreSQL allows those only on triggers of one event), each logging
        the ids the statement touched in one INSERT ... SELECT, with the counter's version.
        Triggers of one event fire in the order of their names, so cplane_count_changes has
        bumped the counter (and holds its row lock until commit) when cplane_log_changes_* reads
        it: the version read is this statement's own. Each statement also logs row id 0, so that
        one that touched no row still accounts for its version. A TRUNCATE logs nothing (its
        version stays unaccounted for: a plan reads the table whole), and neither does a statement
        of cplane's apply (`cplane.applying`, unlogged_writes). A table in `tenant_columns` (a
        mixed table) passes its column to the function, which logs only the rows that are system
        rows (the column NULL) before or after: a tenant's write logs its marker alone, so a
        plan knows that no system row moved without reading one."""
        tenant_columns = tenant_columns or {}
        statements = [
            """CREATE OR REPLACE FUNCTION cplane_log_row_changes() RETURNS trigger
            LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
            DECLARE v bigint; tenant text := TG_ARGV[0];
            BEGIN
                -- (A log table dropped by hand: the counter still moves, the versions go unaccounted.)
                IF current_setting('cplane.applying', true) = 'on' OR to_regclass('cplane_row_changes') IS NULL THEN
                    RETURN NULL;
                END IF;
                SELECT version INTO v FROM cplane_change_counters WHERE table_name = TG_TABLE_NAME;
                -- Row id 0 marks the statement itself, so that one that touched no row is accounted
                -- for too (reading id 0 as well is harmless: a row is only ever read more). With a
                -- tenant column (TG_ARGV[0]) only system rows are named.
                IF TG_OP = 'INSERT' THEN
                    INSERT INTO cplane_row_changes (table_name, version, row_id)
                    SELECT TG_TABLE_NAME, v, r.id FROM cplane_new r
                    WHERE tenant IS NULL OR to_jsonb(r) ->> tenant IS NULL
                    UNION SELECT TG_TABLE_NAME, v, 0;
                ELSIF TG_OP = 'DELETE' THEN
                    INSERT INTO cplane_row_changes (table_name, version, row_id)
                    SELECT TG_TABLE_NAME, v, r.id FROM cplane_old r
                    WHERE tenant IS NULL OR to_jsonb(r) ->> tenant IS NULL
                    UNION SELECT TG_TABLE_NAME, v, 0;
                ELSE
                    -- A row counts as a system row when it is one before or after the write.
                    INSERT INTO cplane_row_changes (table_name, version, row_id)
                    SELECT TG_TABLE_NAME, v, r.id FROM cplane_new r
                    WHERE tenant IS NULL OR to_jsonb(r) ->> tenant IS NULL
                       OR r.id IN (SELECT o.id FROM cplane_old o WHERE to_jsonb(o) ->> tenant IS NULL)
                    UNION SELECT TG_TABLE_NAME, v, r.id FROM cplane_old r
                    WHERE tenant IS NULL OR to_jsonb(r) ->> tenant IS NULL
                       OR r.id IN (SELECT n.id FROM cplane_new n WHERE to_jsonb(n) ->> tenant IS NULL)
                    UNION SELECT TG_TABLE_NAME, v, 0;
                END IF;
                RETURN NULL;
            END $$"""
        ]
        for table in tables:
            argument = f"'{tenant_columns[table]}'" if table in tenant_columns else ""
            for event, suffix, referencing in (("INSERT", "ins", "NEW TABLE AS cplane_new"),
                                               ("UPDATE", "upd", "OLD TABLE AS cplane_old NEW TABLE AS cplane_new"),
                                               ("DELETE", "del", "OLD TABLE AS cplane_old")):
                statements.append(f'DROP TRIGGER IF EXISTS cplane_log_changes_{suffix} ON "{table}"')
                statements.append(
                    f'CREATE TRIGGER cplane_log_changes_{suffix} AFTER {event} ON "{table}" '
                    f"REFERENCING {referencing} FOR EACH STATEMENT EXECUTE FUNCTION cplane_log_row_changes({argument})")
                statements.append(_always(table, f"cplane_log_changes_{suffix}"))
        return statements

    def drop_row_log_ddl(self, tables: list[str]) -> list[str]:
        return [f'DROP TRIGGER IF EXISTS cplane_log_changes_{s} ON "{t}"' for t in tables for s in ("ins", "upd", "del")] + [
            "DROP FUNCTION IF EXISTS cplane_log_row_changes()"
        ]

    def unlogged_writes(self, conn: Connection, on: bool) -> None:
        """Turn the row-change log off (on=True) for the rest of this transaction, or back on: a
        transaction-local setting, gone with the transaction whatever happens."""
        conn.execute(text("SELECT set_config('cplane.applying', :v, true)"), {"v": "on" if on else "off"})

    def triggers_always_ddl(self, conn: Connection, always: bool = True) -> list[str]:
        found = conn.execute(text(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND (t.tgname = 'cplane_count_changes' OR t.tgname LIKE 'cplane_log_changes_%') "
            "ORDER BY 1, 2")).all()
        return [_always(table, trigger, always) for table, trigger in found]

    def counted_tables(self, conn: Connection) -> set[str]:
        """Tables that carry cplane's change-counting trigger."""
        # The SQL and its reading live in db/raw.py, which the raw-driver fast path runs too.
        return raw.counted_from_rows(self.name, conn.execute(text(raw.COUNTED_TABLES_SQL[self.name])).all())

    def checksum(self, conn: Connection, table, quoted_table: str, columns: list[str], pk: list[str],
                 where=None) -> tuple[int, str]:
        # In the server: the rows never cross the wire.
        by = ", ".join(pk) or f"{quoted_table}::text"
        stmt = select(
            literal_column("count(*)"),
            literal_column(f"md5(coalesce(string_agg({quoted_table}::text, E'\\n' ORDER BY {by}), ''))"),
        ).select_from(table)
        if where is not None:
            stmt = stmt.where(where)
        row = conn.execute(stmt).one()
        return int(row[0]), row[1]


def _always(table: str, trigger: str, always: bool = True) -> str:
    """A PostgreSQL trigger fires only in the default session_replication_role ('origin') unless
    enabled ALWAYS: a session in 'replica' mode (pg_restore --disable-triggers aside, logical
    replication, a hand-run bulk fix) would write uncounted, and a plan would trust a counter that
    did not move. ALWAYS makes every session count; db/raw.py's catalog query trusts no other state
    (a trigger disabled by hand reads as missing, which sends the plan the full way)."""
    return f'ALTER TABLE "{table}" ENABLE {"ALWAYS " if always else ""}TRIGGER {trigger}'


def _trigger_name(table: str, event: str) -> str:
    return raw.trigger_name(table, event)


_BY_NAME = {"postgresql": PostgreSQL(), "sqlite": SQLite()}


def for_dialect(bind: Any) -> Backend:
    """The strategy of an Engine's or Connection's backend (or of a dialect name)."""
    name = bind if isinstance(bind, str) else bind.dialect.name
    return _BY_NAME[name]


def poll_lock(attempt: Callable[[], bool], error: Exception, timeout: float = 0,
              on_wait: OnWait | None = None) -> None:
    """Take a lock by trying it until it is taken or `timeout` seconds have passed (0: one try).

    `on_wait(timeout)` is called once, when the first try finds the lock held and there is time to
    wait: the CLI says so on stderr, which is also how a test sees that an apply is waiting."""
    if attempt():
        return
    if timeout <= 0:
        raise error
    if on_wait is not None:
        on_wait(timeout)
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise error
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, LOCK_POLL_MAX)
        if attempt():
            return


@contextmanager
def file_lock(engine: Engine, name: str, error: Exception, *, timeout: float = 0,
              on_wait: OnWait | None = None) -> Iterator[None]:
    """SQLite's stand-in for an advisory lock: a non-blocking flock on a file beside the database,
    retried until `timeout` seconds have passed."""
    import fcntl

    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    handle = open(raw.lock_file(database, name), "a+")  # (db/raw.py: the raw-driver path takes it too)
    try:
        def attempt() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        poll_lock(attempt, error, timeout, on_wait)
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
