"""The saved plan: the only code that writes a Plan as JSON or reads one back.

It owns the types: what JSON cannot carry (decimals, timestamps) is written as a string and given
its type back on reading, from the column it belongs to, so that a plan read from a file is the
same data as the plan that was written.

A written plan carries `digest`, the SHA-256 of everything else in it (changes, values,
fingerprints, secret references, the database, environment and config it is bound to, cplane's
version): reading a plan whose content does not match its digest (edited or corrupted) fails.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Numeric

from control_plane import __version__
from control_plane.errors import CplaneError
from control_plane.kinds.registry import ROW_KINDS, RowKind
from control_plane.plans.model import FORMAT_VERSION, Action, Change, FieldChange, Plan, ScheduledStep
from control_plane.state.rows import managed_columns

_PLAN_FIELDS = ("created_at", "environment", "config_revision", "config_digest", "policies_digest", "cplane_version",
                "database", "environment_change", "adopt", "unmanaged", "warnings", "errors", "pending_migrations", "at",
                "valid_until", "schedule_applied", "publish_schedule", "rollback_to", "record")


class PlanRejected(CplaneError):
    """A saved plan that cannot be applied as it is: another format, or content that is not its own."""


def change_to_dict(change: Change, include_values: bool = True) -> dict[str, Any]:
    data = {
        "kind": change.kind,
        "name": change.name,
        "action": str(change.action),
        "cause": change.cause,
        "fields": [{"field": f.field, "before": f.before, "after": f.after} for f in change.fields],
        "live_fingerprint": change.live_fingerprint,
        "desired_fingerprint": change.desired_fingerprint,
        "prevent_destroy": change.prevent_destroy,
        "impact": change.impact,
        "reason": change.reason,
    }
    if change.policy_violations:
        data["policy_violations"] = change.policy_violations
    if include_values:
        data["values"] = change.values
        data["secret_refs"] = change.secret_refs
    return data


def to_dict(plan: Plan, include_values: bool = True) -> dict[str, Any]:
    """JSON-ready (but for decimals and timestamps, which `dumps` writes as strings)."""
    return {
        "format_version": plan.format_version,
        "created_at": plan.created_at,
        "environment": plan.environment,
        "config_revision": plan.config_revision,
        "config_digest": plan.config_digest,
        "policies_digest": plan.policies_digest,
        "cplane_version": plan.cplane_version,
        "database": plan.database,
        "environment_change": plan.environment_change,
        "adopt": plan.adopt,
        "pending_migrations": plan.pending_migrations,
        **({"schema": plan.schema_note} if plan.pending_migrations else {}),
        "summary": plan.summary,
        "changes": [change_to_dict(c, include_values) for c in plan.changes],
        **_time_fields(plan, include_values),
        "unmanaged": plan.unmanaged,
        "warnings": plan.warnings,
        "errors": plan.errors,
        **({"record": plan.record} if plan.record is not None else {}),
    }


def _time_fields(plan: Plan, include_values: bool) -> dict[str, Any]:
    """The plan's clock, its scheduled changes and the schedule entries it applies; written only
    when there are any, so that plans of a config without schedules read as before."""
    out: dict[str, Any] = {}
    if plan.at or plan.scheduled or plan.schedule_applied:
        out.update(at=plan.at, valid_until=plan.valid_until, schedule_applied=plan.schedule_applied,
                   scheduled=[{"at": s.at, "entries": s.entries,
                               "changes": [change_to_dict(c, include_values) for c in s.changes]}
                              for s in plan.scheduled])
    if plan.publish_schedule:
        out["publish_schedule"] = True
    if plan.rollback_to is not None:
        out["rollback_to"] = plan.rollback_to
    return out


def _change_from_dict(c: dict[str, Any]) -> Change:
    change = Change(**{**c, "action": Action(c["action"]), "fields": [FieldChange(**f) for f in c.get("fields", [])]})
    if change.kind in ROW_KINDS and change.values:
        change.values = _typed(ROW_KINDS[change.kind], change.values)
    return change


def json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def content_digest(data: dict[str, Any]) -> str:
    """The digest of a saved plan's JSON content, `digest` itself excluded (key order and
    whitespace do not count)."""
    content = {k: v for k, v in data.items() if k != "digest"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=json_default)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def dumps(plan: Plan) -> str:
    data = json.loads(json.dumps(to_dict(plan), default=json_default))  # the JSON form the digest is over
    data["digest"] = content_digest(data)
    return json.dumps(data, indent=2, ensure_ascii=False)


def from_dict(data: dict[str, Any]) -> Plan:
    """The Plan of a saved plan's JSON; ValueError, KeyError or TypeError when it is not one."""
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"unsupported plan format_version {version!r}; this cplane reads {FORMAT_VERSION}")
    changes = [_change_from_dict(c) for c in data["changes"]]
    known = {k: data[k] for k in _PLAN_FIELDS if k in data}
    scheduled = [ScheduledStep(s["at"], list(s.get("entries", [])), [_change_from_dict(c) for c in s.get("changes", [])])
                 for s in data.get("scheduled", [])]
    return Plan(format_version=version, changes=changes, scheduled=scheduled, **known)


def loads(text: str) -> Plan:
    """A saved plan, checked: PlanRejected when it is of another format version or its content does
    not match its digest; ValueError, KeyError or TypeError when it is not a plan at all."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise PlanRejected(f"refusing to apply the plan: it is in plan format_version {version!r} and this cplane "
                           f"({__version__}) reads only {FORMAT_VERSION}; make a new plan")
    if data.get("digest") != content_digest(data):
        raise PlanRejected("refusing to apply the plan: its content does not match its digest (edited or corrupted); "
                           "make a new plan")
    return from_dict(data)


def write_plan(plan: Plan, path: Path | str) -> None:
    Path(path).write_text(dumps(plan))


def read_plan(path: Path | str) -> Plan:
    return loads(Path(path).read_text())


@cache
def _numeric_columns(rk: RowKind) -> tuple[str, ...]:
    return tuple(c for c in managed_columns(rk) if isinstance(rk.table.c[c].type, Numeric))


def _typed(rk: RowKind, values: dict[str, Any]) -> dict[str, Any]:
    """JSON carries decimals as strings: numeric columns get their Decimal back."""
    stale = [c for c in _numeric_columns(rk) if values.get(c) is not None and not isinstance(values[c], Decimal)]
    if not stale:
        return values
    out = dict(values)
    for column in stale:
        out[column] = Decimal(str(out[column]))
    return out
