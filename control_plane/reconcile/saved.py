"""What the apply of a plan made earlier (a saved plan, a reviewed plan, a rollback) reads.

Such an apply checks every row the plan changes against the database (apply/execute.py refuses the
plan if one moved) and writes the plan; for that it needs those rows, and the ids and natural keys
their references are mapped through. It also records the rows the run leaves (apply/run_rows.py),
for history and rollback, which used to mean reading every table: at 100,000 rows, most of the
apply of a 1,000-row change.

The rest need not be read when the last apply's record (reconcile/fastpath.Recorder) vouches for
them: the tables' change counters are the ones it recorded, so their rows are the ones its run
left, which that run's record holds. The run record then refers to that base run for them (format
3, as an incremental apply's does), and the rows read override it.

What is read:
- everything, at any doubt: no record, a record without a run (a no-op apply), a counter missing,
  the bookkeeping (managed objects, keys, identity) moved;
- in full: every kind whose tables moved since the record; every kind with secret columns (a
  handful of rows, whose ciphertexts the key check reads); every kind that references a kind read
  because it moved, transitively (its references are stored as the natural keys of that table,
  which may have moved with it); a kind with an adoption (its row has no managed record to find it
  by); and a kind the plan changes that another kind read references (which maps its ids to
  natural keys from all its rows);
- by key: the other kinds the plan changes, only the rows it names, found through their managed
  records (state/live.read_live's `keys`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from control_plane.kinds.registry import ROW_KINDS
from control_plane.plans.model import Action, Plan
from control_plane.secrets import SecretBox
from control_plane.state.live import LiveState


def plan_reader(plan: Plan, box: SecretBox) -> Callable[[Connection], LiveState]:
    """apply/execute's `read` for `plan`: the live state, under the apply lock, of what it needs."""
    from control_plane.reconcile.incremental import managed_records
    from control_plane.state.live import read_live

    def read(conn: Connection) -> LiveState:
        found = what_to_read(conn, plan)
        if found is None:
            return read_live(conn, box)
        full, keys, base_run = found
        records = {kind: managed_records(conn, ROW_KINDS[kind], names) for kind, names in keys.items()}
        live = read_live(conn, box, full=full, keys=keys, records=records)
        deletes = {kind: sum(1 for c in plan.changes if c.kind == kind and c.action == Action.DELETE) for kind in keys}
        live.carried = FromBase(conn, box, live, base_run, deletes)
        return live

    return read


def what_to_read(conn: Connection, plan: Plan) -> tuple[frozenset[str], dict[str, frozenset[str]], int] | None:
    """(the kinds read, those of them read only for some keys, the run whose rows the rest are),
    or None: read everything."""
    from control_plane.reconcile import fastpath
    from control_plane.reconcile.incremental import moved_since, spread

    record = fastpath.read_record(conn)
    if record is None or record.get("apply_run_id") is None:
        return None
    recorded = {str(k): int(v) for k, v in (record["versions"] or {}).items()}
    found = moved_since(conn, recorded) if recorded else None
    if found is None:
        return None
    _, moved = found
    whole = moved | {k for k, rk in ROW_KINDS.items() if rk.secret_columns}
    whole |= {c.kind for c in plan.changes if c.action == Action.ADOPT}
    spread(whole, moved, children=False)  # (no delete is decided here: the plan's are its own)
    changed: dict[str, set[str]] = {}
    for change in plan.changes:
        if change.kind not in whole:
            changed.setdefault(change.kind, set()).add(change.name)
    read = whole | set(changed)
    referenced = {target for kind in read for target in ROW_KINDS[kind].refs.values()}
    keys = {kind: frozenset(names) for kind, names in changed.items() if kind not in referenced}
    return frozenset(read), keys, int(record["apply_run_id"])


class FromBase:
    """The run rows (apply/run_rows.py) of what an apply did not read: those run `base_run` left,
    which record_run_rows stores by reference, for the kinds not read and, but for the keys read,
    the kinds read by key. `rows()` reads them (in the apply's transaction, after its writes: the
    rows it wrote are overridden by the run's own) for a record that cannot refer to the base.
    `deletes`: per kind read by key, the rows the plan deletes (the keys read that are gone)."""

    def __init__(self, conn: Connection, box: SecretBox, live: LiveState, base_run: int, deletes: dict[str, int]):
        self.conn, self.box, self.live, self.base_run = conn, box, live, base_run
        self._deletes = deletes
        self._rows: dict[str, dict[str, dict[str, Any]]] | None = None

    def kinds(self) -> list[str]:
        return [kind for kind in ROW_KINDS if not self.live.is_full(kind) or kind in self.live.keys]

    def count(self) -> int:
        """The rows taken from the base: the managed rows of those kinds once the run wrote, less
        the keys read that are still there (the run's own rows count those)."""
        from sqlalchemy import func, select

        from control_plane.db.models import ManagedObject

        kinds = self.kinds()
        if not kinds:
            return 0
        mo = ManagedObject.__table__
        managed = int(self.conn.execute(select(func.count()).select_from(mo).where(mo.c.kind.in_(kinds))).scalar_one())
        return managed - sum(len(keys) - self._deletes.get(kind, 0) for kind, keys in self.live.keys.items())

    def rows(self) -> dict[str, dict[str, dict[str, Any]]]:
        if self._rows is None:
            from control_plane.apply.run_rows import post_state
            from control_plane.state.live import read_live

            kinds = self.kinds()
            self._rows = {}
            if kinds:
                state = post_state(Plan(), read_live(self.conn, self.box, full=frozenset(kinds)))
                self._rows = {kind: rows for kind, rows in state.items() if kind in kinds}
        return self._rows

    def items(self):
        return self.rows().items()
