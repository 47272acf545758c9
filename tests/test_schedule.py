"""Changes in time (issue 18): effective-dated objects, scheduled patches, Scheduled plans, stale
plans, the audit of scheduled changes, the catalog's upcoming changes, and rollback to a run.

The clock is set by the tests: `at=` in-process, CPLANE_NOW for the CLI."""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner
from helpers import TEST_PLAN
from sqlalchemy import insert, select, text

from control_plane.apply.execute import PlanStale
from control_plane.apply.run_rows import read_run_rows
from control_plane.cli.main import main
from control_plane.config.validate import load_config
from control_plane.db.models import Account, ApplyRun, Sector, Site
from control_plane.plans import planfile
from control_plane.reconcile.controller import apply_config, apply_due, apply_plan, make_plan
from control_plane.reconcile.rollback import make_rollback_plan
from control_plane.reconcile.timeline import rollback_hold
from control_plane.render.plan import render_markdown, render_text
from control_plane.state.live import read_live
from control_plane.state.schedule import parse_time

T = "2027-01-01T00:00:00Z"
BEFORE = "2026-12-31T23:00:00Z"
JUST_BEFORE = "2026-12-31T23:59:59Z"
AFTER = "2027-01-01T00:00:01Z"

PRICE_SCHEDULE = f"""\
schedule:
  - at: {T}
    patch:
      priceMonthly: 29
"""


def cli(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def scalar(engine, sql, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def subscribe(engine, plan_slug: str) -> uuid.UUID:
    account_id = uuid.uuid4()
    with engine.begin() as conn:
        plan_id = conn.execute(text("SELECT id FROM plans WHERE slug = :s"), {"s": plan_slug}).scalar_one()
        conn.execute(insert(Account.__table__), {"id": account_id, "name": "Acme", "plan_id": plan_id,
                                                 "billing_email": "billing@acme.test"})
    return account_id


def scheduled_plan(tree, schedule: str = PRICE_SCHEDULE) -> None:
    # Approved: the shipped price-change-approval policy asks it of the +53% patch these tests schedule.
    tree.write("plans/test-plan.yaml", TEST_PLAN.format(price="19", annotations="{cplane/approved-by: test}") + schedule)


def test_price_patch_is_scheduled_then_due_then_applied_and_audited(config_tree, migrated_engine):
    scheduled_plan(config_tree)
    first = apply_config(migrated_engine, config_tree.root, actor="test", at=BEFORE)
    assert first.applied
    subscribe(migrated_engine, "test-plan")
    assert scalar(migrated_engine, "SELECT price_monthly FROM plans WHERE slug = 'test-plan'") == 19

    before = make_plan(migrated_engine, config_tree.root, at=JUST_BEFORE).plan
    assert before.changes == [] and not before.has_changes
    assert before.valid_until == T
    [step] = before.scheduled
    assert step.at == T and any("schedule[0]" in e for e in step.entries)
    [change] = step.changes
    assert (change.kind, change.name, change.action) == ("Plan", "test-plan", "update")
    assert [(f.field, f.before, f.after) for f in change.fields] == [("price_monthly", "19.00", "29.00")]
    assert change.impact == {"accounts on this plan": 1}
    text_plan = render_text(before)
    assert f'at {T}: ~ Plan/test-plan price_monthly: "19.00" → "29.00"' in text_plan
    assert "impact: 1 accounts on this plan" in text_plan
    assert "No changes." in text_plan
    assert "#### Scheduled" in render_markdown(before)
    # Applying before T applies nothing for it.
    assert not apply_config(migrated_engine, config_tree.root, actor="test", at=JUST_BEFORE).applied
    assert scalar(migrated_engine, "SELECT price_monthly FROM plans WHERE slug = 'test-plan'") == 19

    due = make_plan(migrated_engine, config_tree.root, at=AFTER).plan
    assert [(c.kind, c.name, c.action) for c in due.changes] == [("Plan", "test-plan", "update")]
    assert due.scheduled == [] and due.valid_until == ""
    assert due.schedule_applied[0]["at"] == T
    assert due.schedule_applied[0]["changes"] == ["Plan/test-plan price_monthly"]
    result = apply_config(migrated_engine, config_tree.root, actor="test", at=AFTER)
    assert result.applied
    assert scalar(migrated_engine, "SELECT price_monthly FROM plans WHERE slug = 'test-plan'") == 29
    with migrated_engine.connect() as conn:
        stored = conn.execute(select(ApplyRun.plan).where(ApplyRun.id == result.apply_run_id)).scalar_one()
    [entry] = stored["schedule_applied"]
    assert entry["at"] == T and "plans/test-plan.yaml" in entry["entries"][0] and "schedule[0]" in entry["entries"][0]
    assert make_plan(migrated_engine, config_tree.root, at=AFTER).plan.changes == []


def test_plan_at_shows_the_future_as_due(config_tree, migrated_engine):
    scheduled_plan(config_tree)
    apply_config(migrated_engine, config_tree.root, actor="test", at=BEFORE)
    url = migrated_engine.url.render_as_string(hide_password=False)
    env = {"CPLANE_NOW": BEFORE}
    now = cli("plan", "--config", str(config_tree.root), "--database-url", url, "--detailed-exitcode", env=env)
    assert now.exit_code == 0, now.output
    assert "Scheduled changes" in now.output and f"at {T}: ~ Plan/test-plan" in now.output
    then = cli("plan", "--config", str(config_tree.root), "--database-url", url, "--at", T, "--detailed-exitcode",
               env=env)
    assert then.exit_code == 2, then.output
    assert "~ Plan/test-plan" in then.output and '"19.00" → "29.00"' in then.output
    assert "Scheduled changes" not in then.output
    bad = cli("plan", "--config", str(config_tree.root), "--database-url", url, "--at", "2027-01-01T00:00:00")
    assert bad.exit_code == 1 and "has no zone" in bad.output


def test_saved_plan_applied_after_its_scheduled_time_is_stale(config_tree, migrated_engine, tmp_path, monkeypatch):
    scheduled_plan(config_tree)
    apply_config(migrated_engine, config_tree.root, actor="test", at=BEFORE)
    config_tree.write("plans/free-extra.yaml", TEST_PLAN.replace("test-plan", "extra-plan").format(price="5", annotations="{}"))
    saved = tmp_path / "plan.json"
    planfile.write_plan(make_plan(migrated_engine, config_tree.root, at=JUST_BEFORE).plan, saved)
    plan = planfile.read_plan(saved)
    assert plan.valid_until == T and plan.changes
    monkeypatch.setenv("CPLANE_NOW", AFTER)
    with pytest.raises(PlanStale, match="stale.*changed at 2027-01-01T00:00:00Z"):
        apply_plan(migrated_engine, plan, environment=None, actor="test", saved=True)
    assert scalar(migrated_engine, "SELECT count(*) FROM plans WHERE slug = 'extra-plan'") == 0
    # A plan made for a later time is not applied early either.
    future = make_plan(migrated_engine, config_tree.root, at=AFTER).plan
    monkeypatch.setenv("CPLANE_NOW", BEFORE)
    with pytest.raises(PlanStale, match="later than now"):
        apply_plan(migrated_engine, future, environment=None, actor="test")
    # Before T the saved plan holds.
    monkeypatch.setenv("CPLANE_NOW", JUST_BEFORE)
    assert apply_plan(migrated_engine, plan, environment=None, actor="test", saved=True).applied


PACKAGE = """\
apiVersion: cplane/v1
kind: CreditPackage
metadata:
  name: black-friday
  effectiveFrom: 2026-11-27T00:00:00Z
  effectiveUntil: 2026-11-30T00:00:00Z
  labels: {pricing: promotional}             # a deal: exempt from the price-per-credit ladder
  annotations: {cplane/approved-by: test}    # retiring it with purchases needs an approval
spec:
  displayName: Black Friday pack
  credits: 10000
  price: 99.00
"""


def test_credit_package_window_absent_created_then_deleted_or_retired(config_tree, migrated_engine):
    config_tree.write("credit_packages/black-friday.yaml", PACKAGE)
    exists = "SELECT count(*) FROM credit_packages WHERE slug = 'black-friday'"
    apply_config(migrated_engine, config_tree.root, actor="test", at="2026-11-26T12:00:00Z")
    assert scalar(migrated_engine, exists) == 0
    plan = make_plan(migrated_engine, config_tree.root, at="2026-11-26T12:00:00Z").plan
    assert [(s.at, [c.action for c in s.changes]) for s in plan.scheduled] == [
        ("2026-11-27T00:00:00Z", ["create"]), ("2026-11-30T00:00:00Z", ["delete"])]
    assert apply_due(migrated_engine, config_tree.root, actor="loop", at="2026-11-27T00:00:00Z").applied
    assert scalar(migrated_engine, exists) == 1
    apply_config(migrated_engine, config_tree.root, actor="test", at="2026-11-30T00:00:00Z")
    assert scalar(migrated_engine, exists) == 0  # unreferenced: deleted

    # Referenced by user data: retired instead, kept.
    apply_config(migrated_engine, config_tree.root, actor="test", at="2026-11-28T00:00:00Z")
    account_id = subscribe(migrated_engine, "test-plan")
    with migrated_engine.begin() as conn:
        package_id = conn.execute(text("SELECT id FROM credit_packages WHERE slug = 'black-friday'")).scalar_one()
        conn.execute(text("INSERT INTO credit_transactions (id, account_id, amount, balance_after, "
                          "transaction_type, description, credit_package_id, created_at) VALUES "
                          "(:id, :a, 10000, 10000, 'purchase', 'bf', :p, CURRENT_TIMESTAMP)"),
                     {"id": uuid.uuid4().hex if migrated_engine.dialect.name == "sqlite" else uuid.uuid4(),
                      "a": account_id.hex if migrated_engine.dialect.name == "sqlite" else account_id,
                      "p": package_id})
    after = make_plan(migrated_engine, config_tree.root, at="2026-11-30T00:00:00Z").plan
    assert [(c.name, c.action) for c in after.changes if c.kind == "CreditPackage"] == [("black-friday", "retire")]
    apply_plan(migrated_engine, after, environment=None, actor="test")
    assert scalar(migrated_engine, "SELECT is_active FROM credit_packages WHERE slug = 'black-friday'") in (False, 0)


def _issues(root):
    return [i.format() for i in load_config(root).issues]


def test_schedule_validation_errors(config_tree):
    scheduled_plan(config_tree, f"""\
schedule:
  - at: {T}
    patch:
      priceMonthly: 29
  - at: {T}
    patch:
      priceMonthly: 39
      maxSitez: 3
  - at: 2027-02-01
    patch: {{priceYearly: 1}}
""")
    config_tree.write("content_types/short.yaml", """\
apiVersion: cplane/v1
kind: ContentType
metadata:
  name: short-lived
  effectiveUntil: 2027-03-01T00:00:00Z
spec:
  displayName: Short
  minWords: 10
  maxWords: 20
---
apiVersion: cplane/v1
kind: ContentTemplate
metadata:
  name: short-template
spec:
  displayName: T
  contentType: short-lived
  body: "<p></p>"
""")
    issues = _issues(config_tree.root)
    text_issues = "\n".join(issues)
    # An unknown field in a patch: at its own line (line 24: the patch's `maxSitez:` key).
    assert any(i.startswith("config/plans/test-plan.yaml:24:7: Plan/test-plan: unknown field 'maxSitez'")
               for i in issues), text_issues
    assert any("two schedule patches set it at 2027-01-01T00:00:00Z" in i for i in issues), text_issues
    assert any(":25:" in i and "has no zone" in i for i in issues), text_issues
    assert any(i.startswith("config/content_types/short.yaml:17:") and "ContentType 'short-lived' does not exist"
               in i and "(at 2027-03-01T00:00:00Z)" in i for i in issues), text_issues
    # ...and the shipped content-types-complete policy: a content type needs a strategy.
    assert any(i.startswith("config/content_types/short.yaml:") and "policy content-types-complete" in i
               for i in issues), text_issues
    assert len(issues) == 5, text_issues


def test_schedule_patch_of_wrong_type_and_overlay_schedule(config_tree):
    scheduled_plan(config_tree, f"""\
schedule:
  - at: {T}
    patch:
      maxSites: ten
""")
    assert any(i.startswith("config/plans/test-plan.yaml:20:17:") and "expected an integer" in i
               for i in _issues(config_tree.root))
    scheduled_plan(config_tree, "")
    config_tree.write("environments/staging.yaml", f"""\
apiVersion: cplane/v1
kind: Overlay
metadata:
  name: staging
spec:
  patches:
    - kind: Plan
      name: test-plan
      schedule:
        - at: {T}
          patch: {{priceMonthly: 1}}
""")
    staging = load_config(config_tree.root, "staging")
    assert staging.ok, [i.format() for i in staging.issues]
    from control_plane.config.schedule import at_time

    assert at_time(staging, parse_time(AFTER)).of_kind("Plan")["test-plan"].spec.price_monthly == 1
    assert at_time(staging, parse_time(BEFORE)).of_kind("Plan")["test-plan"].spec.price_monthly == 19


def test_catalog_shows_upcoming_price_change_before_and_not_after(config_tree, pg_engine, monkeypatch):
    from fastapi.testclient import TestClient

    from runtime.app import create_app

    scheduled_plan(config_tree)
    apply_config(pg_engine, config_tree.root, actor="test", at=BEFORE)
    with TestClient(create_app(pg_engine)) as client:
        monkeypatch.setenv("CPLANE_NOW", JUST_BEFORE)
        first = client.get("/v1/catalog/plans")
        item = next(p for p in first.json()["items"] if p["name"] == "test-plan")
        assert item["upcoming"] == [{"at": T, "changes": [{"field": "price_monthly", "before": "19.00",
                                                           "after": "29.00"}]}]
        assert all(p["upcoming"] == [] for p in first.json()["items"] if p["name"] != "test-plan")
        monkeypatch.setenv("CPLANE_NOW", AFTER)
        later = client.get("/v1/catalog/plans", headers={"If-None-Match": first.headers["ETag"]})
        assert later.status_code == 200  # what is upcoming moved: not a 304
        item = next(p for p in later.json()["items"] if p["name"] == "test-plan")
        assert item["upcoming"] == []


def _managed_state(engine):
    from control_plane.secrets import SecretBox

    with engine.connect() as conn:
        live = read_live(conn, SecretBox(None, engine.url))
    return live


def test_rollback_to_run_one(config_tree, migrated_engine, tmp_path):
    url = migrated_engine.url.render_as_string(hide_password=False)
    run1 = apply_config(migrated_engine, config_tree.root, actor="test").apply_run_id
    with migrated_engine.begin() as conn:  # user data in sector "first": removing it retires it
        account_id = uuid.uuid4()
        plan_id = conn.execute(text("SELECT id FROM plans WHERE slug = 'test-plan'")).scalar_one()
        conn.execute(insert(Account.__table__), {"id": account_id, "name": "Acme", "plan_id": plan_id,
                                                 "billing_email": "b@acme.test"})
        sector_id = conn.execute(text(
            "SELECT s.id FROM industry_sectors s JOIN industries i ON i.id = s.industry_id "
            "WHERE i.slug = 'test-industry' AND s.slug = 'first'")).scalar_one()
        site_id = uuid.uuid4()
        conn.execute(insert(Site.__table__), {"id": site_id, "account_id": account_id, "name": "Blog",
                                              "domain": "b.example"})
        conn.execute(insert(Sector.__table__), {"id": uuid.uuid4(), "account_id": account_id, "site_id": site_id,
                                                "name": "Mine", "industry_sector_id": sector_id})
    config_tree.test_plan(price="24")
    run2 = apply_config(migrated_engine, config_tree.root, actor="test").apply_run_id
    config_tree.test_plan(price="39")
    config_tree.test_industry(sector="renamed")  # "first" leaves the config: retired (in use)
    run3 = apply_config(migrated_engine, config_tree.root, actor="test")
    assert run3.applied and run2 < run3.apply_run_id
    assert scalar(migrated_engine, "SELECT is_active FROM industry_sectors WHERE slug = 'first'") in (False, 0)

    out = tmp_path / "rollback.json"
    shown = cli("rollback", "--to", str(run1), "--config", str(config_tree.root), "--database-url", url,
                "--out", str(out), "--detailed-exitcode")
    assert shown.exit_code == 2, shown.output
    assert f"Rollback to apply run #{run1}" in shown.output
    plan = planfile.read_plan(out)
    assert plan.rollback_to == run1
    actions = {(c.kind, c.name): c for c in plan.changes}
    price = actions[("Plan", "test-plan")]
    assert [(f.field, f.before, f.after) for f in price.fields] == [("price_monthly", "39.00", "19.00")]
    sector = actions[("IndustrySector", "test-industry/first")]
    assert sector.action == "update" and [(f.field, f.after) for f in sector.fields] == [("is_active", True)]
    assert actions[("IndustrySector", "test-industry/renamed")].action == "delete"
    md = cli("rollback", "--to", str(run1), "--config", str(config_tree.root), "--database-url", url,
             "--format", "markdown")
    assert md.exit_code == 0 and "### Rollback to apply run" in md.output

    applied = cli("apply", str(out), "--config", str(config_tree.root), "--database-url", url)
    assert applied.exit_code == 0, applied.output
    with migrated_engine.connect() as conn:
        kept = read_run_rows(conn, run1)
        kind = conn.execute(select(ApplyRun.kind).order_by(ApplyRun.id.desc()).limit(1)).scalar_one()
    assert kind == "saved-plan+rollback"
    live = _managed_state(migrated_engine)
    from control_plane.kinds.registry import ROW_KINDS
    from control_plane.secrets import SecretBox
    from control_plane.state.rows import canonical

    box = SecretBox(None, migrated_engine.url)
    for kind_name, rows in kept.items():
        rk = ROW_KINDS[kind_name]
        have = {k: canonical(rk, {c: v for c, v in r.values.items() if c not in rk.secret_columns}, box)
                for k, r in live.rows.get(kind_name, {}).items() if k in live.managed.get(kind_name, {})}
        want = {k: canonical(rk, e["values"], box) for k, e in rows.items()}
        assert have == want, kind_name

    status = cli("status", "--config", str(config_tree.root), "--database-url", url)
    assert status.exit_code == 2, status.output
    assert f"rolled back:     to apply run #{run1}" in status.output
    assert "differs from the config" in status.output
    as_json = json.loads(cli("status", "--config", str(config_tree.root), "--database-url", url,
                             "--format", "json").output)
    assert as_json["rolled_back"]["to"] == run1
    # A control loop waits for a new config revision; a manual apply returns to the config.
    from control_plane.reconcile.controller import prepare

    digest = prepare(config_tree.root, database_url=migrated_engine.url).digest
    with migrated_engine.connect() as conn:
        assert "rolled back" in rollback_hold(conn, digest)
    with pytest.raises(PlanStale, match="rolled back"):
        apply_due(migrated_engine, config_tree.root, actor="loop")
    assert apply_config(migrated_engine, config_tree.root, actor="test").applied
    again = cli("plan", "--config", str(config_tree.root), "--database-url", url)
    assert "No changes." in again.output
    with migrated_engine.connect() as conn:
        assert rollback_hold(conn, digest) == ""
    assert cli("status", "--config", str(config_tree.root), "--database-url", url).exit_code == 0


def test_rollback_to_a_run_not_kept(config_tree, migrated_engine, monkeypatch):
    monkeypatch.setenv("CPLANE_RUN_ROWS_RETENTION", "1")
    run1 = apply_config(migrated_engine, config_tree.root, actor="test").apply_run_id
    config_tree.test_plan(price="24")
    # An incremental apply's rows refer to the run before it (run rows format 3): that one is kept too.
    run2 = apply_config(migrated_engine, config_tree.root, actor="test").apply_run_id
    with migrated_engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT run_id FROM cplane_run_rows")).scalars()) == [run1, run2]
    assert make_rollback_plan(migrated_engine, config_tree.root, run1).changes
    config_tree.test_plan(price="25")
    apply_config(migrated_engine, config_tree.root, actor="test", fast_path=False)  # every row: no base
    from control_plane.errors import CplaneError

    with pytest.raises(CplaneError, match=f"#{run1} has no kept rows"):
        make_rollback_plan(migrated_engine, config_tree.root, run1)
    with migrated_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM cplane_run_rows")).scalar_one() == 1


def test_adding_only_a_schedule_is_a_change_that_publishes_it(config_tree, migrated_engine):
    url = migrated_engine.url.render_as_string(hide_password=False)
    apply_config(migrated_engine, config_tree.root, actor="test", at=BEFORE)
    scheduled_plan(config_tree)
    plan = make_plan(migrated_engine, config_tree.root, at=BEFORE).plan
    assert plan.changes == [] and plan.publish_schedule and plan.has_changes
    shown = cli("plan", "--config", str(config_tree.root), "--database-url", url, "--detailed-exitcode",
                env={"CPLANE_NOW": BEFORE})
    assert shown.exit_code == 2, shown.output
    assert "announces these in the catalog" in shown.output
    status = cli("status", "--config", str(config_tree.root), "--database-url", url, env={"CPLANE_NOW": BEFORE})
    assert status.exit_code == 2
    assert f"next scheduled:  at {T}: Plan/test-plan update price_monthly" in status.output
    assert apply_config(migrated_engine, config_tree.root, actor="test", at=BEFORE).applied
    assert scalar(migrated_engine, "SELECT price_monthly FROM plans WHERE slug = 'test-plan'") == 19
    assert scalar(migrated_engine, "SELECT count(*) FROM cplane_scheduled_changes") == 1
    assert not make_plan(migrated_engine, config_tree.root, at=BEFORE).plan.has_changes
    status = cli("status", "--config", str(config_tree.root), "--database-url", url, "--format", "json",
                 env={"CPLANE_NOW": BEFORE})
    assert status.exit_code == 0, status.output
    info = json.loads(status.output)
    assert info["next_scheduled"]["at"] == T and info["scheduled_changes"] == 1
    # Removing the schedule withdraws the announcement (a change again).
    scheduled_plan(config_tree, "")
    assert make_plan(migrated_engine, config_tree.root, at=BEFORE).plan.publish_schedule
    apply_config(migrated_engine, config_tree.root, actor="test", at=BEFORE)
    assert scalar(migrated_engine, "SELECT count(*) FROM cplane_scheduled_changes") == 0


def test_window_end_of_a_prevent_destroy_object_fails_the_plan(config_tree, migrated_engine):
    config_tree.write("credit_packages/black-friday.yaml", PACKAGE.replace(
        "annotations: {cplane/approved-by: test}", 'annotations: {cplane/approved-by: test, cplane/prevent-destroy: "true"}'))
    apply_config(migrated_engine, config_tree.root, actor="test", at="2026-11-28T00:00:00Z")
    plan = make_plan(migrated_engine, config_tree.root, at="2026-11-30T00:00:00Z").plan
    assert any("CreditPackage/black-friday is annotated cplane/prevent-destroy" in e for e in plan.errors)


def test_scheduled_values_are_checked_against_column_limits(config_tree):
    from control_plane.reconcile.validation import load_checked

    config_tree.write("author_profiles/long.yaml", f"""\
apiVersion: cplane/v1
kind: AuthorProfile
metadata:
  name: long
spec:
  displayName: Long
  tone: calm
  vocabulary: short
schedule:
  - at: {T}
    patch:
      vocabulary: {'x' * 300}
""")
    config, rows = load_checked(config_tree.root)
    assert rows is None
    assert [i.format() for i in config.issues] == [
        "config/author_profiles/long.yaml:4:3: AuthorProfile/long: vocabulary is 300 characters; at most 100 fit "
        "(from 2027-01-01T00:00:00Z)"]


def test_run_rows_never_keep_secret_values_and_rollback_keeps_stored_secrets(config_tree, migrated_engine):
    import os
    import zlib

    environ = {**os.environ, "STRIPE_SECRET_KEY": "sk_live_do_not_keep_1", "STRIPE_WEBHOOK_SECRET": "whsec_keep_out"}
    run1 = apply_config(migrated_engine, config_tree.root, actor="test", environ=environ).apply_run_id
    with migrated_engine.connect() as conn:
        data = conn.execute(text("SELECT data FROM cplane_run_rows WHERE run_id = :r"), {"r": run1}).scalar_one()
    raw = zlib.decompress(bytes(data))
    assert b"sk_live_do_not_keep_1" not in raw and b"whsec_keep_out" not in raw
    assert b"STRIPE_SECRET_KEY" in raw  # the reference is kept
    config_tree.test_plan(price="24")
    apply_config(migrated_engine, config_tree.root, actor="test", environ=environ)
    bare = {k: v for k, v in os.environ.items() if not k.startswith("STRIPE_")}
    plan = make_rollback_plan(migrated_engine, config_tree.root, run1, environ=bare)
    assert [(c.kind, c.name) for c in plan.changes] == [("Plan", "test-plan")]
    assert any("the stored values are kept: STRIPE_SECRET_KEY" in w for w in plan.warnings)


def test_cli_refuses_a_saved_plan_once_its_scheduled_time_passed(config_tree, migrated_engine, tmp_path):
    scheduled_plan(config_tree)
    apply_config(migrated_engine, config_tree.root, actor="test", at=BEFORE)
    config_tree.test_industry(sector="renamed")
    url = migrated_engine.url.render_as_string(hide_password=False)
    out = tmp_path / "plan.json"
    made = cli("plan", "--config", str(config_tree.root), "--database-url", url, "--out", str(out),
               env={"CPLANE_NOW": JUST_BEFORE})
    assert made.exit_code == 0, made.output
    saved = json.loads(out.read_text())
    assert saved["at"] == JUST_BEFORE and saved["valid_until"] == T
    assert [s["at"] for s in saved["scheduled"]] == [T]
    assert planfile.read_plan(out).scheduled[0].changes[0].fields[0].after == "29.00"
    late = cli("apply", str(out), "--config", str(config_tree.root), "--database-url", url, "--format", "json",
               env={"CPLANE_NOW": AFTER})
    assert late.exit_code == 1
    error = json.loads(late.stdout)["error"]
    assert error["code"] == "plan_stale" and "changed at 2027-01-01T00:00:00Z" in error["message"]
    assert scalar(migrated_engine, "SELECT count(*) FROM industry_sectors WHERE slug = 'renamed'") == 0


def test_change_policies_run_over_scheduled_steps_at_review_time(config_tree, migrated_engine):
    """A +53% price patch scheduled for later needs the approval now, in the plan a reviewer signs,
    not only when it falls due; a +10% one passes; the approval annotation lifts it."""
    config_tree.write("plans/test-plan.yaml", TEST_PLAN.format(price="19", annotations="{}") + PRICE_SCHEDULE)
    plan = make_plan(migrated_engine, config_tree.root, at=BEFORE).plan
    [step] = plan.scheduled
    [change] = [c for c in step.changes if c.name == "test-plan"]
    assert [v["policy"] for v in change.policy_violations] == ["price-change-approval"]
    assert any(e.startswith(f"policy price-change-approval: Plan/test-plan (update at {T}): priceMonthly changes "
                            "from 19") for e in plan.errors), plan.errors
    text = render_text(plan)
    assert f"at {T}: ~ Plan/test-plan" in text and "policy price-change-approval (error): priceMonthly" in text
    assert "policy price-change-approval (error)" in render_markdown(plan)

    config_tree.write("plans/test-plan.yaml", TEST_PLAN.format(price="19", annotations="{}")
                      + PRICE_SCHEDULE.replace("29", "20.5"))
    small = make_plan(migrated_engine, config_tree.root, at=BEFORE).plan
    assert small.scheduled and not small.errors, small.errors

    scheduled_plan(config_tree)  # the same +53% patch, approved
    approved = make_plan(migrated_engine, config_tree.root, at=BEFORE).plan
    assert approved.scheduled and not approved.errors, approved.errors
