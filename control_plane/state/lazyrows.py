"""The desired rows of one kind, built when they are asked for.

A plan whose scope (reconcile/incremental.py) compares a few rows of a 100,000-row kind needs only
those rows; the rest come from the per-file cache as packed runs (config/cache.py, format 2: runs
of (kind, columns, secret_refs, prevent_destroy, [keys], [value tuples])) and building a `Row` and
a values dict for each of them costs more than the whole plan of a drifted row. `KindRows` is the
mapping of natural key -> Row that `state.desired.config_rows(lazy=True)` gives for a kind with
such runs: it keeps, in config_rows' order, the Rows it was given and the runs; a lookup by key
builds that row only (from an index of the runs' keys); anything that iterates it (compare of a
kind read in full, a digest of every row, the full plan) gets the plain dict config_rows always
built, the same rows in the same order (a later row of a key replaces the earlier one in the
earlier one's place, as a dict assignment does). Rows are never modified in place, so a row built
for a lookup and the same row in the dict are interchangeable; the dict takes the built one.

Only what a plan asks without iterating is answered without building: `len`, `in`, `[key]`,
`get`, the rows with secret references (`secret_rows`, build_desired and the run record's secret
variables), and each text column's values (`column_values`, the column limits).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import repeat
from operator import itemgetter
from typing import Any

from control_plane.state.rows import Row


class KindRows(Mapping):
    __slots__ = ("_items", "_dict", "_index", "_built", "_runs")

    def __init__(self) -> None:
        self._items: list[Any] = []  # Rows and packed runs (tuples), in config_rows' order
        self._dict: dict[str, Row] | None = None
        self._index: dict[str, int] | None = None  # key -> the item its row comes from (the last)
        self._runs: dict[int, dict[str, int]] = {}  # item -> key -> position, for the runs looked into
        self._built: dict[str, Row] = {}

    def add_row(self, row: Row) -> None:
        assert self._dict is None, "rows are added before any is asked for"
        self._items.append(row)
        self._index = None

    def add_run(self, run: tuple) -> None:
        assert self._dict is None, "rows are added before any is asked for"
        self._items.append(run)
        self._index = None

    # --- without building every row ------------------------------------------------------------

    def _positions(self) -> dict[str, int]:
        if self._index is None:
            index: dict[str, int] = {}
            update = index.update
            for i, item in enumerate(self._items):
                if item.__class__ is tuple:
                    update(dict.fromkeys(item[4], i))  # (C-level: no object per row)
                else:
                    index[item.key] = i
            self._index = index
        return self._index

    def _build(self, key: str, i: int) -> Row:
        row = self._built.get(key)
        if row is None:
            item = self._items[i]
            if item.__class__ is not tuple:
                row = item
            else:
                kind, columns, refs, prevent, keys, values = item
                at = self._runs.get(i)
                if at is None:
                    at = self._runs[i] = dict(zip(keys, range(len(keys)), strict=True))  # (the last of a key)
                row = Row(kind, key, dict(zip(columns, values[at[key]], strict=True)), refs, prevent)
            self._built[key] = row
        return row

    def __getitem__(self, key: str) -> Row:
        if self._dict is not None:
            return self._dict[key]
        return self._build(key, self._positions()[key])

    def get(self, key: str, default: Any = None) -> Any:
        if self._dict is not None:
            return self._dict.get(key, default)
        at = self._positions().get(key)
        return default if at is None else self._build(key, at)

    def __contains__(self, key: object) -> bool:
        return key in (self._dict if self._dict is not None else self._positions())

    def __len__(self) -> int:
        return len(self._dict if self._dict is not None else self._positions())

    def secret_rows(self) -> list[Row]:
        """The rows with secret references (what `[r for r in rows.values() if r.secret_refs]`
        gives), in order."""
        if self._dict is not None:
            return [r for r in self._dict.values() if r.secret_refs]
        if not any(item[2] if item.__class__ is tuple else item.secret_refs for item in self._items):
            return []  # (the usual case, decided per run: no index of the keys)
        index = self._positions()
        found: dict[str, Row] = {}
        for i, item in enumerate(self._items):
            if item.__class__ is tuple:
                if item[2]:
                    for key in item[4]:
                        if index[key] == i:
                            found[key] = self._build(key, i)
            elif item.secret_refs and index[item.key] == i:
                found[item.key] = item
        # (In the dict's order: a key's first appearance.)
        order = {key: n for n, key in enumerate(self._first_order(found))}
        return sorted(found.values(), key=lambda r: order[r.key])

    def _first_order(self, wanted: dict[str, Row]) -> list[str]:
        seen: list[str] = []
        done: set[str] = set()
        for item in self._items:
            for key in (item[4] if item.__class__ is tuple else (item.key,)):
                if key in wanted and key not in done:
                    done.add(key)
                    seen.append(key)
        return seen

    def column_values(self, column: str) -> list[Any]:
        """The value of `column` of every row (None where it has none), as
        `[r.values.get(column) for r in rows.values()]` would hold them, but not in order and
        including rows a later one of the same key replaces when keys repeat (then every row is
        built: `rows()`). For checks that look at every value (the column limits)."""
        if self._dict is not None or len(self._positions()) != self._count():
            return [r.values.get(column) for r in self.rows().values()]
        out: list[Any] = []
        for item in self._items:
            if item.__class__ is tuple:
                columns = item[1]
                if column in columns:
                    out.extend(map(itemgetter(columns.index(column)), item[5]))
                else:
                    out.extend(repeat(None, len(item[5])))
            else:
                out.append(item.values.get(column))
        return out

    def _count(self) -> int:
        return sum(len(item[4]) if item.__class__ is tuple else 1 for item in self._items)

    # --- every row ---------------------------------------------------------------------------

    def rows(self) -> dict[str, Row]:
        """Every row, as the dict config_rows builds (built once)."""
        if self._dict is None:
            from control_plane.config.cache import unpack_rows

            rows: dict[str, Row] = {}
            for item in self._items:
                if item.__class__ is tuple:
                    built = unpack_rows([item], Row)
                    rows.update(zip(item[4], built, strict=True))
                else:
                    rows[item.key] = item
            for key, row in self._built.items():  # the same rows: keep the ones handed out
                if rows.get(key) is not row and key in rows:
                    rows[key] = row
            self._dict = rows
            # (The runs stay in the cache's memo; this no longer holds them, nor their index.)
            self._built, self._items, self._index, self._runs = {}, [], None, {}
        return self._dict

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows())

    def keys(self):  # type: ignore[override]
        return self.rows().keys()

    def values(self):  # type: ignore[override]
        return self.rows().values()

    def items(self):  # type: ignore[override]
        return self.rows().items()

    def __eq__(self, other: object) -> bool:
        return self.rows() == (other.rows() if isinstance(other, KindRows) else other)

    def __repr__(self) -> str:
        return f"KindRows({len(self)} rows)"


def secret_rows(rows: Mapping) -> list[Row]:
    """The rows of a kind that have secret references, in order, without building a KindRows."""
    if isinstance(rows, KindRows):
        return rows.secret_rows()
    return [r for r in rows.values() if r.secret_refs]


def column_values(rows: Mapping, column: str) -> list[Any]:
    if isinstance(rows, KindRows):
        return rows.column_values(column)
    return [r.values.get(column) for r in rows.values()]
