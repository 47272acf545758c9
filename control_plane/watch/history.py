"""Past applies as the status page shows them (read-only; the same records as `cplane history`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import Engine, inspect, select

from control_plane.plans.model import Plan


def _rfc3339(value) -> str:
    if not isinstance(value, datetime):
        return str(value or "")
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(value):
    return json.loads(value or "{}") if isinstance(value, str) else (value or {})


def runs(engine: Engine, *, limit: int = 20, run_id: int | None = None) -> list[dict]:
    from control_plane.db.models import ApplyRun

    table = ApplyRun.__table__
    with engine.connect() as conn:
        if not inspect(conn).has_table(ApplyRun.__tablename__):
            return []
        stmt = select(table).order_by(table.c.id.desc())
        stmt = stmt.where(table.c.id == run_id) if run_id is not None else stmt.limit(limit)
        rows = [dict(r) for r in conn.execute(stmt).mappings().all()]
    return [{"id": r["id"], "started_at": _rfc3339(r["started_at"]), "actor": r["actor"],
             "environment": r["environment"], "config_revision": r["config_revision"], "kind": r["kind"],
             "summary": _json(r["summary"]), "plan": _json(r["plan"])} for r in rows]


def stored_plan(stored: dict) -> Plan:
    """A run's audit form back as a Plan (plain creates, kept by name, come back without fields);
    the same reading as `cplane history show`."""
    from control_plane.kinds.registry import apply_order
    from control_plane.plans.model import Action, Change
    from control_plane.plans.planfile import from_dict

    data = dict(stored)
    created = data.pop("created", {}) or {}
    plan = from_dict(data)
    order = {kind: i for i, kind in enumerate(apply_order())}
    extra = [Change(kind=kind, name=name, action=Action.CREATE) for kind, names in created.items() for name in names]
    plan.changes = sorted(plan.changes + extra, key=lambda c: order.get(c.kind, len(order)))
    return plan
