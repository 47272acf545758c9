"""Load the config tree into validated objects, reporting every problem with its position.

Stages: parse (loader) → envelope (apiVersion, kind, metadata) → overlay patches → spec (pydantic)
→ cross-object checks (unique names, references, catalogs, template variables). Every stage reports
all it finds; nothing stops at the first error. Checks that need the flattened rows (column limits)
belong to state/ and are added by reconcile.validation, which is what commands call.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from control_plane.config.loader import Document, load_file, load_tree, locate
from control_plane.kinds.registry import CONFIG_KINDS
from control_plane.kinds.specs import API_VERSION, Envelope, template_variables

OVERLAY_DIR = "environments"
OVERLAY_KIND = "Overlay"
PREVENT_DESTROY = "cplane/prevent-destroy"


@dataclass(frozen=True, order=True)
class Issue:
    file: str
    line: int
    col: int
    kind: str
    name: str
    message: str

    def format(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.kind}/{self.name}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "kind": self.kind,
            "name": self.name,
            "message": self.message,
        }


@dataclass
class ConfigObject:
    kind: str
    name: str
    spec: BaseModel
    labels: dict[str, str]
    annotations: dict[str, str]
    doc: Document
    raw_spec: dict[str, Any]

    @property
    def prevent_destroy(self) -> bool:
        return self.annotations.get(PREVENT_DESTROY, "").lower() == "true"


@dataclass
class ConfigSet:
    root: Path
    environment: str | None
    objects: dict[str, dict[str, ConfigObject]] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    _loaded: object | None = field(default=None, repr=False)
    # When derived from another ConfigSet: the objects this one validated itself (others were reused).
    own_objects: set[tuple[str, str]] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return not self.issues

    def of_kind(self, kind: str) -> dict[str, ConfigObject]:
        return self.objects.get(kind, {})


class _Reporter:
    def __init__(self):
        self.issues: list[Issue] = []

    def at(self, doc: Document, path: tuple, kind: str, name: str, message: str) -> None:
        self.issues.append(issue_at(doc, path, kind, name, message))

    def raw(self, file: Path, line: int, col: int, kind: str, name: str, message: str) -> None:
        self.issues.append(_issue(file, line, col, kind, name, message))


def issue_at(doc: Document, path: tuple, kind: str, name: str, message: str) -> Issue:
    """The Issue of a problem found at `path` inside `doc` (for checks run outside this module too)."""
    try:
        line, col = locate(doc, path)
    except Exception:  # a locator failure must never hide the error itself
        line, col = doc.line, 1
    return _issue(doc.file, line, col, kind, name, message)


def _issue(file: Path, line: int, col: int, kind: str, name: str, message: str) -> Issue:
    return Issue(_rel(file), line, col, _clip(kind, 100), _clip(name, 200), _clip(message, 500))


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def sorted_issues(issues) -> list[Issue]:
    """Every issue once, in file order: the form ConfigSet.issues always has."""
    return sorted(set(issues), key=lambda i: (i.file, i.line, i.col, i.message))


def _clip(text: str, limit: int) -> str:
    """Messages echo what they found: a 1 MB value must not make a 1 MB error line, nor a value
    holding a line break two lines."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _doc_label(doc: Document) -> tuple[str, str]:
    data = doc.data if isinstance(doc.data, dict) else {}
    kind = data.get("kind") if isinstance(data.get("kind"), str) else "document"
    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else f"#{doc.index + 1}"
    return kind, name


def _pydantic_message(err: dict) -> str:
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return f"unknown field {err['loc'][-1]!r}"
    if err["type"] == "missing":
        return f"missing required field {err['loc'][-1]!r}"
    return msg


def _check_envelope(doc: Document, report: _Reporter) -> Envelope | None:
    kind, name = _doc_label(doc)
    if not isinstance(doc.data, dict):
        report.at(doc, (), kind, name, f"a document must be a mapping with apiVersion, kind, metadata and spec, not {type(doc.data).__name__}")
        return None
    try:
        env = Envelope.model_validate(doc.data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            if loc[:1] == ("apiVersion",) and err["type"] == "literal_error":
                message = f"unsupported apiVersion {doc.data.get('apiVersion')!r}; this cplane reads {API_VERSION}"
            else:
                message = _pydantic_message(err)
            report.at(doc, loc, kind, name, message)
        return None
    if env.kind != OVERLAY_KIND and env.kind not in CONFIG_KINDS:
        report.at(doc, ("kind",), kind, name, f"unknown kind {env.kind!r}; known kinds: {', '.join(CONFIG_KINDS)}")
        return None
    return env


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass
class _Raw:
    env: Envelope
    doc: Document


def _overlay_files(root: Path) -> list[Path]:
    folder = root / OVERLAY_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_config(root: Path | str, environment: str | None = None, reuse: ConfigSet | None = None) -> ConfigSet:
    """Parse and validate the tree, with `environment`'s overlay applied; every overlay is checked.

    `reuse`: an already validated ConfigSet of the same tree, whose parse and untouched objects are
    taken as they are (validating every environment costs one full pass, not one per environment).
    """
    root = Path(root)
    report = _Reporter()
    result = ConfigSet(root=root, environment=environment)
    if not root.is_dir():
        report.raw(root, 1, 1, "config", "-", "config directory does not exist")
        result.issues = report.issues
        return result

    loaded = reuse._loaded if reuse is not None and reuse._loaded is not None else load_tree(root, exclude_dirs=(OVERLAY_DIR,))
    result._loaded = loaded
    result.files = sorted({d.file for d in loaded.documents} | {e.file for e in loaded.errors})
    for err in loaded.errors:
        report.raw(err.file, err.line, err.col, "document", "-", err.message)

    base: list[_Raw] = []
    for doc in loaded.documents:
        env = _check_envelope(doc, report)
        if env is None:
            continue
        if env.kind == OVERLAY_KIND:
            report.at(doc, ("kind",), env.kind, env.metadata.name, f"an Overlay belongs in {OVERLAY_DIR}/<env>.yaml")
            continue
        base.append(_Raw(env, doc))

    # Overlays: every file is checked against the base objects; only the selected one is applied.
    existing = {(r.env.kind, r.env.metadata.name) for r in base}
    selected_patches: list[tuple[dict, Document, tuple]] = []
    overlay_objects: list[_Raw] = []
    found_selected = environment is None
    for path in _overlay_files(root):
        env_name = path.stem
        is_selected = env_name == environment
        found_selected = found_selected or is_selected
        ov = load_file(path)
        result.files.append(path)
        for err in ov.errors:
            report.raw(err.file, err.line, err.col, "Overlay", env_name, err.message)
        for doc in ov.documents:
            env = _check_envelope(doc, report)
            if env is None:
                continue
            if env.kind != OVERLAY_KIND:
                if is_selected:
                    overlay_objects.append(_Raw(env, doc))
                continue
            patches = env.spec.get("patches", [])
            unknown = set(env.spec) - {"patches"}
            for key in sorted(unknown):
                report.at(doc, ("spec", key), OVERLAY_KIND, env.metadata.name, f"unknown field {key!r}")
            if not isinstance(patches, list):
                report.at(doc, ("spec", "patches"), OVERLAY_KIND, env.metadata.name, "patches must be a list")
                continue
            extra_names = {
                (d.data.get("kind"), (d.data.get("metadata") or {}).get("name"))
                for d in ov.documents
                if isinstance(d.data, dict) and isinstance(d.data.get("metadata"), dict)
            }
            for i, patch in enumerate(patches):
                where = ("spec", "patches", i)
                if not isinstance(patch, dict) or set(patch) - {"kind", "name", "patch"} or not {"kind", "name", "patch"} <= set(patch):
                    report.at(doc, where, OVERLAY_KIND, env.metadata.name, "a patch has exactly kind, name and patch")
                    continue
                target = (patch["kind"], patch["name"])
                if target not in existing and target not in extra_names:
                    report.at(doc, (*where, "name"), OVERLAY_KIND, env.metadata.name,
                              f"patch target {patch['kind']}/{patch['name']} does not exist")
                    continue
                if not isinstance(patch["patch"], dict):
                    report.at(doc, (*where, "patch"), OVERLAY_KIND, env.metadata.name, "patch must be a mapping")
                    continue
                if is_selected:
                    selected_patches.append((patch, doc, where))
    if not found_selected:
        report.raw(root / OVERLAY_DIR, 1, 1, "Overlay", environment or "-",
                   f"no overlay for environment {environment!r} ({OVERLAY_DIR}/{environment}.yaml)")

    everything = base + overlay_objects
    patched: dict[tuple[str, str], dict] = {}
    for patch, _doc, _where in selected_patches:
        key = (patch["kind"], patch["name"])
        patched[key] = patch["patch"] if key not in patched else merge_patch(patched[key], patch["patch"])

    overlay_docs = {id(raw) for raw in overlay_objects}
    if reuse is not None:
        result.own_objects = set(patched) | {(r.env.kind, r.env.metadata.name) for r in overlay_objects}
    for raw in everything:
        kind, name = raw.env.kind, raw.env.metadata.name
        ck = CONFIG_KINDS[kind]
        if reuse is not None and (kind, name) not in patched and id(raw) not in overlay_docs:
            previous = reuse.of_kind(kind).get(name)
            if previous is not None and previous.doc is raw.doc:
                result.objects.setdefault(kind, {})[name] = previous
                continue
        spec_data = raw.env.spec
        if (kind, name) in patched:
            spec_data = merge_patch(spec_data, patched[(kind, name)])
        try:
            spec = ck.spec.model_validate(spec_data)
        except ValidationError as exc:
            for err in exc.errors():
                report.at(raw.doc, ("spec", *err["loc"]), kind, name, _pydantic_message(err))
            continue
        same_kind = result.objects.setdefault(kind, {})
        if name in same_kind:
            first = same_kind[name].doc
            fl, _ = locate(first, ("metadata", "name"))
            report.at(raw.doc, ("metadata", "name"), kind, name,
                      f"duplicate {kind} name {name!r} (first defined at {_rel(first.file)}:{fl})")
            continue
        same_kind[name] = ConfigObject(
            kind, name, spec, raw.env.metadata.labels, raw.env.metadata.annotations, raw.doc, spec_data
        )

    for check in CROSS_CHECKS:
        check(result, report)
    result.issues = sorted_issues(report.issues)
    return result


# --- cross-object checks: generic over the registry ----------------------------------------------


def _alias(model: type[BaseModel], field_name: str) -> str:
    info = model.model_fields.get(field_name)
    return info.alias if info and info.alias else field_name


def _check_names(config: ConfigSet, report: _Reporter) -> None:
    for kind, objects in config.objects.items():
        ck = CONFIG_KINDS[kind]
        if ck.allowed_names is not None:
            for name, obj in objects.items():
                if name not in ck.allowed_names:
                    report.at(obj.doc, ("metadata", "name"), kind, name,
                              f"{name!r} is not a known {kind} name; known: {', '.join(ck.allowed_names)}")
    for ck in CONFIG_KINDS.values():
        if not ck.required_names:
            continue
        missing = [n for n in ck.required_names if n not in config.of_kind(ck.kind)]
        if missing:
            anchor = next(iter(config.of_kind(ck.kind).values()), None)
            message = f"missing {ck.kind} for: {', '.join(missing)} (every one is required)"
            if anchor is not None:
                report.at(anchor.doc, ("metadata", "name"), ck.kind, "*", message)
            else:
                report.raw(config.root, 1, 1, ck.kind, "*", message)


def _own(config: ConfigSet, kind: str, name: str) -> bool:
    return config.own_objects is None or (kind, name) in config.own_objects


def _check_children(config: ConfigSet, report: _Reporter) -> None:
    for kind, objects in config.objects.items():
        ck = CONFIG_KINDS[kind]
        for name, obj in objects.items():
            if _own(config, kind, name):
                _walk_children(obj, ck.children, obj.spec, ("spec",), name, report)


def _walk_children(obj: ConfigObject, children, spec: BaseModel, path: tuple, prefix: str, report: _Reporter) -> None:
    for child in children:
        items = getattr(spec, child.field)
        alias = _alias(type(spec), child.field)
        seen: dict[Any, int] = {}
        for i, item in enumerate(items):
            key = getattr(item, child.key_field) if child.key_field else item
            item_path = (*path, alias, i)
            if key in seen:
                where = (*item_path, _alias(type(item), child.key_field)) if child.key_field else item_path
                report.at(obj.doc, where, obj.kind, obj.name,
                          f"duplicate {child.row_kind} {key!r} in {prefix} (first at item {seen[key] + 1})")
                continue
            seen[key] = i
            if child.children and isinstance(item, BaseModel):
                _walk_children(obj, child.children, item, item_path, f"{prefix}/{key}", report)


def _check_references(config: ConfigSet, report: _Reporter) -> None:
    for kind, objects in config.objects.items():
        ck = CONFIG_KINDS[kind]
        for ref in ck.spec_refs:
            for name, obj in objects.items():
                value = getattr(obj.spec, ref.field)
                values: Iterable = value if ref.each else [value]
                alias = _alias(type(obj.spec), ref.field)
                for i, target in enumerate(values):
                    if target is None:
                        continue
                    path = ("spec", alias, i) if ref.each else ("spec", alias)
                    if ref.catalog is not None:
                        if target not in ref.catalog:
                            report.at(obj.doc, path, kind, name,
                                      f"unknown {ref.catalog_name} {target!r}; known: {', '.join(ref.catalog)}")
                    elif target not in config.of_kind(ref.target_kind):
                        report.at(obj.doc, path, kind, name, f"{ref.target_kind} {target!r} does not exist")


def _check_template_variables(config: ConfigSet, report: _Reporter) -> None:
    for ck in CONFIG_KINDS.values():
        if not ck.template_fields:
            continue
        kind, field_name = ck.kind, ck.template_fields[0]
        for name, obj in config.of_kind(kind).items():
            used: set[str] = set()
            for template_field in ck.template_fields:
                used |= template_variables(getattr(obj.spec, template_field))
            declared = set(obj.spec.variables)
            undeclared, unused = sorted(used - declared), sorted(declared - used)
            if undeclared:
                report.at(obj.doc, ("spec", field_name), kind, name,
                          f"undeclared variables in {field_name}: {', '.join('{' + v + '}' for v in undeclared)}")
            if unused:
                report.at(obj.doc, ("spec", "variables"), kind, name,
                          f"declared variables not used in {field_name}: {', '.join(unused)}")


def _check_prompts(config: ConfigSet, report: _Reporter) -> None:
    from control_plane.config.prompt_checks import check_prompts

    check_prompts(config, report)


CROSS_CHECKS = [_check_names, _check_children, _check_references, _check_template_variables, _check_prompts]


def overlay_environments(root: Path | str) -> list[str]:
    return [p.stem for p in _overlay_files(Path(root))]
