"""The two places where the watch loop meets scheduled changes and rollback, one function each.

- Scheduled changes: the plan will carry a "Scheduled" section (future changes with their time).
  `scheduled_changes(plan)` reads it; changes that are due are already ordinary plan changes (the
  desired state is a function of time), so the loop applies them like any config change, subject
  to the windows (a due change inside a deny window waits for its end).
- Rollback: after `cplane rollback` the loop must not auto-apply the config over it until the
  config revision changes (Argo CD's trap). `rollback_hold(conn, config_digest)` returns why (or None).
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
    """The plan's future changes (its Scheduled section, plans/model.ScheduledStep), soonest first;
    changes that are due are ordinary plan changes already."""
    out = []
    for step in plan.scheduled:
        at = _at(step.at)
        if at is None:
            continue
        for change in step.changes:
            out.append(ScheduledChange(at, change.kind, change.name, str(change.action), "; ".join(step.entries)))
    return sorted(out, key=lambda s: s.at)


def rollback_hold(conn, config_digest: str) -> str | None:
    """Why the loop must not auto-apply now, or None (reconcile/timeline.py decides)."""
    from control_plane.reconcile.timeline import rollback_hold as hold

    return hold(conn, config_digest) or None
