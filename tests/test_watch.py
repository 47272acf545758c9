"""`cplane watch` as a subprocess against PostgreSQL, a 1 s interval: detect, self-heal,
auto-apply (from a git remote), windows, the watch lock, SIGTERM, /metrics and webhooks.

Every wait polls for its condition with a deadline: two intervals plus the time of a round itself
(a round plans the whole repo config, under a second here, more on a loaded machine)."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from helpers import REPO, WatchProcess, WebhookReceiver, cplane_cmd, libpq_url, wait_for
from sqlalchemy import text

pytestmark = pytest.mark.postgres

INTERVAL = 1.0
WITHIN = 2 * INTERVAL + 3.0


@pytest.fixture
def applied(pg_engine, config_tree):
    """A PostgreSQL database with the test config applied: (engine, libpq URL, config tree)."""
    from control_plane.reconcile.controller import apply_config

    apply_config(pg_engine, config_tree.root, actor="test")
    return pg_engine, libpq_url(pg_engine), config_tree


def sql(url: str, statement: str, *params):
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params or None)
        return cur.fetchall() if cur.description else None


def price(url: str) -> str:
    return str(sql(url, "SELECT price_monthly FROM plans WHERE slug = 'test-plan'")[0][0])


def runs(url: str) -> list[tuple]:
    return sql(url, "SELECT id, actor, config_revision, summary, plan FROM cplane_apply_runs ORDER BY id")


def first_round(watch: WatchProcess) -> None:
    wait_for(lambda: watch.rounds() >= 1, 30, "the first round")


def test_detect_reports_drift_notifies_and_writes_nothing(applied):
    engine, url, tree = applied
    with WebhookReceiver() as hook, WatchProcess("--interval", "1s", "--webhook", hook.url,
                                                 database_url=url, config_dir=tree.root) as watch:
        first_round(watch)
        assert watch.metric("cplane_drift_objects", kind="Plan") == 0
        assert watch.metric("cplane_pending_changes") == 0
        before = runs(url)
        sql(url, "UPDATE plans SET price_monthly = 99 WHERE slug = 'test-plan'")
        wait_for(lambda: watch.metric("cplane_drift_objects", kind="Plan") == 1, WITHIN, "drift 1 for Plan")
        assert watch.metric("cplane_pending_changes") == 1
        assert watch.metric("cplane_window_blocked") == 0
        assert watch.metric("cplane_managed_objects", kind="Plan") >= 1
        body = wait_for(lambda: next((b for b in hook.bodies if b["event"] == "drift_detected"), None), WITHIN,
                        "a drift_detected notification")
        assert {"kind": "Plan", "name": "test-plan", "action": "update", "cause": "drift"} in body["objects"]
        assert "99" not in json.dumps(body)  # names and counts, never values
        assert "postgres@" in body["database"] and body["config_revision"] == ""
        # Detect writes nothing: a few more rounds, and neither the row nor the audit moved.
        seen = watch.rounds()
        wait_for(lambda: watch.rounds() >= seen + 2, WITHIN + 2, "two more rounds")
        assert price(url) == "99.00"
        assert runs(url) == before
        page = watch.get("/").text
        assert "Drift" in page and "test-plan" in page and "priceMonthly" in page.replace("price_monthly", "priceMonthly")
        # The drift is notified once, not every round.
        assert hook.events().count("drift_detected") == 1
        assert watch.stop() == 0
    assert "drift detected: Plan/test-plan" in watch.text()


def test_self_heal_restores_drift_as_the_loop_and_leaves_config_changes(applied):
    engine, url, tree = applied
    with WatchProcess("--self-heal", "--interval", "1s", database_url=url, config_dir=tree.root) as watch:
        first_round(watch)
        sql(url, "UPDATE plans SET price_monthly = 99 WHERE slug = 'test-plan'")
        wait_for(lambda: price(url) == "19.00", WITHIN, "the drifted row restored")
        run = runs(url)[-1]
        assert run[1] == "cplane-watch"
        assert run[3]["update"] == 1
        assert any("applied by cplane watch (self-heal)" in w for w in run[4]["warnings"])
        wait_for(lambda: watch.metric("cplane_drift_objects", kind="Plan") == 0, WITHIN, "drift back to 0")
        assert watch.metric("cplane_last_apply_timestamp_seconds") > 0
        # A config change is pending, never applied by self-heal.
        tree.test_plan(price="25")
        wait_for(lambda: watch.metric("cplane_pending_changes") == 1, WITHIN, "the config change pending")
        seen = watch.rounds()
        wait_for(lambda: watch.rounds() >= seen + 2, WITHIN + 2, "two more rounds")
        assert price(url) == "19.00"
        assert len(runs(url)) == 2
        assert watch.stop() == 0


def git(cwd, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(cwd), "PATH": "/usr/bin:/bin"})
    return done.stdout.strip()


@pytest.fixture
def git_source(tmp_path, pg_engine, monkeypatch):
    """A bare repository, a developer's clone and the watcher's checkout, the config applied from it."""
    from control_plane.reconcile.controller import apply_config

    monkeypatch.setenv("CPLANE_SECRET_KEY", "test-secret-key")
    bare, dev, checkout = tmp_path / "remote.git", tmp_path / "dev", tmp_path / "checkout"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "clone", "-q", str(bare), str(dev)], check=True, capture_output=True)
    shutil.copytree(REPO / "config", dev / "config")
    from helpers import ConfigTree

    tree = ConfigTree(dev / "config")
    tree.test_plan()
    git(dev, "checkout", "-q", "-b", "main")
    git(dev, "add", "-A")
    git(dev, "commit", "-qm", "config")
    git(dev, "push", "-q", "origin", "main")
    subprocess.run(["git", "clone", "-q", "-b", "main", str(bare), str(checkout)], check=True, capture_output=True)
    apply_config(pg_engine, checkout / "config", actor="test")
    return libpq_url(pg_engine), dev, tree, checkout


def test_auto_apply_follows_git_keeps_the_last_good_revision_and_leaves_deletions(git_source):
    url, dev, tree, checkout = git_source
    with WatchProcess("--auto-apply", "--git", "--interval", "1s", database_url=url,
                      config_dir=checkout / "config") as watch:
        first_round(watch)
        tree.test_plan(price="29")
        git(dev, "commit", "-qam", "test-plan costs 29")
        git(dev, "push", "-q", "origin", "main")
        pushed = git(dev, "rev-parse", "HEAD")
        wait_for(lambda: price(url) == "29.00", WITHIN, "the pushed commit applied")
        run = runs(url)[-1]
        assert run[1] == "cplane-watch" and pushed.startswith(run[2]) and len(run[2]) >= 12

        # A fetch that fails is reported; the checkout stays at the last good revision.
        git(checkout, "remote", "set-url", "origin", str(checkout.parent / "missing.git"))
        wait_for(lambda: (watch.metric("cplane_reconcile_errors_total", type="git") or 0) >= 1, WITHIN,
                 "a git error counted")
        assert watch.find("git fetch failed")
        assert git(checkout, "rev-parse", "HEAD") == pushed
        assert watch.get("/healthz").status_code == 200  # the round still reconciles what it has
        wait_for(lambda: "git fetch failed" in watch.get("/").text, WITHIN, "the page showing the git error")
        git(checkout, "remote", "set-url", "origin", str(checkout.parent / "remote.git"))

        # A deletion is left pending without --prune.
        tree.remove("plans/test-plan.yaml")
        git(dev, "commit", "-qam", "drop test-plan")
        git(dev, "push", "-q", "origin", "main")
        dropped = git(dev, "rev-parse", "HEAD")
        wait_for(lambda: git(checkout, "rev-parse", "HEAD") == dropped, WITHIN + 2, "the checkout fast-forwarded")
        wait_for(lambda: watch.metric("cplane_pending_changes") == 1, WITHIN, "the deletion pending")
        seen = watch.rounds()
        wait_for(lambda: watch.rounds() >= seen + 2, WITHIN + 2, "two more rounds")
        assert sql(url, "SELECT count(*) FROM plans WHERE slug = 'test-plan'")[0][0] == 1
        assert watch.stop() == 0


def deny_window(tree, name="freeze", start=None, end=None) -> None:
    now = datetime.now(UTC)
    start = start or now - timedelta(hours=1)
    end = end or now + timedelta(hours=1)
    tree.write(f"sync_windows/{name}.yaml", f"""\
        apiVersion: cplane/v1
        kind: SyncWindow
        metadata:
          name: {name}
        spec:
          action: deny
          from: "{start.strftime('%Y-%m-%dT%H:%M:%SZ')}"
          until: "{end.strftime('%Y-%m-%dT%H:%M:%SZ')}"
          description: launch freeze
        """)


def test_deny_window_blocks_the_loop_and_manual_apply_without_override(applied):
    engine, url, tree = applied
    deny_window(tree)
    tree.test_plan(price="31")
    with WebhookReceiver() as hook, WatchProcess("--auto-apply", "--self-heal", "--interval", "1s",
                                                 "--webhook", hook.url, database_url=url,
                                                 config_dir=tree.root) as watch:
        wait_for(lambda: watch.metric("cplane_window_blocked") == 1, WITHIN + 5, "the window blocking")
        assert watch.metric("cplane_pending_changes") == 1
        page = watch.get("/").text
        assert "Blocked by a window" in page and "deny window &#x27;freeze&#x27;" in page
        wait_for(lambda: "window_blocked" in hook.events(), WITHIN, "a window_blocked notification")
        seen = watch.rounds()
        wait_for(lambda: watch.rounds() >= seen + 2, WITHIN + 2, "two more rounds")
        assert price(url) == "19.00" and len(runs(url)) == 1
        assert watch.stop() == 0

    refused = subprocess.run(cplane_cmd("apply", "--auto-approve", "--database-url", url, "--config", str(tree.root)),
                             capture_output=True, text=True)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        refused.stderr.strip().splitlines()[0]] and "--override-window" in refused.stderr
    assert "deny window 'freeze' is open until" in refused.stderr
    assert price(url) == "19.00"
    done = subprocess.run(cplane_cmd("apply", "--auto-approve", "--override-window", "--database-url", url,
                                     "--config", str(tree.root)), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert price(url) == "31.00"
    assert any("applied inside deny window 'freeze' with --override-window" in w for w in runs(url)[-1][4]["warnings"])


def test_a_window_that_ends_lets_the_change_through(applied):
    engine, url, tree = applied
    deny_window(tree, end=datetime.now(UTC) + timedelta(seconds=4))
    tree.test_plan(price="33")
    with WatchProcess("--auto-apply", "--interval", "1s", database_url=url, config_dir=tree.root) as watch:
        wait_for(lambda: watch.metric("cplane_window_blocked") == 1, WITHIN + 5, "the window blocking")
        assert price(url) == "19.00"
        wait_for(lambda: price(url) == "33.00", 4 + WITHIN + 2, "the change applied after the window")
        assert watch.metric("cplane_window_blocked") == 0
        assert watch.stop() == 0


def test_one_watcher_per_database(applied):
    engine, url, tree = applied
    with WatchProcess("--interval", "1s", database_url=url, config_dir=tree.root) as first:
        first_round(first)
        second = subprocess.run(cplane_cmd("watch", "--database-url", url, "--config", str(tree.root),
                                           "--listen", "off", "--max-rounds", "1"),
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert second.stderr.strip() == ("error: another cplane watch is already running against this database "
                                         "(watch lock held)")
        # With --lock-timeout the second one waits, and takes over when the first stops.
        with WatchProcess("--interval", "1s", "--lock-timeout", "60s", "--max-rounds", "1", listen=False,
                          database_url=url, config_dir=tree.root) as waiting:
            wait_for(lambda: waiting.find("waiting up to 60s"), 30, "the second watcher waiting")
            assert waiting.proc.poll() is None
            assert first.stop() == 0
            assert waiting.proc.wait(60) == 0
        assert "stopped after 1 round(s)" in waiting.text()


def test_sigterm_during_a_round_exits_after_it_and_writes_whole(applied):
    engine, url, tree = applied
    with WatchProcess("--self-heal", "--interval", "1s", database_url=url, config_dir=tree.root) as watch:
        first_round(watch)
        with psycopg.connect(url) as blocker:
            # Drift, and hold the table so that the next round blocks inside its plan.
            blocker.execute("UPDATE plans SET price_monthly = 77 WHERE slug = 'test-plan'")
            blocker.execute("LOCK TABLE plans IN ACCESS EXCLUSIVE MODE")
            # The round starts with the no-change fast path, which reads the change counters and
            # no system row: hold those too, so that the round blocks whichever path it takes.
            blocker.execute("LOCK TABLE cplane_change_counters IN ACCESS EXCLUSIVE MODE")
            wait_for(lambda: sql(url, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                      "AND datname = current_database()")[0][0] >= 1, WITHIN + 5,
                     "a round blocked on the table")
            watch.proc.send_signal(15)
            wait_for(lambda: watch.find("SIGTERM: stopping after this round"), 10, "the signal acknowledged")
            assert watch.proc.poll() is None  # the round is still running
            blocker.commit()
        assert watch.proc.wait(60) == 0
    # The round that was running finished: it saw the drift and healed it in one transaction.
    assert price(url) == "19.00"
    last = runs(url)[-1]
    assert last[1] == "cplane-watch" and last[3]["update"] == 1
    check = subprocess.run(cplane_cmd("plan", "--detailed-exitcode", "--database-url", url, "--config", str(tree.root)),
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_status_page_needs_a_token_off_loopback(applied):
    engine, url, tree = applied
    refused = subprocess.run(cplane_cmd("watch", "--database-url", url, "--config", str(tree.root),
                                        "--listen", "0.0.0.0:0", "--max-rounds", "1"),
                             capture_output=True, text=True, timeout=60, env={**__import__("os").environ,
                                                                             "CPLANE_UI_TOKEN": ""})
    assert refused.returncode == 1 and "CPLANE_UI_TOKEN" in refused.stderr
    with WatchProcess("--interval", "1s", "--listen", "0.0.0.0:0", listen=False, database_url=url,
                      config_dir=tree.root, env={"CPLANE_UI_TOKEN": "s3cret"}) as watch:
        line = wait_for(lambda: watch.find("status page on http://"), 30, "the status page")
        port = line.rstrip("/").rsplit(":", 1)[1]
        watch.url = f"http://127.0.0.1:{port}"
        first_round(watch)
        assert watch.get("/").status_code == 401
        assert watch.get("/metrics").status_code == 401
        assert watch.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        page = watch.get("/?token=s3cret")
        assert page.status_code == 200 and "In sync" in page.text
        assert watch.get("/", cookies={"cplane_ui_token": "s3cret"}).status_code == 200
        import httpx

        assert httpx.post(watch.url + "/", timeout=10).status_code == 405
        assert watch.stop() == 0


def test_runtime_api_metrics_by_route_template(client):
    client.get("/v1/catalog/plans")
    client.get("/v1/sites/12345/sectors")  # unauthenticated: 401, counted under its template
    client.get("/no/such/route")
    response = client.get("/metrics")
    assert response.status_code == 200
    from prometheus_client.parser import text_string_to_metric_families

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(response.text) for s in f.samples}
    assert samples[("cplane_http_requests_total",
                    (("method", "GET"), ("route", "/v1/catalog/plans"), ("status", "200")))] >= 1
    assert any(k[0] == "cplane_http_requests_total" and ("route", "/v1/sites/{site_id}/sectors") in k[1] for k in samples)
    assert not any("12345" in str(k) for k in samples)
    assert any(("route", "unmatched") in k[1] for k in samples)
    assert ("cplane_http_request_duration_seconds_count",
            (("method", "GET"), ("route", "/v1/catalog/plans"))) in samples


def test_drift_metric_counts_per_kind_in_a_thread(applied):
    """The loop in-process (one round at a time): what /metrics and the page are made of."""
    from control_plane.watch.loop import Policy, Watcher

    engine, url, tree = applied
    watcher = Watcher(engine, tree.root, environment=None, policy=Policy(), interval=INTERVAL)
    first = watcher.round()
    assert first.ok and first.kind_states(watcher.policy)["Plan"] == "in sync"
    with engine.begin() as conn:
        conn.execute(text("UPDATE plans SET price_monthly = 98 WHERE slug = 'test-plan'"))
        conn.execute(text("UPDATE industries SET name = 'X' WHERE slug = 'test-industry'"))
    second = watcher.round()
    assert second.ok
    states = second.kind_states(watcher.policy)
    assert states["Plan"] == "drift" and states["Industry"] == "drift"
    sample = watcher.metrics.registry.get_sample_value
    assert sample("cplane_drift_objects", {"kind": "Plan"}) == 1
    assert sample("cplane_drift_objects", {"kind": "Industry"}) == 1
    assert sample("cplane_drift_objects", {"kind": "CreditPackage"}) == 0
    assert sample("cplane_reconcile_duration_seconds_count") == 2


def test_self_heal_recreates_deleted_rows_but_not_rows_whose_config_changed(applied):
    from control_plane.watch.loop import Policy, Watcher

    engine, url, tree = applied
    watcher = Watcher(engine, tree.root, environment=None, policy=Policy(self_heal=True), interval=INTERVAL)
    assert watcher.round().ok
    sql(url, "UPDATE plans SET price_monthly = 97 WHERE slug = 'test-plan'")
    sql(url, "DELETE FROM credit_packages WHERE slug = (SELECT min(slug) FROM credit_packages)")
    tree.test_plan(price="23")  # the config of the drifted plan changes too
    result = watcher.round()
    assert result.ok, result.error
    natures = {k: v for k, v in result.natures.items()}
    assert natures[("Plan", "test-plan")] == "drift+config"
    assert [v for (kind, _), v in natures.items() if kind == "CreditPackage"] == ["drift"]
    assert result.applied == 1  # the deleted package came back; the plan waits for auto-apply
    assert sql(url, "SELECT count(*) FROM credit_packages")[0][0] == watcher.last.managed["CreditPackage"]
    assert price(url) == "97.00"
    assert result.kind_states(watcher.policy)["Plan"] == "drift"
    both = Watcher(engine, tree.root, environment=None, policy=Policy(self_heal=True, auto_apply=True),
                   interval=INTERVAL)
    assert both.round().applied == 1 and price(url) == "23.00"


def test_an_apply_lock_held_elsewhere_is_busy_not_a_failure(applied):
    from control_plane.apply.execute import APPLY_LOCK_ID
    from control_plane.watch.loop import Policy, Watcher
    from control_plane.watch.notify import Notifier, Webhook

    engine, url, tree = applied
    with WebhookReceiver() as hook:
        notifier = Notifier([Webhook(hook.url, "generic")])
        watcher = Watcher(engine, tree.root, environment=None, policy=Policy(self_heal=True), interval=INTERVAL,
                          notifier=notifier)
        sql(url, "UPDATE plans SET price_monthly = 96 WHERE slug = 'test-plan'")
        with psycopg.connect(url) as other:
            other.execute("SELECT pg_advisory_xact_lock(%s)", (APPLY_LOCK_ID,))
            busy = watcher.round()
            assert not busy.ok and busy.error_type == "busy" and "apply lock held" in busy.error
            assert watcher.metrics.registry.get_sample_value("cplane_reconcile_errors_total", {"type": "busy"}) == 1
        healed = watcher.round()
        assert healed.ok and healed.applied == 1 and price(url) == "19.00"
        # Delivered in order by one thread: the busy round notified nothing of its own.
        wait_for(lambda: "apply_succeeded" in hook.events(), 10, "apply_succeeded delivered")
        assert hook.events() == ["drift_detected", "apply_succeeded"]
        notifier.close()


def test_a_scheduled_change_falls_due_and_the_loop_applies_it(applied):
    """A price patch scheduled a few seconds ahead: the loop shows it as scheduled (metric and
    next-change time), then applies it within two intervals of its time, naming the entry."""
    from helpers import TEST_PLAN

    engine, url, tree = applied
    due = (datetime.now(UTC) + timedelta(seconds=6)).replace(microsecond=0)
    at = due.strftime("%Y-%m-%dT%H:%M:%SZ")
    tree.write("plans/test-plan.yaml", TEST_PLAN.format(price="19", annotations="{cplane/approved-by: test}")
               + f"schedule:\n  - at: {at}\n    patch: {{priceMonthly: 23}}\n")
    with WatchProcess("--auto-apply", "--interval", "1s", database_url=url, config_dir=tree.root) as watch:
        first_round(watch)
        if datetime.now(UTC) < due - timedelta(seconds=1):
            wait_for(lambda: watch.metric("cplane_scheduled_changes") == 1, WITHIN, "the scheduled change counted")
            assert watch.metric("cplane_next_scheduled_change_timestamp_seconds") == due.timestamp()
            assert price(url) == "19.00"
        wait_for(lambda: price(url) == "23.00", (due - datetime.now(UTC)).total_seconds() + WITHIN,
                 "the scheduled price applied by the loop")
    last = runs(url)[-1]
    assert last[1] == "cplane-watch"
    applied_entries = [e for step in last[4].get("schedule_applied", []) for e in step["entries"]]
    assert any(e.endswith("test-plan.yaml:18 schedule[0]") for e in applied_entries), applied_entries
