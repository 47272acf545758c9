"""Desired state: the validated config flattened into rows, secrets resolved from the environment."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from control_plane.config.model import ConfigObject, ConfigSet
from control_plane.kinds.registry import (
    CATALOG_ROWS,
    COMMON_COLUMN_NAMES,
    CONFIG_KINDS,
    ROW_KINDS,
    Child,
    config_kind_for_row_kind,
)
from control_plane.state.rows import PLAIN, Row, natural_key, values_maker


@dataclass
class SecretProblem:
    """A secret whose variable is not set: kept at its stored value, or unset when never stored."""

    kind: str
    name: str
    field: str
    variable: str
    column: str = ""
    sub: str | None = None  # the provider of a map of secrets


@dataclass
class DesiredState:
    rows: dict[str, dict[str, Row]]
    missing_secrets: list[SecretProblem]


@cache
def _field_names(model_class: type[BaseModel], skip: frozenset[str]) -> tuple[str, ...]:
    return tuple(name for name in model_class.model_fields if name not in skip)


def _dump_fields(model: BaseModel, skip: frozenset[str]) -> dict[str, Any]:
    return {name: _plain(getattr(model, name)) for name in _field_names(type(model), skip)}


def _plain(value: Any) -> Any:
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _secret_ref(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: v.from_env for k, v in value.items()}
    return value.from_env


Rows = dict[str, dict[str, Row]]


def config_rows(config: ConfigSet, *, lazy: bool = False) -> Rows:
    """Flatten validated objects (and nested children) into rows, secrets still unresolved.

    Validation (column limits) and planning both read them: whoever runs both computes them once
    and passes them on (see reconcile.validation), the ConfigSet itself caches nothing. An object
    from the per-file cache (config/cache.py) carries its rows already: they are taken as they are.
    lazy: a kind some of whose rows are still the packed runs of a cache entry read from disk is a
    state.lazyrows.KindRows, which builds a row when it is asked for (the same rows, the same order).
    """
    if lazy:
        return _lazy_config_rows(config)
    rows: dict[str, dict[str, Row]] = defaultdict(dict)
    for objects in config.objects.values():
        for obj in objects.values():
            for row in object_rows(obj):
                rows[row.kind][row.key] = row

    for kind, produce in CATALOG_ROWS.items():
        rk = ROW_KINDS[kind]
        for _key, values in produce():
            row = Row(kind, natural_key(rk, values), values)
            rows[kind][row.key] = row
    return dict(rows)


def _lazy_config_rows(config: ConfigSet) -> Rows:
    from control_plane.state.lazyrows import KindRows

    items: dict[str, list] = defaultdict(list)  # per kind: Rows and packed runs, in order
    for objects in config.objects.values():
        for obj in objects.values():
            cached = getattr(obj, "cached_rows", None)
            if cached and cached[0].__class__ is tuple:  # packed runs (config/cache.py), still unbuilt
                for run in cached:
                    items[run[0]].append(run)
            else:
                for row in object_rows(obj):
                    items[row.kind].append(row)
    for kind, produce in CATALOG_ROWS.items():
        rk = ROW_KINDS[kind]
        for _key, values in produce():
            items[kind].append(Row(kind, natural_key(rk, values), values))
    rows: Rows = {}
    for kind, found in items.items():
        if any(item.__class__ is tuple for item in found):
            lazy = KindRows()
            for item in found:
                if item.__class__ is tuple:
                    lazy.add_run(item)
                else:
                    lazy.add_row(item)
            rows[kind] = lazy  # type: ignore[assignment]
        else:
            rows[kind] = {row.key: row for row in found}
    return rows


def object_rows(obj: ConfigObject) -> list[Row]:
    """The rows of one object (its own row, then its children's, depth first), in the order
    config_rows inserts them."""
    cached = getattr(obj, "cached_rows", None)
    if cached is not None:
        # Built in this process: Rows; read from a cache entry: its packed runs (config/cache.py),
        # unpacked once and put in their place. The list is the one the in-process memo holds too,
        # so the process keeps one copy of the rows, not the runs and the Rows beside them.
        if cached and cached[0].__class__ is not Row:
            from control_plane.config.cache import unpack_rows

            cached[:] = unpack_rows(cached, Row, values_maker)
        return list(cached)
    ck = CONFIG_KINDS[obj.kind]
    if ck.row_kind is None:
        return []
    rk = ROW_KINDS[ck.row_kind]
    skip = frozenset(ck.child_fields) | frozenset(ck.secrets)
    values = {ck.column_for(f): v for f, v in _dump_fields(obj.spec, skip).items()}
    values[ck.key_column] = obj.name
    secret_refs = {}
    for spec_field, column in ck.secrets.items():
        secret_refs[column] = _secret_ref(getattr(obj.spec, spec_field))
        values[column] = None
    row = Row(rk.name, natural_key(rk, values), values, secret_refs, obj.prevent_destroy)
    out = [row]
    _flatten_children(obj, ck.children, obj.spec, [row.key], out)
    return out


def build_desired(config: ConfigSet, environ: dict[str, str] | None = None, rows: Rows | None = None) -> DesiredState:
    """The rows config asks for, with secrets resolved from `environ` (missing ones reported).

    `rows`: config_rows(config) when the caller has them already (they are not modified)."""
    from control_plane.state.lazyrows import secret_rows

    environ = os.environ if environ is None else environ
    missing: list[SecretProblem] = []
    rows = dict(config_rows(config) if rows is None else rows)
    for kind in list(rows):
        with_secrets = secret_rows(rows[kind])
        if not with_secrets:
            continue
        rows[kind] = dict(rows[kind].items())
        for row in with_secrets:
            values = dict(row.values)
            for column, ref in row.secret_refs.items():
                values[column] = _resolve(ref, environ, row, column, missing)
            rows[kind][row.key] = Row(row.kind, row.key, values, row.secret_refs, row.prevent_destroy)
    return DesiredState(rows, missing)


def _resolve(ref: Any, environ, row: Row, column: str, missing: list[SecretProblem]) -> Any:
    if ref is None:
        return None
    if isinstance(ref, dict):
        resolved = {}
        for sub, var in ref.items():
            if var in environ:
                resolved[sub] = environ[var]
            else:
                missing.append(SecretProblem(row.kind, row.key, f"{_secret_field(row.kind, column)}.{sub}", var,
                                             column, sub))
        return resolved
    if ref in environ:
        return environ[ref]
    missing.append(SecretProblem(row.kind, row.key, _secret_field(row.kind, column), ref, column))
    return None


def resolve_secret_refs(refs: dict[str, Any], environ, stored: dict[str, Any] | None) -> dict[str, Any]:
    """Secret column values from their references; a variable that is not set keeps the `stored`
    value (the live row's, decrypted; None for a row not stored yet). What apply writes."""
    resolved: dict[str, Any] = {}
    for column, ref in refs.items():
        current = (stored or {}).get(column)
        if ref is None:
            resolved[column] = None
        elif isinstance(ref, dict):
            kept = current if isinstance(current, dict) else {}
            value = {}
            for sub, var in ref.items():
                if var in environ:
                    value[sub] = environ[var]
                elif kept.get(sub) is not None:
                    value[sub] = kept[sub]
            resolved[column] = value
        else:
            resolved[column] = environ[ref] if ref in environ else current
    return resolved


def keep_stored(values: dict[str, Any], problems: list[SecretProblem], stored: dict[str, Any]
                ) -> tuple[dict[str, Any], list[SecretProblem], list[SecretProblem]]:
    """`values` with each secret whose variable is unset taken from `stored` (the live row).

    Returns (values, kept, unset): the problems whose stored value is kept, and those with none."""
    values = dict(values)
    kept: list[SecretProblem] = []
    unset: list[SecretProblem] = []
    for p in problems:
        current = stored.get(p.column)
        if p.sub is None:
            if current is not None:
                values[p.column] = current
                kept.append(p)
            else:
                unset.append(p)
        elif isinstance(current, dict) and current.get(p.sub) is not None:
            values[p.column] = {**(values.get(p.column) or {}), p.sub: current[p.sub]}
            kept.append(p)
        else:
            unset.append(p)
    return values, kept, unset


_SCALAR_TYPES = frozenset({str, int, bool, float, Decimal, type(None)})


def _flatten_children(obj, children: tuple[Child, ...], spec: Any, ancestors: list[str], out: list[Row]) -> None:
    # The hot loop of large taxonomies (one pass per seed keyword). Per child and item class the
    # shape is looked up once (_ChildShape, _item_builder): an item's values are one call of a
    # generated tuple display (a dict of shared keys) over its model's __dict__ (scalars taken as they are, a field that may
    # hold a model, list or dict through _plain), and its natural key is the ancestors' part of the key joined once per list
    # with the item's own key, which is what natural_key gives for these values (the key columns of
    # a child are its ancestors' reference columns and its key column, nothing else).
    for child in children:
        shape = _child_shape(child)
        name = shape.row_kind
        append = out.append
        before, after = shape.key_affixes(ancestors)
        ancestor_values = tuple(ancestors[-1 - depth] for depth in shape.ancestor_depths)
        items = getattr(spec, child.field)
        if child.key_field is None:
            make = values_maker((child.key_column, *shape.ancestor_names))
            for item in items:
                values = make((item, *ancestor_values))
                key = f"{before}{item}{after}" if before or after else str(item)
                append(Row(name, key, values))
                if child.children:
                    _flatten_children(obj, child.children, item, [*ancestors, key], out)
            continue
        item_class = build = None
        key_field = child.key_field
        for item in items:
            if item.__class__ is not item_class:
                item_class = item.__class__
                build = _item_builder(child, item_class)
            fields = item.__dict__
            values = build(fields, ancestor_values)
            item_key = fields[key_field]
            key = f"{before}{item_key}{after}" if before or after else str(item_key)
            append(Row(name, key, values))
            if child.children:
                _flatten_children(obj, child.children, item, [*ancestors, key], out)


class _ChildShape:
    """What flattening one child list needs, derived once from the registry."""

    __slots__ = ("row_kind", "ancestor_names", "ancestor_depths", "key_parts")

    def __init__(self, child: Child):
        rk = ROW_KINDS[child.row_kind]
        self.row_kind = rk.name
        depths = child.ancestor_columns
        self.ancestor_names = tuple(depths)
        self.ancestor_depths = tuple(depths.values())
        # Each key column: the ancestor depth it comes from, or None for the item's own key.
        self.key_parts = tuple(depths[c] if c in depths else None for c in rk.key_columns)

    def key_affixes(self, ancestors: list[str]) -> tuple[str, str]:
        """The natural key around the item's own key: (text before it, text after it)."""
        parts = self.key_parts
        i = parts.index(None)
        before = "".join(f"{ancestors[-1 - d]}/" for d in parts[:i])
        after = "".join(f"/{ancestors[-1 - d]}" for d in parts[i + 1:])
        return before, after


@cache
def _child_shape(child: Child) -> _ChildShape:
    return _ChildShape(child)


@cache
def _item_builder(child: Child, item_class: type[BaseModel]) -> Callable[[dict, tuple], dict[str, Any]]:
    """The function making one item's values from its model's __dict__ and its ancestors' keys: a
    tuple display generated once per child and item class (as dataclasses and namedtuple generate
    their methods) made into a dict of shared keys (state.rows.values_maker). Its entries are
    in the order flattening always had (the non-key fields, the key field, the ancestors'
    columns; a repeated column keeps its first place and its last value, as with assignments). A
    field whose annotation allows a model, list or dict goes through `_plain`; the others (text,
    numbers, booleans, None, literals, validated strictly) are taken as they are."""
    skip = frozenset({c.field for c in child.children} | {child.key_field})
    pairs = _child_columns(child, item_class, skip)
    entries = [(column, f"_p(f[{name!r}])" if not _surely_scalar(item_class, name) else f"f[{name!r}]")
               for name, column in pairs]
    entries.append((child.key_column, f"f[{child.key_field!r}]"))
    entries += [(column, f"a[{i}]") for i, column in enumerate(child.ancestor_columns)]
    # As a dict display would: a repeated column keeps its first place and its last value. The
    # values go through state.rows.values_maker (dicts sharing their keys: the bulk of the rows).
    placed: dict[str, str] = {}
    for column, expression in entries:
        placed[column] = expression
    source = f"def build(f, a):\n    return _m(({', '.join(placed.values())},))\n"
    namespace: dict[str, Any] = {"_p": _plain_value, "_m": values_maker(tuple(placed))}
    exec(compile(source, f"<flatten {child.row_kind}>", "exec"), namespace)  # noqa: S102 (our own text)
    return namespace["build"]


def _plain_value(value: Any) -> Any:
    return value if value.__class__ in _SCALAR_TYPES else _plain(value)


def _surely_scalar(item_class: type[BaseModel], name: str) -> bool:
    """Whether the field's annotation admits only scalars (what strict validation hands back as
    itself): str, int, bool, float, Decimal, None, Literals of those, and unions of these."""
    info = item_class.model_fields[name]
    return _scalar_annotation(info.annotation)


def _scalar_annotation(annotation: Any) -> bool:
    if annotation in _SCALAR_TYPES:
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return all(type(v) in _SCALAR_TYPES for v in get_args(annotation))
    if origin in (Union, UnionType):
        return all(_scalar_annotation(a) for a in get_args(annotation))
    return False


def _secret_field(row_kind: str, column: str) -> str:
    ck = config_kind_for_row_kind(row_kind)
    return next((f for f, c in ck.secrets.items() if c == column), column) if ck else column


@cache
def _child_columns(child: Child, item_class: type[BaseModel], skip: frozenset[str]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (f, child.columns.get(f) or COMMON_COLUMN_NAMES.get(f, f)) for f in _field_names(item_class, skip)
    )
