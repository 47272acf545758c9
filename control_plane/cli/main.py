"""The `cplane` command line (DESIGN §3).

Every error is one line on stderr and exit code 1; `--debug` shows the traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from control_plane import __version__
from control_plane.cli.context import Context, common_options, emit_json, shared_options
from control_plane.errors import CplaneError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cplane")
@shared_options
@click.pass_context
def main(click_ctx, config_dir, database_url, environment, debug):
    """cplane: system data as code, reconciled into the platform database."""
    click_ctx.obj = Context(config_dir, database_url, environment, bool(debug))


# --- validate / schema --------------------------------------------------------------------------


@main.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@common_options
def validate(ctx: Context, fmt: str):
    """Parse and validate the whole config tree; report every error as FILE:LINE:COL: KIND/NAME: message.

    Without --env, the base config and every environment overlay are each validated."""
    from control_plane.reconcile.validation import validate_all

    config = validate_all(ctx.config_dir, ctx.environment)
    if fmt == "json":
        emit_json({"valid": config.ok, "errors": [i.as_dict() for i in config.issues]})
    else:
        for issue in config.issues:
            click.echo(issue.format(), err=not config.ok)
        if config.ok:
            count = sum(len(v) for v in config.objects.values())
            click.echo(f"{ctx.config_dir}: {count} objects valid")
        else:
            click.echo(f"{len(config.issues)} error(s)", err=True)
    sys.exit(0 if config.ok else 1)


@main.group()
def schema():
    """JSON Schemas of the config kinds."""


@schema.command("export")
@click.option("--out", type=click.Path(file_okay=False), default="schemas", show_default=True)
@click.option("--check", is_flag=True, help="Fail if the files on disk differ from what would be written.")
@common_options
def schema_export(ctx: Context, out: str, check: bool):
    """Write schemas/<Kind>.json (draft 2020-12) from the spec models."""
    from control_plane.kinds.schemas import export_schemas

    stale = export_schemas(Path(out), check=check)
    if check and stale:
        raise CplaneError(f"JSON Schemas are stale: {', '.join(stale)}; run `cplane schema export`")
    click.echo(f"{'checked' if check else 'wrote'} JSON Schemas in {out}")


# --- database -----------------------------------------------------------------------------------


@main.group()
def db():
    """Database schema."""


@db.command("upgrade")
@common_options
def db_upgrade(ctx: Context):
    """Run the migrations to head (idempotent)."""
    from control_plane.db.engine import redact, upgrade

    engine = ctx.engine()
    before, after = upgrade(engine)
    if before == after:
        click.echo(f"{redact(engine.url)}: already at {after}")
    else:
        click.echo(f"{redact(engine.url)}: upgraded {before or '(empty)'} -> {after}")


# Commands live beside each other in this package; registered statically, so `--help` lists them all
# without importing anything heavy (each command imports what it needs when it runs).
from control_plane.cli import cleanup, export, operators, reconcile, runtime, secrets  # noqa: E402

main.add_command(reconcile.plan_command, "plan")
main.add_command(reconcile.apply_command, "apply")
main.add_command(reconcile.status_command, "status")
main.add_command(reconcile.history_command, "history")
main.add_command(reconcile.reconcile_group, "reconcile")
main.add_command(export.export_command, "export")
main.add_command(cleanup.cleanup_group, "cleanup")
main.add_command(runtime.serve, "serve")
main.add_command(runtime.accounts, "accounts")
main.add_command(operators.operators, "operators")
main.add_command(operators.payments, "payments")
main.add_command(secrets.secrets_group, "secrets")
