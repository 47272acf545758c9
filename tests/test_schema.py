"""The schema: migrations create exactly what the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Index, UniqueConstraint, Uuid, inspect, text

from control_plane.db import engine as db
from control_plane.db.models import metadata
from control_plane.db.models import system as system_models
from control_plane.db.models.user import USER_TABLES
from control_plane.errors import DatabaseUnavailable


def _live_tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_creates_every_table_and_is_idempotent(db_url, engine_for):
    engine = engine_for(db_url)
    before, head = db.upgrade(engine)
    assert before is None
    assert head == "0016_system_row_log"
    assert db.current_revision(engine) == head
    tables = _live_tables(engine)
    assert set(metadata.tables) - tables == set(), "tables missing after upgrade"
    assert tables - set(metadata.tables) == set(), "tables the models do not know"

    again_before, again_head = db.upgrade(engine)
    assert (again_before, again_head) == (head, head)
    assert _live_tables(engine) == tables
    assert db.current_revision(engine) == head


def test_models_and_migrations_agree(migrated_engine):
    """What `alembic check` does: autogenerate against the migrated database finds nothing to do."""
    with migrated_engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "target_metadata": metadata})
        diff = compare_metadata(ctx, metadata)
    assert diff == [], "models and migrations differ:\n" + "\n".join(map(repr, diff))


def test_alembic_check_command(migrated_engine):
    # Goes through control_plane/db/migrations/env.py, as `alembic check` would.
    command.check(db.alembic_config(migrated_engine))


def test_downgrade_then_upgrade(db_url, engine_for):
    engine = engine_for(db_url)
    db.upgrade(engine)
    cfg = db.alembic_config(engine)
    command.downgrade(cfg, "base")
    assert _live_tables(engine) == set()
    command.upgrade(cfg, "head")
    assert set(metadata.tables) <= _live_tables(engine)


def test_counting_triggers_fire_in_every_session_after_0015(db_url, engine_for):
    """0015 turns the triggers installed before it to ENABLE ALWAYS, and a table whose trigger is
    in any other state is not counted (the plan reads it)."""
    from control_plane.db import counters

    engine = engine_for(db_url)
    db.upgrade(engine)
    with engine.connect() as conn:
        counted = counters.counted_tables(conn)
    assert set(counters.COUNTED_TABLES) <= counted
    cfg = db.alembic_config(engine)
    command.downgrade(cfg, "0014_row_changes")
    with engine.connect() as conn:
        left = counters.counted_tables(conn)
    assert left == (set() if engine.dialect.name == "postgresql" else counted)
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        assert counters.counted_tables(conn) == counted


def test_partial_unique_indexes_are_partial(migrated_engine):
    """System seeds are unique per sector; accounts may hold their own copies of the same keyword."""
    with migrated_engine.begin() as conn:
        conn.execute(text("INSERT INTO industries (slug, name, description, sort_order, is_active) "
                          "VALUES ('health', 'Health', '', 0, true)"))
        industry = conn.execute(text("SELECT id FROM industries")).scalar_one()
        conn.execute(text("INSERT INTO industry_sectors (industry_id, slug, name, description, is_active) "
                          "VALUES (:i, 'cardio', 'Cardio', '', true)"), {"i": industry})
        sector = conn.execute(text("SELECT id FROM industry_sectors")).scalar_one()
        insert_seed = text(
            "INSERT INTO seed_keywords (account_id, industry_id, sector_id, keyword, intent, is_active) "
            "VALUES (:a, :i, :s, 'heart', 'informational', true)"
        )
        conn.execute(insert_seed, {"a": None, "i": industry, "s": sector})
    names = {ix["name"] for ix in inspect(migrated_engine).get_indexes("seed_keywords")}
    assert "uq_seed_keywords_system_sector_keyword" in names
    with pytest.raises(Exception), migrated_engine.begin() as conn:  # noqa: B017 - IntegrityError, per driver
        conn.execute(insert_seed, {"a": None, "i": industry, "s": sector})


def _is_leading_indexed(table, column) -> bool:
    """The column leads the primary key, a unique constraint or an index of its table."""
    pk_cols = list(table.primary_key.columns)
    if pk_cols and pk_cols[0] is column:
        return True
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint) and list(constraint.columns)[0] is column:
            return True
    return any(isinstance(ix, Index) and list(ix.columns)[:1] == [column] for ix in table.indexes)


def test_every_foreign_key_column_is_indexed_in_the_models():
    offenders = sorted(
        f"{table.name}.{col.name}"
        for table in metadata.tables.values()
        for fk in table.foreign_key_constraints
        for col in list(fk.columns)[:1]
        if not _is_leading_indexed(table, col)
    )
    assert offenders == [], f"foreign-key columns without an index: {offenders}"


def test_user_foreign_key_columns_declare_index():
    offenders = sorted(
        f"{name}.{col.name}"
        for name in USER_TABLES
        for col in metadata.tables[name].columns
        if col.foreign_keys and not col.index
    )
    assert offenders == [], f"user-table foreign-key columns without index=True: {offenders}"


def test_every_foreign_key_column_is_indexed_in_postgresql(pg_engine):
    """Introspect the live schema: each FK's first column must lead some index (PK and unique included)."""
    query = text(
        """
        SELECT c.conrelid::regclass::text AS table_name, a.attname AS column_name, c.conname
        FROM pg_constraint c
        JOIN pg_namespace n ON n.oid = c.connamespace AND n.nspname = 'public'
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        WHERE c.contype = 'f'
          AND NOT EXISTS (
            SELECT 1 FROM pg_index i
            WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1]
          )
        ORDER BY 1, 2
        """
    )
    with pg_engine.connect() as conn:
        offenders = [f"{r.table_name}.{r.column_name} ({r.conname})" for r in conn.execute(query)]
        fk_count = conn.execute(text("SELECT count(*) FROM pg_constraint WHERE contype = 'f'")).scalar_one()
    assert fk_count > 50
    assert offenders == [], f"foreign-key columns that lead no index: {offenders}"


def test_accounts_users_cycle_exists_in_postgresql(pg_engine):
    fks = inspect(pg_engine).get_foreign_keys("accounts")
    owner = [fk for fk in fks if fk["constrained_columns"] == ["owner_id"]]
    assert owner and owner[0]["referred_table"] == "users"
    assert owner[0]["options"].get("ondelete") == "SET NULL"


def _reaches_accounts(table_name: str, seen: frozenset[str] = frozenset()) -> bool:
    if table_name == "accounts":
        return True
    table = metadata.tables[table_name]
    for fk in table.foreign_key_constraints:
        target = fk.referred_table.name
        if target in USER_TABLES and target not in seen and fk.ondelete == "CASCADE":
            if _reaches_accounts(target, seen | {table_name}):
                return True
    return False


@pytest.mark.parametrize("table_name", USER_TABLES)
def test_user_table_shape(table_name):
    table = metadata.tables[table_name]
    pk = list(table.primary_key.columns)
    # Celery's and the admin log's own tables are not tenant-owned; everything else cascades from accounts.
    standalone = {"task_results", "group_results", "admin_log_entries"}
    if table_name not in standalone:
        assert _reaches_accounts(table_name), f"{table_name} does not reach accounts through a CASCADE chain"
    assert pk, table_name
    assert isinstance(pk[0].type, Uuid), f"{table_name}: primary key is not a UUID"
    for fk in table.foreign_key_constraints:
        if fk.referred_table.name not in USER_TABLES:
            # References to system data never cascade: the controller retires instead of deleting.
            assert fk.ondelete in (None, "RESTRICT", "NO ACTION"), f"{table_name} -> {fk.referred_table.name}"


def _system_tables():
    seen = []
    for obj in vars(system_models).values():
        table = getattr(obj, "__table__", None)
        if table is not None and obj.__module__ == system_models.__name__ and table not in seen:
            seen.append(table)
    return seen


@pytest.mark.parametrize("table", _system_tables(), ids=lambda t: t.name)
def test_system_table_has_unique_natural_key(table):
    """Config names system rows by a natural key: some unique constraint or index other than the id."""
    keys = [set(c.columns.keys()) for c in table.constraints if isinstance(c, UniqueConstraint)]
    keys += [set(ix.columns.keys()) for ix in table.indexes if ix.unique]
    keys += [{c.name} for c in table.columns if c.unique]
    assert any(k and k != {"id"} for k in keys), f"{table.name} has no unique natural key"
    # A system table is not tenant-keyed (mixed tables carry a nullable account_id, never in the key).
    assert "account_id" not in table.primary_key.columns


def test_0002_prompt_variants_keeps_existing_prompts_history_and_customizations(db_url, engine_for):
    """Upgrading a database at 0001 that holds prompts, their versions and a customization: every
    row survives, the name is the old prompt type, and the new uniqueness treats NULLs as equal."""
    import uuid

    engine = engine_for(db_url)
    cfg = db.alembic_config(engine)
    command.upgrade(cfg, "0001_initial")
    account = uuid.uuid4()
    with engine.begin() as conn:
        from sqlalchemy import Boolean, Integer, String, insert
        from sqlalchemy import column as sa_column
        from sqlalchemy import table as sa_table

        from control_plane.db.models import Account

        conn.execute(insert(Account.__table__).values(id=account, name="A"))
        conn.execute(text("INSERT INTO global_ai_prompts (prompt_type, name, description, text, variables, version, "
                          "is_active) VALUES ('rewrite', 'Rewrite', '', 'v2 text', '[]', 2, true)"))
        prompt = conn.execute(text("SELECT id FROM global_ai_prompts")).scalar_one()
        for version in (1, 2):
            conn.execute(text("INSERT INTO global_ai_prompt_versions (prompt_id, version, text, variables) "
                              "VALUES (:p, :v, :t, '[]')"), {"p": prompt, "v": version, "t": f"v{version} text"})
        ai_prompts_0001 = sa_table("ai_prompts", *(sa_column(c, t) for c, t in (
            ("id", Uuid()), ("account_id", Uuid()), ("prompt_type", String()), ("text", String()),
            ("global_prompt_id", Integer()), ("based_on_global_version", Integer()), ("is_active", Boolean()))))
        conn.execute(insert(ai_prompts_0001).values(id=uuid.uuid4(), account_id=account, prompt_type="rewrite",
                                                    text="mine", global_prompt_id=prompt, based_on_global_version=1,
                                                    is_active=True))
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, slug, prompt_type, content_type, industry FROM global_ai_prompts")).one() \
            == (prompt, "rewrite", "rewrite", None, None)
        assert conn.execute(text("SELECT version FROM global_ai_prompt_versions WHERE prompt_id = :p ORDER BY version"),
                            {"p": prompt}).scalars().all() == [1, 2]
        assert conn.execute(text("SELECT global_prompt_id, content_type FROM ai_prompts")).one() == (prompt, None)
    insert = text("INSERT INTO global_ai_prompts (slug, prompt_type, content_type, industry, name, description, text, "
                  "variables, version, is_active) VALUES (:s, 'rewrite', :c, :i, 'R', '', 't', '[]', 1, true)")
    with engine.begin() as conn:
        conn.execute(insert, {"s": "rewrite-blog", "c": "blog-post", "i": None})
        conn.execute(insert, {"s": "rewrite-blog-health", "c": "blog-post", "i": "healthcare"})
    for slug, ct, ind in (("again", None, None), ("again", "blog-post", None), ("rewrite", "how-to", None)):
        with pytest.raises(Exception), engine.begin() as conn:  # noqa: B017 - IntegrityError, per driver
            conn.execute(insert, {"s": slug, "c": ct, "i": ind})


def test_generated_column_table_matches_the_models():
    """kinds/columns.py (what validate reads instead of the models) is current."""
    import importlib.util

    from helpers import REPO

    spec = importlib.util.spec_from_file_location("generate_columns", REPO / "tools" / "generate_columns.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.TARGET.read_text() == module.render(), "run `python tools/generate_columns.py`"


def test_validate_imports_neither_sqlalchemy_nor_the_models():
    import subprocess
    import sys

    code = ("import sys; sys.argv = ['cplane', 'validate']\n"
            "from control_plane.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m == 'sqlalchemy' or m.startswith('control_plane.db')))")
    from helpers import REPO

    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def _alembic_scripts():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(db.alembic_config(None))


def test_the_known_revisions_are_the_scripts_alembic_reads():
    """db/engine.py's REVISIONS (what a plan compares the database's revision with, without
    Alembic) is Alembic's history, oldest first; a new migration is added there too."""
    script = _alembic_scripts()
    chain = [rev.revision for rev in script.walk_revisions("base", "heads")][::-1]
    assert list(db.REVISIONS) == chain
    assert script.get_heads() == [db.REVISIONS[-1]]
    assert db.known_revisions() == db.REVISIONS
    assert db.head_revision() == script.get_current_head()


def test_other_scripts_than_the_known_ones_leave_the_count_to_alembic(tmp_path, monkeypatch):
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    for name in db.REVISIONS:
        (versions / f"{name}.py").write_text("")
    monkeypatch.setattr(db, "MIGRATIONS_DIR", tmp_path / "migrations")
    assert db.known_revisions.__wrapped__() == db.REVISIONS
    (versions / "0015_new.py").write_text("")
    assert db.known_revisions.__wrapped__() is None


def test_pending_migrations_count_as_alembic_counts(db_url, engine_for):
    """At each revision (and before any), the count without Alembic is Alembic's."""
    engine = engine_for(db_url)
    script = _alembic_scripts()
    cfg = db.alembic_config(engine)
    assert db.current_revision(engine) is None
    assert db.pending_migrations(engine) == len(list(script.iterate_revisions("heads", "base"))) == len(db.REVISIONS)
    for revision in db.REVISIONS[::4] + db.REVISIONS[-1:]:
        command.upgrade(cfg, revision)
        with engine.connect() as conn:
            assert db.current_revision(engine) == MigrationContext.configure(conn).get_current_revision() == revision
        assert db.pending_migrations(engine) == len(list(script.iterate_revisions("heads", revision)))
    assert db.pending_migrations(engine) == 0


def test_a_revision_this_cplane_does_not_know_is_refused(migrated_engine):
    with migrated_engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    assert db.current_revision(migrated_engine) == "0099_from_the_future"
    with pytest.raises(DatabaseUnavailable, match="0099_from_the_future.*newer than this cplane"):
        db.pending_migrations(migrated_engine)
