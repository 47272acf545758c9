"""compare(desired, live) -> Plan: the changes, the cascade and retire rules, and the user
references that decide between delete and retire. Every fingerprint a plan carries is made here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, select, text

from control_plane.kinds.registry import ROW_KINDS, RowKind, apply_order
from control_plane.plans.model import NO_FIELDS, NOTHING, Action, Change, FieldChange, Plan
from control_plane.secrets import REMOVED, SENSITIVE, SecretBox
from control_plane.state.desired import DesiredState, SecretProblem, keep_stored
from control_plane.state.live import LiveState, existing_tables, in_scope
from control_plane.state.rows import Row, canonical, canonical_column, fingerprint, managed_columns


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
            if column in rk.secret_columns:
                if before == after:
                    before, after = f"{SENSITIVE} (changed)", SENSITIVE
                elif before is not None and after is None:
                    after = REMOVED  # only removing the field from the config plans a secret away
                elif isinstance(before, dict) and isinstance(after, dict):
                    after = {**after, **{k: REMOVED for k in before if k not in after}}
            changes.append(FieldChange(column, before, after))
    return changes


def secret_refs_recorded(refs: dict[str, Any] | None, values: dict[str, Any]) -> dict[str, Any]:
    """The references cplane keeps for a row (cplane_managed_objects.secret_refs): those of the
    secrets the row holds (`values`), never of one left unset."""
    kept: dict[str, Any] = {}
    for column, ref in sorted((refs or {}).items()):
        value = values.get(column)
        if ref is None or value is None:
            continue
        if isinstance(ref, dict):
            subs = {s: v for s, v in sorted(ref.items()) if isinstance(value, dict) and value.get(s) is not None}
            if subs:
                kept[column] = subs
        else:
            kept[column] = ref
    return kept


def _refs_changed(record, row: Row) -> bool:
    recorded = getattr(record, "secret_refs", None)
    if recorded is None or not row.secret_refs:  # an older cplane wrote the row: nothing to compare
        return False
    return recorded != secret_refs_recorded(row.secret_refs, row.values)


def _missing_warnings(kept: list[SecretProblem], unset: list[SecretProblem]) -> list[str]:
    def names(problems):
        return ", ".join(f"{p.variable} ({p.kind}/{p.name} {p.field})" for p in problems)

    warnings = []
    if kept:
        warnings.append(f"secret environment variables are not set, the stored values are kept: {names(kept)}")
    if unset:
        warnings.append(f"secret environment variables are not set, those secrets stay unset: {names(unset)}")
    return warnings


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
    fingerprints: dict[str, dict[str, str]] | None = None,
) -> Plan:
    """The changes that make `live` match `desired`, ordered for apply (parents first, deletes last).

    `fingerprints` (a dict to fill): per row kind of which compare fingerprinted every desired row
    as it is (a first apply: all creates), those fingerprints, which are `state.rows.rows_fingerprints`
    of the kind's desired rows; what the apply's record of the kind's digest reuses instead of
    computing 100,000 of them again."""
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
    missing: dict[tuple[str, str], list[SecretProblem]] = {}
    for problem in desired.missing_secrets:
        missing.setdefault((problem.kind, problem.name), []).append(problem)
    kept_all: list[SecretProblem] = []
    unset_all: list[SecretProblem] = []
    for kind in order:
        if not live.is_full(kind):
            # Found unchanged since the last apply on both sides (reconcile/incremental.py):
            # comparing it would find nothing, so it is not read and not compared.
            continue
        rk = ROW_KINDS[kind]
        want = in_scope(live, kind, desired.rows.get(kind, {}))  # (a kind read for some rows: those)
        have = live.rows.get(kind, {})
        managed = live.managed.get(kind, {})
        # Complete only when every desired row of the kind is fingerprinted here, unaltered.
        seen: dict[str, str] | None = {} if fingerprints is not None and want is desired.rows.get(kind) else None
        for key in sorted(want):
            row = want[key]
            current = have.get(key)
            record = managed.get(key)
            problems = missing.get((kind, key))
            if problems:
                seen = None
                # An unset variable keeps the stored value: the desired row is the live one there.
                kept_values, kept, unset = keep_stored(row.values, problems, current.values if current else {})
                row = Row(row.kind, row.key, kept_values, row.secret_refs, row.prevent_destroy)
                kept_all.extend(kept)
                unset_all.extend(unset)
            desired_canon = canonical(rk, row.values, box)
            if current is None:
                desired_fp = fingerprint(desired_canon)
                if seen is not None:
                    seen[key] = desired_fp
                secrets_set = [FieldChange(c, None, _display(rk, c, row.values[c]))
                               for c in rk.secret_columns if row.values.get(c)] if rk.secret_columns else NO_FIELDS
                # (The empty containers of a create are shared ones: 100,000 creates, 19 MB less.)
                writes.append(Change(kind, key, Action.CREATE, fields=secrets_set,
                                     values=_plan_values(rk, row), secret_refs=row.secret_refs or NOTHING,
                                     desired_fingerprint=desired_fp, prevent_destroy=row.prevent_destroy,
                                     impact=NOTHING))
                continue
            live_canon = canonical(rk, current.values, box)
            refs_changed = record is not None and _refs_changed(record, row)
            if desired_canon == live_canon and record is not None and record.prevent_destroy == row.prevent_destroy \
                    and not refs_changed:
                seen = None  # (not fingerprinted: an unchanged row costs no hash)
                continue
            live_fp, desired_fp = fingerprint(live_canon), fingerprint(desired_canon)
            if seen is not None:
                seen[key] = desired_fp
            if record is None:
                # A collision is a change: the row is taken under management with the values of the
                # config (apply refuses it unless the plan or the apply is made with --adopt).
                writes.append(Change(kind, key, Action.ADOPT, cause="adopt",
                                     fields=_field_changes(rk, row, current, box),
                                     values=_plan_values(rk, row), secret_refs=row.secret_refs or {},
                                     live_fingerprint=live_fp, desired_fingerprint=desired_fp,
                                     prevent_destroy=row.prevent_destroy,
                                     impact=_impact(counts_for(kind), current.id)))
                continue
            fields = _field_changes(rk, row, current, box)
            if record.prevent_destroy != row.prevent_destroy:
                fields.append(FieldChange("annotation cplane/prevent-destroy", record.prevent_destroy, row.prevent_destroy))
            if refs_changed:
                before_refs = record.secret_refs
                after_refs = secret_refs_recorded(row.secret_refs, row.values)
                shown = {f.field for f in fields}
                for column in sorted(set(before_refs) | set(after_refs)):
                    # A secret whose value changes shows that; a renamed reference alone shows the names.
                    if before_refs.get(column) != after_refs.get(column) and column not in shown:
                        fields.append(FieldChange(f"reference {column}", before_refs.get(column), after_refs.get(column)))
            cause = "drift" if live_fp != record.fingerprint else "config"
            writes.append(Change(kind, key, Action.UPDATE, cause=cause, fields=fields, values=_plan_values(rk, row),
                                 secret_refs=row.secret_refs or {}, live_fingerprint=live_fp, desired_fingerprint=desired_fp,
                                 prevent_destroy=row.prevent_destroy, impact=_impact(counts_for(kind), current.id)))
        if seen is not None and len(seen) == len(want):
            fingerprints[kind] = seen
        for key in sorted([key for key in have if key not in want]):  # (no two 100,000-key sets)
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
                removals.append(Change(kind, key, Action.RETIRE, live_fingerprint=live_fp,
                                       desired_fingerprint=_retired_fingerprint(rk, current, box), impact=impact,
                                       prevent_destroy=record.prevent_destroy,
                                       fields=[FieldChange(rk.retire_column, True, False)],
                                       reason=f"referenced by {_describe(impact) or f'{referenced} user rows'}"))
            else:
                removals.append(Change(kind, key, Action.DELETE, live_fingerprint=live_fp, impact=impact,
                                       prevent_destroy=record.prevent_destroy,
                                       reason="removed from config"))
    plan.warnings.extend(_missing_warnings(kept_all, unset_all))
    _keep_parents_of_kept_children(removals, live, box)
    removals.sort(key=lambda c: -order.index(c.kind))
    plan.changes = writes + removals
    for change in removals:
        if change.prevent_destroy:
            plan.errors.append(
                f"{change.kind}/{change.name} is annotated cplane/prevent-destroy: \"true\"; "
                f"the plan would {change.action} it"
            )
    return plan


def _retired_fingerprint(rk: RowKind, current: Row, box: SecretBox) -> str:
    """The fingerprint of `current` once retired: what apply records for it."""
    return fingerprint(canonical(rk, {**current.values, rk.retire_column: False}, box))


def _keep_parents_of_kept_children(removals: list[Change], live: LiveState, box: SecretBox) -> None:
    """A parent can only be deleted with all its children: deleting it would cascade to a child that
    stays (a retired one, or one cplane does not manage). Such a parent is retired instead."""
    parent_kinds = {ROW_KINDS[k].parent for k in ROW_KINDS if ROW_KINDS[k].parent}
    if not any(c.action == Action.DELETE and c.kind in parent_kinds for c in removals):
        return
    by_key = {(c.kind, c.name): c for c in removals}
    deleting = {key for key, c in by_key.items() if c.action == Action.DELETE}
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
            parent.action = Action.RETIRE
            parent.desired_fingerprint = _retired_fingerprint(parent_rk, live.rows[rk.parent][parent_key], box)
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


def _referencing_table(ref):
    """The table a user reference counts in: a system table's model (kinds/columns.py names them),
    else, for a plain count, only the reference column (an integer: every system table's id), so
    that counting never declares the user-data models; a scoped count of a user table takes them."""
    from sqlalchemy import Integer, column, table

    from control_plane.kinds.columns import MODELS
    from control_plane.kinds.registry import model_class

    for model_name, (table_name, _columns) in MODELS.items():
        if table_name == ref.table:
            return model_class(model_name).__table__
    if ref.scope is None:
        return table(ref.table, column(ref.column, Integer()))
    from control_plane.db.models import metadata

    return metadata.tables[ref.table]


def reference_counts(conn: Connection, kinds: set[str] | None = None) -> dict[str, dict[int, dict[str, int]]]:
    """User rows pointing at each system row, one GROUP BY per reference.

    Per row id: {label: count} for the impact shown in plans, plus BLOCKING: every user row that
    points at it whatever its state (what makes a delete impossible and a retire necessary).
    """
    present = existing_tables(conn)
    result: dict[str, dict[int, dict[str, int]]] = {}
    for kind, rk in ROW_KINDS.items():
        if kinds is not None and kind not in kinds:
            continue
        per_row: dict[int, dict[str, int]] = {}
        for ref in rk.user_refs:
            if ref.table not in present:  # a database not migrated yet has no user rows
                continue
            table = _referencing_table(ref)
            column = table.c[ref.column]
            base = select(column, func.count()).where(column.is_not(None)).group_by(column)
            if ref.scope is not None:
                base = base.where(ref.scope_clause(table))
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
