"""Typed values: a value whose type is a JSON Schema fragment declared next to it (SystemSetting).

`x-cplane-ref: KIND` (or a catalog name such as `module`) in a fragment says the value names an
object of that kind; validate resolves it like every other reference. jsonschema is imported here
only, and this module only when a typed value is checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextvars import ContextVar
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import SchemaError

from control_plane.kinds.registry import CATALOGS, CONFIG_KINDS

REF = "x-cplane-ref"


def _refs_in(schema: Any, at: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == REF:
                yield (*at, key), value
            else:
                yield from _refs_in(value, (*at, key))
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            yield from _refs_in(value, (*at, i))


# The names a reference is resolved against, for the value being checked (value_problems sets it):
# the validator class is built once, not once per value (validators.extend makes a new class).
_NAMES: ContextVar[Callable[[str], list[str]]] = ContextVar("cplane_typed_names")


def _ref_keyword(validator, target, instance, schema):
    from control_plane.config.messages import suggest

    if not isinstance(instance, str):
        if not validator.is_type(instance, "string"):
            yield ValidationError(f"expected a {target} name, got a {type(instance).__name__}")
        return
    known = CATALOGS[target] if target in CATALOGS else _NAMES.get()(target)
    if instance not in known:
        what = f"unknown {target} {instance!r}" if target in CATALOGS else f"{target} {instance!r} does not exist"
        yield ValidationError(what + suggest(instance, known))


@cache
def _ref_validator() -> type:
    return validators.extend(Draft202012Validator, {REF: _ref_keyword})


def _is_name(validator, target, instance, schema):
    if not isinstance(instance, str):
        yield ValidationError(f"expected a {target} name")


@cache
def _plain_validator() -> type:
    # Without the names, a reference is only checked to be a string (the runtime's view).
    return validators.extend(Draft202012Validator, {REF: _is_name})


def value_problems(schema: dict[str, Any], value: Any,
                   names: Callable[[str], list[str]]) -> Iterator[tuple[str, tuple, str]]:
    """("schema", path in the fragment, message) for a fragment that is not a valid schema, else
    ("value", path in the value, message) for each way the value fails it; `names(kind)` lists
    the names of a kind."""
    from control_plane.config.messages import field_path, jsonschema_message, suggest

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        yield "schema", tuple(exc.absolute_path), f"not a valid JSON Schema: {exc.message[:200]}"
        return
    bad_refs = False
    for at, target in _refs_in(schema):
        if not isinstance(target, str) or (target not in CONFIG_KINDS and target not in CATALOGS):
            known = [*CONFIG_KINDS, *CATALOGS]
            hint = suggest(target, known) or f"; known: {', '.join(known)}"
            yield "schema", at, f"{REF} names no kind or catalog: {target!r}{hint}"
            bad_refs = True
    if bad_refs:
        return
    token = _NAMES.set(names)
    try:
        errors = sorted(_ref_validator()(schema).iter_errors(value),
                        key=lambda e: (list(map(str, e.absolute_path)), e.message))
    finally:
        _NAMES.reset(token)
    for error in errors:
        at = tuple(error.absolute_path)
        yield "value", at, jsonschema_message(field_path(("value", *at)), error).split(": ", 1)[1]


def matches(schema: Any, value: Any) -> bool:
    """Whether `value` is of its declared type (references are not resolved)."""
    if not isinstance(schema, dict):
        return False
    try:
        return _plain_validator()(schema).is_valid(value)
    except Exception:  # an invalid fragment in the database: the value cannot be trusted
        return False
