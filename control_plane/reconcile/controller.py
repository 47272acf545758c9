"""The reconcile loop: config + database → Plan → apply. What the CLI and other code call."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, func, select

from control_plane import __version__
from control_plane.apply.execute import (
    QUIET,
    ApplyProgress,
    ApplyResult,
    execute,
    refuse_unapproved_adoptions,
)
from control_plane.config.validate import ConfigSet
from control_plane.db.engine import (
    check_connection,
    current_revision,
    head_revision,
    pending_migrations,
    upgrade,
)
from control_plane.db.identity import check_environment, read_identity
from control_plane.environment import default_actor, is_production
from control_plane.errors import ConfigInvalid, CplaneError
from control_plane.plans.compare import compare, reference_counts
from control_plane.plans.model import Plan
from control_plane.plans.planfile import PlanRejected
from control_plane.reconcile.validation import load_checked
from control_plane.secrets import SecretBox
from control_plane.state.desired import DesiredState, Rows, build_desired
from control_plane.state.keys import check_key
from control_plane.state.live import LiveState, read_live


@dataclass
class PlanResult:
    plan: Plan
    config: ConfigSet


def config_revision(config_dir: Path, digest: str = "") -> str:
    """The git commit of the config tree; empty outside git. When the tree has uncommitted edits,
    `<sha>-dirty+<digest12>` (the config digest's first 12 characters), so that two runs from two
    different dirty trees are told apart."""
    try:
        head = subprocess.run(["git", "-C", str(config_dir), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return ""
        dirty = subprocess.run(["git", "-C", str(config_dir), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=5)
        if not dirty.stdout.strip():
            return head.stdout.strip()
        return head.stdout.strip() + "-dirty" + (f"+{digest[:12]}" if digest else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def config_digest(config: ConfigSet) -> str:
    digest = hashlib.sha256()
    for path in sorted(set(config.files)):
        digest.update(str(path.relative_to(config.root) if path.is_relative_to(config.root) else path).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    digest.update((config.environment or "").encode())
    return digest.hexdigest()


def load_valid_config(config_dir: Path, environment: str | None) -> tuple[ConfigSet, Rows]:
    config, rows = load_checked(config_dir, environment)
    if not config.ok:
        shown = "\n".join(i.format() for i in config.issues[:50])
        more = f"\n... and {len(config.issues) - 50} more" if len(config.issues) > 50 else ""
        raise ConfigInvalid(f"the config is invalid ({len(config.issues)} error(s)); nothing was planned:\n{shown}{more}")
    return config, rows


@dataclass
class Prepared:
    """Everything a plan needs that does not come from the database."""

    config: ConfigSet
    desired: DesiredState
    box: SecretBox
    environment: str | None
    adopt: bool
    warnings: list[str]
    revision: str
    digest: str
    allow_environment_change: bool = False

    def plan_against(self, conn: Connection, live: LiveState | None = None, *, pending: int = 0) -> Plan:
        """The plan against what `conn` holds now (tables that do not exist yet read as empty).
        Refused when the database is bound to another environment (unless allowed)."""
        def counts(kind: str) -> dict[int, dict[str, int]]:
            return reference_counts(conn, {kind})[kind]

        identity = read_identity(conn)
        change = check_environment(identity, self.environment, self.allow_environment_change)
        if live is None:
            live = read_live(conn, self.box)
        check_key(conn, self.box, live.unreadable)
        plan = compare(self.desired, live, self.box, adopt=self.adopt, reference_counts=counts)
        plan.pending_migrations = pending
        plan.environment = self.environment
        plan.config_revision = self.revision
        plan.config_digest = self.digest
        plan.cplane_version = __version__
        plan.database = identity.as_dict()
        plan.environment_change = change or ""
        extra = [f"the database is recorded as environment {identity.environment!r}; applying this plan records "
                 f"{self.environment!r} instead (--allow-environment-change)"] if change and self.environment else []
        plan.warnings = self.warnings + extra + plan.warnings
        return plan


def prepare(config_dir: Path, *, environment: str | None = None, adopt: bool = False,
            require_secrets: bool = False, allow_environment_change: bool = False, environ=None,
            database_url=None) -> Prepared:
    """The desired state. A secret variable that is not set is an error in production or with
    `require_secrets`; elsewhere compare keeps the stored value (or leaves it unset) and warns."""
    environ = os.environ if environ is None else environ
    config, rows = load_valid_config(Path(config_dir), environment)
    desired = build_desired(config, environ, rows)
    warnings: list[str] = []
    if desired.missing_secrets and (require_secrets or is_production(environment)):
        names = ", ".join(f"{p.variable} ({p.kind}/{p.name} {p.field})" for p in desired.missing_secrets)
        raise CplaneError(f"secret environment variables are not set: {names}; nothing was planned")
    box = SecretBox(environment, database_url)
    digest = config_digest(config)
    return Prepared(config, desired, box, environment, adopt, warnings,
                    config_revision(Path(config_dir), digest), digest, allow_environment_change)


def make_plan(
    engine: Engine,
    config_dir: Path,
    *,
    environment: str | None = None,
    adopt: bool = False,
    require_secrets: bool = False,
    allow_environment_change: bool = False,
    environ=None,
) -> PlanResult:
    """The plan against the database as it is: nothing is migrated or written. A schema that is
    missing or behind is planned against as it stands (missing tables read as empty) and the plan
    counts the pending migrations, which apply runs first."""
    prepared = prepare(config_dir, environment=environment, adopt=adopt, require_secrets=require_secrets,
                       allow_environment_change=allow_environment_change, environ=environ,
                       database_url=engine.url)
    pending = pending_migrations(engine)
    with engine.connect() as conn:
        plan = prepared.plan_against(conn, pending=pending)
    return PlanResult(plan, prepared.config)


def _migrate(engine: Engine, progress: ApplyProgress) -> None:
    """Apply runs the migrations first (docs/reference.md §3), and says so."""
    before, after = upgrade(engine)
    progress.phase("migrating", f"{before or '(empty)'} -> {after}" if before != after else f"schema at head ({after})")


def check_binding(engine: Engine, plan: Plan, environment: str | None) -> None:
    """A saved plan applies only where it was made: the same environment and the same database
    (its dialect and lineage id). Raises PlanRejected naming what differs; reads only."""
    if (plan.environment or None) != (environment or None):
        raise PlanRejected(f"refusing to apply the plan: it was made for {_env(plan.environment)}, "
                           f"and this apply is for {_env(environment)}")
    check_connection(engine)
    with engine.connect() as conn:
        here = read_identity(conn)
    planned = plan.database or {}
    if planned.get("dialect") != here.dialect:
        raise PlanRejected(f"refusing to apply the plan: it was made against another database (a "
                           f"{planned.get('dialect') or 'unknown'} database; this one is {here.dialect})")
    if planned.get("lineage") != here.lineage:
        raise PlanRejected(f"refusing to apply the plan: it was made against another database (lineage "
                           f"{planned.get('lineage') or 'none: not yet migrated'}; this database is "
                           f"{here.lineage or 'none: not yet migrated'})")


def _env(environment: str | None) -> str:
    return f"environment {environment!r}" if environment else "no environment"


def apply_plan(engine: Engine, plan: Plan, *, environment: str | None, actor: str | None = None,
               saved: bool = False, adopt: bool = False, allow_environment_change: bool = False,
               environ=None, lock_timeout: float = 0, progress: ApplyProgress | None = None) -> ApplyResult:
    """Apply a plan computed earlier. saved: a plan read from a file, applied only to the database
    and environment it was made for (checked before anything is migrated or written)."""
    if saved:
        check_binding(engine, plan, environment)
    if plan.changes:
        refuse_unapproved_adoptions(plan, adopt)
    progress = progress or QUIET
    _migrate(engine, progress)
    return execute(engine, plan, SecretBox(environment, engine.url), actor=actor or default_actor(),
                   environment=environment, saved=saved, adopt=adopt,
                   allow_environment_change=allow_environment_change, environ=environ,
                   lock_timeout=lock_timeout, progress=progress)


def apply_config(engine: Engine, config_dir: Path, *, environment: str | None = None, actor: str | None = None,
                 adopt: bool = False, require_secrets: bool = False, allow_environment_change: bool = False,
                 environ=None, lock_timeout: float = 0, progress: ApplyProgress | None = None,
                 extra_warnings: tuple[str, ...] = ()) -> ApplyResult:
    """Plan and apply in one go (what `cplane apply --auto-approve` does). `extra_warnings` go into
    the plan, and so into its audit record (e.g. an apply that overrode a change window).

    The plan is computed inside the apply transaction, after the apply lock is taken: an apply
    that overlaps another is refused with the lock message, one that follows it finds nothing to do.
    """
    progress = progress or QUIET
    prepared = prepare(config_dir, environment=environment, adopt=adopt, require_secrets=require_secrets,
                       allow_environment_change=allow_environment_change, environ=environ,
                       database_url=engine.url)
    prepared.warnings.extend(extra_warnings)
    _migrate(engine, progress)
    return execute(engine, prepared.plan_against, prepared.box, actor=actor or default_actor(),
                   environment=environment, adopt=adopt, allow_environment_change=allow_environment_change,
                   environ=environ, lock_timeout=lock_timeout, progress=progress)


def status(engine: Engine, config_dir: Path, environment: str | None) -> dict:
    """Reachability, schema, last apply, row counts and the pending plan; reads only."""
    from sqlalchemy import inspect

    from control_plane.db.models import ApplyRun
    from control_plane.kinds.registry import ROW_KINDS

    check_connection(engine)
    revision = current_revision(engine)
    pending = pending_migrations(engine)
    info: dict = {
        "database": engine.url.render_as_string(hide_password=True),
        "reachable": True,
        "schema_revision": revision,
        "schema_head": head_revision(),
        "pending_migrations": pending,
    }
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        last = None
        if ApplyRun.__tablename__ in tables:
            last = conn.execute(
                select(ApplyRun.__table__).order_by(ApplyRun.id.desc()).limit(1)
            ).mappings().first()
        info["last_apply"] = None if last is None else {
            "id": last["id"], "at": str(last["started_at"]), "actor": last["actor"],
            "config_revision": last["config_revision"], "environment": last["environment"],
        }
        info["rows"] = {}
        for kind, rk in ROW_KINDS.items():
            if rk.table.name not in tables:
                info["rows"][kind] = 0
                continue
            stmt = rk.only_system_rows(select(func.count()).select_from(rk.table))
            info["rows"][kind] = conn.execute(stmt).scalar_one()
    # Status reports a database bound to another environment instead of refusing.
    plan = make_plan(engine, config_dir, environment=environment, allow_environment_change=True).plan
    drift = sum(1 for c in plan.changes if c.cause == "drift")
    info["lineage"] = plan.database.get("lineage")
    info["database_environment"] = plan.database.get("environment")
    info["pending"] = plan.summary
    info["drift"] = drift
    info["adopt"] = len(plan.adoptions)
    info["unmanaged"] = len(plan.unmanaged)
    info["in_sync"] = not plan.changes and not pending
    return info
