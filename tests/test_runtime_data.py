"""Runtime API: tenant data CRUD, paging and filters, tenant isolation, plan limits."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest
from helpers import new_tenant, ok
from sqlalchemy import text


@pytest.fixture(scope="module")
def world(client, tenant_a):
    """One object of every kind in tenant A, linked together."""
    h = tenant_a.headers
    site = ok(client.post("/v1/sites", json={"name": "A site", "domain": "a.example"}, headers=h), 201)
    industry = client.get("/v1/catalog/industries").json()["items"][0]
    sector = ok(client.post(f"/v1/sites/{site['id']}/sectors",
                            json={"name": "Sector", "industry_sector": industry["sectors"][0]["name"]}, headers=h), 201)
    cluster = ok(client.post("/v1/clusters", json={"site_id": site["id"], "sector_id": sector["id"], "name": "C"},
                             headers=h), 201)
    keyword = ok(client.post("/v1/keywords", json={"site_id": site["id"], "cluster_id": cluster["id"],
                                                   "keyword": "heart health", "search_volume": 100}, headers=h), 201)
    idea = ok(client.post("/v1/ideas", json={"site_id": site["id"], "cluster_id": cluster["id"],
                                             "primary_keyword_id": keyword["id"], "title": "Idea"}, headers=h), 201)
    task = ok(client.post("/v1/tasks", json={"site_id": site["id"], "idea_id": idea["id"], "title": "Task"},
                          headers=h), 201)
    content = ok(client.post("/v1/content", json={"site_id": site["id"], "task_id": task["id"], "title": "T",
                                                  "body": "one two three"}, headers=h), 201)
    users = ok(client.get("/v1/users", headers=h))["items"]
    return {"site": site, "sector": sector, "cluster": cluster, "keyword": keyword, "idea": idea, "task": task,
            "content": content, "owner": users[0]}


def test_account_shape(client, tenant_a, world):
    account = ok(client.get("/v1/account", headers=tenant_a.headers))
    assert account["id"] == tenant_a.account_id
    assert account["plan"]["name"] == "pro"
    assert account["limits"]["max_sites"] == 10 and account["limits"]["max_users"] == 5
    assert account["usage"]["sites"] >= 1 and account["usage"]["users"] >= 1 and account["usage"]["keywords"] >= 1
    renamed = ok(client.patch("/v1/account", json={"name": "Tenant A renamed"}, headers=tenant_a.headers))
    assert renamed["name"] == "Tenant A renamed"


def test_created_objects_are_linked(world):
    assert world["sector"]["industry_sector"].count("/") == 1
    assert world["keyword"]["cluster_id"] == world["cluster"]["id"]
    assert world["content"]["word_count"] == 3
    assert world["content"]["status"] == "draft" and world["task"]["status"] == "pending"
    assert world["owner"]["is_owner"] and world["owner"]["role"] == "owner"


@pytest.mark.parametrize("path,create,update", [
    ("keywords", {"keyword": "kw"}, {"status": "clustered", "difficulty": 40}),
    ("clusters", {"name": "cl"}, {"status": "archived"}),
    ("ideas", {"title": "idea"}, {"status": "approved"}),
    ("tasks", {"title": "task", "priority": "high"}, {"status": "in_progress"}),
    ("content", {"title": "c"}, {"status": "published", "body": "a b"}),
])
def test_crud_cycle(client, tenant_a, world, path, create, update):
    h = tenant_a.headers
    created = ok(client.post(f"/v1/{path}", json={"site_id": world["site"]["id"], **create}, headers=h), 201)
    assert ok(client.get(f"/v1/{path}/{created['id']}", headers=h)) == created
    updated = ok(client.patch(f"/v1/{path}/{created['id']}", json=update, headers=h))
    for key, value in update.items():
        assert updated[key] == value
    if path == "content":
        assert updated["published_at"] is not None and updated["word_count"] == 2
    # null on a required field is refused; an unknown field too
    first = next(iter(create))
    assert client.patch(f"/v1/{path}/{created['id']}", json={first: None}, headers=h).status_code == 422
    assert client.patch(f"/v1/{path}/{created['id']}", json={"bogus": 1}, headers=h).status_code == 422
    assert client.patch(f"/v1/{path}/{created['id']}", json={"status": "bogus"}, headers=h).status_code == 422
    listed = ok(client.get(f"/v1/{path}", params={"status": update["status"]}, headers=h))
    assert created["id"] in {i["id"] for i in listed["items"]}
    assert all(i["status"] == update["status"] for i in listed["items"])
    assert ok(client.delete(f"/v1/{path}/{created['id']}", headers=h), 204) is None
    assert client.get(f"/v1/{path}/{created['id']}", headers=h).status_code == 404
    assert client.delete(f"/v1/{path}/{created['id']}", headers=h).status_code == 404


@pytest.mark.parametrize("path,status_value", [
    ("keywords", "pending"), ("ideas", "used"), ("tasks", "cancelled"), ("content", "review"),
])
def test_statuses_are_validated(client, tenant_a, world, path, status_value):
    h = tenant_a.headers
    body = {"site_id": world["site"]["id"], "keyword" if path == "keywords" else "title": "x"}
    assert client.post(f"/v1/{path}", json={**body, "status": "nonsense"}, headers=h).status_code == 422
    assert ok(client.post(f"/v1/{path}", json={**body, "status": status_value}, headers=h), 201)["status"] == status_value


def test_paging_and_filters(client, tenant_a, world):
    h = tenant_a.headers
    other_site = ok(client.post("/v1/sites", json={"name": "paging"}, headers=h), 201)
    made = [ok(client.post("/v1/keywords", json={"site_id": other_site["id"], "keyword": f"k{i}"}, headers=h), 201)["id"]
            for i in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"site_id": other_site["id"], "limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = ok(client.get("/v1/keywords", params=params, headers=h))
        seen += [i["id"] for i in body["items"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == made and pages == 3
    assert ok(client.get("/v1/keywords", params={"site_id": str(uuid.uuid4())}, headers=h)) == {"items": [], "next": None}
    sites = ok(client.get("/v1/sites", params={"status": "active"}, headers=h))["items"]
    assert other_site["id"] in {s["id"] for s in sites}


def test_sites_and_sectors(client, tenant_a, world):
    h = tenant_a.headers
    site_id = world["site"]["id"]
    updated = ok(client.patch(f"/v1/sites/{site_id}", json={"domain": "b.example"}, headers=h))
    assert updated["domain"] == "b.example"
    industry = client.get("/v1/catalog/industries").json()["items"][0]["name"]
    assert ok(client.patch(f"/v1/sites/{site_id}", json={"industry": industry}, headers=h))["industry"] == industry
    assert client.patch(f"/v1/sites/{site_id}", json={"industry": "no-such"}, headers=h).status_code == 404
    sectors = ok(client.get(f"/v1/sites/{site_id}/sectors", headers=h))["items"]
    assert world["sector"]["id"] in {s["id"] for s in sectors}
    sector_id = world["sector"]["id"]
    assert ok(client.get(f"/v1/sites/{site_id}/sectors/{sector_id}", headers=h))["name"] == "Sector"
    assert ok(client.patch(f"/v1/sites/{site_id}/sectors/{sector_id}", json={"name": "S2"}, headers=h))["name"] == "S2"
    extra = ok(client.post(f"/v1/sites/{site_id}/sectors", json={"name": "gone"}, headers=h), 201)
    assert client.delete(f"/v1/sites/{site_id}/sectors/{extra['id']}", headers=h).status_code == 204
    assert client.get(f"/v1/sites/{site_id}/sectors/{extra['id']}", headers=h).status_code == 404
    assert client.post(f"/v1/sites/{site_id}/sectors", json={"name": "x", "industry_sector": "a/b"},
                       headers=h).status_code == 404


def test_users_crud(client, tenant_a):
    h = tenant_a.headers
    email = f"u-{uuid.uuid4().hex[:6]}@example.com"
    user = ok(client.post("/v1/users", json={"email": email, "role": "editor"}, headers=h), 201)
    assert user["role"] == "editor" and not user["is_owner"]
    assert client.post("/v1/users", json={"email": email}, headers=h).status_code == 409
    assert client.post("/v1/users", json={"email": "x@y.z", "role": "nope"}, headers=h).status_code == 404
    assert ok(client.patch(f"/v1/users/{user['id']}", json={"first_name": "Ann"}, headers=h))["first_name"] == "Ann"
    assert client.delete(f"/v1/users/{user['id']}", headers=h).status_code == 204
    owner = ok(client.get("/v1/users", headers=h))["items"][0]
    r = client.delete(f"/v1/users/{owner['id']}", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"


# --- isolation --------------------------------------------------------------------------------

OBJECT_ROUTES = [
    ("sites", "site"), ("clusters", "cluster"), ("keywords", "keyword"), ("ideas", "idea"), ("tasks", "task"),
    ("content", "content"), ("users", "owner"),
]


def _snapshot(engine, account_id: str) -> dict[str, list]:
    tables = ["sites", "sectors", "clusters", "keywords", "content_ideas", "tasks", "content", "users"]
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT * FROM {t} WHERE account_id = :a ORDER BY id"),
                                {"a": account_id}).all() for t in tables}


def test_other_tenant_gets_404_everywhere_and_changes_nothing(client, rt_engine, tenant_a, tenant_b, world):
    before = _snapshot(rt_engine, tenant_a.account_id)
    hb = tenant_b.headers
    for path, key in OBJECT_ROUTES:
        object_id = world[key]["id"]
        for method, kwargs in [("GET", {}), ("PATCH", {"json": {}}), ("DELETE", {})]:
            r = client.request(method, f"/v1/{path}/{object_id}", headers=hb, **kwargs)
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["error"]["code"] == "not_found"
            assert world[key]["id"] not in r.text
    site_id, sector_id = world["site"]["id"], world["sector"]["id"]
    for method, url, kwargs in [
        ("GET", f"/v1/sites/{site_id}/sectors", {}),
        ("POST", f"/v1/sites/{site_id}/sectors", {"json": {"name": "evil"}}),
        ("GET", f"/v1/sites/{site_id}/sectors/{sector_id}", {}),
        ("PATCH", f"/v1/sites/{site_id}/sectors/{sector_id}", {"json": {"name": "evil"}}),
        ("DELETE", f"/v1/sites/{site_id}/sectors/{sector_id}", {}),
    ]:
        assert client.request(method, url, headers=hb, **kwargs).status_code == 404, (method, url)
    # B's lists do not show A's objects
    for path, key in OBJECT_ROUTES:
        listed = ok(client.get(f"/v1/{path}", headers=hb))
        assert world[key]["id"] not in {i["id"] for i in listed["items"]}
    assert _snapshot(rt_engine, tenant_a.account_id) == before


def test_cross_tenant_references_are_refused(client, tenant_a, tenant_b, world):
    hb = tenant_b.headers
    b_site = ok(client.post("/v1/sites", json={"name": "B site"}, headers=hb), 201)
    attempts = [
        ("keywords", {"site_id": world["site"]["id"], "keyword": "x"}),
        ("keywords", {"site_id": b_site["id"], "keyword": "x", "cluster_id": world["cluster"]["id"]}),
        ("keywords", {"site_id": b_site["id"], "keyword": "x", "sector_id": world["sector"]["id"]}),
        ("ideas", {"site_id": b_site["id"], "title": "x", "primary_keyword_id": world["keyword"]["id"]}),
        ("tasks", {"site_id": b_site["id"], "title": "x", "idea_id": world["idea"]["id"]}),
        ("tasks", {"site_id": b_site["id"], "title": "x", "assigned_to_id": world["owner"]["id"]}),
        ("content", {"site_id": b_site["id"], "title": "x", "task_id": world["task"]["id"]}),
        ("clusters", {"site_id": b_site["id"], "name": "x", "sector_id": world["sector"]["id"]}),
    ]
    for path, body in attempts:
        r = client.post(f"/v1/{path}", json=body, headers=hb)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, body, r.text)
    b_kw = ok(client.post("/v1/keywords", json={"site_id": b_site["id"], "keyword": "mine"}, headers=hb), 201)
    r = client.patch(f"/v1/keywords/{b_kw['id']}", json={"cluster_id": world["cluster"]["id"]}, headers=hb)
    assert r.status_code == 404
    assert ok(client.get(f"/v1/keywords/{b_kw['id']}", headers=hb))["cluster_id"] is None


# --- plan limits ------------------------------------------------------------------------------


def test_plan_limits(client, rt_engine):
    free = new_tenant(rt_engine, "free")  # max_sites 1, max_users 1 (the owner)
    h = free.headers
    ok(client.post("/v1/sites", json={"name": "only"}, headers=h), 201)
    r = client.post("/v1/sites", json={"name": "second"}, headers=h)
    assert r.status_code == 403 and r.json()["error"]["code"] == "plan_limit_exceeded"
    r = client.post("/v1/users", json={"email": f"x-{uuid.uuid4().hex[:6]}@example.com"}, headers=h)
    assert r.status_code == 403 and r.json()["error"]["code"] == "plan_limit_exceeded"
    assert ok(client.get("/v1/account", headers=h))["usage"]["sites"] == 1


def test_plan_limit_holds_under_concurrency(live_server, rt_engine):
    starter = new_tenant(rt_engine, "starter")  # max_sites 3
    results: list[int] = []
    lock = threading.Lock()

    def create(i: int) -> None:
        r = httpx.post(f"{live_server.url}/v1/sites", json={"name": f"s{i}"}, headers=starter.headers, timeout=30)
        with lock:
            results.append(r.status_code)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201] * 3 + [403] * 9
    with rt_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sites WHERE account_id = :a"),
                            {"a": starter.account_id}).scalar() == 3
