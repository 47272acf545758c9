"""`cplane export`: the system data now in a database, written back as config documents.

The inverse of `state.build_desired`, driven by the same registry declarations (no per-kind code):
column → spec field through `ConfigKind.columns` / `COMMON_COLUMN_NAMES` / `key_column`, references
already mapped to natural keys by the reader (export/reader.py), child rows regrouped under their parent by the
ancestor column, scalar child lists rebuilt from their key column. Secret values are never written:
a set secret becomes `{fromEnv: VAR}`, VAR being the variable cplane applied it from (kept in
cplane_managed_objects.secret_refs), or for rows cplane never wrote a name derived from kind, name
and field.

Every spec is validated through its pydantic model before anything is written, so a plan of the
export against the same database says `No changes` (given the secret variables it names are set
to the stored values). Files are written by export/emit.py (yaml-rs, else a writer of our own with
literal blocks, else ruamel), each read back and compared with its document before it is kept;
`check_written` then runs the cross-object checks and column limits on the same models, so the
tree is known to validate without being read again.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import re
import struct
import typing
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine

from control_plane.collector import paused_gc
from control_plane.config.model import PREVENT_DESTROY
from control_plane.errors import CplaneError
from control_plane.export.emit import render
from control_plane.export.reader import read_rows
from control_plane.kinds.registry import (
    CATALOG_ROWS,
    COMMON_COLUMN_NAMES,
    CONFIG_KINDS,
    ROW_KINDS,
    Child,
    ConfigKind,
)
from control_plane.kinds.specs import API_VERSION, Metadata, SecretRef
from control_plane.state.live import LiveState, existing_tables
from control_plane.state.rows import Row

MODELINE = "yaml-language-server: $schema=../../schemas/{kind}.json"


@dataclass
class ExportedObject:
    kind: str
    name: str
    path: str  # relative to the export root: <folder>/<name>.yaml
    document: dict[str, Any]
    managed: bool
    # Spec field (or field.sub) -> environment variable the document names; values never kept here.
    secret_variables: dict[str, str] = field(default_factory=dict)
    # The spec model the document was dumped from (what `check_written` checks across objects).
    spec: BaseModel | None = field(default=None, repr=False)


@dataclass
class ExportProblem:
    kind: str
    name: str
    message: str

    def format(self) -> str:
        return f"{self.kind}/{self.name}: {self.message}"


@dataclass
class Export:
    objects: list[ExportedObject] = field(default_factory=list)
    problems: list[ExportProblem] = field(default_factory=list)
    # The live rows the documents were built from (the rows they flatten to again).
    rows: dict[str, dict[str, Row]] = field(default_factory=dict, repr=False)
    # The child process rendering documents while they are validated (build_export(prerender=True)).
    prerendered: _Renderer | None = field(default=None, repr=False)

    def close(self) -> None:
        """End the rendering child, if any, writing nothing more (after write_export: a no-op)."""
        if self.prerendered is not None:
            self.prerendered.close()

    @property
    def secret_variables(self) -> list[str]:
        return sorted({v for o in self.objects for v in o.secret_variables.values()})


# --- names ------------------------------------------------------------------------------------


def _upper_snake(text: str) -> str:
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").upper()


def secret_variable(kind: str, name: str, spec_field: str, sub: str | None = None) -> str:
    """The environment variable an exported secret is read from.

    A single secret: `<KIND>_<NAME>_<FIELD>` (PaymentMethod stripe secret_key →
    PAYMENT_METHOD_STRIPE_SECRET_KEY). A map of secrets (one per provider): `<SUB>_<FIELD>` with the
    field in the singular (IntegrationDefaults api_keys openai → OPENAI_API_KEY), the usual name of
    a provider's key; `qualified` names are used instead when two objects would share one.
    """
    if sub is None:
        return f"{_upper_snake(kind)}_{_upper_snake(name)}_{_upper_snake(spec_field)}"
    singular = spec_field[:-1] if spec_field.endswith("s") else spec_field
    return f"{_upper_snake(sub)}_{_upper_snake(singular)}"


def qualified_secret_variable(kind: str, name: str, spec_field: str, sub: str) -> str:
    return f"{_upper_snake(kind)}_{_upper_snake(name)}_{_upper_snake(spec_field)}_{_upper_snake(sub)}"


# --- building specs ------------------------------------------------------------------------------


def _item_model(model: type[BaseModel], field_name: str) -> type[BaseModel] | None:
    """The model of a list field's items (`sectors: list[SectorSpec]` → SectorSpec), None for scalars."""
    annotation = model.model_fields[field_name].annotation
    for arg in typing.get_args(annotation) or (annotation,):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


_NO_DEFAULT = object()


def _alias(model: type[BaseModel], name: str) -> str:
    """The name a document spells the field with (what the loader validates by)."""
    return model.model_fields[name].alias or name


def _field_plan(model: type[BaseModel], column_of, skip: frozenset[str]) -> tuple[tuple[str, str, bool, Any], ...]:
    """(alias, column, NULL means leave it out, default) for every spec field stored in a column,
    worked out once per model and child rather than once per row (a large taxonomy has 100,000
    rows of one)."""
    plan = []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        default = _NO_DEFAULT if info.is_required() else info.get_default(call_default_factory=True)
        null_is_default = default is not _NO_DEFAULT and default is not None
        plan.append((info.alias or name, column_of(name), null_is_default, default))
    return tuple(plan)


def _fields_from_columns(values: dict[str, Any], plan: tuple[tuple[str, str, bool, Any], ...]) -> dict[str, Any]:
    """Spec fields, spelled as a document spells them, from a row's columns, in the model's order.

    Built straight in the shape the file has (the loader validates this very dict once it is read
    back), so nothing is dumped from a model afterwards: a NULL column whose field has a non-null
    default is left out (the default applies, and a plan shows the difference honestly); a value
    equal to its field's default (and of its type) is left out, as `exclude_defaults` would; a
    Decimal becomes the YAML number the loader turns back into the same Decimal (`_number`)."""
    data: dict[str, Any] = {}
    for alias, column, null_is_default, default in plan:
        if column not in values:
            continue  # a field with no column of its own (not stored): its default round-trips
        value = values[column]
        if value is None:
            if null_is_default or default is None:
                continue
        elif value.__class__ is default.__class__ and value == default:
            continue
        elif value.__class__ is Decimal:
            # Money columns repeat a few thousand values over 100,000 rows: each worked out once.
            value = _decimal_number(value)
        data[alias] = value
    return data


_ABSENT = object()


def _decimal_number(value: Decimal) -> Any:
    """`_number` of a column's Decimal, worked out once per value (`_fields_from_columns`)."""
    number = _NUMBERS.get(value, _NO_DEFAULT)
    if number is _NO_DEFAULT:
        number = _number(value)
        if number.__class__ is not str and len(_NUMBERS) < 65536:
            _NUMBERS[value] = number
    return number


def _fields_builder(plan: tuple[tuple[str, str, bool, Any], ...]) -> typing.Callable[[dict[str, Any]], dict[str, Any]]:
    """`functools.partial(_fields_from_columns, plan=plan)`, as a function written out for the plan
    (its tests in the plan's field order decided once, not once per row: ~half the time over the
    100,000 rows of one child kind). The same dict, key for key and in the same order: a test
    compares the two on every case of the plan."""
    lines = ["def build(values):", "    data = {}"]
    env: dict[str, Any] = {"_ABSENT": _ABSENT, "_NO_DEFAULT": _NO_DEFAULT, "_NUMBERS": _NUMBERS,
                           "Decimal": Decimal, "_decimal_number": _decimal_number}
    for i, (alias, column, null_is_default, default) in enumerate(plan):
        env[f"d{i}"], env[f"c{i}"] = default, default.__class__
        lines.append(f"    value = values.get({column!r}, _ABSENT)")
        lines.append("    if value is not _ABSENT:")
        lines.append("        if value is None:")
        # NULL: left out when the field has a default (it applies), else written as null.
        lines.append("            pass" if null_is_default or default is None else f"            data[{alias!r}] = None")
        if default is not _NO_DEFAULT and default is not None:  # equal to its default and of its type: left out
            lines.append(f"        elif value.__class__ is c{i} and value == d{i}:")
            lines.append("            pass")
        lines.append("        else:")
        lines.append("            if value.__class__ is Decimal:")
        lines.append("                number = _NUMBERS.get(value, _NO_DEFAULT)")
        lines.append("                value = number if number is not _NO_DEFAULT else _decimal_number(value)")
        lines.append(f"            data[{alias!r}] = value")
    lines.append("    return data")
    exec("\n".join(lines), env)  # noqa: S102 (names and defaults come from the registry and models)
    return env["build"]


def _holds_model(annotation: Any) -> bool:
    """The annotation is or contains a model (a column holding structured data, e.g. JSON)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_model(a) for a in typing.get_args(annotation))


def _dumped(model: type[BaseModel], children: tuple[Child, ...], skip: set[str]) -> bool:
    """Whether a field of the kind (or of a child's items) other than the children and secrets
    holds a model's data: a column stores it by field name, not in the document's spelling, so
    those specs are validated by either name and dumped (the careful path). Decided per kind, from
    the models alone, the same for every row."""
    skip = skip | {c.field for c in children}
    if any(_holds_model(info.annotation) for name, info in model.model_fields.items() if name not in skip):
        return True
    for child in children:
        item_model = _item_model(model, child.field) if child.key_field is not None else None
        if item_model is not None and _dumped(item_model, child.children, set()):
            return True
    return False


@functools.cache
def _child_field(model: type[BaseModel], name: str) -> tuple[str, Any]:
    """(alias, default) of a child list's field, worked out once (pydantic's default factory check
    inspects signatures: ~0.5 ms a call)."""
    info = model.model_fields[name]
    return info.alias or name, _NO_DEFAULT if info.is_required() else info.get_default(call_default_factory=True)


def _put_child(model: type[BaseModel], data: dict[str, Any], name: str, items: list[Any]) -> None:
    """A child list under its field's alias, left out when it is the field's default (no items)."""
    alias, default = _child_field(model, name)
    if items != default:
        data[alias] = items


def _in_field_order(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """`data` with its keys in the model's field order (children and secrets are added last)."""
    order = [f.alias or n for n, f in model.model_fields.items()]
    return {k: data[k] for k in order if k in data}


class _Exporter:
    def __init__(self, live: LiveState):
        self.live = live
        self.secret_claims: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
        # (kind, name, field.sub) of the provider-keyed references derived here (not recorded).
        self.generated: set[tuple[str, str, str]] = set()
        self.builders: dict[Child, typing.Callable[[dict[str, Any]], dict[str, Any]]] = {}

    def children_by_parent(self, child: Child) -> dict[str, list[Row]]:
        parent_column = next(c for c, depth in child.ancestor_columns.items() if depth == 0)
        grouped: dict[str, list[Row]] = defaultdict(list)
        for row in self.live.rows.get(child.row_kind, {}).values():
            grouped[str(row.values[parent_column])].append(row)
        for rows in grouped.values():
            rows.sort(key=lambda r: (r.id is None, r.id or 0, r.key))
        return grouped

    def index_children(self, children: tuple[Child, ...], index: dict[str, dict[str, list[Row]]]) -> None:
        """Each child kind's rows by parent, into `index` (a method, not a recursive closure: that
        would be a reference cycle keeping the grouped rows and the read state alive until a
        collection, which an export runs without: ~24 MB at 100,000 rows)."""
        for child in children:
            index[child.row_kind] = self.children_by_parent(child)
            self.index_children(child.children, index)

    def child_items(self, child: Child, model: type[BaseModel], parent_key: str, index: dict) -> list[Any]:
        rows = index[child.row_kind].get(parent_key, [])
        if child.key_field is None:
            return [row.values[child.key_column] for row in rows]
        item_model = _item_model(model, child.field)
        if item_model is None:
            raise RuntimeError(f"{model.__name__}.{child.field} is not a list of models")
        skip = frozenset(c.field for c in child.children)
        build = self.builders.get(child)
        if build is None:
            build = self.builders[child] = _fields_builder(_field_plan(
                item_model,
                lambda f: child.key_column if f == child.key_field
                else child.columns.get(f) or COMMON_COLUMN_NAMES.get(f, f), skip))
        items = []
        for row in rows:
            item = build(row.values)
            if child.children:
                for grandchild in child.children:
                    _put_child(item_model, item, grandchild.field,
                               self.child_items(grandchild, item_model, row.key, index))
                item = _in_field_order(item_model, item)
            items.append(item)
        return items

    def secrets(self, ck: ConfigKind, row: Row, obj: ExportedObject, recorded: dict[str, Any] | None
                ) -> dict[str, Any]:
        """References for the stored secrets: the variable cplane applied each one from (recorded
        in its bookkeeping), else (rows it never wrote) a name derived from kind, name and field."""
        data: dict[str, Any] = {}
        recorded = recorded or {}
        for spec_field, column in ck.secrets.items():
            value = row.values.get(column)
            if value is None:
                continue
            known = recorded.get(column)
            if isinstance(value, dict):
                refs = {}
                for sub, sub_value in sorted(value.items()):
                    if sub_value is None:
                        continue
                    variable = known.get(sub) if isinstance(known, dict) else None
                    if not isinstance(variable, str):
                        variable = secret_variable(ck.kind, row.key, spec_field, sub)
                        self.generated.add((ck.kind, row.key, f"{spec_field}.{sub}"))
                    self.secret_claims[variable].add((ck.kind, row.key, f"{spec_field}.{sub}"))
                    obj.secret_variables[f"{spec_field}.{sub}"] = variable
                    refs[sub] = {"from_env": variable}
                if refs:
                    data[spec_field] = refs
            else:
                variable = known if isinstance(known, str) else secret_variable(ck.kind, row.key, spec_field)
                obj.secret_variables[spec_field] = variable
                data[spec_field] = {"from_env": variable}
        return data


def _exportable_kinds() -> list[ConfigKind]:
    return [ck for ck in CONFIG_KINDS.values() if ck.row_kind is not None and ck.row_kind not in CATALOG_ROWS]


def build_export(live: LiveState, prerender: bool = False) -> Export:
    """Config documents for every system row of every exportable kind (managed or not).

    `prerender`: a forked child renders the documents (emit.render, the read-back included) while
    this process validates them, and writes them when write_export says which (the valid ones, at
    the place it names); see _Renderer."""
    exporter = _Exporter(live)
    result = Export(rows=live.rows)
    child_index: dict[str, dict[str, list[Row]]] = {}
    pending: list[tuple[ConfigKind, Row, ExportedObject, dict[str, Any]]] = []
    for ck in _exportable_kinds():
        exporter.index_children(ck.children, child_index)
        rk = ROW_KINDS[ck.row_kind]
        managed = live.managed.get(rk.name, {})
        skip = frozenset(set(ck.child_fields) | set(ck.secrets)
                         | {f for f in ck.spec.model_fields if ck.column_for(f) == ck.key_column})
        build = _fields_builder(_field_plan(ck.spec, ck.column_for, skip))
        dumped = _dumped(ck.spec, ck.children, set(ck.secrets))
        for row in sorted(live.rows.get(rk.name, {}).values(), key=lambda r: r.key):
            data = build(row.values)
            for child in ck.children:
                _put_child(ck.spec, data, child.field, exporter.child_items(child, ck.spec, row.key, child_index))
            record = managed.get(row.key)
            obj = ExportedObject(ck.kind, row.key, f"{ck.folder}/{row.key}.yaml", {}, managed=record is not None)
            secrets = exporter.secrets(ck, row, obj, getattr(record, "secret_refs", None))
            pending.append((ck, row, obj, data, secrets, dumped))

    # A provider-keyed secret variable shared by two objects gets each object's qualified name.
    shared = {v for v, claims in exporter.secret_claims.items() if len({(k, n) for k, n, _ in claims}) > 1}
    from_env = _alias(SecretRef, "from_env")
    built = []
    for ck, row, obj, data, secrets, dumped in pending:
        for spec_field, refs in secrets.items():
            if "from_env" in refs:
                refs = {from_env: refs["from_env"]}
            else:
                for sub, ref in refs.items():
                    if ref["from_env"] in shared and (ck.kind, row.key, f"{spec_field}.{sub}") in exporter.generated:
                        ref["from_env"] = qualified_secret_variable(ck.kind, row.key, spec_field, sub)
                        obj.secret_variables[f"{spec_field}.{sub}"] = ref["from_env"]
                refs = {sub: {from_env: ref["from_env"]} for sub, ref in refs.items()}
            data[_alias(ck.spec, spec_field)] = refs
        if ck.children or secrets:
            data = _in_field_order(ck.spec, data)
        metadata: dict[str, Any] = {"name": row.key}
        record = live.managed.get(ck.row_kind, {}).get(row.key)
        if record is not None and record.prevent_destroy:
            metadata["annotations"] = {PREVENT_DESTROY: "true"}
        if not dumped:  # the document as written, before it is validated (what a child can render)
            obj.document = {"apiVersion": API_VERSION, "kind": ck.kind, "metadata": metadata, "spec": data}
        built.append((ck, row, obj, data, metadata, dumped))

    if prerender:
        result.prerendered = _Renderer.start([obj for _, _, obj, _, _, dumped in built if not dumped])
    try:
        for ck, row, obj, data, metadata, dumped in built:
            # One validation per spec, of the very dict that is written, as the loader validates it
            # once it reads the file (by alias): the model is what a plan of the file builds, and no
            # dump is needed (a failure lists every problem of the object, metadata first).
            problems = _problems(Metadata, metadata, "metadata")
            try:
                # Columns holding a model's data by field name: either spelling accepted, then dumped.
                spec = ck.spec.model_validate(data, by_alias=True, by_name=True) if dumped \
                    else ck.spec.model_validate(data)
            except ValidationError as exc:
                problems += _messages(exc, "spec")
            if problems:
                result.problems.extend(ExportProblem(ck.kind, row.key, p) for p in problems)
                continue
            obj.spec = spec
            if dumped:
                data = _yaml_ready(spec.model_dump(mode="python", by_alias=True, exclude_defaults=True))
                obj.document = {"apiVersion": API_VERSION, "kind": ck.kind, "metadata": metadata, "spec": data}
            result.objects.append(obj)
    except BaseException:
        result.close()
        raise
    return result


def _messages(exc: ValidationError, prefix: str) -> list[str]:
    return [f"{'.'.join([prefix, *(str(p) for p in e['loc'])])}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)]


def _problems(model: type[BaseModel], data: dict[str, Any], prefix: str) -> list[str]:
    try:
        model.model_validate(data, by_name=True)
    except ValidationError as exc:
        return _messages(exc, prefix)
    return []


# Decimal -> `_number` of it, an int or a float (a text result, which keeps the Decimal's own
# spelling, is never kept). Decimals equal in value (1.5, 1.50) share an entry and get the same
# number: float(), comparisons by value and Decimal(repr) compared by value depend on the value alone.
_NUMBERS: dict[Decimal, Any] = {}


def _number(value: Decimal) -> Any:
    """A Decimal as a plain YAML scalar: an int when whole, else the shortest exact float (the
    loader's `_to_decimal` makes the same Decimal of it again). The float's repr is compared as
    text first (a money value's usual case, ~2x faster than building a Decimal of it)."""
    if not value.is_finite():
        return str(value)  # a string: the spec's Decimal refuses it, so the row is reported
    number = float(value)
    if number.is_integer():
        if number == value:  # a Decimal and a float compare exactly
            return int(number)
        if value == value.to_integral_value():
            return int(value)  # whole, beyond a float's precision
    text = repr(number)
    if text == str(value) or Decimal(text) == value:  # equal in value: trailing zeros do not count
        return number
    return str(value)  # more digits than a float holds exactly (never for money(12,2))


def _yaml_ready(value: Any) -> Any:
    """Plain YAML scalars (Decimals replaced by `_number`), in place: the dump is ours alone, and
    only containers are visited (a 100,000-row spec is mostly strings and ints)."""
    if type(value) is Decimal:
        return _number(value)
    if isinstance(value, dict):
        for k, v in value.items():
            t = type(v)
            if t is Decimal:
                value[k] = _number(v)
            elif t is dict or t is list or t is tuple:
                value[k] = _yaml_ready(v)
        return value
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, list):
        for i, v in enumerate(value):
            t = type(v)
            if t is Decimal:
                value[i] = _number(v)
            elif t is dict or t is list or t is tuple:
                value[i] = _yaml_ready(v)
    return value


# --- the command's work -----------------------------------------------------------------------------


def read_export(engine: Engine, environment: str | None = None, prerender: bool = False) -> Export:
    """What the database holds, read as it is (never migrated): a database cplane never migrated
    exports nothing. No secret is decrypted (export writes references), so `environment`, which
    selects the key, changes nothing here. `prerender`: documents rendered by a second process
    while they are validated, where a second CPU is there (build_export); close() the export when
    it is not written."""
    from control_plane.db.engine import check_connection

    check_connection(engine)
    with paused_gc():
        with engine.connect() as conn:
            present = existing_tables(conn)
            if _schema_revision(conn, present) is None:
                return build_export(LiveState({}, {}, {}))
            live = read_rows(conn, frozenset(ck.row_kind for ck in _exportable_kinds()), present)
        return build_export(live, prerender=prerender and _workers() > 1)


def _schema_revision(conn, present: set[str]) -> str | None:
    """The revision Alembic recorded, read as Alembic reads it (its version table; none when the
    table is missing or empty) without importing Alembic (~0.2 s of a process that takes ~1 s).
    `present`: the tables the database has (`existing_tables`, listed once for the reader too)."""
    from sqlalchemy import text

    if "alembic_version" not in present:
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def render_object(obj: ExportedObject) -> str:
    """The object's file: its modeline and its document, checked by reading it back (emit.render)."""
    return render(obj.document, header=MODELINE.format(kind=obj.kind))


def _write_one(obj: ExportedObject, out: Path) -> None:
    try:
        content = render_object(obj)
    except ValueError as exc:  # no writer reproduced it: say so in one line, write nothing wrong
        raise CplaneError(f"cannot write {obj.kind}/{obj.name} exactly as YAML: {exc}") from None
    path = out / obj.path
    try:
        path.write_text(content, encoding="utf-8")
    except OSError as exc:
        raise CplaneError(f"cannot write {path}: {exc.strerror or exc}") from None


def _workers() -> int:
    """Processes to render with: two where a second CPU is there to run one and fork exists."""
    if not hasattr(os, "fork"):
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return 2 if cpus > 1 else 1


# Rendering shared between two processes: fewer objects than this are not worth a fork.
_FORK_MIN_OBJECTS = 8
_INDEX = struct.Struct("=I")


def write_export(export: Export, out: Path, workers: int | None = None,
                 meanwhile: typing.Callable[[], Any] | None = None) -> list[Path]:
    """One file per object, `<out>/<folder>/<name>.yaml`, each written as soon as it is rendered
    (its text is not kept); returns the paths written, in the objects' order.

    Rendering (yaml-rs's dump and the read-back of every document) is ~a quarter of an export; with
    `workers` 2 (default: when a second CPU is there, see `_workers`) a forked child renders part
    of the objects (`_Renderer`, the same child `read_export(prerender=True)` starts before
    validation) while this process runs `meanwhile` (e.g. `check_written`, which needs no file)
    and then renders the rest: each file is written by exactly one process from the same
    document, so the tree is byte-for-byte the one a single process writes. A failure is reported
    as the first failing object in the objects' order, one line as before. Without a child,
    `meanwhile` runs after the files."""
    folders = {(out / obj.path).parent for obj in export.objects}
    for folder in sorted(folders):
        folder.mkdir(parents=True, exist_ok=True)
    objects = export.objects
    renderer = export.prerendered
    if renderer is None and (_workers() if workers is None else workers) >= 2:
        renderer = _Renderer.start(objects)
    if renderer is None:
        for obj in objects:
            _write_one(obj, out)
        if meanwhile is not None:
            meanwhile()
        return [out / obj.path for obj in objects]
    failures = renderer.finish(objects, out, meanwhile)
    if failures:
        raise CplaneError(failures[min(failures)])
    return [out / obj.path for obj in objects]


def _fork(child: typing.Callable[[], None]) -> int:
    """A forked child that runs `child` with its collector off and exits with 0 (1 if it raised),
    never running the parent's atexit handlers, buffers or database connections; the child's pid.
    Objects made before the fork are frozen out of the child's collections (no copy-on-write of every
    page for the collector's bookkeeping); a freeze the caller made (cli/export.py) is left as it is."""
    frozen = gc.get_freeze_count() > 0
    gc.freeze()
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            gc.disable()
            child()
        except BaseException:  # noqa: BLE001 (the parent reports the missing result)
            status = 1
        finally:
            os._exit(status)
    if not frozen:
        gc.unfreeze()
    return pid


def _claims(queue: int):
    """Object indexes taken from the shared queue until it is empty (a 4-byte read from a pipe is
    atomic between the two readers: every index was written whole, before either read)."""
    while True:
        data = os.read(queue, _INDEX.size)
        if not data:
            return
        yield _INDEX.unpack(data)[0]


def _items(value: Any) -> int:
    """About how many list items a document holds, at any depth (its size as far as rendering
    goes; only an order of work, so a list's items are taken to be like its first one)."""
    if value.__class__ is dict:
        return sum(_items(v) for v in value.values() if v.__class__ is dict or v.__class__ is list)
    if value.__class__ is list and value:
        return len(value) * (1 + _items(value[0]))
    return 0


def _render_failure(obj: ExportedObject, exc: Exception) -> str:
    """The one-line message `_write_one` raises for a document no writer reproduces."""
    if isinstance(exc, ValueError):
        return f"cannot write {obj.kind}/{obj.name} exactly as YAML: {exc}"
    return f"cannot write {obj.kind}/{obj.name}: {exc}"


class _Renderer:
    """A forked child rendering documents while this process validates and checks them.

    Rendering (yaml-rs's dump and the read-back of every document, ~0.4 s of CPU at 100,000 rows)
    needs nothing of validation and the in-memory checks: the child takes documents one by one
    from a queue of the renderable ones (every document final before validation: all but the
    kinds dumped from their model) and keeps the texts; this process, once it has validated and
    checked, takes the rest from the same queue, so whichever finishes first helps the other.
    The child writes nothing until `finish` names the folder and the objects to write (the valid
    ones; none at all when the export stops on a problem: `close`), so a file is written only for
    a document that validated, each by one process from the same document: the bytes a single
    process writes. Render failures come back as the one-line messages `_write_one` raises."""

    def __init__(self, pid: int, command: int, result: int, queue: int, step: int, objects: list[ExportedObject]):
        self.pid, self.command, self.result, self.queue, self.step = pid, command, result, queue, step
        self.objects = objects
        self.index = {id(obj): i for i, obj in enumerate(objects)}
        self.done = False

    @classmethod
    def start(cls, objects: list[ExportedObject]) -> _Renderer | None:
        if len(objects) < _FORK_MIN_OBJECTS:
            return None
        # Every claim is in the queue before the fork, at most 16,000 of them (64 KB, a pipe's
        # buffer): a claim is a run of `step` objects (one object each below 16,000 objects).
        # Largest first: the child starts on the large documents while this process validates,
        # and what is left for this process to take at the end is small (it keeps the two
        # finishing together, and the large read-backs out of this process's peak memory).
        step = -(-len(objects) // 16000)
        starts = sorted(range(0, len(objects), step),
                        key=lambda start: -sum(_items(o.document) for o in objects[start:start + step]))
        queue_r, queue_w = os.pipe()
        os.write(queue_w, b"".join(_INDEX.pack(i) for i in starts))
        os.close(queue_w)
        command_r, command_w = os.pipe()
        result_r, result_w = os.pipe()

        def child() -> None:
            os.close(command_w), os.close(result_r)
            _render_child(objects, step, queue_r, command_r, result_w)

        pid = _fork(child)
        os.close(command_r), os.close(result_w)
        return cls(pid, command_w, result_r, queue_r, step, objects)

    def finish(self, objects: list[ExportedObject], out: Path, meanwhile) -> dict[int, str]:
        """Have the child write its rendered documents among `objects` under `out`; run
        `meanwhile`, then render and write the rest here; {index in objects: message} of the
        failures."""
        position = {self.index[id(obj)]: i for i, obj in enumerate(objects) if id(obj) in self.index}
        order = json.dumps({"out": str(out), "write": [[j, objects[i].path] for j, i in position.items()]})
        try:
            _write_all(self.command, order.encode())
        finally:
            os.close(self.command)
            self.command = -1
        failures: dict[int, str] = {}
        try:
            if meanwhile is not None:
                meanwhile()
            for i, obj in enumerate(objects):
                if id(obj) not in self.index:  # not renderable before validation: this process's
                    _write_into(failures, i, obj, out)
            for start in _claims(self.queue):  # what the child has not taken yet
                for j in range(start, min(start + self.step, len(self.objects))):
                    i = position.get(j)
                    if i is None:
                        continue  # not valid: not written
                    _write_into(failures, i, objects[i], out)
        finally:
            report = self._collect()
        failures.update({position[int(j)]: message for j, message in report.items()})
        return failures

    def _collect(self) -> dict[str, str]:
        if self.queue >= 0:
            os.close(self.queue)
            self.queue = -1
        chunks = []
        while chunk := os.read(self.result, 65536):
            chunks.append(chunk)
        os.close(self.result)
        _, status = os.waitpid(self.pid, 0)
        self.done = True
        if os.waitstatus_to_exitcode(status) != 0 or not chunks:
            raise CplaneError("the process writing part of the export failed; the export is incomplete")
        return json.loads(b"".join(chunks))

    def close(self) -> None:
        """End the child writing nothing (after finish: a no-op)."""
        if self.done:
            return
        if self.command >= 0:
            os.close(self.command)  # no order: the child writes nothing and exits
            self.command = -1
        for _ in _claims(self.queue):  # the child renders what it holds, then finds the queue empty
            pass
        try:
            self._collect()
        except CplaneError:
            pass


def _write_into(failures: dict[int, str], i: int, obj: ExportedObject, out: Path) -> None:
    try:
        _write_one(obj, out)
    except CplaneError as exc:
        failures[i] = str(exc)
    except Exception as exc:  # noqa: BLE001 (reported as the one process would have failed)
        failures[i] = _render_failure(obj, exc)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _render_child(objects: list[ExportedObject], step: int, queue: int, command: int, result: int) -> None:
    texts: dict[int, str] = {}
    errors: dict[int, str] = {}
    for start in _claims(queue):
        for i in range(start, min(start + step, len(objects))):
            try:
                texts[i] = render_object(objects[i])
            except Exception as exc:  # noqa: BLE001 (reported as the one process would have failed)
                errors[i] = _render_failure(objects[i], exc)
    chunks = []
    while chunk := os.read(command, 65536):
        chunks.append(chunk)
    failures: dict[int, str] = {}
    if chunks:  # no order (the export stopped, or was never written): nothing written
        order = json.loads(b"".join(chunks))
        out = Path(order["out"])
        for i, path in order["write"]:
            if i in errors:
                failures[i] = errors[i]
                continue
            text = texts.get(i)
            if text is None:
                continue  # this process's claim
            try:
                (out / path).write_text(text, encoding="utf-8")
            except OSError as exc:
                failures[i] = f"cannot write {out / path}: {exc.strerror or exc}"
    _write_all(result, json.dumps(failures).encode())


def check_written(export: Export, out: Path) -> list:
    """What `cplane validate` would say of the written tree, without reading it again.

    Each file holds exactly its document (emit.render read every text back and compared it), each
    document's metadata and spec passed their models in build_export, and no object has a schedule
    or an overlay; what is left of validation is the checks across objects (names, children,
    references, template variables, typed values, prompts, policies) and the column limits, run
    here on the same models and on the live rows the documents flatten back to. Issues point into
    the written files.
    """
    from control_plane.config.loader import Document
    from control_plane.config.model import ConfigObject, ConfigSet, _Reporter, sorted_issues
    from control_plane.config.validate import CROSS_CHECKS
    from control_plane.state.limits import column_limit_issues

    config = ConfigSet(root=out, environment=None)
    for obj in export.objects:
        path = out / obj.path
        metadata = obj.document["metadata"]
        doc = Document(file=path, index=0, data=obj.document, line=2)  # after the modeline
        config.files.append(path)
        config.objects.setdefault(obj.kind, {})[obj.name] = ConfigObject(
            obj.kind, obj.name, obj.spec, metadata.get("labels", {}), metadata.get("annotations", {}), doc,
            obj.document["spec"])
    report = _Reporter()
    for check in CROSS_CHECKS:
        check(config, report)
    report.issues += column_limit_issues(config, export.rows)
    return sorted_issues(report.issues)
