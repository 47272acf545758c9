"""`cplane serve` and `cplane accounts`: the runtime API's commands."""

from __future__ import annotations

import json
import os
import sys

import click

from control_plane.cli.context import Context, common_options


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256), help="Worker processes.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@common_options
def serve(ctx: Context, host: str, port: int, workers: int, log_level: str):
    """Run the runtime API with uvicorn; refuses a database whose schema is behind head
    (run `cplane db upgrade` first: serve never migrates)."""
    from control_plane.db.engine import current_revision, head_revision, pending_migrations
    from control_plane.environment import is_production
    from control_plane.errors import CplaneError
    from control_plane.secrets import SecretBox
    from control_plane.state.keys import secrets_problem

    engine = ctx.engine(read_only=True)
    try:
        pending = pending_migrations(engine)
        if pending:
            raise CplaneError(f"the database schema is behind head ({current_revision(engine) or 'no schema'}, "
                              f"head {head_revision()}: {pending} migrations pending); "
                              "run `cplane db upgrade` first (serve never migrates)")
        # Production refuses to start without a key that reads the stored secrets; elsewhere
        # /readyz says why it is not ready.
        try:
            box = SecretBox(ctx.environment, engine.url)
            with engine.connect() as conn:
                problem = secrets_problem(conn, box)
        except CplaneError as exc:
            problem = str(exc)
        if problem and is_production(ctx.environment):
            raise CplaneError(f"refusing to serve: {problem}")
        if problem:
            click.echo(f"warning: stored secrets cannot be read: {problem}", err=True)
    finally:
        engine.dispose()
    import logging

    import uvicorn

    # Workers build the app from the environment: pass the resolved options down.
    if ctx.database_url:
        os.environ["DATABASE_URL"] = ctx.database_url
    if ctx.environment:
        os.environ["CPLANE_ENV"] = ctx.environment
    logging.basicConfig(level=getattr(logging, log_level.upper()), stream=sys.stderr, format="%(message)s")
    uvicorn.run("runtime.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, access_log=False)

@click.group()
def accounts():
    """Tenant accounts."""

@accounts.command("create")
@click.option("--name", required=True, help="Account name.")
@click.option("--plan", "plan", required=True, help="Plan name (natural key), e.g. `pro`.")
@click.option("--owner-email", required=True, help="E-mail of the owner user.")
@common_options
def accounts_create(ctx: Context, name: str, plan: str, owner_email: str):
    """Create an account with its owner and print {"account_id", "api_key"} (the key is shown once)."""
    from control_plane.db.engine import ensure_schema
    from runtime.accounts import create_account

    engine = ctx.engine()
    try:
        ensure_schema(engine)
        result = create_account(engine, name=name, plan=plan, owner_email=owner_email)
    finally:
        engine.dispose()
    click.echo(json.dumps(result))
