"""Runtime API: prompt variants and their resolution (issue 21), against the repo's prompt library.

Precedence for GET /v1/prompts?content_type=…&industry=…: the account's customization for
(type, content type) > the account's for the type > global (type, content type, industry) >
global (type, content type) > global (type, industry) > global (type).
"""
# ruff: noqa: F811

from __future__ import annotations

import shutil

from conftest import REPO
from runtime_fixtures import (  # noqa: F401
    apply_repo_config,
    client,
    new_tenant,
    ok,
    rt_app,
    rt_engine,
    rt_url,
)
from sqlalchemy import text

TYPE = "content_generation"


def _one(client, t, query: str = "", prompt_type: str = TYPE):
    return ok(client.get(f"/v1/prompts/{prompt_type}{query}", headers=t.headers))


def _listed(client, t, query: str = "") -> dict[str, dict]:
    return {p["type"]: p for p in ok(client.get(f"/v1/prompts{query}", headers=t.headers))["items"]}


def _chosen(item) -> tuple:
    return item["prompt"], item["source"], item["matched"]


def test_step_6_no_selector_gives_the_base_prompt(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    item = _one(client, t)
    assert _chosen(item) == ("content_generation", "global", ["prompt_type"])
    assert (item["content_type"], item["industry"]) == (None, None)
    # a selector no prompt uses is not an error: it matches nothing
    assert _chosen(_one(client, t, "?content_type=podcast&industry=astrology")) == _chosen(item)


def test_step_5_industry_only_variant(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    item = _one(client, t, "?industry=healthcare")
    assert _chosen(item) == ("content_generation-healthcare", "global", ["prompt_type", "industry"])
    assert item["industry"] == "healthcare" and "health professional" in item["text"]


def test_step_4_content_type_variant_beats_industry_variant(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    assert _chosen(_one(client, t, "?content_type=landing-page")) == \
        ("content_generation-landing-page", "global", ["prompt_type", "content_type"])
    # healthcare has no landing-page variant: (type, content type) outranks (type, industry)
    item = _one(client, t, "?content_type=landing-page&industry=healthcare")
    assert _chosen(item) == ("content_generation-landing-page", "global", ["prompt_type", "content_type"])
    assert (item["content_type"], item["industry"]) == ("landing-page", None)


def test_step_3_content_type_and_industry_variant(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    item = _one(client, t, "?content_type=blog-post&industry=healthcare")
    assert _chosen(item) == ("content_generation-blog-post-healthcare", "global",
                             ["prompt_type", "content_type", "industry"])
    assert _chosen(_one(client, t, "?content_type=blog-post&industry=travel-hospitality")) == \
        ("content_generation-blog-post", "global", ["prompt_type", "content_type"])


def test_step_2_the_accounts_type_customization_beats_every_global_variant(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    custom = ok(client.put(f"/v1/prompts/{TYPE}", json={"text": "Our house style for everything."}, headers=t.headers))
    assert (custom["source"], custom["matched"], custom["content_type"]) == ("custom", ["prompt_type"], None)
    for query in ("", "?content_type=blog-post", "?content_type=blog-post&industry=healthcare", "?industry=legal"):
        item = _one(client, t, query)
        assert (item["source"], item["text"], item["matched"]) == ("custom", "Our house style for everything.",
                                                                    ["prompt_type"]), query
    # made from the base prompt: that is the variant its "global changed" follows
    assert custom["prompt"] == "content_generation"


def test_step_1_the_accounts_content_type_customization_wins(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    ok(client.put(f"/v1/prompts/{TYPE}", json={"text": "type-wide"}, headers=t.headers))
    mine = ok(client.put(f"/v1/prompts/{TYPE}?content_type=blog-post&industry=healthcare",
                         json={"text": "our health blog posts"}, headers=t.headers))
    assert (mine["source"], mine["matched"], mine["content_type"]) == ("custom", ["prompt_type", "content_type"],
                                                                        "blog-post")
    assert mine["prompt"] == "content_generation-blog-post-healthcare"  # the variant it was made from
    assert _one(client, t, "?content_type=blog-post")["text"] == "our health blog posts"
    assert _one(client, t, "?content_type=landing-page")["text"] == "type-wide"
    assert _one(client, t)["text"] == "type-wide"
    listed = _listed(client, t, "?content_type=blog-post")
    assert (listed[TYPE]["text"], listed[TYPE]["matched"]) == ("our health blog posts", ["prompt_type", "content_type"])


def test_customizing_a_variant_does_not_affect_the_other_variants(client, rt_engine):
    t, other = new_tenant(rt_engine, "pro"), new_tenant(rt_engine, "pro")
    globals_before = {q: _one(client, other, q) for q in ("", "?content_type=landing-page", "?content_type=blog-post")}
    custom = ok(client.put(f"/v1/prompts/{TYPE}?content_type=product-page", json={"text": "our product pages"},
                           headers=t.headers))
    assert custom["prompt"] == "content_generation-product-page"
    for query, expected in globals_before.items():
        assert _one(client, t, query) == expected, query
    assert _one(client, t, "?content_type=product-page")["text"] == "our product pages"
    # the list: only the product-page selection of this type is the customization
    assert _listed(client, t)[TYPE] == globals_before[""]
    listed = _listed(client, t, "?content_type=product-page")
    assert listed[TYPE]["source"] == "custom"
    assert all(p["source"] == "global" for k, p in listed.items() if k != TYPE)
    # another account sees nothing of it
    assert _one(client, other, "?content_type=product-page")["source"] == "global"
    with rt_engine.connect() as conn:
        rows = conn.execute(text("SELECT prompt_type, content_type FROM ai_prompts WHERE account_id = :a"),
                            {"a": t.account_id}).all()
    assert [tuple(r) for r in rows] == [(TYPE, "product-page")]
    # reset removes that customization only
    ok(client.put(f"/v1/prompts/{TYPE}", json={"text": "type-wide"}, headers=t.headers))
    reset = ok(client.post(f"/v1/prompts/{TYPE}/reset?content_type=product-page", headers=t.headers))
    assert (reset["source"], reset["text"]) == ("custom", "type-wide")
    reset = ok(client.post(f"/v1/prompts/{TYPE}/reset", headers=t.headers))
    assert _chosen(reset) == ("content_generation", "global", ["prompt_type"])
    assert _chosen(_one(client, t, "?content_type=product-page")) == \
        ("content_generation-product-page", "global", ["prompt_type", "content_type"])


def test_unknown_content_type_cannot_be_customized(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    r = client.put(f"/v1/prompts/{TYPE}?content_type=podcast", json={"text": "x"}, headers=t.headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    starter = new_tenant(rt_engine, "starter")
    r = client.put(f"/v1/prompts/{TYPE}?content_type=blog-post", json={"text": "x"}, headers=starter.headers)
    assert r.status_code == 403 and r.json()["error"]["code"] == "plan_feature_unavailable"


def test_list_and_single_routes_agree_for_every_selector(client, rt_engine):
    t = new_tenant(rt_engine, "pro")
    ok(client.put("/v1/prompts/meta_description?content_type=product-page", json={"text": "ours"}, headers=t.headers))
    for query in ("", "?content_type=product-page", "?industry=finance", "?content_type=how-to&industry=finance"):
        listed = _listed(client, t, query)
        assert set(listed) >= {"content_generation", "meta_description", "keyword_research"}
        for prompt_type in ("content_generation", "meta_description", "keyword_research", "title_generation"):
            assert listed[prompt_type] == _one(client, t, query, prompt_type), (query, prompt_type)
    assert _listed(client, t, "?industry=finance")["keyword_research"]["prompt"] == "keyword_research-finance"


def test_versions_and_global_changed_are_per_variant(client, rt_engine, tmp_path):
    t = new_tenant(rt_engine, "pro")
    on_product = ok(client.put(f"/v1/prompts/{TYPE}?content_type=product-page", json={"text": "ours (product)"},
                               headers=t.headers))
    on_blog = ok(client.put(f"/v1/prompts/{TYPE}?content_type=blog-post", json={"text": "ours (blog)"},
                            headers=t.headers))
    base_before = _one(client, new_tenant(rt_engine, "pro"))
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    path = config / "prompts" / "content_generation.yaml"
    source = path.read_text()
    marker = "  name: content_generation-product-page\n"
    head, tail = source.split(marker)
    assert "  text: |\n" in tail
    path.write_text(head + marker + tail.replace("  text: |\n", "  text: |\n    (Revised product page.)\n", 1))
    apply_repo_config(rt_engine, config)
    try:
        product = _one(client, t, "?content_type=product-page")
        assert product["global_version"] == on_product["global_version"] + 1
        assert product["global_changed_since_customized"] is True and product["text"] == "ours (product)"
        blog = _one(client, t, "?content_type=blog-post")
        assert blog["global_version"] == on_blog["global_version"]
        assert blog["global_changed_since_customized"] is False
        fresh = new_tenant(rt_engine, "pro")
        assert _one(client, fresh, "?content_type=product-page")["text"].startswith("(Revised product page.)")
        assert _one(client, fresh)["global_version"] == base_before["global_version"]
        listed = _listed(client, t, "?content_type=product-page")[TYPE]
        assert listed["global_changed_since_customized"] is True
    finally:
        apply_repo_config(rt_engine)


def test_one_customization_per_type_and_content_type_in_the_database(rt_engine):
    """The unique index treats a NULL content type as equal to another NULL."""
    import uuid

    import pytest

    t = new_tenant(rt_engine, "pro")
    insert = text("INSERT INTO ai_prompts (id, account_id, prompt_type, content_type, text, is_active) "
                  "VALUES (:id, :a, 'rewrite', :ct, 'x', true)")
    with rt_engine.begin() as conn:
        conn.execute(insert, {"id": uuid.uuid4(), "a": t.account_id, "ct": None})
        conn.execute(insert, {"id": uuid.uuid4(), "a": t.account_id, "ct": "blog-post"})
    for ct in (None, "blog-post"):
        with pytest.raises(Exception), rt_engine.begin() as conn:  # noqa: B017 - IntegrityError
            conn.execute(insert, {"id": uuid.uuid4(), "a": t.account_id, "ct": ct})
