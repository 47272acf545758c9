"""The two places where the watch loop meets issue 18 (scheduled changes, rollback). Each is one
function; the loop calls nothing else of those features, so plugging them in is local here.

- Scheduled changes: the plan will carry a "Scheduled" section (future changes with their time).
  `scheduled_changes(plan)` reads it; changes that are due are already ordinary plan changes (the
  desired state is a function of time), so the loop applies them like any config change, subject
  to the windows (a due change inside a deny window waits for its end).
- Rollback: `cplane rollback` will record that the database is rolled back; while it is, the loop
  must not auto-apply the config over it. `rollback_hold(conn)` returns why (or None).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class ScheduledChange:
    at: datetime
    kind: str
    name: str
    action: str
    description: str = ""


def _at(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def scheduled_changes(plan) -> list[ScheduledChange]:
    """The plan's future changes, soonest first. Issue 18 plugs in here: today's plans have no
    `scheduled` attribute, so this is empty; items are read duck-typed (`at`, `kind`, `name`,
    `action` as attributes or keys) so that its Plan.scheduled fits without a change here."""
    out = []
    for item in getattr(plan, "scheduled", None) or []:
        get = (lambda k, item=item: item.get(k)) if isinstance(item, dict) else (
            lambda k, item=item: getattr(item, k, None))
        at = _at(get("at"))
        if at is None:
            continue
        change = get("change")
        kind = get("kind") or getattr(change, "kind", "") or ""
        name = get("name") or getattr(change, "name", "") or ""
        action = get("action") or getattr(change, "action", "") or "update"
        out.append(ScheduledChange(at, str(kind), str(name), str(action), str(get("description") or "")))
    return sorted(out, key=lambda s: s.at)


def rollback_hold(conn) -> str | None:
    """Why the loop must not auto-apply now because the database was rolled back, or None.
    Issue 18 (`cplane rollback`) plugs its record in here; until then there is no rollback state."""
    return None
