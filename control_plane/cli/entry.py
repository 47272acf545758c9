"""The `cplane` process's entry: a no-change `cplane plan` (and no-op `cplane apply`) answered
before click, SQLAlchemy, pydantic, the models or the kinds registry are imported; everything else
is cli/main.py.

The answer is reconcile/nochange.py's decision (the one the commands make through SQLAlchemy,
reconcile/fastpath.py), over a raw driver connection (db/raw.py: psycopg, or the stdlib's sqlite3),
and the output is the bytes the click command prints for it. The apply confirms it under the apply
lock, as fastpath.no_change_apply does (one try: a held lock is the click command's to wait for or
refuse). This path serves only what it fully understands: `plan` / `apply` with the options below,
a URL db/raw.py parses, a secret key that exists already, for apply a config that declares no
SyncWindow. Anything else (another option, `--out`, `--at`, `--adopt`, `--no-fast-path`, a plan
file, `--format json`, help, an unknown URL, no record, any doubt or any error) runs the click
command, which then decides, plans and reports in full; nothing is printed before the answer is
certain.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from control_plane.cli.decided import DECIDED
from control_plane.cli.terminal import colour_allowed

# The options this path understands: the shared ones (cli/context.py's shared_options) and plan's
# own that do not change the no-change answer (cli/reconcile.py). A value option takes the next
# argument or `--name=value`.
SHARED_VALUES = ("--config", "--database-url", "--env")
SHARED_FLAGS = ("--debug", "--no-color")
PLAN_VALUES = ("--format", "--artifact")
PLAN_FLAGS = ("--detailed-exitcode", "--compact", "--require-secrets", "--allow-environment-change")
# apply's: --actor is only audited and --override-window only matters inside a deny window (none here).
APPLY_VALUES = ("--format", "--actor", "--lock-timeout")
APPLY_FLAGS = ("--auto-approve", "--override-window", "--require-secrets", "--allow-environment-change")
# What cli/context.py's Duration accepts (a subset: anything else is left to click to refuse).
DURATION = re.compile(r"^\d+(?:\.\d+)?(?:ms|s|m|h)?$")
# JSON is the saved plan's form (plans/planfile.py), which needs the kinds and SQLAlchemy's types:
# no faster here than in the click command, which serves it.
FORMATS = ("text", "markdown")
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


def parse(argv: list[str]) -> dict[str, object] | None:
    """The options of `cplane [shared options] plan|apply [options]`, resolved as cli/context.py's
    Context resolves them (the command's over the group's, then the environment variables); None
    when this path does not serve the command line."""
    at = next((i for i, arg in enumerate(argv) if arg in ("plan", "apply")), None)
    if at is None:
        return None
    command_name = argv[at]
    group = _options(argv[:at], SHARED_VALUES, SHARED_FLAGS)
    values, flags = (PLAN_VALUES, PLAN_FLAGS) if command_name == "plan" else (APPLY_VALUES, APPLY_FLAGS)
    command = _options(argv[at + 1:], SHARED_VALUES + values, SHARED_FLAGS + flags)
    if group is None or command is None:
        return None
    fmt = command.get("--format", "text")
    if fmt not in (FORMATS if command_name == "plan" else ("text",)):
        return None  # json, or click's usage error
    if "--lock-timeout" in command and not DURATION.match(str(command["--lock-timeout"])):
        return None  # click's usage error
    if any(Path(str(given["--config"])).is_file() for given in (group, command) if "--config" in given):
        return None  # click's usage error (a directory is wanted)
    merged = {**group, **command}
    config = merged.get("--config") or os.environ.get("CPLANE_CONFIG_DIR") or "config"
    return {
        "command": command_name,
        "config_dir": Path(config),
        "database_url": merged.get("--database-url"),
        "environment": merged.get("--env") or os.environ.get("CPLANE_ENV") or None,
        "debug": bool(merged.get("--debug")),
        "no_color": bool(merged.get("--no-color")),
        "format": fmt,
        "artifact": command.get("--artifact"),
        "compact": bool(command.get("--compact")),
        "require_secrets": bool(command.get("--require-secrets")),
    }


def parse_plan(argv: list[str]) -> dict[str, object] | None:
    options = parse(argv)
    return options if options is not None and options["command"] == "plan" else None


def apply_says(text: str, colour: bool) -> str:
    """A line of cli/progress.py's ApplyReporter on stderr ("apply: " in bold on a terminal)."""
    return ("\x1b[1mapply: \x1b[0m" if colour else "apply: ") + text + "\n"


def _open(options: dict[str, object]):
    """(target, raw connection, secret key) for the command line's database, or None."""
    from control_plane.db import raw
    from control_plane.errors import CplaneError
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
    return target, conn, SecretBox(environment, material=material)


def no_change(options: dict[str, object], *, under_apply_lock: bool = False, decided: list | None = None):
    """The no-change answer from the raw driver (reconcile/nochange.NoChange), or None. With
    `under_apply_lock`, confirmed under the apply lock (None when another apply holds it).
    `decided`: where to keep (options, inputs) when the record was read and said no (cli/decided.py)."""
    from control_plane.db import raw
    from control_plane.reconcile import nochange

    opened = _open(options)
    if opened is None:
        return None
    target, conn, box = opened
    source = raw.RawSource(conn, target.dialect)

    def decide(wanted=None):
        return nochange.decide(source, options["config_dir"], box, environment=options["environment"],
                               require_secrets=options["require_secrets"], wanted=wanted)

    try:
        wanted = nochange.inputs(options["config_dir"], options["environment"], box)
        answer = decide(wanted)
        if answer is None and decided is not None:
            decided.append((options, wanted))
        if answer is None or not under_apply_lock:
            return answer
        # As fastpath.no_change_apply: the answer again, under the apply lock.
        from control_plane.apply.lock import APPLY_LOCK_ID

        with raw.try_xact_lock(conn, target, APPLY_LOCK_ID, "apply") as taken:
            return decide() if taken else None
    finally:
        conn.close()


def render(options: dict[str, object], answer) -> tuple[str, str]:
    """(stdout, stderr) of `cplane plan` / `apply` for a no-change answer, as cli/reconcile.py prints them."""
    if options["command"] == "apply":
        from control_plane.render.words import no_change_text

        colour = colour_allowed(bool(options["no_color"]), sys.stderr)
        return no_change_text(answer.recorded.warnings) + "\n", apply_says("locking", colour)
    err = DEBUG_NOTE + "\n" if options["debug"] else ""
    if options["format"] == "text":
        from control_plane.render.words import no_change_text

        return no_change_text(answer.recorded.warnings) + "\n", err
    from control_plane.reconcile.nochange import plan_of
    from control_plane.render.plan import render_markdown

    plan = plan_of(answer, options["config_dir"], options["environment"])
    err += "".join(f"warning: {w}\n" for w in plan.warnings)
    return render_markdown(plan, artifact=options["artifact"], compact=options["compact"]) + "\n", err


def fast_answer(argv: list[str], decided: list | None = None) -> tuple[str, str] | None:
    """(stdout, stderr) of a no-change `cplane plan` or no-op `cplane apply`, or None: the click
    command answers (`decided`: as no_change's)."""
    options = parse(argv)
    if options is None:
        return None
    try:
        if options["command"] == "apply":
            from control_plane.reconcile.nochange import mentions

            if Path(options["config_dir"]).is_dir() and mentions(Path(options["config_dir"]), b"SyncWindow"):
                return None  # a deny window may refuse the apply: the click command evaluates it
        answer = no_change(options, under_apply_lock=options["command"] == "apply", decided=decided)
        return None if answer is None else render(options, answer)
    except Exception:  # any doubt: the full path, which reports errors as cplane does
        if decided:
            decided.clear()
        return None


def fast_plan(argv: list[str]) -> tuple[str, str] | None:
    """fast_answer of a `cplane plan` command line (None for any other)."""
    return fast_answer(argv) if parse_plan(argv) is not None else None


def main() -> None:
    from control_plane.collector import freeze_at_exit

    freeze_at_exit()
    DECIDED.clear()
    answered = fast_answer(sys.argv[1:], decided=DECIDED)
    if answered is not None:
        out, err = answered
        if err:
            sys.stderr.write(err)
            sys.stderr.flush()
        sys.stdout.write(out)
        sys.stdout.flush()
        sys.exit(0)  # no changes: 0, with or without --detailed-exitcode
    from control_plane.cli.main import main as cli

    try:
        cli(prog_name="cplane")
    finally:
        DECIDED.clear()
