"""The incremental plan: read and compare only the tables whose desired or live side changed.

An apply whose result can be vouched for (reconcile/fastpath.Recorder) records, beside every plan
table's change-counter version after its writes, the digest of the context it applied in (the
environment, cplane's version and migrations, the key id, the schedule bucket, the schema
revision: `Inputs.context`) and, per row kind, the digest of the desired rows it applied
(state.rows.rows_digest: canonical values, secrets as HMACs). Right after such an apply the
database holds exactly those rows. So, at a later plan, a row kind whose desired digest and whose
tables' versions all match the record would compare to nothing: it is neither read nor compared
(`scope` leaves it out; state.live reads only its ids and natural keys, and only when a kind
read in full references it). Finer, for a kind only edited in config (its tables did not move):
its rows are still the ones the last apply wrote, whose fingerprints cplane_managed_objects
holds, so only the rows whose desired fingerprint differs from the recorded one (and the rows
created or removed) are read and compared, by id; the rest compare to nothing. Finer on the live
side too: a kind whose table moved only by writes the row-change log names (db/counters.py) is
read and compared for those rows only (`_logged_rows`; state.live.read_live checks that they
account for the table, else reads it whole).

Doubt sends a kind, or the whole plan, the full way:
- no record, a record of an older cplane (no per-table part), another context, a counter or
  trigger missing, a write to the bookkeeping (managed objects, keys, the database identity): all
  kinds are read (None);
- a kind whose desired digest or any of its tables' versions moved; a kind with secret columns
  (a handful of rows; their stored references and ciphertexts decide what is shown); a kind with
  an unset secret variable (compare keeps the stored value, from the live row);
- then every kind that references a kind read because its live side moved (its references are
  natural keys of that table, which may have moved with it), and every child of a kind read at
  all (a parent's delete is decided with its children in view), transitively.
A config with timed objects always gets the full plan (its schedule is planned from every kind's
live rows). Change policies see a change's live row and its children's, which are read with it. tests/test_plan_incremental.py checks that the incremental and the full plan
agree on random sequences of edits, on both backends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from control_plane.kinds.registry import ROW_KINDS, RowKind
from control_plane.reconcile import fastpath
from control_plane.secrets import SecretBox
from control_plane.state.desired import DesiredState
from control_plane.state.live import ChangedRows
from control_plane.state.rows import Row, rows_fingerprints

# A drifted table is read by row when the row-change log names at most this share of its rows
# (a quarter), within these bounds: past that, one streamed SELECT of the table costs less than
# reading by id.
ROW_LOG_MIN = 100
ROW_LOG_MAX = 20_000


def kind_tables(rk: RowKind) -> list[str]:
    """The tables whose rows make up a row kind's live side: its own and its version history."""
    tables = [rk.table_name]
    if rk.history is not None:
        tables.append(rk.history.model.__tablename__)
    return tables


def context_digest(conn: Connection, environment: str | None, box: SecretBox) -> str:
    """The record's context as a plan made now on `conn` sees it."""
    return fastpath.Inputs("", environment, box.key_id, fastpath.schedule_bucket(environment)).context(
        fastpath._schema_revision(conn))


@dataclass
class Scope:
    """What a plan reads and compares: the kinds in `full`; of those in `keys`, only those rows
    (by natural key), whose managed records (all a plan needs of them) are in `managed`."""

    full: frozenset[str]
    keys: dict[str, frozenset[str]] = field(default_factory=dict)
    managed: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The apply run whose record this scope trusted (its run rows hold the rows not read).
    base_run: int | None = None
    # Kinds of `keys` whose table moved only by the rows the row-change log names: those ids are
    # read too (state.live.read_live, which reads the table whole if they do not account for it).
    changed: dict[str, ChangedRows] = field(default_factory=dict)


def scope(conn: Connection, desired: DesiredState, digest: Callable[[str], str], environment: str | None,
          box: SecretBox, fingerprints: Callable[[str], dict[str, str]] | None = None, *,
          on_record: Callable[[dict | None], None] | None = None,
          changed_keys: Callable[[str, dict], frozenset[str] | None] | None = None,
          inputs: fastpath.Inputs | None = None, environ=None) -> Scope | None:
    """What a plan must read and compare; None: everything (no usable record). `digest(kind)`: the
    digest of a kind's desired rows, asked only of kinds whose tables did not move (and of a kind
    that may be read by row); `fingerprints(kind)`: its rows' fingerprints (computed once for both).
    `on_record(tables)`: told the record's per-table part before any digest is asked for;
    `changed_keys(kind, tables)`: for a kind only edited in config, the keys whose desired row may differ
    from the applied one, found without reading the kind's managed records (reconcile/byfile.py), or
    None: scan them. `inputs` (hashed before the config was read) and `environ`: when they are the
    record's, the desired rows are the ones the recorded apply applied, and no digest is computed."""
    if fingerprints is None:
        def fingerprints(kind: str) -> dict[str, str]:
            return rows_fingerprints(ROW_KINDS[kind], desired.rows.get(kind, {}), box)

    record = fastpath.read_record(conn)
    tables = fastpath._json(record.get("tables")) if record is not None else None
    if on_record is not None:
        on_record(tables if isinstance(tables, dict) else None)
    if not isinstance(tables, dict) or tables.get("context") != context_digest(conn, environment, box):
        return None
    recorded_kinds: dict[str, str] = tables.get("kinds") or {}
    recorded = {str(k): int(v) for k, v in (record["versions"] or {}).items()}
    if set(recorded_kinds) != set(ROW_KINDS) or not recorded:
        return None
    if applied_inputs(conn, record, inputs, environ, box):
        digest = recorded_kinds.__getitem__  # the same desired rows as the recorded apply's
    found = moved_since(conn, recorded)
    if found is None:
        return None
    current, moved = found
    unset = {problem.kind for problem in desired.missing_secrets}
    read = {kind for kind, rk in ROW_KINDS.items() if kind in moved or rk.secret_columns or kind in unset}
    edited = {kind for kind in ROW_KINDS if kind not in read and recorded_kinds[kind] != digest(kind)}
    read |= edited
    spread(read, moved, children=True)
    # A kind only edited in config, whose parent is not read, with no children and that nothing
    # references (a referencing kind maps ids to keys from all its rows): only its rows whose
    # desired fingerprint is not the one recorded when the last apply wrote them.
    related = {rk.parent for rk in ROW_KINDS.values() if rk.parent}
    related |= {target for rk in ROW_KINDS.values() for target in rk.refs.values()}
    keys: dict[str, frozenset[str]] = {}
    managed: dict[str, dict[str, Any]] = {}
    for kind in sorted(edited):
        rk = ROW_KINDS[kind]
        if kind in related or rk.parent in read:
            continue
        found = changed_keys(kind, tables) if changed_keys is not None else None
        if found is not None:
            keys[kind], managed[kind] = found, managed_records(conn, rk, found)
        else:
            keys[kind], managed[kind] = _edited_rows(conn, rk, desired.rows.get(kind, {}), fingerprints(kind))
    logged: dict[str, ChangedRows] = {}
    for kind in sorted(read - edited - set(keys)):
        found = _logged_rows(conn, ROW_KINDS[kind], desired.rows.get(kind, {}), digest, recorded_kinds[kind],
                             recorded, current, moved, read, related, unset)
        if found is not None:
            logged[kind], managed[kind] = found
            keys[kind] = frozenset(managed[kind])
    return Scope(frozenset(read), keys, managed, base_run=record.get("apply_run_id"), changed=logged)


def moved_since(conn: Connection, recorded: dict[str, int]) -> tuple[dict[str, int], set[str]] | None:
    """(the plan tables' versions now, the row kinds whose tables moved since the `recorded`
    versions), or None when the record vouches for nothing: a plan table it does not cover, a
    counter missing, the bookkeeping tables moved."""
    current = fastpath._current_versions(conn, sorted(recorded))
    if current is None or any(t not in recorded for t in fastpath.plan_tables()):
        return None
    if any(current[t] != recorded[t] for t in fastpath.BOOKKEEPING_TABLES):
        return None
    return current, {kind for kind, rk in ROW_KINDS.items() if any(current[t] != recorded[t] for t in kind_tables(rk))}


def spread(read: set[str], moved: set[str], *, children: bool) -> None:
    """Adds to `read`, transitively, every kind that references a kind in `moved` (which then counts
    as moved: its natural keys may name the moved rows, so what refers to it follows) and, with
    `children`, every child of a kind read (a parent's delete is decided with its children in view)."""
    grew = True
    while grew:
        grew = False
        for kind, rk in ROW_KINDS.items():
            if kind in read:
                continue
            if any(target in moved for target in rk.refs.values()):
                read.add(kind)
                moved.add(kind)
                grew = True
            elif children and rk.parent in read:
                read.add(kind)
                grew = True


def applied_inputs(conn: Connection, record: dict[str, Any], inputs: fastpath.Inputs | None, environ,
                   box: SecretBox) -> bool:
    """Whether the desired state is the one the recorded apply applied: the same files, overlay,
    cplane version, migrations, key, schedule bucket and schema revision (`inputs`, hashed before
    the config was read, so an edit made while it was read can only make this False) and the same
    secret values (their HMAC). The no-change fast path decides on exactly these; here the tables
    may have moved, and each kind's desired digest is then the recorded one without computing it."""
    if inputs is None:
        return False
    import os

    environ = os.environ if environ is None else environ
    return (inputs.digest(fastpath._schema_revision(conn)) == record["inputs_digest"]
            and fastpath.secrets_digest(record["variables"] or [], environ, box) == record["secrets_digest"])


def inputs_applied(engine, inputs: fastpath.Inputs, environ, box: SecretBox) -> bool:
    """applied_inputs against the record as it is now, on a connection of its own (before the
    config is read: what the parse may leave out)."""
    from control_plane.db.engine import check_connection

    check_connection(engine)
    with engine.connect() as conn:
        record = fastpath.read_record(conn)
        return record is not None and applied_inputs(conn, record, inputs, environ, box)


def _logged_rows(conn: Connection, rk: RowKind, rows: dict[str, Row], digest: Callable[[str], str], recorded_digest: str,
                 recorded: dict[str, int], current: dict[str, int], moved: set[str], read: set[str],
                 related: set[str], unset: set[str]) -> tuple[ChangedRows, dict[str, Any]] | None:
    """Of a kind read because its live side moved: the rows the row-change log names (and the
    managed records of the rows those ids were), when that is all that moved; None: read it whole.

    By row only when nothing but its own table moved, and only by logged rows (db/counters.py:
    the log accounts for every version since the record, and names few rows); when its desired
    rows are the ones the last apply applied (digest), so every other row is as that apply left it,
    which is the desired row; and under the same conditions as a kind edited in config (no secret
    columns, no unset variable, no children, nothing references it, its parent not read, none of
    its references moved). state.live.read_live then checks that the ids account for the table."""
    from sqlalchemy import select

    from control_plane.db.counters import LOGGED_TABLES, row_changes
    from control_plane.db.models import ManagedObject
    from control_plane.state.live import IN_CHUNK

    table = rk.table_name
    if (rk.secret_columns or rk.name in unset or rk.name in related or rk.parent in read or table not in LOGGED_TABLES
            or any(target in moved for target in rk.refs.values())
            or any(current[t] != recorded[t] for t in kind_tables(rk) if t != table)):
        return None
    limit = min(ROW_LOG_MAX, max(ROW_LOG_MIN, len(rows) // 4))
    ids = row_changes(conn, table, recorded[table], current[table], limit)
    if ids is None or digest(rk.name) != recorded_digest:
        return None
    mo = ManagedObject.__table__
    base = select(mo.c.id, mo.c.kind, mo.c.name, mo.c.row_id, mo.c.fingerprint, mo.c.prevent_destroy,
                  mo.c.secret_refs).where(mo.c.kind == rk.name)
    wanted = sorted(ids)
    records = {r.name: r for i in range(0, len(wanted), IN_CHUNK)
               for r in conn.execute(base.where(mo.c.row_id.in_(wanted[i : i + IN_CHUNK])))}
    return ChangedRows(ids, len(rows)), records


def _managed_select(rk: RowKind):
    from sqlalchemy import null, select

    from control_plane.db.models import ManagedObject

    mo = ManagedObject.__table__
    # (No secret references: only kinds without secret columns get here.)
    return mo, select(mo.c.id, mo.c.kind, mo.c.name, mo.c.row_id, mo.c.fingerprint, mo.c.prevent_destroy,
                      null().label("secret_refs")).where(mo.c.kind == rk.name)


def managed_records(conn: Connection, rk: RowKind, names: frozenset[str]) -> dict[str, Any]:
    """The managed records of these rows of a kind (by the (kind, name) unique index), in chunks."""
    from control_plane.state.live import IN_CHUNK

    mo, stmt = _managed_select(rk)
    wanted = sorted(names)
    found: dict[str, Any] = {}
    for i in range(0, len(wanted), IN_CHUNK):
        for record in conn.execute(stmt.where(mo.c.name.in_(wanted[i : i + IN_CHUNK]))):
            found[record[2]] = record
    return found


def _edited_rows(conn: Connection, rk: RowKind, rows: dict[str, Row], fingerprints: dict[str, str]):
    """The natural keys of `rows` that compare could find changed, and their managed records:
    rows whose fingerprint or annotation differs from the managed record, new rows, removed rows."""
    from control_plane.state.live import stream

    _, stmt = _managed_select(rk)
    wanted: set[str] = set()
    kept: dict[str, Any] = {}
    seen: set[str] = set()
    for record in stream(conn, stmt):
        _, _, name, _, recorded, prevent_destroy, _ = record  # (by position: the scan is 100,000 rows)
        seen.add(name)
        row = rows.get(name)
        if row is None or prevent_destroy != row.prevent_destroy or recorded != fingerprints[name]:
            wanted.add(name)
            kept[name] = record
    wanted.update(key for key in rows if key not in seen)
    return frozenset(wanted), kept


def carried(desired: DesiredState, live) -> dict[str, dict[str, dict[str, Any]]]:
    """The run rows (apply.run_rows' shape) of what was not read: the desired rows, which the last
    apply left in the database exactly (only kinds without secret columns are ever left unread)."""
    from control_plane.apply.run_rows import _plain
    from control_plane.state.live import out_of_scope

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind, rk in ROW_KINDS.items():
        rows = out_of_scope(live, kind, desired.rows.get(kind, {}))
        if rows:
            out[kind] = {key: {"values": _plain(rk, row.values), "secret_refs": {},
                               "prevent_destroy": bool(row.prevent_destroy)} for key, row in rows.items()}
    return out


class Carried:
    """What an apply's run record keeps of the rows it did not read, without building them: they
    are the rows run `base_run` left (the apply whose record the plan trusted: its tables did not
    move since, and its desired rows of these keys are the ones still asked for, canonically), so
    the record can say "kind K as in run N, but for these keys" (apply/run_rows.py, format 3).
    `rows()` builds them anyway (today's `carried`), for a record that cannot refer to the base."""

    def __init__(self, desired: DesiredState, live, base_run: int | None):
        self.desired, self.live, self.base_run = desired, live, base_run
        self._rows: dict[str, dict[str, dict[str, Any]]] | None = None

    def kinds(self) -> list[str]:
        """The kinds some of whose rows were not read (each is taken from the base, then the rows
        read override it)."""
        return [kind for kind in ROW_KINDS if not self.live.is_full(kind) or kind in self.live.keys]

    def count(self) -> int:
        from control_plane.state.live import out_of_scope_count

        return sum(out_of_scope_count(self.live, kind, self.desired.rows.get(kind, {})) for kind in self.kinds())

    def rows(self) -> dict[str, dict[str, dict[str, Any]]]:
        if self._rows is None:
            self._rows = carried(self.desired, self.live)
        return self._rows

    def items(self):
        return self.rows().items()
