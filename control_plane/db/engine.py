"""Database URLs, engines and migrations (docs/reference.md §1)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from control_plane.db.dialect import for_dialect
from control_plane.db.raw import raw_url
from control_plane.errors import DatabaseUnavailable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def resolve_url(url: str | None = None) -> URL:
    """The SQLAlchemy URL to use: explicit, else DATABASE_URL, else ./cplane.db.

    `postgresql://` and `postgres://` mean psycopg 3, whatever SQLAlchemy's default driver is.
    """
    raw = raw_url(url)  # (db/raw.py: the rule, shared with the raw-driver fast path)
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise DatabaseUnavailable(f"invalid DATABASE_URL {redact(raw)!r}: not a database URL") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("postgresql", "sqlite"):
        raise DatabaseUnavailable(
            f"unsupported database scheme {parsed.drivername!r} in {redact(parsed)}: use postgresql:// or sqlite://"
        )
    return parsed


def redact(url: URL | str) -> str:
    if isinstance(url, str):
        try:
            url = make_url(url)
        except ArgumentError:
            return "<unparseable URL>"
    return url.render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _sqlite_read_only_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _sqlite_read_only_creator(database: str):
    """Connections that cannot write: the file opened with mode=ro, or, when the file does not
    exist, an empty in-memory database (reading a database that is not there creates no file)."""
    import sqlite3
    from urllib.parse import quote

    path = Path(database)
    if not path.exists():
        return lambda: sqlite3.connect(":memory:", check_same_thread=False)
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    return lambda: sqlite3.connect(uri, uri=True, check_same_thread=False)


def make_engine(url: str | URL | None = None, *, read_only: bool = False, **kwargs) -> Engine:
    """An engine on the URL. read_only: every connection refuses writes (SQLite opened with
    mode=ro, PostgreSQL with default_transaction_read_only), for the commands that only read."""
    resolved = url if isinstance(url, URL) else resolve_url(url)
    try:
        if resolved.get_backend_name() == "sqlite":
            database = resolved.database
            if read_only and database and database != ":memory:" and not resolved.query.get("uri"):
                kwargs.setdefault("creator", _sqlite_read_only_creator(database))
                engine = create_engine(resolved, **kwargs)
                event.listen(engine, "connect", _sqlite_read_only_pragmas)
            else:
                engine = create_engine(resolved, **kwargs)
                event.listen(engine, "connect", _sqlite_pragmas)
        else:
            kwargs.setdefault("pool_pre_ping", True)
            connect_args = kwargs.pop("connect_args", {})
            connect_args.setdefault("connect_timeout", 5)
            if read_only:
                connect_args["options"] = (connect_args.get("options", "") + " -c default_transaction_read_only=on").strip()
            engine = create_engine(resolved, connect_args=connect_args, **kwargs)
    except (NoSuchModuleError, ArgumentError) as exc:
        raise DatabaseUnavailable(f"cannot use database {redact(resolved)}: {exc}") from None
    return engine


def check_connection(engine: Engine) -> None:
    """Connect once, turning any failure into one line that names the URL without its password."""
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"cannot connect to {redact(engine.url)}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


# The migrations this cplane ships, oldest first: a linear history, each file in
# migrations/versions named after its revision. Known here so that a plan or an apply at head asks
# the database its revision and compares, without importing Alembic (and Mako, and Pygments) to read
# the scripts; tests/test_schema.py checks this is what Alembic reads. Whenever the directory holds
# other files than these (a migration added without adding it here), Alembic answers instead.
REVISIONS = (
    "0001_initial",
    "0002_prompt_variants",
    "0003_runtime_operators",
    "0005_secret_keys",
    "0006_setting_schema",
    "0007_plan_trust",
    "0008_change_counters",
    "0009_tenant_rls",
    "0010_run_desired_rows",
    "0012_plan_fastpath",
    "0013_plan_tables",
    "0014_row_changes",
    "0015_triggers_always",
    "0016_system_row_log",
)
VERSION_TABLE = "alembic_version"


@lru_cache(maxsize=1)
def known_revisions() -> tuple[str, ...] | None:
    """REVISIONS when migrations/versions holds exactly their scripts, else None (ask Alembic)."""
    try:
        found = {entry.name[:-3] for entry in os.scandir(MIGRATIONS_DIR / "versions")
                 if entry.name.endswith(".py") and entry.is_file()}
    except OSError:
        return None
    return REVISIONS if found == set(REVISIONS) else None


def _script_directory():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg)


@lru_cache(maxsize=1)
def head_revision() -> str:
    known = known_revisions()
    return known[-1] if known is not None else _script_directory().get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision (None: never migrated), as Alembic's MigrationContext reads
    it (its version table, never created here); Alembic itself only for what is not one plain row."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
        if len(rows) <= 1:
            return rows[0] if rows else None
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(conn).get_current_revision()  # (raises: more than one head)


def pending_migrations(engine: Engine) -> int:
    """How many migrations `upgrade` would run: the current revision (read without creating
    alembic_version) against the migrations this cplane ships. Writes nothing."""
    check_connection(engine)
    current = current_revision(engine)
    known = known_revisions()
    if known is not None and (current is None or current in known):
        return len(known) - (known.index(current) + 1 if current is not None else 0)
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    script = _script_directory()
    try:
        return sum(1 for _ in script.iterate_revisions("heads", current or "base"))
    except (CommandError, RevisionError):  # (an unknown revision is a ResolutionError)
        raise DatabaseUnavailable(
            f"{redact(engine.url)} is at schema revision {current!r}, which this cplane does not know "
            f"(head {head_revision()}): is it newer than this cplane?"
        ) from None


MIGRATION_LOCK_ID = 0x63706C616E6D  # "cplanm": one migration at a time per PostgreSQL database


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to head; returns (revision before, revision after). Running it twice changes nothing
    (and, at head, imports no Alembic)."""
    check_connection(engine)
    before = current_revision(engine)
    head = head_revision()
    if before != head:
        with for_dialect(engine).migration_lock(engine, MIGRATION_LOCK_ID):
            before = current_revision(engine)  # another process may have migrated while this one waited
            if before != head:
                from alembic import command

                try:
                    command.upgrade(alembic_config(engine), "head")
                except OperationalError as exc:
                    raise DatabaseUnavailable(f"migration failed on {redact(engine.url)}: {_first_line(exc)}") from None
    return before, head


def ensure_schema(engine: Engine) -> None:
    """Commands that need the schema migrate a fresh database first (docs/reference.md §3)."""
    upgrade(engine)
