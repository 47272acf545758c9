"""Desired state (from config) and live state (from the database), in one comparable shape.

Both sides become `Row`s: a row kind, a natural key, and column values in which every reference to
another system row is that row's natural key (never a database id). Secrets are plaintext in
memory only. `canonical()` gives the form in which the two sides are compared and fingerprinted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy import Connection, select, text

from control_plane.config.validate import ConfigSet
from control_plane.kinds.registry import (
    CATALOG_ROWS,
    COMMON_COLUMN_NAMES,
    CONFIG_KINDS,
    ROW_KINDS,
    Child,
    RowKind,
    apply_order,
    config_kind_for_row_kind,
)
from control_plane.secrets import SecretBox

EXCLUDED_COLUMNS = frozenset({"id", "created_at", "updated_at", "account_id"})


@cache
def managed_columns(rk: RowKind) -> tuple[str, ...]:
    """Columns cplane owns in a row kind's table: everything but ids, timestamps, tenancy and versions."""
    return tuple(
        c.name for c in rk.table.columns if c.name not in EXCLUDED_COLUMNS and c.name != rk.version_column
    )


@dataclass(slots=True)
class Row:
    kind: str
    key: str
    values: dict[str, Any]
    # Column -> env var name (or {sub: env var}); desired rows only.
    secret_refs: dict[str, Any] | None = None
    prevent_destroy: bool = False
    # Live rows only.
    id: int | None = None
    version: int | None = None


def natural_key(rk: RowKind, values: dict[str, Any]) -> str:
    columns = rk.key_columns
    if len(columns) == 1:
        return str(values[columns[0]])
    return "/".join([str(values[c]) for c in columns])


# --- canonical form -------------------------------------------------------------------------------


_PLAIN = (str, int, bool, type(None))
_PASSTHROUGH = frozenset(_PLAIN)


def _canon(value: Any) -> Any:
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, float):
        return format(Decimal(repr(value)).normalize(), "f") if value == value else "nan"
    if isinstance(value, dict):
        return json.dumps({str(k): _canon(v) for k, v in value.items()}, sort_keys=True, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return json.dumps([_canon(v) for v in value], sort_keys=True, ensure_ascii=False)
    return str(value)


def canonical(rk: RowKind, values: dict[str, Any], box: SecretBox) -> tuple:
    """One tuple per row state: equal tuples mean equal rows. Secrets enter only as an HMAC."""
    secret = rk.secret_columns
    if not secret:
        get = values.get
        return tuple([
            value if value.__class__ in _PASSTHROUGH else _canon(value)
            for value in [get(c) for c in managed_columns(rk)]
        ])
    return tuple(
        [_canon(_digest_secret(values.get(c), box) if c in secret else values.get(c)) for c in managed_columns(rk)]
    )


def canonical_column(rk: RowKind, column: str, value: Any, box: SecretBox) -> Any:
    return _canon(_digest_secret(value, box) if column in rk.secret_columns else value)


def _digest_secret(value: Any, box: SecretBox) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: box.digest(v) if v is not None else None for k, v in sorted(value.items())}
    return box.digest(value)


def fingerprint(canonical_form: tuple) -> str:
    return hashlib.sha256(repr(canonical_form).encode()).hexdigest()


# --- desired state ----------------------------------------------------------------------------------


@dataclass
class SecretProblem:
    kind: str
    name: str
    field: str
    variable: str


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
    if isinstance(value, _PLAIN):
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


def config_rows(config: ConfigSet) -> dict[str, dict[str, Row]]:
    """Flatten validated objects (and nested children) into rows, secrets still unresolved.

    Computed once per ConfigSet: validation (column limits) and planning both read it.
    """
    cached = getattr(config, "_rows", None)
    if cached is not None:
        return cached
    rows: dict[str, dict[str, Row]] = defaultdict(dict)
    for kind, objects in config.objects.items():
        ck = CONFIG_KINDS[kind]
        if ck.row_kind is None:
            continue
        rk = ROW_KINDS[ck.row_kind]
        skip = frozenset(ck.child_fields) | frozenset(ck.secrets)
        for name, obj in objects.items():
            values = {ck.column_for(f): v for f, v in _dump_fields(obj.spec, skip).items()}
            values[ck.key_column] = name
            secret_refs = {}
            for spec_field, column in ck.secrets.items():
                secret_refs[column] = _secret_ref(getattr(obj.spec, spec_field))
                values[column] = None
            row = Row(rk.name, natural_key(rk, values), values, secret_refs, obj.prevent_destroy)
            rows[rk.name][row.key] = row
            _flatten_children(obj, ck.children, obj.spec, [row.key], rows)

    for kind, produce in CATALOG_ROWS.items():
        rk = ROW_KINDS[kind]
        for _key, values in produce():
            row = Row(kind, natural_key(rk, values), values)
            rows[kind][row.key] = row
    config._rows = dict(rows)
    return config._rows


def build_desired(config: ConfigSet, environ: dict[str, str] | None = None) -> DesiredState:
    """The rows config asks for, with secrets resolved from `environ` (missing ones reported)."""
    environ = os.environ if environ is None else environ
    missing: list[SecretProblem] = []
    rows = dict(config_rows(config))
    for kind in list(rows):
        with_secrets = [r for r in rows[kind].values() if r.secret_refs]
        if not with_secrets:
            continue
        rows[kind] = dict(rows[kind])
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
                missing.append(SecretProblem(row.kind, row.key, f"{_secret_field(row.kind, column)}.{sub}", var))
        return resolved
    if ref in environ:
        return environ[ref]
    missing.append(SecretProblem(row.kind, row.key, _secret_field(row.kind, column), ref))
    return None


_SCALAR_TYPES = frozenset({str, int, bool, float, Decimal, type(None)})


def _flatten_children(obj, children: tuple[Child, ...], spec: BaseModel, ancestors: list[str], rows) -> None:
    # The hot loop of large taxonomies (one pass per seed keyword): fields are read from the
    # model's __dict__ and scalars are taken as they are.
    for child in children:
        rk = ROW_KINDS[child.row_kind]
        kind_rows = rows[rk.name]
        skip = frozenset({c.field for c in child.children} | {child.key_field})
        ancestor_columns = [(column, ancestors[-1 - depth]) for column, depth in child.ancestor_columns.items()]
        pairs = None
        for item in getattr(spec, child.field):
            if child.key_field is None:
                values = {child.key_column: item}
            else:
                if pairs is None:
                    pairs = _child_columns(child, type(item), skip)
                fields = item.__dict__
                values = {
                    column: value if value.__class__ in _SCALAR_TYPES else _plain(value)
                    for f, column in pairs
                    for value in (fields[f],)
                }
                values[child.key_column] = fields[child.key_field]
            for column, ancestor in ancestor_columns:
                values[column] = ancestor
            key = natural_key(rk, values)
            kind_rows[key] = Row(rk.name, key, values)
            if child.children:
                _flatten_children(obj, child.children, item, [*ancestors, key], rows)


def _secret_field(row_kind: str, column: str) -> str:
    ck = config_kind_for_row_kind(row_kind)
    return next((f for f, c in ck.secrets.items() if c == column), column) if ck else column


@cache
def _child_columns(child: Child, item_class: type[BaseModel], skip: frozenset[str]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (f, child.columns.get(f) or COMMON_COLUMN_NAMES.get(f, f)) for f in _field_names(item_class, skip)
    )


# --- live state ---------------------------------------------------------------------------------


class ManagedRecord(Protocol):
    """A row of cplane_managed_objects (the SQLAlchemy row itself, to avoid copying 100,000 of them)."""

    id: int
    row_id: int
    fingerprint: str
    prevent_destroy: bool


@dataclass
class LiveState:
    rows: dict[str, dict[str, Row]]
    managed: dict[str, dict[str, ManagedRecord]]
    ids: dict[str, dict[str, int]]


def read_live(conn: Connection, box: SecretBox) -> LiveState:
    """Every system row of every row kind, one SELECT per table, references mapped to natural keys."""
    from control_plane.db.models import ManagedObject

    rows: dict[str, dict[str, Row]] = {}
    ids: dict[str, dict[str, int]] = {}
    key_by_id: dict[str, dict[int, str]] = {}
    for kind in apply_order():
        rk = ROW_KINDS[kind]
        columns = managed_columns(rk)
        table = rk.table
        selected = [table.c.id, *(table.c[c] for c in columns)]
        if rk.version_column:
            selected.append(table.c[rk.version_column])
        stmt = select(*selected)
        if rk.system_rows:
            stmt = stmt.where(text(rk.system_rows))
        kind_rows: dict[str, Row] = {}
        kind_ids: dict[str, int] = {}
        n = len(columns)
        ref_positions = [(columns.index(c), key_by_id[t]) for c, t in rk.refs.items()]
        secret_positions = [columns.index(c) for c in rk.secret_columns]
        key_positions = [columns.index(c) for c in rk.key_columns]
        versioned = rk.version_column is not None
        for record in conn.execute(stmt).all():
            vals = list(record[1 : 1 + n])
            for i, names in ref_positions:
                if vals[i] is not None:
                    vals[i] = names.get(vals[i], f"#{vals[i]}")
            for i in secret_positions:
                vals[i] = _decrypt(vals[i], box)
            key = str(vals[key_positions[0]]) if len(key_positions) == 1 else "/".join(
                [str(vals[i]) for i in key_positions]
            )
            kind_rows[key] = Row(kind, key, dict(zip(columns, vals, strict=True)), None, False, record[0],
                                 record[-1] if versioned else None)
            kind_ids[key] = record[0]
        rows[kind] = kind_rows
        ids[kind] = kind_ids
        key_by_id[kind] = {v: k for k, v in kind_ids.items()}

    managed: dict[str, dict[str, ManagedRecord]] = defaultdict(dict)
    mo = ManagedObject.__table__
    for r in conn.execute(select(mo.c.id, mo.c.kind, mo.c.name, mo.c.row_id, mo.c.fingerprint, mo.c.prevent_destroy)).all():
        managed[r.kind][r.name] = r
    return LiveState(rows, dict(managed), ids)


def _decrypt(stored: Any, box: SecretBox) -> Any:
    if stored is None:
        return None
    if isinstance(stored, dict):
        return {k: box.decrypt(v) if v else None for k, v in stored.items()}
    return box.decrypt(stored)


def encrypt(value: Any, box: SecretBox) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: box.encrypt(v) for k, v in value.items() if v is not None}
    return box.encrypt(value)
