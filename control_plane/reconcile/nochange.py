"""The no-change decision: does the record of the last apply vouch that nothing changed since?

One implementation, over a tiny query interface (`dialect` and `rows(sql)`), which both the
SQLAlchemy connection (reconcile/fastpath.py) and the raw driver connection (db/raw.py, reached by
`cplane plan` before SQLAlchemy is imported: cli/entry.py) provide, so that the two paths cannot
disagree. What is decided and why is in reconcile/fastpath.py's docstring; this module imports
only the standard library (and, to build a Plan, plans.model).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from control_plane import __version__
from control_plane.db.raw import counted_tables, has_table, moved_no_system_row
from control_plane.environment import is_production

YAML_SUFFIXES = (".yaml", ".yml")
RECORD_TABLE = "cplane_applied_state"
COUNTERS_TABLE = "cplane_change_counters"
MIGRATIONS = Path(__file__).resolve().parent.parent / "db" / "migrations" / "versions"


class Source(Protocol):
    """What the decision reads through: the backend's name and rows of a query (no parameters:
    the only names it interpolates are cplane's own table names)."""

    dialect: str

    def rows(self, sql: str) -> list[tuple]: ...


class Key(Protocol):
    """The secret key as the decision needs it (secrets.SecretBox is one)."""

    key_id: str

    def digest(self, value: str) -> str: ...


def schedule_bucket(environment: str | None, at: datetime | None = None) -> str:
    """The input of effective-dated scheduled changes: the bucket of time in which the desired state
    is constant (e.g. the next scheduled change's time). Scheduled changes do not exist yet, so the
    desired state does not depend on time and the bucket is always the same. Whoever adds schedules
    returns here the identity of the interval `at` falls in, and the fast path follows it."""
    return ""


def tree_digest(config_dir: Path) -> str:
    """SHA-256 over the relative path and bytes of every non-hidden YAML file under `config_dir`
    (a superset of what the loader reads: any edit anywhere falls back to the full plan)."""
    root = Path(config_dir)
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        here = Path(dirpath)
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(YAML_SUFFIXES):
                found.append(((here / name).relative_to(root).as_posix(), here / name))
    digest = hashlib.sha256()
    for rel, path in sorted(found):
        data = path.read_bytes()
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def _migrations() -> str:
    return ",".join(sorted(p.name for p in MIGRATIONS.glob("*.py")))


@dataclass
class Inputs:
    """The desired state's identity, computed before the config is parsed (so that an edit made
    while the config is read can only make a record that no longer matches, never a wrong one)."""

    tree: str
    environment: str | None
    key_id: str
    bucket: str = ""
    # Set by apply once it has the desired state: the variables its secrets name.
    variables: list[str] = field(default_factory=list)

    def digest(self, schema_revision: str | None) -> str:
        parts = [self.tree, self.environment or "", __version__, _migrations(), self.key_id, self.bucket,
                 schema_revision or ""]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def context(self, schema_revision: str | None) -> str:
        """Everything of `digest` but the config files: what the per-table record is valid in
        (reconcile/incremental.py; the files enter there per row kind, as desired rows)."""
        parts = ["context", self.environment or "", __version__, _migrations(), self.key_id, self.bucket,
                 schema_revision or ""]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def inputs(config_dir: Path, environment: str | None, box: Key, at: datetime | None = None) -> Inputs:
    return Inputs(tree_digest(config_dir), environment, box.key_id, schedule_bucket(environment, at))


def secrets_digest(variables: Iterable[str], environ, box: Key) -> str:
    """An HMAC (the secret key's) of the variables' values, and of which are not set."""
    parts = [f"{name}={environ[name]}" if name in environ else f"{name}\0unset" for name in sorted(set(variables))]
    return box.digest("\0".join(parts))[len("hmac:"):]


def unset(variables: Iterable[str], environ) -> list[str]:
    return sorted(v for v in set(variables) if v not in environ)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def schema_revision(db: Source) -> str | None:
    if not has_table(db, "alembic_version"):
        return None
    rows = db.rows("SELECT version_num FROM alembic_version")
    return rows[0][0] if rows else None


def current_versions(db: Source, tables: list[str]) -> dict[str, int] | None:
    """The counters of `tables`, or None unless every one of them is counted (triggers in place)."""
    if not tables or not has_table(db, COUNTERS_TABLE):
        return None
    wanted = set(tables)
    found = {str(name): int(version) for name, version in db.rows(f"SELECT table_name, version FROM {COUNTERS_TABLE}")
             if name in wanted}
    if set(found) != wanted or not wanted <= counted_tables(db):
        return None
    return found


RECORD_COLUMNS = ("apply_run_id", "inputs_digest", "config_digest", "secrets_digest", "variables", "versions",
                  "warnings")


def read_record(db: Source) -> dict[str, Any] | None:
    if not has_table(db, RECORD_TABLE):
        return None
    rows = db.rows(f"SELECT {', '.join(RECORD_COLUMNS)} FROM {RECORD_TABLE} ORDER BY id DESC LIMIT 1")
    if not rows:
        return None
    record = dict(zip(RECORD_COLUMNS, rows[0], strict=True))
    for column in ("variables", "versions", "warnings"):
        record[column] = _json(record[column])
    return record


@dataclass
class Recorded:
    config_digest: str
    apply_run_id: int | None
    warnings: list[str]
    unset: list[str]


def try_no_change(db: Source, config_dir: Path, environment: str | None, box: Key, environ=None,
                  *, adopt: bool = False, wanted: Inputs | None = None) -> Recorded | None:
    """The record when the database holds exactly what the last apply left and the desired state
    is the one it applied; None at any doubt (the caller then makes the full plan). `wanted`: the
    inputs, hashed by the caller (`inputs` of the same config, environment and key) just before."""
    if adopt:
        return None
    environ = os.environ if environ is None else environ
    record = read_record(db)
    if record is None:
        return None
    wanted = wanted if wanted is not None else inputs(config_dir, environment, box)
    if wanted.digest(schema_revision(db)) != record["inputs_digest"]:
        return None
    if secrets_digest(record["variables"] or [], environ, box) != record["secrets_digest"]:
        return None
    recorded = {str(k): int(v) for k, v in (record["versions"] or {}).items()}
    current = current_versions(db, sorted(recorded))  # (None: no record of tables, or one not counted)
    if current is None:
        return None
    moved = [t for t in sorted(recorded) if current[t] != recorded[t]]
    # A table moved only by tenants' writes to their own rows of a mixed table still holds what
    # the last apply left (its system rows); the row-change log says so, or the plan is made.
    if any(not moved_no_system_row(db, t, recorded[t], current[t]) for t in moved):
        return None
    return Recorded(record["config_digest"], record["apply_run_id"], list(record["warnings"] or []),
                    unset(record["variables"] or [], environ))


def identity(db: Source) -> dict[str, Any] | None:
    """db.identity's Identity as a dict, read without the models; None when not migrated."""
    if not has_table(db, "cplane_database"):
        return None
    rows = db.rows("SELECT lineage, environment FROM cplane_database ORDER BY id LIMIT 1")
    if not rows:
        return None
    return {"dialect": db.dialect, "lineage": rows[0][0], "environment": rows[0][1] or None}


@dataclass
class NoChange:
    """The answer `No changes`, and what a Plan of it carries."""

    recorded: Recorded
    database: dict[str, Any]


def decide(db: Source, config_dir: Path, box: Key, *, environment: str | None = None, adopt: bool = False,
           require_secrets: bool = False, environ=None, wanted: Inputs | None = None) -> NoChange | None:
    """`No changes` from the record of the last apply when nothing changed since; None at any doubt.
    `wanted`: as try_no_change's."""
    if adopt:
        return None
    recorded = try_no_change(db, Path(config_dir), environment, box, environ, wanted=wanted)
    if recorded is None or (recorded.unset and (require_secrets or is_production(environment))):
        return None  # (an unset secret variable is an error there: the full plan says which)
    database = identity(db)
    if database is None:
        return None
    bound = database["environment"]
    if not (bound is None or bound == environment or (environment is None and not is_production(bound))):
        return None  # another environment than the database's: the full plan refuses or warns
    return NoChange(recorded, database)


def plan_of(answer: NoChange, config_dir: Path, environment: str | None):
    """The Plan of a no-change answer (what `plan --format json` shows and `apply` returns)."""
    from control_plane.plans.model import Plan
    from control_plane.reconcile.revision import config_revision

    recorded = answer.recorded
    return Plan(created_at=datetime.now(UTC).isoformat(timespec="seconds"), environment=environment,
                config_revision=config_revision(Path(config_dir), recorded.config_digest),
                config_digest=recorded.config_digest, cplane_version=__version__, database=answer.database,
                warnings=recorded.warnings)


def mentions(root, word: bytes) -> bool:
    """Whether any YAML file under `root` holds `word`: a scan of bytes (watch/windows.py's test for
    SyncWindows, which the raw-driver no-op apply, cli/entry.py, asks before it answers)."""
    for path in root.rglob("*"):
        if path.suffix in (".yaml", ".yml") and path.is_file():
            try:
                if word in path.read_bytes():
                    return True
            except OSError:
                continue
    return False
