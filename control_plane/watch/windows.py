"""Change windows (SyncWindow documents): is an automatic apply allowed now, and until when not.

`deny` windows block while open; when `allow` windows exist, applies happen only inside one. A
manual `cplane apply` in a deny window is refused unless `--override-window` (then audited in the
applied plan's warnings)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from control_plane.errors import CplaneError
from control_plane.kinds.windows import SyncWindowSpec, parse_instant, parse_weekly

KIND = "SyncWindow"
WEEK = timedelta(days=7)


class WindowBlocked(CplaneError):
    code = "window_blocked"


@dataclass(frozen=True)
class Window:
    name: str
    spec: SyncWindowSpec

    def applies_to(self, environment: str | None) -> bool:
        return not self.spec.environments or (environment or "") in self.spec.environments

    def open_span(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The (start, end) of this window's span that contains `now`, if any."""
        spec = self.spec
        if spec.from_ is not None:
            start, end = parse_instant(spec.from_), parse_instant(spec.until)
            return (start, end) if start <= now < end else None
        zone = ZoneInfo(spec.time_zone)
        local = now.astimezone(zone)
        sd, sh, sm = parse_weekly(spec.start)
        ed, eh, em = parse_weekly(spec.end)
        monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        for week in (-1, 0):
            base = monday + week * WEEK
            start = (base + timedelta(days=sd)).replace(hour=sh, minute=sm)
            end = (base + timedelta(days=ed)).replace(hour=eh, minute=em)
            if end <= start:
                end += WEEK
            # Wall-clock times in the zone (DST-correct), compared in UTC.
            start, end = start.replace(tzinfo=zone), end.replace(tzinfo=zone)
            if start <= now < end:
                return start, end
        return None

    def next_start(self, now: datetime) -> datetime | None:
        spec = self.spec
        if spec.from_ is not None:
            start = parse_instant(spec.from_)
            return start if start > now else None
        zone = ZoneInfo(spec.time_zone)
        local = now.astimezone(zone)
        sd, sh, sm = parse_weekly(spec.start)
        monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        for week in (0, 1):
            start = ((monday + week * WEEK) + timedelta(days=sd)).replace(hour=sh, minute=sm, tzinfo=zone)
            if start > now:
                return start
        return None


@dataclass(frozen=True)
class WindowState:
    blocked: bool
    reason: str = ""
    window: str = ""
    until: datetime | None = None  # when the block ends (None: not known, or not blocked)

    def as_dict(self) -> dict:
        return {"blocked": self.blocked, "reason": self.reason, "window": self.window,
                "until": _rfc3339(self.until) if self.until else None}


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def windows_of(config, environment: str | None) -> list[Window]:
    """The SyncWindow objects of a ConfigSet that apply to `environment`."""
    return [w for w in (Window(o.name, o.spec) for o in config.of_kind(KIND).values()) if w.applies_to(environment)]


def evaluate(windows: list[Window], now: datetime | None = None) -> WindowState:
    now = now or datetime.now(UTC)
    for window in sorted(windows, key=lambda w: w.name):
        if window.spec.action == "deny":
            span = window.open_span(now)
            if span:
                return WindowState(True, f"deny window {window.name!r} is open until {_rfc3339(span[1])}",
                                   window.name, span[1].astimezone(UTC))
    allows = [w for w in windows if w.spec.action == "allow"]
    if allows and not any(w.open_span(now) for w in allows):
        starts = [s for s in (w.next_start(now) for w in allows) if s]
        nxt = min(starts) if starts else None
        names = ", ".join(sorted(w.name for w in allows))
        return WindowState(True, f"outside every allow window ({names})" +
                           (f"; the next opens at {_rfc3339(nxt)}" if nxt else ""), "", nxt.astimezone(UTC) if nxt else None)
    return WindowState(False)


def declared_windows(config_dir, environment: str | None) -> list[Window]:
    """The SyncWindow objects of a config tree (overlay patches included) that apply to
    `environment`. A tree in which no file mentions SyncWindow has none, and is not loaded again
    for it: a manual apply without windows pays a scan of bytes, nothing more."""
    from pathlib import Path

    root = Path(config_dir)
    if not root.is_dir():
        return []
    from control_plane.reconcile.nochange import mentions

    if not mentions(root, b"SyncWindow"):
        return []
    from control_plane.reconcile.controller import load_valid_config

    config, _ = load_valid_config(root, environment)
    return windows_of(config, environment)


def manual_apply_guard(config_dir, environment: str | None, override: bool, now: datetime | None = None) -> str:
    """For `cplane apply`: refuse inside an open deny window unless `override`. Returns the warning
    the audited plan carries when overridden ('' when no deny window is open). Allow windows bind
    only the watch loop."""
    deny = [w for w in declared_windows(config_dir, environment) if w.spec.action == "deny"]
    state = evaluate(deny, now)
    if not state.blocked:
        return ""
    if not override:
        raise WindowBlocked(f"refusing to apply: {state.reason}; pass --override-window to apply anyway (audited)")
    return f"applied inside deny window {state.window!r} with --override-window"
