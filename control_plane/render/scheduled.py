"""The Scheduled section of a plan (text and Markdown): each future change with its time, its field
diff and its impact, in time order. Rendering never computes."""

from __future__ import annotations

from control_plane.plans.model import Change, Plan
from control_plane.render.diff import create_attributes, field_entries, fmt

MARKERS = {"create": "+", "update": "~", "adopt": "<", "delete": "-", "retire": "!"}
HEADING = "Scheduled changes (not applied by this plan; each is applied by the first apply at or after its time):"


def _impact(change: Change) -> str:
    return ", ".join(f"{n} {label}" for label, n in change.impact.items())


def change_lines(at: str, change: Change) -> list[tuple[str, list[str]]]:
    """(headline, detail lines) of one scheduled change: one headline per changed field."""
    marker = MARKERS[change.action]
    label = f"at {at}: {marker} {change.kind}/{change.name}"
    details = []
    if change.impact:
        details.append(f"impact: {_impact(change)}")
    details += [f"policy {v['policy']} ({v['severity']}): {v['message']}" for v in change.policy_violations]
    if change.action == "update":
        out = []
        for entry in field_entries(change):
            if entry.op == "change":
                out.append((f"{label} {entry.path}: {fmt(entry.before)} → {fmt(entry.after)}", list(details)))
            elif entry.op in ("add", "remove"):
                value = entry.after if entry.op == "add" else entry.before
                out.append((f"{label} {entry.path}: {'+' if entry.op == 'add' else '-'} {fmt(value)}", list(details)))
            else:
                out.append((f"{label} {entry.path}: (changed; see `cplane plan --at {at}`)", list(details)))
        return out
    if change.action == "create":
        details = [f"{path}: {fmt(value)}" for path, value in create_attributes(change)] + details
        return [(f"{label} (created)", details)]
    verb = "retired (deactivated, kept)" if change.action == "retire" else "deleted"
    return [(f"{label} ({verb}{': ' + change.reason if change.reason else ''})", details)]


def scheduled_text(plan: Plan) -> list[str]:
    if not plan.scheduled:
        return []
    lines = [HEADING]
    for step in plan.scheduled:
        for change in step.changes:
            for headline, details in change_lines(step.at, change):
                lines.append(f"  {headline}")
                lines += [f"      {d}" for d in details]
        if step.entries:
            lines.append(f"      from: {', '.join(step.entries)}")
    if plan.publish_schedule:
        lines.append("  (apply announces these in the catalog's upcoming changes)")
    lines.append("")
    return lines


def scheduled_markdown(plan: Plan) -> list[str]:
    if not plan.scheduled:
        return []
    lines = ["#### Scheduled", "", "Not applied by this plan; each is applied by the first apply at or after its time.", ""]
    for step in plan.scheduled:
        for change in step.changes:
            for headline, details in change_lines(step.at, change):
                lines.append(f"- `{headline}`")
                lines += [f"  - {d}" for d in details]
        if step.entries:
            lines.append(f"  - from: {', '.join(step.entries)}")
    lines.append("")
    return lines
