"""The `cplane` command line (DESIGN §3).

Every error is one line on stderr and exit code 1; `--debug` shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from functools import wraps
from pathlib import Path

import click

from control_plane import __version__
from control_plane.errors import CplaneError


class Context:
    def __init__(self, config: str | None, database_url: str | None, env: str | None, debug: bool):
        self.config_dir = Path(config or os.environ.get("CPLANE_CONFIG_DIR") or "config")
        self.database_url = database_url
        self.environment = env or os.environ.get("CPLANE_ENV") or None
        self.debug = debug

    def engine(self):
        from control_plane.db import make_engine

        return make_engine(self.database_url)


def common_options(func):
    """--config, --database-url, --env and --debug, accepted on every command as well as on `cplane`."""

    @click.option("--config", "config_dir", type=click.Path(file_okay=False), help="Config tree (default ./config, $CPLANE_CONFIG_DIR).")
    @click.option("--database-url", help="SQLAlchemy URL (default $DATABASE_URL, else sqlite:///cplane.db).")
    @click.option("--env", "environment", help="Environment name; selects config/environments/<env>.yaml ($CPLANE_ENV).")
    @click.option("--debug", is_flag=True, default=None, help="Show tracebacks.")
    @click.pass_context
    @wraps(func)
    def wrapper(click_ctx, *args, config_dir=None, database_url=None, environment=None, debug=None, **kwargs):
        parent: Context = click_ctx.find_object(Context)
        ctx = Context(
            config_dir or (str(parent.config_dir) if parent and parent.config_dir else None),
            database_url or (parent.database_url if parent else None),
            environment or (parent.environment if parent else None),
            bool(debug) or bool(parent and parent.debug),
        )
        try:
            return func(ctx, *args, **kwargs)
        except CplaneError as exc:
            if ctx.debug:
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # the contract: never a traceback unless --debug
            if ctx.debug:
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            click.echo(f"error: {type(exc).__name__}: {first} (run with --debug for details)", err=True)
            sys.exit(1)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cplane")
@click.option("--config", "config_dir", type=click.Path(file_okay=False), help="Config tree (default ./config).")
@click.option("--database-url", help="SQLAlchemy URL (default $DATABASE_URL, else sqlite:///cplane.db).")
@click.option("--env", "environment", help="Environment name ($CPLANE_ENV).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def main(click_ctx, config_dir, database_url, environment, debug):
    """cplane: system data as code, reconciled into the platform database."""
    click_ctx.obj = Context(config_dir, database_url, environment, debug)


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


# --- validate / schema --------------------------------------------------------------------------


@main.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@common_options
def validate(ctx: Context, fmt: str):
    """Parse and validate the whole config tree; report every error as FILE:LINE:COL: KIND/NAME: message.

    Without --env, the base config and every environment overlay are each validated."""
    from control_plane.validate import validate_all

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
    from control_plane.schemas import export_schemas

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
    from control_plane.db import redact, upgrade

    engine = ctx.engine()
    before, after = upgrade(engine)
    if before == after:
        click.echo(f"{redact(engine.url)}: already at {after}")
    else:
        click.echo(f"{redact(engine.url)}: upgraded {before or '(empty)'} -> {after}")


def _register_commands() -> None:
    """Command groups live beside the code they drive; each module exposes register(main)."""
    from control_plane import controller_cli, export_cli
    from control_plane.cleanup import cli as cleanup_cli
    from runtime import cli as runtime_cli

    for module in (controller_cli, export_cli, cleanup_cli, runtime_cli):
        module.register(main)


_register_commands()
