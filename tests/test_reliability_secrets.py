"""Secrets (issue 8.5): recognizable values in every secret variable the config names, then every
output of every command, every file they write, the logs, the API answers and logs of a served app,
and every column of every table are scanned for them. At rest they are ciphertext that decrypts back.

tests/test_controller.py::test_secrets_never_appear_in_outputs_or_audit covers plan/apply/history/
status for two variables; this sweeps every variable (overlay ones included), every command and
format, the error paths, export, cleanup, the served API and the whole database.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from control_plane.cli.main import main

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"
MARK = "RECOGNIZABLE" + uuid.uuid4().hex[:8].upper()


def secret_variables() -> list[str]:
    found = set()
    for path in CONFIG.rglob("*.yaml"):
        found.update(re.findall(r"fromEnv:\s*([A-Z][A-Z0-9_]*)", path.read_text()))
    return sorted(found)


VARIABLES = secret_variables()
VALUES = {v: f"sk_{v.lower()}_{MARK}_{uuid.uuid4().hex}" for v in VARIABLES}


def leaks(blob: str) -> list[str]:
    """The secrets found in `blob`: the full value, or its distinctive middle (partial leaks too)."""
    return [v for v, value in VALUES.items() if value in blob or value[:-4] in blob] + (["MARK"] if MARK in blob else [])


def db_dump(engine) -> str:
    from sqlalchemy import inspect

    parts = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            parts.extend(f"{table}: {r[0]}" for r in conn.execute(text(f'SELECT t::text FROM "{table}" t')))
    return "\n".join(parts)


@pytest.fixture
def secret_env(monkeypatch):
    assert {"STRIPE_SECRET_KEY", "OPENAI_API_KEY", "PAYPAL_CLIENT_SECRET"} <= set(VARIABLES), VARIABLES
    for name, value in VALUES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CPLANE_SECRET_KEY", "secrets-test-key")
    monkeypatch.delenv("CPLANE_ENV", raising=False)
    from control_plane.secrets import _key_material

    _key_material.cache_clear()  # the key is cached per process: read this test's key, and forget it after
    yield VALUES
    _key_material.cache_clear()


def test_no_command_output_file_log_or_column_holds_a_secret(secret_env, pg_engine, tmp_path, caplog, monkeypatch):
    url = pg_engine.url.render_as_string(hide_password=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    seen: list[tuple[str, str]] = []

    def run(*args: str, expect: tuple[int, ...] = (0,)) -> str:
        result = runner.invoke(main, list(args))
        blob = result.stdout + result.stderr
        assert result.exit_code in expect, (args, result.exit_code, blob[-1500:])
        seen.append((" ".join(args), blob))
        return blob

    c, d = ("--config", str(CONFIG)), ("--database-url", url)
    planfile = tmp_path / "plan.json"
    with caplog.at_level(logging.DEBUG):
        run("validate", *c)
        run("validate", *c, "--format", "json")
        for env in ([], ["--env", "staging"]):
            for fmt in ("text", "markdown", "json"):
                out = run("plan", *c, *d, *env, "--format", fmt)
                assert "(sensitive)" in out
        run("plan", *c, *d, "--out", str(planfile))
        run("apply", *c, *d, "--auto-approve")
        run("plan", *c, *d, "--detailed-exitcode")
        # Rotated secrets: the plan shows a change, never the values.
        for name in VALUES:
            monkeypatch.setenv(name, VALUES[name][::-1])
        rotated = run("plan", *c, *d, "--detailed-exitcode", expect=(2,))
        assert "(sensitive) (changed)" in rotated
        # Error path: the saved plan was made with the old values; applying it refuses, naming no value.
        refused = run("apply", str(planfile), *d, "--auto-approve", expect=(1,))
        assert "refusing to apply" in refused
        run("apply", *c, *d, "--auto-approve", "--format", "json")
        for name, value in VALUES.items():
            monkeypatch.setenv(name, value)
        run("apply", *c, *d, "--auto-approve")
        run("apply", *c, *d, "--auto-approve", "--env", "staging", "--debug")
        run("apply", *c, *d, "--auto-approve")
        for fmt in ("text", "json"):
            run("history", *d, "--format", fmt)
            run("status", *c, *d, "--format", fmt, expect=(0, 2))
        run("export", *c, *d, "--out", str(tmp_path / "exported"))
        run("cleanup", "check", *c, *d)
        for fmt in ("text", "json"):
            run("cleanup", "plan", *c, *d, "--profile", "test-data", "--format", fmt)
        run("cleanup", "apply", *c, *d, "--profile", "test-data", "--yes")
        # Production refuses without CPLANE_SECRET_KEY set: the message names the variable, not a value.
        monkeypatch.delenv("CPLANE_SECRET_KEY")
        run("plan", *c, *d, "--env", "production", expect=(1,))
        monkeypatch.setenv("CPLANE_SECRET_KEY", "secrets-test-key")

    assert len(seen) >= 25
    for command, blob in seen:
        assert not leaks(blob), (command, leaks(blob))
    assert not leaks(caplog.text), leaks(caplog.text)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert planfile in files and any(p.suffix == ".yaml" for p in files)
    for path in files:
        assert not leaks(path.read_text(errors="replace")), (path, leaks(path.read_text(errors="replace")))
    exported = "\n".join(p.read_text() for p in (tmp_path / "exported").rglob("*.yaml"))
    assert "fromEnv" in exported  # secrets are exported as references

    # At rest: every table, every column, as text; then the ciphertext decrypts to the value.
    dump = db_dump(pg_engine)
    assert not leaks(dump), leaks(dump)
    from control_plane.secrets import SecretBox

    box = SecretBox(None)
    with pg_engine.connect() as conn:
        token = conn.execute(text("SELECT secret_key_encrypted FROM payment_method_configs WHERE slug = 'stripe'")).scalar()
        keys = conn.execute(text("SELECT api_keys_encrypted FROM ai_integration_settings "
                                 "WHERE account_id IS NULL AND name = 'default'")).scalar()
        runs = conn.execute(text("SELECT count(*) FROM cplane_apply_runs")).scalar()
        cleanups = conn.execute(text("SELECT count(*) FROM cplane_cleanup_runs")).scalar()
    assert token and token != VALUES["STRIPE_SECRET_KEY"] and box.decrypt(token) == VALUES["STRIPE_SECRET_KEY"]
    keys = keys if isinstance(keys, dict) else json.loads(keys)
    assert box.decrypt(keys["openai"]) == VALUES["OPENAI_API_KEY"]
    assert runs >= 4 and cleanups == 1  # the audit records scanned above are real


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_api_answers_and_logs_hold_no_secret_and_keys_are_hashed(secret_env, pg_engine, tmp_path):
    from control_plane.reconcile.controller import apply_config

    apply_config(pg_engine, CONFIG, environment=None, actor="test")
    url = pg_engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "DATABASE_URL": url}
    exe = Path(sys.executable).with_name("cplane")
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "control_plane"]
    created = subprocess.run([*head, "accounts", "create", "--name", "Ent", "--plan", "enterprise", "--owner-email",
                              "ent@example.com"], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    account = json.loads(created.stdout)
    key = account["api_key"]
    override = f"sk-override-{MARK}-{uuid.uuid4().hex}"
    port = _free_port()
    server = subprocess.Popen([*head, "serve", "--port", str(port), "--log-level", "debug"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    answers: list[str] = []
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "cplane serve did not start"
            time.sleep(0.1)
        h = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=h, timeout=30) as api:
            steps = [
                api.get("/v1/settings/integrations"),
                api.put("/v1/settings/integrations", json={"api_keys": {"openai": override, "runware": override + "2"}}),
                api.get("/v1/settings/integrations"),
                api.get("/v1/account"),
                api.get("/v1/credits"),
                api.get("/v1/prompts"),
                api.get("/v1/catalog/plans"),
                api.get("/v1/nope"),
                api.put("/v1/settings/integrations", json={"api_keys": {"openai": 5}}),  # a 422 echoing input?
                api.get("/v1/account", headers={"Authorization": f"Bearer {key}x"}),  # wrong key: 401
                api.get(f"/v1/account?api_key={key}"),
            ]
            with pg_engine.connect() as conn:
                stored = conn.execute(text("SELECT api_keys_encrypted FROM ai_integration_settings WHERE account_id = :a"),
                                      {"a": account["account_id"]}).scalar()
            steps.append(api.delete("/v1/settings/integrations"))
            steps.append(api.get("/v1/settings/integrations"))
        assert [r.status_code for r in steps[:3]] == [200, 200, 200], [r.text[:200] for r in steps[:3]]
        masked = steps[2].json()["api_keys"]
        assert masked["openai"].endswith(override[-4:]) and override[:-4] not in json.dumps(masked)
        answers = [f"{r.status_code} {dict(r.headers)} {r.text}" for r in steps]
    finally:
        server.terminate()
        try:
            logs, _ = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            logs, _ = server.communicate()
    assert "GET /v1/account" in logs or '"path":"/v1/account"' in logs, logs[-2000:]  # the logs were captured
    for blob in [*answers, logs]:
        assert not leaks(blob), leaks(blob)
        assert override[:-4] not in blob
        assert key not in blob and key[8:] not in blob
    stored = stored if isinstance(stored, dict) else json.loads(stored)
    from control_plane.secrets import SecretBox

    assert SecretBox(None).decrypt(stored["openai"]) == override  # ciphertext at rest, not plaintext

    # API keys: only a hash is stored, and no column anywhere holds the key or the override.
    dump = db_dump(pg_engine)
    assert key not in dump and key[8:] not in dump
    assert override not in dump and MARK not in dump
    with pg_engine.connect() as conn:
        hashes = [r[0] for r in conn.execute(text("SELECT key_hash FROM api_keys WHERE account_id = :a"),
                                             {"a": account["account_id"]})]
    assert hashes and all(h and h != key and key not in h for h in hashes)
