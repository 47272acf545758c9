"""The desired state of a rollback: the rows an earlier apply run left (apply.run_rows), as a
DesiredState that compare plans against the live database like any config (drift included).

Secrets were never kept with the run: each secret column comes back from its reference, read from
the environment, or keeps the stored value when the variable is unset (as for any plan)."""

from __future__ import annotations

from typing import Any

from control_plane.state.desired import DesiredState, build_desired
from control_plane.state.rows import Row


def rollback_desired(state: dict[str, dict[str, dict[str, Any]]], environ=None) -> DesiredState:
    from control_plane.kinds.registry import ROW_KINDS

    rows: dict[str, dict[str, Row]] = {}
    for kind, entries in state.items():
        rk = ROW_KINDS.get(kind)
        if rk is None:
            continue  # a kind this cplane no longer knows
        for key, entry in entries.items():
            values = dict(entry["values"])
            refs = dict(entry.get("secret_refs") or {})
            for column in rk.secret_columns:
                values[column] = None
                refs.setdefault(column, None)
            rows.setdefault(kind, {})[key] = Row(kind, key, values, refs if rk.secret_columns else None,
                                                 bool(entry.get("prevent_destroy")))
    return build_desired(None, environ, rows)  # type: ignore[arg-type]
