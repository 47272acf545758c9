"""Test harness: every test that needs a database gets a fresh one.

PostgreSQL tests create and drop their own database on the server at CPLANE_TEST_PG
(default postgresql://postgres@127.0.0.1:5432/test, trust auth). When none is reachable they
are skipped loudly, unless CPLANE_REQUIRE_POSTGRES is set (CI), when they fail.
"""

from __future__ import annotations

import os
import shutil
import uuid

import psycopg
import pytest
from helpers import PLAN_SECRETS, REPO, ConfigTree, LiveServer, TenantInfo, apply_repo_config, new_tenant
from psycopg import sql

# The runtime API encrypts secrets at rest: one stable key for the whole test run.
os.environ.setdefault("CPLANE_SECRET_KEY", "runtime-tests-secret-key")
# The API suites send far more than a plan's requests per minute with one key; the rate limits
# have their own tests (test_runtime_guards.py), which turn them on explicitly.
os.environ.setdefault("CPLANE_RATE_LIMITS", "off")
ADMIN_URL = os.environ.get("CPLANE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_unreachable_reason() -> str | None:
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            return None
    except Exception as exc:  # any failure means "not reachable" for the skip decision
        return f"no PostgreSQL reachable at {ADMIN_URL}: {str(exc).strip().splitlines()[0]}"


_PG_REASON = _pg_unreachable_reason()


def _server_url(dbname: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


def create_pg_database() -> str:
    if _PG_REASON:
        if os.environ.get("CPLANE_REQUIRE_POSTGRES"):
            pytest.fail(f"CPLANE_REQUIRE_POSTGRES is set but {_PG_REASON}")
        pytest.skip(f"SKIPPING PostgreSQL test: {_PG_REASON} (set CPLANE_REQUIRE_POSTGRES=1 to fail instead)")
    name = f"cplane_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_pg_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_url():
    """URL of a fresh, empty PostgreSQL database, dropped after the test."""
    name = create_pg_database()
    try:
        yield _server_url(name)
    finally:
        drop_pg_database(name)


@pytest.fixture
def pg_url_factory():
    """Make more fresh PostgreSQL databases in one test: call it for each URL; all dropped after."""
    names: list[str] = []

    def make() -> str:
        names.append(create_pg_database())
        return _server_url(names[-1])

    yield make
    for name in names:
        drop_pg_database(name)


@pytest.fixture(scope="module")
def module_pg_url():
    """A fresh PostgreSQL database shared by the test module, dropped after it."""
    name = create_pg_database()
    try:
        yield _server_url(name)
    finally:
        drop_pg_database(name)


@pytest.fixture
def sqlite_url(tmp_path):
    """URL of a fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'cplane.db'}"


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request, tmp_path):
    """A fresh database of each kind: tests using it run on both."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cplane.db'}"
        return
    name = create_pg_database()
    try:
        yield _server_url(name)
    finally:
        drop_pg_database(name)


@pytest.fixture
def engine_for():
    """Build engines that are disposed after the test."""
    from control_plane.db.engine import make_engine

    engines = []

    def build(url):
        eng = make_engine(url)
        engines.append(eng)
        return eng

    yield build
    for eng in engines:
        eng.dispose()


@pytest.fixture
def migrated_engine(db_url, engine_for):
    """An engine on a fresh database of each kind, migrated to head."""
    from control_plane.db.engine import upgrade

    eng = engine_for(db_url)
    upgrade(eng)
    return eng


@pytest.fixture
def pg_engine(pg_url, engine_for):
    """An engine on a fresh PostgreSQL database, migrated to head."""
    from control_plane.db.engine import upgrade

    eng = engine_for(pg_url)
    upgrade(eng)
    return eng


# --- a copy of config/ the test may edit ----------------------------------------------------------


@pytest.fixture
def config_tree(tmp_path, monkeypatch) -> ConfigTree:
    root = tmp_path / "config"
    shutil.copytree(REPO / "config", root)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CPLANE_SECRET_KEY", "test-secret-key")
    monkeypatch.delenv("CPLANE_ENV", raising=False)
    tree = ConfigTree(root)
    tree.test_plan()
    tree.test_industry()
    return tree


@pytest.fixture
def applied(config_tree, migrated_engine, monkeypatch):
    """(config_tree, engine): a copy of the repo's config applied to a fresh database of each kind,
    its secret variables set. (A test module whose `applied` means something else defines its own.)"""
    from control_plane.reconcile.controller import apply_config

    for name, value in PLAN_SECRETS.items():
        monkeypatch.setenv(name, value)
    assert apply_config(migrated_engine, config_tree.root, actor="test").applied
    return config_tree, migrated_engine


# --- the runtime API: one PostgreSQL database per test module, the repo's config applied -----------


@pytest.fixture(scope="module")
def rt_url(module_pg_url):
    """A PostgreSQL database for the module: migrated, with the repo's config applied."""
    from control_plane.db.engine import make_engine, upgrade

    engine = make_engine(module_pg_url)
    try:
        upgrade(engine)
        apply_repo_config(engine)
    finally:
        engine.dispose()
    return module_pg_url


@pytest.fixture(scope="module")
def rt_engine(rt_url):
    from control_plane.db.engine import make_engine

    engine = make_engine(rt_url, pool_size=20, max_overflow=40)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def rt_app(rt_engine):
    from runtime.app import create_app

    return create_app(rt_engine)


@pytest.fixture(scope="module")
def client(rt_app):
    from fastapi.testclient import TestClient

    with TestClient(rt_app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def tenant_a(rt_engine) -> TenantInfo:
    return new_tenant(rt_engine, "pro", "Tenant A")


@pytest.fixture(scope="module")
def tenant_b(rt_engine) -> TenantInfo:
    return new_tenant(rt_engine, "pro", "Tenant B")


@pytest.fixture(scope="module")
def live_server(rt_app):
    with LiveServer(rt_app) as server:
        yield server
