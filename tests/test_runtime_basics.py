"""Runtime API: health, readiness, auth, error envelope, access logs, catalog, OpenAPI."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from helpers import apply_repo_config, new_tenant
from sqlalchemy import text

from control_plane.db.engine import make_engine, upgrade
from runtime.accounts import create_api_key
from runtime.app import create_app


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body


# --- health -----------------------------------------------------------------------------------


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "schema": "ok", "config": "ok", "secrets": "ok"}}


def test_readyz_reports_each_reason(pg_url):
    engine = make_engine(pg_url)
    try:
        with TestClient(create_app(engine)) as c:
            body = assert_error(c.get("/readyz"), 503, "not_ready")
            assert "schema" in body["error"]["message"] and "db upgrade" in body["error"]["message"]
            upgrade(engine)
            body = assert_error(c.get("/readyz"), 503, "not_ready")
            assert "config" in body["error"]["message"] and body["checks"]["schema"] == "ok"
    finally:
        engine.dispose()
    unreachable = make_engine("postgresql://postgres@127.0.0.1:1/nothing", connect_args={"connect_timeout": 1})
    with TestClient(create_app(unreachable)) as c:
        body = assert_error(c.get("/readyz"), 503, "not_ready")
        assert body["checks"]["database"].startswith("unreachable")


# --- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Basic abc", "Bearer nonsense", "Bearer cpk_deadbeef_nope", "Bearer cpk__x",
])
def test_bad_credentials_answer_401(client, header):
    headers = {"Authorization": header} if header is not None else {}
    r = client.get("/v1/account", headers=headers)
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"


def test_revoked_and_expired_keys_are_refused(client, rt_engine, tenant_a):
    import uuid

    account_id = uuid.UUID(tenant_a.account_id)
    good = create_api_key(rt_engine, account_id, name="extra")
    assert client.get("/v1/account", headers={"Authorization": f"Bearer {good}"}).status_code == 200
    expired = create_api_key(rt_engine, account_id, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert_error(client.get("/v1/account", headers={"Authorization": f"Bearer {expired}"}), 401, "unauthorized")
    prefix = good.split("_")[1]
    with rt_engine.begin() as conn:
        conn.execute(text("UPDATE api_keys SET revoked_at = now() WHERE prefix = :p"), {"p": prefix})
    assert_error(client.get("/v1/account", headers={"Authorization": f"Bearer {good}"}), 401, "unauthorized")
    # a key whose last character differs is refused (hash comparison, same prefix)
    tampered = tenant_a.key[:-1] + ("A" if tenant_a.key[-1] != "A" else "B")
    assert_error(client.get("/v1/account", headers={"Authorization": f"Bearer {tampered}"}), 401, "unauthorized")


def test_key_is_stored_hashed_only(rt_engine, tenant_a):
    with rt_engine.connect() as conn:
        rows = conn.execute(text("SELECT prefix, key_hash FROM api_keys WHERE account_id = :a"),
                            {"a": tenant_a.account_id}).all()
    import hashlib

    assert any(r.key_hash == hashlib.sha256(tenant_a.key.encode()).hexdigest() for r in rows)
    assert all(tenant_a.key not in (r.prefix + r.key_hash) for r in rows)


def test_suspended_account_is_refused(client, rt_engine):
    t = new_tenant(rt_engine, "free")
    with rt_engine.begin() as conn:
        conn.execute(text("UPDATE accounts SET status = 'suspended' WHERE id = :a"), {"a": t.account_id})
    assert_error(client.get("/v1/account", headers=t.headers), 403, "account_suspended")


# --- error envelope ---------------------------------------------------------------------------


def test_error_envelope_everywhere(client, tenant_a):
    h = tenant_a.headers
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.delete("/healthz"), 405, "method_not_allowed")
    body = assert_error(client.post("/v1/sites", json={"domain": "x"}, headers=h), 422, "validation_error")
    assert body["error"]["details"][0]["loc"].endswith("name")
    assert_error(client.post("/v1/sites", content=b"{not json", headers={**h, "Content-Type": "application/json"}),
                 422, "validation_error")
    assert_error(client.get("/v1/sites/not-a-uuid", headers=h), 422, "validation_error")
    assert_error(client.get("/v1/keywords?limit=1000", headers=h), 422, "validation_error")
    assert_error(client.get("/v1/keywords?status=bogus", headers=h), 422, "validation_error")
    assert_error(client.get("/v1/keywords?cursor=!!!", headers=h), 400, "invalid_cursor")


def test_oversized_body_is_413(client, tenant_a):
    big = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    r = client.post("/v1/sites", content=big, headers={**tenant_a.headers, "Content-Type": "application/json"})
    assert_error(r, 413, "payload_too_large")

    def chunks():  # no Content-Length: the limit applies to what is actually streamed
        yield b'{"name": "'
        for _ in range(20):
            yield b"y" * 65536
        yield b'"}'

    r = client.post("/v1/sites", content=chunks(), headers={**tenant_a.headers, "Content-Type": "application/json"})
    assert_error(r, 413, "payload_too_large")


def test_internal_errors_expose_no_details(rt_engine):
    app = create_app(rt_engine)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals /etc/passwd")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
    assert_error(r, 500, "internal_error")
    assert "secret" not in r.text and "Traceback" not in r.text


def test_access_log_is_one_json_line_without_the_key(client, tenant_a, caplog):
    with caplog.at_level(logging.INFO, logger="runtime.access"):
        client.get("/v1/account", headers=tenant_a.headers)
        client.get("/healthz")
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "runtime.access"]
    assert len(records) == 2
    first, second = records
    assert first["method"] == "GET" and first["path"] == "/v1/account" and first["status"] == 200
    assert first["account_id"] == tenant_a.account_id and first["duration_ms"] >= 0
    assert second["account_id"] is None
    assert tenant_a.key not in caplog.text


# --- catalog ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["plans", "credit-packages", "credit-costs", "industries", "channels"])
def test_catalog_items_and_etag(client, kind):
    r = client.get(f"/v1/catalog/{kind}")
    assert r.status_code == 200
    items = r.json()["items"]
    assert items and all(isinstance(i["name"], str) and isinstance(i["display_name"], str) for i in items)
    etag = r.headers["etag"]
    again = client.get(f"/v1/catalog/{kind}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and again.content == b""
    assert client.get(f"/v1/catalog/{kind}", headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.get(f"/v1/catalog/{kind}", headers={"If-None-Match": f'"x", W/{etag}'}).status_code == 304


def test_catalog_content(client):
    plans = {p["name"]: p for p in client.get("/v1/catalog/plans").json()["items"]}
    assert {"free", "starter", "pro", "enterprise"} <= set(plans)
    assert "internal-staff" not in plans  # internal plans are not public
    assert plans["enterprise"]["allow_own_ai_keys"] is True and plans["pro"]["allow_own_ai_keys"] is False
    from control_plane.kinds.catalog import METERED_OPERATIONS

    costs = {c["name"] for c in client.get("/v1/catalog/credit-costs").json()["items"]}
    assert costs == set(METERED_OPERATIONS)
    industries = client.get("/v1/catalog/industries").json()["items"]
    sector = industries[0]["sectors"][0]
    assert sector["name"] == f"{industries[0]['name']}/{sector['slug']}"


def test_catalog_hides_inactive_rows_and_etag_follows_applies(client, rt_engine):
    etag = client.get("/v1/catalog/channels").headers["etag"]
    with rt_engine.begin() as conn:
        slug = conn.execute(text("SELECT slug FROM publishing_channels ORDER BY slug LIMIT 1")).scalar()
        conn.execute(text("UPDATE publishing_channels SET is_active = false WHERE slug = :s"), {"s": slug})
    try:
        names = {c["name"] for c in client.get("/v1/catalog/channels").json()["items"]}
        assert slug not in names
        # A real apply: it restores the channel (the edit above is drift), and the ETag follows it.
        apply_repo_config(rt_engine)
        fresh = client.get("/v1/catalog/channels", headers={"If-None-Match": etag})
        assert fresh.status_code == 200 and fresh.headers["etag"] != etag
        assert slug in {c["name"] for c in fresh.json()["items"]}
        assert client.get("/v1/catalog/channels", headers={"If-None-Match": fresh.headers["etag"]}).status_code == 304
    finally:
        with rt_engine.begin() as conn:
            conn.execute(text("UPDATE publishing_channels SET is_active = true WHERE slug = :s"), {"s": slug})


# --- OpenAPI ----------------------------------------------------------------------------------


def test_openapi_declares_error_responses_for_every_route(client):
    spec = client.get("/openapi.json").json()
    assert "ErrorEnvelope" in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            codes = set(op["responses"])
            assert {"422", "500"} <= codes, (method, path)
            if path.startswith("/v1/") and not path.startswith("/v1/catalog"):
                assert {"401", "404"} <= codes, (method, path)
                assert op.get("security"), (method, path)
    assert "402" in spec["paths"]["/v1/credits/consume"]["post"]["responses"]
    assert client.get("/docs").status_code == 200
