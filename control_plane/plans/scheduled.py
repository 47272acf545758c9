"""The plan's view of time: the changes scheduled after its clock (the Scheduled section) and the
schedule entries whose changes fall due in it (what the audit names).

A step is the difference between the desired rows just before a change point and at it, for the
objects that have a window or a schedule (the others are the same at every time). Updates carry
their field diff and their impact on user data (counted on the live rows); an object leaving its
window is a delete, or a retire when user data references it (as apply will decide then).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from control_plane.config.model import ConfigSet
from control_plane.config.schedule import EPSILON, at_time, change_points, format_time, timed_objects
from control_plane.kinds.registry import ROW_KINDS, apply_order
from control_plane.plans.compare import BLOCKING, _field_changes, _impact, _plan_values
from control_plane.plans.model import Action, Change, FieldChange, Plan, ScheduledStep
from control_plane.secrets import SecretBox
from control_plane.state.desired import Rows, config_rows
from control_plane.state.live import LiveState
from control_plane.state.rows import canonical


def _rows_at(config: ConfigSet, t: datetime) -> Rows:
    return config_rows(at_time(config, t, only_timed=True))


def entries_at(config: ConfigSet, t: datetime) -> list[str]:
    """What changes the desired state at `t`: schedule entries, windows opening or closing."""
    labels = []
    for obj in timed_objects(config):
        timing = obj.timing
        labels += [f"{obj.kind}/{obj.name} {e.label}" for e in timing.entries if e.at == t]
        if timing.effective_from == t:
            labels.append(f"{obj.kind}/{obj.name} metadata.effectiveFrom")
        if timing.effective_until == t:
            labels.append(f"{obj.kind}/{obj.name} metadata.effectiveUntil")
    return sorted(labels)


def diff_rows(before: Rows, after: Rows, box: SecretBox, live: LiveState,
              counts: Callable[[str], dict[int, dict[str, int]]]) -> list[Change]:
    changes: list[Change] = []
    removals: list[Change] = []
    for kind in apply_order():
        rk = ROW_KINDS[kind]
        a, b = before.get(kind, {}), after.get(kind, {})
        have = live.rows.get(kind, {})
        for key in sorted(b):
            row = b[key]
            current = have.get(key)
            impact = _impact(counts(kind), current.id) if current is not None and rk.user_refs else {}
            if key not in a:
                changes.append(Change(kind, key, Action.CREATE, values=_plan_values(rk, row), impact=impact))
            elif canonical(rk, a[key].values, box) != canonical(rk, row.values, box):
                changes.append(Change(kind, key, Action.UPDATE, fields=_field_changes(rk, row, a[key], box),
                                      impact=impact))
        for key in sorted(set(a) - set(b)):
            current = have.get(key)
            per_row = counts(kind).get(current.id, {}) if current is not None and rk.user_refs else {}
            if per_row.get(BLOCKING) and rk.retire_column:
                removals.append(Change(kind, key, Action.RETIRE, fields=[FieldChange(rk.retire_column, True, False)],
                                       impact=_impact(counts(kind), current.id),
                                       reason="leaves its window; referenced by user data"))
            else:
                removals.append(Change(kind, key, Action.DELETE, reason="leaves its window"))
    order = apply_order()
    removals.sort(key=lambda c: -order.index(c.kind))
    return changes + removals


def attach_schedule(plan: Plan, config: ConfigSet, t: datetime, box: SecretBox, live: LiveState,
                    counts: Callable[[str], dict[int, dict[str, int]]]) -> None:
    """Fill the plan's clock (`at`, `valid_until`), its Scheduled steps after `t` and the schedule
    entries due by `t` whose changes the plan applies."""
    points = change_points(config)
    if not points:
        return
    plan.at = format_time(t)
    later = [p for p in points if p > t]
    plan.valid_until = format_time(later[0]) if later else ""
    previous = _rows_at(config, t)
    for p in later:
        rows = _rows_at(config, p)
        changes = diff_rows(previous, rows, box, live, counts)
        if changes:
            plan.scheduled.append(ScheduledStep(format_time(p), entries_at(config, p), changes))
        previous = rows
    due = {(c.kind, c.name): c for c in plan.changes}
    if not due:
        return
    for p in (p for p in points if p <= t):
        step = diff_rows(_rows_at(config, p - EPSILON), _rows_at(config, p), box, live, counts)
        applied = []
        for change in step:
            planned = due.get((change.kind, change.name))
            if planned is None:
                continue
            if change.action == Action.UPDATE:
                now_fields = {f.field: f.after for f in planned.fields}
                applied += [f"{change.kind}/{change.name} {f.field}" for f in change.fields
                            if f.field in now_fields and now_fields[f.field] == f.after]
            elif change.action == planned.action or {change.action, planned.action} <= {Action.DELETE, Action.RETIRE}:
                applied.append(f"{change.kind}/{change.name} {planned.action}")
        if applied:
            plan.schedule_applied.append({"at": format_time(p), "entries": entries_at(config, p), "changes": applied})
