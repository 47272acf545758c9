"""Secrets that are never lost (issue 14): a missing variable keeps the stored value, a wrong key is
named (never drift), keys rotate, serve and /readyz refuse an unusable key, export keeps references.
PostgreSQL and SQLite."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import insert, select, text

from control_plane.cli.main import main
from control_plane.errors import CplaneError
from control_plane.reconcile.controller import apply_config, make_plan
from control_plane.secrets import SecretBox, is_proper_key
from control_plane.state.keys import encrypted_columns, tokens_of

REPO = Path(__file__).resolve().parent.parent
SECRETS = {
    "STRIPE_SECRET_KEY": "sk_live_KEPT_stripe_" + uuid.uuid4().hex,
    "STRIPE_WEBHOOK_SECRET": "whsec_KEPT_" + uuid.uuid4().hex,
    "PAYPAL_CLIENT_SECRET": "paypal_KEPT_" + uuid.uuid4().hex,
    "PAYPAL_WEBHOOK_ID": "paypal_hook_KEPT_" + uuid.uuid4().hex,
    "OPENAI_API_KEY": "sk-proj-KEPT_" + uuid.uuid4().hex,
    "RUNWARE_API_KEY": "runware_KEPT_" + uuid.uuid4().hex,
}


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def url_of(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def stored(engine, column: str = "secret_key_encrypted", slug: str = "stripe"):
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT {column} FROM payment_method_configs WHERE slug = :s"), {"s": slug}).scalar()


def count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()


@pytest.fixture
def key_a(monkeypatch):
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("CPLANE_SECRET_KEY", key)
    return key


@pytest.fixture
def with_secrets(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return SECRETS


def test_unset_variable_keeps_the_stored_value(config_tree, migrated_engine, with_secrets, monkeypatch):
    url = url_of(migrated_engine)
    apply_config(migrated_engine, config_tree.root, actor="test")
    token = stored(migrated_engine)
    assert token and SecretBox().decrypt(token) == SECRETS["STRIPE_SECRET_KEY"]

    monkeypatch.delenv("STRIPE_SECRET_KEY")
    plan = make_plan(migrated_engine, config_tree.root).plan
    assert plan.changes == []
    assert any("STRIPE_SECRET_KEY" in w and "stored values are kept" in w for w in plan.warnings), plan.warnings
    shown = cli("plan", "--config", str(config_tree.root), "--database-url", url, "--detailed-exitcode")
    assert shown.exit_code == 0, shown.output
    assert "STRIPE_SECRET_KEY" in shown.output and "kept" in shown.output and "No changes" in shown.output
    applied = cli("apply", "--config", str(config_tree.root), "--database-url", url, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert stored(migrated_engine) == token  # byte for byte

    # Another field of the same object changes: the secret's ciphertext is still the stored one.
    path = config_tree.root / "payment_methods" / "stripe.yaml"
    path.write_text(path.read_text().replace("sortOrder: 10", "sortOrder: 11"))
    plan = make_plan(migrated_engine, config_tree.root).plan
    assert [(c.kind, c.name, [f.field for f in c.fields]) for c in plan.changes] == [
        ("PaymentMethod", "stripe", ["sort_order"])]
    apply_config(migrated_engine, config_tree.root, actor="test")
    assert stored(migrated_engine) == token
    assert stored(migrated_engine, "webhook_secret_encrypted") is not None

    # Production (and --require-secrets): an error naming the variable, nothing planned.
    for extra in (["--env", "production"], ["--require-secrets"]):
        refused = cli("plan", "--config", str(config_tree.root), "--database-url", url, *extra)
        assert refused.exit_code == 1
        assert "STRIPE_SECRET_KEY" in refused.output and len(refused.stderr.strip().splitlines()) == 1

    # Only removing the field plans the secret away.
    path.write_text(path.read_text().replace("  secretKey:\n    fromEnv: STRIPE_SECRET_KEY\n", ""))
    removed = cli("plan", "--config", str(config_tree.root), "--database-url", url)
    assert removed.exit_code == 0, removed.output
    assert '"(sensitive)" → "(removed)"' in removed.output or "(sensitive) → (removed)" in removed.output, removed.output
    apply_config(migrated_engine, config_tree.root, actor="test")
    assert stored(migrated_engine) is None


def test_unset_provider_key_keeps_its_entry(config_tree, migrated_engine, with_secrets, monkeypatch):
    apply_config(migrated_engine, config_tree.root, actor="test")
    with migrated_engine.connect() as conn:
        before = conn.execute(text("SELECT api_keys_encrypted FROM ai_integration_settings WHERE account_id IS NULL")).scalar()
    monkeypatch.delenv("OPENAI_API_KEY")
    plan = make_plan(migrated_engine, config_tree.root).plan
    assert plan.changes == [] and any("OPENAI_API_KEY" in w for w in plan.warnings)
    apply_config(migrated_engine, config_tree.root, actor="test")
    with migrated_engine.connect() as conn:
        after = conn.execute(text("SELECT api_keys_encrypted FROM ai_integration_settings WHERE account_id IS NULL")).scalar()
    assert after == before


def test_a_second_key_is_named_never_drift(config_tree, migrated_engine, with_secrets, key_a, monkeypatch):
    url = url_of(migrated_engine)
    apply_config(migrated_engine, config_tree.root, actor="test")
    key_id = SecretBox().key_id
    runs = count(migrated_engine, "cplane_apply_runs")
    with migrated_engine.connect() as conn:
        assert conn.execute(text("SELECT key_id FROM cplane_secret_keys WHERE retired_at IS NULL")).scalar() == key_id

    monkeypatch.setenv("CPLANE_SECRET_KEY", Fernet.generate_key().decode())
    with pytest.raises(CplaneError) as refused:
        make_plan(migrated_engine, config_tree.root)
    message = str(refused.value)
    assert "PaymentMethod/stripe" in message and f"key id {key_id}" in message
    assert "encrypted with another key" in message and "cplane secrets rotate-key" in message
    assert "drift" not in message and "\n" not in message
    out = cli("plan", "--config", str(config_tree.root), "--database-url", url)
    assert out.exit_code == 1 and key_id in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = cli("apply", "--config", str(config_tree.root), "--database-url", url, "--auto-approve")
    assert out.exit_code == 1 and "PaymentMethod/stripe" in out.stderr
    assert count(migrated_engine, "cplane_apply_runs") == runs  # nothing written
    status = cli("status", "--config", str(config_tree.root), "--database-url", url)
    assert status.exit_code == 1 and "another key" in status.stderr

    # Production wants a proper key.
    monkeypatch.setenv("CPLANE_SECRET_KEY", "notakey")
    out = cli("plan", "--config", str(config_tree.root), "--database-url", url, "--env", "production")
    assert out.exit_code == 1 and "CPLANE_SECRET_KEY is not a proper key" in out.stderr
    assert "notakey" not in out.output
    assert len(out.stderr.strip().splitlines()) == 1


def test_proper_keys():
    assert is_proper_key(Fernet.generate_key().decode())
    assert is_proper_key(Fernet.generate_key().decode().rstrip("="))
    assert not is_proper_key("notakey") and not is_proper_key("test-secret-key") and not is_proper_key("")


def test_the_local_key_does_not_depend_on_the_working_directory(config_tree, tmp_path, with_secrets, monkeypatch):
    monkeypatch.delenv("CPLANE_SECRET_KEY")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    db = tmp_path / "data" / "cplane.db"
    db.parent.mkdir()
    url = f"sqlite:///{db}"
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    applied = cli("apply", "--config", str(config_tree.root), "--database-url", url, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    key_file = db.with_name("cplane.db.key")
    assert key_file.exists() and f"generated a local key in {key_file}" in applied.stderr
    assert not (first / ".cplane").exists()
    monkeypatch.chdir(second)
    again = cli("plan", "--config", str(config_tree.root), "--database-url", url, "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    assert "generated" not in again.stderr and "No changes" in again.output
    # A server database: the user's config directory.
    from control_plane.secrets import local_key_file

    assert local_key_file("postgresql://postgres@127.0.0.1/x") == (tmp_path / "xdg" / "cplane" / "secret.key")


def _user_secrets(engine, box: SecretBox) -> dict[str, str]:
    """An account with a site integration, a webhook and its own AI keys; returns the clear values."""
    from control_plane.db.models import (
        AIIntegrationSettings,
        PublishingChannel,
        Site,
        SiteIntegration,
        WebhookConfig,
    )
    from runtime.accounts import create_account

    account = uuid.UUID(create_account(engine, name="Rot", plan="enterprise", owner_email="rot@example.com")["account_id"])
    values = {"credentials": "wp-app-password-" + uuid.uuid4().hex, "webhook": "whsec-user-" + uuid.uuid4().hex,
              "openai": "sk-tenant-" + uuid.uuid4().hex}
    with engine.begin() as conn:
        site = uuid.uuid4()
        conn.execute(insert(Site.__table__), {"id": site, "account_id": account, "name": "S", "domain": "s.example",
                                               "is_active": True})
        channel = conn.execute(select(PublishingChannel.__table__.c.id).limit(1)).scalar_one()
        conn.execute(insert(SiteIntegration.__table__), {
            "id": uuid.uuid4(), "account_id": account, "site_id": site, "channel_id": channel, "name": "wp",
            "url": "https://s.example", "username": "u", "credentials_encrypted": box.encrypt(values["credentials"]),
            "settings": {}, "structure": {}, "is_active": True})
        conn.execute(insert(WebhookConfig.__table__), {
            "id": uuid.uuid4(), "account_id": account, "url": "https://hook.example", "events": [],
            "secret_encrypted": box.encrypt(values["webhook"]), "is_active": True})
        conn.execute(insert(AIIntegrationSettings.__table__), {
            "account_id": account, "name": "override", "text_provider": "openai", "text_model": "m",
            "temperature": 1, "max_tokens": 10, "image_provider": "x", "image_model": "y", "image_size": "s",
            "image_quality": "q", "image_style": "n", "providers": {},
            "api_keys_encrypted": {"openai": box.encrypt(values["openai"])}, "is_active": True})
    return values


def _all_tokens(engine) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    with engine.connect() as conn:
        for ec in encrypted_columns():
            for (value,) in conn.execute(select(ec.column).where(ec.column.is_not(None))):
                if isinstance(value, str) and value.startswith("{"):
                    value = json.loads(value)
                found.setdefault(ec.label, []).extend(tokens_of(value))
    return found


def test_rotate_key_reencrypts_everything_and_plans_no_changes(config_tree, migrated_engine, with_secrets, key_a,
                                                               monkeypatch):
    url = url_of(migrated_engine)
    apply_config(migrated_engine, config_tree.root, actor="test")
    old = SecretBox()
    user_values = _user_secrets(migrated_engine, old)
    before = {label: sorted(old.decrypt(t) for t in tokens) for label, tokens in _all_tokens(migrated_engine).items()}
    assert {ec.label for ec in encrypted_columns()} <= set(before), before.keys()  # every column holds secrets

    new_key = Fernet.generate_key().decode()
    monkeypatch.setenv("CPLANE_NEW_SECRET_KEY", new_key)
    rotated = cli("secrets", "rotate-key", "--database-url", url, "--actor", "rotator", "--format", "json")
    assert rotated.exit_code == 0, rotated.output
    report = json.loads(rotated.stdout)
    assert report["old_key_id"] == old.key_id and report["total"] == sum(len(v) for v in before.values())
    assert new_key not in rotated.output and key_a not in rotated.output

    monkeypatch.setenv("CPLANE_SECRET_KEY", new_key)
    new = SecretBox()
    after = _all_tokens(migrated_engine)
    for label, tokens in after.items():
        assert not any(old.can_read(t) for t in tokens), label  # nothing the old key alone can read
        assert sorted(new.decrypt(t) for t in tokens) == before[label], label
    assert set(user_values.values()) <= {v for vs in before.values() for v in vs}

    plan = cli("plan", "--config", str(config_tree.root), "--database-url", url, "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output
    assert "No changes" in plan.output
    with migrated_engine.connect() as conn:
        audit = conn.execute(text("SELECT key_id, event, actor, previous_key_id, reencrypted FROM cplane_secret_keys "
                                  "ORDER BY id DESC")).first()
        current = conn.execute(text("SELECT count(*) FROM cplane_secret_keys WHERE retired_at IS NULL")).scalar()
    reencrypted = audit[4] if isinstance(audit[4], dict) else json.loads(audit[4])
    assert (audit[0], audit[1], audit[2], audit[3]) == (new.key_id, "rotated", "rotator", old.key_id)
    assert reencrypted["site_integrations.credentials_encrypted"] == 1 and current == 1

    # The old key is now the wrong one; the same key twice is refused.
    monkeypatch.setenv("CPLANE_SECRET_KEY", key_a)
    assert cli("plan", "--config", str(config_tree.root), "--database-url", url).exit_code == 1
    monkeypatch.setenv("CPLANE_SECRET_KEY", new_key)
    same = cli("secrets", "rotate-key", "--database-url", url)
    assert same.exit_code == 1 and "same key" in same.stderr


def test_rotate_key_refuses_a_key_that_is_not_the_databases(config_tree, migrated_engine, with_secrets, key_a,
                                                           monkeypatch):
    apply_config(migrated_engine, config_tree.root, actor="test")
    token = stored(migrated_engine)
    monkeypatch.setenv("CPLANE_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("CPLANE_NEW_SECRET_KEY", Fernet.generate_key().decode())
    refused = cli("secrets", "rotate-key", "--database-url", url_of(migrated_engine))
    assert refused.exit_code == 1 and "key id" in refused.stderr
    assert stored(migrated_engine) == token


def test_serve_in_production_without_a_usable_key_exits_1(migrated_engine, monkeypatch):
    monkeypatch.delenv("CPLANE_SECRET_KEY", raising=False)
    out = cli("serve", "--database-url", url_of(migrated_engine), "--env", "production")
    assert out.exit_code == 1
    assert "CPLANE_SECRET_KEY is not set" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    monkeypatch.setenv("CPLANE_SECRET_KEY", "notakey")
    out = cli("serve", "--database-url", url_of(migrated_engine), "--env", "production")
    assert out.exit_code == 1 and "not a proper key" in out.stderr


def test_readyz_is_503_when_a_stored_secret_cannot_be_read(config_tree, migrated_engine, with_secrets, key_a,
                                                          monkeypatch):
    from fastapi.testclient import TestClient

    from runtime.app import create_app

    apply_config(migrated_engine, config_tree.root, actor="test")
    with TestClient(create_app(migrated_engine)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["secrets"] == "ok"
        other = SecretBox(material=b"another key entirely")
        with migrated_engine.begin() as conn:
            conn.execute(text("UPDATE payment_method_configs SET secret_key_encrypted = :t WHERE slug = 'stripe'"),
                         {"t": other.encrypt("x")})
        ready = client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["error"]["code"] == "not_ready" and "PaymentMethod/stripe" in body["checks"]["secrets"]

    # A server whose key is not the database's: not ready either, and the reason names the key id.
    monkeypatch.setenv("CPLANE_SECRET_KEY", Fernet.generate_key().decode())
    with TestClient(create_app(migrated_engine)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "key id" in ready.json()["error"]["message"]
    # Production without a key: 503 with the reason, never a 500.
    from runtime.accounts import create_account

    api_key = create_account(migrated_engine, name="NoKey", plan="pro", owner_email="nokey@example.com")["api_key"]
    monkeypatch.delenv("CPLANE_SECRET_KEY")
    with TestClient(create_app(migrated_engine, environment="production")) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "CPLANE_SECRET_KEY is not set" in ready.json()["error"]["message"]
        settings = client.get("/v1/settings/integrations", headers={"Authorization": f"Bearer {api_key}"})
        assert settings.status_code == 503, settings.text
        assert settings.json()["error"]["code"] == "secrets_unavailable"


def config_variables(root: Path) -> set[str]:
    """The variables the base config names (overlays left out: the export is of one database)."""
    return {v for p in root.glob("*/*.yaml") if p.parent.name != "environments"
            for v in re.findall(r"fromEnv:\s*([A-Z][A-Z0-9_]*)", p.read_text())}


def test_export_keeps_the_references_of_the_repo_config(config_tree, migrated_engine, with_secrets, tmp_path,
                                                        monkeypatch):
    url = url_of(migrated_engine)
    apply_config(migrated_engine, config_tree.root, actor="test")
    out = tmp_path / "exported"
    exported = cli("export", "--database-url", url, "--out", str(out))
    assert exported.exit_code == 0, exported.output
    assert config_variables(out) == config_variables(config_tree.root) == set(SECRETS)
    assert cli("validate", "--config", str(out)).exit_code == 0
    plan = cli("plan", "--config", str(out), "--database-url", url, "--detailed-exitcode")
    assert plan.exit_code == 0 and "No changes" in plan.output, plan.output
    # Without the variables: still no change, nothing planned away.
    for name in SECRETS:
        monkeypatch.delenv(name)
    plan = make_plan(migrated_engine, out).plan
    assert plan.changes == [] and plan.warnings


def test_a_renamed_reference_is_planned_and_exported(config_tree, migrated_engine, with_secrets, tmp_path,
                                                     monkeypatch):
    apply_config(migrated_engine, config_tree.root, actor="test")
    token = stored(migrated_engine)
    path = config_tree.root / "payment_methods" / "stripe.yaml"
    path.write_text(path.read_text().replace("fromEnv: STRIPE_SECRET_KEY", "fromEnv: STRIPE_LIVE_KEY"))
    monkeypatch.setenv("STRIPE_LIVE_KEY", SECRETS["STRIPE_SECRET_KEY"])  # the same value, another name
    plan = make_plan(migrated_engine, config_tree.root).plan
    assert [(c.name, [(f.field, f.before, f.after) for f in c.fields]) for c in plan.changes] == [
        ("stripe", [("reference secret_key_encrypted", "STRIPE_SECRET_KEY", "STRIPE_LIVE_KEY")])]
    apply_config(migrated_engine, config_tree.root, actor="test")
    assert stored(migrated_engine) == token
    assert make_plan(migrated_engine, config_tree.root).plan.changes == []
    out = tmp_path / "exported"
    assert cli("export", "--database-url", url_of(migrated_engine), "--out", str(out)).exit_code == 0
    assert "fromEnv: STRIPE_LIVE_KEY" in (out / "payment_methods" / "stripe.yaml").read_text()
