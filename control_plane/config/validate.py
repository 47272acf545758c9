"""Load the config tree into validated objects, reporting every problem with its position.

Stages: parse (loader) → envelope (apiVersion, kind, metadata) → overlay patches → spec (pydantic)
→ cross-object checks (unique names, references, catalogs, template variables). Every stage reports
all it finds; nothing stops at the first error. Checks that need the flattened rows (column limits)
belong to state/ and are added by reconcile.validation, which is what commands call.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from operator import attrgetter
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from control_plane.collector import paused_gc
from control_plane.config.loader import Document, _yaml_files, load_bytes, load_file, locate
from control_plane.config.messages import expected_got, field_path, pydantic_message, show, suggest
from control_plane.config.model import (  # noqa: F401 (part of this module's API)
    PREVENT_DESTROY,
    CachedDocument,
    CachedObject,
    ConfigObject,
    ConfigSet,
    Issue,
    _Reporter,
    issue_at,
    rel,
    sorted_issues,
)
from control_plane.kinds.registry import CONFIG_KINDS
from control_plane.kinds.specs import API_VERSION, Envelope, OverlayPatch, OverlaySpec, template_variables

OVERLAY_DIR = "environments"
OVERLAY_KIND = "Overlay"
# The fields of an overlay's spec and of each patch, as the spec models declare them.
OVERLAY_SPEC_FIELDS = frozenset(f.alias or n for n, f in OverlaySpec.model_fields.items())
OVERLAY_PATCH_FIELDS = frozenset(f.alias or n for n, f in OverlayPatch.model_fields.items())
_HEADER_KIND = re.compile(r"kind:[ \t]*([A-Za-z][A-Za-z0-9]*)[ \t]*(?:#.*)?")
_HEADER_NAME = re.compile(r"[ \t]+name:[ \t]*([a-z0-9][a-z0-9_-]*)[ \t]*(?:#.*)?")
_DOC_MARK = re.compile(r"(?:---|\.\.\.)(?:[ \t].*)?")


def header_label(file: Path, line: int) -> tuple[str, str]:
    """Kind and name of the document holding `line` of a file that failed to parse, read line by
    line from its header when it is readable ("document", "-" otherwise)."""
    try:
        lines = Path(file).read_text(encoding="utf-8-sig", errors="replace").splitlines()
    except OSError:
        return "document", "-"
    first = 0
    for i, text in enumerate(lines[:line]):
        if _DOC_MARK.fullmatch(text) and i + 1 < line:
            first = i + 1
    kind, name, in_metadata = "document", "-", False
    for text in lines[first:]:
        if _DOC_MARK.fullmatch(text):
            break
        if text[:1] not in (" ", "\t", "#", ""):
            in_metadata = text.startswith("metadata:")
            found = _HEADER_KIND.fullmatch(text)
            if found:
                kind = found.group(1)
        elif in_metadata:
            found = _HEADER_NAME.fullmatch(text)
            if found:
                name = found.group(1)
    return kind, name


def _doc_label(doc: Document) -> tuple[str, str]:
    data = doc.data if isinstance(doc.data, dict) else {}
    kind = data.get("kind") if isinstance(data.get("kind"), str) else "document"
    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else f"#{doc.index + 1}"
    return kind, name


def _pydantic_message(err: dict) -> str:
    """Envelope errors (apiVersion, kind, metadata): paths are from the document's top."""
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        where = f"{field_path(loc[:-1])}: " if len(loc) > 1 else ""
        return f"{where}unknown field {loc[-1]!r}{suggest(loc[-1], _ENVELOPE_FIELDS.get(loc[:-1], ()))}"
    if err["type"] == "missing":
        where = f"{field_path(loc[:-1])}: " if len(loc) > 1 else ""
        return f"{where}missing required field {loc[-1]!r}"
    msg = err["msg"]
    if msg.startswith("Input should be "):
        return expected_got(field_path(loc), msg.removeprefix("Input should be "), err.get("input"))
    return f"{field_path(loc)}: {msg[:1].lower()}{msg[1:]}, got {show(err.get('input'))}"


_ENVELOPE_FIELDS = {(): ("apiVersion", "kind", "metadata", "spec", "schedule"),
                    ("metadata",): ("name", "labels", "annotations", "effectiveFrom", "effectiveUntil")}


def _spec_issue_message(kind: str, err: dict) -> str:
    ck = CONFIG_KINDS[kind]
    secret_fields = {_alias(ck.spec, f) for f in ck.secrets}
    loc = tuple(err["loc"])
    return pydantic_message(err, ck.spec, secret=bool(loc) and loc[0] in secret_fields)


def _at_value(err: dict) -> bool:
    return err["type"] not in ("extra_forbidden", "missing")


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
        report.at(doc, ("kind",), kind, name, _unknown_kind(env.kind, with_overlay=True), at_value=True)
        return None
    return env


def _unknown_kind(kind: Any, with_overlay: bool = False) -> str:
    known = [*CONFIG_KINDS, OVERLAY_KIND] if with_overlay else list(CONFIG_KINDS)
    hint = suggest(kind, known)
    return f"unknown kind {kind!r}{hint}" if hint else f"unknown kind {kind!r}; known kinds: {', '.join(CONFIG_KINDS)}"


def _patch_spec(target: Any, patch: dict, at: tuple, doc: Document, doc_at: tuple,
                origins: dict[tuple, tuple[Document, tuple]]) -> dict:
    """RFC 7386 JSON merge patch of `patch` onto `target`, recording in `origins` which spec paths
    the patch (in `doc` at `doc_at`) set."""
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        here, there = (*at, key), (*doc_at, key)
        if isinstance(value, dict):
            old = result.get(key)
            if not isinstance(old, dict):  # a new mapping: all of it is the patch's
                for stale in [p for p in origins if p[:len(here)] == here]:
                    del origins[stale]
                origins[here] = (doc, there)
            result[key] = _patch_spec(old, value, here, doc, there, origins)
            continue
        for stale in [p for p in origins if p[:len(here)] == here]:
            del origins[stale]
        origins[here] = (doc, there)  # a value, or null: a field it removed is missing there
        if value is None:
            result.pop(key, None)
        else:
            result[key] = copy.deepcopy(value)
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


class _FileSource:
    """The documents of a file whose result came from the cache, parsed and validated again on the
    first demand (a stage that reads a spec or a document's data). The content must be the one the
    cache entry was made from: a file edited meanwhile is an error, never a mix of two versions."""

    def __init__(self, path: Path, content: bytes):
        self.path, self.content = path, content
        self._docs: dict[int, tuple] | None = None

    def load(self) -> dict[int, tuple]:
        if self._docs is None:
            from control_plane.config.cache import digest
            from control_plane.errors import CplaneError

            changed = CplaneError(f"{rel(self.path)} changed while cplane was reading it; run the command again")
            try:
                raw = self.path.read_bytes()
            except OSError:
                raise changed from None
            if digest(raw) != self.content:
                raise changed
            docs: dict[int, tuple] = {}
            try:
                for doc in load_bytes(raw, self.path).documents:
                    env = Envelope.model_validate(doc.data)
                    docs[doc.index] = (doc.data, env.spec, CONFIG_KINDS[env.kind].spec.model_validate(
                        env.spec, context={"name": env.metadata.name}))
            except ValidationError:  # it validated clean with this very code and content
                raise changed from None
            self._docs = docs
        return self._docs

    @property
    def loaded(self) -> bool:
        return self._docs is not None

    def release(self) -> None:
        """Forget the reparsed documents (a later demand parses the file again, checked as above)."""
        self._docs = None


def load_config(root: Path | str, environment: str | None = None, reuse: ConfigSet | None = None,
                flatten: Callable[[ConfigObject], list] | None = None, disk_cache: bool = True,
                cross_checks: bool = True) -> ConfigSet:
    """Parse and validate the tree, with `environment`'s overlay applied; every overlay is checked.

    Files are taken one at a time (parse, envelope, spec, the objects' own checks), so that what is
    kept of a file that validated clean is small. `flatten` (an object's rows; reconcile.validation
    passes state's) turns on the per-file cache (config/cache.py): a clean file is kept as compact
    records and its rows, and a file whose content is in the cache is not parsed at all.
    `reuse`: a ConfigSet of the same tree made with `flatten`: its in-process cache is shared, and
    this one's own checks cover only what the environment changes (own_objects). `disk_cache`
    False: the cache stays in this process (it is also off on disk with CPLANE_NO_CACHE=1).
    `cross_checks` False: the caller knows these exact inputs passed them (they only report).
    """
    with paused_gc():
        return _load_config(root, environment, reuse, flatten, disk_cache, cross_checks)


def _load_config(root: Path | str, environment: str | None, reuse: ConfigSet | None,
                 flatten: Callable[[ConfigObject], list] | None, disk_cache: bool,
                 cross_checks: bool) -> ConfigSet:
    from control_plane.config.cache import FileCache, digest

    root = Path(root)
    report = _Reporter()
    result = ConfigSet(root=root, environment=environment)
    if not root.is_dir():
        report.raw(root, 1, 1, "config", "-", "config directory does not exist")
        result.issues = report.issues
        return result

    files_cache: FileCache | None = None
    if flatten is not None:
        shared = reuse._loaded if reuse is not None else None
        files_cache = shared if isinstance(shared, FileCache) else FileCache(root, None if disk_cache else False)
    result._loaded = files_cache

    # Overlays first: the patches of the selected one decide which objects may come from the cache.
    # Whether a patch's target exists is checked once every base object is known (below); a patch
    # whose target does not exist patches nothing, so applying the candidates is the same.
    overlay_files: list[Path] = []
    candidates: list[tuple[dict, Document, tuple, str]] = []  # (patch, doc, where, overlay name)
    extra_by_doc: dict[int, set] = {}
    selected_patches: list[tuple[dict, Document, tuple]] = []
    overlay_objects: list[_Raw] = []
    found_selected = environment is None
    for path in _overlay_files(root):
        env_name = path.stem
        is_selected = env_name == environment
        found_selected = found_selected or is_selected
        ov = load_file(path)
        overlay_files.append(path)
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
            unknown = set(env.spec) - OVERLAY_SPEC_FIELDS
            for key in sorted(unknown):
                report.at(doc, ("spec", key), OVERLAY_KIND, env.metadata.name, f"unknown field {key!r}")
            if not isinstance(patches, list):
                report.at(doc, ("spec", "patches"), OVERLAY_KIND, env.metadata.name, "patches must be a list")
                continue
            extra_by_doc[id(doc)] = {
                (d.data.get("kind"), (d.data.get("metadata") or {}).get("name"))
                for d in ov.documents
                if isinstance(d.data, dict) and isinstance(d.data.get("metadata"), dict)
            }
            for i, patch in enumerate(patches):
                where = ("spec", "patches", i)
                allowed = OVERLAY_PATCH_FIELDS
                if (not isinstance(patch, dict) or set(patch) - allowed or not {"kind", "name"} <= set(patch)
                        or not {"patch", "schedule"} & set(patch)):
                    extra = sorted(set(patch) - allowed, key=str) if isinstance(patch, dict) else []
                    hint = suggest(extra[0], tuple(sorted(allowed))) if extra else ""
                    report.at(doc, where, OVERLAY_KIND, env.metadata.name,
                              f"{field_path(where)}: a patch has kind, name, and patch or schedule (or both)"
                              + (f"; unknown field {extra[0]!r}{hint}" if extra else ""))
                    continue
                if patch["kind"] not in CONFIG_KINDS:
                    report.at(doc, (*where, "kind"), OVERLAY_KIND, env.metadata.name,
                              f"{field_path((*where, 'kind'))}: {_unknown_kind(patch['kind'])}", at_value=True)
                    continue
                candidates.append((patch, doc, where, env.metadata.name))
                if is_selected and isinstance(patch.get("patch", {}), dict):
                    selected_patches.append((patch, doc, where))
    if not found_selected:
        report.raw(root / OVERLAY_DIR, 1, 1, "Overlay", environment or "-",
                   f"no overlay for environment {environment!r} ({OVERLAY_DIR}/{environment}.yaml)")

    patched: dict[tuple[str, str], list[tuple[dict, Document, tuple]]] = {}
    scheduled: dict[tuple[str, str], list[tuple[list, Document, tuple]]] = {}
    for patch, doc, where in selected_patches:
        if "patch" in patch:
            patched.setdefault((patch["kind"], patch["name"]), []).append((patch["patch"], doc, (*where, "patch")))
        if "schedule" in patch:
            scheduled.setdefault((patch["kind"], patch["name"]), []).append((patch["schedule"], doc, (*where, "schedule")))
    patched.update({key: patched.get(key, []) for key in scheduled})

    def build(raw: _Raw) -> ConfigObject | None:
        """The object of one document (its spec model, patches applied), added to the result."""
        kind, name = raw.env.kind, raw.env.metadata.name
        spec_data = raw.env.spec
        origins: dict[tuple, tuple[Document, tuple]] = {}
        for patch_data, patch_doc, patch_at in patched.get((kind, name), ()):
            spec_data = _patch_spec(spec_data, patch_data, (), patch_doc, patch_at, origins)
        obj = ConfigObject(kind, name, None, raw.env.metadata.labels, raw.env.metadata.annotations, raw.doc,
                           spec_data, origins)  # type: ignore[arg-type]
        meta = raw.env.metadata
        if raw.env.schedule or meta.effective_from or meta.effective_until or (kind, name) in scheduled:
            from control_plane.config import schedule as timeline

            obj.timing = timeline.collect_timing(obj, meta, raw.env.schedule, raw.doc,
                                                 scheduled.get((kind, name), []), report)
            timeline.check_specs_at_points(obj, report, _patch_spec, _build_spec)
        spec = _build_spec(obj, report)
        if spec is None:
            result.rejected.append(obj)
            return None
        obj.spec = spec
        return obj if add(obj) else None

    def add(obj: ConfigObject) -> bool:
        same_kind = result.objects.setdefault(obj.kind, {})
        if obj.name in same_kind:
            first = same_kind[obj.name].doc
            fl, _ = locate(first, ("metadata", "name"))
            report.at(obj.doc, ("metadata", "name"), obj.kind, obj.name,
                      f"duplicate {obj.kind} name {obj.name!r} (first defined at {rel(first.file)}:{fl})")
            return False
        same_kind[obj.name] = obj
        return True

    existing: set[tuple[str, str]] = set()
    files: set[Path] = set()
    for path in _yaml_files(root, (OVERLAY_DIR,)):
        try:
            raw_bytes = path.read_bytes()
        except OSError as exc:
            files.add(path)
            report.raw(path, 1, 1, *header_label(path, 1), f"cannot read file: {exc.strerror or exc}")
            continue
        content = digest(raw_bytes) if files_cache is not None else b""
        records = files_cache.get(content) if files_cache is not None else None
        if records is not None and not any((r[0], r[1]) in patched for r in records):
            source = _FileSource(path, content)
            for kind, name, labels, annotations, index, line, refs, rows in records:
                files.add(path)
                existing.add((kind, name))
                cached = CachedObject(kind, name, labels, annotations, CachedDocument(path, index, line, source), refs, rows)
                # Rows read from disk are unpacked now, a file at a time, while the runs just read
                # are the only other copy (the flatten hook puts the rows in their place).
                flatten(cached)  # type: ignore[misc]
                add(cached)
            continue
        loaded = load_bytes(raw_bytes, path)
        del raw_bytes
        if loaded.documents or loaded.errors:
            files.add(path)
        mark = len(report.issues)
        for err in loaded.errors:
            report.raw(err.file, err.line, err.col, *header_label(err.file, err.line), err.message)
        raws: list[_Raw] = []
        for doc in loaded.documents:
            env = _check_envelope(doc, report)
            if env is None:
                continue
            if env.kind == OVERLAY_KIND:
                report.at(doc, ("kind",), env.kind, env.metadata.name, f"an Overlay belongs in {OVERLAY_DIR}/<env>.yaml")
                continue
            raws.append(_Raw(env, doc))
            existing.add((env.kind, env.metadata.name))
        built = [build(raw) for raw in raws]
        if files_cache is None or len(report.issues) != mark or not all(built) or len(built) != len(loaded.documents):
            continue
        if any(o.timing is not None or (o.kind, o.name) in patched for o in built):  # type: ignore[union-attr]
            continue
        own = _Reporter()
        flattened = []
        for obj in built:
            rows = flatten(obj)  # type: ignore[arg-type]
            flattened.append(rows)
            _object_checks(obj, own, rows)  # type: ignore[arg-type]
        if own.issues:
            continue  # the cross checks report them, as for any object
        source = _FileSource(path, content)
        file_records = []
        for obj, rows in zip(built, flattened, strict=True):
            assert obj is not None
            raw_spec = obj.raw_spec if isinstance(obj.raw_spec, dict) else {}
            refs = {a: raw_spec[a] for a in _ref_aliases(obj.kind) if a in raw_spec}
            file_records.append((obj.kind, obj.name, obj.labels, obj.annotations, obj.doc.index, obj.doc.line, refs,
                                 rows))
            # From here on the object is its record: the file's models and data are let go.
            result.objects[obj.kind][obj.name] = CachedObject(
                obj.kind, obj.name, obj.labels, obj.annotations,
                CachedDocument(path, obj.doc.index, obj.doc.line, source), refs, rows)
        files_cache.put(content, file_records)
        del built, loaded, raws

    if files_cache is not None:
        files_cache.prune()
    # Patch targets: every base object is known now.
    for patch, doc, where, overlay_name in candidates:
        target = (patch["kind"], patch["name"])
        extra_names = extra_by_doc.get(id(doc), set())
        if target not in existing and target not in extra_names:
            names = [n for k, n in existing | extra_names if k == patch["kind"]]
            report.at(doc, (*where, "name"), OVERLAY_KIND, overlay_name,
                      f"patch target {patch['kind']}/{patch['name']} does not exist{suggest(patch['name'], names)}",
                      at_value=True)
            continue
        if not isinstance(patch.get("patch", {}), dict):
            report.at(doc, (*where, "patch"), OVERLAY_KIND, overlay_name, "patch must be a mapping")
    for raw in overlay_objects:
        build(raw)
    result.files = sorted(files) + overlay_files
    if reuse is not None:
        result.own_objects = set(patched) | {(r.env.kind, r.env.metadata.name) for r in overlay_objects}

    for check in CROSS_CHECKS if cross_checks else ():
        check(result, report)
    if any(o.timing is not None for objects in result.objects.values() for o in objects.values()):
        from control_plane.config import schedule as timeline

        report.issues += timeline.check_points(result, CROSS_CHECKS, _Reporter, set(report.issues))
    result.issues = sorted_issues(report.issues)
    return result


def _ref_aliases(kind: str) -> tuple[str, ...]:
    ck = CONFIG_KINDS[kind]
    return tuple(_alias(ck.spec, ref.field) for ref in ck.spec_refs)


def _object_checks(obj: ConfigObject, report: _Reporter, rows: list | None = None) -> None:
    """The checks that read only the object itself (a cached object passed them when it was cached).

    `rows`: the object's flattened rows. When every child key is text and no two rows share a
    natural key, no list holds a key twice (two equal keys in one list make equal natural keys), so
    the walk over every child item, which would find nothing, is skipped."""
    ck = CONFIG_KINDS[obj.kind]
    if ck.children and not (rows and _text_keys(obj.kind) and len(set(map(_ROW_KEY, rows))) == len(rows)):
        _walk_children(obj, ck.children, obj.spec, ("spec",), obj.name, report)
    _template_checks(obj, report)


_ROW_KEY = attrgetter("key")


@cache
def _text_keys(kind: str) -> bool:
    """Whether every child list of the kind, nested ones included, is keyed by a str field (or is a
    list of str): the keys whose equality is their text's."""

    def text(annotation: Any) -> bool:
        return annotation is str

    def walk(model: Any, children: tuple) -> bool:
        for child in children:
            info = model.model_fields.get(child.field)
            args = get_args(info.annotation) if info is not None and get_origin(info.annotation) is list else ()
            if len(args) != 1:
                return False
            item = args[0]
            if child.key_field is None:
                if not text(item) or child.children:
                    return False
                continue
            if not (isinstance(item, type) and issubclass(item, BaseModel)):
                return False
            key_info = item.model_fields.get(child.key_field)
            if key_info is None or not text(key_info.annotation) or not walk(item, child.children):
                return False
        return True

    ck = CONFIG_KINDS[kind]
    return walk(ck.spec, ck.children)


def _build_spec(obj: ConfigObject, report: _Reporter) -> BaseModel | None:
    """The object's spec model, every schema error reported where its value was written.

    When some fields fail, the spec is built again without them: if they all have defaults, the
    object still takes part in the other checks (references, cross-field checks), which skip the
    failed fields, so one run reports every stage's errors. None when even that fails."""
    ck = CONFIG_KINDS[obj.kind]
    try:
        return ck.spec.model_validate(obj.raw_spec, context={"name": obj.name})
    except ValidationError as exc:
        errors = exc.errors()
    for err in errors:
        report.on(obj, ("spec", *err["loc"]), _spec_issue_message(obj.kind, err), at_value=_at_value(err))
    failed = frozenset(err["loc"][0] for err in errors if err["loc"])
    if len(failed) < len({e["loc"][:1] for e in errors}) or not isinstance(obj.raw_spec, dict):
        return None  # an error of the whole spec (a cross-field validator): nothing to leave out
    try:
        spec = ck.spec.model_validate({k: v for k, v in obj.raw_spec.items() if k not in failed},
                                      context={"name": obj.name})
    except ValidationError:
        return None
    obj.failed = failed
    return spec


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
            if _own(config, kind, name) and not isinstance(obj, CachedObject):  # cached: it passed them
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
                report.on(obj, where, f"{field_path(where)}: duplicate {child.row_kind} {key!r} in {prefix} "
                                      f"(first at item {seen[key] + 1})")
                continue
            seen[key] = i
            if child.children and isinstance(item, BaseModel):
                _walk_children(obj, child.children, item, item_path, f"{prefix}/{key}", report)


def _check_references(config: ConfigSet, report: _Reporter) -> None:
    """Reference fields, read from the spec as written: objects whose spec failed are covered too."""
    for obj in _all_objects(config):
        ck = CONFIG_KINDS[obj.kind]
        if not ck.spec_refs:
            continue
        if isinstance(obj, CachedObject):  # its reference fields as written, without building its spec
            raw = obj.cached_refs
        else:
            raw = obj.raw_spec if isinstance(obj.raw_spec, dict) else {}
        for ref in ck.spec_refs:
            alias = _alias(ck.spec, ref.field)
            value = raw.get(alias)
            if ref.each and not isinstance(value, list):
                continue
            for i, target in enumerate(value if ref.each else [value]):
                if not isinstance(target, str):
                    continue  # no value, or one of the wrong type (the schema check said so)
                path = ("spec", alias, i) if ref.each else ("spec", alias)
                message = reference_problem(config, target, kind=ref.target_kind, catalog=ref.catalog,
                                            catalog_name=ref.catalog_name)
                if message:
                    report.on(obj, path, f"{field_path(path)}: {message}", skip_failed=False)


def reference_problem(config: ConfigSet, target: str, kind: str | None = None, catalog: tuple[str, ...] | None = None,
                      catalog_name: str = "") -> str | None:
    """Why `target` is not a known name of `kind` (or of `catalog`), with a suggestion; None if it is."""
    if catalog is not None:
        if target in catalog:
            return None
        hint = suggest(target, catalog)
        return f"unknown {catalog_name} {target!r}" + (hint or f"; known: {', '.join(catalog)}")
    names = config.names(kind)
    if target in names:
        return None
    return f"{kind} {target!r} does not exist{suggest(target, names)}"


def _all_objects(config: ConfigSet) -> list[ConfigObject]:
    return [o for objects in config.objects.values() for o in objects.values()] + [
        o for o in config.rejected if _own(config, o.kind, o.name)]


def _check_template_variables(config: ConfigSet, report: _Reporter) -> None:
    for ck in CONFIG_KINDS.values():
        if ck.template_fields:
            for _name, obj in config.of_kind(ck.kind).items():
                if not isinstance(obj, CachedObject):  # cached: it passed them
                    _template_checks(obj, report)


def _template_checks(obj: ConfigObject, report: _Reporter) -> None:
    ck = CONFIG_KINDS[obj.kind]
    if not ck.template_fields:
        return
    field_name = ck.template_fields[0]
    involved = {_alias(ck.spec, f) for f in (*ck.template_fields, "variables")}
    if obj.failed & involved:
        return  # one of them failed its schema: comparing them would only echo that
    used: set[str] = set()
    for template_field in ck.template_fields:
        used |= template_variables(getattr(obj.spec, template_field))
    declared = set(obj.spec.variables)
    undeclared, unused = sorted(used - declared), sorted(declared - used)
    if undeclared:
        report.on(obj, ("spec", _alias(ck.spec, field_name)),
                  f"undeclared variables in {field_name}: {', '.join('{' + v + '}' for v in undeclared)}", at_value=False)
    if unused:
        report.on(obj, ("spec", "variables"),
                  f"declared variables not used in {field_name}: {', '.join(unused)}", at_value=False)


def _check_typed_values(config: ConfigSet, report: _Reporter) -> None:
    """Fields whose type another field declares as a JSON Schema fragment (a SystemSetting's value
    and its schema): the fragment must be a valid schema, and the value must match it; an
    `x-cplane-ref: KIND` names an object of that kind (or a catalog), resolved like every reference."""
    kinds = [ck for ck in CONFIG_KINDS.values() if ck.typed_values]
    if not kinds:
        return
    from control_plane.kinds.typed import value_problems  # jsonschema: imported only when used

    for ck in kinds:
        for _name, obj in config.of_kind(ck.kind).items():
            if not _own(config, obj.kind, obj.name):
                continue
            for typed in ck.typed_values:
                value_alias, schema_alias = _alias(ck.spec, typed.field), _alias(ck.spec, typed.schema_field)
                if schema_alias in obj.failed or value_alias in obj.failed:
                    continue
                schema = getattr(obj.spec, typed.schema_field)
                value = getattr(obj.spec, typed.field)
                for side, at, message in value_problems(schema, value, config.names):
                    path = ("spec", schema_alias if side == "schema" else value_alias, *at)
                    report.on(obj, path, f"{field_path(path)}: {message}")


def _check_prompts(config: ConfigSet, report: _Reporter) -> None:
    from control_plane.config.prompt_checks import check_prompts

    check_prompts(config, report)


def _check_policies(config: ConfigSet, report: _Reporter) -> None:
    """Object rules of Policy documents (control_plane.policies, and CEL, imported only when one exists)."""
    if not config.of_kind("Policy"):
        return
    from control_plane.policies.objects import check_objects

    errors, warnings = check_objects(config)
    report.issues.extend(errors)
    config.warnings = sorted_issues(warnings)


CROSS_CHECKS = [_check_names, _check_children, _check_references, _check_template_variables, _check_typed_values,
                _check_prompts, _check_policies]


def overlay_environments(root: Path | str) -> list[str]:
    return [p.stem for p in _overlay_files(Path(root))]
