"""`cplane watch`: the control loop (docs/reference.md §3, §7; docs/operations.md)."""

from __future__ import annotations

import os
import signal
import sys

import click

from control_plane.cli.context import Context, Duration, common_options


@click.command("watch")
@click.option("--interval", type=Duration(), default="30s", show_default=True, metavar="DURATION",
              help="Time between reconcile rounds (30s, 2m, 500ms).")
@click.option("--mode", type=click.Choice(["detect", "self-heal", "auto-apply"]), default="detect", show_default=True,
              help="detect: report only; self-heal: re-apply drift; auto-apply: apply config changes.")
@click.option("--self-heal", is_flag=True, help="Re-apply drift (rows edited outside cplane); never config changes.")
@click.option("--auto-apply", is_flag=True, help="Apply config changes (and scheduled changes when due).")
@click.option("--prune", is_flag=True, help="With --auto-apply: also apply deletions and retirements (else left pending).")
@click.option("--git", "use_git", is_flag=True, help="The config is a git checkout: fetch and fast-forward it each round.")
@click.option("--git-remote", default="origin", show_default=True, help="With --git: the remote to fetch.")
@click.option("--git-branch", default=None, help="With --git: the branch to follow (default: the checked-out one).")
@click.option("--listen", default="127.0.0.1:8474", show_default=True, metavar="HOST:PORT",
              help="Serve /, /metrics and /healthz here (port 0: any free port; 'off': no server).")
@click.option("--actor", default=None, help="Who the loop's applies are audited as (default cplane-watch).")
@click.option("--webhook", "webhooks", multiple=True, metavar="URL",
              help="POST generic JSON notifications here (repeatable; also $CPLANE_WATCH_WEBHOOKS).")
@click.option("--slack-webhook", "slack_webhooks", multiple=True, metavar="URL",
              help="POST Slack-compatible notifications here (repeatable; also $CPLANE_WATCH_SLACK_WEBHOOKS).")
@click.option("--lock-timeout", type=Duration(), default="0", show_default=True, metavar="DURATION",
              help="While another watcher runs against this database, wait up to this long (0: exit at once).")
@click.option("--max-rounds", type=click.IntRange(min=1), default=None, hidden=True)
@common_options
def watch_command(ctx: Context, interval: float, mode: str, self_heal: bool, auto_apply: bool, prune: bool,
                  use_git: bool, git_remote: str, git_branch: str | None, listen: str, actor: str | None,
                  webhooks: tuple[str, ...], slack_webhooks: tuple[str, ...], lock_timeout: float,
                  max_rounds: int | None):
    """Reconcile continuously: plan every --interval and act by policy; serve the status page."""
    import logging
    import threading

    from control_plane.db.engine import check_connection, make_engine, redact
    from control_plane.errors import CplaneError
    from control_plane.watch.loop import DEFAULT_ACTOR, Policy, Watcher, acquire
    from control_plane.watch.notify import Notifier, webhooks_from
    from control_plane.watch.server import StatusServer, parse_listen

    if interval <= 0:
        raise click.BadParameter("must be more than 0", param_hint="--interval")
    if prune and not (auto_apply or mode == "auto-apply"):
        raise click.BadParameter("--prune needs --auto-apply", param_hint="--prune")
    policy = Policy(self_heal=self_heal or mode == "self-heal", auto_apply=auto_apply or mode == "auto-apply",
                    prune=prune)
    address = None
    if listen != "off":
        try:
            address = parse_listen(listen)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--listen") from None
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)

    def say(line: str) -> None:
        click.echo(line, err=True)

    git = None
    if use_git:
        from control_plane.watch.gitsource import GitSource

        git = GitSource(ctx.config_dir, git_remote, git_branch)
    engine = make_engine(ctx.database_url)
    check_connection(engine)
    database = redact(engine.url)
    notifier = Notifier(webhooks_from(webhooks, slack_webhooks))
    watcher = Watcher(engine, ctx.config_dir, environment=ctx.environment, policy=policy, interval=interval,
                      actor=actor or os.environ.get("CPLANE_WATCH_ACTOR") or DEFAULT_ACTOR, git=git,
                      notifier=notifier, say=say)

    def on_signal(signum, frame):
        if not watcher.stop.is_set():
            say(f"watch: {signal.Signals(signum).name}: stopping after this round")
        watcher.stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def waiting(timeout: float) -> None:
        say(f"watch: another cplane watch holds this database; waiting up to {timeout:g}s")

    with acquire(engine, lock_timeout, waiting):
        server = None
        if address is not None:
            read_engine = make_engine(ctx.database_url, read_only=True)
            server = StatusServer(watcher, *address, token=os.environ.get("CPLANE_UI_TOKEN") or None,
                                  environment=ctx.environment, database=database, read_engine=read_engine,
                                  git_label=f"git {git.remote}/{git.branch} in {git.top}" if git else "")
            server.start()
            host, port = server.address
            say(f"watch: status page on http://{host}:{port}/")
        say(f"watch: {database}, config {ctx.config_dir}, env {ctx.environment or '-'}, mode {policy.mode}, "
            f"every {interval:g}s")
        try:
            watcher.run(max_rounds=max_rounds)
        except CplaneError:
            raise
        finally:
            if server is not None:
                server.close()
            notifier.close()
            say(f"watch: stopped after {watcher.rounds} round(s)")
