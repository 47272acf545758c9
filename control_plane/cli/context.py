"""The shared CLI context and the options every command accepts, declared once."""

from __future__ import annotations

import json
import os
import sys
from functools import wraps
from pathlib import Path

import click

from control_plane.errors import CplaneError


class Context:
    def __init__(self, config: str | None, database_url: str | None, env: str | None, debug: bool):
        self.config_dir = Path(config or os.environ.get("CPLANE_CONFIG_DIR") or "config")
        self.database_url = database_url
        self.environment = env or os.environ.get("CPLANE_ENV") or None
        self.debug = debug

    def engine(self, read_only: bool = False):
        """read_only: for the commands that only read (validate, plan, status, history, export,
        cleanup check/plan); such an engine cannot write, and reading a SQLite file that does not
        exist creates none."""
        from control_plane.db.engine import make_engine

        return make_engine(self.database_url, read_only=read_only)


def shared_options(func):
    """--config, --database-url, --env and --debug: declared here once, for `cplane` and every command."""
    func = click.option("--debug", is_flag=True, default=None, help="Show tracebacks.")(func)
    func = click.option("--env", "environment",
                        help="Environment name; selects config/environments/<env>.yaml ($CPLANE_ENV).")(func)
    func = click.option("--database-url", help="SQLAlchemy URL (default $DATABASE_URL, else sqlite:///cplane.db).")(func)
    return click.option("--config", "config_dir", type=click.Path(file_okay=False),
                        help="Config tree (default ./config, $CPLANE_CONFIG_DIR).")(func)


def common_options(func):
    """The shared options, accepted on every command as well as on `cplane` (the command's win)."""

    @shared_options
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


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
