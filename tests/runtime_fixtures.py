"""Shared fixtures of the runtime API tests: one PostgreSQL database per test module, with the
repo's config applied by the controller, an app, and two tenants A and B.

Import the fixtures you use into a test module: `from runtime_fixtures import rt_engine, ...`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, _server_url, create_pg_database, drop_pg_database

os.environ.setdefault("CPLANE_SECRET_KEY", "runtime-tests-secret-key")
# The API suites send far more than a plan's requests per minute with one key; the rate limits
# have their own tests (test_runtime_operators.py), which build their apps with rate_limits=True.
os.environ.setdefault("CPLANE_RATE_LIMITS", "off")


@dataclass
class TenantInfo:
    account_id: str
    key: str
    plan: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def apply_repo_config(engine, config_dir: Path | None = None) -> None:
    from control_plane.reconcile.controller import apply_config

    apply_config(engine, config_dir or REPO / "config", environment=None, actor="test")


def new_tenant(engine, plan: str = "pro", name: str | None = None) -> TenantInfo:
    from runtime.accounts import create_account

    suffix = uuid.uuid4().hex[:8]
    result = create_account(engine, name=name or f"Tenant {suffix}", plan=plan, owner_email=f"owner-{suffix}@example.com")
    return TenantInfo(account_id=result["account_id"], key=result["api_key"], plan=plan)


@pytest.fixture(scope="module")
def rt_url():
    """A PostgreSQL database for the module: migrated, with the repo's config applied."""
    name = create_pg_database()
    url = _server_url(name)
    from control_plane.db.engine import make_engine, upgrade

    engine = make_engine(url)
    try:
        upgrade(engine)
        apply_repo_config(engine)
    finally:
        engine.dispose()
    try:
        yield url
    finally:
        drop_pg_database(name)


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


class LiveServer:
    """The app served by a real uvicorn in a thread, for tests that need real concurrency."""

    def __init__(self, app):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def live_server(rt_app):
    with LiveServer(rt_app) as server:
        yield server


def ok(response, status: int = 200):
    """The JSON of a response that must have `status` (the body is shown when it has not)."""
    assert response.status_code == status, response.text
    return response.json() if response.content else None
