"""Hostile API input and tenant isolation (issue 8.4), on PostgreSQL.

Tenant A owns one object of every kind; tenant B attacks:
- the isolation matrix is built from the OpenAPI document (so a new route with an id-like path
  parameter fails the test until it is covered): every method on every such route with A's object
  in the path and B's key answers 404 and changes nothing of A's;
- schemathesis runs every operation with B's key, with A's ids substituted into the paths half the
  time: never a 5xx, A's ids only ever answered 404 (or 422 for a body refused first), A unchanged;
- injection strings in every list filter and in every path parameter: 4xx, never 5xx, never A's data;
- bodies over 1 MiB on every route that takes a body: 413 (declared or streamed).

tests/test_runtime_data.py already proves 404 on the data routes and cross-tenant references, and
tests/test_runtime_schemathesis.py the schema conformance with one tenant: these extend them.
Examples per schemathesis operation: CPLANE_API_FUZZ_EXAMPLES (default 4).
"""

from __future__ import annotations

import os
import re
import uuid
from urllib.parse import quote

import pytest
from helpers import new_tenant, ok
from hypothesis import HealthCheck, given, settings
from sqlalchemy import text

from control_plane.db.models import metadata

EXAMPLES = int(os.environ.get("CPLANE_API_FUZZ_EXAMPLES", "4"))
ID_PARAM = re.compile(r"\{(\w*id|name)\}")
INJECTIONS = [
    "' OR 1=1 --", "1; DROP TABLE accounts; --", "../../etc/passwd", "..%2F..%2F", "%00", "\u202e\u0000x",
    "漢字🙂", "${jndi:ldap://x}", "{{7*7}}", "<script>alert(1)</script>", "' UNION SELECT api_keys.key_hash FROM api_keys --",
    "x" * 10_000, "-1", "99999999999999999999999", "null", "[]", "{}", "00000000-0000-0000-0000-000000000000",
]


@pytest.fixture(scope="module")
def world(client, tenant_a):
    """One object of every kind in tenant A, keyed by the collection path that serves it."""
    h = tenant_a.headers
    site = ok(client.post("/v1/sites", json={"name": "A site", "domain": "a.example"}, headers=h), 201)
    industry = client.get("/v1/catalog/industries").json()["items"][0]
    sector = ok(client.post(f"/v1/sites/{site['id']}/sectors",
                            json={"name": "Sector", "industry_sector": industry["sectors"][0]["name"]}, headers=h), 201)
    cluster = ok(client.post("/v1/clusters", json={"site_id": site["id"], "sector_id": sector["id"], "name": "C"},
                             headers=h), 201)
    keyword = ok(client.post("/v1/keywords", json={"site_id": site["id"], "cluster_id": cluster["id"],
                                                   "keyword": "a secret keyword"}, headers=h), 201)
    idea = ok(client.post("/v1/ideas", json={"site_id": site["id"], "cluster_id": cluster["id"],
                                             "primary_keyword_id": keyword["id"], "title": "Idea"}, headers=h), 201)
    task = ok(client.post("/v1/tasks", json={"site_id": site["id"], "idea_id": idea["id"], "title": "Task"}, headers=h), 201)
    content = ok(client.post("/v1/content", json={"site_id": site["id"], "task_id": task["id"], "title": "T",
                                                  "body": "a secret body"}, headers=h), 201)
    user = ok(client.post("/v1/users", json={"email": f"a-{uuid.uuid4().hex[:6]}@example.com"}, headers=h), 201)
    profile = ok(client.post("/v1/author-profiles", json={"name": "a-private-profile", "display_name": "A's"},
                             headers=h), 201)
    strategy = ok(client.post("/v1/strategies", json={"name": "a-private-strategy", "display_name": "A's"},
                              headers=h), 201)
    return {
        "/v1/sites": site["id"], "/v1/clusters": cluster["id"], "/v1/keywords": keyword["id"], "/v1/ideas": idea["id"],
        "/v1/tasks": task["id"], "/v1/content": content["id"], "/v1/users": user["id"],
        "/v1/author-profiles": profile["name"], "/v1/strategies": strategy["name"],
        "site_id": site["id"], "sector_id": sector["id"],
    }


def tenant_tables() -> list[str]:
    return sorted(t.name for t in metadata.sorted_tables if "account_id" in t.c)


def snapshot(engine, account_id: str) -> dict[str, list]:
    """Every row of every table that belongs to the account, and the account itself."""
    with engine.connect() as conn:
        out = {t: [tuple(r) for r in conn.execute(text(f'SELECT * FROM "{t}" WHERE account_id = :a ORDER BY 1'),
                                                 {"a": account_id})] for t in tenant_tables()}
        out["accounts"] = [tuple(r) for r in conn.execute(text("SELECT * FROM accounts WHERE id = :a"), {"a": account_id})]
    return out


def id_routes(app) -> list[tuple[str, str]]:
    """(method, path template) of every operation whose path holds an id-like parameter."""
    out = []
    for path, ops in app.openapi()["paths"].items():
        if ID_PARAM.search(path):
            out.extend((m.upper(), path) for m in ops if m in ("get", "post", "put", "patch", "delete"))
    return out


def fill(path: str, world: dict) -> str | None:
    """The path with A's object in it; None for parameters that name global things (prompt types)."""
    if "{site_id}" in path:
        return path.replace("{site_id}", world["site_id"]).replace("{sector_id}", world["sector_id"])
    collection = path.split("/{")[0]
    if collection not in world:
        return None
    return re.sub(r"\{(object_id|name)\}", str(world[collection]), path)


# Valid bodies (an empty patch is a valid PATCH): B must reach the lookup, and the lookup must say 404.
BODIES = {"PATCH": {}, "PUT": {"text": "B was here"}}


def test_isolation_matrix_from_the_openapi_document(rt_app, client, rt_engine, tenant_a, tenant_b, world):
    routes = id_routes(rt_app)
    assert len(routes) >= 35
    before = snapshot(rt_engine, tenant_a.account_id)
    tried, global_params = [], []
    for method, template in routes:
        path = fill(template, world)
        if path is None:
            global_params.append(f"{method} {template}")
            continue
        body = {"name": "B was here"} if (method, template.rsplit("/", 1)[-1]) == ("POST", "sectors") else BODIES.get(method)
        r = client.request(method, path, headers=tenant_b.headers, json=body)
        tried.append(f"{method} {template}")
        assert r.status_code == 404, (method, path, r.status_code, r.text[:300])
        assert r.json()["error"]["code"] == "not_found"
        assert "secret" not in r.text and world["site_id"] not in r.text
    # Only the prompt routes take a non-object parameter (the prompt type: global, not A's).
    assert all("/v1/prompts/" in g for g in global_params), global_params
    assert len(tried) >= 30, tried
    assert snapshot(rt_engine, tenant_a.account_id) == before
    # B's lists never show A's objects either.
    for collection in ("/v1/sites", "/v1/clusters", "/v1/keywords", "/v1/ideas", "/v1/tasks", "/v1/content", "/v1/users"):
        assert world[collection] not in client.get(collection, headers=tenant_b.headers).text
    for collection in ("/v1/author-profiles", "/v1/strategies"):
        assert world[collection] not in client.get(collection, headers=tenant_b.headers).text


def test_schemathesis_with_the_other_tenants_key(rt_app, rt_engine, tenant_a, tenant_b, world):
    import schemathesis
    from schemathesis.checks import not_a_server_error

    before = snapshot(rt_engine, tenant_a.account_id)
    schema = schemathesis.openapi.from_asgi("/openapi.json", rt_app)
    failures, statuses, foreign = [], {}, []
    operations, calls = 0, [0]

    def make_run(operation, filled):
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def run(case):
            calls[0] += 1
            use_a = filled is not None and bool(case.path_parameters) and calls[0] % 2 == 0
            if use_a:
                keys = re.findall(r"\{(\w+)\}", operation.path)
                for key, value in zip(keys, _params_of(operation.path, filled), strict=True):
                    case.path_parameters[key] = value
            response = case.call_and_validate(headers=tenant_b.headers, checks=[not_a_server_error])
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if use_a:
                foreign.append((operation.method, operation.path, response.status_code))
                assert response.status_code in (404, 422), (operation.path, response.status_code, response.text[:300])
                assert "secret" not in response.text

        return run

    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        filled = fill(operation.path, world)

        try:
            make_run(operation, filled)()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc).strip()[:1500]}")
    assert operations >= 60
    assert not failures, "\n\n".join(failures)
    assert not [s for s in statuses if s >= 500], statuses
    assert len(foreign) >= 10, foreign  # A's ids were really tried
    assert snapshot(rt_engine, tenant_a.account_id) == before
    print("schemathesis (tenant B) statuses:", sorted(statuses.items()), "A-id cases:", len(foreign))


def _params_of(template: str, filled: str) -> list[str]:
    pattern = "^" + re.sub(r"\\\{\w+\\\}", "([^/]+)", re.escape(template)) + "$"
    return list(re.match(pattern, filled).groups())


def list_routes(app) -> list[tuple[str, list[str]]]:
    out = []
    for path, ops in app.openapi()["paths"].items():
        get = ops.get("get")
        if get and "{" not in path:
            names = [p["name"] for p in get.get("parameters", []) if p["in"] == "query"]
            if names:
                out.append((path, names))
    return out


def test_injection_in_filters_and_paths_is_a_4xx(rt_app, client, tenant_a, tenant_b, world):
    lists = list_routes(rt_app)
    assert {"/v1/keywords", "/v1/sites", "/v1/content"} <= {p for p, _ in lists}
    seen: dict[int, int] = {}
    for path, names in lists:
        for name in names:
            for value in INJECTIONS if name in ("status", "site_id", "cursor") else INJECTIONS[:6]:
                r = client.get(path, params={name: value}, headers=tenant_b.headers)
                seen[r.status_code] = seen.get(r.status_code, 0) + 1
                assert r.status_code < 500, (path, name, value[:40], r.text[:300])
                if r.status_code == 200:  # a filter that matched nothing of B's, and nothing of A's
                    assert "secret" not in r.text and world["site_id"] not in r.text, (path, name, value[:40])
                else:
                    assert 400 <= r.status_code < 500 and r.json()["error"]["code"]
    # The same strings in every path parameter.
    for method, template in id_routes(rt_app):
        for value in INJECTIONS[:8]:
            path = re.sub(r"\{\w+\}", lambda _m, v=value: quote(v, safe=""), template)
            r = client.request(method, path, headers=tenant_b.headers, json=BODIES.get(method))
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
            assert r.status_code < 500, (method, path[:120], r.text[:300])
            assert "secret" not in r.text
    # And a filter pointing B at A's site: nothing.
    for path in ("/v1/keywords", "/v1/ideas", "/v1/tasks", "/v1/content", "/v1/clusters"):
        r = client.get(path, params={"site_id": world["site_id"]}, headers=tenant_b.headers)
        assert r.status_code in (200, 404, 422) and "secret" not in r.text
        if r.status_code == 200:
            assert r.json()["items"] == []
    assert not [s for s in seen if s >= 500]
    print("injection statuses:", sorted(seen.items()))


def test_oversized_bodies_are_refused_on_every_body_route(rt_app, client, tenant_a, world):
    big = b'{"name": "' + b"x" * (1024 * 1024 + 1) + b'"}'
    headers = {**tenant_a.headers, "Content-Type": "application/json"}
    routes = []
    for path, ops in rt_app.openapi()["paths"].items():
        for method, op in ops.items():
            if "requestBody" in op or method in ("post", "put", "patch"):
                routes.append((method.upper(), fill(path, world) or re.sub(r"\{\w+\}", "writer", path)))
    assert len(routes) >= 25
    for method, path in routes:
        r = client.request(method, path, content=big, headers=headers)
        assert r.status_code in (413, 422), (method, path, r.status_code, r.text[:200])
        assert r.json()["error"]["code"] in ("payload_too_large", "validation_error"), (method, path, r.text[:200])

    def chunks():  # streamed without a Content-Length
        yield b'{"name": "'
        for _ in range(17):
            yield b"y" * 65536
        yield b'"}'

    for method, path in routes[:5]:
        r = client.request(method, path, content=chunks(), headers=headers)
        assert r.status_code == 413, (method, path, r.status_code)
    # Nothing was created from any of them.
    r = client.get("/v1/sites", headers=tenant_a.headers)
    assert all(len(s["name"]) < 1000 for s in r.json()["items"])


def test_new_tenant_cannot_reach_a_by_guessing(client, rt_engine, world):
    """A third tenant on another plan, freshly created, with a random id walk over the matrix."""
    c = new_tenant(rt_engine, "free")
    for collection in ("/v1/sites", "/v1/keywords", "/v1/content"):
        for guess in (world[collection], str(uuid.uuid4()), world[collection].upper()):
            r = client.get(f"{collection}/{guess}", headers=c.headers)
            assert r.status_code in (404, 422), (collection, guess, r.status_code)
