"""Maintenance mode and per-key rate limits, through real `cplane serve` processes with 2 workers."""

from __future__ import annotations

import shutil

import httpx
import pytest
from helpers import REPO, apply_repo_config, new_tenant
from serve_fixtures import Server, poll, redis_url_or_skip
from sqlalchemy import text

LIMIT = 5


@pytest.fixture(scope="module")
def redis_url():
    return redis_url_or_skip()


@pytest.fixture
def limited_plan(rt_engine):
    """Plan `starter` allows LIMIT requests per minute per key (in this module's database only; an
    apply heals it back to the config)."""
    with rt_engine.begin() as conn:
        conn.execute(text("UPDATE plans SET api_rate_limit_per_minute = :n WHERE slug = 'starter'"), {"n": LIMIT})
    return "starter"


@pytest.fixture(scope="module")
def servers(rt_url, redis_url):
    """Two `cplane serve --workers 2` processes sharing Redis."""
    env = {"CPLANE_RATE_LIMITS": "on", "CPLANE_REDIS_URL": redis_url}
    with Server(rt_url, workers=2, **env) as a, Server(rt_url, workers=2, **env) as b:
        yield a, b


def get(url: str, path: str, headers=None) -> httpx.Response:
    return httpx.get(f"{url}{path}", headers=headers, timeout=10)  # a fresh connection: any worker


def test_maintenance_by_apply_reaches_every_worker(servers, rt_engine, tmp_path):
    server = servers[0]
    t = new_tenant(rt_engine, "pro")
    assert get(server.url, "/v1/account", t.headers).status_code == 200
    config_tree = tmp_path / "config"
    shutil.copytree(REPO / "config", config_tree)
    settings = config_tree / "system_settings" / "general.yaml"
    original = settings.read_text()
    off = "name: maintenance_mode\nspec:\n  schema: {type: boolean}\n  value: false"
    assert off in original
    settings.write_text(original.replace(off, off.replace("value: false", "value: true")))
    apply_repo_config(rt_engine, config_tree)
    try:
        def all_in_maintenance():
            answers = [get(server.url, "/v1/account", t.headers) for _ in range(12)]
            return answers if all(r.status_code == 503 for r in answers) else None

        answers = poll(all_in_maintenance, timeout=5)
        assert answers, "tenant routes did not answer 503 on every worker within 5 s"
        body = answers[0].json()
        assert body["error"]["code"] == "maintenance" and body["error"]["message"]
        assert int(answers[0].headers["retry-after"]) > 0
        for path in ("/v1/catalog/plans", "/healthz", "/readyz", "/openapi.json"):
            assert get(server.url, path).status_code == 200, path
        # every tenant route, with or without a valid key
        assert get(server.url, "/v1/prompts", t.headers).status_code == 503
        assert get(server.url, "/v1/credits").status_code == 503
    finally:
        apply_repo_config(rt_engine)

    def all_back():
        return all(get(server.url, "/v1/account", t.headers).status_code == 200 for _ in range(12))

    assert poll(all_back, timeout=5), "tenant routes did not come back within 5 s"


def test_rate_limit_shared_by_workers_and_processes(servers, rt_engine, limited_plan):
    a, b = servers
    t = new_tenant(rt_engine, limited_plan)
    answers = [get((a, b)[i % 2].url, "/v1/account", t.headers) for i in range(LIMIT)]
    assert [r.status_code for r in answers] == [200] * LIMIT
    assert [int(r.headers["ratelimit-remaining"]) for r in answers] == list(range(LIMIT - 1, -1, -1))
    assert all(r.headers["ratelimit-limit"] == str(LIMIT) == r.headers["x-ratelimit-limit"] for r in answers)
    refused = get(b.url, "/v1/account", t.headers)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-remaining"] == "0" and refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) > 1_000_000_000
    assert get(a.url, "/v1/account", t.headers).status_code == 429
    # per key: another key of another account is not affected; the catalog is not limited
    other = new_tenant(rt_engine, limited_plan)
    assert get(a.url, "/v1/account", other.headers).status_code == 200
    for _ in range(LIMIT + 1):
        assert get(a.url, "/v1/catalog/plans").status_code == 200


def test_rate_limit_in_memory_without_redis(rt_engine, limited_plan):
    from fastapi.testclient import TestClient

    from runtime.app import create_app

    t = new_tenant(rt_engine, limited_plan)
    with TestClient(create_app(rt_engine, rate_limits=True, redis_url=""), raise_server_exceptions=False) as c:
        codes = [c.get("/v1/account", headers=t.headers).status_code for _ in range(LIMIT + 1)]
        assert codes == [200] * LIMIT + [429]
        last = c.get("/v1/account", headers=t.headers)
        assert last.json()["error"]["code"] == "rate_limited" and "retry-after" in last.headers


def test_setting_is_the_fallback_for_plans_without_a_limit(rt_engine):
    from fastapi.testclient import TestClient

    from runtime.app import create_app

    t = new_tenant(rt_engine, "free")  # no apiRateLimitPerMinute: api_rate_limit_per_minute applies
    with rt_engine.connect() as conn:
        setting = conn.execute(text("SELECT value FROM system_settings WHERE key = 'api_rate_limit_per_minute'"
                                    )).scalar()
        assert conn.execute(text("SELECT api_rate_limit_per_minute FROM plans WHERE slug = 'free'")).scalar() is None
    with TestClient(create_app(rt_engine, rate_limits=True, redis_url=""), raise_server_exceptions=False) as c:
        r = c.get("/v1/account", headers=t.headers)
        assert r.status_code == 200 and r.headers["ratelimit-limit"] == str(setting)

