"""JSON Schemas (draft 2020-12) of every config kind, generated from the spec models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from control_plane.kinds.registry import CONFIG_KINDS
from control_plane.kinds.specs import API_VERSION, NAME_PATTERN

DRAFT = "https://json-schema.org/draft/2020-12/schema"


class StrictJsonSchema(GenerateJsonSchema):
    """The JSON Schema says what the strict spec models accept: a decimal is a JSON number (pydantic
    also offers a string, which validate refuses)."""

    def decimal_schema(self, schema: core_schema.DecimalSchema) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "number"}
        for key, name in (("ge", "minimum"), ("le", "maximum"), ("gt", "exclusiveMinimum"), ("lt", "exclusiveMaximum")):
            if schema.get(key) is not None:
                value = schema[key]
                out[name] = int(value) if value == int(value) else float(value)
        return out


# A document's (or an overlay patch's) schedule: merge patches over spec from their time on.
SCHEDULE_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["at", "patch"],
        "properties": {"at": {"type": "string", "format": "date-time"}, "patch": {"type": "object"}},
    },
}


def kind_schema(kind: str) -> dict[str, Any]:
    ck = CONFIG_KINDS[kind]
    spec = ck.spec.model_json_schema(by_alias=True, ref_template="#/$defs/{model}", schema_generator=StrictJsonSchema)
    defs = spec.pop("$defs", {})
    return {
        "$schema": DRAFT,
        "$id": f"https://cplane.dev/schemas/{kind}.json",
        "title": kind,
        "description": ck.summary,
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 100},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                    "effectiveFrom": {"type": "string", "format": "date-time"},
                    "effectiveUntil": {"type": "string", "format": "date-time"},
                },
            },
            "spec": spec,
            "schedule": SCHEDULE_SCHEMA,
        },
        "$defs": defs,
    }


def overlay_schema() -> dict[str, Any]:
    return {
        "$schema": DRAFT,
        "$id": "https://cplane.dev/schemas/Overlay.json",
        "title": "Overlay",
        "description": "Environment overlay: JSON merge patches applied to objects by kind and name.",
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"const": "Overlay"},
            "metadata": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "patches": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["kind", "name"],
                            "properties": {
                                "kind": {"enum": sorted(k for k in CONFIG_KINDS)},
                                "name": {"type": "string"},
                                "patch": {"type": "object"},
                                "schedule": SCHEDULE_SCHEMA,
                            },
                        },
                    }
                },
            },
        },
    }


def all_schemas() -> dict[str, dict[str, Any]]:
    schemas = {kind: kind_schema(kind) for kind in CONFIG_KINDS}
    schemas["Overlay"] = overlay_schema()
    return schemas


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export_schemas(out: Path, check: bool = False) -> list[str]:
    """Write (or with check, compare) schemas/<Kind>.json; returns the names that differ."""
    out.mkdir(parents=True, exist_ok=True) if not check else None
    stale = []
    for kind, schema in all_schemas().items():
        path = out / f"{kind}.json"
        content = render(schema)
        if not path.exists() or path.read_text() != content:
            stale.append(path.name)
            if not check:
                path.write_text(content)
    return stale
