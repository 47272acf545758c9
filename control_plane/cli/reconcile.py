"""`cplane plan`, `apply`, `status`, `history` and the `reconcile` group (DESIGN §3, §4)."""

from __future__ import annotations

import sys

import click

from control_plane.cli.context import Context, common_options, emit_json
from control_plane.errors import CplaneError


def _plan_options(func):
    func = click.option("--adopt", is_flag=True, help="Take existing rows with the same natural key under management.")(func)
    func = click.option("--require-secrets", is_flag=True, help="Fail when a referenced secret variable is unset.")(func)
    func = click.option("--allow-environment-change", is_flag=True,
                        help="Plan or apply for another environment than the one the database is recorded as (audited).")(func)
    return func


@click.command("plan")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text")
@click.option("--out", type=click.Path(dir_okay=False), help="Save the plan (JSON) for `cplane apply PLANFILE`.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes.")
@click.option("--compact", is_flag=True,
              help="Text and markdown: count each kind's creates instead of listing them with their attributes.")
@click.option("--artifact", metavar="MARKDOWN",
              help="Markdown: where the full plan is (e.g. a link to the CI artifact), named when the plan is "
                   "too long for a GitHub comment.")
@_plan_options
@common_options
def plan_command(ctx: Context, fmt: str, out: str | None, detailed_exitcode: bool, compact: bool, artifact: str | None,
                 adopt: bool, require_secrets: bool, allow_environment_change: bool):
    """Compute the changes that would make the database match the config."""
    from control_plane.plans.planfile import write_plan
    from control_plane.reconcile.controller import make_plan
    from control_plane.render.plan import render_json, render_markdown, render_text

    result = make_plan(ctx.engine(read_only=True), ctx.config_dir, environment=ctx.environment, adopt=adopt,
                       require_secrets=require_secrets, allow_environment_change=allow_environment_change)
    plan = result.plan
    if fmt == "text":
        click.echo(render_text(plan, colour=sys.stdout.isatty(), compact=compact))
    else:
        for warning in plan.warnings:
            click.echo(f"warning: {warning}", err=True)
        if fmt == "markdown":
            click.echo(render_markdown(plan, artifact=artifact, compact=compact))
        else:
            click.echo(render_json(plan))
    if out:
        write_plan(plan, out)
        click.echo(f"Saved the plan to {out}; apply it with `cplane apply {out}`.", err=True)
    if plan.errors:
        raise CplaneError("; ".join(plan.errors))
    sys.exit(2 if detailed_exitcode and plan.has_changes else 0)


@click.command("apply")
@click.argument("planfile", required=False, type=click.Path(dir_okay=False))
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
@click.option("--actor", help="Who applies, for the audit record (default: OS user).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@_plan_options
@common_options
def apply_command(ctx: Context, planfile: str | None, auto_approve: bool, actor: str | None, fmt: str,
                  adopt: bool, require_secrets: bool, allow_environment_change: bool):
    """Apply a saved plan (the reviewed plan is the approval: no confirmation), or compute and apply a fresh one."""
    from control_plane.apply.execute import refuse_unapproved_adoptions
    from control_plane.plans.model import Plan
    from control_plane.plans.planfile import read_plan
    from control_plane.reconcile.controller import apply_config, apply_plan, check_binding, make_plan
    from control_plane.render.plan import NO_CHANGES, render_text, summary_line

    def show(plan: Plan) -> None:
        if fmt == "text":
            click.echo(render_text(plan, colour=sys.stdout.isatty()))
        else:
            for warning in plan.warnings:
                click.echo(f"warning: {warning}", err=True)
        if plan.errors:
            raise CplaneError("; ".join(plan.errors))

    def done(plan: Plan, result) -> None:
        if fmt == "json":
            emit_json({"applied": result.applied, "summary": result.summary, "rows_written": result.rows_written,
                       "apply_run_id": result.apply_run_id, **({} if result.applied else {"message": NO_CHANGES})})
        elif result.applied:
            click.echo(f"Apply complete. {summary_line(plan)[len('Plan: '):]}")

    engine = ctx.engine()
    if planfile is None and auto_approve:
        # Nobody reviews this plan, so it is computed under the apply lock: no stale-plan refusals.
        result = apply_config(engine, ctx.config_dir, environment=ctx.environment, actor=actor, adopt=adopt,
                              require_secrets=require_secrets, allow_environment_change=allow_environment_change)
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
    else:
        plan = make_plan(engine, ctx.config_dir, environment=ctx.environment, adopt=adopt,
                         require_secrets=require_secrets, allow_environment_change=allow_environment_change).plan
    show(plan)
    if not plan.changes:
        if fmt == "json":
            emit_json({"applied": False, "summary": plan.summary, "message": NO_CHANGES})
        return
    refuse_unapproved_adoptions(plan, adopt)  # before asking: an answer could not approve them
    if not auto_approve and not planfile:  # a saved plan is its own approval
        if not sys.stdin.isatty():
            raise CplaneError("refusing to apply without confirmation: not a terminal; pass --auto-approve")
        if not click.confirm("Apply these changes?", default=False):
            raise CplaneError("apply cancelled")
    done(plan, apply_plan(engine, plan, environment=ctx.environment, actor=actor, saved=bool(planfile), adopt=adopt,
                          allow_environment_change=allow_environment_change))


@click.command("status")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@common_options
def status_command(ctx: Context, fmt: str):
    """Database reachable, schema revision, last apply, drift and pending changes, row counts."""
    from control_plane.reconcile.controller import status

    info = status(ctx.engine(read_only=True), ctx.config_dir, ctx.environment)
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
        click.echo("in sync" if info["in_sync"] else "OUT OF SYNC: run `cplane plan` to see the changes")
    sys.exit(0 if info.get("in_sync") else 2)


@click.command("history")
@click.option("--limit", default=20, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@common_options
def history_command(ctx: Context, limit: int, fmt: str):
    """Past applies: when, who, config revision, summary."""
    from sqlalchemy import inspect, select

    from control_plane.db.engine import check_connection
    from control_plane.db.models import ApplyRun

    engine = ctx.engine(read_only=True)
    check_connection(engine)
    with engine.connect() as conn:
        runs = []  # a database cplane never migrated has no applies
        if inspect(conn).has_table(ApplyRun.__tablename__):
            runs = conn.execute(select(ApplyRun.__table__).order_by(ApplyRun.id.desc()).limit(limit)).mappings().all()
    entries = [
        {"id": r["id"], "started_at": str(r["started_at"]), "actor": r["actor"], "environment": r["environment"],
         "config_revision": r["config_revision"], "summary": r["summary"]}
        for r in runs
    ]
    if fmt == "json":
        emit_json(entries)
        return
    if not entries:
        click.echo("No applies yet.")
    for e in entries:
        s = e["summary"]
        click.echo(f"#{e['id']}  {e['started_at']}  {e['actor']}  env={e['environment'] or '-'}  "
                   f"config={e['config_revision'] or 'unknown'}  +{s.get('create', 0)} ~{s.get('update', 0)} "
                   f"-{s.get('delete', 0)} !{s.get('retire', 0)}")


@click.group("reconcile")
def reconcile_group():
    """Plan and apply (aliases of `cplane plan` and `cplane apply`)."""


reconcile_group.add_command(plan_command, "plan")
reconcile_group.add_command(apply_command, "apply")
