"""JSON Schemas (draft 2020-12) of every config kind, generated from the spec models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from control_plane.kinds.registry import CONFIG_KINDS
from control_plane.kinds.specs import API_VERSION, Metadata, OverlaySpec, ScheduleEntry

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


def model_schema(model) -> tuple[dict[str, Any], dict[str, Any]]:
    """(schema, $defs) of a spec model, references pointing at the document's $defs."""
    schema = model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}", schema_generator=StrictJsonSchema)
    return schema, schema.pop("$defs", {})


def _metadata_schema() -> dict[str, Any]:
    return model_schema(Metadata)[0]


def _schedule_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    entry, defs = model_schema(ScheduleEntry)
    return {"type": "array", "items": {"$ref": "#/$defs/ScheduleEntry"}}, {**defs, "ScheduleEntry": entry}


def _document(title: str, description: str, kind: dict[str, Any], spec: dict[str, Any],
              defs: dict[str, Any], *, schedule: bool) -> dict[str, Any]:
    """The envelope every document shares, from the models: apiVersion, kind, metadata
    (specs.Metadata), spec and, for documents that may carry one, schedule (specs.ScheduleEntry)."""
    properties: dict[str, Any] = {"apiVersion": {"const": API_VERSION}, "kind": kind,
                                  "metadata": _metadata_schema(), "spec": spec}
    if schedule:
        properties["schedule"], schedule_defs = _schedule_schema()
        defs = {**defs, **schedule_defs}
    return {
        "$schema": DRAFT,
        "$id": f"https://cplane.dev/schemas/{title}.json",
        "title": title,
        "description": description,
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": properties,
        "$defs": defs,
    }


def kind_schema(kind: str) -> dict[str, Any]:
    ck = CONFIG_KINDS[kind]
    spec, defs = model_schema(ck.spec)
    return _document(kind, ck.summary, {"const": kind}, spec, defs, schedule=True)


def overlay_schema() -> dict[str, Any]:
    spec, defs = model_schema(OverlaySpec)
    # A patch targets a config kind: the registry's names (the model says only "a string").
    defs["OverlayPatch"]["properties"]["kind"] = {"enum": sorted(CONFIG_KINDS)}
    defs.update(_schedule_schema()[1])
    return _document("Overlay", "Environment overlay: JSON merge patches applied to objects by kind and name.",
                     {"const": "Overlay"}, spec, defs, schedule=False)


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
