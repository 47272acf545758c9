"""Tenant isolation enforced by PostgreSQL (revision 0009_tenant_rls, control_plane/db/tenancy.py):
the runtime role, forced row-level security on every tenant table, cross-tenant references and
account moves refused by the database; the runtime's tenant sessions running under it; e-mail
uniqueness per account; catalog ETags and the prompt cache following SQL edits."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from helpers import new_tenant, ok
from sqlalchemy import delete, event, func, select, text, update
from sqlalchemy.exc import DBAPIError

from control_plane.db.models import Account, Site
from control_plane.db.models.user import USER_TABLES
from control_plane.db.tenancy import RUNTIME_ROLE
from runtime import tenancy

MIXED = ("seed_keywords", "ai_integration_settings")


@pytest.fixture(scope="module")
def world(client, rt_engine):
    """Two tenants, each with a site, a sector and a second user (through the API)."""
    out = {}
    for label in ("a", "b"):
        t = new_tenant(rt_engine, "pro", f"Tenant {label.upper()}")
        site = ok(client.post("/v1/sites", json={"name": f"{label} site"}, headers=t.headers), 201)
        sector = ok(client.post(f"/v1/sites/{site['id']}/sectors", json={"name": f"{label} sector"},
                                headers=t.headers), 201)
        user = ok(client.post("/v1/users", json={"email": f"{label}-{uuid.uuid4().hex[:6]}@example.com"},
                              headers=t.headers), 201)
        out[label] = {"tenant": t, "site": site["id"], "sector": sector["id"], "user": user["id"]}
    return out


def runtime_conn(engine, account: str | None = None):
    """A connection in a transaction as the runtime role, with `account` entered (or none)."""
    conn = engine.connect()
    conn.begin()
    conn.execute(text("SELECT set_config('role', :r, true)"), {"r": RUNTIME_ROLE})
    if account is not None:
        conn.execute(text("SELECT set_config('cplane.account_id', :a, true)"), {"a": account})
    return conn


def refused(conn, sql: str, params: dict) -> str:
    """The database's refusal of `sql` (the transaction is rolled back to a savepoint)."""
    savepoint = conn.begin_nested()
    try:
        conn.execute(text(sql), params)
    except DBAPIError as exc:
        savepoint.rollback()
        return str(exc.orig)
    savepoint.rollback()
    raise AssertionError(f"the database accepted: {sql} {params}")


# --- the role --------------------------------------------------------------------------------------


def test_runtime_role_cannot_bypass_and_owns_nothing(rt_engine):
    with rt_engine.connect() as conn:
        role = conn.execute(text("SELECT rolcanlogin, rolbypassrls, rolsuper FROM pg_roles WHERE rolname = :r"),
                            {"r": RUNTIME_ROLE}).one()
        assert tuple(role) == (False, False, False)
        owned = conn.execute(text("SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
                                  "WHERE r.rolname = :r"), {"r": RUNTIME_ROLE}).scalar()
        assert owned == 0
        assert conn.execute(text("SELECT pg_has_role(current_user, :r, 'MEMBER')"), {"r": RUNTIME_ROLE}).scalar()


def test_the_runtime_role_reads_every_table_but_the_hidden_ones(rt_engine):
    """Tables created by revisions after 0009 (run rows, scheduled changes, the fast path's record)
    are readable too (default privileges), and the operators' keys are not."""
    from control_plane.db.tenancy import HIDDEN_FROM_RUNTIME

    with rt_engine.connect() as conn:
        names = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")).scalars()
        readable = {t: conn.execute(text("SELECT has_table_privilege(:r, quote_ident(:t), 'SELECT')"),
                                    {"r": RUNTIME_ROLE, "t": t}).scalar() for t in names}
    assert {t for t, ok_ in readable.items() if not ok_} == set(HIDDEN_FROM_RUNTIME)
    assert readable["cplane_scheduled_changes"]


def test_every_table_reaching_an_account_has_rls_forced(rt_engine):
    """Derived from the live schema, so a future table cannot be forgotten: every table with an
    account_id column, every table reaching one through an ON DELETE CASCADE reference, and every
    user or mixed table of the models."""
    with rt_engine.connect() as conn:
        tables = {r.relname: (r.relrowsecurity, r.relforcerowsecurity) for r in conn.execute(text(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE relkind = 'r' AND relnamespace = current_schema()::regnamespace"))}
        with_account = set(conn.execute(text(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND column_name = 'account_id'")).scalars())
        cascades = conn.execute(text(
            "SELECT c.relname AS child, p.relname AS parent FROM pg_constraint k "
            "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid "
            "WHERE k.contype = 'f' AND k.confdeltype = 'c'")).all()
    reaching = with_account | {"accounts"}
    while True:
        more = {r.child for r in cascades if r.parent in reaching} - reaching
        if not more:
            break
        reaching |= more
    expected = reaching | set(USER_TABLES) | set(MIXED)
    assert len(expected) > 40
    missing = sorted(t for t in expected if tables.get(t) != (True, True))
    assert not missing, f"tables without forced row-level security: {missing}"
    # System tables stay readable by the runtime without a policy in the way.
    assert tables["plans"] == (False, False)


def test_without_an_account_no_tenant_row_is_visible(rt_engine, world):
    with rt_engine.connect() as conn:
        forced = conn.execute(text(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relforcerowsecurity "
            "AND relnamespace = current_schema()::regnamespace")).scalars().all()
        assert conn.execute(text("SELECT count(*) FROM sites")).scalar() >= 2  # the owner sees them all
    conn = runtime_conn(rt_engine)
    try:
        assert conn.execute(text("SELECT count(*) FROM sites")).scalar() == 0
        for table in forced:
            where = " WHERE account_id IS NOT NULL" if table in MIXED else ""
            assert conn.execute(text(f'SELECT count(*) FROM "{table}"{where}')).scalar() == 0, table
        # An unknown or empty key enters no account.
        assert conn.execute(text("SELECT cplane_enter_tenant('0000')")).scalar() is None
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 0
    finally:
        conn.close()


def test_with_an_account_only_its_rows(rt_engine, world):
    a, b = world["a"], world["b"]
    conn = runtime_conn(rt_engine, a["tenant"].account_id)
    try:
        sites = set(conn.execute(text("SELECT id::text FROM sites")).scalars())
        assert a["site"] in sites and b["site"] not in sites
        assert set(conn.execute(text("SELECT DISTINCT account_id::text FROM users")).scalars()) == {
            a["tenant"].account_id}
        assert conn.execute(text("SELECT count(*) FROM accounts")).scalar() == 1
        # B's rows cannot be changed or deleted either: they are not there.
        assert conn.execute(text("UPDATE sites SET name = 'x' WHERE id = :s"), {"s": b["site"]}).rowcount == 0
        assert conn.execute(text("DELETE FROM sectors WHERE id = :s"), {"s": b["sector"]}).rowcount == 0
        # The operators' keys are not readable at all.
        assert "permission denied" in refused(conn, "SELECT count(*) FROM cplane_operators", {})
    finally:
        conn.close()


def test_moving_a_row_to_another_account_is_refused(rt_engine, world):
    a, b = world["a"], world["b"]
    conn = runtime_conn(rt_engine, a["tenant"].account_id)
    try:
        message = refused(conn, "UPDATE sites SET account_id = :b WHERE id = :s",
                          {"b": b["tenant"].account_id, "s": a["site"]})
        assert "row-level security" in message or "cannot change" in message
        message = refused(conn, "INSERT INTO sites (id, account_id, name, domain, is_active, created_at, updated_at) "
                                "VALUES (:i, :b, 'planted', '', true, now(), now())",
                          {"i": str(uuid.uuid4()), "b": b["tenant"].account_id})
        assert "row-level security" in message
    finally:
        conn.close()
    with rt_engine.begin() as owner:  # the owner cannot move a row either
        message = refused(owner, "UPDATE sites SET account_id = :b WHERE id = :s",
                          {"b": b["tenant"].account_id, "s": a["site"]})
        assert "cannot change" in message


def test_references_to_another_tenants_rows_are_refused(rt_engine, world):
    a, b = world["a"], world["b"]
    attempts = [
        ("INSERT INTO sectors (id, account_id, site_id, name, description, is_active, created_at, updated_at) "
         "VALUES (:i, :a, :b_site, 'x', '', true, now(), now())"),
        ("INSERT INTO keywords (id, account_id, site_id, sector_id, keyword, intent, status, created_at, updated_at) "
         "VALUES (:i, :a, :a_site, :b_sector, 'x', 'informational', 'pending', now(), now())"),
        "INSERT INTO site_user_access (id, site_id, user_id, access_level, created_at) "
        "VALUES (:i, :a_site, :b_user, 'editor', now())",
    ]
    params = {"a": a["tenant"].account_id, "a_site": a["site"], "b_site": b["site"], "b_sector": b["sector"],
              "b_user": b["user"]}
    conn = runtime_conn(rt_engine, a["tenant"].account_id)
    try:
        for sql in attempts:
            assert "another account" in refused(conn, sql, {**params, "i": str(uuid.uuid4())}), sql
        assert "another account" in refused(conn, "UPDATE sectors SET site_id = :b_site WHERE id = :s",
                                            {**params, "s": a["sector"]})
        # Its own references are fine.
        conn.execute(text(attempts[2].replace(":b_user", ":a_user")),
                     {**params, "i": str(uuid.uuid4()), "a_user": a["user"]})
    finally:
        conn.close()
    with rt_engine.begin() as owner:  # not only for the runtime: for every role
        for sql in attempts:
            assert "another account" in refused(owner, sql, {**params, "i": str(uuid.uuid4())}), sql


def test_mixed_tables_show_system_rows_but_never_let_a_tenant_write_them(rt_engine, world):
    conn = runtime_conn(rt_engine, world["a"]["tenant"].account_id)
    try:
        system = conn.execute(text("SELECT count(*) FROM ai_integration_settings WHERE account_id IS NULL")).scalar()
        assert system >= 1
        assert conn.execute(text("UPDATE ai_integration_settings SET text_model = 'x' "
                                 "WHERE account_id IS NULL")).rowcount == 0
        assert conn.execute(text("DELETE FROM seed_keywords WHERE account_id IS NULL")).rowcount == 0
    finally:
        conn.close()


# --- the runtime's sessions ------------------------------------------------------------------------


def test_tenant_sessions_run_under_the_runtime_role(rt_app, client, world):
    """A tenant request's transactions run as cplane_runtime with its account: the database is a
    line of its own, even for raw SQL the ORM criteria cannot see."""
    a, b = world["a"], world["b"]
    session = rt_app.state.sessionmaker()
    try:
        tenancy.enter(session, uuid.UUID(a["tenant"].account_id))
        assert session.execute(text("SELECT current_user")).scalar() == RUNTIME_ROLE
        raw = set(session.execute(text("SELECT id::text FROM sites")).scalars())
        assert a["site"] in raw and b["site"] not in raw
        session.commit()  # the next transaction enters again
        assert session.execute(text("SELECT current_user")).scalar() == RUNTIME_ROLE
        # The application-level line: an ORM select of a tenant model without any filter.
        orm = {str(s.id) for s in session.scalars(select(Site))}
        assert orm == raw
    finally:
        session.close()

    seen: list[str] = []

    def capture(_conn, _cursor, statement, *_args):
        seen.append(statement)

    engine = rt_app.state.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        ok(client.get(f"/v1/sites/{a['site']}", headers=a["tenant"].headers))
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert any(RUNTIME_ROLE in s and "cplane.account_id" in s for s in seen), seen


# --- e-mail uniqueness -----------------------------------------------------------------------------


def test_another_tenants_email_is_not_revealed(client, rt_engine, world):
    a, b = world["a"]["tenant"], world["b"]["tenant"]
    email = f"shared-{uuid.uuid4().hex[:6]}@example.com"
    ok(client.post("/v1/users", json={"email": email}, headers=a.headers), 201)
    created = ok(client.post("/v1/users", json={"email": email.upper()}, headers=b.headers), 201)
    assert created["email"] == email
    # Within one account an address is still unique.
    r = client.post("/v1/users", json={"email": email}, headers=b.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    with rt_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users WHERE email = :e"), {"e": email}).scalar() == 2


# --- caches keyed on content -----------------------------------------------------------------------


def test_catalog_etag_follows_an_sql_edit(client, rt_engine):
    first = client.get("/v1/catalog/plans")
    etag = first.headers["etag"]
    assert client.get("/v1/catalog/plans", headers={"If-None-Match": etag}).status_code == 304
    with rt_engine.begin() as conn:
        old = conn.execute(text("SELECT price_monthly FROM plans WHERE slug = 'pro'")).scalar()
        conn.execute(text("UPDATE plans SET price_monthly = 4321.50 WHERE slug = 'pro'"))
    try:
        r = client.get("/v1/catalog/plans", headers={"If-None-Match": etag})
        assert r.status_code == 200 and r.headers["etag"] != etag
        assert {p["name"]: p["price_monthly"] for p in r.json()["items"]}["pro"] == "4321.50"
        # Other catalogs read other tables: their ETags did not move.
        channels = client.get("/v1/catalog/channels").headers["etag"]
        with rt_engine.begin() as conn:
            conn.execute(text("UPDATE plans SET description = description WHERE slug = 'pro'"))
        assert client.get("/v1/catalog/channels", headers={"If-None-Match": channels}).status_code == 304
    finally:
        with rt_engine.begin() as conn:
            conn.execute(text("UPDATE plans SET price_monthly = :p WHERE slug = 'pro'"), {"p": old})


def test_prompt_edit_by_sql_shows_on_the_next_request(client, rt_engine, world):
    headers = world["a"]["tenant"].headers
    listed = {p["type"]: p for p in ok(client.get("/v1/prompts", headers=headers))["items"]}
    prompt_type = sorted(t for t, p in listed.items() if p["source"] == "global")[0]
    with rt_engine.begin() as conn:
        ids = conn.execute(text("SELECT id, text FROM global_ai_prompts WHERE prompt_type = :t"),
                           {"t": prompt_type}).all()
        conn.execute(text("UPDATE global_ai_prompts SET text = text || ' (edited by SQL)' WHERE prompt_type = :t"),
                     {"t": prompt_type})
    try:
        after = {p["type"]: p for p in ok(client.get("/v1/prompts", headers=headers))["items"]}
        assert after[prompt_type]["text"].endswith("(edited by SQL)")
        one = ok(client.get(f"/v1/prompts/{prompt_type}", headers=headers))
        assert one["text"].endswith("(edited by SQL)")
    finally:
        with rt_engine.begin() as conn:
            for row in ids:
                conn.execute(text("UPDATE global_ai_prompts SET text = :x WHERE id = :i"), {"x": row.text, "i": row.id})


# --- a production-like owner: not a superuser, so FORCE applies to it too -------------------------


def test_a_non_superuser_owner_migrates_applies_and_serves(pg_url):
    """Superusers bypass RLS whatever the policies say; a real deployment's owner does not. Such an
    owner (CREATEROLE only) migrates, applies, creates accounts and sees every row (its policy),
    while the runtime it serves sees one account's rows."""
    import psycopg
    from fastapi.testclient import TestClient
    from helpers import apply_repo_config
    from sqlalchemy.engine import make_url

    from control_plane.db.engine import make_engine, upgrade
    from runtime.app import create_app

    url = make_url(pg_url)
    role = f"cplane_owner_{uuid.uuid4().hex[:8]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN CREATEROLE NOSUPERUSER')
        conn.execute(f'ALTER DATABASE "{url.database}" OWNER TO "{role}"')
    engine = make_engine(url.set(username=role))
    try:
        upgrade(engine)
        apply_repo_config(engine)
        a, b = new_tenant(engine, "pro", "Owner test A"), new_tenant(engine, "pro", "Owner test B")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar() is False
            assert conn.execute(text("SELECT count(*) FROM accounts")).scalar() == 2  # the owner sees all
        with TestClient(create_app(engine)) as client:
            for t in (a, b):
                assert ok(client.get("/v1/account", headers=t.headers))["id"] == t.account_id
                ok(client.post("/v1/sites", json={"name": f"site of {t.account_id}"}, headers=t.headers), 201)
                assert ok(client.get("/v1/prompts", headers=t.headers))["items"]
            listed = ok(client.get("/v1/sites", headers=a.headers))["items"]
            assert [s["name"] for s in listed] == [f"site of {a.account_id}"]
        conn = runtime_conn(engine)
        try:
            assert conn.execute(text("SELECT count(*) FROM sites")).scalar() == 0
        finally:
            conn.close()
        conn = runtime_conn(engine, a.account_id)
        try:
            assert conn.execute(text("SELECT count(*) FROM sites")).scalar() == 1
        finally:
            conn.close()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM sites")).scalar() == 2
    finally:
        engine.dispose()
        other = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
        with psycopg.connect(other, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_sqlite_keeps_the_application_level_scoping(sqlite_url):
    """No roles or policies on SQLite: the tenant session's loader criteria are the line there."""
    from fastapi.testclient import TestClient
    from helpers import apply_repo_config

    from control_plane.db.engine import make_engine, upgrade
    from runtime.app import create_app

    engine = make_engine(sqlite_url)
    try:
        upgrade(engine)
        apply_repo_config(engine)
        a, b = new_tenant(engine, "pro"), new_tenant(engine, "pro")
        app = create_app(engine)
        with TestClient(app) as client:
            mine = ok(client.post("/v1/sites", json={"name": "a"}, headers=a.headers), 201)
            theirs = ok(client.post("/v1/sites", json={"name": "b"}, headers=b.headers), 201)
            assert client.get(f"/v1/sites/{theirs['id']}", headers=a.headers).status_code == 404
        session = app.state.sessionmaker()
        try:
            tenancy.enter(session, uuid.UUID(a.account_id))
            assert {str(s.id) for s in session.scalars(select(Site))} == {mine["id"]}
            assert session.scalar(select(func.count()).select_from(Site)) == 1
            # Joins and subqueries are scoped too, and ORM updates and deletes.
            assert session.scalars(select(Site.name).join(Account, Account.id == Site.account_id)).all() == ["a"]
            assert session.scalar(select(func.count()).select_from(Account)
                                  .where(Account.id.in_(select(Site.account_id)))) == 1
            assert session.execute(update(Site).values(name="renamed")).rowcount == 1
            session.commit()
        finally:
            session.close()
        with engine.connect() as conn:
            names = dict(conn.execute(text("SELECT id, name FROM sites")).all())
            assert sorted(names.values()) == ["b", "renamed"]
        session = app.state.sessionmaker()
        try:
            tenancy.enter(session, uuid.UUID(a.account_id))
            assert session.execute(delete(Site).where(Site.name == "b")).rowcount == 0
            session.commit()
        finally:
            session.close()
    finally:
        engine.dispose()


def test_prompt_list_enters_only_a_live_key(client, rt_engine, world):
    """GET /v1/prompts enters the account in SQL (cplane_enter_tenant): a revoked key enters
    nothing and answers 401; a prefix with quotes is a value, never SQL."""
    from runtime.accounts import create_api_key

    a = world["a"]["tenant"]
    key = create_api_key(rt_engine, uuid.UUID(a.account_id), name="to revoke")
    headers = {"Authorization": f"Bearer {key}"}
    assert ok(client.get("/v1/prompts", headers=headers))["items"]
    digest = hashlib.sha256(key.encode()).hexdigest()
    with rt_engine.begin() as conn:
        conn.execute(text("UPDATE api_keys SET revoked_at = now() WHERE key_hash = :h"), {"h": digest})
        assert conn.execute(text("SELECT cplane_enter_tenant(:h)"), {"h": digest}).scalar() is None
        assert conn.execute(text("SELECT cplane_enter_tenant(:h)"),
                            {"h": hashlib.sha256(a.key.encode()).hexdigest()}).scalar() == uuid.UUID(a.account_id)
    assert client.get("/v1/prompts", headers=headers).status_code == 401
    r = client.get("/v1/prompts", headers={"Authorization": "Bearer cpk_a'b;--_x"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
