"""Webhook notifications of the watch loop: drift detected, apply succeeded, apply failed, blocked
by a window. Sent from a background thread with retries and backoff, so a slow or dead receiver
never holds up a round; bodies name objects and counts, never a value (so never a secret).

Two body formats: Slack-compatible (`{"text": ...}`, what Slack, Mattermost and Rocket.Chat
incoming webhooks take) and generic JSON (`{"event", "message", "environment", ...}`)."""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime

log = logging.getLogger("cplane.watch")

EVENTS = ("drift_detected", "apply_succeeded", "apply_failed", "window_blocked")
ENV_GENERIC = "CPLANE_WATCH_WEBHOOKS"
ENV_SLACK = "CPLANE_WATCH_SLACK_WEBHOOKS"
RETRIES = 5
BACKOFF = 0.5  # seconds before the 2nd attempt, doubling
TIMEOUT = 5.0
MAX_QUEUED = 1000
MAX_LISTED = 50  # objects named in one notification


@dataclass(frozen=True)
class Webhook:
    url: str
    format: str  # "slack" | "generic"

    @property
    def shown(self) -> str:
        """The URL without its path and query (Slack's carries the token)."""
        match = re.match(r"^([a-z]+://[^/]+)", self.url)
        return (match.group(1) if match else "webhook") + "/…"


def webhooks_from(generic: tuple[str, ...] = (), slack: tuple[str, ...] = (), environ=None) -> list[Webhook]:
    environ = os.environ if environ is None else environ
    split = lambda text: [u for u in re.split(r"[\s,]+", text or "") if u]  # noqa: E731
    hooks = [Webhook(u, "generic") for u in [*generic, *split(environ.get(ENV_GENERIC, ""))]]
    hooks += [Webhook(u, "slack") for u in [*slack, *split(environ.get(ENV_SLACK, ""))]]
    return hooks


@dataclass
class Event:
    event: str
    message: str
    environment: str | None = None
    database: str = ""
    config_revision: str = ""
    objects: list[dict] = field(default_factory=list)  # {"kind", "name", "action", "cause"}: no values
    summary: dict = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def generic(self) -> dict:
        return {"event": self.event, "message": self.message, "environment": self.environment,
                "database": self.database, "config_revision": self.config_revision, "at": self.at,
                "summary": self.summary, "objects": self.objects[:MAX_LISTED],
                "objects_total": len(self.objects)}

    def slack(self) -> dict:
        icon = {"drift_detected": ":warning:", "apply_succeeded": ":white_check_mark:",
                "apply_failed": ":x:", "window_blocked": ":no_entry:"}.get(self.event, "")
        where = f" ({self.environment})" if self.environment else ""
        lines = [f"{icon} cplane watch{where}: {self.message}"]
        lines += [f"• {o['kind']}/{o['name']} ({o.get('action', '')}, {o.get('cause', '')})" for o in self.objects[:20]]
        if len(self.objects) > 20:
            lines.append(f"… and {len(self.objects) - 20} more")
        return {"text": "\n".join(lines)}


class Notifier:
    """A queue and one daemon thread that posts each event to every webhook."""

    def __init__(self, hooks: list[Webhook], *, retries: int = RETRIES, backoff: float = BACKOFF):
        self.hooks = hooks
        self.retries = retries
        self.backoff = backoff
        self.queue: queue.Queue = queue.Queue(MAX_QUEUED)
        self.sent = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if hooks:
            self._thread = threading.Thread(target=self._run, name="cplane-watch-notify", daemon=True)
            self._thread.start()

    def notify(self, event: Event) -> None:
        """Never blocks: a full queue drops the event (and says so)."""
        if not self.hooks:
            return
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            log.warning("watch: notification queue full; dropped %s", event.event)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to `timeout` seconds, then stop."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        while not self.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self.queue.put_nowait(None) if not self.queue.full() else None
        self._thread.join(max(0.0, deadline - time.monotonic()) + 0.1)

    def _run(self) -> None:
        while not self._stop.is_set():
            event = self.queue.get()
            if event is None:
                break
            for hook in self.hooks:
                self._post(hook, event)

    def _post(self, hook: Webhook, event: Event) -> None:
        body = json.dumps(event.slack() if hook.format == "slack" else event.generic()).encode()
        delay = self.backoff
        for attempt in range(1, self.retries + 1):
            request = urllib.request.Request(hook.url, data=body, method="POST",
                                             headers={"Content-Type": "application/json",
                                                      "User-Agent": "cplane-watch"})
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                    if 200 <= response.status < 300:
                        self.sent += 1
                        return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                log.warning("watch: webhook %s: attempt %d failed: %s", hook.shown, attempt, _reason(exc))
            if attempt < self.retries and self._stop.wait(delay):
                break
            delay *= 2
        self.failed += 1
        log.warning("watch: webhook %s: gave up on %s after %d attempts", hook.shown, event.event, self.retries)


def _reason(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    return str(getattr(exc, "reason", exc)).splitlines()[0] if str(exc) else type(exc).__name__
