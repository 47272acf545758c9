"""The diff-and-apply controller, end to end on PostgreSQL and SQLite (issue 4's acceptance list)."""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import func, insert, select, text

from control_plane.apply.execute import ApplyLocked
from control_plane.cli.main import main
from control_plane.db.models import Account, ApplyRun, ManagedObject
from control_plane.errors import CplaneError
from control_plane.plans import planfile
from control_plane.reconcile.controller import apply_config, apply_plan, make_plan
from control_plane.render.plan import render_markdown, render_text


def cli(*args, env=None):
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result


def count(engine, table):
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(text(table))).scalar_one()


def scalar(engine, sql, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def test_empty_database_plan_apply_replan(config_tree, db_url, engine_for):
    plan_1 = cli("plan", "--config", str(config_tree.root), "--database-url", db_url, "--detailed-exitcode")
    assert plan_1.exit_code == 2, plan_1.output
    assert "+ Plan/test-plan" in plan_1.output
    assert "+ IndustrySector/test-industry/first" in plan_1.output
    assert "to create, 0 to update, 0 to delete, 0 to retire." in plan_1.output

    applied = cli("apply", "--config", str(config_tree.root), "--database-url", db_url, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert "Apply complete." in applied.output

    plan_2 = cli("plan", "--config", str(config_tree.root), "--database-url", db_url, "--detailed-exitcode")
    assert plan_2.exit_code == 0, plan_2.output
    assert "No changes. The database matches the configuration." in plan_2.output

    engine = engine_for(db_url)
    runs = count(engine, "cplane_apply_runs")
    managed = scalar(engine, "SELECT max(applied_at) FROM cplane_managed_objects")
    plan_updated = scalar(engine, "SELECT updated_at FROM plans WHERE slug = 'test-plan'")
    again = apply_config(engine, config_tree.root, actor="test")
    assert again.applied is False and again.rows_written == 0
    assert count(engine, "cplane_apply_runs") == runs
    assert scalar(engine, "SELECT max(applied_at) FROM cplane_managed_objects") == managed
    assert scalar(engine, "SELECT updated_at FROM plans WHERE slug = 'test-plan'") == plan_updated


def test_field_edit_is_exactly_one_field_level_change(config_tree, migrated_engine):
    apply_config(migrated_engine, config_tree.root, actor="test")
    config_tree.test_plan(price="29.5")
    plan = make_plan(migrated_engine, config_tree.root).plan
    assert [(c.kind, c.name, c.action, c.cause) for c in plan.changes] == [("Plan", "test-plan", "update", "config")]
    [change] = plan.changes
    assert [(f.field, f.before, f.after) for f in change.fields] == [("price_monthly", "19.00", "29.50")]
    apply_plan(migrated_engine, plan, environment=None, actor="test")
    assert scalar(migrated_engine, "SELECT price_monthly FROM plans WHERE slug='test-plan'") == pytest.approx(29.5)


def test_nested_sector_rename_is_one_delete_and_one_create(config_tree, migrated_engine):
    apply_config(migrated_engine, config_tree.root, actor="test")
    config_tree.test_industry(sector="renamed")
    plan = make_plan(migrated_engine, config_tree.root).plan
    sectors = sorted((c.action, c.name) for c in plan.changes if c.kind == "IndustrySector")
    assert sectors == [("create", "test-industry/renamed"), ("delete", "test-industry/first")]
    keywords = sorted((c.action, c.name) for c in plan.changes if c.kind == "SeedKeyword")
    assert ("create", "test-industry/renamed/alpha one") in keywords
    assert ("delete", "test-industry/first/alpha one") in keywords
    # Creates come before deletes, and children are deleted before their parents.
    kinds_in_order = [c.kind for c in plan.changes if c.action == "delete"]
    assert kinds_in_order.index("SeedKeyword") < kinds_in_order.index("IndustrySector")
    apply_plan(migrated_engine, plan, environment=None, actor="test")
    assert make_plan(migrated_engine, config_tree.root).plan.changes == []


def test_drift_is_flagged_and_restored(config_tree, migrated_engine):
    apply_config(migrated_engine, config_tree.root, actor="test")
    with migrated_engine.begin() as conn:
        conn.execute(text("UPDATE plans SET max_sites = 99 WHERE slug = 'test-plan'"))
    plan = make_plan(migrated_engine, config_tree.root).plan
    [change] = plan.changes
    assert (change.kind, change.name, change.cause) == ("Plan", "test-plan", "drift")
    assert [(f.field, f.before, f.after) for f in change.fields] == [("max_sites", 99, 2)]
    assert "drift: edited outside cplane" in render_text(plan)
    assert "**(drift)**" in render_markdown(plan)
    apply_plan(migrated_engine, plan, environment=None, actor="test")
    assert scalar(migrated_engine, "SELECT max_sites FROM plans WHERE slug='test-plan'") == 2


def test_hand_inserted_row_is_unmanaged_and_untouched_until_adopted(config_tree, migrated_engine):
    apply_config(migrated_engine, config_tree.root, actor="test")
    with migrated_engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO credit_packages (slug, name, description, credits, bonus_credits, price, currency, "
            "is_featured, sort_order, is_active) VALUES ('hand-made', 'Hand', '', 5, 0, 1.00, 'USD', false, 0, true)"
        ))
    plan = make_plan(migrated_engine, config_tree.root).plan
    assert plan.changes == []
    assert {"kind": "CreditPackage", "name": "hand-made", "reason": "not in config and not managed by cplane"} in plan.unmanaged
    assert "Unmanaged rows" in render_text(plan)
    config_tree.write("credit_packages/hand-made.yaml", """\
        apiVersion: cplane/v1
        kind: CreditPackage
        metadata: {name: hand-made}
        spec: {displayName: Hand Made, credits: 50, price: 5}
    """)
    # The same natural key added to config: a pending adopt change, which apply refuses without --adopt.
    plan = make_plan(migrated_engine, config_tree.root).plan
    [change] = plan.changes
    assert (change.action, change.name) == ("adopt", "hand-made")
    assert ("credits", 5, 50) in [(f.field, f.before, f.after) for f in change.fields]
    assert not any(u["name"] == "hand-made" for u in plan.unmanaged)
    with pytest.raises(CplaneError, match="CreditPackage/hand-made.*--adopt"):
        apply_plan(migrated_engine, plan, environment=None, actor="test")
    assert scalar(migrated_engine, "SELECT credits FROM credit_packages WHERE slug='hand-made'") == 5
    adopted = make_plan(migrated_engine, config_tree.root, adopt=True).plan
    [change] = adopted.changes
    assert (change.action, change.name) == ("adopt", "hand-made")
    apply_plan(migrated_engine, adopted, environment=None, actor="test")
    assert scalar(migrated_engine, "SELECT credits FROM credit_packages WHERE slug='hand-made'") == 50
    assert make_plan(migrated_engine, config_tree.root).plan.changes == []


def _subscribe(engine, plan_slug: str) -> None:
    account_id = uuid.uuid4()
    with engine.begin() as conn:
        plan_id = conn.execute(text("SELECT id FROM plans WHERE slug = :s"), {"s": plan_slug}).scalar_one()
        conn.execute(insert(Account.__table__), {"id": account_id, "name": "Acme", "plan_id": plan_id,
                                                 "billing_email": "billing@acme.test"})


def test_removed_plan_with_subscribers_is_retired_not_deleted(config_tree, migrated_engine):
    apply_config(migrated_engine, config_tree.root, actor="test")
    _subscribe(migrated_engine, "test-plan")
    config_tree.remove("plans/test-plan.yaml")
    config_tree.remove("policies/retire-approval.yaml")  # retiring by removal itself is what this tests
    plan = make_plan(migrated_engine, config_tree.root).plan
    [change] = plan.changes
    assert (change.action, change.name) == ("retire", "test-plan")
    assert change.impact == {"accounts on this plan": 1}
    assert "1 accounts on this plan" in change.reason
    apply_plan(migrated_engine, plan, environment=None, actor="test")
    assert scalar(migrated_engine, "SELECT is_active FROM plans WHERE slug='test-plan'") in (False, 0)
    assert count(migrated_engine, "accounts") == 1
    # Retired and still referenced: nothing more to do.
    assert make_plan(migrated_engine, config_tree.root).plan.changes == []


def test_prevent_destroy_fails_the_plan(config_tree, migrated_engine):
    config_tree.test_plan(annotations='{"cplane/prevent-destroy": "true"}')
    apply_config(migrated_engine, config_tree.root, actor="test")
    config_tree.remove("plans/test-plan.yaml")
    plan = make_plan(migrated_engine, config_tree.root).plan
    assert plan.errors and "prevent-destroy" in plan.errors[0] and "Plan/test-plan" in plan.errors[0]
    result = cli("plan", "--config", str(config_tree.root), "--database-url", str(migrated_engine.url.render_as_string(False)))
    assert result.exit_code == 1
    with pytest.raises(CplaneError):
        apply_plan(migrated_engine, plan, environment=None, actor="test")
    assert scalar(migrated_engine, "SELECT count(*) FROM plans WHERE slug='test-plan'") == 1


def test_unreferenced_removed_object_is_deleted(config_tree, migrated_engine):
    apply_config(migrated_engine, config_tree.root, actor="test")
    config_tree.remove("plans/test-plan.yaml")
    plan = make_plan(migrated_engine, config_tree.root).plan
    assert [(c.action, c.name) for c in plan.changes] == [("delete", "test-plan")]
    apply_plan(migrated_engine, plan, environment=None, actor="test")
    assert scalar(migrated_engine, "SELECT count(*) FROM plans WHERE slug='test-plan'") == 0
    assert scalar(migrated_engine, "SELECT count(*) FROM cplane_managed_objects WHERE name='test-plan'") == 0


def test_saved_plan_refused_when_database_moved(config_tree, migrated_engine, tmp_path):
    url = migrated_engine.url.render_as_string(hide_password=False)
    apply_config(migrated_engine, config_tree.root, actor="test")
    config_tree.test_plan(price="39")
    planfile = tmp_path / "plan.json"
    made = cli("plan", "--config", str(config_tree.root), "--database-url", url, "--out", str(planfile))
    assert made.exit_code == 0, made.output
    with migrated_engine.begin() as conn:
        conn.execute(text("UPDATE plans SET name = 'Edited' WHERE slug = 'test-plan'"))
    refused = cli("apply", str(planfile), "--database-url", url, "--auto-approve")
    assert refused.exit_code == 1
    assert "Plan/test-plan (changed)" in refused.output and "refusing to apply" in refused.output
    assert scalar(migrated_engine, "SELECT price_monthly FROM plans WHERE slug='test-plan'") == pytest.approx(19)

    with migrated_engine.begin() as conn:
        conn.execute(text("UPDATE plans SET name = 'Test Plan' WHERE slug = 'test-plan'"))
    accepted = cli("apply", str(planfile), "--database-url", url, "--auto-approve")
    assert accepted.exit_code == 0, accepted.output
    assert scalar(migrated_engine, "SELECT price_monthly FROM plans WHERE slug='test-plan'") == pytest.approx(39)


def test_apply_fails_fast_while_another_holds_the_lock(config_tree, pg_engine):
    plan = make_plan(pg_engine, config_tree.root).plan
    with pg_engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": 0x63706C616E65})
        with pytest.raises(ApplyLocked, match="another cplane apply is in progress"):
            apply_plan(pg_engine, plan, environment=None, actor="test")
        holder.rollback()
    assert count(pg_engine, "plans") == 0
    apply_plan(pg_engine, plan, environment=None, actor="test")
    assert count(pg_engine, "plans") > 0


def test_missing_secret_is_an_error_in_production_and_a_warning_elsewhere(config_tree, migrated_engine, monkeypatch):
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    with pytest.raises(CplaneError, match="STRIPE_SECRET_KEY"):
        make_plan(migrated_engine, config_tree.root, require_secrets=True)
    with pytest.raises(CplaneError, match="STRIPE_SECRET_KEY"):
        make_plan(migrated_engine, config_tree.root, environment="production")
    assert count(migrated_engine, "plans") == 0
    plan = make_plan(migrated_engine, config_tree.root).plan
    assert any("STRIPE_SECRET_KEY" in w for w in plan.warnings)
    apply_plan(migrated_engine, plan, environment=None, actor="test")
    assert scalar(migrated_engine, "SELECT secret_key_encrypted FROM payment_method_configs WHERE slug='stripe'") is None


def test_secrets_never_appear_in_outputs_or_audit(config_tree, migrated_engine, monkeypatch, tmp_path):
    secret = "sk_live_RECOGNIZABLE_" + uuid.uuid4().hex
    monkeypatch.setenv("STRIPE_SECRET_KEY", secret)
    monkeypatch.setenv("OPENAI_API_KEY", secret + "_openai")
    url = migrated_engine.url.render_as_string(hide_password=False)
    outputs = []
    for fmt in ("text", "markdown", "json"):
        outputs.append(cli("plan", "--config", str(config_tree.root), "--database-url", url, "--format", fmt).output)
    planfile = tmp_path / "p.json"
    cli("plan", "--config", str(config_tree.root), "--database-url", url, "--out", str(planfile))
    outputs.append(planfile.read_text())
    outputs.append(cli("apply", "--config", str(config_tree.root), "--database-url", url, "--auto-approve").output)
    monkeypatch.setenv("STRIPE_SECRET_KEY", secret + "_rotated")
    outputs.append(cli("plan", "--config", str(config_tree.root), "--database-url", url).output)
    outputs.append(cli("history", "--database-url", url, "--format", "json").output)
    outputs.append(cli("status", "--config", str(config_tree.root), "--database-url", url, "--format", "json").output)
    assert "(sensitive)" in outputs[0]
    assert "secret_key_encrypted: \"(sensitive) (changed)\" → \"(sensitive)\"" in outputs[-3]
    with migrated_engine.connect() as conn:
        outputs.append(json.dumps([dict(r._mapping) for r in conn.execute(select(ApplyRun.__table__))], default=str))
        outputs.append(json.dumps([dict(r._mapping) for r in conn.execute(select(ManagedObject.__table__))], default=str))
        outputs.append(json.dumps([dict(r._mapping) for r in conn.execute(text("SELECT * FROM payment_method_configs"))], default=str))
        outputs.append(json.dumps([dict(r._mapping) for r in conn.execute(text("SELECT * FROM ai_integration_settings"))], default=str))
    for out in outputs:
        assert "RECOGNIZABLE" not in out


def test_prompt_version_increments_and_history_is_kept(config_tree, migrated_engine):
    config_tree.write("prompts/zz-test.yaml", """\
        apiVersion: cplane/v1
        kind: Prompt
        metadata: {name: zz_test}
        spec: {displayName: Test prompt, text: "Write about {topic}.", variables: [topic]}
    """)
    apply_config(migrated_engine, config_tree.root, actor="test")
    assert scalar(migrated_engine, "SELECT version FROM global_ai_prompts WHERE prompt_type='zz_test'") == 1
    config_tree.write("prompts/zz-test.yaml", """\
        apiVersion: cplane/v1
        kind: Prompt
        metadata: {name: zz_test}
        spec: {displayName: Test prompt, text: "Write well about {topic}.", variables: [topic]}
    """)
    apply_config(migrated_engine, config_tree.root, actor="test")
    assert scalar(migrated_engine, "SELECT version FROM global_ai_prompts WHERE prompt_type='zz_test'") == 2
    with migrated_engine.connect() as conn:
        history = conn.execute(text(
            "SELECT v.version, v.text FROM global_ai_prompt_versions v JOIN global_ai_prompts p ON p.id = v.prompt_id "
            "WHERE p.prompt_type = 'zz_test' ORDER BY v.version"
        )).all()
    assert [tuple(h) for h in history] == [(1, "Write about {topic}."), (2, "Write well about {topic}.")]
    # A description-only change does not bump the version.
    config_tree.write("prompts/zz-test.yaml", """\
        apiVersion: cplane/v1
        kind: Prompt
        metadata: {name: zz_test}
        spec: {displayName: Test prompt, description: now described, text: "Write well about {topic}.", variables: [topic]}
    """)
    apply_config(migrated_engine, config_tree.root, actor="test")
    assert scalar(migrated_engine, "SELECT version FROM global_ai_prompts WHERE prompt_type='zz_test'") == 2


def test_plan_json_is_versioned_and_round_trips(config_tree, migrated_engine):
    plan = make_plan(migrated_engine, config_tree.root).plan
    data = json.loads(planfile.dumps(plan))
    assert data["format_version"] == 2
    assert data["summary"]["create"] == len(plan.changes)
    again = planfile.from_dict(data)
    assert json.loads(planfile.dumps(again)) == json.loads(planfile.dumps(plan))
    # The planfile owns the types: what is read back is the plan that was written (decimals included).
    assert again.changes == plan.changes
    with pytest.raises(ValueError, match="format_version"):
        planfile.from_dict({**data, "format_version": 99})


def test_invalid_config_plans_nothing(config_tree, migrated_engine):
    config_tree.write("plans/broken.yaml", "apiVersion: cplane/v1\nkind: Plan\nmetadata: {name: broken}\nspec: {priceMontly: 1}\n")
    result = cli("plan", "--config", str(config_tree.root), "--database-url", migrated_engine.url.render_as_string(False))
    assert result.exit_code == 1
    assert "plans/broken.yaml:4:" in result.output
    assert count(migrated_engine, "plans") == 0


def test_impact_counts_user_rows_behind_a_change(config_tree, migrated_engine):
    from control_plane.db.models import AIPrompt, Subscription

    apply_config(migrated_engine, config_tree.root, actor="test")
    _subscribe(migrated_engine, "test-plan")
    with migrated_engine.begin() as conn:
        account_id = conn.execute(select(Account.id)).scalar_one()
        plan_id = conn.execute(text("SELECT id FROM plans WHERE slug = 'test-plan'")).scalar_one()
        prompt_id = conn.execute(text("SELECT id FROM global_ai_prompts WHERE slug = 'rewrite'")).scalar_one()
        conn.execute(insert(Subscription.__table__), [
            {"id": uuid.uuid4(), "account_id": account_id, "plan_id": plan_id, "status": "active", "billing_cycle": "monthly"},
            {"id": uuid.uuid4(), "account_id": account_id, "plan_id": plan_id, "status": "cancelled", "billing_cycle": "monthly"},
        ])
        conn.execute(insert(AIPrompt.__table__), {"id": uuid.uuid4(), "account_id": account_id, "prompt_type": "rewrite",
                                                  "text": "My own rewrite prompt", "global_prompt_id": prompt_id,
                                                  "based_on_global_version": 1})
    config_tree.test_plan(price="25")
    rewrite = config_tree.root / "prompts"
    path = next(p for p in rewrite.glob("*.yaml") if "name: rewrite" in p.read_text())
    path.write_text(path.read_text().replace("text: |", "text: |\n    Keep the author's voice.", 1))
    plan = make_plan(migrated_engine, config_tree.root).plan
    changes = {(c.kind, c.name): c for c in plan.changes}
    assert changes[("Plan", "test-plan")].impact == {"accounts on this plan": 1, "active subscriptions": 1}
    assert changes[("Prompt", "rewrite")].impact == {"accounts that customized this prompt": 1}
    assert "impact: 1 accounts on this plan, 1 active subscriptions" in render_text(plan)


def test_parent_of_a_kept_child_is_retired_not_deleted(config_tree, migrated_engine):
    """Removing an industry whose sector is in use (or has a hand-made child) must not cascade."""
    from control_plane.db.models import Sector, Site

    apply_config(migrated_engine, config_tree.root, actor="test")
    with migrated_engine.begin() as conn:
        sector_id = conn.execute(text(
            "SELECT s.id FROM industry_sectors s JOIN industries i ON i.id = s.industry_id "
            "WHERE i.slug = 'test-industry' AND s.slug = 'first'")).scalar_one()
    _subscribe(migrated_engine, "test-plan")
    with migrated_engine.begin() as conn:
        account_id = conn.execute(select(Account.id)).scalar_one()
        site_id = uuid.uuid4()
        conn.execute(insert(Site.__table__), {"id": site_id, "account_id": account_id, "name": "Blog", "domain": "b.example"})
        conn.execute(insert(Sector.__table__), {"id": uuid.uuid4(), "account_id": account_id, "site_id": site_id,
                                                "name": "Mine", "industry_sector_id": sector_id})
    config_tree.remove("industries/test-industry.yaml")
    plan = make_plan(migrated_engine, config_tree.root).plan
    actions = {(c.kind, c.name): c.action for c in plan.changes}
    assert actions[("IndustrySector", "test-industry/first")] == "retire"
    assert actions[("IndustrySector", "test-industry/second")] == "delete"
    assert actions[("Industry", "test-industry")] == "retire"
    assert actions[("SeedKeyword", "test-industry/first/alpha one")] == "delete"
    apply_plan(migrated_engine, plan, environment=None, actor="test")
    assert scalar(migrated_engine, "SELECT is_active FROM industries WHERE slug = 'test-industry'") in (False, 0)
    assert count(migrated_engine, "sectors") == 1
    # Nothing more to do while the sector is in use.
    assert make_plan(migrated_engine, config_tree.root).plan.changes == []


def test_account_seed_keywords_keep_their_sector(config_tree, migrated_engine):
    """seed_keywords is mixed: an account's own keyword in a sector is user data the sector must keep."""
    from control_plane.db.models import SeedKeyword

    apply_config(migrated_engine, config_tree.root, actor="test")
    _subscribe(migrated_engine, "test-plan")
    with migrated_engine.begin() as conn:
        account_id = conn.execute(select(Account.id)).scalar_one()
        industry_id, sector_id = conn.execute(text(
            "SELECT i.id, s.id FROM industry_sectors s JOIN industries i ON i.id = s.industry_id "
            "WHERE i.slug = 'test-industry' AND s.slug = 'second'")).one()
        conn.execute(insert(SeedKeyword.__table__), {"account_id": account_id, "industry_id": industry_id,
                                                     "sector_id": sector_id, "keyword": "my own keyword"})
    config_tree.test_industry()  # unchanged...
    path = config_tree.root / "industries" / "test-industry.yaml"
    path.write_text(path.read_text().split("    - name: second")[0])  # ...but without its second sector
    plan = make_plan(migrated_engine, config_tree.root).plan
    actions = {(c.kind, c.name): c for c in plan.changes}
    sector = actions[("IndustrySector", "test-industry/second")]
    assert sector.action == "retire" and sector.impact == {"account seed keywords": 1}
    assert actions[("SeedKeyword", "test-industry/second/beta one")].action == "delete"
    apply_plan(migrated_engine, plan, environment=None, actor="test")
    assert scalar(migrated_engine, "SELECT count(*) FROM seed_keywords WHERE account_id IS NOT NULL") == 1
