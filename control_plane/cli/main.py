"""The `cplane` command line (docs/reference.md §3).

Every error is one line on stderr and exit code 1 (usage errors included: click's own exit code 2 is
reserved for "there are changes" and "out of sync"); `--debug` shows the traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from control_plane import __version__
from control_plane.cli.context import (
    Context,
    common_options,
    emit_json,
    one_line,
    report_error,
    shared_options,
)
from control_plane.errors import CplaneError

SHELLS = ("bash", "zsh", "fish")


def _wants_json(args) -> bool:
    args = list(args or [])
    return any(a == "--format=json" or (a == "--format" and i + 1 < len(args) and args[i + 1] == "json")
               for i, a in enumerate(args))


class UsageFailure(click.ClickException):
    """A usage error (unknown option, bad value, missing argument) as cplane reports it: click's
    message on one line with where to get help, exit 1 (2 means only changes or drift)."""

    exit_code = 1

    def __init__(self, error: click.UsageError, json_out: bool):
        message = one_line(error.format_message())
        if message and message[-1] not in ".?!":
            message += "."
        ctx = error.ctx
        if ctx is not None and ctx.command.get_help_option(ctx) is not None:
            message += f" Try '{ctx.command_path} --help' for help."
        super().__init__(message)
        self.json_out = json_out

    def show(self, file=None) -> None:
        report_error("usage_error", self.message, json_out=self.json_out)


class CplaneGroup(click.Group):
    """The top-level group: turns click's usage errors (exit 2) into cplane's (exit 1, one line)."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise UsageFailure(exc, _wants_json(args)) from exc
        ctx.meta["cplane.args"] = list(args)
        return ctx

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise UsageFailure(exc, _wants_json(ctx.meta.get("cplane.args"))) from exc


@click.group("cplane", cls=CplaneGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cplane")
@shared_options
@click.pass_context
def main(click_ctx, config_dir, database_url, environment, debug, no_color):
    """cplane: system data as code, reconciled into the platform database."""
    click_ctx.obj = Context(config_dir, database_url, environment, bool(debug), bool(no_color))


@main.command("version")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@common_options
def version_command(ctx: Context, fmt: str):
    """Print cplane's version."""
    if fmt == "json":
        emit_json({"version": __version__})
    else:
        click.echo(f"cplane {__version__}")


@main.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@common_options
def completion_command(ctx: Context, shell: str):
    """Print the shell completion script for bash, zsh or fish.

    \b
    bash:  eval "$(cplane completion bash)"     (or save it under ~/.local/share/bash-completion/completions/cplane)
    zsh:   eval "$(cplane completion zsh)"      (in ~/.zshrc)
    fish:  cplane completion fish > ~/.config/fish/completions/cplane.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    click.echo(cls(main, {}, "cplane", "_CPLANE_COMPLETE").source())


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
        data = {"valid": config.ok, "errors": [i.as_dict() for i in config.issues],
                "warnings": [i.as_dict() for i in config.warnings]}
        if not config.ok:
            data["error"] = {"code": "config_invalid", "message": f"{len(config.issues)} error(s) in {ctx.config_dir}"}
        emit_json(data)
    else:
        for issue in config.issues:
            click.echo(issue.format(), err=not config.ok)
        for issue in config.warnings:
            click.echo(f"warning: {issue.format()}", err=True)
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
from control_plane.cli import cleanup, export, operators, reconcile, runtime, secrets, watch  # noqa: E402

main.add_command(reconcile.plan_command, "plan")
main.add_command(reconcile.apply_command, "apply")
main.add_command(reconcile.status_command, "status")
main.add_command(reconcile.history_command, "history")
main.add_command(reconcile.rollback_command, "rollback")
main.add_command(reconcile.reconcile_group, "reconcile")
main.add_command(export.export_command, "export")
main.add_command(cleanup.cleanup_group, "cleanup")
main.add_command(runtime.serve, "serve")
main.add_command(runtime.accounts, "accounts")
main.add_command(operators.operators, "operators")
main.add_command(operators.payments, "payments")
main.add_command(secrets.secrets_group, "secrets")
main.add_command(watch.watch_command, "watch")
