"""Tenant overrides are validated like config: integration overrides, custom prompts, author profiles
and strategies; a refusal is 422 naming what is wrong."""

from __future__ import annotations

import pytest
from helpers import new_tenant, ok
from sqlalchemy import text


def refused(response, *names: str) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    for name in names:
        assert name in error["message"], (name, error["message"])
    return error["message"]


@pytest.fixture
def enterprise(rt_engine):
    return new_tenant(rt_engine, "enterprise")


def put(client, t, body):
    return client.put("/v1/settings/integrations", json=body, headers=t.headers)


def test_unknown_keys_providers_and_fields_are_refused(client, enterprise):
    refused(put(client, enterprise, {"api_keys": {"bogus": "x"}}), "api_keys.bogus", "unknown provider")
    refused(put(client, enterprise, {"text_provider": "nonexistent-provider"}), "text_provider",
            "nonexistent-provider")
    refused(put(client, enterprise, {"image_provider": "dalle-from-a-friend"}), "image_provider")
    refused(put(client, enterprise, {"providers": {"nonexistent": {"timeoutSeconds": 5}}}), "providers.nonexistent")
    refused(put(client, enterprise, {"providers": {"openai": {"proxy": "x"}}}), "providers.openai.proxy",
            "unknown field")
    refused(put(client, enterprise, {"providers": {"openai": {"timeoutSeconds": "soon"}}}),
            "providers.openai.timeoutSeconds")
    refused(put(client, enterprise, {"image_quality": "ultra"}), "image_quality")
    # nothing was stored
    assert ok(client.get("/v1/settings/integrations", headers=enterprise.headers))["source"] == "global"


def test_base_urls_must_be_https_on_the_providers_documented_hosts(client, rt_engine, enterprise):
    refused(put(client, enterprise, {"providers": {"openai": {"baseUrl": "http://evil.example/v1"}}}),
            "providers.openai.baseUrl", "http://evil.example/v1", "https")
    refused(put(client, enterprise, {"providers": {"openai": {"baseUrl": "https://evil.example/v1"}}}),
            "providers.openai.baseUrl", "evil.example", "allowCustomEndpoints")
    refused(put(client, enterprise, {"providers": {"openai": {"baseUrl": "https://api.openai.com.evil.example/v1"}}}),
            "providers.openai.baseUrl")
    ok(put(client, enterprise, {"providers": {"azure_openai": {"baseUrl": "https://acme.openai.azure.com/"}}}))
    # a plan with allowCustomEndpoints accepts any https host, never http
    with rt_engine.begin() as conn:
        conn.execute(text("UPDATE plans SET allow_custom_endpoints = true WHERE slug = 'enterprise'"))
    try:
        body = ok(put(client, enterprise, {"providers": {"openai": {"baseUrl": "https://llm.acme.example/v1"}}}))
        assert body["providers"]["openai"]["baseUrl"] == "https://llm.acme.example/v1"
        refused(put(client, enterprise, {"providers": {"openai": {"baseUrl": "http://llm.acme.example/v1"}}}),
                "https")
    finally:
        with rt_engine.begin() as conn:
            conn.execute(text("UPDATE plans SET allow_custom_endpoints = false WHERE slug = 'enterprise'"))


def test_providers_merge_per_provider_and_field(client, enterprise):
    base = ok(client.get("/v1/settings/integrations", headers=enterprise.headers))["providers"]
    assert {"openai", "runware"} <= set(base)
    body = ok(put(client, enterprise, {"providers": {"openai": {"timeoutSeconds": 30}}}))
    assert body["providers"]["openai"] == {**base["openai"], "timeoutSeconds": 30}
    assert body["providers"]["runware"] == base["runware"]
    body = ok(put(client, enterprise, {"providers": {"runware": {"steps": 10}}}))
    assert body["providers"]["openai"]["timeoutSeconds"] == 30 and body["providers"]["runware"]["steps"] == 10
    body = ok(put(client, enterprise, {"providers": {"runware": None, "openai": {"maxRetries": None}}}))
    assert "runware" not in body["providers"] and "maxRetries" not in body["providers"]["openai"]


def _variables(engine, prompt_type: str) -> list[str]:
    """The placeholders of the type's base prompt (the one a customization without selectors keeps)."""
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT variables FROM global_ai_prompts WHERE prompt_type = :t AND "
                                      "content_type IS NULL AND industry IS NULL"), {"t": prompt_type}).scalar())


def test_custom_prompt_keeps_its_types_placeholders(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    variables = _variables(rt_engine, "clustering")
    assert "keywords" in variables
    without = " ".join("{" + v + "}" for v in variables if v != "keywords")
    refused(client.put("/v1/prompts/clustering", json={"text": f"Cluster these: {without}"}, headers=t.headers),
            "{keywords}", "missing")
    refused(client.put("/v1/prompts/clustering", json={"text": "No placeholders at all"}, headers=t.headers),
            *("{" + v + "}" for v in variables))
    everything = " ".join("{" + v + "}" for v in variables)
    refused(client.put("/v1/prompts/clustering", json={"text": f"Mine: {everything} {{invented}}"}, headers=t.headers),
            "{invented}", "unknown")
    body = ok(client.put("/v1/prompts/clustering", json={"text": f"Mine: {everything} {{{{literal}}}}"},
                         headers=t.headers))
    assert body["source"] == "custom"


def test_author_profiles_and_strategies_go_through_the_spec_models(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    refused(client.post("/v1/author-profiles", json={"name": "no-tone", "display_name": "No tone"},
                        headers=t.headers), "tone")
    refused(client.post("/v1/author-profiles", json={"name": "odd", "display_name": "Odd", "tone": "Dry",
                                                     "guidelines": [{"not": "a string"}]}, headers=t.headers),
            "guidelines")
    ok(client.post("/v1/author-profiles/blog-conversational/clone", headers=t.headers), 201)
    refused(client.patch("/v1/author-profiles/blog-conversational", json={"tone": ""}, headers=t.headers), "tone")
    ok(client.post("/v1/strategies/case-study/clone", headers=t.headers), 201)
    refused(client.patch("/v1/strategies/case-study", json={"sections": [{"guidance": "no heading"}]},
                         headers=t.headers), "sections")
    refused(client.patch("/v1/strategies/case-study", json={"content_type_slug": "Not A Name"}, headers=t.headers),
            "content_type_slug")
    edited = ok(client.patch("/v1/strategies/case-study", json={"sections": [{"heading": "Results"}]},
                             headers=t.headers))
    assert edited["sections"] == [{"heading": "Results"}]
