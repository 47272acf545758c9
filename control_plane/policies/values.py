"""What CEL sees of an object: the document as in YAML (camelCase fields, every field of the
schema with its default), decimals as doubles.

Only the fields an expression can name are handed over: CEL selects a field by a name written in
the expression (`o.spec.price`, `m["price"]`, `has(o.spec.price)`), so fields of schema models whose
name appears nowhere in the expression cannot be read and are left out. That is what keeps a
policy over the 100,000-row taxonomy cheap (converting values into CEL is the cost, not
evaluating). List items of which no field is named are null placeholders (counted, never read).
Free-form maps (labels, annotations, settings) are always given whole.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from pydantic import BaseModel

from control_plane.kinds.specs import API_VERSION


def plain(value: Any, names: frozenset[str] | None = None) -> Any:
    """`value` in CEL's terms; schema models keep only the fields in `names` (all when None)."""
    if isinstance(value, BaseModel):
        return {alias: plain(getattr(value, field_name), names) for field_name, alias in _selected(type(value), names)}
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list | tuple):
        if value and isinstance(value[0], BaseModel) and names is not None and not _selected(type(value[0]), names):
            # Items of which the expression names no field can only be counted: placeholders
            # (null) keep the list's size without converting 100,000 empty maps.
            return [None] * len(value)
        return [plain(v, names) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v, None) for k, v in value.items()}
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


@cache
def _selected(model: type[BaseModel], names: frozenset[str] | None) -> tuple[tuple[str, str], ...]:
    """(field name, YAML name) of the model's fields an expression naming `names` can read."""
    return tuple((field_name, info.alias or field_name) for field_name, info in model.model_fields.items()
                 if names is None or (info.alias or field_name) in names)


def object_view(kind: str, name: str, labels: dict, annotations: dict, spec: Any,
                names: frozenset[str] | None) -> dict[str, Any]:
    """A document for CEL: apiVersion, kind, metadata and spec (a model, or a dict already in YAML form)."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "labels": dict(labels or {}), "annotations": dict(annotations or {})},
        "spec": plain(spec, names),
    }
