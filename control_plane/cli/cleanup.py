"""`cplane cleanup check | plan | apply`: user-data cleanup by the classification manifest."""

from __future__ import annotations

import sys

import click

from control_plane.cli.context import Context, common_options, emit_json, lock_timeout_option
from control_plane.errors import CplaneError


def _load(ctx: Context, fmt: str):
    """The manifest, or its validation errors printed (one per line) and exit 1."""
    from control_plane.cleanup.manifest import ManifestError, load_manifest

    try:
        return load_manifest(ctx.config_dir, ctx.environment)
    except ManifestError as exc:
        if not exc.issues:
            raise
        if fmt == "json":
            emit_json({"ok": False, "errors": [i.as_dict() for i in exc.issues],
                       "error": {"code": exc.code, "message": str(exc)}})
        for issue in exc.issues:
            click.echo(issue.format(), err=True)
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)

def _checked(ctx: Context, fmt: str, *, migrate: bool = False):
    """Manifest, engine, schema and the check's problems. Only `cleanup apply` (migrate=True)
    migrates the database to head; check and plan read it as it is and refuse a schema behind head."""
    from control_plane.cleanup.manifest import check_manifest
    from control_plane.cleanup.schema import reflect_schema
    from control_plane.db.engine import ensure_schema, pending_migrations

    manifest = _load(ctx, fmt)
    engine = ctx.engine(read_only=not migrate)
    if migrate:
        ensure_schema(engine)
    else:
        pending = pending_migrations(engine)
        if pending:
            raise CplaneError(f"the database schema is behind head ({pending} migrations pending); "
                              "run `cplane db upgrade` first (cleanup check and plan never migrate)")
    schema = reflect_schema(engine)
    return manifest, engine, schema, check_manifest(engine, manifest, schema)

def _refuse_on_problems(problems) -> None:
    if problems:
        shown = "; ".join(p.format() for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise CplaneError(f"the cleanup manifest does not match the database: {shown}{more}; run `cplane cleanup check`")

@click.group("cleanup")
def cleanup_group():
    """Delete user data by the classification manifest (config/cleanup/)."""

@cleanup_group.command("check")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@common_options
def check_command(ctx: Context, fmt: str):
    """Every table is classified, and the manifest names only real tables and columns."""
    manifest, engine, schema, problems = _checked(ctx, fmt)
    counts = {c: len([t for t in manifest.of_class(c) if t in schema.tables]) for c in ("system", "user", "mixed")}
    if fmt == "json":
        emit_json({"ok": not problems, "manifest": manifest.source, "tables": len(schema.tables),
                   "classes": counts, "problems": [p.as_dict() for p in problems],
                   **({"error": {"code": "cleanup_check_failed",
                                 "message": f"cleanup check failed: {len(problems)} problem(s) in {manifest.source}"}}
                      if problems else {})})
    else:
        for p in problems:
            click.echo(f"error: {p.format()}", err=True)
        if problems:
            click.echo(f"cleanup check failed: {len(problems)} problem(s) in {manifest.source}", err=True)
        else:
            click.echo(
                f"cleanup check ok: {len(schema.tables)} tables classified "
                f"({counts['system']} system, {counts['user']} user, {counts['mixed']} mixed), "
                f"{len(manifest.rules)} retention rules, {len(manifest.profiles)} profiles"
            )
    sys.exit(1 if problems else 0)

@cleanup_group.command("plan")
@click.option("--profile", required=True, help="Cleanup profile (from the manifest).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when rows would be deleted.")
@common_options
def plan_command(ctx: Context, profile: str, fmt: str, detailed_exitcode: bool):
    """Rows each table would lose, in deletion order, and the total."""
    from control_plane.cleanup.executor import guard
    from control_plane.cleanup.planner import build_plan

    manifest, engine, schema, problems = _checked(ctx, fmt)
    _refuse_on_problems(problems)
    if profile not in manifest.profiles:
        guard(manifest, profile, None, False)  # raises: unknown profile
    plan = build_plan(engine, manifest, profile, schema)
    if fmt == "json":
        emit_json(plan.as_dict())
    else:
        click.echo(_render_plan(plan))
    sys.exit(2 if detailed_exitcode and plan.total else 0)

@cleanup_group.command("apply")
@click.option("--profile", required=True, help="Cleanup profile (from the manifest).")
@click.option("--batch-size", type=click.IntRange(min=1), default=5000, show_default=True,
              help="Rows per batch; each batch is its own short transaction.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (required off a terminal).")
@click.option("--allow-production", is_flag=True, help="Allow running in the production environment.")
@click.option("--actor", help="Who runs it, for the audit record (default: $CPLANE_ACTOR or the OS user).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@lock_timeout_option
@common_options
def apply_command(ctx: Context, profile: str, batch_size: int, yes: bool, allow_production: bool,
                  actor: str | None, fmt: str, lock_timeout: float):
    """Delete the rows of a cleanup profile in FK-safe bounded batches; verify system data after."""

    from control_plane.cleanup.executor import execute, guard
    from control_plane.cleanup.planner import build_plan

    manifest = _load(ctx, fmt)
    guard(manifest, profile, ctx.environment, allow_production)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if not yes and not interactive:
        raise CplaneError("refusing to delete without confirmation: not a terminal; pass --yes")
    manifest, engine, schema, problems = _checked(ctx, fmt, migrate=True)
    _refuse_on_problems(problems)
    if not yes:
        plan = build_plan(engine, manifest, profile, schema)
        click.echo(_render_plan(plan))
        if plan.total == 0:
            click.echo("Nothing to delete.")
            sys.exit(0)
        if not click.confirm(f"Delete {plan.total} rows (profile {profile}, environment {ctx.environment or '-'})?"):
            raise CplaneError("cleanup cancelled")
    progress = _progress_printer() if sys.stderr.isatty() else None
    result = execute(
        engine, manifest, profile,
        batch_size=batch_size,
        actor=actor,
        environment=ctx.environment,
        allow_production=allow_production,
        progress=progress,
        schema=schema,
        lock_timeout=lock_timeout,
        on_lock_wait=lambda t: click.echo(f"cleanup: waiting up to {t:g}s for the cleanup lock (another cleanup "
                                          "is running)", err=True),
    )
    if progress:
        click.echo("", err=True)
    if fmt == "json":
        emit_json(result.as_dict())
    else:
        for table, n in result.rows_deleted.items():
            if n:
                click.echo(f"  {table:<32} {n:>12,}")
        click.echo(
            f"cleanup {profile}: deleted {result.total:,} rows in {result.batches} batches "
            f"({result.elapsed_s:.2f}s, longest batch {result.longest_batch_s * 1000:.0f} ms); "
            f"{result.verified_tables} system tables verified unchanged; audit run #{result.run_id}"
        )


def _render_plan(plan) -> str:
    lines = [f"Cleanup plan, profile {plan.profile} (deletion order, children first):"]
    shown = [s for s in plan.steps if s.rows]
    width = max([len(s.table) for s in shown] + [10])
    for step in shown:
        lines.append(f"  {step.table:<{width}} {step.rows:>12,}   {'; '.join(step.reasons)}")
    if not shown:
        lines.append("  (nothing to delete)")
    lines.append(f"Total: {plan.total:,} rows in {len(shown)} tables.")
    return "\n".join(lines)


def _progress_printer():
    state = {"table": None}

    def show(table: str, done: int, planned: int) -> None:
        if state["table"] not in (None, table):
            click.echo("", err=True)
        state["table"] = table
        of = f"/{planned:,}" if planned else ""
        click.echo(f"\r  deleting {table}: {done:,}{of}", err=True, nl=False)

    return show
