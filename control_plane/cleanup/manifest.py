"""The cleanup manifest: loading it from the config tree, and checking it against the live schema."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Date, DateTime, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from control_plane.cleanup.schema import Schema, quote_ident
from control_plane.db.dialect import for_dialect
from control_plane.errors import CplaneError
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

    @classmethod
    def from_spec(cls, spec: CleanupManifestSpec, name: str = "default", source: str = "<manifest>") -> Manifest:
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
        return cls(name, source, spec, tables, rules, profiles, duplicates)

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
    return Manifest.from_spec(obj.spec, name, str(obj.doc.file))


def _is_ours(issue: Any, root: Path) -> bool:
    if issue.kind == KIND:
        return True
    parts = Path(issue.file).parts
    return CLEANUP_FOLDER in parts or issue.kind == "config"


@dataclass(frozen=True, order=True)
class Problem:
    table: str
    message: str

    def format(self) -> str:
        return f"{self.table}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"table": self.table, "message": self.message}


def model_tables() -> set[str]:
    from control_plane.db.models import metadata

    return set(metadata.tables) | {"alembic_version"}


def check_manifest(engine: Engine, manifest: Manifest, schema: Schema) -> list[Problem]:
    """Everything that makes the manifest disagree with the database and the models."""
    problems: list[Problem] = [Problem("-", d) for d in manifest.duplicates]
    db_tables = set(schema.tables)
    models = model_tables()
    for t in sorted(db_tables - set(manifest.tables)):
        problems.append(Problem(t, "table in the database is not classified in the cleanup manifest"))
    for t in sorted(models - set(manifest.tables) - db_tables):
        problems.append(Problem(t, "table in the models is not classified in the cleanup manifest"))
    for t in sorted(set(manifest.tables) - db_tables):
        where = "the database (it is in the models: run `cplane db upgrade`)" if t in models else "the database"
        problems.append(Problem(t, f"classified in the manifest but does not exist in {where}"))

    for t, entry in sorted(manifest.tables.items()):
        if entry.data_class == "mixed" and t in db_tables:
            error = _condition_error(engine, schema, t, entry.system_rows or "")
            if error:
                problems.append(Problem(t, f"systemRows {entry.system_rows!r} is not a valid condition: {error}"))

    for rule in manifest.rules.values():
        entry = manifest.tables.get(rule.table)
        if rule.table not in db_tables:
            problems.append(Problem(rule.table, f"retention rule {rule.name}: table does not exist"))
            continue
        if entry is not None and entry.data_class == "system":
            problems.append(Problem(rule.table, f"retention rule {rule.name} would delete from a system table"))
        col_type = schema.tables[rule.table].columns.get(rule.column)
        if col_type is None:
            problems.append(Problem(rule.table, f"retention rule {rule.name}: column {rule.column} does not exist"))
        elif not isinstance(col_type, DateTime | Date):
            problems.append(
                Problem(rule.table, f"retention rule {rule.name}: column {rule.column} is {col_type}, not a date or timestamp")
            )

    for profile in manifest.profiles.values():
        for rule_name in profile.rules:
            if rule_name not in manifest.rules:
                known = ", ".join(manifest.rules) or "(none)"
                problems.append(Problem("-", f"profile {profile.name} names unknown retention rule {rule_name!r}; known: {known}"))
        if not profile.rules and not profile.classes:
            problems.append(Problem("-", f"profile {profile.name} deletes nothing: give it rules or classes"))

    # A delete must never cascade into a system table.
    for t, entry in sorted(manifest.tables.items()):
        if entry.data_class != "system" or t not in db_tables:
            continue
        for fk in schema.tables[t].fks:
            parent = manifest.tables.get(fk.ref_table)
            if fk.ondelete == "CASCADE" and parent is not None and parent.data_class != "system":
                problems.append(
                    Problem(t, f"system table cascades from {parent.data_class} table {fk.ref_table} "
                               f"({', '.join(fk.columns)}): a cleanup would delete system rows")
                )
    return sorted(set(problems))


def _condition_error(engine: Engine, schema: Schema, table: str, condition: str) -> str | None:
    if ";" in condition:
        return "a condition is one SQL expression (no ';')"
    sql = f"SELECT count(*) FROM {quote_ident(schema, table)} WHERE ({condition})"
    try:
        with engine.connect() as conn:
            with conn.begin() as tx:
                for_dialect(engine).set_read_only(conn)
                conn.execute(text(sql)).scalar_one()
                tx.rollback()
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        lines = str(orig).strip().splitlines()
        return lines[0] if lines else type(orig).__name__
    return None
