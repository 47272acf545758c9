"""Change rules (scope: change) over a Plan: what `cplane plan` reports under each change.

Each change of a config object (create, update, delete, retire, adopt) that a change policy
matches is evaluated with `object` (the object as the config has it; null for a delete or a
retire), `oldObject` (the object as the database holds it, in the same YAML shape; null for a
create; secret fields null) and `change` (kind, name, action, cause, impact: {label: count},
references: the sum of impact, fields: [{field, before, after}], reason). Nested rows (sectors,
seed keywords, role permissions) are seen through their object, not as changes of their own.
A violation is attached to the change (plain data, rendered under it); one of severity error
is also a plan error, so the plan exits 1 and nothing can be applied.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from control_plane.config.model import ConfigSet
from control_plane.kinds.registry import COMMON_COLUMN_NAMES, CONFIG_KINDS, Child, ConfigKind
from control_plane.plans.model import Change, Plan
from control_plane.policies.compile import compile_policies, policies_digest
from control_plane.policies.objects import Views, evaluate, message, static_variables
from control_plane.policies.values import object_view, plain
from control_plane.state.live import LiveState
from control_plane.state.rows import Row


def check_changes(plan: Plan, config: ConfigSet, live: LiveState, declared: ConfigSet | None = None) -> None:
    """Attach every change-rule violation to its change; error-severity ones become plan errors.
    Records the policies' digest in the plan. `declared`: the config with every object however
    timed; an object that leaves its window (retired or deleted though still declared) is shown to
    the rules as `object`, so that its annotations (an approval) count."""
    plan.policies_digest = policies_digest(config)
    if not plan.policies_digest:
        return
    policies, problems = compile_policies(config)
    for issue in problems:  # validate reports these first; a plan never runs a broken policy
        plan.errors.append(f"{issue.format()}")
    policies = [p for p in policies if p.scope == "change"]
    if not policies or not (plan.changes or plan.scheduled):
        return
    views = Views(release=True)  # (a plan views each changed object once)
    old = _OldObjects(live)
    statics: dict[tuple[int, int], dict[str, Any]] = {}
    for change in plan.changes:
        if not _own_row(change.kind):
            continue  # nested rows are seen through their object (a first apply's 100,000 keywords)
        obj = config.of_kind(change.kind).get(change.name)
        if change.action in ("delete", "retire"):
            obj = declared.of_kind(change.kind).get(change.name) if declared is not None else None
        before = (lambda rule, ch=change: old.view(CONFIG_KINDS[ch.kind], ch, rule.names)) \
            if change.action != "create" and old.exists(change) else None
        _check(plan, policies, change, obj, before, config, views, statics, f"{change.kind}/{change.name} ({change.action})")
    _check_scheduled(plan, policies, declared or config, views, statics)


def _check_scheduled(plan: Plan, policies: list, timeline: ConfigSet, views: Views, statics: dict) -> None:
    """The change rules over each Scheduled step, as the plan that applies the step will run them:
    `object` is the object at the step's time, `oldObject` the object just before it, and the
    rest of the config is the config at that time. A violation shows under the scheduled change,
    and one of severity error fails this plan: the review that signs a scheduled change is now,
    not when it falls due."""
    if not plan.scheduled:
        return
    from control_plane.config.schedule import EPSILON, at_time, parse_time

    kept: list[ConfigSet] = []  # Views caches by id(): the configs must outlive the checks
    for step in plan.scheduled:
        t = parse_time(step.at)
        after, prior = at_time(timeline, t), at_time(timeline, t - EPSILON)
        kept += [after, prior]
        for change in step.changes:
            obj = after.of_kind(change.kind).get(change.name)
            if change.action in ("delete", "retire"):
                obj = timeline.of_kind(change.kind).get(change.name)
            previous = prior.of_kind(change.kind).get(change.name)
            before = (lambda rule, o=previous: views.of(o, rule.names)) if previous is not None else None
            _check(plan, policies, change, obj, before, after, views, statics,
                   f"{change.kind}/{change.name} ({change.action} at {step.at})")


def _check(plan: Plan, policies: list, change: Change, obj, before, config: ConfigSet, views: Views,
           statics: dict, subject: str) -> None:
    """Run every matching change rule over one change; `before(rule)` is its oldObject (None: null)."""
    if not _own_row(change.kind):
        return  # nested rows are seen through their object
    for policy in policies:
        if not policy.matches(change.kind, change.name, obj.labels if obj is not None else {}):
            continue
        for rule in policy.rules:
            key = (id(rule), id(config))
            if key not in statics:
                statics[key] = static_variables(config, policy, rule, views)
            data = dict(statics[key])
            data["change"] = change_view(change)
            # `object` and `oldObject` are built when the expression reads them, not before: a
            # rule that decides on `change` alone (retire-approval's `change.references == 0` for
            # every create of a first apply) never views the object, so a cached Industry's file is
            # not parsed again for a view nobody reads. A null one is a plain variable.
            lazy: dict[str, Any] = {}
            if obj is None:
                data["object"] = None
            else:
                lazy["object"] = lambda o=obj, names=rule.names: views.of(o, names)
            if before is None:
                data["oldObject"] = None
            else:
                lazy["oldObject"] = lambda b=before, r=rule: b(r)
            data = _Lazy(data, lazy)
            outcome = evaluate(rule, data.context, subject)
            data.reraise()  # (a view that could not be built is that error, not a policy's)
            if isinstance(outcome, str):
                text = f"spec.validations[{rule.index}].expression: {outcome}"
                change.policy_violations.append({"policy": policy.name, "severity": "error", "message": text})
                plan.errors.append(f"policy {policy.name}: {text}")
            elif outcome is False:
                text = message(rule, data.context)
                data.reraise()
                change.policy_violations.append({"policy": policy.name, "severity": policy.severity,
                                                 "message": text})
                if policy.severity == "error":
                    plan.errors.append(f"policy {policy.name}: {subject}: {text}")


@cache
def _own_row(kind: str) -> bool:
    """Whether a change of `kind` is the change of a config object (not of a nested row)."""
    ck = CONFIG_KINDS.get(kind)
    return ck is not None and ck.row_kind == kind


class _Lazy:
    """The variables of one evaluation as a CEL context: `plain` ones converted up front, `lazy`
    ones (name -> builder of a value that is never None) built on the first read and kept."""

    def __init__(self, plain: dict[str, Any], lazy: dict[str, Any]):
        from control_plane.policies.compile import _cel

        self._lazy = lazy
        self._built: dict[str, Any] = {}
        self._error: BaseException | None = None
        self.context = _cel().Context(plain)
        if lazy:
            self.context.set_variable_resolver(self._resolve)

    def _resolve(self, name: str) -> Any:
        value = self._built.get(name)
        if value is None:
            build = self._lazy.get(name)
            if build is None:
                return None  # (not lazy: the context's own variable)
            try:
                value = self._built[name] = build()
            except BaseException as exc:
                self._error = exc  # CEL would report it as an undefined variable: reraise() raises it
                raise
        return value

    def reraise(self) -> None:
        """Raise what building a lazy variable raised, as building it up front would have."""
        if self._error is not None:
            raise self._error


def change_view(change: Change) -> dict[str, Any]:
    return {
        "kind": change.kind,
        "name": change.name,
        "action": str(change.action),
        "cause": change.cause,
        "impact": dict(change.impact),
        "references": sum(change.impact.values()),
        "fields": [{"field": f.field, "before": plain(f.before), "after": plain(f.after)} for f in change.fields],
        "reason": change.reason,
    }


class _OldObjects:
    """Objects as the database holds them, in the YAML shape of their kind (fields from columns,
    nested lists from child rows), built only for the changes a rule looks at."""

    def __init__(self, live: LiveState):
        self.live = live
        self._children: dict[str, dict[str, list[Row]]] = {}

    def exists(self, change: Change) -> bool:
        """Whether the database holds the changed object (else its oldObject is null)."""
        return change.name in self.live.rows.get(change.kind, {})

    def view(self, ck: ConfigKind, change: Change, names: frozenset[str]) -> dict[str, Any] | None:
        row = self.live.rows.get(change.kind, {}).get(change.name)
        if row is None:
            return None
        spec = self._fields(ck.spec, row.values, ck.column_for, set(ck.child_fields), set(ck.secrets), names)
        for child in ck.children:
            alias = _alias(ck.spec, child.field)
            if alias in names:
                spec[alias] = self._items(child, ck.spec, row.key, names)
        for field_name in ck.secrets:
            alias = _alias(ck.spec, field_name)
            if alias in names:
                spec[alias] = None  # never a secret's value
        record = self.live.managed.get(change.kind, {}).get(change.name)
        annotations = {"cplane/prevent-destroy": "true"} if record is not None and record.prevent_destroy else {}
        return object_view(ck.kind, change.name, {}, annotations, spec, names)

    @staticmethod
    def _fields(model, values: dict[str, Any], column_of, skip: set[str], secrets: set[str],
                names: frozenset[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field_name, info in model.model_fields.items():
            alias = info.alias or field_name
            if field_name in skip or field_name in secrets or alias not in names:
                continue
            out[alias] = plain(values.get(column_of(field_name)))
        return out

    def _items(self, child: Child, model, parent_key: str, names: frozenset[str]) -> list[Any]:
        rows = self._by_parent(child).get(parent_key, [])
        if child.key_field is None:
            return [plain(r.values[child.key_column]) for r in rows]
        item_model = _item_model(model, child.field)
        items = []
        for r in rows:
            item = self._fields(item_model, r.values,
                                lambda f, c=child: c.columns.get(f) or COMMON_COLUMN_NAMES.get(f, f),
                                {g.field for g in child.children} | {child.key_field}, set(), names)
            item[_alias(item_model, child.key_field)] = plain(r.values[child.key_column])
            for grandchild in child.children:
                alias = _alias(item_model, grandchild.field)
                if alias in names:
                    item[alias] = self._items(grandchild, item_model, r.key, names)
            items.append(item)
        return items

    def _by_parent(self, child: Child) -> dict[str, list[Row]]:
        if child.row_kind not in self._children:
            parent_column = next(c for c, depth in child.ancestor_columns.items() if depth == 0)
            grouped: dict[str, list[Row]] = {}
            for r in self.live.rows.get(child.row_kind, {}).values():
                grouped.setdefault(str(r.values[parent_column]), []).append(r)
            for rows in grouped.values():
                rows.sort(key=lambda r: (r.id is None, r.id or 0, r.key))
            self._children[child.row_kind] = grouped
        return self._children[child.row_kind]


def _alias(model, field_name: str) -> str:
    info = model.model_fields.get(field_name)
    return info.alias if info is not None and info.alias else field_name


def _item_model(model, field_name: str):
    import typing

    from pydantic import BaseModel

    annotation = model.model_fields[field_name].annotation
    for arg in typing.get_args(annotation) or (annotation,):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    raise RuntimeError(f"{model.__name__}.{field_name} is not a list of models")
