"""The cleanup manifest: loading it from the config tree, and checking it against the live schema."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Date, DateTime
from sqlalchemy.engine import Engine

from control_plane.cleanup.schema import Schema
from control_plane.errors import CplaneError
from control_plane.kinds import conditions
from control_plane.kinds.specs import CleanupManifestSpec, CleanupProfile, RetentionRule, TableClassification

KIND = "CleanupManifest"
CLEANUP_FOLDER = "cleanup"


class ManifestError(CplaneError):
    """The manifest could not be loaded; `issues` are validation issues (`FILE:LINE:COL: ...`)."""

    code = "manifest_invalid"

    def __init__(self, message: str, issues: list | None = None):
        super().__init__(message)
        self.issues = issues or []


@dataclass
class Manifest:
    name: str
    source: str
    spec: CleanupManifestSpec
    tables: dict[str, TableClassification]
    rules: dict[str, RetentionRule]
    profiles: dict[str, CleanupProfile]
    duplicates: list[str]
    doc: Any = None  # the loader's Document, for positions

    @classmethod
    def from_spec(cls, spec: CleanupManifestSpec, name: str = "default", source: str = "<manifest>",
                  doc: Any = None) -> Manifest:
        duplicates: list[str] = []
        tables: dict[str, TableClassification] = {}
        for t in spec.tables:
            if t.table in tables:
                duplicates.append(f"table {t.table} is classified twice")
            tables.setdefault(t.table, t)
        rules: dict[str, RetentionRule] = {}
        for r in spec.retention:
            if r.name in rules:
                duplicates.append(f"retention rule {r.name} is defined twice")
            rules.setdefault(r.name, r)
        profiles: dict[str, CleanupProfile] = {}
        for p in spec.profiles:
            if p.name in profiles:
                duplicates.append(f"profile {p.name} is defined twice")
            profiles.setdefault(p.name, p)
        return cls(name, source, spec, tables, rules, profiles, duplicates, doc)

    def at(self, *path: str | int) -> str:
        """`FILE:LINE:COL` of the node at `path` under `spec` (the document's start when unknown)."""
        if self.doc is None:
            return self.source
        from control_plane.config.loader import locate

        line, col = locate(self.doc, ("spec", *path))
        return f"{self.source}:{line}:{col}"

    def table_path(self, table: str) -> tuple[str | int, ...]:
        index = next((i for i, t in enumerate(self.spec.tables) if t.table == table), None)
        return ("tables", index) if index is not None else ("tables",)

    def rule_path(self, rule: str) -> tuple[str | int, ...]:
        index = next((i for i, r in enumerate(self.spec.retention) if r.name == rule), None)
        return ("retention", index) if index is not None else ("retention",)

    def profile_path(self, profile: str) -> tuple[str | int, ...]:
        index = next((i for i, p in enumerate(self.spec.profiles) if p.name == profile), None)
        return ("profiles", index) if index is not None else ("profiles",)

    def of_class(self, data_class: str) -> list[str]:
        return [t for t, e in self.tables.items() if e.data_class == data_class]


def load_manifest(config_dir: Path | str, environment: str | None = None) -> Manifest:
    """The one CleanupManifest of the config tree (overlay applied). Issues of other kinds are not ours."""
    from control_plane.config.validate import load_config

    root = Path(config_dir)
    config = load_config(root, environment)
    ours = [i for i in config.issues if _is_ours(i, root)]
    if ours:
        raise ManifestError(f"{len(ours)} error(s) in the cleanup manifest", ours)
    objects = config.of_kind(KIND)
    if not objects:
        raise ManifestError(f"no {KIND} document in {root / CLEANUP_FOLDER}")
    if len(objects) > 1:
        raise ManifestError(f"more than one {KIND} document ({', '.join(sorted(objects))}); keep exactly one")
    (name, obj), = objects.items()
    return Manifest.from_spec(obj.spec, name, str(obj.doc.file), obj.doc)


def _is_ours(issue: Any, root: Path) -> bool:
    if issue.kind == KIND:
        return True
    parts = Path(issue.file).parts
    return CLEANUP_FOLDER in parts or issue.kind == "config"


@dataclass(frozen=True, order=True)
class Problem:
    table: str
    message: str
    at: str = ""  # FILE:LINE:COL in the manifest, when the problem has a place there

    def format(self) -> str:
        return f"{self.at}: {self.table}: {self.message}" if self.at else f"{self.table}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        out = {"table": self.table, "message": self.message}
        if self.at:
            out["at"] = self.at
        return out


def model_tables() -> set[str]:
    from control_plane.db.models import metadata

    return set(metadata.tables) | {"alembic_version"}


def check_manifest(engine: Engine, manifest: Manifest, schema: Schema) -> list[Problem]:
    """Everything that makes the manifest disagree with the database, the models and the registry."""
    problems: list[Problem] = [Problem("-", d, manifest.at()) for d in manifest.duplicates]
    db_tables = set(schema.tables)
    models = model_tables()
    for t in sorted(db_tables - set(manifest.tables)):
        problems.append(Problem(t, "table in the database is not classified in the cleanup manifest", manifest.at("tables")))
    for t in sorted(models - set(manifest.tables) - db_tables):
        problems.append(Problem(t, "table in the models is not classified in the cleanup manifest", manifest.at("tables")))
    for t in sorted(set(manifest.tables) - db_tables):
        where = "the database (it is in the models: run `cplane db upgrade`)" if t in models else "the database"
        problems.append(Problem(t, f"classified in the manifest but does not exist in {where}",
                                manifest.at(*manifest.table_path(t), "table")))

    for t, entry in sorted(manifest.tables.items()):
        if entry.data_class != "mixed":
            continue
        path = (*manifest.table_path(t), "systemRows")
        if entry.sql_text is not None or not conditions.is_condition(entry.system_rows):
            shown = entry.sql_text if entry.sql_text is not None else entry.system_rows
            problems.append(Problem(t, f"systemRows {shown!r} is not a valid condition: SQL text is not accepted; "
                                       f"write a structured condition ({{column, op, value}}, and/or/not)",
                                    manifest.at(*path)))
        elif t in db_tables:
            problems += _condition_problems(manifest, schema, t, entry.system_rows, path, "systemRows")

    problems += boundary_problems(manifest, db_tables)

    for rule in manifest.rules.values():
        rpath = manifest.rule_path(rule.name)
        entry = manifest.tables.get(rule.table)
        if rule.table not in db_tables:
            problems.append(Problem(rule.table, f"retention rule {rule.name}: table does not exist",
                                    manifest.at(*rpath, "table")))
            continue
        if entry is not None and entry.data_class == "system":
            problems.append(Problem(rule.table, f"retention rule {rule.name} would delete from a system table",
                                    manifest.at(*rpath, "table")))
        col_type = schema.tables[rule.table].columns.get(rule.column)
        if col_type is None:
            problems.append(Problem(rule.table, f"retention rule {rule.name}: column {rule.column} does not exist",
                                    manifest.at(*rpath, "column")))
        elif not isinstance(col_type, DateTime | Date):
            problems.append(
                Problem(rule.table, f"retention rule {rule.name}: column {rule.column} is {col_type}, not a date or timestamp",
                        manifest.at(*rpath, "column"))
            )
        if rule.where is not None:
            problems += _condition_problems(manifest, schema, rule.table, rule.where, (*rpath, "where"),
                                            f"retention rule {rule.name}: where")

    for profile in manifest.profiles.values():
        ppath = manifest.profile_path(profile.name)
        for i, rule_name in enumerate(profile.rules):
            if rule_name not in manifest.rules:
                known = ", ".join(manifest.rules) or "(none)"
                problems.append(Problem("-", f"profile {profile.name} names unknown retention rule {rule_name!r}; known: {known}",
                                        manifest.at(*ppath, "rules", i)))
        if not profile.rules and not profile.classes:
            problems.append(Problem("-", f"profile {profile.name} deletes nothing: give it rules or classes",
                                    manifest.at(*ppath)))
        seen: set[str] = set()
        for i, f in enumerate(profile.filters):
            fpath = (*ppath, "filters", i)
            entry = manifest.tables.get(f.table)
            if f.table in seen:
                problems.append(Problem(f.table, f"profile {profile.name} filters this table twice", manifest.at(*fpath)))
            seen.add(f.table)
            if f.table not in db_tables or entry is None:
                problems.append(Problem(f.table, f"profile {profile.name}: filter on a table that is not classified "
                                                 f"or does not exist", manifest.at(*fpath, "table")))
                continue
            if entry.data_class == "system":
                problems.append(Problem(f.table, f"profile {profile.name}: filter on a system table",
                                        manifest.at(*fpath, "table")))
            problems += _condition_problems(manifest, schema, f.table, f.where, (*fpath, "where"),
                                            f"profile {profile.name}: filter")

    # A delete must never cascade into a system table.
    for t, entry in sorted(manifest.tables.items()):
        if entry.data_class != "system" or t not in db_tables:
            continue
        for fk in schema.tables[t].fks:
            parent = manifest.tables.get(fk.ref_table)
            if fk.ondelete == "CASCADE" and parent is not None and parent.data_class != "system":
                problems.append(
                    Problem(t, f"system table cascades from {parent.data_class} table {fk.ref_table} "
                               f"({', '.join(fk.columns)}): a cleanup would delete system rows",
                            manifest.at(*manifest.table_path(t)))
                )
    return sorted(set(problems))


def _condition_problems(manifest: Manifest, schema: Schema, table: str, cond, path: tuple, what: str) -> list[Problem]:
    return [Problem(table, f"{what}: {message}", manifest.at(*path, *inner))
            for inner, message in conditions.check(cond, schema.column_types(table))]


# --- the boundary: the registry declares system data, the manifest classifies the rest ------------


def registry_boundary() -> dict[str, tuple[str, Any]]:
    """Table -> ("system", None) or ("mixed", condition), as the registry and cplane's own
    bookkeeping declare it: every system kind's table (and its version history), cplane's tables,
    Alembic's; a kind with a system-row condition makes its table mixed."""
    from control_plane.db.models import controller
    from control_plane.kinds.registry import ROW_KINDS

    boundary: dict[str, tuple[str, Any]] = {"alembic_version": ("system", None)}
    for model in (controller.ManagedObject, controller.ApplyRun, controller.CleanupRun):
        boundary[model.__tablename__] = ("system", None)
    for rk in ROW_KINDS.values():
        boundary[rk.table_name] = ("mixed", rk.system_rows) if rk.system_rows is not None else ("system", None)
        if rk.history is not None:
            boundary[rk.history.table_name] = ("system", None)
    return boundary


def boundary_problems(manifest: Manifest, db_tables: set[str] | None = None) -> list[Problem]:
    """Where the manifest's classification disagrees with the registry's (compared as structured
    conditions, in canonical form)."""
    problems: list[Problem] = []
    boundary = registry_boundary()
    for table, (data_class, cond) in sorted(boundary.items()):
        entry = manifest.tables.get(table)
        if entry is None:
            continue  # reported as unclassified
        at = manifest.at(*manifest.table_path(table), "class")
        if entry.data_class != data_class:
            what = ("system data (a system kind's table)" if data_class == "system"
                    else f"a mixed table whose system rows are {conditions.describe(cond)}")
            problems.append(Problem(table, f"registry and manifest disagree: the registry declares it {what}, "
                                           f"the manifest classifies it {entry.data_class}", at))
        elif data_class == "mixed" and conditions.is_condition(entry.system_rows) and (
            conditions.canonical(entry.system_rows) != conditions.canonical(cond)
        ):
            problems.append(Problem(table, f"registry and manifest disagree: systemRows is "
                                           f"{conditions.describe(entry.system_rows)}, the registry's system rows are "
                                           f"{conditions.describe(cond)}",
                                    manifest.at(*manifest.table_path(table), "systemRows")))
    for table, entry in sorted(manifest.tables.items()):
        if entry.data_class == "mixed" and table not in boundary:
            problems.append(Problem(table, "registry and manifest disagree: classified mixed, but no system kind of the "
                                           "registry lives in it (its system rows would be declared nowhere else)",
                                    manifest.at(*manifest.table_path(table), "class")))
    return problems
