"""`cplane secrets rotate-key` (docs/reference.md §3): move every stored secret to a new key."""

from __future__ import annotations

import click

from control_plane.cli.context import Context, common_options, emit_json


@click.group("secrets")
def secrets_group():
    """The key that encrypts secrets at rest."""


@secrets_group.command("rotate-key")
@click.option("--actor", help="Who rotates, for the audit record (default: $CPLANE_ACTOR, else the OS user).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@common_options
def rotate_key_command(ctx: Context, actor: str | None, fmt: str):
    """Re-encrypt every stored secret (system and user data) from CPLANE_SECRET_KEY to
    CPLANE_NEW_SECRET_KEY, in one transaction under the apply lock, audited.

    Afterwards set CPLANE_SECRET_KEY to the new key everywhere (apply, serve, CI). Without
    CPLANE_SECRET_KEY (development), the old key is the local key file, which is then replaced.
    """
    import os

    from control_plane.apply.rotate import rotate_key
    from control_plane.db.engine import ensure_schema
    from control_plane.environment import default_actor
    from control_plane.secrets import KEY_VARIABLE, SecretBox, local_key_file, new_key_box

    engine = ctx.engine()
    old = SecretBox(ctx.environment, engine.url)
    new = new_key_box(ctx.environment)
    ensure_schema(engine)
    result = rotate_key(engine, old, new, actor=actor or default_actor())
    key_file = None
    if not os.environ.get(KEY_VARIABLE):
        # Development: the old key came from the local key file; it now holds the new key.
        key_file = local_key_file(engine.url)
        key_file.write_bytes(os.environ["CPLANE_NEW_SECRET_KEY"].encode() + b"\n")
        from control_plane.secrets import _key_material

        _key_material.cache_clear()
    if fmt == "json":
        emit_json({"old_key_id": result.old_key_id, "new_key_id": result.new_key_id,
                   "reencrypted": result.reencrypted, "total": result.total,
                   **({"key_file": str(key_file)} if key_file else {})})
        return
    per_column = ", ".join(f"{label} {n}" for label, n in result.reencrypted.items()) or "none stored"
    click.echo(f"Re-encrypted {result.total} secret(s) from key id {result.old_key_id} to key id "
               f"{result.new_key_id} ({per_column}).")
    if key_file:
        click.echo(f"The local key file {key_file} now holds the new key.")
    else:
        click.echo(f"Set {KEY_VARIABLE} to the new key wherever cplane runs (apply, serve, CI).")
