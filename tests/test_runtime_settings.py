"""Runtime API: settings resolved as global default + account override."""

from __future__ import annotations

import json
import shutil

from helpers import REPO, apply_repo_config, new_tenant, ok
from sqlalchemy import text

from control_plane.kinds.catalog import MODULES, PROMPT_TYPES

# --- prompts ----------------------------------------------------------------------------------


def own_text(engine, prompt_type: str, label: str) -> str:
    """`label` with every placeholder the type's global prompt declares (a custom prompt must keep them)."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT variables FROM global_ai_prompts WHERE prompt_type = :t"),
                            {"t": prompt_type}).scalars().all()
    variables = sorted({v for r in rows for v in (json.loads(r) if isinstance(r, str) else r)})  # every variant's
    return " ".join([label, *("{" + v + "}" for v in variables)])


def test_every_prompt_type_resolves_to_global(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    items = ok(client.get("/v1/prompts", headers=t.headers))["items"]
    assert {p["type"] for p in items} >= set(PROMPT_TYPES)
    for p in items:
        assert p["source"] == "global" and p["global_version"] >= 1
        assert p["global_changed_since_customized"] is False and p["text"]
    one = ok(client.get("/v1/prompts/clustering", headers=t.headers))
    assert one == next(p for p in items if p["type"] == "clustering")
    assert client.get("/v1/prompts/no_such_type", headers=t.headers).status_code == 404


def test_customize_and_reset_prompt(client, rt_engine, tenant_b):
    t = new_tenant(rt_engine, "pro")
    global_text = ok(client.get("/v1/prompts/clustering", headers=t.headers))["text"]
    mine = own_text(rt_engine, "clustering", "My own clustering prompt")
    custom = ok(client.put("/v1/prompts/clustering", json={"text": mine}, headers=t.headers))
    assert custom["source"] == "custom" and custom["text"] == mine
    assert custom["based_on_global_version"] == custom["global_version"]
    assert custom["global_changed_since_customized"] is False
    listed = {p["type"]: p for p in ok(client.get("/v1/prompts", headers=t.headers))["items"]}
    assert listed["clustering"]["source"] == "custom" and listed["rewrite"]["source"] == "global"
    # another tenant still sees the global prompt
    assert ok(client.get("/v1/prompts/clustering", headers=tenant_b.headers))["source"] == "global"
    again = ok(client.put("/v1/prompts/clustering", json={"text": own_text(rt_engine, "clustering", "v2")},
                          headers=t.headers))
    assert again["text"] == own_text(rt_engine, "clustering", "v2")
    with rt_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ai_prompts WHERE account_id = :a"),
                            {"a": t.account_id}).scalar() == 1
    reset = ok(client.post("/v1/prompts/clustering/reset", headers=t.headers))
    assert reset["source"] == "global" and reset["text"] == global_text
    assert client.put("/v1/prompts/clustering", json={"text": ""}, headers=t.headers).status_code == 422
    assert client.put("/v1/prompts/not_a_type", json={"text": "x"}, headers=t.headers).status_code == 404


def test_global_change_after_customization_is_flagged(client, rt_engine, tmp_path):
    t = new_tenant(rt_engine, "pro")
    ok(client.put("/v1/prompts/rewrite", json={"text": own_text(rt_engine, "rewrite", "custom rewrite")},
                  headers=t.headers))
    before = ok(client.get("/v1/prompts/rewrite", headers=t.headers))
    # a new global version arrives through the controller
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    path = config / "prompts" / "rewrite.yaml"
    source = path.read_text()
    assert "  text: |\n" in source
    path.write_text(source.replace("  text: |\n", "  text: |\n    (Revised.)\n", 1))
    apply_repo_config(rt_engine, config)
    try:
        after = ok(client.get("/v1/prompts/rewrite", headers=t.headers))
        assert after["global_version"] == before["global_version"] + 1
        assert after["source"] == "custom" and after["text"] == own_text(rt_engine, "rewrite", "custom rewrite")
        assert after["global_changed_since_customized"] is True
        assert after["based_on_global_version"] == before["global_version"]
        # an account without a customization sees the new global text at once
        fresh = new_tenant(rt_engine, "pro")
        assert ok(client.get("/v1/prompts/rewrite", headers=fresh.headers))["text"].startswith("(Revised.)")
        # re-customizing acknowledges the new version
        redone = ok(client.put("/v1/prompts/rewrite", json={"text": own_text(rt_engine, "rewrite", "custom again")},
                               headers=t.headers))
        assert redone["global_changed_since_customized"] is False
    finally:
        apply_repo_config(rt_engine)


def test_prompt_list_follows_config_applies_and_direct_edits(client, rt_engine, tmp_path):
    """GET /v1/prompts serves global prompts (and their rendered JSON) from a cache keyed on the
    prompts' change counter: an apply and an edit made by SQL outside cplane both show on the next
    request."""
    plain, custom = new_tenant(rt_engine, "pro"), new_tenant(rt_engine, "pro")
    ok(client.put("/v1/prompts/rewrite", json={"text": own_text(rt_engine, "rewrite", "custom rewrite")},
                  headers=custom.headers))

    def listed(t):
        return {p["type"]: p for p in ok(client.get("/v1/prompts", headers=t.headers))["items"]}

    before = listed(plain)["rewrite"]
    assert listed(plain) == listed(plain)  # served from the cache: the same
    with rt_engine.connect() as conn:  # the list authenticates like every route: last use recorded
        assert conn.execute(text("SELECT last_used_at FROM api_keys WHERE account_id = :a"),
                            {"a": plain.account_id}).scalar() is not None
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    path = config / "prompts" / "rewrite.yaml"
    path.write_text(path.read_text().replace("  text: |\n", "  text: |\n    (Revised.)\n", 1))
    apply_repo_config(rt_engine, config)
    try:
        after = listed(plain)["rewrite"]
        assert after["text"].startswith("(Revised.)") and after["global_version"] == before["global_version"] + 1
        mine = listed(custom)["rewrite"]
        assert mine["source"] == "custom" and mine["text"] == own_text(rt_engine, "rewrite", "custom rewrite")
        assert mine["global_changed_since_customized"] is True and mine["global_version"] == after["global_version"]
    finally:
        apply_repo_config(rt_engine)
    assert listed(plain)["rewrite"]["text"] == before["text"]

    with rt_engine.begin() as conn:  # outside cplane: no new apply run
        conn.execute(text("UPDATE global_ai_prompts SET text = 'edited in place' WHERE prompt_type = 'rewrite'"))
    try:
        assert listed(plain)["rewrite"]["text"] == "edited in place"
        one = ok(client.get("/v1/prompts/rewrite", headers=plain.headers))
        assert one["text"] == "edited in place"
    finally:
        apply_repo_config(rt_engine)
    assert listed(plain)["rewrite"]["text"] == before["text"]


# --- AI integration settings ------------------------------------------------------------------


def test_integrations_global_for_plans_without_own_keys(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    body = ok(client.get("/v1/settings/integrations", headers=t.headers))
    assert body["source"] == "global" and body["own_keys_allowed"] is False
    r = client.put("/v1/settings/integrations", json={"text_model": "x"}, headers=t.headers)
    assert r.status_code == 403 and r.json()["error"]["code"] == "plan_feature_unavailable"
    assert client.delete("/v1/settings/integrations", headers=t.headers).status_code == 404


def test_integrations_override_on_enterprise(client, rt_engine):
    t = new_tenant(rt_engine, "enterprise")
    glob = ok(client.get("/v1/settings/integrations", headers=t.headers))
    assert glob["source"] == "global" and glob["own_keys_allowed"] is True
    secret = "sk-test-1234567890abcdefWXYZ"
    body = ok(client.put("/v1/settings/integrations",
                         json={"text_model": "gpt-own", "temperature": 0.3, "api_keys": {"openai": secret}},
                         headers=t.headers))
    assert body["source"] == "override" and body["text_model"] == "gpt-own" and body["temperature"] == 0.3
    assert body["image_model"] == glob["image_model"]  # omitted fields start from the global defaults
    assert body["api_keys"]["openai"].endswith("WXYZ") and secret not in str(body)
    got = client.get("/v1/settings/integrations", headers=t.headers)
    assert got.json()["source"] == "override" and secret not in got.text
    with rt_engine.connect() as conn:
        stored = conn.execute(text("SELECT api_keys_encrypted FROM ai_integration_settings WHERE account_id = :a"),
                              {"a": t.account_id}).scalar()
    assert secret not in str(stored)
    # removing a key
    body = ok(client.put("/v1/settings/integrations", json={"api_keys": {"openai": None}}, headers=t.headers))
    assert "openai" not in body["api_keys"] and body["text_model"] == "gpt-own"
    # a plan downgrade hides the override: the global defaults apply again
    with rt_engine.begin() as conn:
        conn.execute(text("UPDATE accounts SET plan_id = (SELECT id FROM plans WHERE slug = 'pro') WHERE id = :a"),
                     {"a": t.account_id})
    assert ok(client.get("/v1/settings/integrations", headers=t.headers))["source"] == "global"
    with rt_engine.begin() as conn:
        conn.execute(text("UPDATE accounts SET plan_id = (SELECT id FROM plans WHERE slug = 'enterprise') "
                          "WHERE id = :a"), {"a": t.account_id})
    assert ok(client.get("/v1/settings/integrations", headers=t.headers))["source"] == "override"
    assert client.delete("/v1/settings/integrations", headers=t.headers).status_code == 204
    assert ok(client.get("/v1/settings/integrations", headers=t.headers))["source"] == "global"


def test_global_keys_are_masked(client, rt_engine):
    from control_plane.secrets import SecretBox

    t = new_tenant(rt_engine, "pro")
    secret = "sk-global-abcdefghijklmnop9876"
    with rt_engine.begin() as conn:
        conn.execute(text("UPDATE ai_integration_settings SET api_keys_encrypted = :k "
                          "WHERE account_id IS NULL AND name = 'default'"),
                     {"k": json.dumps({"openai": SecretBox().encrypt(secret)})})
    try:
        r = client.get("/v1/settings/integrations", headers=t.headers)
        assert r.json()["api_keys"]["openai"] == "********9876" and secret not in r.text
    finally:
        with rt_engine.begin() as conn:
            conn.execute(text("UPDATE ai_integration_settings SET api_keys_encrypted = '{}' "
                              "WHERE account_id IS NULL AND name = 'default'"))


# --- author profiles and strategies -----------------------------------------------------------


def _library_cycle(client, tenant, path: str, edit: dict, required: dict | None = None):
    """`required`: fields the kind's spec needs on an object made from scratch (an author profile's tone)."""
    h = tenant.headers
    items = ok(client.get(f"/v1/{path}", headers=h))["items"]
    assert items and all(i["source"] == "global" for i in items)
    name = items[0]["name"]
    original = items[0]
    assert ok(client.get(f"/v1/{path}/{name}", headers=h)) == original
    # a global object cannot be edited or deleted by a tenant before cloning
    assert client.patch(f"/v1/{path}/{name}", json=edit, headers=h).status_code == 404
    assert client.delete(f"/v1/{path}/{name}", headers=h).status_code == 404
    clone = ok(client.post(f"/v1/{path}/{name}/clone", headers=h), 201)
    assert clone["source"] == "custom" and clone["cloned_from"] == name
    assert client.post(f"/v1/{path}/{name}/clone", headers=h).status_code == 409
    edited = ok(client.patch(f"/v1/{path}/{name}", json=edit, headers=h))
    for key, value in edit.items():
        assert edited[key] == value
    listed = ok(client.get(f"/v1/{path}", headers=h))["items"]
    assert [(i["source"], i["cloned_from"]) for i in listed if i["name"] == name] == [("custom", name)]
    assert len({i["name"] for i in listed}) == len(listed)  # each name once
    assert ok(client.get(f"/v1/{path}/{name}", headers=h))["source"] == "custom"
    reset = ok(client.post(f"/v1/{path}/{name}/reset", headers=h))
    for key in edit:
        assert reset[key] == original[key]
    assert reset["source"] == "custom"
    assert client.delete(f"/v1/{path}/{name}", headers=h).status_code == 204
    assert ok(client.get(f"/v1/{path}/{name}", headers=h))["source"] == "global"
    # the account's own, from scratch
    own = ok(client.post(f"/v1/{path}", json={"name": "my-own", "display_name": "Mine", **(required or {})},
                         headers=h), 201)
    assert own["source"] == "custom" and own["cloned_from"] is None
    r = client.post(f"/v1/{path}/my-own/reset", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_a_clone"
    assert client.post(f"/v1/{path}", json={"name": name, "display_name": "x"}, headers=h).status_code == 409
    assert client.post(f"/v1/{path}/no-such/clone", headers=h).status_code == 404
    return name


def test_author_profiles_clone_edit_reset(client, rt_engine, tenant_b):
    t = new_tenant(rt_engine, "pro")
    name = _library_cycle(client, t, "author-profiles", {"tone": "Grumpy", "display_name": "Grumpy writer"},
                          required={"tone": "Plain"})
    # B never sees A's copies
    b_items = ok(client.get("/v1/author-profiles", headers=tenant_b.headers))["items"]
    assert all(i["source"] == "global" for i in b_items)
    assert client.patch("/v1/author-profiles/my-own", json={"tone": "x"}, headers=tenant_b.headers).status_code == 404
    assert name


def test_strategies_clone_edit_reset(client, rt_engine, tenant_b):
    t = new_tenant(rt_engine, "pro")
    _library_cycle(client, t, "strategies", {"description": "Changed", "prompt_types": ["rewrite"]})
    assert client.delete("/v1/strategies/my-own", headers=tenant_b.headers).status_code == 404
    assert client.delete("/v1/strategies/my-own", headers=t.headers).status_code == 204


# --- modules ----------------------------------------------------------------------------------


def test_modules_default_and_update(client, rt_engine, tenant_b):
    t = new_tenant(rt_engine, "free")
    with rt_engine.connect() as conn:
        defaults = conn.execute(text("SELECT value FROM system_settings WHERE key = 'default_modules'")).scalar()
    body = ok(client.get("/v1/settings/modules", headers=t.headers))
    assert set(body["modules"]) == set(MODULES)
    if isinstance(defaults, dict):
        assert body["modules"] == {m: bool(defaults.get(m, True)) for m in MODULES}
    assert all(body["effective"][m] == (body["modules"][m] and m in body["plan_modules"]) for m in MODULES)
    updated = ok(client.put("/v1/settings/modules", json={"planner": False}, headers=t.headers))
    assert updated["modules"]["planner"] is False and updated["source"] == "account"
    assert {k: v for k, v in updated["modules"].items() if k != "planner"} == \
        {k: v for k, v in body["modules"].items() if k != "planner"}
    assert client.put("/v1/settings/modules", json={"teleport": True}, headers=t.headers).status_code == 422
    assert ok(client.get("/v1/settings/modules", headers=tenant_b.headers))["modules"]["planner"] is True


def test_modules_without_a_row_fall_back_to_system_setting(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    with rt_engine.begin() as conn:
        conn.execute(text("DELETE FROM module_enable_settings WHERE account_id = :a"), {"a": t.account_id})
    body = ok(client.get("/v1/settings/modules", headers=t.headers))
    assert body["source"] == "default"
    with rt_engine.begin() as conn:
        conn.execute(text("UPDATE system_settings SET value = CAST(:v AS json) WHERE key = 'default_modules'"),
                     {"v": '["planner"]'})
    try:
        body = ok(client.get("/v1/settings/modules", headers=t.headers))
        assert body["modules"] == {m: m == "planner" for m in MODULES}
    finally:
        apply_repo_config(rt_engine)


def test_customizations_need_their_plan_feature(client, rt_engine):
    """free: no customizations at all; starter: its own author profiles, not prompts or strategies."""
    free, starter = new_tenant(rt_engine, "free"), new_tenant(rt_engine, "starter")
    refused = client.put("/v1/prompts/rewrite", json={"text": "Mine"}, headers=free.headers)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "plan_feature_unavailable"
    assert "custom_prompts" in refused.json()["error"]["message"]
    assert client.post("/v1/author-profiles/blog-conversational/clone", headers=free.headers).status_code == 403
    assert client.post("/v1/author-profiles/blog-conversational/clone", headers=starter.headers).status_code == 201
    refused = client.post("/v1/strategies/case-study/clone", headers=starter.headers)
    assert refused.status_code == 403 and "custom_strategies" in refused.json()["error"]["message"]
    # Nothing was written by the refusals: the effective prompt is still the global one.
    prompt = ok(client.get("/v1/prompts/rewrite", headers=free.headers))
    assert prompt["source"] == "global"
