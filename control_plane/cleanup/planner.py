"""What a cleanup profile deletes: per table a predicate, the row count, and the deletion order.

The schema comes from the live database (what will actually run the deletes), not the models.

Semantics:
- a class in the profile (`user`, `mixed`): a user table loses every row, a mixed table every row
  for which NOT (systemRows) is true (a row whose condition is unknown stays);
- a retention rule: rows whose column is strictly older than now - maxAgeDays (or, with
  `expired: true`, strictly before now), and that match its `where`; on a mixed table never a
  system row;
- a profile filter: of its table only rows matching the condition (cascades still follow);
- every condition is a SQLAlchemy expression built from the manifest's structured conditions, with
  bound parameters: no manifest text becomes SQL. A step's target is a `UserTable` or a
  `MixedTable`; there is no target type for a system table.
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

from sqlalchemy import DateTime, and_, bindparam, func, not_, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from control_plane.cleanup.manifest import Manifest, registry_boundary
from control_plane.cleanup.schema import ForeignKeyInfo, Schema, reflect_schema
from control_plane.errors import CplaneError
from control_plane.kinds import conditions


class PlanError(CplaneError):
    code = "cleanup_plan_error"


class SystemTableRefused(CplaneError):
    """A delete target was asked for a table that holds only system data."""


# --- what a delete may target: a user table, or the user rows of a mixed table --------------------
#
# There is no target type for a system table: constructing one for a table that the registry (or
# cplane's own bookkeeping) declares system raises, so the executor cannot be handed one.


@dataclass(frozen=True)
class UserTable:
    name: str

    def __post_init__(self) -> None:
        declared = registry_boundary().get(self.name)
        if declared is not None:
            raise SystemTableRefused(
                f"{self.name} is not a user table: the registry declares it {declared[0]}; a cleanup never deletes "
                f"from it{' except its user rows' if declared[0] == 'mixed' else ''}"
            )

    def system_rows(self, columns, now: datetime) -> ColumnElement[bool] | None:
        return None


@dataclass(frozen=True)
class MixedTable:
    name: str
    condition: Any  # the structured condition selecting its system rows

    def __post_init__(self) -> None:
        declared = registry_boundary().get(self.name)
        if declared is not None and declared[0] == "system":
            raise SystemTableRefused(f"{self.name} holds only system data (registry); a cleanup never deletes from it")
        if not conditions.is_condition(self.condition):
            raise SystemTableRefused(f"{self.name}: systemRows is not a structured condition; refusing to delete from it")

    def system_rows(self, columns, now: datetime) -> ColumnElement[bool] | None:
        return conditions.compile_condition(self.condition, columns, now)


Target = UserTable | MixedTable


def target_for(manifest: Manifest, table: str) -> Target | None:
    """The delete target of a manifest table; None for a system table."""
    entry = manifest.tables.get(table)
    if entry is None:
        return UserTable(table)  # unclassified: `cleanup check` refuses it first
    if entry.data_class == "system":
        return None
    if entry.data_class == "mixed":
        return MixedTable(table, entry.system_rows)
    return UserTable(table)


@dataclass
class Step:
    target: Target
    # The rows the profile selects (None: every row); for a mixed table `full` adds NOT (system rows).
    where: ColumnElement[bool] | None
    rows: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def table(self) -> str:
        return self.target.name

    @property
    def everything(self) -> bool:
        return self.where is None and isinstance(self.target, UserTable)

    def full(self, schema: Schema, now: datetime) -> ColumnElement[bool] | None:
        """The complete condition of the rows this step deletes: `where AND NOT (system rows)`."""
        system = self.target.system_rows(schema.clause(self.table).c, now)
        parts = [p for p in (self.where, not_(system) if system is not None else None) if p is not None]
        return and_(*parts) if parts else None


@dataclass
class CleanupPlan:
    profile: str
    now: datetime
    steps: list[Step]  # deletion order: children first
    schema: Schema | None = None

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

    def where(self, step: Step) -> ColumnElement[bool] | None:
        return step.full(self.schema, self.now)


_ALL = object()  # a table that loses every (user) row


def _or(parts: list) -> Any:
    if any(p is _ALL for p in parts):
        return _ALL
    return parts[0] if len(parts) == 1 else or_(*parts)


def steps_for(manifest: Manifest, profile_name: str, schema: Schema, now: datetime) -> dict[str, Step]:
    """Per table the step: its target, the condition of the rows the profile deletes, and why."""
    profile = manifest.profiles.get(profile_name)
    if profile is None:
        known = ", ".join(manifest.profiles) or "(none)"
        raise PlanError(f"unknown cleanup profile {profile_name!r}; known: {known}")
    parts: dict[str, list] = {}
    reasons: dict[str, list[str]] = {}
    for table, entry in manifest.tables.items():
        if table not in schema.tables:
            continue
        if entry.data_class == "user" and "user" in profile.classes:
            parts.setdefault(table, []).append(_ALL)
            reasons.setdefault(table, []).append("class user")
        elif entry.data_class == "mixed" and "mixed" in profile.classes:
            parts.setdefault(table, []).append(_ALL)
            reasons.setdefault(table, []).append("user rows of mixed table")
    for rule_name in profile.rules:
        rule = manifest.rules[rule_name]
        entry = manifest.tables.get(rule.table)
        if entry is None or entry.data_class == "system":
            raise PlanError(f"retention rule {rule.name!r} targets {rule.table}, which is not a user or mixed table")
        columns = schema.clause(rule.table).c
        if rule.expired:
            cutoff = now
            reasons.setdefault(rule.table, []).append(f"rule {rule.name}: {rule.column} expired")
        else:
            cutoff = now - timedelta(days=rule.max_age_days)
            reasons.setdefault(rule.table, []).append(f"rule {rule.name}: {rule.column} older than {rule.max_age_days} days")
        cond = columns[rule.column] < bindparam(None, cutoff, type_=DateTime(timezone=True))
        if rule.where is not None:
            cond = and_(cond, conditions.compile_condition(rule.where, columns, now))
        parts.setdefault(rule.table, []).append(cond)
    for f in profile.filters:
        if f.table in parts:
            only = conditions.compile_condition(f.where, schema.clause(f.table).c, now)
            parts[f.table] = [only if p is _ALL else and_(p, only) for p in parts[f.table]]
            reasons[f.table].append("profile filter")

    steps: dict[str, Step] = {}
    for table, p in parts.items():
        target = target_for(manifest, table)
        if target is None:  # pragma: no cover - system tables never get parts
            continue
        merged = _or(p)
        steps[table] = Step(target, None if merged is _ALL else merged, 0, reasons.get(table, []))

    # Cascades: rows of child tables that the database would delete with their parent are deleted
    # explicitly (and counted). Parents are resolved before their children.
    for table in _order(schema, set(schema.tables), parents_first=True):
        info = schema.tables[table]
        for fk in info.fks:
            if fk.ondelete != "CASCADE" or fk.ref_table == table or fk.ref_table not in steps:
                continue
            entry = manifest.tables.get(table)
            if entry is not None and entry.data_class == "system":
                continue  # reported by `cleanup check`; never delete a system table
            current = steps.get(table)
            if current is not None and current.everything:
                continue
            parent = steps[fk.ref_table]
            child = schema.clause(table).c
            parent_where = parent.full(schema, now)
            if parent_where is None:
                term = and_(*(child[c].is_not(None) for c in fk.columns))
            elif len(fk.columns) == 1:
                ref = schema.clause(fk.ref_table).c[fk.ref_columns[0]]
                term = child[fk.columns[0]].in_(select(ref).where(parent_where))
            else:
                continue
            if current is None:
                target = target_for(manifest, table)
                if target is None:  # pragma: no cover - skipped above
                    continue
                steps[table] = Step(target, term, 0, [f"cascade from {fk.ref_table}"])
            else:
                # every user row already goes (where None) or these go as well
                current.where = or_(current.where, term) if current.where is not None else None
                current.reasons.append(f"cascade from {fk.ref_table}")
    return steps


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


def count_statement(schema: Schema, plan: CleanupPlan, step: Step):
    stmt = select(func.count()).select_from(schema.clause(step.table))
    where = plan.where(step)
    return stmt.where(where) if where is not None else stmt


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
    by_table = steps_for(manifest, profile_name, schema, now)
    steps = [by_table[t] for t in deletion_order(schema, set(by_table))]
    plan = CleanupPlan(profile_name, now, steps, schema)
    if count:
        with engine.connect() as conn:
            for step in steps:
                step.rows = conn.execute(count_statement(schema, plan, step)).scalar_one()
    return plan
