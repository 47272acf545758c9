"""`cplane rollback --to RUN`: an ordinary plan whose result is the state apply run RUN left,
computed against the live database. Reads only; applied like any plan (`cplane apply FILE`), and
audited as a rollback (run kind `rollback`, `rollback_to` in its plan)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from control_plane.apply.run_rows import read_run_rows, retention
from control_plane.db.engine import check_connection, pending_migrations
from control_plane.db.models import RunRows
from control_plane.errors import CplaneError
from control_plane.plans.model import Plan
from control_plane.plans.rollback import rollback_desired
from control_plane.secrets import SecretBox
from control_plane.state.live import existing_tables


class RunNotKept(CplaneError):
    code = "not_found"


def make_rollback_plan(engine: Engine, config_dir: Path, run_id: int, *, environment: str | None = None,
                       environ=None) -> Plan:
    from control_plane.reconcile.controller import Prepared, config_digest, config_revision
    from control_plane.reconcile.validation import load_checked

    check_connection(engine)
    # The config in force is recorded with the rollback: a control loop waits for a new one.
    config, _ = load_checked(Path(config_dir), environment)
    digest = config_digest(config) if config.files else ""
    with engine.connect() as conn:
        state = read_run_rows(conn, run_id) if RunRows.__tablename__ in existing_tables(conn) else None
        if state is None:
            raise RunNotKept(f"apply run #{run_id} has no kept rows to roll back to (no such run, a run older "
                             f"than the newest {retention(environ)} runs kept, or one made before cplane kept them)")
        prepared = Prepared(config, rollback_desired(state, environ), SecretBox(environment, engine.url),
                            environment, False, [], config_revision(Path(config_dir), digest), digest)
        plan = prepared.plan_against(conn, pending=pending_migrations(engine))
    plan.rollback_to = run_id
    return plan
