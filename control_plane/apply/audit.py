"""The audit form of a plan: what cplane_apply_runs keeps of each apply."""

from __future__ import annotations

from typing import Any

from control_plane.plans.model import Action, Plan
from control_plane.plans.planfile import to_dict


def audit_form(plan: Plan) -> dict[str, Any]:
    """Every change, without the values it wrote (the config revision has them); plain creates are
    listed by name to keep the record of large plans small."""
    data = to_dict(plan, include_values=False)
    created: dict[str, list[str]] = {}
    kept = []
    for change, entry in zip(plan.changes, data["changes"], strict=True):
        if change.action == Action.CREATE and not change.fields:
            created.setdefault(change.kind, []).append(change.name)
        else:
            kept.append(entry)
    data["changes"] = kept
    data["created"] = created
    return data
