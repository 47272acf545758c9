"""The audit form of a plan: what cplane_apply_runs keeps of each apply."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from control_plane.plans.model import Action, Plan
from control_plane.plans.planfile import to_dict


def audit_form(plan: Plan) -> dict[str, Any]:
    """Every change, without the values it wrote (the config revision has them); plain creates are
    listed by name to keep the record of large plans small.

    Plain creates are split off before the plan is converted, so that a first apply of 100,000 rows
    does not build 100,000 change dicts only to drop them; the summary is the whole plan's."""
    created: dict[str, list[str]] = {}
    kept = []
    for change in plan.changes:
        if change.action == Action.CREATE and not change.fields:
            created.setdefault(change.kind, []).append(change.name)
        else:
            kept.append(change)
    data = to_dict(replace(plan, changes=kept, record=None), include_values=False)  # (the record is the database's own)
    data["summary"] = plan.summary
    data["created"] = created
    return data
