"""The live database schema as the cleanup sees it: tables, keys, foreign keys, identifier quoting.

Its own module so that the manifest (which checks against it) and the planner (which orders deletes
by it) both depend on it instead of on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import column, inspect, table
from sqlalchemy.engine import Engine
from sqlalchemy.sql.expression import TableClause


@dataclass(frozen=True)
class ForeignKeyInfo:
    table: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    ondelete: str  # CASCADE, SET NULL, NO ACTION...


@dataclass
class TableInfo:
    name: str
    columns: dict[str, Any]  # name -> SQLAlchemy type
    pk: tuple[str, ...]
    fks: list[ForeignKeyInfo] = field(default_factory=list)


@dataclass
class Schema:
    dialect: str
    tables: dict[str, TableInfo]

    def referencing(self, table: str) -> list[ForeignKeyInfo]:
        return [fk for t in self.tables.values() for fk in t.fks if fk.ref_table == table]

    def column_types(self, name: str) -> dict[str, Any]:
        """Column -> type of a live table: the model's type where the models declare the column
        (it binds values the way the rows were written, UUIDs on SQLite included), else the
        reflected one."""
        from control_plane.db.models import metadata

        model = metadata.tables.get(name)
        return {c: (model.c[c].type if model is not None and c in model.c else t)
                for c, t in self.tables[name].columns.items()}

    def clause(self, name: str) -> TableClause:
        """The live table as a SQLAlchemy construct, for statements built from conditions."""
        cached = self._clauses.get(name)
        if cached is None:
            cached = self._clauses[name] = table(name, *(column(c, t) for c, t in self.column_types(name).items()))
        return cached

    def __post_init__(self) -> None:
        self._clauses: dict[str, TableClause] = {}


def reflect_schema(engine: Engine) -> Schema:
    insp = inspect(engine)
    names = [n for n in insp.get_table_names() if not n.startswith("sqlite_")]
    columns = insp.get_multi_columns()
    pks = insp.get_multi_pk_constraint()
    fks = insp.get_multi_foreign_keys()
    tables: dict[str, TableInfo] = {}
    for name in names:
        key = (None, name)
        cols = {c["name"]: c["type"] for c in columns.get(key, [])}
        pk = tuple(pks.get(key, {}).get("constrained_columns") or ())
        info = TableInfo(name, cols, pk)
        for fk in fks.get(key, []):
            if not fk.get("referred_table"):
                continue
            ondelete = ((fk.get("options") or {}).get("ondelete") or "NO ACTION").upper()
            info.fks.append(
                ForeignKeyInfo(
                    name, tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]), ondelete
                )
            )
        tables[name] = info
    return Schema(engine.dialect.name, tables)


def quote_ident(schema: Schema, name: str) -> str:
    if name.isidentifier() and name.islower():
        return name
    return '"' + name.replace('"', '""') + '"'
