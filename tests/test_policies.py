"""Policies (docs/config.md#policies): CEL object rules in validate, change rules in plan, the
shipped rules in config/policies/, a policy's own errors, and saved plans bound to the policies."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

from click.testing import CliRunner
from helpers import REPO, libpq_url
from sqlalchemy import insert, select, text

from control_plane.cli.main import main
from control_plane.reconcile.controller import apply_config
from control_plane.reconcile.validation import validate_all

SHIPPED = sorted(p.stem for p in (REPO / "config" / "policies").glob("*.yaml"))


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def issues_of(root: Path, environment: str | None = None) -> list[str]:
    return [i.format() for i in validate_all(root, environment).issues]


def position(path: Path, needle: str, at_value: bool = True) -> tuple[int, int]:
    """1-based line and column of `needle` (its value part after ': ' when at_value) in `path`."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            col = line.index(needle) + 1
            if at_value and ": " in needle:
                col += needle.index(": ") + 2
            return number, col
    raise AssertionError(f"{needle!r} not in {path}")


def replace_in(path: Path, old: str, new: str) -> None:
    content = path.read_text()
    assert old in content, old
    path.write_text(content.replace(old, new, 1))


def expect_at(issues: list[str], path: Path, line: int, col: int, label: str, policy: str) -> str:
    prefix = f"{path.relative_to(Path.cwd())}:{line}:{col}: {label}: policy {policy}: "
    found = [i for i in issues if i.startswith(prefix)]
    assert found, f"no {prefix!r} in {issues}"
    return found[0]


# --- the repo's own config --------------------------------------------------------------------------


def test_repo_config_passes_every_shipped_policy():
    assert SHIPPED == ["content-types-complete", "credit-package-price-per-credit", "metered-operations",
                       "plan-tiers", "price-change-approval", "prompt-required-clauses", "retire-approval",
                       "role-levels"]
    config = validate_all(REPO / "config")
    assert config.issues == [] and config.warnings == []
    assert sorted(config.of_kind("Policy")) == SHIPPED


# --- object rules, one violating and one passing config each ----------------------------------------


def test_price_per_credit_never_better_on_a_smaller_package(config_tree):
    path = config_tree.root / "credit_packages" / "credit-packages.yaml"
    assert issues_of(config_tree.root) == []
    replace_in(path, "  price: 20.00", "  price: 5.00")  # 1,000 credits for $5: better than every larger pack
    line, col = position(path, "  price: 5.00")
    message = expect_at(issues_of(config_tree.root), path, line, col, "CreditPackage/credits-1k",
                        "credit-package-price-per-credit")
    assert "price per credit 0.005 is better than a larger package's: credits-15k" in message


def test_plan_limits_rise_with_the_tier_and_internal_plans_are_exempt(config_tree):
    free = config_tree.root / "plans" / "free.yaml"
    starter = config_tree.root / "plans" / "starter.yaml"
    replace_in(free, "maxSites: 1\n", "maxSites: 5\n")  # more sites on free than on starter (3)
    issues = issues_of(config_tree.root)
    line, col = position(free, "name: free", at_value=False)
    assert "maxSites is 5, above higher tier starter's 3" in expect_at(issues, free, line, col, "Plan/free", "plan-tiers")
    line, col = position(starter, "name: starter", at_value=False)
    assert "maxSites is 3, below lower tier free's 5" in expect_at(issues, starter, line, col, "Plan/starter",
                                                                    "plan-tiers")
    # An internal plan (label tier: internal) gives more than enterprise and is not checked.
    assert "maxSites: 25" in (config_tree.root / "plans" / "internal-staff.yaml").read_text()
    replace_in(free, "maxSites: 5\n", "maxSites: 1\n")
    assert issues_of(config_tree.root) == []


def test_plan_features_are_a_superset_up_the_tiers(config_tree):
    pro = config_tree.root / "plans" / "pro.yaml"
    content = pro.read_text()
    assert "    - custom_author_profiles\n" in content
    pro.write_text(content.replace("    - custom_author_profiles\n", "", 1))
    issues = issues_of(config_tree.root)
    line, _ = position(pro, "  features:", at_value=False)  # the first spec field the rule reads: its first item
    message = expect_at(issues, pro, line + 1, 5, "Plan/pro", "plan-tiers")
    assert "lacks custom_author_profiles, which lower tier starter has" in message


def test_every_metered_operation_has_a_prompt(config_tree):
    costs = config_tree.root / "credit_costs" / "credit-costs.yaml"
    for prompt in config_tree.root.glob("prompts/*.yaml"):  # every prompt of one type, renamed to another
        prompt.write_text(prompt.read_text().replace("promptType: internal_linking", "promptType: rewrite")
                          .replace("name: internal_linking\n", "name: internal_linking_old\n"))
    issues = issues_of(config_tree.root)
    line, col = position(costs, "name: internal_linking", at_value=False)
    message = expect_at(issues, costs, line, col, "CreditCost/internal_linking", "metered-operations")
    assert "operation internal_linking has no prompt" in message


def test_every_content_type_has_a_template_and_a_strategy(config_tree):
    path = config_tree.write("content_types/podcast.yaml", """\
        apiVersion: cplane/v1
        kind: ContentType
        metadata:
          name: podcast-notes
        spec:
          displayName: Podcast notes
        """)
    issues = issues_of(config_tree.root)
    line, col = position(path, "name: podcast-notes", at_value=False)
    assert "has no ContentTemplate" in expect_at(issues, path, line, col, "ContentType/podcast-notes",
                                                  "content-types-complete")
    assert any("has no Strategy" in i for i in issues)
    replace_in(path, "displayName: Podcast notes", "displayName: Podcast notes\n  active: false")
    assert issues_of(config_tree.root) == []  # an inactive content type is not offered


def test_prompts_keep_their_required_clauses(config_tree):
    path = config_tree.root / "prompts" / "content_generation.yaml"
    replace_in(path, "Do not invent statistics", "Feel free to estimate statistics")
    issues = issues_of(config_tree.root)
    line, col = position(path, "  text: ")
    message = expect_at(issues, path, line, col, "Prompt/content_generation", "prompt-required-clauses")
    assert 'text must keep the clause "Do not invent statistics"' in message


def test_role_permissions_stay_within_their_level(config_tree):
    path = config_tree.root / "roles" / "roles.yaml"
    content = path.read_text()
    viewer = content.index("name: viewer")
    head, tail = content[:viewer], content[viewer:]
    path.write_text(head + tail.replace("    - content.view\n", "    - content.view\n    - billing.manage\n", 1))
    issues = issues_of(config_tree.root)
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1)
                if n > head.count("\n") and text.startswith("  permissions:"))
    at = expect_at(issues, path, line + 1, 5, "Role/viewer", "role-levels")  # the list's first item
    found = [i for i in issues if "Role/viewer: policy role-levels" in i]
    assert any("a read-only role cannot have billing.manage" in i for i in found), found
    assert any("this role may not touch billing: billing.manage" in i for i in found), found
    assert at


def test_warning_severity_is_shown_and_does_not_fail(config_tree):
    config_tree.write("policies/short-names.yaml", """\
        apiVersion: cplane/v1
        kind: Policy
        metadata:
          name: short-display-names
        spec:
          severity: warning
          match: {kinds: [Plan]}
          validations:
            - expression: size(object.spec.displayName) <= 5
              message: display names longer than 5 characters may not fit the pricing table
              fieldPath: spec.displayName
        """)
    result = run("validate", "--config", str(config_tree.root))
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "Plan/enterprise: policy short-display-names: display names" in result.output
    assert "(warning)" in result.output


# --- a policy's own errors ---------------------------------------------------------------------------


def write_policy(config_tree, expression: str, **extra: str):
    lines = "".join(f"  {k}: {v}\n" for k, v in extra.items())
    return config_tree.write("policies/custom.yaml", f"""\
apiVersion: cplane/v1
kind: Policy
metadata:
  name: custom
spec:
{lines}  match:
    kinds: [CreditPackage]
  validations:
    - expression: {expression}
      message: custom rule
""")


def test_a_cel_syntax_error_is_a_validate_error_at_the_policy_line_and_column(config_tree):
    path = write_policy(config_tree, "object.spec.price > +* 1.0")
    result = run("validate", "--config", str(config_tree.root))
    assert result.exit_code == 1
    line, col = position(path, "- expression: object")
    rel = path.relative_to(Path.cwd())
    # The column is where CEL stopped, inside the expression: '*' is the 21st character of it.
    assert f"{rel}:{line}:{col + 20}: Policy/custom: spec.validations[0].expression: CEL syntax error" in result.output
    assert "Traceback" not in result.output


def test_a_field_the_kind_does_not_have_is_an_error_not_a_pass(config_tree):
    path = write_policy(config_tree, "object.spec.pricePerCredit < 1.0")
    issues = issues_of(config_tree.root)
    line, col = position(path, "- expression: object")
    rel = path.relative_to(Path.cwd())
    assert (f"{rel}:{line}:{col}: Policy/custom: spec.validations[0].expression: unknown field "
            "object.spec.pricePerCredit for kind CreditPackage") in "\n".join(issues)


def test_a_field_named_at_run_time_that_does_not_exist_is_an_error(config_tree):
    config_tree.write("policies/custom.yaml", """\
        apiVersion: cplane/v1
        kind: Policy
        metadata:
          name: custom
        spec:
          match: {kinds: [CreditPackage]}
          params: {fields: [prize]}
          validations:
            - expression: params.fields.all(f, object.spec[f] >= 0.0)
        """)
    issues = issues_of(config_tree.root)
    assert any("Policy/custom: spec.validations[0].expression: no field 'prize' in CreditPackage/" in i
               and "unknown field" in i for i in issues), issues


def test_unknown_variables_kinds_and_non_boolean_results_are_errors(config_tree):
    write_policy(config_tree, "price > 1.0")
    assert any("unknown variable 'price'" in i for i in issues_of(config_tree.root))
    write_policy(config_tree, "kinds.Plann.size() > 0")
    assert any("unknown kind 'Plann'" in i and "did you mean 'Plan'" in i for i in issues_of(config_tree.root))
    write_policy(config_tree, "kinds['Plan'].size() > 0 && kinds.Role.exists(r, r.metadata.name == 'owner')")
    assert issues_of(config_tree.root) == []  # both ways of naming a kind
    write_policy(config_tree, "object.spec.credits")
    assert any("must evaluate to a boolean" in i for i in issues_of(config_tree.root))
    write_policy(config_tree, "oldObject == null", scope="object")
    assert any("unknown variable 'oldObject'" in i for i in issues_of(config_tree.root))


def test_validate_without_policies_never_imports_cel(tmp_path):
    import shutil

    root = tmp_path / "config"
    shutil.copytree(REPO / "config", root)
    shutil.rmtree(root / "policies")
    probe = textwrap.dedent(f"""
        import sys
        from control_plane.reconcile.validation import validate_all
        assert validate_all({str(root)!r}).ok
        assert not any(name == "cel" or name.startswith("cel.") for name in sys.modules)
        validate_all({str(REPO / "config")!r})
        assert "cel.cel" in sys.modules  # the Rust extension alone, not the package's command-line tool
    """)
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=REPO)


# --- change rules in plan ------------------------------------------------------------------------------


def plan_cli(engine, config_tree, *args: str):
    return run("plan", "--config", str(config_tree.root), "--database-url", libpq_url(engine), *args)


def test_a_big_price_change_needs_approval(config_tree, pg_engine):
    apply_config(pg_engine, config_tree.root, actor="test")
    config_tree.test_plan(price="24.70", annotations="{}")  # 19 -> 24.70: +30%
    result = plan_cli(pg_engine, config_tree, "--detailed-exitcode")
    assert result.exit_code == 1
    assert "policy price-change-approval (error): priceMonthly changes from 19 to 24.7 (more than 20%)" in result.output
    assert ("error: policy price-change-approval: Plan/test-plan (update): priceMonthly changes from 19 to 24.7"
            in result.output)
    for fmt, needle in (("markdown", "❌ policy `price-change-approval` (error): priceMonthly"),
                        ("json", '"policy": "price-change-approval"')):
        shown = plan_cli(pg_engine, config_tree, "--format", fmt)
        assert shown.exit_code == 1 and needle in shown.output
    refused = run("apply", "--auto-approve", "--config", str(config_tree.root), "--database-url", libpq_url(pg_engine))
    assert refused.exit_code == 1 and "price-change-approval" in refused.output
    saved = config_tree.root.parent / "violating-plan.json"
    assert plan_cli(pg_engine, config_tree, "--out", str(saved)).exit_code == 1
    assert json.loads(saved.read_text())["changes"][0]["policy_violations"][0]["policy"] == "price-change-approval"
    from_file = run("apply", str(saved), "--config", str(config_tree.root), "--database-url", libpq_url(pg_engine))
    assert from_file.exit_code == 1 and "policy price-change-approval" in from_file.output
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT price_monthly FROM plans WHERE slug = 'test-plan'")).scalar_one() == 19

    config_tree.test_plan(price="24.70", annotations="{cplane/approved-by: finance-lead}")
    approved = plan_cli(pg_engine, config_tree, "--detailed-exitcode")
    assert approved.exit_code == 2, approved.output
    assert "policy " not in approved.output
    applied = run("apply", "--auto-approve", "--config", str(config_tree.root), "--database-url", libpq_url(pg_engine))
    assert applied.exit_code == 0, applied.output
    with pg_engine.connect() as conn:
        assert float(conn.execute(text("SELECT price_monthly FROM plans WHERE slug = 'test-plan'")).scalar_one()) == 24.7


def test_a_small_price_change_and_healing_drift_need_no_approval(config_tree, pg_engine):
    apply_config(pg_engine, config_tree.root, actor="test")
    config_tree.test_plan(price="21", annotations="{}")  # +10.5%
    assert plan_cli(pg_engine, config_tree, "--detailed-exitcode").exit_code == 2
    config_tree.test_plan(annotations="{}")
    with pg_engine.begin() as conn:  # edited by hand: the plan heals it back, with no approval needed
        conn.execute(text("UPDATE plans SET price_monthly = 99 WHERE slug = 'test-plan'"))
    healed = plan_cli(pg_engine, config_tree, "--detailed-exitcode")
    assert healed.exit_code == 2 and "drift" in healed.output and "policy " not in healed.output


def _subscribe(engine, plan_slug: str) -> None:
    from control_plane.db.models import Account

    with engine.begin() as conn:
        plan_id = conn.execute(text("SELECT id FROM plans WHERE slug = :s"), {"s": plan_slug}).scalar_one()
        conn.execute(insert(Account.__table__), {"id": uuid.uuid4(), "name": "Acme", "plan_id": plan_id,
                                                 "billing_email": "billing@acme.test"})
        assert conn.execute(select(Account.id)).first() is not None


def test_retiring_a_plan_with_users_needs_approval(config_tree, pg_engine):
    apply_config(pg_engine, config_tree.root, actor="test")
    _subscribe(pg_engine, "test-plan")
    config_tree.test_plan(annotations="{}")
    path = config_tree.root / "plans" / "test-plan.yaml"
    replace_in(path, "  displayName: Test Plan", "  displayName: Test Plan\n  active: false")
    result = plan_cli(pg_engine, config_tree)
    assert result.exit_code == 1
    assert ("policy retire-approval: Plan/test-plan (update): deactivating it while user data references it (1 rows) "
            "needs the annotation cplane/approved-by") in result.output
    config_tree.remove("plans/test-plan.yaml")  # removing it would retire it: refused too
    removed = plan_cli(pg_engine, config_tree)
    assert removed.exit_code == 1 and "removing it from the config retires it while user data references it" in removed.output
    config_tree.test_plan(annotations="{cplane/approved-by: product-lead}")
    replace_in(path, "  displayName: Test Plan", "  displayName: Test Plan\n  active: false")
    approved = plan_cli(pg_engine, config_tree, "--detailed-exitcode")
    assert approved.exit_code == 2, approved.output
    assert run("apply", "--auto-approve", "--config", str(config_tree.root),
               "--database-url", libpq_url(pg_engine)).exit_code == 0
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT is_active FROM plans WHERE slug = 'test-plan'")).scalar_one() is False


# --- saved plans and the policies' digest ---------------------------------------------------------------


def test_a_saved_plan_is_refused_once_the_policies_changed(config_tree, pg_engine, tmp_path):
    apply_config(pg_engine, config_tree.root, actor="test")
    config_tree.test_plan(price="21", annotations="{}")
    out = tmp_path / "plan.json"
    assert plan_cli(pg_engine, config_tree, "--out", str(out)).exit_code == 0
    saved = json.loads(out.read_text())
    assert saved["policies_digest"].startswith("sha256:")
    policy = config_tree.root / "policies" / "price-change-approval.yaml"
    replace_in(policy, "maxChange: 0.2", "maxChange: 0.05")  # now +10.5% would need approval
    refused = run("apply", str(out), "--config", str(config_tree.root), "--database-url", libpq_url(pg_engine))
    assert refused.exit_code == 1
    assert "refusing to apply the plan: the policies changed since it was made" in refused.output
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT price_monthly FROM plans WHERE slug = 'test-plan'")).scalar_one() == 19
    replace_in(policy, "maxChange: 0.05", "maxChange: 0.2")  # the same policies again: it applies
    applied = run("apply", str(out), "--config", str(config_tree.root), "--database-url", libpq_url(pg_engine))
    assert applied.exit_code == 0, applied.output


def test_the_saved_plan_check_parses_only_the_policies_files(config_tree, pg_engine, tmp_path, monkeypatch):
    """Once a plan filled the per-file cache, checking a saved plan's policies parses the Policy
    documents' files (and the overlays, which may patch them), not the rest of the tree; and it
    still sees an edit to a policy that the cache has not seen."""
    import control_plane.config.loader as loader
    import control_plane.config.validate as validate
    from control_plane.plans.planfile import read_plan
    from control_plane.reconcile.controller import PlanRejected, check_policies_unchanged

    apply_config(pg_engine, config_tree.root, actor="test")
    config_tree.test_plan(price="21", annotations="{}")
    out = tmp_path / "plan.json"
    assert plan_cli(pg_engine, config_tree, "--out", str(out)).exit_code == 0
    parsed: list[str] = []

    def recorded(real, path_at: int):
        def parse(*args, **kwargs):
            parsed.append(Path(args[path_at]).as_posix())
            return real(*args, **kwargs)
        return parse

    for module in (loader, validate):  # load_file(path), load_bytes(raw, path)
        monkeypatch.setattr(module, "load_file", recorded(module.load_file, 0))
        monkeypatch.setattr(module, "load_bytes", recorded(module.load_bytes, 1))
    plan = read_plan(out)
    check_policies_unchanged(plan, config_tree.root, None)
    outside = sorted({p for p in parsed if "/policies/" not in p and "/environments/" not in p})
    assert outside == [], outside
    assert any("/policies/" in p for p in parsed)
    replace_in(config_tree.root / "policies" / "price-change-approval.yaml", "maxChange: 0.2", "maxChange: 0.05")
    try:
        check_policies_unchanged(plan, config_tree.root, None)
    except PlanRejected as exc:
        assert "the policies changed since it was made" in str(exc)
    else:
        raise AssertionError("a changed policy was not noticed")


def _first_apply_plan_from_the_cache(config_tree):
    """(prepared, its Industry objects, an empty LiveState, the first apply's plan) of the tree loaded
    a second time, so that its objects are CachedObjects whose specs are not parsed yet."""
    from control_plane.config.model import CachedObject
    from control_plane.plans.compare import compare
    from control_plane.reconcile.controller import prepare
    from control_plane.state.live import LiveState

    prepare(config_tree.root)  # the first load writes the cache entries
    prepared = prepare(config_tree.root)  # this one reads them: the objects are CachedObjects
    industries = prepared.config.of_kind("Industry")
    assert industries and all(isinstance(o, CachedObject) and o._spec is None for o in industries.values())
    empty = LiveState({}, {}, {})
    plan = compare(prepared.desired, empty, prepared.box)
    return prepared, industries, empty, plan


def test_change_rules_view_cached_objects_and_let_their_files_go(config_tree):
    """The plan's change rules view each changed object; a cached object's spec is its file parsed
    again (config/cache.py). The views see the file's values, the violation lands on the right
    change, and the reparse is not kept (policies.objects.Views(release=True)): a first apply of a
    large taxonomy otherwise held every industry file's models. Asking again parses again."""
    from control_plane.policies.changes import check_changes

    config_tree.write("policies/industry-names.yaml", """\
        apiVersion: cplane/v1
        kind: Policy
        metadata:
          name: industry-names
        spec:
          scope: change
          severity: warning
          match: {kinds: [Industry]}
          validations:
            - expression: object.spec.displayName != "Automotive" && size(object.spec.sectors) > 0
              message: named Automotive
        """)
    prepared, industries, empty, plan = _first_apply_plan_from_the_cache(config_tree)
    check_changes(plan, prepared.config, empty)
    flagged = {c.name for c in plan.changes if c.kind == "Industry" and c.policy_violations}
    assert flagged == {"automotive"}
    assert [v["message"] for c in plan.changes if c.name == "automotive" for v in c.policy_violations] \
        == ["named Automotive"]
    assert all(o._spec is None for o in industries.values())  # let go once viewed
    assert industries["automotive"].spec.display_name == "Automotive"  # and parsed again on demand


def test_change_rules_build_object_views_only_when_the_expression_reads_them(config_tree):
    """`object` and `oldObject` reach CEL through a resolver (policies.changes._Lazy): a rule that
    decides on `change` alone (retire-approval's `change.references == 0` for a create) never
    views the object, so a cached Industry's file is not parsed again; where the expression does
    read `object` (the right side of the ||), it sees the object's values, and `oldObject` of a
    create is null."""
    from unittest import mock

    from control_plane.config.model import CachedObject
    from control_plane.policies.changes import check_changes

    config_tree.write("policies/industry-lazy.yaml", """\
        apiVersion: cplane/v1
        kind: Policy
        metadata:
          name: industry-lazy
        spec:
          scope: change
          severity: warning
          match: {kinds: [Industry]}
          validations:
            - expression: >-
                change.name != "automotive" || oldObject == null
                  && (object.spec.displayName != "Automotive" || size(object.spec.sectors) == 0)
              message: named Automotive
        """)
    prepared, industries, empty, plan = _first_apply_plan_from_the_cache(config_tree)
    viewed = []
    real = CachedObject.spec.fget

    def spec(obj):
        viewed.append((obj.kind, obj.name))
        return real(obj)

    with mock.patch.object(CachedObject, "spec", property(spec)):
        check_changes(plan, prepared.config, empty)
    flagged = {c.name for c in plan.changes if c.kind == "Industry" and c.policy_violations}
    assert flagged == {"automotive"}
    # Of the industries, only the one whose change made the rule read `object` had its spec built
    # (the Policy documents' own specs are read to compile them).
    assert {name for kind, name in viewed if kind == "Industry"} == {"automotive"}
