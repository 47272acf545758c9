"""What a reviewer reads is what apply does (issue 12, items 2, 3, 4 and 7): collisions with rows
cplane did not create are adopt changes; saved plans are signed and bound to their database and
environment, and are their own approval; a database is bound to its environment; a prompt's
version changes only with new text."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import text

from control_plane.cli.main import main
from control_plane.db.engine import make_engine, upgrade
from control_plane.reconcile.controller import apply_config

SECRETS = {
    "STRIPE_SECRET_KEY": "sk_test_trust",
    "STRIPE_WEBHOOK_SECRET": "whsec_trust",
    "PAYPAL_CLIENT_SECRET": "paypal_trust",
    "PAYPAL_WEBHOOK_ID": "paypal_webhook_trust",
    "OPENAI_API_KEY": "sk-openai-trust",
    "RUNWARE_API_KEY": "runware-trust",
}

HAND_MADE = """\
    apiVersion: cplane/v1
    kind: CreditPackage
    metadata: {name: hand-made}
    spec: {displayName: Hand Made, credits: 50, price: 5}
"""


def cli(*args: str):
    # CliRunner's stdin is not a terminal: what CI sees.
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def url_of(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def scalar(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def runs(engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT kind, environment_change FROM cplane_apply_runs ORDER BY id"))]


def one_line_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


# --- item 2: collisions are changes ---------------------------------------------------------------


def test_config_object_matching_an_unmanaged_row_is_an_adopt_change(config_tree, migrated_engine):
    url = url_of(migrated_engine)
    c = ("--config", str(config_tree.root), "--database-url", url)
    apply_config(migrated_engine, config_tree.root, actor="test")
    with migrated_engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO credit_packages (slug, name, description, credits, bonus_credits, price, currency, "
            "is_featured, sort_order, is_active) VALUES ('hand-made', 'Hand', '', 5, 0, 1.00, 'USD', false, 0, true)"
        ))
    config_tree.write("credit_packages/hand-made.yaml", HAND_MADE)
    before = runs(migrated_engine)

    plan = cli("plan", *c, "--detailed-exitcode")
    assert plan.exit_code == 2, plan.output
    assert "CreditPackage/hand-made will be adopted" in plan.output
    assert "< CreditPackage/hand-made" in plan.output
    assert "credits" in plan.output and "price" in plan.output
    assert "No changes" not in plan.output
    data = json.loads(cli("plan", *c, "--format", "json").stdout)
    [change] = data["changes"]
    assert (change["kind"], change["name"], change["action"]) == ("CreditPackage", "hand-made", "adopt")
    assert {"field": "credits", "before": 5, "after": 50} in change["fields"]
    assert {"field": "price", "before": "1.00", "after": "5.00"} in change["fields"]

    status = cli("status", *c, "--format", "json")
    assert status.exit_code == 2, status.output
    info = json.loads(status.stdout)
    assert info["in_sync"] is False and info["adopt"] == 1

    refused = cli("apply", *c, "--auto-approve")
    assert refused.exit_code == 1
    assert "CreditPackage/hand-made" in one_line_error(refused) and "--adopt" in one_line_error(refused)
    assert scalar(migrated_engine, "SELECT credits FROM credit_packages WHERE slug='hand-made'") == 5
    assert runs(migrated_engine) == before

    adopted = cli("apply", *c, "--auto-approve", "--adopt")
    assert adopted.exit_code == 0, adopted.output
    assert scalar(migrated_engine, "SELECT credits FROM credit_packages WHERE slug='hand-made'") == 50
    assert runs(migrated_engine)[-1] == ("adopt", "")
    again = cli("plan", *c, "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    assert "No changes" in again.output
    assert cli("status", *c).exit_code == 0


def test_a_saved_plan_with_adoptions_needs_adopt_on_the_plan_or_the_apply(config_tree, migrated_engine, tmp_path):
    url = url_of(migrated_engine)
    c = ("--config", str(config_tree.root), "--database-url", url)
    apply_config(migrated_engine, config_tree.root, actor="test")
    with migrated_engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO credit_packages (slug, name, description, credits, bonus_credits, price, currency, "
            "is_featured, sort_order, is_active) VALUES ('hand-made', 'Hand', '', 5, 0, 1.00, 'USD', false, 0, true)"
        ))
    config_tree.write("credit_packages/hand-made.yaml", HAND_MADE)
    unapproved, approved = tmp_path / "plain.json", tmp_path / "adopt.json"
    assert cli("plan", *c, "--out", str(unapproved)).exit_code == 0
    assert cli("plan", *c, "--adopt", "--out", str(approved)).exit_code == 0
    refused = cli("apply", str(unapproved), "--database-url", url)
    assert refused.exit_code == 1 and "--adopt" in one_line_error(refused)
    assert scalar(migrated_engine, "SELECT credits FROM credit_packages WHERE slug='hand-made'") == 5
    applied = cli("apply", str(approved), "--database-url", url)
    assert applied.exit_code == 0, applied.output
    assert scalar(migrated_engine, "SELECT credits FROM credit_packages WHERE slug='hand-made'") == 50
    assert runs(migrated_engine)[-1] == ("saved-plan+adopt", "")


# --- item 3: signed, bound plans -------------------------------------------------------------------


@pytest.fixture
def saved_plan(config_tree, migrated_engine, tmp_path):
    """The test config applied, then a price change planned and saved: (planfile, config args, url)."""
    url = url_of(migrated_engine)
    c = ("--config", str(config_tree.root), "--database-url", url)
    apply_config(migrated_engine, config_tree.root, actor="test")
    config_tree.test_plan(price="96")
    planfile = tmp_path / "plan.json"
    made = cli("plan", *c, "--out", str(planfile))
    assert made.exit_code == 0, made.output
    return planfile, url


def price(engine) -> str:
    return str(scalar(engine, "SELECT price_monthly FROM plans WHERE slug='test-plan'"))


def test_a_fresh_saved_plan_applies_without_confirmation_off_a_terminal(saved_plan, migrated_engine):
    planfile, url = saved_plan
    data = json.loads(planfile.read_text())
    assert data["format_version"] == 2 and data["digest"].startswith("sha256:")
    assert data["database"]["lineage"] == scalar(migrated_engine, "SELECT lineage FROM cplane_database")
    assert data["database"]["dialect"] == migrated_engine.dialect.name
    assert data["cplane_version"] and data["config_digest"] and "environment" in data
    applied = cli("apply", str(planfile), "--database-url", url)
    assert applied.exit_code == 0, applied.output
    assert "Apply complete" in applied.output
    assert price(migrated_engine).startswith("96")
    assert runs(migrated_engine)[-1] == ("saved-plan", "")


def test_a_saved_plan_with_one_value_edited_is_refused(saved_plan, migrated_engine):
    planfile, url = saved_plan
    data = json.loads(planfile.read_text())
    [change] = [c for c in data["changes"] if c["name"] == "test-plan"]
    assert Decimal(change["values"]["price_monthly"]) == 96
    change["values"]["price_monthly"] = "1.00"
    planfile.write_text(json.dumps(data, indent=2))
    before = runs(migrated_engine)
    refused = cli("apply", str(planfile), "--database-url", url, "--auto-approve")
    assert refused.exit_code == 1
    assert "does not match its digest" in one_line_error(refused)
    assert price(migrated_engine).startswith("19")
    assert runs(migrated_engine) == before


def test_a_saved_plan_of_an_older_format_is_refused(saved_plan, migrated_engine):
    planfile, url = saved_plan
    data = json.loads(planfile.read_text())
    data["format_version"] = 1
    planfile.write_text(json.dumps(data))
    refused = cli("apply", str(planfile), "--database-url", url)
    assert refused.exit_code == 1 and "format_version 1" in one_line_error(refused)
    assert price(migrated_engine).startswith("19")


def test_a_saved_plan_for_another_environment_is_refused(saved_plan, migrated_engine):
    planfile, url = saved_plan
    refused = cli("apply", str(planfile), "--database-url", url, "--env", "staging")
    assert refused.exit_code == 1
    line = one_line_error(refused)
    assert "made for environment no environment" not in line
    assert "no environment" in line and "'staging'" in line
    assert price(migrated_engine).startswith("19")


def test_a_saved_plan_applied_to_another_database_is_refused(config_tree, pg_url_factory, tmp_path, engine_for):
    """The same config applied to three databases (two PostgreSQL, one SQLite): a plan made against
    the first applies to neither of the others, and nothing is written to them."""
    first, second = engine_for(pg_url_factory()), engine_for(pg_url_factory())
    third = engine_for(f"sqlite:///{tmp_path / 'other.db'}")
    for engine in (first, second, third):
        upgrade(engine)
        apply_config(engine, config_tree.root, actor="test")
    config_tree.test_plan(price="96")
    planfile = tmp_path / "plan.json"
    assert cli("plan", "--config", str(config_tree.root), "--database-url", url_of(first), "--out", str(planfile)).exit_code == 0

    same_dialect = cli("apply", str(planfile), "--database-url", url_of(second))
    assert same_dialect.exit_code == 1
    assert "another database (lineage" in one_line_error(same_dialect)
    other_dialect = cli("apply", str(planfile), "--database-url", url_of(third))
    assert other_dialect.exit_code == 1
    assert "a postgresql database; this one is sqlite" in one_line_error(other_dialect)
    for engine in (second, third):
        assert price(engine).startswith("19")
        assert len(runs(engine)) == 1
    assert cli("apply", str(planfile), "--database-url", url_of(first)).exit_code == 0
    assert price(first).startswith("96")


def test_every_database_has_its_own_lineage_and_reading_it_writes_nothing(db_url, tmp_path):
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        lineage = scalar(engine, "SELECT lineage FROM cplane_database")
        assert len(lineage) == 36
        upgrade(engine)
        assert scalar(engine, "SELECT count(*) FROM cplane_database") == 1
        assert scalar(engine, "SELECT lineage FROM cplane_database") == lineage
    finally:
        engine.dispose()
    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        upgrade(other)
        assert scalar(other, "SELECT lineage FROM cplane_database") != lineage
    finally:
        other.dispose()


# --- item 4: environments bound to databases -------------------------------------------------------


def test_a_database_applied_in_production_refuses_another_environment(config_tree, migrated_engine, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CPLANE_SECRET_KEY", Fernet.generate_key().decode())  # production needs a proper key
    url = url_of(migrated_engine)
    c = ("--config", str(config_tree.root), "--database-url", url)
    first = cli("apply", *c, "--env", "production", "--auto-approve")
    assert first.exit_code == 0, first.output
    assert scalar(migrated_engine, "SELECT environment FROM cplane_database") == "production"
    written = runs(migrated_engine)

    staging = cli("plan", *c, "--env", "staging")
    assert staging.exit_code == 1
    line = one_line_error(staging)
    assert "'production'" in line and "'staging'" in line and "--allow-environment-change" in line
    none = cli("plan", *c)
    assert none.exit_code == 1 and "'production'" in one_line_error(none) and "no environment" in one_line_error(none)
    applying = cli("apply", *c, "--env", "staging", "--auto-approve")
    assert applying.exit_code == 1 and "'staging'" in one_line_error(applying)
    assert runs(migrated_engine) == written
    assert cli("plan", *c, "--env", "production", "--detailed-exitcode").exit_code == 0

    allowed = cli("plan", *c, "--env", "staging", "--allow-environment-change")
    assert allowed.exit_code == 0, allowed.output
    changed = cli("apply", *c, "--env", "staging", "--allow-environment-change", "--auto-approve")
    assert changed.exit_code == 0, changed.output
    assert scalar(migrated_engine, "SELECT environment FROM cplane_database") == "staging"
    assert runs(migrated_engine)[-1] == ("apply", "production -> staging")


def test_a_database_applied_without_an_environment_takes_the_first_one_given(config_tree, migrated_engine, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CPLANE_SECRET_KEY", Fernet.generate_key().decode())  # production needs a proper key
    url = url_of(migrated_engine)
    c = ("--config", str(config_tree.root), "--database-url", url)
    assert cli("apply", *c, "--auto-approve").exit_code == 0
    assert scalar(migrated_engine, "SELECT environment FROM cplane_database") is None
    assert cli("apply", *c, "--env", "staging", "--auto-approve").exit_code == 0
    assert scalar(migrated_engine, "SELECT environment FROM cplane_database") == "staging"
    # No environment against a non-production database is allowed; another one is not.
    assert cli("plan", *c).exit_code == 0
    refused = cli("plan", *c, "--env", "production")
    assert refused.exit_code == 1 and "'staging'" in one_line_error(refused)


# --- item 7: versions only for new text ------------------------------------------------------------


def test_healing_a_prompt_edited_by_sql_keeps_its_version_and_customizations_current(rt_engine, client, tenant_a):
    prompt_type = "clustering"
    version = scalar(rt_engine, "SELECT version FROM global_ai_prompts WHERE slug = :t", t=prompt_type)
    customized = client.put(f"/v1/prompts/{prompt_type}", headers=tenant_a.headers, json={"text": "Our own clusters for {site_name} ({sector}, {language}): at most {max_clusters} from {keywords}"})
    assert customized.status_code == 200, customized.text
    assert customized.json()["based_on_global_version"] == version
    assert customized.json()["global_changed_since_customized"] is False

    with rt_engine.begin() as conn:
        conn.execute(text("UPDATE global_ai_prompts SET text = 'edited by hand' WHERE slug = :t"), {"t": prompt_type})
    from helpers import apply_repo_config

    apply_repo_config(rt_engine)  # heals the drift back to the stored text
    assert scalar(rt_engine, "SELECT text FROM global_ai_prompts WHERE slug = :t", t=prompt_type) != "edited by hand"
    assert scalar(rt_engine, "SELECT version FROM global_ai_prompts WHERE slug = :t", t=prompt_type) == version
    assert scalar(rt_engine, "SELECT max(v.version) FROM global_ai_prompt_versions v JOIN global_ai_prompts p "
                             "ON p.id = v.prompt_id WHERE p.slug = :t", t=prompt_type) == version
    after = client.get(f"/v1/prompts/{prompt_type}", headers=tenant_a.headers).json()
    assert after["global_version"] == version
    assert after["global_changed_since_customized"] is False


def test_new_text_after_drift_is_a_new_version(config_tree, migrated_engine):
    config_tree.write("prompts/zz-test.yaml", """\
        apiVersion: cplane/v1
        kind: Prompt
        metadata: {name: zz_test}
        spec: {displayName: Test prompt, text: "Write about {topic}.", variables: [topic]}
    """)
    apply_config(migrated_engine, config_tree.root, actor="test")
    with migrated_engine.begin() as conn:
        conn.execute(text("UPDATE global_ai_prompts SET text = 'by hand' WHERE prompt_type = 'zz_test'"))
    apply_config(migrated_engine, config_tree.root, actor="test")
    assert scalar(migrated_engine, "SELECT version FROM global_ai_prompts WHERE prompt_type='zz_test'") == 1
    config_tree.write("prompts/zz-test.yaml", """\
        apiVersion: cplane/v1
        kind: Prompt
        metadata: {name: zz_test}
        spec: {displayName: Test prompt, text: "Write well about {topic}.", variables: [topic]}
    """)
    with migrated_engine.begin() as conn:
        conn.execute(text("UPDATE global_ai_prompts SET text = 'by hand again' WHERE prompt_type = 'zz_test'"))
    apply_config(migrated_engine, config_tree.root, actor="test")
    assert scalar(migrated_engine, "SELECT version FROM global_ai_prompts WHERE prompt_type='zz_test'") == 2
    with migrated_engine.connect() as conn:
        history = conn.execute(text(
            "SELECT v.version, v.text FROM global_ai_prompt_versions v JOIN global_ai_prompts p ON p.id = v.prompt_id "
            "WHERE p.prompt_type = 'zz_test' ORDER BY v.version"
        )).all()
    assert [tuple(h) for h in history] == [(1, "Write about {topic}."), (2, "Write well about {topic}.")]
