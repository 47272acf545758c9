"""The shipped catalog (config/) is launch-grade and consistent (issue 21).

Counts, coverage of every operation and content type, the pricing and tier orderings, no invented
figures, distinct prompts, distinct voices, and the Prompt variant rules of `cplane validate`.
"""

from __future__ import annotations

import itertools
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from control_plane.cli.main import main
from control_plane.config.validate import load_config
from control_plane.kinds.catalog import METERED_OPERATIONS, PROMPT_REQUIRED_VARIABLES, PROMPT_TYPES

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"
METRICS = ("search_volume", "difficulty", "cpc")
METRICS_SOURCE = "cplane/metrics-source"
TIERS = ("free", "starter", "pro", "enterprise")


@pytest.fixture(scope="module")
def catalog():
    config = load_config(CONFIG)
    assert config.issues == [], "\n".join(i.format() for i in config.issues)
    return config


def test_cplane_validate_passes():
    result = CliRunner().invoke(main, ["validate", "--config", str(CONFIG)], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_counts(catalog):
    industries = catalog.of_kind("Industry")
    sectors = [s for i in industries.values() for s in i.spec.sectors]
    keywords = [k for s in sectors for k in s.seed_keywords]
    assert len(industries) >= 15
    assert len(sectors) >= 150
    assert len(keywords) >= 1500
    assert len(catalog.of_kind("Prompt")) >= 100
    assert len(catalog.of_kind("AuthorProfile")) >= 8
    assert len(catalog.of_kind("Strategy")) >= 10


def test_taxonomy_is_described_and_about_ten_keywords_per_sector(catalog):
    for industry in catalog.of_kind("Industry").values():
        assert industry.spec.description.strip()
        for sector in industry.spec.sectors:
            where = f"{industry.name}/{sector.name}"
            assert len(sector.description.strip()) >= 20, f"{where}: no real description"
            assert 8 <= len(sector.seed_keywords) <= 15, f"{where}: {len(sector.seed_keywords)} seed keywords"
            intents = {k.intent for k in sector.seed_keywords}
            assert "informational" in intents and len(intents) >= 2, f"{where}: one intent only"
            for kw in sector.seed_keywords:
                assert kw.keyword == kw.keyword.strip().lower() and "  " not in kw.keyword, f"{where}: {kw.keyword!r}"
                words = len(kw.keyword.split())  # one word only for a site name ("grants.gov")
                assert (2 if kw.intent != "navigational" else 1) <= words <= 10, f"{where}: {kw.keyword!r}"


def test_no_seed_keyword_metric_without_a_source_note(catalog):
    """searchVolume, difficulty and cpc only in a file that says where they were measured."""
    offenders = []
    for industry in catalog.of_kind("Industry").values():
        sourced = bool(industry.annotations.get(METRICS_SOURCE, "").strip())
        for sector in industry.spec.sectors:
            for kw in sector.seed_keywords:
                if not sourced and any(getattr(kw, m) is not None for m in METRICS):
                    offenders.append(f"{industry.doc.file.name}: {sector.name}/{kw.keyword}")
    assert offenders == [], f"seed keyword metrics without a {METRICS_SOURCE} annotation: {offenders[:5]}"


def test_the_metric_rule_catches_an_unsourced_figure(tmp_path):
    """The check above is not vacuous: a figure added without a source note is found."""
    root = tmp_path / "config"
    shutil.copytree(CONFIG, root)
    path = root / "industries" / "healthcare.yaml"
    text = path.read_text()
    assert "{keyword: cardiologist near me, intent: navigational}" in text
    path.write_text(text.replace("{keyword: cardiologist near me, intent: navigational}",
                                 "{keyword: cardiologist near me, searchVolume: 90500, intent: navigational}"))
    config = load_config(root)
    assert config.issues == []  # valid config: the rule is about provenance, not shape
    industry = config.of_kind("Industry")["healthcare"]
    flagged = [k.keyword for s in industry.spec.sectors for k in s.seed_keywords
               if k.search_volume is not None and not industry.annotations.get(METRICS_SOURCE)]
    assert flagged == ["cardiologist near me"]


def test_no_measurement_claims_in_config():
    """No number or claim presented as measured data anywhere in config/ (beyond sourced seeds)."""
    claims = re.compile(r"(most popular|best[- ]selling|\bstudies show|\bresearch shows|\bon average\b|"
                        r"\btrusted by\b|\d+(?:\.\d+)?\s*% (?:more|less|higher|lower|faster|increase|of (?:users|customers)))",
                        re.IGNORECASE)
    found = []
    for path in CONFIG.rglob("*.yaml"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "keyword:" in line:
                continue
            if claims.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:80]}")
    assert found == []


def test_every_metered_operation_has_a_cost_and_a_base_prompt(catalog):
    costs = catalog.of_kind("CreditCost")
    prompts = catalog.of_kind("Prompt").values()
    base = {p.spec.prompt_type for p in prompts if p.spec.content_type is None and p.spec.industry is None}
    for operation in METERED_OPERATIONS:
        assert operation in costs and costs[operation].spec.active, operation
        assert operation in base, f"{operation}: no base prompt"
    assert set(PROMPT_TYPES) == set(PROMPT_REQUIRED_VARIABLES)


def test_every_content_type_has_a_template_a_strategy_and_prompt_variants(catalog):
    templates = {t.spec.content_type for t in catalog.of_kind("ContentTemplate").values()}
    strategies = catalog.of_kind("Strategy")
    variant_types = {p.spec.content_type for p in catalog.of_kind("Prompt").values()}
    for name, content_type in catalog.of_kind("ContentType").items():
        assert name in templates, f"{name}: no template"
        default = content_type.spec.settings.get("defaultStrategy")
        assert default in strategies and strategies[default].spec.content_type == name, f"{name}: {default!r}"
        assert name in variant_types, f"{name}: no prompt variant"
    expected = {"blog-post", "landing-page", "product-page", "how-to", "listicle", "comparison", "case-study",
                "news-update", "email-newsletter", "social-post"}
    assert expected <= set(catalog.of_kind("ContentType"))


def test_price_per_credit_falls_with_package_size(catalog):
    packages = sorted((p.spec for p in catalog.of_kind("CreditPackage").values() if p.spec.active),
                      key=lambda s: s.credits + s.bonus_credits)
    assert len(packages) >= 4
    rates = [Decimal(s.price) / (s.credits + s.bonus_credits) for s in packages]
    assert all(later < earlier for earlier, later in itertools.pairwise(rates)), rates


def test_plan_limits_rise_with_tier(catalog):
    plans = catalog.of_kind("Plan")
    fields = ("price_monthly", "price_yearly", "monthly_credits", "max_sites", "max_users", "max_keywords")
    for lower, higher in itertools.pairwise(TIERS):
        low, high = plans[lower].spec, plans[higher].spec
        for f in fields:
            assert getattr(high, f) > getattr(low, f), f"{higher}.{f} is not above {lower}.{f}"
        assert set(low.modules) <= set(high.modules) and set(low.features) <= set(high.features)


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9_]+", text.lower())


def _shingles(words: list[str], k: int = 5) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + k]) for i in range(len(words) - k + 1)}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def test_no_two_prompts_are_near_duplicates(catalog):
    texts = {n: p.spec.text for n, p in catalog.of_kind("Prompt").items()}
    tokens = {n: set(_tokens(t)) for n, t in texts.items()}
    shingles = {n: _shingles(_tokens(t)) for n, t in texts.items()}
    worst = max(((max(_jaccard(tokens[a], tokens[b]), _jaccard(shingles[a], shingles[b])), a, b)
                 for a, b in itertools.combinations(sorted(texts), 2)))
    assert worst[0] <= 0.9, f"near-duplicate prompts: {worst}"


def test_the_duplicate_check_finds_a_near_copy(catalog):
    """The measure is not vacuous: a library prompt with one sentence reworded is over the bar."""
    a = catalog.of_kind("Prompt")["content_generation-blog-post"].spec.text
    b = a.replace("Close with a two- or three-sentence conclusion", "End with a short conclusion")
    assert a != b
    assert max(_jaccard(set(_tokens(a)), set(_tokens(b))), _jaccard(_shingles(_tokens(a)), _shingles(_tokens(b)))) > 0.9


def test_variants_are_complete_instructions(catalog):
    for name, prompt in catalog.of_kind("Prompt").items():
        spec = prompt.spec
        required = set(PROMPT_REQUIRED_VARIABLES[spec.prompt_type])
        assert required <= set(spec.variables), name
        if spec.prompt_type == "image_generation":
            continue
        assert len(_tokens(spec.text)) >= 80, f"{name}: too short to be production instructions"
        if spec.content_type or spec.industry:
            for part in ("Inputs:", "Requirements:", "Output format:", "Do not:"):
                assert part in spec.text, f"{name}: no {part!r} section"


def test_compliance_variants_say_what_they_must(catalog):
    prompts = catalog.of_kind("Prompt").values()
    by_industry = {}
    for p in prompts:
        by_industry.setdefault(p.spec.industry, []).append(p.spec.text.lower())
    assert all("diagnos" in t or "clinical" in t or "medical" in t for t in by_industry["healthcare"])
    assert all("advice" in t or "recommend" in t or "hypothetical" in t or "return" in t for t in by_industry["finance"])
    assert all("legal advice" in t or "jurisdiction" in t or "lawyer" in t for t in by_industry["legal"])
    assert all("product data" in t or "catalogue" in t or "store" in t for t in by_industry["ecommerce"])


def test_personas_and_strategies_have_distinct_voices_and_are_used(catalog):
    profiles = catalog.of_kind("AuthorProfile")
    strategies = catalog.of_kind("Strategy")
    content_types = catalog.of_kind("ContentType")
    for name, p in profiles.items():
        s = p.spec
        assert s.tone and s.structure.get("template") and len(s.structure.get("exampleParagraph", "")) > 150, name
        assert any(g.startswith("Do:") for g in s.guidelines), name
        assert any(g.startswith("Don't:") for g in s.guidelines), name
    for name, st in strategies.items():
        settings = st.spec.settings
        assert settings.get("tone") and settings.get("structureTemplate"), name
        assert settings.get("do") and settings.get("dont"), name
        assert len(settings.get("exampleParagraph", "")) > 150, name
        assert len(st.spec.sections) >= 3 and st.spec.content_type in content_types, name
        assert settings.get("authorProfile") in profiles, name
    assert len({p.spec.tone for p in profiles.values()}) == len(profiles)
    assert len({p.spec.structure["exampleParagraph"] for p in profiles.values()}) == len(profiles)
    assert len({s.spec.settings["tone"] for s in strategies.values()}) == len(strategies)
    used_profiles = {s.spec.settings["authorProfile"] for s in strategies.values()}
    assert used_profiles == set(profiles), set(profiles) - used_profiles
    referenced = set()
    for ct in content_types.values():
        referenced.add(ct.spec.settings.get("defaultStrategy"))
        referenced.update(ct.spec.settings.get("alternativeStrategies", []))
    for st in strategies.values():
        referenced.update(st.spec.settings.get("relatedStrategies", []))
    assert set(strategies) <= referenced, set(strategies) - referenced


# --- the Prompt variant rules of cplane validate -------------------------------------------------


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "config"
    shutil.copytree(CONFIG, root)
    return root


def _messages(root: Path) -> list[str]:
    return [i.format() for i in load_config(root).issues]


VARIANT = """\
---
apiVersion: cplane/v1
kind: Prompt
metadata:
  name: {name}
spec:
  displayName: A variant
  promptType: meta_description
  contentType: {content_type}
  variables: [{variables}]
  text: |
    Write a title tag for {{title}} on {{site_name}} about {{primary_keyword}} in {{language}}: {{summary}}
"""


def test_duplicate_selectors_are_reported_at_the_second_prompt(tmp_path):
    root = _tree(tmp_path)
    path = root / "prompts" / "zz_more.yaml"
    path.write_text(VARIANT.format(name="meta-product-again", content_type="product-page",
                                   variables="title, site_name, primary_keyword, language, summary"))
    issues = load_config(root).issues
    assert len(issues) == 1, [i.format() for i in issues]
    issue = issues[0]
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("  contentType:"))
    assert (Path(issue.file).resolve(), issue.line, issue.col) == (path.resolve(), line, 3)
    assert (issue.kind, issue.name) == ("Prompt", "meta-product-again")
    assert issue.message.startswith("same selectors as Prompt 'meta_description-product-page' (")
    assert "promptType 'meta_description', contentType product-page, industry (any)" in issue.message
    assert "\n" not in issue.format()


def test_a_variant_must_use_its_operations_required_variables(tmp_path):
    root = _tree(tmp_path)
    (root / "prompts" / "zz_more.yaml").write_text(
        VARIANT.format(name="meta-news-short", content_type="social-post",
                       variables="title, site_name, primary_keyword, language, summary")
        .replace("about {primary_keyword} ", "").replace("primary_keyword, ", ""))
    issues = _messages(root)
    assert len(issues) == 1 and "Prompt/meta-news-short: variables must include primary_keyword" in issues[0], issues


def test_variant_selectors_must_exist(tmp_path):
    root = _tree(tmp_path)
    (root / "prompts" / "zz_more.yaml").write_text(
        VARIANT.format(name="meta-unknown", content_type="podcast",
                       variables="title, site_name, primary_keyword, language, summary")
        .replace("  contentType: podcast\n", "  contentType: podcast\n  industry: astrology\n"))
    issues = _messages(root)
    assert any("ContentType 'podcast' does not exist" in i for i in issues), issues
    assert any("Industry 'astrology' does not exist" in i for i in issues), issues


def test_every_type_needs_a_base_prompt(tmp_path):
    root = _tree(tmp_path)
    path = root / "prompts" / "clustering.yaml"
    docs = path.read_text().split("\n---\n")
    path.write_text("\n---\n".join(docs[1:]))  # drop the base prompt, keep the variants
    issues = _messages(root)
    assert any("missing base Prompt (no contentType or industry) for: clustering" in i for i in issues), issues
