"""Time in the reconcile loop: a plan's Scheduled section and whether its announcement is current,
stale plans, and the rollback hold (`apply_due`, in the controller, applies what is due).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, select

from control_plane.config.model import ConfigSet
from control_plane.db.models import ApplyRun, ScheduledChange
from control_plane.plans.model import Plan
from control_plane.plans.scheduled import attach_schedule
from control_plane.secrets import SecretBox
from control_plane.state.live import LiveState, existing_tables
from control_plane.state.schedule import format_time, parse_time

#: A plan made "now" on one machine and applied a moment later elsewhere: clocks may disagree by this much.
CLOCK_SKEW = timedelta(seconds=5)


def published_schedule(conn: Connection) -> list[dict]:
    """The upcoming changes the database announces now (empty before the tables exist)."""
    table = ScheduledChange.__table__
    if table.name not in existing_tables(conn):
        return []
    out = []
    for row in conn.execute(select(table).order_by(table.c.id)).mappings():
        at = row["at"] if row["at"].tzinfo else row["at"].replace(tzinfo=UTC)  # SQLite keeps naive UTC
        out.append({"at": format_time(at), "kind": row["kind"], "name": row["name"], "action": row["action"],
                    "fields": list(row["fields"] or []), "entries": list(row["entries"] or [])})
    return out


def plan_schedule(plan: Plan, conn: Connection, config: ConfigSet, t: datetime, box: SecretBox, live: LiveState,
                  counts: Callable[[str], dict[int, dict[str, int]]]) -> None:
    """The plan's clock and Scheduled steps; and whether apply must publish them (the announced
    upcoming changes differ)."""
    from control_plane.apply.run_rows import schedule_entries  # (apply's module: a plan needs only this)

    attach_schedule(plan, config, t, box, live, counts)
    plan.publish_schedule = _key(schedule_entries(plan)) != _key(published_schedule(conn))


def _key(entries: list[dict]) -> list:
    return sorted((e["at"], e["kind"], e["name"], e["action"], repr(e["fields"])) for e in entries)


def check_fresh(plan: Plan, now: datetime) -> None:
    """A plan holds for the time window it was computed for: refused at or after `valid_until` (a
    scheduled change fell due, the desired state moved), and before `at` (a plan for a later time)."""
    from control_plane.apply.execute import PlanStale

    if plan.valid_until and now >= parse_time(plan.valid_until):
        raise PlanStale(f"refusing to apply: the plan is stale: it was computed for {plan.at}, and the desired "
                        f"state changed at {plan.valid_until} (a scheduled change fell due); make a new plan")
    if plan.at and parse_time(plan.at) > now + CLOCK_SKEW:
        raise PlanStale(f"refusing to apply: the plan was computed for {plan.at}, which is later than now "
                        f"({format_time(now)}); apply it then, or make a new plan")


def last_run(conn: Connection) -> dict | None:
    table = ApplyRun.__table__
    if table.name not in existing_tables(conn):
        return None
    row = conn.execute(select(table).order_by(table.c.id.desc()).limit(1)).mappings().first()
    return dict(row) if row is not None else None


def rollback_state(conn: Connection) -> dict | None:
    """When the last apply was a rollback: {"run": its id, "to": the run it restored,
    "config_digest", "config_revision": the config in force when it was made}."""
    run = last_run(conn)
    if run is None or "rollback" not in (run.get("kind") or ""):
        return None
    plan = run.get("plan") or {}
    return {"run": run["id"], "to": plan.get("rollback_to"), "config_digest": run.get("config_digest") or "",
            "config_revision": run.get("config_revision") or ""}


def rollback_hold(conn: Connection, config_digest: str) -> str:
    """Why an automatic apply must not run now (empty: it may): the database was rolled back and
    the config is still the one it was rolled back from. A new config revision lifts the hold; a
    manual `cplane apply` always may."""
    state = rollback_state(conn)
    if state is None or state["config_digest"] != config_digest:
        return ""
    return (f"the database is rolled back to run #{state['to']} (run #{state['run']}); automatic applies wait "
            "for a new config revision (apply manually to return to the config)")


def status_schedule(plan: Plan) -> dict:
    """What `cplane status` says of time: the plan's clock and the next scheduled change."""
    step = plan.scheduled[0] if plan.scheduled else None
    return {"scheduled_changes": sum(len(s.changes) for s in plan.scheduled),
            "next_scheduled": None if step is None else {
                "at": step.at, "entries": step.entries,
                "changes": [f"{c.kind}/{c.name} {c.action}" + (f" {', '.join(f.field for f in c.fields)}" if
                                                              c.fields and c.action == "update" else "")
                            for c in step.changes]}}
