"""`cplane export --out DIR` (docs/reference.md §3): bootstrap config from an existing database."""

from __future__ import annotations

import gc
from pathlib import Path

import click

from control_plane.cli.context import Context, common_options, emit_json
from control_plane.errors import CplaneError

MAX_SHOWN = 50


@click.command("export")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory to write (must be empty or new).")
@click.option("--skip-invalid", is_flag=True,
              help="Write the valid objects and report the others, instead of writing nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@common_options
def export_command(ctx: Context, out: str, skip_invalid: bool, fmt: str):
    """Write the system data now in the database as config documents (one file per object).

    Secret fields are written as {fromEnv: VAR} references, never values; the variables to set
    are listed at the end. Retired rows are exported with `active: false`, unmanaged rows too:
    take them under management with `cplane plan --adopt` / `cplane apply --adopt`.
    """
    from control_plane.export.exporter import read_export

    target = Path(out)
    if target.exists() and any(target.iterdir()):
        raise CplaneError(f"{target} is not empty; export into a new or empty directory")
    frozen = gc.get_freeze_count() > 0
    # The collector stays off until what the export read and built is frozen out of its sight:
    # turned back on first (read_export's own pause), its next collection would traverse the
    # ~1,000,000 objects once more for no garbage (~0.05-0.09 s at 100,000 rows).
    enabled = gc.isenabled()
    gc.disable()
    try:
        # prerender: a second process renders the documents while they are validated (read_export).
        export = read_export(ctx.engine(read_only=True), ctx.environment, prerender=True)
        gc.freeze()
    finally:
        if enabled:
            gc.enable()
    try:
        return _write(export, target, skip_invalid, fmt)
    finally:
        export.close()
        if not frozen:  # in-process callers (tests) get their collector back whole
            gc.unfreeze()



def _write(export, target: Path, skip_invalid: bool, fmt: str):
    from control_plane.export.exporter import check_written, write_export

    if export.problems and not skip_invalid:
        shown = "; ".join(p.format() for p in export.problems[:MAX_SHOWN])
        more = f"; ... and {len(export.problems) - MAX_SHOWN} more" if len(export.problems) > MAX_SHOWN else ""
        raise CplaneError(f"{len(export.problems)} row(s) cannot be written as valid config, nothing was written "
                          f"(--skip-invalid writes the rest): {shown}{more}")
    # Everything read and built stays alive until the command ends: out of the collector's sight,
    # so that the objects rendering and checking make (yaml-rs's read-back of every document) do not
    # make it traverse ~1,000,000 of them again (~0.3 s of CPU at 100,000 rows).
    gc.freeze()
    issues: list = []
    # The in-memory check runs while a second process renders files (write_export).
    written = write_export(export, target, meanwhile=lambda: issues.extend(check_written(export, target)))
    if fmt == "json":
        emit_json({
            "out": str(target),
            "objects": len(export.objects),
            "files": [str(p) for p in written],
            "unmanaged": [f"{o.kind}/{o.name}" for o in export.objects if not o.managed],
            "secret_variables": export.secret_variables,
            "skipped": [p.format() for p in export.problems],
            "valid": not issues,
            "errors": [i.format() for i in issues],
        })
    else:
        for problem in export.problems:
            click.echo(f"warning: skipped {problem.format()}", err=True)
        unmanaged = sum(1 for o in export.objects if not o.managed)
        click.echo(f"Exported {len(export.objects)} objects to {target} ({unmanaged} not managed by cplane yet).")
        if export.secret_variables:
            click.echo("Secret fields reference these environment variables (set them to the current values "
                       "before planning): " + ", ".join(export.secret_variables))
    if issues:
        for issue in issues[:MAX_SHOWN]:
            click.echo(issue.format(), err=True)
        raise CplaneError(f"the exported tree does not validate ({len(issues)} error(s)), see above")
