"""The reconcile loop: config + database → Plan → apply. What the CLI and other code call."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, func, select

from control_plane import __version__
from control_plane.config.model import ConfigSet
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
from control_plane.reconcile.revision import config_revision  # noqa: F401 (part of this module's API)
from control_plane.reconcile.validation import load_checked
from control_plane.secrets import SecretBox
from control_plane.state.desired import DesiredState, Rows, build_desired, config_rows
from control_plane.state.keys import check_key
from control_plane.state.live import LiveState, read_live
from control_plane.state.schedule import config_now
from control_plane.state.schedule import now as clock

if TYPE_CHECKING:
    # Apply's machinery (apply/execute.py) is imported by the functions that apply: a plan never loads it.
    from control_plane.apply.execute import ApplyProgress, ApplyResult


@dataclass
class PlanResult:
    plan: Plan
    config: ConfigSet | None  # None: the plan came from the recorded state (no parse)
    fast_path: bool = False


def config_digest(config: ConfigSet) -> str:
    digest = hashlib.sha256()
    for path in sorted(set(config.files)):
        digest.update(str(path.relative_to(config.root) if path.is_relative_to(config.root) else path).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    digest.update((config.environment or "").encode())
    return digest.hexdigest()


def load_valid_config(config_dir: Path, environment: str | None, *, applied: bool = False,
                      lazy: bool = False) -> tuple[ConfigSet, Rows]:
    config, rows = load_checked(config_dir, environment, applied=applied, lazy=lazy)
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
    # The clock of the desired state, and the whole (timeless) config it was sliced from.
    at: datetime | None = None
    timeline: ConfigSet | None = None

    # Per row kind, the digests of its desired rows (reconcile/incremental.py): computed once, and
    # only for the kinds that need them (a kind whose table moved is read whatever its digest).
    _digests: dict[str, str] = field(default_factory=dict)
    _fingerprints: dict[str, dict[str, str]] = field(default_factory=dict)
    # The inputs (fastpath.Inputs) hashed before the config was read, and the environment the
    # secrets came from: when they are the record's, the desired rows are the ones it applied.
    inputs: Any = None
    environ: Any = None

    def kind_fingerprints(self, kind: str) -> dict[str, str]:
        if kind not in self._fingerprints:
            from control_plane.kinds.registry import ROW_KINDS
            from control_plane.state.rows import rows_fingerprints

            self._fingerprints[kind] = rows_fingerprints(ROW_KINDS[kind], self.desired.rows.get(kind, {}), self.box)
        return self._fingerprints[kind]

    def kind_digest(self, kind: str) -> str:
        if kind not in self._digests:
            from control_plane.kinds.registry import ROW_KINDS
            from control_plane.state.rows import rows_digest

            layout = self.layout()
            if layout is not None and not ROW_KINDS[kind].secret_columns:
                # By file: only the files that changed since the recorded apply are fingerprinted
                # (and not again where compare fingerprinted the kind's rows already).
                if kind in self._fingerprints:
                    layout.known[kind] = (self.desired.rows.get(kind, {}), self._fingerprints[kind])
                self._digests[kind] = layout.kind_digest(kind)
            else:
                self._digests[kind] = rows_digest(ROW_KINDS[kind], self.desired.rows.get(kind, {}),
                                                  self.kind_fingerprints(kind))
        return self._digests[kind]

    # Whether `desired` is `config` flattened (prepare); a rollback's desired rows are a run's.
    from_config: bool = False
    _layout: object = field(default=None, repr=False, compare=False)

    def layout(self):
        """The desired rows by file (reconcile/byfile.Layout), or None: some object did not come
        through the per-file cache, the config has timed objects, or the rows are not the config's."""
        if self._layout is None:
            from control_plane.reconcile.byfile import Layout

            usable = self.from_config and (self.timeline is None or self.timeline is self.config)
            self._layout = (Layout.of(self.config, self.box) if usable else None) or False
        return self._layout or None

    def files_record(self):
        """What the applied-state record keeps of the files (byfile.Layout.record), or None."""
        layout = self.layout()
        return layout.record() if layout is not None else None

    def scope(self, conn: Connection):
        """What changed since the last recorded apply (reconcile/incremental.Scope); None: read
        everything. A config with timed objects always reads everything (its schedule is planned
        from every kind's live rows)."""
        from control_plane.reconcile.incremental import scope

        if self.timeline is not None and self.timeline is not self.config:
            return None
        layout = self.layout()
        return scope(conn, self.desired, self.kind_digest, self.environment, self.box, self.kind_fingerprints,
                     on_record=layout.seed if layout is not None else None,
                     changed_keys=layout.changed_keys if layout is not None else None,
                     inputs=self.inputs, environ=self.environ)

    def read_live(self, conn: Connection, *, incremental: bool = True, carry: bool = False) -> LiveState:
        """The live state a plan compares: every kind, or (incremental) only what changed since the
        last recorded apply. carry: an apply's read, which keeps the unread rows (the desired ones)
        for its run record."""
        found = self.scope(conn) if incremental else None
        if found is None:
            return read_live(conn, self.box, desired=self.desired.rows)
        live = read_live(conn, self.box, found.full, found.keys, found.managed, found.changed, desired=self.desired.rows)
        if carry:
            from control_plane.reconcile.incremental import Carried

            # (Not built: the run record refers to the run the record came from; run_rows.py.)
            live.carried = Carried(self.desired, live, found.base_run)  # type: ignore[assignment]
        return live

    def plan_against(self, conn: Connection, live: LiveState | None = None, *, pending: int = 0,
                     incremental: bool = False) -> Plan:
        """The plan against what `conn` holds now (tables that do not exist yet read as empty).
        Refused when the database is bound to another environment (unless allowed). incremental:
        read and compare only the kinds that changed since the last recorded apply (the same plan)."""
        def counts(kind: str) -> dict[int, dict[str, int]]:
            return reference_counts(conn, {kind})[kind]

        identity = read_identity(conn)
        change = check_environment(identity, self.environment, self.allow_environment_change)
        if live is None:
            live = self.read_live(conn, incremental=incremental)
        check_key(conn, self.box, live.unreadable)
        found: dict[str, dict[str, str]] = {}
        plan = compare(self.desired, live, self.box, adopt=self.adopt, reference_counts=counts, fingerprints=found)
        for kind, fingerprints in found.items():  # (the same values: what kind_digest would compute again)
            self._fingerprints.setdefault(kind, fingerprints)
        if self.timeline is not None and self.at is not None:
            from control_plane.reconcile.timeline import plan_schedule

            plan_schedule(plan, conn, self.timeline, self.at, self.box, live, counts)
        from control_plane.policies.changes import check_changes  # CEL only when policies exist

        check_changes(plan, self.config, live, self.timeline if self.timeline is not self.config else None)
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
            database_url=None, at: datetime | str | None = None, applied: bool = False,
            lazy: bool = False) -> Prepared:
    """The desired state at `at` (state.schedule.now: --at, CPLANE_NOW or the system clock). A
    secret variable that is not set is an error in production or with `require_secrets`;
    elsewhere compare keeps the stored value (or leaves it unset) and warns. applied: the inputs
    are those of the recorded apply (reconcile/incremental.inputs_applied), whose config passed
    every check: the checks across files and the column limits are not run again
    (reconcile/validation.load_checked). lazy: for an incremental plan, the desired rows of cache
    entries read from disk are built only when asked for (state/lazyrows.py): the scope compares few.
    """
    environ = os.environ if environ is None else environ
    t = clock(at, environ)
    timeline, rows = load_valid_config(Path(config_dir), environment, applied=applied, lazy=lazy)
    config = config_now(timeline, t)
    if config is not timeline:
        rows = config_rows(config)
    desired = build_desired(config, environ, rows)
    warnings: list[str] = []
    if desired.missing_secrets and (require_secrets or is_production(environment)):
        names = ", ".join(f"{p.variable} ({p.kind}/{p.name} {p.field})" for p in desired.missing_secrets)
        raise CplaneError(f"secret environment variables are not set: {names}; nothing was planned")
    box = SecretBox(environment, database_url)
    digest = config_digest(config)
    return Prepared(config, desired, box, environment, adopt, warnings,
                    config_revision(Path(config_dir), digest), digest, allow_environment_change, t, timeline,
                    from_config=True, environ=environ)


def make_plan(
    engine: Engine,
    config_dir: Path,
    *,
    environment: str | None = None,
    adopt: bool = False,
    require_secrets: bool = False,
    allow_environment_change: bool = False,
    environ=None,
    fast_path: bool = True,
    at: datetime | str | None = None,
    incremental: bool | None = None,
    inputs=None,
    record: bool = False,
) -> PlanResult:
    """The plan against the database as it is: nothing is migrated or written. A schema that is
    missing or behind is planned against as it stands (missing tables read as empty) and the plan
    counts the pending migrations, which apply runs first.

    fast_path: first ask the record of the last apply whether anything changed at all
    (reconcile/fastpath.py); `No changes` then costs no parse and no row read. incremental (default:
    fast_path): read and compare only what changed since that record (reconcile/incremental.py);
    the CLI, which asked the record itself already, passes fast_path=False, incremental=True, and
    the `inputs` (fastpath.Inputs) it hashed then, if any, which are not hashed again.

    record: the plan is to be applied later (saved, or confirmed first): it carries the record its
    apply leaves for the fast path (`Plan.record`, fastpath.Recorder.draft), when one can be vouched
    for (incremental plans, whose inputs are hashed before the parse)."""
    incremental = fast_path if incremental is None else incremental
    if fast_path and at is None:  # a plan for another time is never the recorded one
        from control_plane.reconcile.fastpath import no_change_plan

        fast = no_change_plan(engine, config_dir, environment=environment, adopt=adopt, require_secrets=require_secrets,
                              environ=environ)
        if fast is not None:
            return PlanResult(fast, None, fast_path=True)
    hashed, inputs, applied, box = inputs, None, False, None
    if incremental and at is None:
        from control_plane.reconcile import fastpath
        from control_plane.reconcile.incremental import inputs_applied

        if (box := fastpath.secret_box(environment, engine.url)) is not None:
            # Before the config is read (Prepared.inputs).
            inputs = hashed if _inputs_for(hashed, environment, box) else fastpath.inputs(Path(config_dir), environment, box)
            applied = inputs_applied(engine, inputs, environ, box)
    from control_plane.collector import paused_gc

    # The collector off while the plan is made, as apply's plan is (apply/execute.py): the config
    # just loaded is hundreds of thousands of objects that stay alive, which each full collection
    # would walk again to find nothing (collector.py); whatever cycle there is is collected after.
    with paused_gc():
        prepared = prepare(config_dir, environment=environment, adopt=adopt, require_secrets=require_secrets,
                           allow_environment_change=allow_environment_change, environ=environ,
                           database_url=engine.url, at=at, applied=applied, lazy=incremental)
        prepared.inputs = inputs
        # The recorded apply migrated to the head of these very migrations first, and the schema is
        # still at the revision it recorded (both are in the inputs): nothing is pending.
        pending = 0 if applied else pending_migrations(engine)
        recorder = None
        if record and inputs is not None and box is not None:
            recorder = fastpath.Recorder(inputs, environ if environ is not None else os.environ, box,
                                         prepared.desired, prepared.kind_digest, prepared.files_record)
        with engine.connect() as conn:
            if recorder is None:
                plan = prepared.plan_against(conn, pending=pending, incremental=incremental)
            else:
                recorder.start(conn)  # the versions before the plan reads anything
                live = prepared.read_live(conn, incremental=incremental)
                plan = prepared.plan_against(conn, live, pending=pending, incremental=incremental)
                plan.record = recorder.draft(conn, plan, live)
    return PlanResult(plan, prepared.config)


def _inputs_for(inputs, environment: str | None, box: SecretBox) -> bool:
    """Whether `inputs` (hashed by the caller before anything was read) are this run's: the same
    environment, secret key and schedule bucket (now's; the config tree is the caller's)."""
    from control_plane.reconcile.nochange import schedule_bucket

    return (inputs is not None and inputs.environment == environment and inputs.key_id == box.key_id
            and inputs.bucket == schedule_bucket(environment))


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


def check_policies_unchanged(plan: Plan, config_dir: Path, environment: str | None) -> None:
    """A saved plan was checked against the policies of its time: applying it after they changed
    would skip the check, so it is refused (before anything is migrated or written).

    Only the Policy documents are needed: the tree is loaded through the per-file cache
    (config/cache.py), where a file whose content is cached is not parsed, and a cached object's
    spec is parsed again (from the file, its content checked) only when asked for: here only the
    policies' files. Without a cache entry a file is parsed as by any load; the digest is the same."""
    from control_plane.config.validate import load_config
    from control_plane.policies.compile import policies_digest
    from control_plane.reconcile.validation import packed_rows

    if not plan.has_changes:
        return  # nothing for a policy to judge (a no-change plan from the fast path carries no digest)
    # cross_checks off: the digest is of the policies as written, whatever the rest says (as before).
    config = load_config(config_dir, environment, flatten=packed_rows, cross_checks=False)
    now = policies_digest(config)
    if (plan.policies_digest or "") != now:
        raise PlanRejected("refusing to apply the plan: the policies changed since it was made (plan: "
                           f"{plan.policies_digest[:19] or 'no policies'}, config now: {now[:19] or 'no policies'}); "
                           "make a new plan")


def _env(environment: str | None) -> str:
    return f"environment {environment!r}" if environment else "no environment"


def apply_plan(engine: Engine, plan: Plan, *, environment: str | None, actor: str | None = None,
               saved: bool = False, adopt: bool = False, allow_environment_change: bool = False,
               environ=None, lock_timeout: float = 0, progress: ApplyProgress | None = None,
               config_dir: Path | None = None) -> ApplyResult:
    """Apply a plan computed earlier. saved: a plan read from a file, applied only to the database
    and environment it was made for (checked before anything is migrated or written), and, given
    `config_dir`, only while the config's policies are the ones it was checked against."""
    if saved:
        check_binding(engine, plan, environment)
        if config_dir is not None:
            check_policies_unchanged(plan, Path(config_dir), environment)
    from control_plane.apply.execute import QUIET, execute, refuse_unapproved_adoptions
    from control_plane.reconcile.timeline import check_fresh

    check_fresh(plan, clock(None, environ))
    if plan.changes:
        refuse_unapproved_adoptions(plan, adopt)
    from control_plane.reconcile.fastpath import PlannedRecorder
    from control_plane.reconcile.saved import plan_reader

    progress = progress or QUIET
    _migrate(engine, progress)
    box = SecretBox(environment, engine.url)
    return execute(engine, plan, box, actor=actor or default_actor(),
                   environment=environment, saved=saved, adopt=adopt,
                   allow_environment_change=allow_environment_change, environ=environ,
                   lock_timeout=lock_timeout, progress=progress, read=plan_reader(plan, box),
                   recorder=PlannedRecorder(plan.record) if plan.record else None)


def apply_config(engine: Engine, config_dir: Path, *, environment: str | None = None, actor: str | None = None,
                 adopt: bool = False, require_secrets: bool = False, allow_environment_change: bool = False,
                 environ=None, lock_timeout: float = 0, progress: ApplyProgress | None = None,
                 fast_path: bool = True, at: datetime | str | None = None,
                 extra_warnings: tuple[str, ...] = (), prepared: Prepared | None = None,
                 inputs=None, incremental: bool | None = None) -> ApplyResult:
    """Plan and apply in one go (what `cplane apply --auto-approve` does). `extra_warnings` go into
    the plan, and so into its audit record (e.g. an apply that overrode a change window).

    The plan is computed inside the apply transaction, after the apply lock is taken: an apply
    that overlaps another is refused with the lock message, one that follows it finds nothing to do.
    With fast_path, the plan under the lock reads and compares only the tables that changed since
    the last recorded apply (reconcile/incremental.py). `prepared` (with the `inputs` taken before
    it was parsed): a caller that already parsed the config (apply_due) is not made to parse it again.
    incremental (default: fast_path): as make_plan's; the CLI tried the no-change apply itself.
    """
    from control_plane.apply.execute import QUIET, ApplyResult, execute
    from control_plane.reconcile import fastpath

    incremental = fast_path if incremental is None else incremental

    progress = progress or QUIET
    environ = os.environ if environ is None else environ
    box = fastpath.secret_box(environment, engine.url)  # None: prepare() reports why
    # Before the config is read: an edit made meanwhile can only make the record miss, never lie.
    if prepared is None and not (box is not None and at is None and _inputs_for(inputs, environment, box)):
        inputs = fastpath.inputs(Path(config_dir), environment, box) if box is not None else None
    if fast_path and box is not None and at is None and prepared is None:
        fast = fastpath.no_change_apply(engine, config_dir, environment=environment, adopt=adopt,
                                        require_secrets=require_secrets, environ=environ, box=box,
                                        lock_timeout=lock_timeout, progress=progress)
        if fast is not None:
            return ApplyResult(False, fast.summary, plan=fast)
    from control_plane.collector import paused_gc

    # The collector off from the parse to the commit (as make_plan's; execute pauses it too).
    with paused_gc():
        if prepared is None:
            prepared = prepare(config_dir, environment=environment, adopt=adopt, require_secrets=require_secrets,
                               allow_environment_change=allow_environment_change, environ=environ,
                               database_url=engine.url, at=at, lazy=incremental)
        prepared.warnings.extend(extra_warnings)
        prepared.inputs = prepared.inputs or inputs
        _migrate(engine, progress)
        recorder = None
        if inputs is not None and box is not None:
            recorder = fastpath.Recorder(inputs, environ, box, prepared.desired, prepared.kind_digest,
                                         prepared.files_record)

        def read(conn: Connection) -> LiveState:
            return prepared.read_live(conn, incremental=incremental, carry=True)

        return execute(engine, prepared.plan_against, prepared.box, actor=actor or default_actor(),
                       environment=environment, adopt=adopt, allow_environment_change=allow_environment_change,
                       environ=environ, lock_timeout=lock_timeout, progress=progress, recorder=recorder, read=read)


def apply_due(engine: Engine, config_dir: Path, *, environment: str | None = None, actor: str | None = None,
              at: datetime | str | None = None, environ=None):
    """Apply what is due at `at` (default: now), as `cplane apply --auto-approve` does; what a
    control loop calls when a scheduled change falls due. Refuses while the database is rolled back
    and the config is the one it was rolled back from (see `rollback_hold`)."""
    from control_plane.apply.execute import PlanStale
    from control_plane.reconcile import fastpath
    from control_plane.reconcile.timeline import rollback_hold

    environ = os.environ if environ is None else environ
    box = fastpath.secret_box(environment, engine.url)
    # Taken before the one parse, which apply_config then reuses (it used to parse the config again).
    inputs = fastpath.inputs(Path(config_dir), environment, box) if box is not None else None
    prepared = prepare(config_dir, environment=environment, environ=environ, database_url=engine.url, at=at)
    with engine.connect() as conn:
        hold = rollback_hold(conn, prepared.digest)
    if hold:
        raise PlanStale(hold)
    return apply_config(engine, config_dir, environment=environment, actor=actor, environ=environ, at=at,
                        prepared=prepared, inputs=inputs)


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
    info["in_sync"] = not plan.has_changes and not pending
    from control_plane.reconcile.timeline import rollback_state, status_schedule

    with engine.connect() as conn:
        rolled = rollback_state(conn)
    info["rolled_back"] = None if rolled is None else {**rolled, "differs_from_config": plan.has_changes}
    info.update(status_schedule(plan))
    return info
