"""`cplane plan`, `apply`, `status`, `history` and the `reconcile` group (docs/reference.md §3, §4)."""

from __future__ import annotations

import json
import sys

import click

from control_plane.cli.context import Context, common_options, emit_json, lock_timeout_option
from control_plane.errors import CplaneError


def replace(plan, **changes):
    """A copy of the plan (dataclasses.replace, imported when used: start-up stays light)."""
    from dataclasses import replace as dataclass_replace

    return dataclass_replace(plan, **changes)


def _plan_errors(plan, fmt: str, rendered_json: str | None = None) -> CplaneError:
    """The plan's errors as the one error the CLI prints (the text rendering leaves them out, so each
    is printed once); with --format json the plan goes with it, in the same JSON document."""
    error = CplaneError("; ".join(plan.errors), code="plan_error")
    if fmt == "json" and rendered_json is not None:
        error.details = {"plan": json.loads(rendered_json)}
    return error


def echo_text(plan, *, colour: bool, compact: bool = False) -> None:
    """The text plan on stdout, written piece by piece as it is rendered (the bytes of
    `click.echo(render_text(...))`): the plan of a 100,000-row first apply is 36 MB of text, never
    held whole."""
    from control_plane.render.plan import text_pieces

    for piece in text_pieces(plan, colour=colour, compact=compact):
        click.echo(piece, nl=False)


def _raw_decided(ctx: Context, command: str):
    """The inputs cli/entry.py's raw path hashed in this process before the record it read said
    that something changed (reconcile/nochange.Inputs), for this command line; else None."""
    from control_plane.cli.decided import take_decided

    return take_decided(command, ctx.config_dir, ctx.environment, ctx.database_url)


def _plan_options(func):
    func = click.option("--adopt", is_flag=True, help="Take existing rows with the same natural key under management.")(func)
    func = click.option("--require-secrets", is_flag=True, help="Fail when a referenced secret variable is unset.")(func)
    func = click.option("--allow-environment-change", is_flag=True,
                        help="Plan or apply for another environment than the one the database is recorded as (audited).")(func)
    return func


def _fast_path_option(func):
    return click.option("--no-fast-path", "no_fast_path", is_flag=True,
                        help="Always parse the config and read every row, even when the record of the last apply "
                             "says nothing changed since.")(func)


@click.command("plan")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text")
@click.option("--out", type=click.Path(dir_okay=False), help="Save the plan (JSON) for `cplane apply PLANFILE`.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes.")
@click.option("--compact", is_flag=True,
              help="Text and markdown: count each kind's creates instead of listing them with their attributes.")
@click.option("--artifact", metavar="MARKDOWN",
              help="Markdown: where the full plan is (e.g. a link to the CI artifact), named when the plan is "
                   "too long for a GitHub comment.")
@click.option("--at", "at", metavar="TIMESTAMP",
              help="Plan the desired state as it will be at this time (RFC 3339 with a zone, e.g. 2027-01-01T00:00:00Z).")
@_plan_options
@_fast_path_option
@common_options
def plan_command(ctx: Context, fmt: str, out: str | None, detailed_exitcode: bool, compact: bool, artifact: str | None,
                 adopt: bool, require_secrets: bool, allow_environment_change: bool, at: str | None, no_fast_path: bool):
    """Compute the changes that would make the database match the config."""
    from control_plane.reconcile import fastpath
    from control_plane.render.plan import render_json, render_markdown

    engine = ctx.engine(read_only=True)
    # First the record of the last apply (light: no parse, no row, not even the models imported),
    # unless the raw path (cli/entry.py) of this process asked it already and it said no. The
    # inputs hashed for that question serve the incremental plan too: the tree is hashed once.
    # A plan for another time (--at) is never the recorded one.
    plan = hashed = None
    if not no_fast_path and at is None:
        hashed = _raw_decided(ctx, "plan")
        if hashed is None and not adopt and (box := fastpath.secret_box(ctx.environment, engine.url)) is not None:
            hashed = fastpath.inputs(ctx.config_dir, ctx.environment, box)
            plan = fastpath.no_change_plan(engine, ctx.config_dir, environment=ctx.environment,
                                           require_secrets=require_secrets, box=box, wanted=hashed)
    fast = plan is not None
    if plan is None:
        from control_plane.reconcile.controller import make_plan

        # (The no-change question was asked above; the plan is still incremental unless --no-fast-path.)
        plan = make_plan(engine, ctx.config_dir, environment=ctx.environment, adopt=adopt,
                         require_secrets=require_secrets, allow_environment_change=allow_environment_change,
                         fast_path=False, incremental=not no_fast_path, at=at, inputs=hashed,
                         record=bool(out)).plan  # a saved plan carries what its apply records
    if fast and ctx.debug:
        click.echo("plan: nothing changed since the last apply (its recorded state: config digest, secrets, table "
                   "versions); --no-fast-path makes the full plan", err=True)
    if fmt == "text":
        echo_text(replace(plan, errors=[]), colour=ctx.colour(), compact=compact)
    else:
        for warning in plan.warnings:
            click.echo(f"warning: {warning}", err=True)
        if fmt == "json" and plan.errors:
            raise _plan_errors(plan, fmt, render_json(plan))
        if fmt == "markdown":
            click.echo(render_markdown(plan, artifact=artifact, compact=compact))
        else:
            click.echo(render_json(plan))
    if out:
        from control_plane.plans.planfile import write_plan

        write_plan(plan, out)
        click.echo(f"Saved the plan to {out}; apply it with `cplane apply {out}`.", err=True)
    if plan.errors:
        raise _plan_errors(plan, fmt)
    sys.exit(2 if detailed_exitcode and plan.has_changes else 0)


@click.command("apply")
@click.argument("planfile", required=False, type=click.Path(dir_okay=False))
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
@click.option("--actor", help="Who applies, for the audit record (default: OS user).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--override-window", is_flag=True,
              help="Apply even while a deny change window (SyncWindow) is open; audited.")
@lock_timeout_option
@_plan_options
@_fast_path_option
@common_options
def apply_command(ctx: Context, planfile: str | None, auto_approve: bool, actor: str | None, fmt: str,
                  override_window: bool, lock_timeout: float, adopt: bool, require_secrets: bool,
                  allow_environment_change: bool, no_fast_path: bool):
    """Apply a saved plan (the reviewed plan is the approval: no confirmation), or compute and apply a fresh one."""
    from control_plane.cli.progress import ApplyReporter
    from control_plane.plans.model import Plan
    from control_plane.reconcile import fastpath
    from control_plane.render.plan import NO_CHANGES, summary_line
    from control_plane.watch.windows import manual_apply_guard

    reporter = ApplyReporter(colour=ctx.colour(sys.stderr))
    window_note = manual_apply_guard(ctx.config_dir, ctx.environment, override_window)

    def show(plan: Plan) -> None:
        if fmt == "text":
            echo_text(replace(plan, errors=[]), colour=ctx.colour())
        else:
            for warning in plan.warnings:
                click.echo(f"warning: {warning}", err=True)
        if plan.errors:
            raise _plan_errors(plan, fmt)

    def done(plan: Plan, result) -> None:
        if fmt == "json":
            emit_json({"applied": result.applied, "summary": result.summary, "rows_written": result.rows_written,
                       "apply_run_id": result.apply_run_id, **({} if result.applied else {"message": NO_CHANGES})})
        elif result.applied:
            click.echo(f"Apply complete. {summary_line(plan)[len('Plan: '):]}")

    engine = ctx.engine()
    # As plan's: the raw path's inputs when it read the record and found that something changed.
    hashed = _raw_decided(ctx, "apply") if planfile is None and not no_fast_path else None
    if planfile is None and not no_fast_path and hashed is None:
        # Nothing changed since the last apply (confirmed under the apply lock): nothing to do, nothing imported.
        try:
            plan = fastpath.no_change_apply(engine, ctx.config_dir, environment=ctx.environment, adopt=adopt,
                                            require_secrets=require_secrets, lock_timeout=lock_timeout,
                                            progress=reporter)
        finally:
            reporter.close()
        if plan is not None:
            show(plan)
            if fmt == "json":
                emit_json({"applied": False, "summary": plan.summary, "message": NO_CHANGES})
            return
    from control_plane.apply.execute import refuse_unapproved_adoptions
    from control_plane.plans.planfile import read_plan
    from control_plane.reconcile.controller import (
        apply_config,
        apply_plan,
        check_binding,
        check_policies_unchanged,
        make_plan,
    )

    if planfile is None and auto_approve:
        # Nobody reviews this plan, so it is computed under the apply lock: no stale-plan refusals.
        try:
            result = apply_config(engine, ctx.config_dir, environment=ctx.environment, actor=actor, adopt=adopt,
                                  require_secrets=require_secrets, allow_environment_change=allow_environment_change,
                                  lock_timeout=lock_timeout, progress=reporter, fast_path=False,
                                  incremental=not no_fast_path, inputs=hashed,
                                  extra_warnings=(window_note,) if window_note else ())
        finally:
            reporter.close()
        show(result.plan)
        done(result.plan, result)
        return
    if planfile:
        try:
            plan = read_plan(planfile)
        except FileNotFoundError:
            raise CplaneError(f"plan file {planfile} does not exist") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise CplaneError(f"{planfile} is not a cplane plan: {exc}") from None
        check_binding(engine, plan, ctx.environment)
        check_policies_unchanged(plan, ctx.config_dir, ctx.environment)
    else:
        plan = make_plan(engine, ctx.config_dir, environment=ctx.environment, adopt=adopt,
                         require_secrets=require_secrets, allow_environment_change=allow_environment_change,
                         fast_path=False, incremental=not no_fast_path, inputs=hashed,
                         record=True).plan  # (the fast path was tried above; applied once confirmed)
    show(plan)
    if not plan.has_changes:
        if fmt == "json":
            emit_json({"applied": False, "summary": plan.summary, "message": NO_CHANGES})
        return
    refuse_unapproved_adoptions(plan, adopt)  # before asking: an answer could not approve them
    if not auto_approve and not planfile:  # a saved plan is its own approval
        if not sys.stdin.isatty():
            raise CplaneError("refusing to apply without confirmation: not a terminal; pass --auto-approve")
        if not click.confirm("Apply these changes?", default=False):
            raise CplaneError("apply cancelled")
    if window_note:
        plan.warnings.append(window_note)  # audited with the plan
    try:
        result = apply_plan(engine, plan, environment=ctx.environment, actor=actor, saved=bool(planfile), adopt=adopt,
                            allow_environment_change=allow_environment_change, lock_timeout=lock_timeout,
                            progress=reporter)
    finally:
        reporter.close()
    done(plan, result)


@click.command("status")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@common_options
def status_command(ctx: Context, fmt: str):
    """Database reachable, schema revision, last apply, drift and pending changes, row counts."""
    from control_plane.db.engine import check_connection, redact
    from control_plane.reconcile.controller import status

    engine = None
    try:
        engine = ctx.engine(read_only=True)
        check_connection(engine)
    except CplaneError as exc:  # unreachable (or an unusable URL): still an answer, with --format json
        exc.details = {"database": redact(engine.url) if engine is not None else redact(ctx.database_url or ""),
                       "reachable": False}
        raise
    info = status(engine, ctx.config_dir, ctx.environment)
    if fmt == "json":
        emit_json(info)
    else:
        click.echo(f"database:        {info['database']} (reachable)")
        click.echo(f"schema revision: {info['schema_revision'] or '(none)'} (head {info['schema_head']})")
        click.echo(f"environment:     {info['database_environment'] or '(none recorded)'}")
        if info["pending_migrations"]:
            click.echo(f"schema:          {info['pending_migrations']} migrations pending (apply runs them first)")
        last = info["last_apply"]
        click.echo("last apply:      " + ("never" if not last else
                   f"#{last['id']} at {last['at']} by {last['actor']} (config {last['config_revision'] or 'unknown'})"))
        p = info["pending"]
        click.echo(f"pending:         {p['create']} create, {p['update']} update, {p['delete']} delete, {p['retire']} retire")
        click.echo(f"drift:           {info['drift']} row(s) edited outside cplane")
        click.echo(f"adopt:           {info['adopt']} row(s) named in config but not created by cplane (apply --adopt)")
        click.echo(f"unmanaged:       {info['unmanaged']} row(s)")
        click.echo("rows:            " + ", ".join(f"{k} {v}" for k, v in info["rows"].items()))
        upcoming = info.get("next_scheduled")
        click.echo("next scheduled:  " + ("none" if not upcoming else
                   f"at {upcoming['at']}: {'; '.join(upcoming['changes'])} ({info['scheduled_changes']} scheduled in all)"))
        rolled = info.get("rolled_back")
        if rolled:
            click.echo(f"rolled back:     to apply run #{rolled['to']} (run #{rolled['run']})"
                       + ("; the database differs from the config until it is applied again"
                          if rolled["differs_from_config"] else ""))
        click.echo("in sync" if info["in_sync"] else "OUT OF SYNC: run `cplane plan` to see the changes")
    sys.exit(0 if info.get("in_sync") else 2)


def _rfc3339(value) -> str:
    """A stored timestamp as RFC 3339 in UTC with `Z` (SQLite keeps naive UTC, PostgreSQL timestamptz)."""
    from datetime import UTC, datetime

    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_kind(run) -> str:
    """apply, saved-plan, adopt or saved-plan+adopt. Hook: a run records its kind in cplane_apply_runs (column `kind`
    or `run_kind`, issue 12 item 3/6) once that column exists; older runs are derived from what
    their stored plan says (`saved`, `adopt`, adopt changes)."""
    for column in ("run_kind", "kind"):
        if column in run and run[column]:
            return str(run[column])
    plan = run.get("plan") or {}
    if isinstance(plan, str):
        plan = json.loads(plan or "{}")
    if plan.get("run_kind"):
        return str(plan["run_kind"])
    if plan.get("saved"):
        return "saved-plan"
    if plan.get("adopt") or any(c.get("action") == "adopt" for c in plan.get("changes", [])):
        return "adopt"
    return "apply"


def _entry(run) -> dict:
    summary = run["summary"]
    if isinstance(summary, str):
        summary = json.loads(summary or "{}")
    return {"id": run["id"], "started_at": _rfc3339(run["started_at"]),
            "finished_at": _rfc3339(run["finished_at"]) or None, "actor": run["actor"],
            "environment": run["environment"], "config_revision": run["config_revision"],
            "config_digest": run["config_digest"], "kind": run_kind(run), "summary": summary}


def _runs(ctx: Context, *, limit: int | None = None, run_id: int | None = None) -> list:
    from sqlalchemy import inspect, select

    from control_plane.db.engine import check_connection
    from control_plane.db.models import ApplyRun

    engine = ctx.engine(read_only=True)
    check_connection(engine)
    table = ApplyRun.__table__
    with engine.connect() as conn:
        if not inspect(conn).has_table(ApplyRun.__tablename__):
            return []  # a database cplane never migrated has no applies
        stmt = select(table).order_by(table.c.id.desc())
        stmt = stmt.where(table.c.id == run_id) if run_id is not None else stmt.limit(limit)
        return [dict(r) for r in conn.execute(stmt).mappings().all()]


@click.group("history", invoke_without_command=True)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@common_options
def history_command(ctx: Context, limit: int, fmt: str):
    """Past applies: id, time (UTC), actor, environment, config revision and digest, kind, summary.

    `cplane history show ID` prints the plan that run applied."""
    if click.get_current_context().invoked_subcommand is not None:
        return
    entries = [_entry(r) for r in _runs(ctx, limit=limit)]
    if fmt == "json":
        emit_json(entries)
        return
    if not entries:
        click.echo("No applies yet.")
    for e in entries:
        s = e["summary"]
        click.echo(f"#{e['id']}  {e['started_at']}  {e['actor']}  env={e['environment'] or '-'}  "
                   f"config={e['config_revision'] or 'unknown'}  digest={(e['config_digest'] or '-')[:12]}  "
                   f"kind={e['kind']}  +{s.get('create', 0)} ~{s.get('update', 0)} "
                   f"-{s.get('delete', 0)} !{s.get('retire', 0)}")


def stored_plan(stored: dict):
    """The Plan of a run's stored (audit) form: every change without its values; plain creates,
    kept there by name only, come back as creates without fields."""
    from control_plane.kinds.registry import apply_order
    from control_plane.plans.model import Action, Change
    from control_plane.plans.planfile import from_dict

    data = dict(stored)
    created = data.pop("created", {}) or {}
    plan = from_dict(data)
    order = {kind: i for i, kind in enumerate(apply_order())}
    extra = [Change(kind=kind, name=name, action=Action.CREATE) for kind, names in created.items() for name in names]
    plan.changes = sorted(plan.changes + extra, key=lambda c: order.get(c.kind, len(order)))
    return plan


@history_command.command("show")
@click.argument("run_id", metavar="ID", type=int)
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text")
@common_options
def history_show_command(ctx: Context, run_id: int, fmt: str):
    """The plan that run ID applied (text, markdown or json)."""
    from control_plane.render.plan import RENDERERS

    runs = _runs(ctx, run_id=run_id)
    if not runs:
        raise CplaneError(f"no apply run #{run_id} in this database (see `cplane history`)", code="not_found")
    run = runs[0]
    entry = _entry(run)
    stored = run["plan"] if not isinstance(run["plan"], str) else json.loads(run["plan"] or "{}")
    if fmt == "json":
        emit_json({**entry, "plan": stored})
        return
    if not stored or "changes" not in stored:
        raise CplaneError(f"apply run #{run_id} has no stored plan", code="not_found")
    try:
        plan = stored_plan(stored)
    except (ValueError, KeyError, TypeError) as exc:
        raise CplaneError(f"apply run #{run_id}: its stored plan cannot be read: {exc}", code="plan_unreadable") from None
    header = (f"Apply run #{entry['id']} at {entry['started_at']} by {entry['actor']} "
              f"(env {entry['environment'] or '-'}, config {entry['config_revision'] or 'unknown'}, "
              f"digest {(entry['config_digest'] or '-')[:12]}, kind {entry['kind']})")
    if fmt == "markdown":
        click.echo(f"{header}\n\n{RENDERERS['markdown'](plan)}")
    else:
        click.echo(f"{header}\n\n{RENDERERS['text'](replace(plan, errors=[]), colour=ctx.colour())}")


@click.command("rollback")
@click.option("--to", "run_id", required=True, type=int, metavar="RUN_ID", help="The apply run whose state to restore.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text")
@click.option("--out", type=click.Path(dir_okay=False), help="Save the plan (JSON) for `cplane apply PLANFILE`.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes.")
@common_options
def rollback_command(ctx: Context, run_id: int, fmt: str, out: str | None, detailed_exitcode: bool):
    """A plan whose result is apply run RUN_ID's state, against the live database (reads only)."""
    from control_plane.plans.planfile import write_plan
    from control_plane.reconcile.rollback import make_rollback_plan
    from control_plane.render.plan import NO_CHANGES, RENDERERS

    plan = make_rollback_plan(ctx.engine(read_only=True), ctx.config_dir, run_id, environment=ctx.environment)
    if fmt == "json":
        if plan.errors:
            raise _plan_errors(plan, fmt, RENDERERS["json"](plan))
        click.echo(RENDERERS["json"](plan))
    else:
        header = f"Rollback to apply run #{run_id}: the changes that restore its state."
        body = RENDERERS[fmt](replace(plan, errors=[]) if fmt == "text" else plan,
                              **({"colour": ctx.colour()} if fmt == "text" else {}))
        body = body.replace(NO_CHANGES, f"No changes. The database holds apply run #{run_id}'s state.")
        click.echo(f"{'### ' if fmt == 'markdown' else ''}{header}\n\n{body}")
    if out:
        write_plan(plan, out)
        click.echo(f"Saved the plan to {out}; apply it with `cplane apply {out}`.", err=True)
    if plan.errors:
        raise _plan_errors(plan, fmt)
    sys.exit(2 if detailed_exitcode and plan.has_changes else 0)


@click.group("reconcile")
def reconcile_group():
    """Plan and apply (aliases of `cplane plan` and `cplane apply`)."""


reconcile_group.add_command(plan_command, "plan")
reconcile_group.add_command(apply_command, "apply")
