"""What CEL sees of an object: the document as in YAML (camelCase fields, every field of the
schema with its default), decimals as doubles.

Only the fields an expression can name are handed over: CEL selects a field by a name written in
the expression (`o.spec.price`, `m["price"]`, `has(o.spec.price)`), so fields of schema models whose
name appears nowhere in the expression cannot be read and are left out. That is what keeps a
policy over the 100,000-row taxonomy cheap (converting values into CEL is the cost, not
evaluating). Free-form maps (labels, annotations, settings) are always given whole.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from control_plane.kinds.specs import API_VERSION


def plain(value: Any, names: frozenset[str] | None = None) -> Any:
    """`value` in CEL's terms; schema models keep only the fields in `names` (all when None)."""
    if isinstance(value, BaseModel):
        out = {}
        for field_name, info in type(value).model_fields.items():
            alias = info.alias or field_name
            if names is not None and alias not in names:
                continue
            out[alias] = plain(getattr(value, field_name), names)
        return out
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list | tuple):
        return [plain(v, names) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v, None) for k, v in value.items()}
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def object_view(kind: str, name: str, labels: dict, annotations: dict, spec: Any,
                names: frozenset[str] | None) -> dict[str, Any]:
    """A document for CEL: apiVersion, kind, metadata and spec (a model, or a dict already in YAML form)."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "labels": dict(labels or {}), "annotations": dict(annotations or {})},
        "spec": plain(spec, names),
    }
