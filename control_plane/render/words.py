"""The words of a plan with no change, where they cost nothing to import: render.plan renders them
from here, and the raw-driver fast path (cli/entry.py) prints them without importing render.plan."""

from __future__ import annotations

from collections.abc import Iterable

NO_CHANGES = "No changes. The database matches the configuration."


def no_change_text(warnings: Iterable[str]) -> str:
    """render.plan.render_text of a plan with no change, no schedule, no pending migration and these
    warnings (tests/test_plan_raw.py holds the two to the same text)."""
    return "\n".join([*(f"Warning: {w}" for w in warnings), NO_CHANGES])
