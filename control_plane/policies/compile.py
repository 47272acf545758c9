"""Policy documents compiled into CEL programs, once per load.

CEL comes from `common-expression-language` (the Rust `cel` interpreter behind a Python binding),
imported only when a Policy document exists so that `cplane validate` of a tree without policies
starts as fast as before. A policy that does not compile (a syntax error, an unknown variable, a
field that the kinds it matches do not have, an unknown kind) is a validate error at the
expression's line and column; nothing about it is skipped silently.

Unknown fields are caught twice: statically here (every `object.spec.F` / `oldObject.spec.F`
must be a field of each matched kind, `object.metadata.F` one of name, labels, annotations), and
at evaluation (objects are given to CEL with every field of their schema, defaults included, so
a field that is missing at run time is one the schema does not have: that is a policy error, not
a pass).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control_plane.config.model import ConfigObject, ConfigSet, Issue, issue_at
from control_plane.kinds.registry import CATALOGS, CONFIG_KINDS

POLICY_KIND = "Policy"

# What an expression may name, per scope.
OBJECT_VARIABLES = frozenset({"object", "objects", "kinds", "params", "catalogs"})
CHANGE_VARIABLES = frozenset({"object", "oldObject", "change", "kinds", "params", "catalogs"})
# The fields of `change` (control_plane.policies.changes.change_view).
CHANGE_FIELDS = frozenset({"kind", "name", "action", "cause", "impact", "references", "fields", "reason"})
OBJECT_FIELDS = frozenset({"apiVersion", "kind", "metadata", "spec"})
METADATA_FIELDS = frozenset({"name", "labels", "annotations"})

_STRING = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|'''.*?'''|\"\"\".*?\"\"\"""", re.S)
_COMPREHENSION = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
_ROOT_FIELD = re.compile(r"(?<![\w.])(object|oldObject)\s*\.\s*([A-Za-z_]\w*)(?:\s*\.\s*([A-Za-z_]\w*))?")
_CHANGE_FIELD = re.compile(r"(?<![\w.])change\s*\.\s*([A-Za-z_]\w*)")
_KINDS_FIELD = re.compile(r"(?<![\w.])kinds\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*['\"]([A-Za-z_]\w*)['\"]\s*\])")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CEL_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*?)(?:\n|$)")


class PolicyCompileError(Exception):
    def __init__(self, message: str, offset: int | None = None):
        super().__init__(message)
        self.offset = offset


@dataclass
class Rule:
    index: int
    expression: str
    program: Any
    message: str
    message_program: Any | None
    variables: frozenset[str]
    kinds_used: tuple[str, ...]
    # Field names the expressions can select (every identifier and string literal in them): the
    # objects CEL sees carry only these fields of their schema models (see values.view).
    names: frozenset[str]
    # The first `object.spec.F` the rule reads: where a violation is reported.
    focus: str | None = None
    # fieldPath, as a path: where a violation is reported when the document has it.
    field_path: tuple | None = None


@dataclass
class CompiledPolicy:
    name: str
    source: ConfigObject
    scope: str
    severity: str
    kinds: tuple[str, ...]
    names: frozenset[str]
    labels: dict[str, str]
    exclude_labels: dict[str, str]
    params: dict[str, Any]
    rules: list[Rule] = field(default_factory=list)

    def matches(self, kind: str, name: str, labels: dict[str, str] | None) -> bool:
        if kind not in self.kinds or (self.names and name not in self.names):
            return False
        labels = labels or {}
        if any(labels.get(k) != v for k, v in self.labels.items()):
            return False
        return not any(labels.get(k) == v for k, v in self.exclude_labels.items())


def _cel():
    """The CEL engine: common-expression-language's Rust extension, imported only when a policy
    exists. The package's __init__ also imports its command-line tool (0.1 s of imports that
    `cplane validate` would pay at every start), so the extension is loaded by itself; if the
    package's layout ever differs, the package is imported as usual."""
    loaded = sys.modules.get("cel.cel")
    if loaded is not None:
        return loaded
    try:
        spec = importlib.util.find_spec("cel")  # locates the package without running its __init__
        folder = Path(next(iter(spec.submodule_search_locations)))
        binary = next(folder / f"cel{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES
                      if (folder / f"cel{suffix}").is_file())
        ext_spec = importlib.util.spec_from_file_location("cel.cel", binary)
        module = importlib.util.module_from_spec(ext_spec)
        ext_spec.loader.exec_module(module)
    except Exception:  # noqa: BLE001 - any other layout: the ordinary import
        import cel

        return cel
    sys.modules["cel.cel"] = module
    return module


def _compile_one(cel, source: str, allowed: frozenset[str], kinds: tuple[str, ...]) -> tuple[Any, frozenset[str], tuple[str, ...], str | None]:
    """The program of one expression, its variables, the kinds it reads through `kinds` and its focus field."""
    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as exc:
        text = str(exc)
        found = _CEL_POSITION.search(text)
        if found:
            line, col, detail = int(found.group(1)), int(found.group(2)), found.group(3)
            offset = _offset(source, line, col)
            raise PolicyCompileError(f"CEL syntax error at {line}:{col} of the expression: {detail}", offset) from None
        raise PolicyCompileError(f"CEL error: {text.splitlines()[0]}") from None
    stripped = _STRING.sub(lambda m: '""' if m.group(0)[0] == '"' else "''", source)
    bound = set(_COMPREHENSION.findall(stripped))
    variables = frozenset(program.variables()) - bound
    unknown = sorted(variables - allowed)
    if unknown:
        raise PolicyCompileError(f"unknown variable {unknown[0]!r}; an expression of this scope reads "
                                 f"{', '.join(sorted(allowed))}")
    focus = None
    for match in _ROOT_FIELD.finditer(stripped):
        root, first, second = match.groups()
        if first not in OBJECT_FIELDS:
            raise PolicyCompileError(f"unknown field {root}.{first}; an object has {', '.join(sorted(OBJECT_FIELDS))}")
        if first == "metadata" and second and second not in METADATA_FIELDS:
            raise PolicyCompileError(f"unknown field {root}.metadata.{second}; metadata has "
                                     f"{', '.join(sorted(METADATA_FIELDS))}")
        if first == "spec" and second:
            for kind in kinds:
                if kind in CONFIG_KINDS and second not in spec_fields(kind):
                    raise PolicyCompileError(f"unknown field {root}.spec.{second} for kind {kind}"
                                             f"{_suggest(second, spec_fields(kind))}")
            if focus is None and root == "object":
                focus = second
    for match in _CHANGE_FIELD.finditer(stripped):
        if "change" in allowed and match.group(1) not in CHANGE_FIELDS:
            raise PolicyCompileError(f"unknown field change.{match.group(1)}; a change has {', '.join(sorted(CHANGE_FIELDS))}")
    used = []
    # kinds.K in the expression outside strings; kinds['K'] in the expression as written.
    named = [m.group(1) for m in _KINDS_FIELD.finditer(stripped) if m.group(1)]
    named += [m.group(2) for m in _KINDS_FIELD.finditer(source) if m.group(2)]
    for kind in named:
        if kind not in CONFIG_KINDS:
            raise PolicyCompileError(f"unknown kind {kind!r} in kinds.{kind}{_suggest(kind, CONFIG_KINDS)}")
        if kind not in used:
            used.append(kind)
    if "kinds" in variables and not used:
        raise PolicyCompileError("kinds is read by name only: kinds.Plan or kinds['Plan']")
    return program, variables, tuple(used), focus


def _suggest(name: str, known) -> str:
    from control_plane.config.messages import suggest

    return suggest(name, list(known))


def spec_fields(kind: str) -> frozenset[str]:
    model = CONFIG_KINDS[kind].spec
    return frozenset(info.alias or name for name, info in model.model_fields.items())


def _offset(source: str, line: int, col: int) -> int:
    lines = source.split("\n")
    return sum(len(x) + 1 for x in lines[: line - 1]) + col - 1


def _names(*sources: str) -> frozenset[str]:
    names: set[str] = set()
    for source in sources:
        names.update(_IDENT.findall(source))
        for literal in _STRING.findall(source):
            names.add(literal.strip("'\""))
    return frozenset(names)


def _param_strings(value: Any) -> frozenset[str]:
    """Strings in params (keys and values): an expression may select fields by them (`o.spec[f]`)."""
    found: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, str):
            found.add(v)
        elif isinstance(v, dict):
            for k, item in v.items():
                found.add(str(k))
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)

    walk(value)
    return frozenset(found)


def compile_policies(config: ConfigSet) -> tuple[list[CompiledPolicy], list[Issue]]:
    """Every Policy of `config`, compiled; issues at the expression that does not compile."""
    cel = _cel()
    policies: list[CompiledPolicy] = []
    issues: list[Issue] = []
    for name, obj in sorted(config.of_kind(POLICY_KIND).items()):
        spec = obj.spec
        problems: list[Issue] = []
        for i, kind in enumerate(spec.match.kinds):
            if kind not in CONFIG_KINDS or kind == POLICY_KIND:
                problems.append(_at(obj, ("spec", "match", "kinds", i), f"spec.match.kinds[{i}]: unknown kind {kind!r}"
                                    f"{_suggest(kind, [k for k in CONFIG_KINDS if k != POLICY_KIND])}"))
        allowed = OBJECT_VARIABLES if spec.scope == "object" else CHANGE_VARIABLES
        policy = CompiledPolicy(name, obj, spec.scope, spec.severity, tuple(spec.match.kinds),
                                frozenset(spec.match.names), dict(spec.match.labels), dict(spec.match.exclude_labels),
                                dict(spec.params))
        for i, validation in enumerate(spec.validations):
            try:
                program, variables, used, focus = _compile_one(cel, validation.expression, allowed, policy.kinds)
            except PolicyCompileError as exc:
                problems.append(_at(obj, ("spec", "validations", i, "expression"),
                                    f"spec.validations[{i}].expression: {exc}", exc.offset))
                continue
            message_program = None
            if validation.message_expression:
                try:
                    message_program, more, more_kinds, _ = _compile_one(cel, validation.message_expression, allowed,
                                                                      policy.kinds)
                except PolicyCompileError as exc:
                    problems.append(_at(obj, ("spec", "validations", i, "messageExpression"),
                                        f"spec.validations[{i}].messageExpression: {exc}", exc.offset))
                    continue
                variables |= more
                used = tuple(dict.fromkeys((*used, *more_kinds)))
            names = _names(validation.expression, validation.message_expression) | _param_strings(policy.params)
            field_path = None
            if validation.field_path:
                field_path = tuple(int(p) if p.isdigit() else p for p in validation.field_path.split("."))
            policy.rules.append(Rule(i, validation.expression, program, validation.message, message_program, variables,
                                     used, names, focus, field_path))
        issues.extend(problems)
        if not problems:
            policies.append(policy)
    return policies, issues


def _at(obj: ConfigObject, path: tuple, message: str, offset: int | None = None) -> Issue:
    """An issue at the expression (on its line and column when the CEL error says where, for a
    plain one-line scalar)."""
    doc, where = obj.where(path)
    issue = issue_at(doc, where, obj.kind, obj.name, message, at_value=True)
    if offset is not None:
        value = _value_at(obj, path)
        if isinstance(value, str) and "\n" not in value:
            raw_line = _line_text(doc.file, issue.line)
            start = issue.col - 1
            if raw_line is not None and raw_line[start:start + 1] in ("'", '"'):
                start += 1
            if raw_line is not None and raw_line[start:start + len(value)] == value:
                return Issue(issue.file, issue.line, start + 1 + offset, issue.kind, issue.name, issue.message)
    return issue


def _value_at(obj: ConfigObject, path: tuple) -> Any:
    node: Any = {"spec": obj.raw_spec}
    for step in path:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _line_text(file, line: int) -> str | None:
    try:
        with open(file, encoding="utf-8-sig") as handle:
            for number, text in enumerate(handle, 1):
                if number == line:
                    return text.rstrip("\n")
    except OSError:
        return None
    return None


def policies_digest(config: ConfigSet) -> str:
    """SHA-256 over every Policy (name and spec as loaded, the environment's overlay included);
    "" when there is none (so a plan made without policies matches a tree that still has none)."""
    objects = config.of_kind(POLICY_KIND)
    if not objects:
        return ""
    content = [[name, obj.spec.model_dump(mode="json", by_alias=True)] for name, obj in sorted(objects.items())]
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def catalogs_view() -> dict[str, list[str]]:
    return {name: list(values) for name, values in CATALOGS.items()}
