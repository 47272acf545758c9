"""Plans as text (Terraform-like), Markdown (pull-request comments) and JSON. Rendering never computes."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from control_plane.plans import planfile
from control_plane.plans.model import SUMMARY_ACTIONS, Change, Plan

MARKERS = {"create": "+", "update": "~", "adopt": "~", "delete": "-", "retire": "!"}
VERBS = {
    "create": "will be created",
    "update": "will be updated in place",
    "adopt": "will be adopted (taken under management)",
    "delete": "will be deleted",
    "retire": "will be retired (deactivated, kept)",
}
# ANSI foreground colours (green, yellow, red, magenta): rendering is plain text, it needs no click.
COLOURS = {"+": "\x1b[32m", "~": "\x1b[33m", "-": "\x1b[31m", "!": "\x1b[35m"}
RESET = "\x1b[0m"
MAX_PER_KIND = 200
NO_CHANGES = "No changes. The database matches the configuration."


def summary_line(plan: Plan) -> str:
    s = plan.summary
    return f"Plan: {s['create']} to create, {s['update']} to update, {s['delete']} to delete, {s['retire']} to retire."


def _value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if len(value) <= 80 else json.dumps(value[:77] + "...", ensure_ascii=False)
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= 100 else text[:97] + "..."


def _by_kind(plan: Plan) -> dict[str, list[Change]]:
    groups: dict[str, list[Change]] = defaultdict(list)
    for change in plan.changes:
        groups[change.kind].append(change)
    return groups


def render_text(plan: Plan, colour: bool = False) -> str:
    def paint(s: str, marker: str) -> str:
        return f"{COLOURS[marker]}{s}{RESET}" if colour and marker in COLOURS else s

    lines: list[str] = []
    if plan.changes:
        lines.append("cplane will perform the following actions:")
        lines.append("")
    for kind, changes in _by_kind(plan).items():
        for change in changes[:MAX_PER_KIND]:
            marker = MARKERS[change.action]
            note = " (drift: edited outside cplane)" if change.cause == "drift" else ""
            lines.append(f"  # {change.kind}/{change.name} {VERBS[change.action]}{note}")
            lines.append(paint(f"  {marker} {change.kind}/{change.name}", marker))
            for f in change.fields:
                lines.append(f"      {f.field}: {_value(f.before)} → {_value(f.after)}")
            if change.reason and change.action in ("retire", "delete"):
                lines.append(f"      reason: {change.reason}")
            if change.impact and change.action not in ("retire",):
                lines.append("      impact: " + ", ".join(f"{n} {label}" for label, n in change.impact.items()))
            lines.append("")
        if len(changes) > MAX_PER_KIND:
            lines.append(f"  ... and {len(changes) - MAX_PER_KIND} more {kind} changes (see --format json)")
            lines.append("")
    if plan.unmanaged:
        lines.append(f"Unmanaged rows (never touched by apply; --adopt takes rows named in config under management): {len(plan.unmanaged)}")
        for item in plan.unmanaged[:MAX_PER_KIND]:
            lines.append(f"  ? {item['kind']}/{item['name']}: {item['reason']}")
        if len(plan.unmanaged) > MAX_PER_KIND:
            lines.append(f"  ... and {len(plan.unmanaged) - MAX_PER_KIND} more")
        lines.append("")
    for warning in plan.warnings:
        lines.append(f"Warning: {warning}")
    for error in plan.errors:
        lines.append(f"Error: {error}")
    lines.append(summary_line(plan) if plan.changes else NO_CHANGES)
    return "\n".join(lines)


def render_markdown(plan: Plan) -> str:
    lines = ["### cplane plan", ""]
    if plan.environment:
        lines.append(f"Environment: `{plan.environment}` · config revision `{plan.config_revision or 'unknown'}`")
        lines.append("")
    if plan.errors:
        lines.append("> [!CAUTION]")
        for error in plan.errors:
            lines.append(f"> {error}")
        lines.append("")
    if not plan.changes:
        lines.append(f"**{NO_CHANGES}**")
    else:
        lines.append(f"**{summary_line(plan)}**")
        lines.append("")
        lines.append("| kind | create | update | delete | retire | drift |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        groups = _by_kind(plan)
        for kind, changes in groups.items():
            counts = defaultdict(int)
            for c in changes:
                counts["update" if c.action == "adopt" else c.action] += 1
            drift = sum(1 for c in changes if c.cause == "drift")
            lines.append(f"| {kind} | " + " | ".join(str(counts[a]) for a in SUMMARY_ACTIONS) + f" | {drift} |")
        lines.append("")
        for kind, changes in groups.items():
            lines.append(f"<details><summary>{kind}: {len(changes)} change(s)</summary>")
            lines.append("")
            for change in changes[:MAX_PER_KIND]:
                flag = " **(drift)**" if change.cause == "drift" else ""
                lines.append(f"- `{MARKERS[change.action]}` **{change.name}** {VERBS[change.action]}{flag}")
                for f in change.fields:
                    lines.append(f"  - `{f.field}`: `{_value(f.before)}` → `{_value(f.after)}`")
                if change.reason and change.action in ("retire", "delete"):
                    lines.append(f"  - reason: {change.reason}")
                if change.impact and change.action != "retire":
                    lines.append("  - impact: " + ", ".join(f"{n} {label}" for label, n in change.impact.items()))
            if len(changes) > MAX_PER_KIND:
                lines.append(f"- … and {len(changes) - MAX_PER_KIND} more")
            lines.append("")
            lines.append("</details>")
            lines.append("")
    if plan.unmanaged:
        lines.append(f"<details><summary>{len(plan.unmanaged)} unmanaged row(s), never touched</summary>")
        lines.append("")
        for item in plan.unmanaged[:MAX_PER_KIND]:
            lines.append(f"- {item['kind']}/{item['name']}: {item['reason']}")
        lines.append("")
        lines.append("</details>")
    for warning in plan.warnings:
        lines.append(f"- ⚠️ {warning}")
    return "\n".join(lines).rstrip() + "\n"


def render_json(plan: Plan) -> str:
    return planfile.dumps(plan)  # the JSON form is the saved plan's own


RENDERERS = {"text": render_text, "markdown": render_markdown, "json": render_json}
