"""Row conditions as data: `{column, op, value}` leaves combined with `and`, `or` and `not`.

The cleanup manifest (`systemRows`, retention rules' `where`, profile filters) and the registry
(which rows of a mixed table are system rows) state conditions in this form. A condition is checked
against the real columns and their types (`check`) and compiled to a SQLAlchemy expression whose
values are bound parameters (`compile_condition`): no condition text ever reaches SQL. Two
conditions are compared by their canonical form (`canonical`), not by how they are written.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    model_validator,
)
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement

# SQLAlchemy is imported by the functions that compile or type-check against columns, not here:
# the registry declares conditions at import time, and `cplane validate` must not pay for it.

OPERATORS = ("isNull", "notNull", "eq", "ne", "in", "lt", "le", "gt", "ge", "olderThan")
Operator = Literal["isNull", "notNull", "eq", "ne", "in", "lt", "le", "gt", "ge", "olderThan"]
DURATION = re.compile(r"^(\d{1,6})([dhms])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
Scalar = StrictStr | StrictInt | StrictFloat | StrictBool


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Comparison(_Node):
    """`column op value`. isNull/notNull take no value; `in` a non-empty list; olderThan a duration
    (`90d`, `12h`, `30m`, `0s`): the column is strictly before now minus the duration."""

    column: str = Field(pattern=r"^[a-z_][a-z0-9_]*$", max_length=63)
    op: Operator
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _value_fits_operator(self):
        if self.op in ("isNull", "notNull"):
            if self.value is not None:
                raise PydanticCustomError("condition", "operator {op} takes no value", {"op": self.op})
        elif self.op == "in":
            if not isinstance(self.value, list) or not self.value:
                raise PydanticCustomError("condition", "operator in takes a non-empty list of values")
        elif self.op == "olderThan":
            if not isinstance(self.value, str) or not DURATION.match(self.value):
                raise PydanticCustomError(
                    "condition", "operator olderThan takes a duration such as 90d, 12h, 30m or 0s")
        elif self.value is None or isinstance(self.value, list):
            raise PydanticCustomError("condition", "operator {op} takes one value", {"op": self.op})
        return self


class AllOf(_Node):
    all_of: list[Condition] = Field(alias="and", min_length=1)


class AnyOf(_Node):
    any_of: list[Condition] = Field(alias="or", min_length=1)


class Negation(_Node):
    negated: Condition = Field(alias="not")


def _branch(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return {Comparison: "cmp", AllOf: "and", AnyOf: "or", Negation: "not"}.get(type(value))
    if isinstance(value, dict):
        for key in ("and", "or", "not"):
            if key in value:
                return key
        return "cmp"
    return None  # not a mapping: the error says what a condition is


Condition = Annotated[
    Union[  # noqa: UP007 - a tagged union needs the Union form
        Annotated[Comparison, Tag("cmp")],
        Annotated[AllOf, Tag("and")],
        Annotated[AnyOf, Tag("or")],
        Annotated[Negation, Tag("not")],
    ],
    Discriminator(
        _branch,
        custom_error_type="condition",
        custom_error_message="a condition is a mapping: {column, op, value}, {and: [...]}, {or: [...]} or {not: ...}",
    ),
]

for _model in (AllOf, AnyOf, Negation):
    _model.model_rebuild()

_ADAPTER: TypeAdapter = TypeAdapter(Condition)


def parse(data: Any) -> Comparison | AllOf | AnyOf | Negation:
    """A condition from its document form (raises pydantic.ValidationError)."""
    return _ADAPTER.validate_python(data)


def is_condition(value: Any) -> bool:
    return isinstance(value, Comparison | AllOf | AnyOf | Negation)


# --- canonical form ------------------------------------------------------------------------------


def canonical(cond) -> Any:
    """A hashable normal form: nested and/or flattened, their terms sorted and deduplicated,
    double negation removed, `not isNull` = `notNull` and `not eq` = `ne`."""
    if isinstance(cond, Negation):
        inner = cond.negated
        if isinstance(inner, Negation):
            return canonical(inner.negated)
        if isinstance(inner, Comparison) and inner.op in _NEGATED:
            return canonical(Comparison(column=inner.column, op=_NEGATED[inner.op], value=inner.value))
        return ("not", canonical(inner))
    if isinstance(cond, AllOf | AnyOf):
        tag = "and" if isinstance(cond, AllOf) else "or"
        terms: set = set()
        for term in cond.all_of if isinstance(cond, AllOf) else cond.any_of:
            c = canonical(term)
            terms.update(c[1] if isinstance(c, tuple) and c[0] == tag else [c])
        if len(terms) == 1:
            return next(iter(terms))
        return (tag, frozenset(terms))
    value = cond.value
    if isinstance(value, list):
        value = frozenset((type(v).__name__, v) for v in value)
    elif value is not None:
        value = (type(value).__name__, value)
    return ("cmp", cond.column, cond.op, value)


_NEGATED = {"isNull": "notNull", "notNull": "isNull", "eq": "ne", "ne": "eq"}


def columns_of(cond) -> set[str]:
    if isinstance(cond, Comparison):
        return {cond.column}
    if isinstance(cond, Negation):
        return columns_of(cond.negated)
    terms = cond.all_of if isinstance(cond, AllOf) else cond.any_of
    return set().union(*(columns_of(t) for t in terms))


def describe(cond) -> str:
    """For messages only (never SQL): `account_id isNull`, `(a eq 1 and b notNull)`."""
    if isinstance(cond, Comparison):
        return f"{cond.column} {cond.op}" + ("" if cond.value is None else f" {cond.value!r}")
    if isinstance(cond, Negation):
        return f"not ({describe(cond.negated)})"
    tag, terms = ("and", cond.all_of) if isinstance(cond, AllOf) else ("or", cond.any_of)
    return "(" + f" {tag} ".join(describe(t) for t in terms) + ")"


# --- checking against the real columns -----------------------------------------------------------

Path = tuple[str | int, ...]


def check(cond, columns: dict[str, Any], at: Path = ()) -> list[tuple[Path, str]]:
    """Problems of `cond` against `columns` (name -> SQLAlchemy type): (path inside the condition,
    message). An unknown column, a value whose type does not fit the column, olderThan on a column
    that is not a date or timestamp."""
    if isinstance(cond, Negation):
        return check(cond.negated, columns, (*at, "not"))
    if isinstance(cond, AllOf | AnyOf):
        tag, terms = ("and", cond.all_of) if isinstance(cond, AllOf) else ("or", cond.any_of)
        return [p for i, t in enumerate(terms) for p in check(t, columns, (*at, tag, i))]
    col_type = columns.get(cond.column)
    if col_type is None:
        known = ", ".join(sorted(columns))
        return [((*at, "column"), f"column {cond.column} does not exist (columns: {known})")]
    if cond.op in ("isNull", "notNull"):
        return []
    kind = type_kind(col_type)
    if cond.op == "olderThan":
        if kind not in ("datetime", "date"):
            return [((*at, "op"), f"olderThan needs a date or timestamp column; {cond.column} is {col_type}")]
        return []
    values = cond.value if isinstance(cond.value, list) else [cond.value]
    for i, v in enumerate(values):
        error = _value_error(kind, v)
        if error:
            where = (*at, "value", i) if isinstance(cond.value, list) else (*at, "value")
            return [(where, f"value {v!r} does not fit column {cond.column} ({kind}): {error}")]
    if cond.op in ("lt", "le", "gt", "ge") and kind in ("bool", "uuid"):
        return [((*at, "op"), f"operator {cond.op} does not apply to column {cond.column} ({col_type})")]
    return []


def type_kind(col_type: Any) -> str:
    from sqlalchemy import Boolean, Date, DateTime, Integer, Numeric, String, Uuid

    if isinstance(col_type, Boolean):
        return "bool"
    if isinstance(col_type, DateTime):
        return "datetime"
    if isinstance(col_type, Date):
        return "date"
    if isinstance(col_type, Uuid):
        return "uuid"
    if isinstance(col_type, Integer):
        return "int"
    if isinstance(col_type, Numeric):
        return "number"
    if isinstance(col_type, String):
        return "string"
    return "other"


def _value_error(kind: str, v: Any) -> str | None:
    if kind == "bool":
        return None if isinstance(v, bool) else "expected true or false"
    if isinstance(v, bool):
        return f"expected a {kind} value, not a boolean"
    if kind == "int":
        return None if isinstance(v, int) else "expected an integer"
    if kind == "number":
        return None if isinstance(v, int | float) else "expected a number"
    if kind == "string":
        return None if isinstance(v, str) else "expected a string"
    if kind == "uuid":
        try:
            uuid.UUID(v) if isinstance(v, str) else None
        except ValueError:
            return "expected a UUID"
        return None if isinstance(v, str) else "expected a UUID string"
    if kind in ("datetime", "date"):
        if not isinstance(v, str):
            return "expected an RFC 3339 timestamp string"
        try:
            _timestamp(v)
        except ValueError:
            return "expected an RFC 3339 timestamp string"
        return None
    return f"columns of type {kind} cannot be compared"


def _timestamp(v: str) -> datetime:
    parsed = datetime.fromisoformat(v.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def duration(value: str) -> timedelta:
    m = DURATION.match(value)
    if not m:
        raise ValueError(f"not a duration: {value!r}")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


# --- compiling -----------------------------------------------------------------------------------


def compile_condition(cond, columns, now: datetime | None = None) -> ColumnElement[bool]:
    """`cond` as a SQLAlchemy expression over `columns` (a Table's or TableClause's `.c`), every
    value a bound parameter. Raises TypeError for anything that is not a structured condition."""
    from sqlalchemy import Date, DateTime, and_, bindparam, not_, or_

    if isinstance(cond, Negation):
        return not_(compile_condition(cond.negated, columns, now))
    if isinstance(cond, AllOf):
        return and_(*(compile_condition(t, columns, now) for t in cond.all_of))
    if isinstance(cond, AnyOf):
        return or_(*(compile_condition(t, columns, now) for t in cond.any_of))
    if not isinstance(cond, Comparison):
        raise TypeError(f"not a structured condition: {type(cond).__name__}")
    col = columns[cond.column]
    op = cond.op
    if op == "isNull":
        return col.is_(None)
    if op == "notNull":
        return col.is_not(None)
    if op == "olderThan":
        cutoff = (now or datetime.now(UTC)) - duration(cond.value)
        return col < bindparam(None, cutoff, type_=DateTime(timezone=True) if type_kind(col.type) == "datetime"
                               else Date())
    kind = type_kind(col.type)
    if op == "in":
        return col.in_(bindparam(None, [_bind_value(kind, v) for v in cond.value], type_=col.type, expanding=True))
    value = bindparam(None, _bind_value(kind, cond.value), type_=_bind_type(kind, col.type))
    return {"eq": col.__eq__, "ne": col.__ne__, "lt": col.__lt__, "le": col.__le__, "gt": col.__gt__,
            "ge": col.__ge__}[op](value)


def _bind_type(kind: str, col_type: Any) -> Any:
    from sqlalchemy import DateTime

    return DateTime(timezone=True) if kind == "datetime" else col_type


def _bind_value(kind: str, v: Any) -> Any:
    if kind == "uuid":
        return uuid.UUID(v)
    if kind == "datetime":
        return _timestamp(v)
    if kind == "date":
        return date.fromisoformat(v[:10])
    if kind == "number" and isinstance(v, float):
        return Decimal(str(v))
    return v
