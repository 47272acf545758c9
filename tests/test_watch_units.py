"""The watch loop's parts without a database: change windows, webhooks, the policy."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
from helpers import WebhookReceiver, wait_for

from control_plane.kinds.windows import SyncWindowSpec
from control_plane.plans.model import Action, Change
from control_plane.watch.loop import Policy
from control_plane.watch.notify import Event, Notifier, Webhook, webhooks_from
from control_plane.watch.windows import Window, evaluate


def window(name="w", **spec) -> Window:
    return Window(name, SyncWindowSpec.model_validate(spec))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


WEEKEND = dict(action="deny", timeZone="Europe/Berlin", start="Fri 16:00", end="Mon 08:00")


@pytest.mark.parametrize("now, blocked", [
    ("2026-12-04T14:59:00Z", False),  # Friday 15:59 in Berlin (UTC+1)
    ("2026-12-04T15:00:00Z", True),   # Friday 16:00
    ("2026-12-06T12:00:00Z", True),   # Sunday
    ("2026-12-07T06:59:00Z", True),   # Monday 07:59
    ("2026-12-07T07:00:00Z", False),  # Monday 08:00
    ("2026-12-02T12:00:00Z", False),  # Wednesday
    ("2026-07-03T14:00:00Z", True),   # summer: Friday 16:00 is 14:00 UTC (UTC+2)
    ("2026-07-03T13:59:00Z", False),
])
def test_weekly_deny_window_over_the_weekend_in_its_zone(now, blocked):
    state = evaluate([window("weekend", **WEEKEND)], at(now))
    assert state.blocked is blocked
    if blocked:
        assert state.window == "weekend" and state.until.weekday() == 0
        assert "deny window 'weekend' is open until" in state.reason


def test_span_and_allow_windows():
    freeze = window("launch", action="deny", **{"from": "2026-12-01T00:00:00Z", "until": "2026-12-03T00:00:00Z"})
    assert evaluate([freeze], at("2026-12-02T00:00:00Z")).blocked
    assert not evaluate([freeze], at("2026-12-03T00:00:00Z")).blocked
    office = window("office", action="allow", start="Mon 09:00", end="Mon 17:00")
    outside = evaluate([office], at("2026-12-01T12:00:00Z"))  # a Tuesday
    assert outside.blocked and outside.until == at("2026-12-07T09:00:00Z")
    assert "outside every allow window (office)" in outside.reason
    assert not evaluate([office], at("2026-12-07T10:00:00Z")).blocked
    # A deny window wins inside an allow window.
    assert evaluate([office, freeze], at("2026-12-02T00:00:00Z")).window == "launch"


@pytest.mark.parametrize("spec, message", [
    ({"action": "deny"}, "either weekly"),
    ({"action": "deny", "start": "Fri 16:00"}, "needs both start and end"),
    ({"action": "deny", "start": "Friday 25:00", "end": "Mon 08:00"}, "is not a weekly time"),
    ({"action": "deny", "from": "2026-12-01T00:00:00", "until": "2026-12-02T00:00:00Z"}, "has no zone"),
    ({"action": "deny", "from": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, "until must be after from"),
    ({"action": "deny", "timeZone": "Mars/Olympus", "start": "Fri 16:00", "end": "Mon 08:00"}, "is not a time zone"),
])
def test_malformed_windows_are_refused(spec, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        SyncWindowSpec.model_validate(spec)


def test_windows_are_validated_with_the_config(config_tree):
    from control_plane.reconcile.validation import validate_all

    config_tree.write("sync_windows/bad.yaml", """\
        apiVersion: cplane/v1
        kind: SyncWindow
        metadata:
          name: bad
        spec:
          action: sometimes
          start: "Fri 16:00"
          end: "Mon 08:00"
        """)
    issues = [i.format() for i in validate_all(config_tree.root, None).issues]
    assert len(issues) == 1 and "sync_windows/bad.yaml:6:" in issues[0] and "SyncWindow/bad" in issues[0]


def test_policy_decides_what_the_loop_applies():
    drift = Change("Plan", "a", Action.UPDATE, cause="drift")
    update = Change("Plan", "b", Action.UPDATE)
    delete = Change("Plan", "c", Action.DELETE)
    retire = Change("Plan", "d", Action.RETIRE)
    adopt = Change("Plan", "e", Action.ADOPT, cause="adopt")
    every = [drift, update, delete, retire, adopt]
    assert [c.name for c in every if Policy().wants(c)] == []
    assert [c.name for c in every if Policy(self_heal=True).wants(c)] == ["a"]
    assert [c.name for c in every if Policy(auto_apply=True).wants(c)] == ["b"]
    assert [c.name for c in every if Policy(auto_apply=True, prune=True).wants(c)] == ["b", "c", "d"]
    assert [c.name for c in every if Policy(True, True, True).wants(c)] == ["a", "b", "c", "d"]
    assert Policy(True, True, True).mode == "self-heal+auto-apply+prune"
    # A drifted row whose config changed too is written only by self-heal and auto-apply together.
    assert not Policy(self_heal=True).wants(drift, "drift+config")
    assert not Policy(auto_apply=True).wants(drift, "drift+config")
    assert Policy(self_heal=True, auto_apply=True).wants(drift, "drift+config")


def test_nature_of_a_change_from_the_recorded_fingerprint():
    from control_plane.watch.loop import nature_of

    recorded = {("Plan", "a"): "fp-a", ("Plan", "gone"): "fp-gone"}
    assert nature_of(Change("Plan", "a", Action.UPDATE, cause="drift", desired_fingerprint="fp-a"), recorded) == "drift"
    assert nature_of(Change("Plan", "a", Action.UPDATE, cause="drift", desired_fingerprint="fp-new"),
                     recorded) == "drift+config"
    # A managed row deleted outside cplane, which the config still wants as it was: drift.
    assert nature_of(Change("Plan", "gone", Action.CREATE, desired_fingerprint="fp-gone"), recorded) == "drift"
    assert nature_of(Change("Plan", "new", Action.CREATE, desired_fingerprint="fp-new"), recorded) == "config"
    assert nature_of(Change("Plan", "a", Action.UPDATE, desired_fingerprint="fp-new"), recorded) == "config"
    assert nature_of(Change("Plan", "x", Action.ADOPT, cause="adopt"), recorded) == "adopt"


def test_webhooks_retry_with_backoff_in_the_background():
    with WebhookReceiver(fail_first=2) as receiver:
        notifier = Notifier([Webhook(receiver.url, "generic")], backoff=0.05)
        event = Event("apply_failed", "apply failed: boom", environment="staging", database="postgresql://db/x",
                      objects=[{"kind": "Plan", "name": "pro", "action": "update", "cause": "config"}])
        notifier.notify(event)
        wait_for(lambda: receiver.bodies, 10, "the third attempt to arrive")
        assert receiver.attempts == 3
        body = receiver.bodies[0]
        assert body["event"] == "apply_failed" and body["objects"][0]["name"] == "pro"
        assert set(body) == {"event", "message", "environment", "database", "config_revision", "at", "summary",
                             "objects", "objects_total"}
        notifier.close()


def test_a_hanging_receiver_never_blocks_the_loop():
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    release = threading.Event()

    class Hang(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            release.wait(30)
            self.send_response(204)
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hang)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        notifier = Notifier([Webhook(f"http://127.0.0.1:{httpd.server_address[1]}/", "slack")], retries=1)
        started = time.monotonic()
        for i in range(50):
            notifier.notify(Event("drift_detected", f"drift {i}"))
        assert time.monotonic() - started < 1.0  # 50 events queued while the receiver hangs
        assert notifier.queue.qsize() >= 48
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()


def test_slack_body_and_webhooks_from_the_environment():
    body = Event("window_blocked", "2 change(s) wait", environment="production",
                 objects=[{"kind": "Plan", "name": "pro", "action": "update", "cause": "config"}]).slack()
    assert set(body) == {"text"} and "production" in body["text"] and "Plan/pro" in body["text"]
    hooks = webhooks_from(("http://a/1",), (), environ={"CPLANE_WATCH_WEBHOOKS": "http://b/2, http://c/3",
                                                         "CPLANE_WATCH_SLACK_WEBHOOKS": "https://hooks.slack.com/T/B/x"})
    assert [(h.url, h.format) for h in hooks] == [("http://a/1", "generic"), ("http://b/2", "generic"),
                                                  ("http://c/3", "generic"), ("https://hooks.slack.com/T/B/x", "slack")]
    assert hooks[-1].shown == "https://hooks.slack.com/…"  # logs never show the token in the path
