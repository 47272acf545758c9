"""Validation messages that name things: the field path as written in YAML, what was expected, the
value found (shortened, never a secret) and, for a name that is not known, the closest known one.

    spec.maxSites: expected an integer, got 'ten'
    unknown field 'priceMontly' (did you mean 'priceMonthly'?)
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

VALUE_SHOWN = 40  # characters of a value a message echoes

# pydantic error types whose message is "what was expected" (the value is appended).
_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "decimal_type": "a number",
    "decimal_parsing": "a number",
    "string_type": "a string",
    "bool_type": "a boolean (true or false)",
    "bool_parsing": "a boolean (true or false)",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "none_required": "null",
}
# YAML 1.1 booleans that YAML 1.2 (and so cplane) reads as strings.
_YAML11_BOOLEANS = frozenset("yes no on off y n true false".split())
_NUMBER = re.compile(r"^[-+]?(\d[\d_]*)?(\.\d+)?([eE][-+]?\d+)?$")
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


def suggest(word: Any, names: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a known name is close to `word`, else ''."""
    if not isinstance(word, str):
        return ""
    import difflib

    close = difflib.get_close_matches(word, [n for n in names if isinstance(n, str)], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close and close[0] != word else ""


def field_path(path: Iterable[Any]) -> str:
    """('spec', 'sectors', 2, 'name') -> 'spec.sectors[2].name'."""
    out = ""
    for step in path:
        if isinstance(step, int) and not isinstance(step, bool):
            out += f"[{step}]"
        else:
            out += f".{step}" if out else str(step)
    return out


def show(value: Any) -> str:
    """The value as a message shows it: YAML-like, shortened."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        text = value if len(value) <= VALUE_SHOWN else value[:VALUE_SHOWN] + "..."
        return repr(text)
    text = str(value)
    return text if len(text) <= VALUE_SHOWN else text[:VALUE_SHOWN] + "..."


def _hint(expected: str, value: Any) -> str:
    if expected.startswith("a boolean") and isinstance(value, str) and value.lower() in _YAML11_BOOLEANS:
        return " (YAML 1.2: write true or false, unquoted)"
    if expected in ("an integer", "a number") and isinstance(value, str) and value.strip() and _NUMBER.match(value.strip()):
        return " (a quoted number is a string)"
    return ""


def expected_got(path: str, expected: str, value: Any, secret: bool = False) -> str:
    got = "(value not shown)" if secret else show(value)
    return f"{path}: expected {expected}, got {got}{'' if secret else _hint(expected, value)}"


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _field_names(model: type[BaseModel]) -> dict[str, Any]:
    return {info.alias or name: info for name, info in model.model_fields.items()}


def model_at(model: type[BaseModel] | None, loc: Iterable[Any]) -> type[BaseModel] | None:
    """The spec model that validates the mapping at `loc` (aliases, list indexes, dict keys)."""
    for step in loc:
        if model is None:
            return None
        if isinstance(step, int):
            continue
        info = _field_names(model).get(step)
        if info is None:  # a key of a dict of models: the model stays
            continue
        model = _inner_model(info.annotation)
    return model


def pydantic_message(err: dict, spec_model: type[BaseModel], secret: bool) -> str:
    """One pydantic error of a spec (loc as written, starting inside spec) as a message."""
    loc = tuple(err["loc"])
    path = field_path(("spec", *loc))
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = model_at(spec_model, loc[:-1])
        hint = suggest(loc[-1], _field_names(parent)) if parent is not None else ""
        where = f"{field_path(('spec', *loc[:-1]))}: " if len(loc) > 1 else ""
        return f"{where}unknown field {loc[-1]!r}{hint}"
    if kind == "missing":
        where = f"{field_path(('spec', *loc[:-1]))}: " if len(loc) > 1 else ""
        return f"{where}missing required field {loc[-1]!r}"
    value = err.get("input")
    if kind == "is_instance_of" and (err.get("ctx") or {}).get("class") == "Decimal":
        return expected_got(path, "a number", value, secret)
    if kind in _EXPECTED:
        return expected_got(path, _EXPECTED[kind], value, secret)
    msg = err["msg"]
    if kind == "literal_error":
        options = _QUOTED.findall(str((err.get("ctx") or {}).get("expected", "")))
        hint = "" if secret else suggest(value, options)
        return expected_got(path, msg.removeprefix("Input should be "), value, secret) + hint
    if msg.startswith("Input should be "):
        return expected_got(path, msg.removeprefix("Input should be "), value, secret)
    if kind.startswith(("string_", "too_", "decimal_", "greater_", "less_", "multiple_of")):
        return f"{path}: {msg[:1].lower()}{msg[1:]}, got {'(value not shown)' if secret else show(value)}"
    return f"{path}: {msg}"  # the check's own words (custom errors say what they found)


def jsonschema_message(path: str, error: Any) -> str:
    """One jsonschema ValidationError of a typed value as a message."""
    keyword, value, target = error.validator, error.instance, error.validator_value
    if keyword == "type":
        names = target if isinstance(target, list) else [target]
        article = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "a boolean (true or false)",
                   "object": "a mapping", "array": "a list", "null": "null"}
        return expected_got(path, " or ".join(article.get(n, n) for n in names), value)
    if keyword == "enum":
        options = ", ".join(show(v) for v in target)
        return expected_got(path, f"one of {options}", value) + suggest(value, [v for v in target if isinstance(v, str)])
    if keyword == "const":
        return expected_got(path, show(target), value)
    bounds = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than",
              "exclusiveMaximum": "less than", "minLength": "at least {} characters", "maxLength": "at most {} characters",
              "minItems": "at least {} items", "maxItems": "at most {} items"}
    if keyword in bounds:
        words = bounds[keyword]
        expected = words.format(target) if "{}" in words else f"{words} {target}"
        return expected_got(path, expected, value)
    if keyword == "x-cplane-ref":
        return f"{path}: {error.message}"
    if keyword == "additionalProperties" and isinstance(value, dict):
        return f"{path}: {error.message}"
    return f"{path}: {error.message[:200]}"
