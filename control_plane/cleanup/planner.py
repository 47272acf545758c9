"""What a cleanup profile deletes: per table a predicate, the row count, and the deletion order.

The schema comes from the live database (what will actually run the deletes), not the models.

Semantics:
- a class in the profile (`user`, `mixed`): a user table loses every row, a mixed table every row
  whose systemRows condition is not true;
- a retention rule: rows whose column is strictly older than now - maxAgeDays (or, with
  `expired: true`, strictly before now); on a mixed table never a system row;
- cascades: a row of a child table that references (ON DELETE CASCADE) a row about to be deleted is
  deleted explicitly first, so that the counts are exact and every batch stays bounded.

Order: children before parents, by the foreign keys between the tables being cleaned. A cycle is
broken at an ON DELETE SET NULL edge (accounts.owner_id -> users: deleting users first only clears
owner_id of accounts that go next).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.engine import Engine

from control_plane.cleanup.manifest import Manifest
from control_plane.cleanup.schema import ForeignKeyInfo, Schema, quote_ident, reflect_schema
from control_plane.errors import CplaneError

ALL = "TRUE"  # the predicate of a table that loses every row


class PlanError(CplaneError):
    code = "cleanup_plan_error"


@dataclass
class Step:
    table: str
    predicate: str  # SQL over the table's own columns, unqualified; ALL for every row
    rows: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def everything(self) -> bool:
        return self.predicate == ALL


@dataclass
class CleanupPlan:
    profile: str
    now: datetime
    steps: list[Step]  # deletion order: children first
    params: dict[str, datetime]

    @property
    def total(self) -> int:
        return sum(s.rows for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "now": self.now.isoformat(),
            "tables": [{"table": s.table, "rows": s.rows, "reasons": s.reasons} for s in self.steps],
            "total": self.total,
        }


def _or(parts: list[str]) -> str:
    parts = list(dict.fromkeys(parts))
    if ALL in parts:
        return ALL
    return parts[0] if len(parts) == 1 else " OR ".join(f"({p})" for p in parts)


def predicates(manifest: Manifest, profile_name: str, schema: Schema, now: datetime) -> tuple[dict[str, str], dict[str, list[str]], dict[str, datetime]]:
    """Per table the SQL predicate of the rows the profile deletes, why, and the bound parameters."""
    profile = manifest.profiles.get(profile_name)
    if profile is None:
        known = ", ".join(manifest.profiles) or "(none)"
        raise PlanError(f"unknown cleanup profile {profile_name!r}; known: {known}")
    parts: dict[str, list[str]] = {}
    reasons: dict[str, list[str]] = {}
    params: dict[str, datetime] = {}
    for table, entry in manifest.tables.items():
        if table not in schema.tables:
            continue
        if entry.data_class == "user" and "user" in profile.classes:
            parts.setdefault(table, []).append(ALL)
            reasons.setdefault(table, []).append("class user")
        elif entry.data_class == "mixed" and "mixed" in profile.classes:
            parts.setdefault(table, []).append(f"({entry.system_rows}) IS NOT TRUE")
            reasons.setdefault(table, []).append("user rows of mixed table")
    for i, rule_name in enumerate(profile.rules):
        rule = manifest.rules[rule_name]
        entry = manifest.tables.get(rule.table)
        if entry is None or entry.data_class == "system":
            raise PlanError(f"retention rule {rule.name!r} targets {rule.table}, which is not a user or mixed table")
        param = f"cutoff_{i}"
        if rule.expired:
            params[param] = now
            cond = f"{quote_ident(schema, rule.column)} < :{param}"
            reasons.setdefault(rule.table, []).append(f"rule {rule.name}: {rule.column} expired")
        else:
            params[param] = now - timedelta(days=rule.max_age_days)
            cond = f"{quote_ident(schema, rule.column)} < :{param}"
            reasons.setdefault(rule.table, []).append(f"rule {rule.name}: {rule.column} older than {rule.max_age_days} days")
        if entry.data_class == "mixed":
            cond = f"({cond}) AND (({entry.system_rows}) IS NOT TRUE)"
        parts.setdefault(rule.table, []).append(cond)

    preds = {t: _or(p) for t, p in parts.items()}
    # Cascades: rows of child tables that the database would delete with their parent are deleted
    # explicitly (and counted). Parents are resolved before their children.
    for table in _order(schema, set(schema.tables), parents_first=True):
        info = schema.tables[table]
        for fk in info.fks:
            if fk.ondelete != "CASCADE" or fk.ref_table == table or fk.ref_table not in preds:
                continue
            entry = manifest.tables.get(table)
            if entry is not None and entry.data_class == "system":
                continue  # reported by `cleanup check`; never delete a system table
            if preds.get(table) == ALL:
                continue
            parent_pred = preds[fk.ref_table]
            cols = [quote_ident(schema, c) for c in fk.columns]
            if parent_pred == ALL:
                term = " AND ".join(f"{c} IS NOT NULL" for c in cols)
            elif len(cols) == 1:
                ref = quote_ident(schema, fk.ref_columns[0])
                term = f"{cols[0]} IN (SELECT {ref} FROM {quote_ident(schema, fk.ref_table)} WHERE {parent_pred})"
            else:
                continue
            preds[table] = _or([p for p in [preds.get(table), term] if p])
            reasons.setdefault(table, []).append(f"cascade from {fk.ref_table}")
    return preds, reasons, params


def _order(schema: Schema, tables: set[str], *, parents_first: bool = False) -> list[str]:
    """Topological order of `tables` by their foreign keys: children first (or parents first).

    Self references are ignored; a cycle is broken at a SET NULL (else any nullable) edge.
    """
    # edges child -> parent, labelled with the FK
    edges: dict[str, dict[str, list[ForeignKeyInfo]]] = {t: {} for t in tables}
    for t in tables:
        for fk in schema.tables[t].fks:
            if fk.ref_table in tables and fk.ref_table != t:
                edges[t].setdefault(fk.ref_table, []).append(fk)
    removed: set[tuple[str, str]] = set()
    while True:
        order = _kahn(tables, edges, removed)
        if len(order) == len(tables):
            break
        stuck = sorted(tables - set(order))
        candidates = [
            (child, parent)
            for child in stuck
            for parent, fks in sorted(edges[child].items())
            if parent in stuck and (child, parent) not in removed and all(fk.ondelete == "SET NULL" for fk in fks)
        ]
        if not candidates:
            candidates = [
                (child, parent)
                for child in stuck
                for parent in sorted(edges[child])
                if parent in stuck and (child, parent) not in removed
            ]
        if not candidates:  # pragma: no cover - cannot happen: a stuck set has an edge
            raise PlanError(f"cannot order tables {', '.join(stuck)} by their foreign keys")
        removed.add(candidates[0])
    return list(reversed(order)) if parents_first else order


def _kahn(tables: set[str], edges: dict[str, dict[str, list]], removed: set[tuple[str, str]]) -> list[str]:
    # a table can go when no remaining table references it (all its children are gone)
    referenced_by: dict[str, set[str]] = {t: set() for t in tables}
    for child, parents in edges.items():
        for parent in parents:
            if (child, parent) not in removed:
                referenced_by[parent].add(child)
    done: list[str] = []
    ready = sorted(t for t in tables if not referenced_by[t])
    remaining = {t: set(c) for t, c in referenced_by.items()}
    while ready:
        t = ready.pop(0)
        done.append(t)
        newly = []
        for parent in edges[t]:
            if (t, parent) in removed:
                continue
            remaining[parent].discard(t)
            if not remaining[parent] and parent not in done and parent not in ready:
                newly.append(parent)
        ready = sorted(ready + newly)
    return done


def deletion_order(schema: Schema, tables: set[str]) -> list[str]:
    return _order(schema, tables)


def bind_params(statement: str, params: dict[str, datetime]):
    stmt = text(statement)
    used = [p for p in params if f":{p}" in statement]
    if used:
        stmt = stmt.bindparams(*[bindparam(p, type_=DateTime(timezone=True)) for p in used])
    return stmt, {p: params[p] for p in used}


def build_plan(
    engine: Engine,
    manifest: Manifest,
    profile_name: str,
    schema: Schema | None = None,
    now: datetime | None = None,
    count: bool = True,
) -> CleanupPlan:
    schema = schema or reflect_schema(engine)
    now = now or datetime.now(UTC)
    preds, reasons, params = predicates(manifest, profile_name, schema, now)
    steps = [Step(t, preds[t], 0, reasons.get(t, [])) for t in deletion_order(schema, set(preds))]
    if count:
        with engine.connect() as conn:
            for step in steps:
                stmt, values = bind_params(
                    f"SELECT count(*) FROM {quote_ident(schema, step.table)} WHERE {step.predicate}", params
                )
                step.rows = conn.execute(stmt, values).scalar_one()
    return CleanupPlan(profile_name, now, steps, params)
