"""HTTP conventions: HEAD, Allow, RFC 3339 `Z` timestamps on both backends, chosen operationIds,
offline /docs and /redoc, and GET/PUT /v1/settings/modules in one shape."""

from __future__ import annotations

import re

import pytest
from helpers import apply_repo_config, new_tenant, ok

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


def test_head_works_on_get_routes(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    for path, headers in (("/v1/account", t.headers), ("/v1/catalog/plans", None), ("/healthz", None),
                          ("/v1/prompts", t.headers), ("/openapi.json", None)):
        got, head = client.get(path, headers=headers), client.head(path, headers=headers)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"]
    assert client.head("/v1/catalog/plans").headers["etag"] == client.get("/v1/catalog/plans").headers["etag"]
    assert client.head("/v1/account").status_code == 401  # the GET's answer, without the body
    r = client.head("/v1/credits/consume", headers=t.headers)  # no GET there
    assert r.status_code == 405 and r.headers["allow"] == "POST"


@pytest.mark.parametrize("method, path, allow", [
    ("PUT", "/v1/account", "GET, HEAD, PATCH"),
    ("DELETE", "/healthz", "GET, HEAD"),
    ("GET", "/v1/credits/consume", "POST"),
    ("POST", "/v1/settings/modules", "GET, HEAD, PUT"),
    ("PUT", "/v1/settings/integrations", None),  # allowed: not a 405
])
def test_405_lists_the_real_allow(client, rt_engine, method, path, allow):
    t = new_tenant(rt_engine, "pro")
    r = client.request(method, path, headers=t.headers, json={})
    if allow is None:
        assert r.status_code != 405
        return
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["allow"] == allow
    assert allow in r.json()["error"]["message"]


def _timestamps(body, found=None):
    found = [] if found is None else found
    if isinstance(body, dict):
        for key, value in body.items():
            if isinstance(value, str) and key.endswith("_at"):
                found.append(value)
            else:
                _timestamps(value, found)
    elif isinstance(body, list):
        for value in body:
            _timestamps(value, found)
    return found


def _check_timestamps(c, t) -> int:
    site = ok(c.post("/v1/sites", json={"name": "S", "domain": "s.example"}, headers=t.headers), 201)
    c.post("/v1/credits/consume", headers=t.headers,
           json={"operation": "keyword_research", "quantity": 1, "idempotency_key": "ts"})
    bodies = [site, ok(c.get(f"/v1/sites/{site['id']}", headers=t.headers)), ok(c.get("/v1/account", headers=t.headers)),
              ok(c.get("/v1/credits/transactions", headers=t.headers)), ok(c.get("/v1/prompts", headers=t.headers)),
              ok(c.get("/v1/author-profiles", headers=t.headers)), ok(c.get("/v1/settings/integrations", headers=t.headers))]
    stamps = _timestamps(bodies)
    assert stamps and all(RFC3339_Z.match(s) for s in stamps), [s for s in stamps if not RFC3339_Z.match(s)]
    return len(stamps)


def test_timestamps_are_rfc3339_utc_z_on_postgresql(client, rt_engine):
    assert _check_timestamps(client, new_tenant(rt_engine, "pro")) >= 5


def test_timestamps_are_rfc3339_utc_z_on_sqlite(tmp_path):
    from fastapi.testclient import TestClient

    from control_plane.db.engine import make_engine, upgrade
    from runtime.app import create_app

    engine = make_engine(f"sqlite:///{tmp_path / 'ts.db'}")
    try:
        upgrade(engine)
        apply_repo_config(engine)
        t = new_tenant(engine, "pro")
        with TestClient(create_app(engine), raise_server_exceptions=False) as c:
            assert _check_timestamps(c, t) >= 5
    finally:
        engine.dispose()


def test_operation_ids_are_chosen_names(client):
    spec = ok(client.get("/openapi.json"))
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)), "operationIds are unique"
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z0-9]*)*", i) for i in ids), [i for i in ids if "_" in i]
    by_route = {(m.upper(), p): op["operationId"] for p, ops in spec["paths"].items() for m, op in ops.items()}
    assert by_route[("GET", "/v1/catalog/plans")] == "listPlans"
    assert by_route[("POST", "/v1/credits/consume")] == "consumeCredits"
    assert by_route[("POST", "/v1/sites")] == "createSite"
    assert by_route[("GET", "/v1/author-profiles/{name}")] == "getAuthorProfile"
    assert by_route[("POST", "/v1/admin/payments/{payment_id}/approve")] == "adminApprovePayment"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_work_offline(client, page):
    r = client.get(page)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", r.text)
    refs += re.findall(r"""url\s*:\s*["']([^"']+)["']""", r.text)
    assert not re.search(r"https?://", " ".join(refs)), refs
    assert not re.search(r"cdn\.jsdelivr|unpkg\.com|fonts\.googleapis", r.text)
    scripts = [u for u in refs if u.endswith(".js")]
    assert scripts, refs
    for ref in refs:
        asset = client.get(ref)
        assert asset.status_code == 200 and asset.content, ref
    assert "openapi.json" in r.text and client.get("/openapi.json").status_code == 200


def test_modules_get_body_round_trips_through_put(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    before = ok(client.get("/v1/settings/modules", headers=t.headers))
    after = ok(client.put("/v1/settings/modules", json=before, headers=t.headers))
    assert {k: v for k, v in after.items() if k != "source"} == {k: v for k, v in before.items() if k != "source"}
    assert ok(client.get("/v1/settings/modules", headers=t.headers))["modules"] == before["modules"]
    changed = ok(client.put("/v1/settings/modules", headers=t.headers,
                            json={**after, "modules": {**after["modules"], "linker": not after["modules"]["linker"]}}))
    assert changed["modules"]["linker"] is not after["modules"]["linker"]
    assert client.put("/v1/settings/modules", json={"modules": {"teleport": True}}, headers=t.headers).status_code == 422
