"""The shared CLI context and the options every command accepts, declared once; how errors are
printed (one line on stderr, printed once; also `{"error": ...}` on stdout with `--format json`)."""

from __future__ import annotations

import json
import os
import re
import sys
from functools import wraps
from pathlib import Path

import click

from control_plane.cli.terminal import colour_allowed
from control_plane.errors import CplaneError


class Context:
    def __init__(self, config: str | None, database_url: str | None, env: str | None, debug: bool,
                 no_color: bool = False):
        self.config_dir = Path(config or os.environ.get("CPLANE_CONFIG_DIR") or "config")
        self.database_url = database_url
        self.environment = env or os.environ.get("CPLANE_ENV") or None
        self.debug = debug
        self.no_color = no_color

    def colour(self, stream=None) -> bool:
        """Whether to colour what goes to `stream` (default stdout)."""
        return colour_allowed(self.no_color, stream)

    def engine(self, read_only: bool = False):
        """read_only: for the commands that only read (validate, plan, status, history, export,
        cleanup check/plan); such an engine cannot write, and reading a SQLite file that does not
        exist creates none."""
        from control_plane.db.engine import make_engine

        return make_engine(self.database_url, read_only=read_only)


def shared_options(func):
    """--config, --database-url, --env, --debug and --no-color: declared here once, for `cplane` and every command."""
    func = click.option("--no-color", "no_color", is_flag=True, default=None,
                        help="No colour in any output (also $NO_COLOR).")(func)
    func = click.option("--debug", is_flag=True, default=None, help="Show tracebacks.")(func)
    func = click.option("--env", "environment",
                        help="Environment name; selects config/environments/<env>.yaml ($CPLANE_ENV).")(func)
    func = click.option("--database-url", help="SQLAlchemy URL (default $DATABASE_URL, else sqlite:///cplane.db).")(func)
    return click.option("--config", "config_dir", type=click.Path(file_okay=False),
                        help="Config tree (default ./config, $CPLANE_CONFIG_DIR).")(func)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def report_error(code: str, message: str, *, json_out: bool, extra: dict | None = None) -> None:
    """The one place an error is printed: `error: MESSAGE` on stderr (once), and with
    `--format json` also `{"error": {"code", "message"}}` on stdout."""
    if json_out:
        emit_json({**(extra or {}), "error": {"code": code, "message": message}})
    click.echo(f"error: {message}", err=True)


def common_options(func):
    """The shared options, accepted on every command as well as on `cplane` (the command's win)."""

    @shared_options
    @click.pass_context
    @wraps(func)
    def wrapper(click_ctx, *args, config_dir=None, database_url=None, environment=None, debug=None,
                no_color=None, **kwargs):
        parent: Context = click_ctx.find_object(Context)
        ctx = Context(
            config_dir or (str(parent.config_dir) if parent and parent.config_dir else None),
            database_url or (parent.database_url if parent else None),
            environment or (parent.environment if parent else None),
            bool(debug) or bool(parent and parent.debug),
            bool(no_color) or bool(parent and parent.no_color),
        )
        if not ctx.colour():
            click_ctx.color = False  # click.echo strips any style
        json_out = kwargs.get("fmt") == "json"
        try:
            return func(ctx, *args, **kwargs)
        except CplaneError as exc:
            if ctx.debug:
                raise
            report_error(exc.code, str(exc), json_out=json_out, extra=getattr(exc, "details", None))
            sys.exit(exc.exit_code)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise  # usage errors: reported by the group (cli.main), exit 1
        except (KeyboardInterrupt, click.Abort):
            report_error("interrupted", "interrupted", json_out=json_out)
            sys.exit(130)
        except Exception as exc:  # the contract: never a traceback unless --debug
            if ctx.debug:
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            report_error("internal_error", f"{type(exc).__name__}: {first} (run with --debug for details)",
                         json_out=json_out)
            sys.exit(1)

    return wrapper


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


# --- durations: --lock-timeout 30s ---------------------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    """Seconds of `5s`, `2m`, `1h`, `500ms` or a plain number of seconds; ValueError otherwise."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration (like 30s, 2m, 500ms)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


class Duration(click.ParamType):
    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def lock_timeout_option(func):
    return click.option(
        "--lock-timeout", type=Duration(), default="0", show_default=True, metavar="DURATION",
        help="Wait up to this long for the lock another run holds (30s, 2m); 0 fails at once.",
    )(func)
