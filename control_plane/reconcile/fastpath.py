"""The no-change fast path: "nothing changed since the last apply" without parsing or reading rows.

An apply records what it applied (cplane_applied_state, one row):

- `inputs_digest`: SHA-256 over every YAML file of the config tree (overlays included: a plan checks
  them all), the selected environment, cplane's version, the migrations it ships, the secret key's
  id and the schedule bucket (`schedule_bucket`, the input of effective-dated changes);
- `variables` and `secrets_digest`: the environment variables the config's secrets name, and an
  HMAC of their values keyed by the secret key (the values are never stored);
- `versions`: the change-counter version (db/counters.py) of every table a plan reads, read after
  the apply's own writes inside its transaction; recorded only when no other transaction wrote
  one of those tables between the apply's first read and its commit.

A plan compares those first (`try_no_change`). When every input and every version matches, the
database holds exactly what the last apply left, which was the config: the plan is `No changes`.
Any doubt returns None and the caller makes the full plan: no record, counters missing or a trigger
gone, a table written since (by SQL too), another file, overlay, secret value, key, cplane version or
schema revision, a secret variable that is unset (its warning comes from the full plan), a plan that
adopts. The record is written only when the result can be vouched for: the plan was computed under
the apply lock (or, for a plan made earlier, its draft's versions still held under the lock:
`PlannedRecorder`), it left no unmanaged row and no row kept retired (whose fate depends on user
data, which is not counted).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, delete, inspect, text

from control_plane import __version__  # noqa: F401 (the version the record binds: reconcile/nochange.py)
from control_plane.reconcile import nochange
from control_plane.reconcile.nochange import (  # noqa: F401 (this module's interface since the fast path exists)
    MIGRATIONS,
    RECORD_TABLE,
    YAML_SUFFIXES,
    Inputs,
    Recorded,
    _json,
    _migrations,
    schedule_bucket,
    secrets_digest,
    tree_digest,
    unset,
)

if TYPE_CHECKING:
    from control_plane.plans.model import Plan

# The bookkeeping tables a plan reads besides the row kinds' own tables.
BOOKKEEPING_TABLES = ("cplane_managed_objects", "cplane_secret_keys", "cplane_database")


class SQLAlchemySource:
    """The no-change decision's query interface (reconcile/nochange.py) over a SQLAlchemy
    connection; db/raw.py's RawSource is the same over a driver connection."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.dialect = conn.dialect.name

    def rows(self, sql: str) -> list[tuple]:
        return [tuple(r) for r in self.conn.execute(text(sql))]


def inputs(config_dir: Path, environment: str | None, box, at: datetime | None = None) -> Inputs:
    return nochange.inputs(config_dir, environment, box, at)


def secret_variables(desired) -> list[str]:
    """Every environment variable the desired rows' secrets name."""
    from control_plane.state.lazyrows import secret_rows

    names: set[str] = set()
    for rows in desired.rows.values():
        for row in secret_rows(rows):  # (the others name none; a lazy kind builds only these)
            for ref in (row.secret_refs or {}).values():
                if isinstance(ref, dict):
                    names.update(ref.values())
                elif ref is not None:
                    names.add(ref)
    return sorted(names)


def plan_tables() -> list[str]:
    """Every table a plan reads: the row kinds' tables, their version history and the bookkeeping."""
    from control_plane.kinds.registry import ROW_KINDS

    tables = {rk.table_name for rk in ROW_KINDS.values()}
    tables |= {rk.history.model.__tablename__ for rk in ROW_KINDS.values() if rk.history is not None}
    return sorted(tables | set(BOOKKEEPING_TABLES))


def _schema_revision(conn: Connection) -> str | None:
    return nochange.schema_revision(SQLAlchemySource(conn))


def _current_versions(conn: Connection, tables: list[str]) -> dict[str, int] | None:
    """The counters of `tables`, or None unless every one of them is counted (triggers in place)."""
    return nochange.current_versions(SQLAlchemySource(conn), tables)


def read_record(conn: Connection) -> dict[str, Any] | None:
    """nochange.read_record's columns, plus the per-table record (revision 0013) that the
    incremental plan reads; the no-change decision itself needs only the former."""
    record = nochange.read_record(SQLAlchemySource(conn))
    if record is None:
        return None
    record["tables"] = None
    if "tables" in {c["name"] for c in inspect(conn).get_columns(RECORD_TABLE)}:
        value = conn.execute(text(f"SELECT tables FROM {RECORD_TABLE} ORDER BY id DESC LIMIT 1")).scalar()
        record["tables"] = nochange._json(value)
    return record


def try_no_change(conn: Connection, config_dir: Path, environment: str | None, box, environ=None,
                  *, adopt: bool = False) -> Recorded | None:
    """The record when the database holds exactly what the last apply left and the desired state
    is the one it applied; None at any doubt (the caller then makes the full plan)."""
    return nochange.try_no_change(SQLAlchemySource(conn), config_dir, environment, box, environ, adopt=adopt)


def _identity(conn: Connection) -> dict[str, Any] | None:
    """db.identity's Identity as a dict, read without the models; None when not migrated."""
    return nochange.identity(SQLAlchemySource(conn))


def secret_box(environment: str | None, database_url):
    """The process's SecretBox, or None when it cannot be made (no key, a malformed one): the full
    plan then reports that, in its order of errors."""
    from control_plane.errors import CplaneError
    from control_plane.secrets import SecretBox

    try:
        return SecretBox(environment, database_url)
    except CplaneError:
        return None


def no_change_plan(engine: Engine, config_dir: Path, *, environment: str | None = None, adopt: bool = False,
                   require_secrets: bool = False, environ=None, conn: Connection | None = None,
                   box=None, wanted: Inputs | None = None) -> Plan | None:
    """`No changes`, from the record of the last apply, when nothing changed since; None at any
    doubt (then the full plan answers). Reads a handful of small rows, no config object, no system row.
    The decision is reconcile/nochange.py's, which the raw-driver path (cli/entry.py) makes too.
    `wanted`: the inputs (`inputs` of this config, environment and `box`), hashed by the caller."""
    from control_plane.db.engine import check_connection

    if adopt:
        return None
    box = box or secret_box(environment, engine.url)
    if box is None:
        return None
    if conn is None:
        check_connection(engine)
        with engine.connect() as own:
            return no_change_plan(engine, config_dir, environment=environment, require_secrets=require_secrets,
                                  environ=environ, conn=own, box=box, wanted=wanted)
    answer = nochange.decide(SQLAlchemySource(conn), Path(config_dir), box, environment=environment,
                             require_secrets=require_secrets, environ=environ, wanted=wanted)
    return None if answer is None else nochange.plan_of(answer, Path(config_dir), environment)


def no_change_apply(engine: Engine, config_dir: Path, *, environment: str | None = None, adopt: bool = False,
                    require_secrets: bool = False, environ=None, box=None, lock_timeout: float = 0,
                    progress=None) -> Plan | None:
    """What a no-op `apply` does: the fast plan, confirmed under the apply lock (an apply that
    overlaps another is refused with the lock message, as always). None: plan and apply in full."""
    from control_plane.apply.lock import apply_lock

    box = box or secret_box(environment, engine.url)
    if box is None:
        return None
    kwargs = dict(environment=environment, adopt=adopt, require_secrets=require_secrets, environ=environ, box=box)
    if no_change_plan(engine, config_dir, **kwargs) is None:
        return None
    if progress is not None:
        progress.phase("locking")
    with engine.begin() as conn, apply_lock(conn, lock_timeout, progress.waiting if progress is not None else None):
        return no_change_plan(engine, config_dir, conn=conn, **kwargs)


def _locked_versions(conn: Connection, tables: list[str]) -> dict[str, int]:
    """The versions of `tables`, their counter rows locked (PostgreSQL; SKIP LOCKED, never waiting:
    a row another transaction holds is left out, so the versions differ from any recorded ones)."""
    from sqlalchemy import select

    from control_plane.db.models import ChangeCounter

    table = ChangeCounter.__table__
    stmt = (select(table.c.table_name, table.c.version).where(table.c.table_name.in_(tables))
            .with_for_update(skip_locked=True))
    return {name: int(version) for name, version in conn.execute(stmt)}


class Recorder:
    """What an apply (under the lock, plan computed inside it) does to leave a record behind.

    start(): the versions before the apply reads anything; lock(): just before its writes, the
    counter rows of every plan table are locked (PostgreSQL; SKIP LOCKED, never waiting) and must
    still read as at start(): from then on only this transaction can move them; finish(): the
    versions after the writes, written with the inputs when the result can be vouched for."""

    def __init__(self, inputs: Inputs, environ, box, desired, digest: Callable[[str], str],
                 files: Callable[[], dict[str, Any] | None] | None = None):
        self.inputs = inputs
        self.environ = environ
        self.box = box
        self.desired = desired
        # Per row kind, the digest of the desired rows (Prepared.kind_digest, computed once per plan and
        # shared with reconcile/incremental.py), recorded beside the versions.
        self.digest = digest
        # The files the desired rows came from (reconcile/byfile.Layout.record: the cache's salt, each
        # file's content digest and per-kind digests), or None; kept beside the kinds' digests.
        self.files = files
        self.tables = plan_tables()
        self.before: dict[str, int] | None = None
        self.clean = True

    def start(self, conn: Connection) -> None:
        self.before = _current_versions(conn, self.tables)
        self.clean = self.before is not None

    def lock(self, conn: Connection) -> None:
        if self.clean:
            self.clean = _locked_versions(conn, self.tables) == self.before

    def prepare(self, plan, live) -> None:
        """Before the writes (apply/execute runs it in a second thread while the database writes):
        the kinds' digests that finish() will record, when it looks like it will record, so that
        finish() finds them computed. Only reads the plan, the live state and the desired rows."""
        if self.clean and self._exact(plan, live):
            from control_plane.kinds.registry import ROW_KINDS

            for kind in ROW_KINDS:
                self.digest(kind)

    def finish(self, conn: Connection, plan, live, run_id: int | None, *, wrote: bool) -> None:
        """After the apply's last write (or, for a no-op apply, after planning): replace the record."""
        if not inspect(conn).has_table(RECORD_TABLE):
            return
        after = _current_versions(conn, self.tables) if self.clean else None
        if not wrote and after != self.before:
            after = None  # another transaction wrote while this apply planned
        eligible = after is not None and self._exact(plan, live)
        variables = secret_variables(self.desired)
        secrets = secrets_digest(variables, self.environ, self.box)
        tables = self._tables(conn) if eligible else None
        if not wrote:
            record = read_record(conn)
            if not eligible or (record is not None and record["versions"] == after
                                and record["inputs_digest"] == self.inputs.digest(_schema_revision(conn))
                                and record["secrets_digest"] == secrets and record["tables"] == tables):
                return  # a no-op apply writes nothing it does not have to
        _clear_record(conn)
        if eligible:
            _insert_record(conn, plan, run_id, versions=after, inputs_digest=self.inputs.digest(_schema_revision(conn)),
                           secrets_digest=secrets, variables=variables, tables=tables)

    def draft(self, conn: Connection, plan, live) -> dict[str, Any] | None:
        """For a plan made to be applied later (a saved plan; start() called before its read): the
        record its apply would leave but for the versions after the writes and the run, with the
        versions the plan read. None when it could not be vouched for: a table moved while the
        plan read, migrations pending (the apply moves the schema first), a plan that is not exact."""
        if not self.clean or plan.pending_migrations or not inspect(conn).has_table(RECORD_TABLE):
            return None
        if _current_versions(conn, self.tables) != self.before or not self._exact(plan, live):
            return None
        variables = secret_variables(self.desired)
        return {"versions": self.before, "inputs_digest": self.inputs.digest(_schema_revision(conn)),
                "secrets_digest": secrets_digest(variables, self.environ, self.box), "variables": variables,
                "tables": self._tables(conn)}

    def _tables(self, conn: Connection) -> dict[str, Any]:
        from control_plane.kinds.registry import ROW_KINDS

        digests = {k: self.digest(k) for k in ROW_KINDS}
        tables = {"context": self.inputs.context(_schema_revision(conn)), "kinds": digests}
        files = self.files() if self.files is not None else None
        if files is not None:
            tables.update(files)  # "salt", "files": an older cplane reads the record without them
        return tables

    def _exact(self, plan, live) -> bool:
        """Whether the database holds exactly the config once the plan is applied: every managed row
        is a config row (none kept retired, whose fate depends on uncounted user data), no
        unmanaged row is listed, and the plan's warnings are the secret variables' only (no
        environment change), which a plan from the record repeats."""
        from control_plane.plans.model import Action

        if plan.unmanaged or plan.errors or plan.environment_change or any(c.action == Action.RETIRE for c in plan.changes):
            return False
        # A config with scheduled changes or time windows: its desired state moves with the clock,
        # which the record does not capture yet; such configs always get the full plan.
        if plan.valid_until or plan.scheduled:
            return False
        managed = sum(len(v) for v in live.managed.values())
        # Kinds the plan did not read are, by the record it trusted, exactly their desired rows.
        from control_plane.state.live import out_of_scope_count

        managed += sum(out_of_scope_count(live, kind, rows) for kind, rows in self.desired.rows.items())
        managed += sum(1 for c in plan.changes if c.action in (Action.CREATE, Action.ADOPT))
        managed -= sum(1 for c in plan.changes if c.action == Action.DELETE)
        return managed == sum(len(v) for v in self.desired.rows.values())


class PlannedRecorder:
    """What the apply of a plan made earlier records: its draft (Recorder.draft), when under the apply
    lock every plan table's version is still the one the plan read. The database then holds what
    the plan was computed from, so once the plan is written it holds what the draft describes, as
    after an apply that planned under the lock. Otherwise nothing is recorded and the last record
    stays as it was (it still vouches for the tables that did not move since)."""

    def __init__(self, draft: dict[str, Any]):
        self.draft = draft
        self.tables = plan_tables()
        self.clean = False

    # A draft's fields and their JSON types (anything else, e.g. a hand-edited plan, records nothing).
    FIELDS = {"versions": dict, "inputs_digest": str, "secrets_digest": str, "variables": list, "tables": dict}

    def start(self, conn: Connection) -> None:
        draft = self.draft if isinstance(self.draft, dict) else {}
        self.clean = (all(isinstance(draft.get(k), t) for k, t in self.FIELDS.items())
                      and _current_versions(conn, self.tables) == draft["versions"])

    def lock(self, conn: Connection) -> None:
        if self.clean:
            self.clean = _locked_versions(conn, self.tables) == self.draft["versions"]

    def prepare(self, plan, live) -> None:
        pass  # (the draft's digests were computed with the plan)

    def finish(self, conn: Connection, plan, live, run_id: int | None, *, wrote: bool) -> None:
        if not (self.clean and wrote) or not inspect(conn).has_table(RECORD_TABLE):
            return
        after = _current_versions(conn, self.tables)
        if after is None:
            return
        _clear_record(conn)
        _insert_record(conn, plan, run_id, versions=after,
                       **{k: self.draft[k] for k in ("inputs_digest", "secrets_digest", "variables", "tables")})


def _clear_record(conn: Connection) -> None:
    """The record gone, and the row-change log below the versions of now (no record needs it any more)."""
    from control_plane.db.counters import prune
    from control_plane.db.models import AppliedState

    conn.execute(delete(AppliedState.__table__))
    prune(conn)


def _insert_record(conn: Connection, plan, run_id: int | None, *, versions: dict[str, int], inputs_digest: str,
                   secrets_digest: str, variables: list[str], tables: dict[str, Any]) -> None:
    """The record of an apply run of `plan`, with the versions after its writes (_clear_record first)."""
    from sqlalchemy import insert

    from control_plane.db.models import AppliedState

    conn.execute(insert(AppliedState.__table__).values(
        apply_run_id=run_id, inputs_digest=inputs_digest, config_digest=plan.config_digest,
        secrets_digest=secrets_digest, variables=variables, versions=versions, warnings=list(plan.warnings),
        tables=tables, recorded_at=datetime.now(UTC),
    ))
