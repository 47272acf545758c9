"""`cplane accounts create` and `cplane serve` (docs/reference.md §3)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from fastapi.testclient import TestClient
from helpers import REPO
from sqlalchemy import text

from control_plane.cli.main import main as cplane_main
from control_plane.db.engine import make_engine, upgrade
from runtime.app import create_app


def _main():
    return cplane_main


def _apply(url: str) -> None:
    from control_plane.reconcile.controller import apply_config

    engine = make_engine(url)
    try:
        upgrade(engine)
        apply_config(engine, REPO / "config", environment=None, actor="test")
    finally:
        engine.dispose()


def test_accounts_create_prints_id_and_key(pg_url):
    _apply(pg_url)
    result = CliRunner().invoke(_main(), ["accounts", "create", "--name", "Acme", "--plan", "enterprise",
                                          "--owner-email", "Owner@Acme.example", "--database-url", pg_url])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {"account_id", "api_key"}
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            account = conn.execute(text("SELECT a.name, p.slug, a.owner_id FROM accounts a JOIN plans p "
                                        "ON p.id = a.plan_id WHERE a.id = :a"), {"a": out["account_id"]}).one()
            assert account.name == "Acme" and account.slug == "enterprise"
            owner = conn.execute(text("SELECT u.email, r.slug FROM users u LEFT JOIN roles r ON r.id = u.role_id "
                                      "WHERE u.id = :u"), {"u": account.owner_id}).one()
            assert owner.email == "owner@acme.example" and owner.slug == "owner"
            assert conn.execute(text("SELECT status FROM subscriptions WHERE account_id = :a"),
                                {"a": out["account_id"]}).scalar() == "active"
            keys = conn.execute(text("SELECT key_hash FROM api_keys WHERE account_id = :a"),
                                {"a": out["account_id"]}).scalars().all()
            assert len(keys) == 1 and out["api_key"] not in keys[0]
        with TestClient(create_app(engine)) as c:
            r = c.get("/v1/account", headers={"Authorization": f"Bearer {out['api_key']}"})
            assert r.status_code == 200 and r.json()["plan"]["name"] == "enterprise"
            assert c.get("/v1/credits", headers={"Authorization": f"Bearer {out['api_key']}"}).json()["balance"] > 0
    finally:
        engine.dispose()
    again = CliRunner().invoke(_main(), ["accounts", "create", "--name", "Dup", "--plan", "pro",
                                         "--owner-email", "owner@acme.example", "--database-url", pg_url])
    assert again.exit_code == 1 and "already exists" in again.stderr and "Traceback" not in again.output


def test_unknown_or_inactive_plan_is_one_line_error(pg_url):
    _apply(pg_url)
    result = CliRunner().invoke(_main(), ["accounts", "create", "--name", "X", "--plan", "platinum",
                                          "--owner-email", "x@example.com", "--database-url", pg_url])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "unknown plan 'platinum'" in result.stderr
    assert "Traceback" not in result.output
    engine = make_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE plans SET is_active = false WHERE slug = 'starter'"))
    finally:
        engine.dispose()
    result = CliRunner().invoke(_main(), ["accounts", "create", "--name", "X", "--plan", "starter",
                                          "--owner-email", "x@example.com", "--database-url", pg_url])
    assert result.exit_code == 1 and "not active" in result.stderr


def test_accounts_create_migrates_a_fresh_database(pg_url):
    result = CliRunner().invoke(_main(), ["accounts", "create", "--name", "X", "--plan", "pro",
                                          "--owner-email", "x@example.com", "--database-url", pg_url])
    assert result.exit_code == 1 and "no plans in the database" in result.stderr
    engine = make_engine(pg_url)
    try:
        from control_plane.db.engine import current_revision, head_revision

        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_serve_and_accounts_are_registered():
    main = _main()
    runner = CliRunner()
    help_text = runner.invoke(main, ["serve", "--help"]).output
    assert "--host" in help_text and "--port" in help_text and "--workers" in help_text
    assert "--database-url" in help_text
    assert runner.invoke(main, ["accounts", "create", "--help"]).exit_code == 0
