"""Object rules (scope: object) over a validated ConfigSet: what `cplane validate` reports.

Each matched object is checked by each validation; a violation is reported at the violating
object (at the first spec field the rule reads, where the object has it; else at its name),
naming the policy. `objects` is every matched object of the same kind (rules across objects),
`kinds.K` every object of kind K, `params` the policy's params, `catalogs` the product's
vocabularies (operations, permissions, modules, features, credit types).
"""

from __future__ import annotations

from typing import Any

from control_plane.config.model import CachedObject, ConfigObject, ConfigSet, Issue, issue_at
from control_plane.policies.compile import (
    CompiledPolicy,
    Rule,
    _at,
    _cel,
    catalogs_view,
    compile_policies,
)
from control_plane.policies.values import object_view


class Views:
    """Objects as CEL sees them, built once per (object, field names).

    `release`: a cached object (config/cache.py) whose file had to be parsed again for its spec
    forgets that parse once its view is built, instead of keeping it for the rest of the process.
    The change rules of a first apply view every created Industry (retire-approval), each a file
    of thousands of keywords: kept, the models of the whole taxonomy were 170 MB of the apply's
    peak at 100,000 rows, for views of a few fields. A later demand parses the file again (the
    content checked against the cache entry as on the first demand)."""

    def __init__(self, release: bool = False):
        self._cache: dict[tuple[int, frozenset[str]], dict[str, Any]] = {}
        self._release = release

    def of(self, obj: ConfigObject, names: frozenset[str]) -> dict[str, Any]:
        key = (id(obj), names)
        view = self._cache.get(key)
        if view is None:
            transient = self._release and isinstance(obj, CachedObject) and obj.unloaded()
            view = object_view(obj.kind, obj.name, obj.labels, obj.annotations, obj.spec, names)
            if transient:
                obj.release()
            self._cache[key] = view
        return view


def check_objects(config: ConfigSet) -> tuple[list[Issue], list[Issue]]:
    """(errors, warnings): policies that do not compile or fail to evaluate, and violations."""
    policies, errors = compile_policies(config)
    warnings: list[Issue] = []
    views = Views()
    cel = _cel()
    for policy in policies:
        if policy.scope != "object" or not _relevant(config, policy):
            continue
        for rule in policy.rules:
            found, broken = _run_rule(cel, config, policy, rule, views)
            errors.extend(broken)
            (errors if policy.severity == "error" else warnings).extend(found)
    return errors, warnings


def _relevant(config: ConfigSet, policy: CompiledPolicy) -> bool:
    """A ConfigSet derived from another (an environment's, reusing the base's objects) checks a
    policy again only when the overlay touched the policy or an object of a kind it reads."""
    own = config.own_objects
    if own is None:
        return True
    kinds = set(policy.kinds) | {k for rule in policy.rules for k in rule.kinds_used}
    return ("Policy", policy.name) in own or any(kind in kinds for kind, _ in own)


def static_variables(config: ConfigSet, policy: CompiledPolicy, rule: Rule, views: Views,
                     targets: list[ConfigObject] | None = None) -> dict[str, Any]:
    """The variables that do not change from one object to the next."""
    data: dict[str, Any] = {}
    if "objects" in rule.variables and targets is not None:
        data["objects"] = [views.of(o, rule.names) for o in targets]
    if "kinds" in rule.variables:
        data["kinds"] = {kind: [views.of(o, rule.names) for _, o in sorted(config.of_kind(kind).items())]
                         for kind in rule.kinds_used}
    if "params" in rule.variables:
        data["params"] = policy.params
    if "catalogs" in rule.variables:
        data["catalogs"] = catalogs_view()
    return data


def _run_rule(cel, config: ConfigSet, policy: CompiledPolicy, rule: Rule, views: Views) -> tuple[list[Issue], list[Issue]]:
    found: list[Issue] = []
    for kind in policy.kinds:
        targets = [o for _, o in sorted(config.of_kind(kind).items()) if policy.matches(kind, o.name, o.labels)]
        if not targets:
            continue
        context = cel.Context(static_variables(config, policy, rule, views, targets))
        current: dict[str, Any] = {}
        context.set_variable_resolver(current.get)
        for obj in targets:
            current["object"] = views.of(obj, rule.names)
            outcome = evaluate(rule, context, f"{obj.kind}/{obj.name}")
            if isinstance(outcome, str):
                return found, [_at(policy.source, ("spec", "validations", rule.index, "expression"),
                                   f"spec.validations[{rule.index}].expression: {outcome}")]
            if outcome is False:
                found.append(_violation(policy, rule, obj, message(rule, context)))
    return found, []


def evaluate(rule: Rule, context, subject: str) -> bool | str:
    """True or False; a string saying why the rule could not be evaluated (a policy error)."""
    try:
        result = rule.program.execute(context)
    except KeyError as exc:
        return f"no field {exc.args[0]!r} in {subject} (unknown field; use has() for an optional map key)"
    except Exception as exc:  # a CEL evaluation error (types, undefined names...): the policy is broken
        return f"evaluation failed on {subject}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    if not isinstance(result, bool):
        return f"must evaluate to a boolean; on {subject} it gave {type(result).__name__} {result!r}"[:300]
    return result


def message(rule: Rule, context) -> str:
    if rule.message_program is not None:
        try:
            text = rule.message_program.execute(context)
            if isinstance(text, str) and text:
                return text
        except Exception:  # noqa: BLE001 - the static message (or the expression) is shown instead
            pass
    return rule.message or f"failed: {rule.expression}"


def _written(obj: ConfigObject, path: tuple) -> bool:
    """Whether the document (or the overlay patch that set it) has a value at `path`."""
    if path[0] == "metadata":
        return len(path) <= 2
    node = obj.raw_spec
    for step in path[1:]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return False
    return True


def _violation(policy: CompiledPolicy, rule: Rule, obj: ConfigObject, text: str) -> Issue:
    path: tuple = ("metadata", "name")
    if rule.field_path is not None and _written(obj, rule.field_path):
        path = rule.field_path
    elif rule.focus is not None and isinstance(obj.raw_spec, dict) and rule.focus in obj.raw_spec:
        path = ("spec", rule.focus)
    doc, where = obj.where(path)
    suffix = " (warning)" if policy.severity == "warning" else ""
    return issue_at(doc, where, obj.kind, obj.name, f"policy {policy.name}: {text}{suffix}", at_value=path[0] == "spec")
