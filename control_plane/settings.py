"""Typed system settings for the runtime: a setting's value as stored, when it is of the type its
SystemSetting declares (`spec.schema`, stored as system_settings.value_schema).

A value edited outside cplane into the wrong type (`maintenance_mode` set to the string "no") is
left out, as an unset setting is, so the caller's default applies: the runtime never guesses what
a mistyped value meant.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from control_plane.db.models import SystemSetting


def typed_settings(conn: Any, keys: Iterable[str]) -> dict[str, Any]:
    """{key: value} of the settings named in `keys` that exist and match their declared type.

    `conn` is a SQLAlchemy Connection or Session. Values come as JSON types: int, bool, str,
    list, dict (a value declared `{type: integer}` is an int)."""
    from control_plane.kinds.typed import matches

    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    rows = conn.execute(
        select(SystemSetting.key, SystemSetting.value, SystemSetting.value_schema).where(SystemSetting.key.in_(wanted))
    ).all()
    return {key: value for key, value, schema in rows if matches(schema or {}, value)}
