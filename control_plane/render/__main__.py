"""Render a saved plan file: `python -m control_plane.render plan.json [--format text|markdown]`.

The workflows use it to put the full text plan beside plan.json in their artifact, rendered from the
very plan that was saved (not from a second computation). Never colour; never reads a database.
"""

from __future__ import annotations

import argparse
import sys

from control_plane.errors import CplaneError
from control_plane.plans.planfile import read_plan
from control_plane.render.plan import render_markdown, render_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m control_plane.render", description=__doc__.splitlines()[0])
    parser.add_argument("planfile")
    parser.add_argument("--format", dest="fmt", choices=["text", "markdown"], default="text")
    parser.add_argument("--compact", action="store_true", help="count each kind's creates instead of listing them")
    parser.add_argument("--artifact", help="markdown: where the full plan is, named when it is too long for a comment")
    args = parser.parse_args(argv)
    try:
        plan = read_plan(args.planfile)
    except (OSError, ValueError, KeyError, TypeError, CplaneError) as exc:
        print(f"error: {args.planfile} is not a cplane plan: {exc}", file=sys.stderr)
        return 1
    if args.fmt == "markdown":
        sys.stdout.write(render_markdown(plan, artifact=args.artifact, compact=args.compact))
    else:
        sys.stdout.write(render_text(plan, compact=args.compact) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
