"""Plans: plain, serializable data, and how they are computed (compare).

compare(desired, live) → Plan → render (render.py) or execute (apply.py). A Plan holds everything
apply needs: the values to write (secrets only by reference), and the fingerprint of every live
row it was computed from, so that a saved plan applied later can detect that the database moved.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, select, text

from control_plane.kinds.registry import ROW_KINDS, RowKind, apply_order
from control_plane.secrets import SENSITIVE, SecretBox
from control_plane.state.rows import (
    DesiredState,
    LiveState,
    Row,
    canonical,
    canonical_column,
    fingerprint,
    managed_columns,
)

FORMAT_VERSION = 1
ACTIONS = ("create", "update", "delete", "retire")


@dataclass
class FieldChange:
    field: str
    before: Any
    after: Any


@dataclass
class Change:
    kind: str
    name: str
    action: str  # create | update | delete | retire | adopt
    cause: str = "config"  # config | drift | adopt
    fields: list[FieldChange] = field(default_factory=list)
    # create/update/adopt: every managed column (references by natural key, secrets absent).
    values: dict[str, Any] = field(default_factory=dict)
    secret_refs: dict[str, Any] = field(default_factory=dict)
    live_fingerprint: str | None = None
    desired_fingerprint: str | None = None
    prevent_destroy: bool = False
    impact: dict[str, int] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self, include_values: bool = True) -> dict[str, Any]:
        data = {
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
            "cause": self.cause,
            "fields": [{"field": f.field, "before": f.before, "after": f.after} for f in self.fields],
            "live_fingerprint": self.live_fingerprint,
            "desired_fingerprint": self.desired_fingerprint,
            "prevent_destroy": self.prevent_destroy,
            "impact": self.impact,
            "reason": self.reason,
        }
        if include_values:
            data["values"] = self.values
            data["secret_refs"] = self.secret_refs
        return data


@dataclass
class Plan:
    format_version: int = FORMAT_VERSION
    created_at: str = ""
    environment: str | None = None
    config_revision: str = ""
    config_digest: str = ""
    adopt: bool = False
    changes: list[Change] = field(default_factory=list)
    unmanaged: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Migrations the database was behind head when planned (apply runs them before the changes).
    pending_migrations: int = 0

    @property
    def schema_note(self) -> str:
        return f"Schema: {self.pending_migrations} migrations pending (apply runs them first)" if self.pending_migrations else ""

    @property
    def summary(self) -> dict[str, int]:
        counts = Counter("update" if c.action == "adopt" else c.action for c in self.changes)
        return {action: counts.get(action, 0) for action in ACTIONS}

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def to_dict(self, include_values: bool = True) -> dict[str, Any]:
        """JSON-ready. Without values, the compact form kept in the audit record."""
        return {
            "format_version": self.format_version,
            "created_at": self.created_at,
            "environment": self.environment,
            "config_revision": self.config_revision,
            "config_digest": self.config_digest,
            "adopt": self.adopt,
            "pending_migrations": self.pending_migrations,
            **({"schema": self.schema_note} if self.pending_migrations else {}),
            "summary": self.summary,
            "changes": [c.to_dict(include_values) for c in self.changes],
            "unmanaged": self.unmanaged,
            "warnings": self.warnings,
            "errors": self.errors,
        }

    def audit_dict(self) -> dict[str, Any]:
        """The plan as kept in the audit record: every change, without the values it wrote
        (the config revision has them); plain creates are listed by name to keep large plans small."""
        data = self.to_dict(include_values=False)
        created: dict[str, list[str]] = {}
        kept = []
        for change, entry in zip(self.changes, data["changes"], strict=True):
            if change.action == "create" and not change.fields:
                created.setdefault(change.kind, []).append(change.name)
            else:
                kept.append(entry)
        data["changes"] = kept
        data["created"] = created
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=_json_default)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported plan format_version {version!r}; this cplane reads {FORMAT_VERSION}")
        changes = [
            Change(**{**c, "fields": [FieldChange(**f) for f in c.get("fields", [])]}) for c in data["changes"]
        ]
        known = {k: data[k] for k in ("created_at", "environment", "config_revision", "config_digest", "adopt",
                                      "unmanaged", "warnings", "errors", "pending_migrations") if k in data}
        return cls(format_version=version, changes=changes, **known)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


# --- compare ------------------------------------------------------------------------------------


def _display(rk: RowKind, column: str, value: Any) -> Any:
    if column in rk.secret_columns:
        if value is None:
            return None
        if isinstance(value, dict):
            return {k: SENSITIVE for k in sorted(value)}
        return SENSITIVE
    scale = getattr(rk.table.c[column].type, "scale", None)
    if isinstance(value, (Decimal, float, int)) and not isinstance(value, bool) and scale:
        return str(Decimal(str(value)).quantize(Decimal(1).scaleb(-scale)))
    return _jsonable(value)


def _field_changes(rk: RowKind, desired: Row, live: Row, box: SecretBox) -> list[FieldChange]:
    changes = []
    for column in managed_columns(rk):
        a = canonical_column(rk, column, desired.values.get(column), box)
        b = canonical_column(rk, column, live.values.get(column), box)
        if a != b:
            before, after = _display(rk, column, live.values.get(column)), _display(rk, column, desired.values.get(column))
            if column in rk.secret_columns and before == after:
                before, after = f"{SENSITIVE} (changed)", SENSITIVE
            changes.append(FieldChange(column, before, after))
    return changes


def _plan_values(rk: RowKind, row: Row) -> dict[str, Any]:
    """What apply writes; decimals stay Decimal in memory and become strings only in JSON."""
    if not rk.secret_columns:
        return row.values
    return {c: v for c, v in row.values.items() if c not in rk.secret_columns}


def compare(
    desired: DesiredState,
    live: LiveState,
    box: SecretBox,
    *,
    adopt: bool = False,
    reference_counts: Callable[[str], dict[int, dict[str, int]]] | None = None,
) -> Plan:
    """The changes that make `live` match `desired`, ordered for apply (parents first, deletes last)."""
    plan = Plan(created_at=datetime.now(UTC).isoformat(timespec="seconds"), adopt=adopt)
    # User references are counted per kind, and only for kinds that have something to change.
    counted: dict[str, dict[int, dict[str, int]]] = {}

    def counts_for(kind: str) -> dict[int, dict[str, int]]:
        if kind not in counted:
            counted[kind] = reference_counts(kind) if reference_counts and ROW_KINDS[kind].user_refs else {}
        return counted[kind]

    writes: list[Change] = []
    removals: list[Change] = []
    order = apply_order()
    for kind in order:
        rk = ROW_KINDS[kind]
        want = desired.rows.get(kind, {})
        have = live.rows.get(kind, {})
        managed = live.managed.get(kind, {})
        for key in sorted(want):
            row = want[key]
            current = have.get(key)
            record = managed.get(key)
            desired_canon = canonical(rk, row.values, box)
            if current is None:
                desired_fp = fingerprint(desired_canon)
                secrets_set = [FieldChange(c, None, _display(rk, c, row.values[c]))
                               for c in rk.secret_columns if row.values.get(c)]
                writes.append(Change(kind, key, "create", fields=secrets_set,
                                     values=_plan_values(rk, row), secret_refs=row.secret_refs or {},
                                     desired_fingerprint=desired_fp, prevent_destroy=row.prevent_destroy))
                continue
            live_canon = canonical(rk, current.values, box)
            if desired_canon == live_canon and record is not None and record.prevent_destroy == row.prevent_destroy:
                continue
            live_fp, desired_fp = fingerprint(live_canon), fingerprint(desired_canon)
            if record is None:
                if adopt:
                    writes.append(Change(kind, key, "adopt", cause="adopt",
                                         fields=_field_changes(rk, row, current, box),
                                         values=_plan_values(rk, row), secret_refs=row.secret_refs or {},
                                         live_fingerprint=live_fp, desired_fingerprint=desired_fp,
                                         prevent_destroy=row.prevent_destroy,
                                         impact=_impact(counts_for(kind), current.id)))
                else:
                    plan.unmanaged.append({"kind": kind, "name": key, "reason": "exists but was not created by cplane (use --adopt)"})
                continue
            fields = _field_changes(rk, row, current, box)
            if record.prevent_destroy != row.prevent_destroy:
                fields.append(FieldChange("annotation cplane/prevent-destroy", record.prevent_destroy, row.prevent_destroy))
            cause = "drift" if live_fp != record.fingerprint else "config"
            writes.append(Change(kind, key, "update", cause=cause, fields=fields, values=_plan_values(rk, row),
                                 secret_refs=row.secret_refs or {}, live_fingerprint=live_fp, desired_fingerprint=desired_fp,
                                 prevent_destroy=row.prevent_destroy, impact=_impact(counts_for(kind), current.id)))
        for key in sorted(set(have) - set(want)):
            current = have[key]
            record = managed.get(key)
            if record is None:
                plan.unmanaged.append({"kind": kind, "name": key, "reason": "not in config and not managed by cplane"})
                continue
            impact = _impact(counts_for(kind), current.id)
            referenced = _blocking(counts_for(kind), current.id)
            live_fp = fingerprint(canonical(rk, current.values, box))
            if referenced and rk.retire_column:
                if current.values.get(rk.retire_column) is False:
                    continue  # already retired; kept while user data references it
                removals.append(Change(kind, key, "retire", live_fingerprint=live_fp, impact=impact,
                                       prevent_destroy=record.prevent_destroy,
                                       fields=[FieldChange(rk.retire_column, True, False)],
                                       reason=f"referenced by {_describe(impact) or f'{referenced} user rows'}"))
            else:
                removals.append(Change(kind, key, "delete", live_fingerprint=live_fp, impact=impact,
                                       prevent_destroy=record.prevent_destroy,
                                       reason="removed from config"))
    _keep_parents_of_kept_children(removals, live)
    removals.sort(key=lambda c: -order.index(c.kind))
    plan.changes = writes + removals
    for change in removals:
        if change.prevent_destroy:
            plan.errors.append(
                f"{change.kind}/{change.name} is annotated cplane/prevent-destroy: \"true\"; "
                f"the plan would {change.action} it"
            )
    return plan


def _keep_parents_of_kept_children(removals: list[Change], live: LiveState) -> None:
    """A parent can only be deleted with all its children: deleting it would cascade to a child that
    stays (a retired one, or one cplane does not manage). Such a parent is retired instead."""
    parent_kinds = {ROW_KINDS[k].parent for k in ROW_KINDS if ROW_KINDS[k].parent}
    if not any(c.action == "delete" and c.kind in parent_kinds for c in removals):
        return
    by_key = {(c.kind, c.name): c for c in removals}
    deleting = {key for key, c in by_key.items() if c.action == "delete"}
    for kind in reversed(apply_order()):  # children before their parents, so chains carry upwards
        rk = ROW_KINDS[kind]
        if rk.parent is None:
            continue
        parent_rk = ROW_KINDS[rk.parent]
        parent_column = next(c for c, target in rk.refs.items() if target == rk.parent)
        for key, row in live.rows.get(kind, {}).items():
            parent_key = row.values[parent_column]
            if (kind, key) in deleting or (rk.parent, parent_key) not in deleting or not parent_rk.retire_column:
                continue
            parent = by_key[(rk.parent, parent_key)]
            deleting.discard((rk.parent, parent_key))
            if live.rows[rk.parent][parent_key].values.get(parent_rk.retire_column) is False:
                removals.remove(parent)  # already retired: nothing to do
                continue
            parent.action = "retire"
            parent.fields = [FieldChange(parent_rk.retire_column, True, False)]
            parent.reason = f"keeps {kind} {key}, which is not deleted"


BLOCKING = "_blocking"


def _impact(counts: dict[int, dict[str, int]], row_id: int | None) -> dict[str, int]:
    if row_id is None:
        return {}
    return {label: n for label, n in counts.get(row_id, {}).items() if n and label != BLOCKING}


def _blocking(counts: dict[int, dict[str, int]], row_id: int | None) -> int:
    return counts.get(row_id, {}).get(BLOCKING, 0) if row_id is not None else 0


def _describe(impact: dict[str, int]) -> str:
    return ", ".join(f"{n} {label}" for label, n in impact.items())


def reference_counts(conn: Connection, kinds: set[str] | None = None) -> dict[str, dict[int, dict[str, int]]]:
    """User rows pointing at each system row, one GROUP BY per reference.

    Per row id: {label: count} for the impact shown in plans, plus BLOCKING: every user row that
    points at it whatever its state (what makes a delete impossible and a retire necessary).
    """
    from control_plane.db.models import metadata

    result: dict[str, dict[int, dict[str, int]]] = {}
    for kind, rk in ROW_KINDS.items():
        if kinds is not None and kind not in kinds:
            continue
        per_row: dict[int, dict[str, int]] = {}
        for ref in rk.user_refs:
            table = metadata.tables[ref.table]
            column = table.c[ref.column]
            base = select(column, func.count()).where(column.is_not(None)).group_by(column)
            if ref.scope:
                base = base.where(text(ref.scope))
            for row_id, count in conn.execute(base):
                counts = per_row.setdefault(row_id, {})
                counts[BLOCKING] = counts.get(BLOCKING, 0) + count
                if not ref.where:
                    counts[ref.label] = count
            if ref.where:
                for row_id, count in conn.execute(base.where(text(ref.where))):
                    per_row.setdefault(row_id, {})[ref.label] = count
        result[kind] = per_row
    return result
