"""The `cplane` process's entry: a no-change `cplane plan` answered before click, SQLAlchemy,
pydantic, the models or the kinds registry are imported; everything else is cli/main.py.

The answer is reconcile/nochange.py's decision (the one `cplane plan` makes through SQLAlchemy),
over a raw driver connection (db/raw.py: psycopg, or the stdlib's sqlite3), and the output is the
bytes the click command prints for it. This path serves only what it fully understands: `plan`
with the options below, a URL db/raw.py parses, a secret key that exists already. Anything else
(another option, `--out`, `--at`, `--adopt`, `--no-fast-path`, help, an unknown URL, no record, any
doubt or any error) runs the click command, which then decides, plans and reports in full.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The options this path understands: the shared ones (cli/context.py's shared_options) and plan's
# own that do not change the no-change answer (cli/reconcile.py). A value option takes the next
# argument or `--name=value`.
SHARED_VALUES = ("--config", "--database-url", "--env")
SHARED_FLAGS = ("--debug", "--no-color")
PLAN_VALUES = ("--format", "--artifact")
PLAN_FLAGS = ("--detailed-exitcode", "--compact", "--require-secrets", "--allow-environment-change")
FORMATS = ("text", "markdown", "json")
DEBUG_NOTE = ("plan: nothing changed since the last apply (its recorded state: config digest, secrets, table "
              "versions); --no-fast-path makes the full plan")


def _options(args: list[str], values: tuple[str, ...], flags: tuple[str, ...]) -> dict[str, object] | None:
    """`args` as {option: value or True}; the last occurrence wins (as in click). None when any
    argument is not one of these options, or a value is missing or looks like an option."""
    found: dict[str, object] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in values:
            if not eq:
                if i + 1 >= len(args):
                    return None
                i += 1
                value = args[i]
            if not value or value.startswith("-"):
                return None
            found[name] = value
        elif arg in flags:
            found[arg] = True
        else:
            return None
        i += 1
    return found


def parse_plan(argv: list[str]) -> dict[str, object] | None:
    """The options of `cplane [shared options] plan [options]`, resolved as cli/context.py's Context
    resolves them (the command's over the group's, then the environment variables); None when this
    path does not serve the command line."""
    if "plan" not in argv:
        return None
    at = argv.index("plan")
    group = _options(argv[:at], SHARED_VALUES, SHARED_FLAGS)
    command = _options(argv[at + 1:], SHARED_VALUES + PLAN_VALUES, SHARED_FLAGS + PLAN_FLAGS)
    if group is None or command is None:
        return None
    fmt = command.get("--format", "text")
    if fmt not in FORMATS:
        return None  # click's usage error
    if any(Path(str(given["--config"])).is_file() for given in (group, command) if "--config" in given):
        return None  # click's usage error (a directory is wanted)
    merged = {**group, **command}
    config = merged.get("--config") or os.environ.get("CPLANE_CONFIG_DIR") or "config"
    return {
        "config_dir": Path(config),
        "database_url": merged.get("--database-url"),
        "environment": merged.get("--env") or os.environ.get("CPLANE_ENV") or None,
        "debug": bool(merged.get("--debug")),
        "format": fmt,
        "artifact": command.get("--artifact"),
        "compact": bool(command.get("--compact")),
        "require_secrets": bool(command.get("--require-secrets")),
    }


def no_change(options: dict[str, object]):
    """The no-change answer from the raw driver (reconcile/nochange.NoChange), or None."""
    from control_plane.db import raw
    from control_plane.errors import CplaneError
    from control_plane.reconcile import nochange
    from control_plane.secrets import KEY_VARIABLE, SecretBox, existing_key_material, key_file_for

    target = raw.parse(raw.raw_url(options["database_url"]))
    if target is None:
        return None
    environment = options["environment"]
    configured = os.environ.get(KEY_VARIABLE) or None
    key_file = None if configured else str(key_file_for(target.dialect, target.database))
    try:
        material = existing_key_material(environment, configured, key_file)
    except CplaneError:
        return None  # a malformed key: the full plan says so
    if material is None:
        return None  # no key yet: the full plan makes one (and says so)
    conn = raw.connect(target)
    if conn is None:
        return None
    try:
        return nochange.decide(raw.RawSource(conn, target.dialect), options["config_dir"],
                               SecretBox(environment, material=material), environment=environment,
                               require_secrets=options["require_secrets"])
    finally:
        conn.close()


def render(options: dict[str, object], answer) -> tuple[str, str]:
    """(stdout, stderr) of `cplane plan` for a no-change answer, as cli/reconcile.py prints them."""
    err = DEBUG_NOTE + "\n" if options["debug"] else ""
    if options["format"] == "text":
        from control_plane.render.words import no_change_text

        return no_change_text(answer.recorded.warnings) + "\n", err
    from control_plane.reconcile.nochange import plan_of
    from control_plane.render.plan import render_json, render_markdown

    plan = plan_of(answer, options["config_dir"], options["environment"])
    err += "".join(f"warning: {w}\n" for w in plan.warnings)
    if options["format"] == "markdown":
        return render_markdown(plan, artifact=options["artifact"], compact=options["compact"]) + "\n", err
    return render_json(plan) + "\n", err


def fast_plan(argv: list[str]) -> tuple[str, str] | None:
    """(stdout, stderr) of a no-change `cplane plan`, or None: the click command answers."""
    options = parse_plan(argv)
    if options is None:
        return None
    try:
        answer = no_change(options)
        return None if answer is None else render(options, answer)
    except Exception:  # any doubt: the full path, which reports errors as cplane does
        return None


def main() -> None:
    answered = fast_plan(sys.argv[1:])
    if answered is not None:
        out, err = answered
        if err:
            sys.stderr.write(err)
            sys.stderr.flush()
        sys.stdout.write(out)
        sys.stdout.flush()
        sys.exit(0)  # no changes: 0, with or without --detailed-exitcode
    from control_plane.cli.main import main as cli

    cli(prog_name="cplane")
