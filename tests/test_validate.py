"""`cplane validate`: the repo's config is valid, and every seeded mistake is reported at its position."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import jsonschema
import pytest
import yaml_rs
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.cli.main import main
from control_plane.config.validate import load_config
from control_plane.kinds.schemas import all_schemas, export_schemas

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_repo_config_is_valid_and_fast():
    started = time.perf_counter()
    config = load_config(CONFIG)
    elapsed = time.perf_counter() - started
    assert config.issues == []
    assert elapsed < 5  # a sanity bound only; the real figure is in bench/ and the issue note
    for env in ("staging", "production"):
        assert load_config(CONFIG, env).issues == []


def test_repo_config_is_complete_for_launch():
    config = load_config(CONFIG)
    plans = config.of_kind("Plan")
    assert {"free", "starter", "pro", "enterprise"} <= set(plans)
    assert any(p.spec.internal for p in plans.values())
    assert [n for n, p in plans.items() if p.spec.allow_own_ai_keys and not p.spec.internal] == ["enterprise"]
    assert len(config.of_kind("CreditPackage")) >= 4
    industries = config.of_kind("Industry")
    sectors = [s for i in industries.values() for s in i.spec.sectors]
    assert len(industries) >= 12 and len(sectors) >= 100
    assert all(len(s.seed_keywords) >= 5 for s in sectors)
    assert {"saas-b2b-professional", "ecommerce-product-writer", "blog-conversational", "technical-documentation",
            "creative-storyteller"} <= set(config.of_kind("AuthorProfile"))
    assert {"seo-blog-post", "product-launch", "how-to-guide", "comparison-article", "case-study"} <= set(config.of_kind("Strategy"))
    assert {"wordpress", "ghost", "medium", "webflow", "shopify"} <= set(config.of_kind("PublishingChannel"))
    assert {"owner", "admin", "editor", "viewer"} <= set(config.of_kind("Role"))


def _broken_tree(root: Path) -> dict[str, tuple[str, int, int]]:
    """Seed one mistake per file; return what each should produce (file, line, col)."""
    import shutil

    shutil.copytree(CONFIG, root)
    files = {
        "plans/typo.yaml": (
            "apiVersion: cplane/v1\nkind: Plan\nmetadata:\n  name: typo\nspec:\n  displayName: Typo\n"
            "  priceMontly: 5\n  priceMonthly: 5\n  priceYearly: 50\n",
            ("unknown field 'priceMontly'", 7, 3),
        ),
        "plans/wrong-type.yaml": (
            "apiVersion: cplane/v1\nkind: Plan\nmetadata:\n  name: wrong-type\nspec:\n  displayName: W\n"
            "  priceMonthly: 5\n  priceYearly: 50\n  maxSites: many\n",
            ("spec.maxSites: expected an integer, got 'many'", 9, 13),
        ),
        "plans/duplicate.yaml": (
            "apiVersion: cplane/v1\nkind: Plan\nmetadata:\n  name: dup\nspec:\n  displayName: Dup\n"
            "  priceMonthly: 5\n  priceYearly: 50\n---\n"
            "apiVersion: cplane/v1\nkind: Plan\nmetadata:\n  name: dup\nspec:\n  displayName: Dup\n"
            "  priceMonthly: 5\n  priceYearly: 50\n",
            ("duplicate Plan name 'dup'", 13, 3),
        ),
        "strategies/dangling.yaml": (
            "apiVersion: cplane/v1\nkind: Strategy\nmetadata:\n  name: dangling\nspec:\n  displayName: D\n"
            "  contentType: no-such-type\n",
            ("spec.contentType: ContentType 'no-such-type' does not exist", 7, 16),
        ),
        "prompts/undeclared.yaml": (
            "apiVersion: cplane/v1\nkind: Prompt\nmetadata:\n  name: undeclared_var\nspec:\n  displayName: U\n"
            "  text: Write about {topic} for {audience}.\n  variables: [topic]\n",
            ("undeclared variables in text: {audience}", 7, 3),
        ),
        "payment_methods/literal.yaml": (
            "apiVersion: cplane/v1\nkind: PaymentMethod\nmetadata:\n  name: literal\nspec:\n  displayName: L\n"
            "  provider: stripe\n  secretKey: sk_live_DO_NOT_ECHO\n",
            ("spec.secretKey: secret fields take a reference {fromEnv: VARIABLE}, never a literal value", 8, 14),
        ),
        "plans/syntax.yaml": (
            "apiVersion: cplane/v1\nkind: Plan\nmetadata:\n  name: [unclosed\nspec: {}\n",
            ("", 5, None),
        ),
        "plans/dupkey.yaml": (
            "apiVersion: cplane/v1\nkind: Plan\nmetadata:\n  name: dupkey\nspec:\n  displayName: A\n  displayName: B\n",
            ("duplicate", 7, 3),
        ),
        "credit_costs/unknown-op.yaml": (
            "apiVersion: cplane/v1\nkind: CreditCost\nmetadata:\n  name: teleportation\nspec:\n  displayName: T\n  credits: 1\n",
            ("not a known CreditCost name", 4, 3),
        ),
    }
    expected = {}
    for rel, (content, (message, line, col)) in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
        expected[rel] = (message, line, col)
    (root / "environments" / "qa.yaml").write_text(
        "apiVersion: cplane/v1\nkind: Overlay\nmetadata:\n  name: qa\nspec:\n  patches:\n"
        "    - kind: Plan\n      name: no-such-plan\n      patch: {priceMonthly: 1}\n"
    )
    expected["environments/qa.yaml"] = ("patch target Plan/no-such-plan does not exist", 8, 13)
    return expected


def test_every_seeded_mistake_is_reported_in_one_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "config"
    expected = _broken_tree(root)
    result = run("validate", "--config", str(root), "--format", "json")
    assert result.exit_code == 1
    errors = json.loads(result.output)["errors"]
    assert "sk_live_DO_NOT_ECHO" not in result.output
    for rel, (message, line, col) in expected.items():
        found = [e for e in errors if e["file"] == f"config/{rel}"]
        assert found, f"no error reported for {rel}"
        matching = [e for e in found if message in e["message"] and e["line"] == line and (col is None or e["col"] == col)]
        assert matching, f"{rel}: expected {message!r} at {line}:{col}, got {found}"
    text_result = run("validate", "--config", str(root))
    assert text_result.exit_code == 1
    lines = [ln for ln in text_result.output.splitlines() if ln.startswith("config/")]
    assert "config/plans/typo.yaml:7:3: Plan/typo: unknown field 'priceMontly' (did you mean 'priceMonthly'?)" in lines
    assert lines == sorted(lines, key=lambda ln: (ln.split(":")[0], int(ln.split(":")[1]), int(ln.split(":")[2])))


def test_binary_garbage_empty_and_non_mapping_documents(tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "config"
    shutil.copytree(CONFIG, root)
    (root / "plans" / "garbage.yaml").write_bytes(b"\x00\xff\xfe\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (root / "plans" / "empty.yaml").write_text("")
    (root / "plans" / "scalar.yaml").write_text("just a string\n")
    (root / "plans" / "list.yaml").write_text("- a\n- b\n")
    result = run("validate", "--config", str(root))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "config/plans/garbage.yaml:1:" in result.output
    assert "config/plans/scalar.yaml:1:1: document/#1: a document must be a mapping" in result.output
    assert "config/plans/list.yaml:1:1:" in result.output
    assert "empty.yaml" not in result.output


def test_unknown_kind_and_api_version(tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "config"
    shutil.copytree(CONFIG, root)
    (root / "plans" / "v2.yaml").write_text("apiVersion: cplane/v2\nkind: Plan\nmetadata: {name: v2}\nspec: {}\n")
    (root / "plans" / "alien.yaml").write_text("apiVersion: cplane/v1\nkind: Spaceship\nmetadata: {name: x}\nspec: {}\n")
    result = run("validate", "--config", str(root))
    assert "config/plans/v2.yaml:1:1: Plan/v2: unsupported apiVersion 'cplane/v2'; this cplane reads cplane/v1" in result.output
    assert "config/plans/alien.yaml:2:7: Spaceship/x: unknown kind 'Spaceship'" in result.output


def test_json_schemas_are_fresh():
    assert export_schemas(REPO / "schemas", check=True) == []


def _documents():
    for path in sorted(CONFIG.rglob("*.yaml")):
        loaded = yaml_rs.loads(path.read_text(), parse_datetime=False)
        docs = loaded if isinstance(loaded, list) else [loaded]
        for doc in docs:
            if doc:
                yield path, doc


def test_every_config_document_passes_its_json_schema():
    schemas = all_schemas()
    checked = 0
    for _path, doc in _documents():
        jsonschema.validate(doc, schemas[doc["kind"]], cls=jsonschema.Draft202012Validator)
        checked += 1
    assert checked > 100


def test_every_config_file_has_a_modeline_to_its_schema():
    for path in sorted(CONFIG.rglob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        target = (path.parent / first.split("$schema=", 1)[1]).resolve()
        assert target.exists(), f"{path}: modeline points at missing {target}"
        kinds = [doc["kind"] for p, doc in _documents() if p == path]
        if path.parent.name == "environments":  # an overlay, then the objects only that environment has
            assert kinds[0] == target.stem == "Overlay", path
        else:
            assert set(kinds) == {target.stem}, f"{path}: modeline names {target.stem}, documents are {kinds}"


# --- property-based: no input makes validate raise ----------------------------------------------

_SEED_DOCS = [doc for _p, doc in _documents()][:40]


def _mutations():
    scalar = st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-10**12, max_value=10**12), st.floats(allow_nan=False),
        st.text(max_size=50), st.text(alphabet="\u202e\u0000\ufeffé漢🙂{}:-#&*!|>'\"", max_size=30),
    )
    value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
    return st.tuples(st.sampled_from(range(len(_SEED_DOCS))), st.sampled_from(["delete", "replace", "insert"]), st.integers(0, 50), value)


def _mutate(doc, action, index, value):
    import copy

    doc = copy.deepcopy(doc)
    containers = []

    def walk(node):
        if isinstance(node, dict):
            containers.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            containers.append(node)
            for v in node:
                walk(v)

    walk(doc)
    target = containers[index % len(containers)]
    if isinstance(target, dict) and target:
        key = list(target)[index % len(target)]
        if action == "delete":
            del target[key]
        elif action == "replace":
            target[key] = value
        else:
            target[f"x{index}"] = value
    elif isinstance(target, list) and target:
        if action == "delete":
            target.pop(index % len(target))
        else:
            target[index % len(target)] = value
    return doc


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutation=_mutations())
def test_mutated_documents_never_raise(tmp_path_factory, mutation):
    root = tmp_path_factory.mktemp("fuzz") / "config"
    (root / "plans").mkdir(parents=True)
    doc = _mutate(_SEED_DOCS[mutation[0]], *mutation[1:])
    (root / "plans" / "fuzzed.yaml").write_text(yaml_rs.dumps(doc) if isinstance(doc, dict) else str(doc))
    config = load_config(root)
    for issue in config.issues:
        assert issue.line >= 1 and issue.col >= 1
        assert "\n" not in issue.message


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_bytes_never_raise(tmp_path_factory, raw):
    root = tmp_path_factory.mktemp("bytes") / "config"
    root.mkdir()
    (root / "random.yaml").write_bytes(raw)
    config = load_config(root)
    assert all(i.line >= 1 for i in config.issues)


@pytest.mark.parametrize("env", ["staging", "production"])
def test_overlay_patches_change_the_desired_state(env):
    base = load_config(CONFIG)
    patched = load_config(CONFIG, env)
    assert base.ok and patched.ok
    differs = [
        (k, n) for k, objs in patched.objects.items() for n, o in objs.items()
        if n not in base.of_kind(k) or base.of_kind(k)[n].spec != o.spec
    ]
    assert differs, f"the {env} overlay changes nothing"


def test_plain_validate_checks_every_environment_and_column_limits(tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "config"
    shutil.copytree(CONFIG, root)
    staging = root / "environments" / "staging.yaml"
    staging.write_text(
        staging.read_text()
        + "\n---\napiVersion: cplane/v1\nkind: CreditPackage\nmetadata:\n  name: staging-broken\nspec:\n"
        "  displayName: Broken\n  credits: -5\n  price: 1\n"
    )
    (root / "author_profiles" / "long.yaml").write_text(
        "apiVersion: cplane/v1\nkind: AuthorProfile\nmetadata:\n  name: long\nspec:\n  displayName: Long\n"
        f"  tone: calm\n  vocabulary: {'x' * 300}\n"
    )
    result = run("validate", "--config", str(root))
    assert result.exit_code == 1
    assert "config/environments/staging.yaml:" in result.output and "CreditPackage/staging-broken" in result.output
    assert "config/author_profiles/long.yaml:4:3: AuthorProfile/long: vocabulary is 300 characters; at most 100 fit" in result.output


def test_docs_describe_every_kind_and_field():
    """docs/config.md is hand-written; this keeps it from drifting away from the specs."""
    from pydantic import BaseModel

    from control_plane.kinds.registry import CONFIG_KINDS

    docs = (REPO / "docs" / "config.md").read_text()
    missing = []

    def fields(model: type[BaseModel], seen: set) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, info in model.model_fields.items():
            alias = info.alias or name
            if not re.search(r"`[^`\n]*\b" + re.escape(alias) + r"\b[^`\n]*`", docs):
                missing.append(f"{model.__name__}.{alias}")
            for arg in getattr(info.annotation, "__args__", ()) + (info.annotation,):
                inner = getattr(arg, "__args__", (arg,))
                for candidate in inner:
                    if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                        fields(candidate, seen)

    for kind, ck in CONFIG_KINDS.items():
        if f"## {kind}" not in docs and f"### {kind}" not in docs:
            missing.append(kind)
        fields(ck.spec, set())
    assert not missing, f"docs/config.md does not describe: {', '.join(missing)}"
