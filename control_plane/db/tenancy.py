"""Tenant isolation in PostgreSQL: the runtime role, row-level security and cross-tenant guards.

PostgreSQL only (SQLite has no roles or policies; there the runtime's application-level scoping
is the only line). What the database enforces, once a revision has called `install()`:

- Role `cplane_runtime` (NOLOGIN, NOBYPASSRLS, owns nothing): SELECT on every table but the
  operators' keys, INSERT/UPDATE/DELETE on the tenant tables only. The owner role (the one that
  runs migrations, the controller and cleanups) is made a member, so the runtime, connecting with
  the same URL, enters it per transaction: `SELECT set_config('role', 'cplane_runtime', true)`.
- `cplane_current_account()`: `cplane.account_id` of the transaction as a uuid (NULL when unset).
- Every tenant table has RLS enabled and FORCED (the owner is subject too) with:
  * `cplane_tenant`: rows of `cplane_current_account()` only (for every role). Tables with an
    `account_id` match on it (`accounts` on `id`); tables that reach their account through a parent
    (link tables, sessions...) match through the parent with EXISTS: no new column to backfill and
    keep consistent, and the parent's own check is the single source of truth. Mixed tables
    (system rows have account_id NULL) also show the system rows for reading, never for writing.
  * `cplane_owner`: everything, for the owner role only (controller, migrations, cleanup, the
    operator API), so FORCE does not lock the owner out.
  A transaction that has not set `cplane.account_id` sees no tenant row at all.
- `cplane_enter_tenant(key_hash)` (SECURITY DEFINER): reads only that API key's row and, when the
  key is live and its account active, sets `cplane.account_id` for the transaction; returns the
  account id (NULL otherwise). The runtime role needs no access to other accounts' keys for it.
- Cross-tenant references are refused by triggers: a row may only reference rows of its own
  account (`cplane_check_tenant_refs_<table>`, BEFORE INSERT OR UPDATE), and a row's `account_id`
  never changes once set (`cplane_account_immutable`; a system row of a mixed table, account NULL,
  can only be given an account by the owner role: tenants cannot write system rows at all). Triggers rather than composite foreign keys
  `(account_id, id)`: a composite key with ON DELETE SET NULL would null `account_id` too (or,
  with a column list, needs PostgreSQL 15 everywhere and a unique (account_id, id) per parent).

The table lists are frozen in the revision that installs them (like the change counters): a later
revision that adds a tenant table calls `protect()` for it. tests/test_tenant_isolation_db.py fails
when a table with an account_id (or a path to one) is not protected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, text

RUNTIME_ROLE = "cplane_runtime"
ACCOUNT_SETTING = "cplane.account_id"
# Tables the runtime role may not even read (staff credentials).
HIDDEN_FROM_RUNTIME = ("cplane_operators",)


@dataclass(frozen=True)
class TenantTable:
    """How a table reaches its account.

    account: the column that holds the account id ("account_id", "id" for accounts), or None when
        the table reaches it through `via` (its first reference).
    refs: (column, parent table) for every reference to another tenant table.
    mixed: rows with account NULL are system rows (readable by every tenant, writable by none).
    """

    name: str
    account: str | None = "account_id"
    refs: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    mixed: bool = False

    @property
    def via(self) -> tuple[str, str] | None:
        return None if self.account or not self.refs else self.refs[0]

    @property
    def ownerless(self) -> bool:
        """No path to an account (job results): the owner's rows only, the runtime sees none."""
        return self.account is None and not self.refs


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def role_ddl() -> list[str]:
    """The role, created once per cluster (roles are global), and the owner's membership."""
    role = RUNTIME_ROLE
    return [
        f"""DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {_lit(role)}) THEN
                BEGIN
                    CREATE ROLE {role} NOLOGIN NOBYPASSRLS;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- created concurrently
                END;
            END IF;
            IF NOT pg_has_role(current_user, {_lit(role)}, 'MEMBER') THEN
                BEGIN
                    EXECUTE format('GRANT {role} TO %I', current_user);
                EXCEPTION WHEN insufficient_privilege THEN
                    RAISE EXCEPTION 'cannot make % a member of role {role}', current_user
                        USING HINT = format('as a superuser: CREATE ROLE {role} NOLOGIN NOBYPASSRLS; '
                                            'GRANT {role} TO %I; then run cplane db upgrade again', current_user);
                END;
            END IF;
        END $$""",
        f"""CREATE OR REPLACE FUNCTION cplane_current_account() RETURNS uuid
        LANGUAGE sql STABLE AS $$ SELECT NULLIF(current_setting({_lit(ACCOUNT_SETTING)}, true), '')::uuid $$""",
        f"""CREATE OR REPLACE FUNCTION cplane_enter_tenant(digest text) RETURNS uuid
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path FROM CURRENT AS $$
        DECLARE
            found uuid;
        BEGIN
            SELECT k.account_id INTO found FROM api_keys k JOIN accounts a ON a.id = k.account_id
             WHERE k.key_hash = digest AND k.revoked_at IS NULL
               AND (k.expires_at IS NULL OR k.expires_at > now())
               AND a.is_active AND a.status = 'active';
            PERFORM set_config({_lit(ACCOUNT_SETTING)}, COALESCE(found::text, ''), true);
            RETURN found;
        END $$""",
        """CREATE OR REPLACE FUNCTION cplane_account_immutable() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF OLD.account_id IS NOT NULL AND NEW.account_id IS DISTINCT FROM OLD.account_id THEN
                RAISE EXCEPTION 'account_id of % cannot change (a row never moves to another account)',
                    TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN NEW;
        END $$""",
        "REVOKE ALL ON FUNCTION cplane_enter_tenant(text) FROM PUBLIC",
        f"GRANT EXECUTE ON FUNCTION cplane_enter_tenant(text) TO {role}",
        f"GRANT EXECUTE ON FUNCTION cplane_current_account() TO {role}",
    ]


def grants_ddl(tenant_tables: Iterable[str]) -> list[str]:
    role = RUNTIME_ROLE
    statements = [
        f"""DO $$
        BEGIN
            EXECUTE format('GRANT USAGE ON SCHEMA %I TO {role}', current_schema());
            EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO {role}', current_schema());
            EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO {role}', current_schema());
            -- Tables later revisions create (the owner creates them) are readable too, like these:
            -- a new table the runtime must not read is revoked by its revision (HIDDEN_FROM_RUNTIME).
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO {role}', current_schema());
            EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO {role}',
                           current_schema());
        END $$""",
    ]
    statements += [f"REVOKE ALL ON {_q(t)} FROM {role}" for t in HIDDEN_FROM_RUNTIME]
    statements += [f"GRANT INSERT, UPDATE, DELETE ON {_q(t)} TO {role}" for t in tenant_tables]
    return statements


def _account_of(table: TenantTable, row: str) -> str:
    """SQL for the account of `row` (NEW, or the table itself in a policy)."""
    if table.account:
        return f"{row}.{_q(table.account)}"
    column, parent = table.via  # type: ignore[misc]
    return f"(SELECT p.account_id FROM {_q(parent)} p WHERE p.id = {row}.{_q(column)})"


def policy_ddl(table: TenantTable) -> list[str]:
    t = _q(table.name)
    statements = [
        f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS cplane_owner ON {t}",
        f"DROP POLICY IF EXISTS cplane_tenant ON {t}",
        f"DROP POLICY IF EXISTS cplane_tenant_read ON {t}",
        f"CREATE POLICY cplane_owner ON {t} TO CURRENT_USER USING (true) WITH CHECK (true)",
    ]
    if table.ownerless:
        return statements  # no tenant policy: default deny for every role but the owner
    if table.account:
        mine = f"{_q(table.account)} = cplane_current_account()"
    else:
        column, parent = table.via  # type: ignore[misc]
        mine = (f"EXISTS (SELECT 1 FROM {_q(parent)} p WHERE p.id = {t}.{_q(column)} "
                f"AND p.account_id = cplane_current_account())")
    statements.append(f"CREATE POLICY cplane_tenant ON {t} USING ({mine}) WITH CHECK ({mine})")
    if table.mixed:
        statements.append(f"CREATE POLICY cplane_tenant_read ON {t} FOR SELECT USING ({_q(table.account)} IS NULL)")
    return statements


def refs_ddl(table: TenantTable, mixed_parents: Sequence[str] = ()) -> list[str]:
    """The trigger refusing a reference to another account's row (and account_id changes)."""
    t = _q(table.name)
    statements = []
    if table.account == "account_id":
        statements += [
            f"DROP TRIGGER IF EXISTS cplane_account_immutable ON {t}",
            f"CREATE TRIGGER cplane_account_immutable BEFORE UPDATE OF account_id ON {t} "
            "FOR EACH ROW EXECUTE FUNCTION cplane_account_immutable()",
        ]
    refs = [r for r in table.refs if r != table.via]
    if not refs:
        return statements
    function = f"cplane_check_tenant_refs_{table.name}"
    checks = []
    for column, parent in refs:
        system_ok = " AND p.account_id IS NOT NULL" if parent in mixed_parents else ""
        checks.append(
            f"""IF NEW.{_q(column)} IS NOT NULL AND EXISTS (
                    SELECT 1 FROM {_q(parent)} p WHERE p.id = NEW.{_q(column)}{system_ok}
                       AND p.account_id IS DISTINCT FROM mine) THEN
                RAISE EXCEPTION '%.% references a row of another account', TG_TABLE_NAME, {_lit(column)}
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;"""
        )
    body = "\n".join(checks)
    statements += [
        f"""CREATE OR REPLACE FUNCTION {_q(function)}() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
        DECLARE
            mine uuid := {_account_of(table, 'NEW')};
        BEGIN
            {body}
            RETURN NEW;
        END $$""",
        f"DROP TRIGGER IF EXISTS cplane_check_tenant_refs ON {t}",
        f"CREATE TRIGGER cplane_check_tenant_refs BEFORE INSERT OR UPDATE ON {t} "
        f"FOR EACH ROW EXECUTE FUNCTION {_q(function)}()",
    ]
    return statements


def protect(conn: Connection, tables: Sequence[TenantTable]) -> None:
    """Policies, grants and reference triggers for `tables` (idempotent)."""
    mixed = [t.name for t in tables if t.mixed]
    statements = grants_ddl([t.name for t in tables if not t.ownerless])
    for table in tables:
        statements += policy_ddl(table) + refs_ddl(table, mixed)
    for statement in statements:
        conn.execute(text(statement))


def install(conn: Connection, tables: Sequence[TenantTable]) -> None:
    for statement in role_ddl():
        conn.execute(text(statement))
    protect(conn, tables)


def uninstall(conn: Connection, tables: Sequence[TenantTable]) -> None:
    role = RUNTIME_ROLE
    for table in tables:
        t = _q(table.name)
        for statement in (
            f"DROP TRIGGER IF EXISTS cplane_check_tenant_refs ON {t}",
            f"DROP FUNCTION IF EXISTS {_q('cplane_check_tenant_refs_' + table.name)}()",
            f"DROP TRIGGER IF EXISTS cplane_account_immutable ON {t}",
            f"DROP POLICY IF EXISTS cplane_owner ON {t}",
            f"DROP POLICY IF EXISTS cplane_tenant ON {t}",
            f"DROP POLICY IF EXISTS cplane_tenant_read ON {t}",
            f"ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY",
            f"ALTER TABLE {t} DISABLE ROW LEVEL SECURITY",
        ):
            conn.execute(text(statement))
    for statement in (
        "DROP FUNCTION IF EXISTS cplane_account_immutable()",
        "DROP FUNCTION IF EXISTS cplane_enter_tenant(text)",
        "DROP FUNCTION IF EXISTS cplane_current_account()",
        f"""DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {_lit(role)}) THEN
                EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM {role}', current_schema());
                EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM {role}', current_schema());
                EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON TABLES FROM {role}', current_schema());
                EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON SEQUENCES FROM {role}',
                               current_schema());
                EXECUTE format('REVOKE ALL ON SCHEMA %I FROM {role}', current_schema());
            END IF;
        END $$""",
    ):
        conn.execute(text(statement))
    # The role itself stays: roles are per cluster and other databases may use it.


def enter_statement() -> str:
    """Enter the runtime role and an account for the current transaction (bind `account`)."""
    return f"SELECT set_config('role', {_lit(RUNTIME_ROLE)}, true), set_config({_lit(ACCOUNT_SETTING)}, :account, true)"
