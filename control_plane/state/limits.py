"""Checks of desired rows against their columns, reported as config issues where the object is."""

from __future__ import annotations

from functools import cache
from operator import attrgetter, methodcaller

from control_plane.config.model import ConfigObject, ConfigSet, Issue, issue_at
from control_plane.kinds.registry import ROW_KINDS, RowKind, config_kind_for_row_kind
from control_plane.state.desired import Rows
from control_plane.state.lazyrows import KindRows
from control_plane.state.rows import managed_columns


@cache
def _length_limits(rk: RowKind) -> tuple[tuple[str, int], ...]:
    # References hold a natural key in memory and an id in the database: their length is not the column's.
    return tuple(
        (c, rk.column_lengths[c]) for c in managed_columns(rk)
        if rk.column_lengths[c] and c not in rk.refs
    )


def column_limit_issues(config: ConfigSet, rows: Rows) -> list[Issue]:
    """Text longer than its column would fail at apply time on PostgreSQL; say so now, where it is.

    `rows` are config_rows() of `config` (or of the part of it to check); each issue points at the
    top-level object the row comes from."""
    issues: list[Issue] = []
    for kind, kind_rows in rows.items():
        rk = ROW_KINDS[kind]
        limits = _length_limits(rk)
        if not limits:
            continue
        top = rk
        while top.parent:
            top = ROW_KINDS[top.parent]
        ck = config_kind_for_row_kind(top.name)
        if not _any_too_long(kind_rows, limits):
            continue  # the usual case, decided column by column without a Python loop per row
        for row in kind_rows.values():
            for column, length in limits:
                value = row.values.get(column)
                if isinstance(value, str) and len(value) > length:
                    # A child's natural key starts with its top-level object's name.
                    obj: ConfigObject | None = config.of_kind(ck.kind).get(row.key.split("/")[0]) if ck else None
                    where = f" ({kind} {row.key})" if rk is not top else ""
                    message = f"{column} is {len(value)} characters; at most {length} fit{where}"
                    if obj is not None:
                        issues.append(issue_at(obj.doc, ("metadata", "name"), obj.kind, obj.name, message))
    return issues


def _any_too_long(kind_rows: dict, limits: tuple[tuple[str, int], ...]) -> bool:
    """Whether any row holds text longer than its column: the loop above finds which."""
    if isinstance(kind_rows, KindRows):  # (rows not built yet: their values, column by column)
        for column, length in limits:
            texts = [v for v in kind_rows.column_values(column) if v.__class__ is str or isinstance(v, str)]
            if texts and max(map(len, texts)) > length:
                return True
        return False
    values = list(map(_VALUES, kind_rows.values()))
    for column, length in limits:
        texts = [v for v in map(methodcaller("get", column), values) if v.__class__ is str or isinstance(v, str)]
        if texts and max(map(len, texts)) > length:
            return True
    return False


_VALUES = attrgetter("values")
