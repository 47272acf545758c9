"""Cross-object checks of the Prompt kind: variants, their selectors and their variables.

A prompt targets an operation (`promptType`, default: its name) and optionally a content type and
an industry. Every operation of the catalog has a base prompt (no selectors); no two prompts share
the same selectors; every prompt of an operation uses at least the variables the product always
supplies to it (catalog.PROMPT_REQUIRED_VARIABLES).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from control_plane.config.loader import locate
from control_plane.kinds.catalog import PROMPT_REQUIRED_VARIABLES, PROMPT_TYPES

if TYPE_CHECKING:
    from control_plane.config.model import ConfigObject, ConfigSet

KIND = "Prompt"


def selectors(obj: ConfigObject) -> tuple[str, str | None, str | None]:
    spec = obj.spec
    return (spec.prompt_type or obj.name, spec.content_type, spec.industry)


def describe(sel: tuple[str, str | None, str | None]) -> str:
    prompt_type, content_type, industry = sel
    return f"promptType {prompt_type!r}, contentType {content_type or '(any)'}, industry {industry or '(any)'}"


def _position(obj: ConfigObject) -> tuple[str, int]:
    """File and first line of the object's document: "first" and "second" follow the files."""
    return (str(obj.doc.file), obj.doc.line)


def _selector_path(obj: ConfigObject) -> tuple:
    raw = obj.raw_spec if isinstance(obj.raw_spec, dict) else {}
    for key in ("industry", "contentType", "promptType"):
        if key in raw:
            return ("spec", key)
    return ("metadata", "name")


def check_prompts(config: ConfigSet, report) -> None:
    prompts = config.of_kind(KIND)
    first: dict[tuple, ConfigObject] = {}
    ordered = sorted(prompts.values(), key=_position)
    for obj in ordered:
        if obj.spec.prompt_type is None:  # the base prompt of a type may leave promptType to its name
            obj.spec.prompt_type = obj.name
        sel = selectors(obj)
        earlier = first.get(sel)
        if earlier is not None:
            try:
                line, _col = locate(earlier.doc, ("metadata", "name"))
            except Exception:
                line = earlier.doc.line
            report.at(obj.doc, _selector_path(obj), KIND, obj.name,
                      f"same selectors as Prompt {earlier.name!r} ({report.rel(earlier.doc.file)}:{line}): "
                      f"{describe(sel)}; give one of them another contentType or industry")
        else:
            first[sel] = obj
        required = PROMPT_REQUIRED_VARIABLES.get(sel[0], ())
        missing = [v for v in required if v not in obj.spec.variables]
        if missing:
            report.at(obj.doc, ("spec", "variables"), KIND, obj.name,
                      f"variables must include {', '.join(missing)} (every {sel[0]} prompt gets them)")
    base = {sel[0] for sel in first if sel[1] is None and sel[2] is None}
    missing_types = [t for t in PROMPT_TYPES if t not in base]
    if missing_types:
        message = (f"missing base Prompt (no contentType or industry) for: {', '.join(missing_types)} "
                   "(every prompt type needs one)")
        anchor = ordered[0] if ordered else None
        if anchor is not None:
            report.at(anchor.doc, ("metadata", "name"), KIND, "*", message)
        else:
            report.raw(config.root, 1, 1, KIND, "*", message)
