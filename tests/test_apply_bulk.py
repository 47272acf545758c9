"""The first apply's bulk path (issue 17, item 4): rows built with each kind's columns looked up once,
new rows' ids returned by the insert itself, COPY fed by itemgetter, the audit form built from the changes
it keeps. What it writes must be what the general path writes: the same bookkeeping rows and
fingerprints (so that drift is still told from a config change), on PostgreSQL and SQLite."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from control_plane.apply.audit import audit_form
from control_plane.db.dialect import COPY_THRESHOLD, Backend, for_dialect
from control_plane.db.models import ManagedObject
from control_plane.kinds.registry import ROW_KINDS
from control_plane.plans.model import Action, Change, FieldChange, Plan
from control_plane.plans.planfile import to_dict
from control_plane.reconcile.controller import apply_config, make_plan
from control_plane.secrets import SecretBox
from control_plane.state.live import read_live
from control_plane.state.rows import row_fingerprint


def test_bookkeeping_of_a_first_apply_names_every_row_with_its_fingerprint(config_tree, migrated_engine):
    result = apply_config(migrated_engine, config_tree.root, actor="test", fast_path=False)
    assert result.applied and result.summary["create"] > 100
    creates = {(c.kind, c.name): c for c in result.plan.changes if c.action == Action.CREATE}
    box = SecretBox(None)  # CPLANE_SECRET_KEY, set by config_tree
    with migrated_engine.connect() as conn:
        live = read_live(conn, box)
        records = conn.execute(select(ManagedObject.__table__)).mappings().all()
        # One bookkeeping row per created row, pointing at it, with the fingerprint the plan computed,
        # which is also the fingerprint of the row as read back (no drift right after the apply).
        assert {(r["kind"], r["name"]) for r in records} == set(creates)
        for r in records:
            row = live.rows[r["kind"]][r["name"]]
            assert r["row_id"] == row.id == live.ids[r["kind"]][r["name"]]
            assert r["table_name"] == ROW_KINDS[r["kind"]].table_name
            assert r["fingerprint"] == creates[(r["kind"], r["name"])].desired_fingerprint
            assert r["fingerprint"] == row_fingerprint(ROW_KINDS[r["kind"]], row.values, box)
    assert not make_plan(migrated_engine, config_tree.root, fast_path=False).plan.changes
    # A row edited by SQL is drift, named as such; the full plan heals it.
    keyword = next(c for c in result.plan.changes if c.kind == "SeedKeyword")
    table = ROW_KINDS["SeedKeyword"].table
    with migrated_engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == live.ids["SeedKeyword"][keyword.name])
                     .values(search_volume=func.coalesce(table.c.search_volume, 0) + 1))
    plan = make_plan(migrated_engine, config_tree.root, fast_path=False).plan
    assert [(c.kind, c.name, c.cause) for c in plan.changes] == [("SeedKeyword", keyword.name, "drift")]


def _reference_audit_form(plan: Plan) -> dict:
    """The audit form as it was computed before the bulk path: every change converted, creates dropped."""
    data = to_dict(plan, include_values=False)
    created: dict[str, list[str]] = {}
    kept = []
    for change, entry in zip(plan.changes, data["changes"], strict=True):
        if change.action == Action.CREATE and not change.fields:
            created.setdefault(change.kind, []).append(change.name)
        else:
            kept.append(entry)
    data["changes"] = kept
    data["created"] = created
    return data


def test_audit_form_is_unchanged_by_the_bulk_path():
    plan = Plan(environment="staging", config_revision="abc", changes=[
        Change("Industry", "a", "create", values={"slug": "a"}, desired_fingerprint="f1"),
        Change("PaymentMethod", "paypal", "create", values={"name": "PayPal"},
               fields=[FieldChange("secret_key_encrypted", None, "(sensitive)")]),
        Change("Plan", "pro", "update", fields=[FieldChange("price_monthly", "19.00", "29.00")],
               live_fingerprint="l", desired_fingerprint="d", impact={"subscriptions": 3}),
        Change("Industry", "b", "create", values={"slug": "b"}),
        Change("Role", "old", "delete", live_fingerprint="x", reason="removed from config"),
    ], warnings=["w"])
    assert audit_form(plan) == _reference_audit_form(plan)
    assert audit_form(plan)["summary"] == plan.summary == {"create": 3, "update": 1, "delete": 1, "retire": 0}


def test_copy_writes_what_insert_writes(migrated_engine):
    """COPY (PostgreSQL, itemgetter-fed, JSON columns encoded) and INSERT give the same rows, JSON
    values and NULLs included; on SQLite both are INSERT."""
    mo = ManagedObject.__table__
    n = COPY_THRESHOLD + 50

    def rows(kind):
        return [{"kind": kind, "name": f"n{i}", "table_name": "t", "row_id": i, "fingerprint": f"f{i}",
                 "prevent_destroy": i % 2 == 0,
                 "secret_refs": None if i % 3 else {"secret_key_encrypted": f"VAR_{i}", "nested": {"a": [1, "x"]}}}
                for i in range(n)]

    kinds = ("Bulk", "Plain", "Tuples", "FewTuples", "PlainTuples")
    columns = ["kind", "name", "table_name", "row_id", "fingerprint", "prevent_destroy", "secret_refs"]
    with migrated_engine.begin() as conn:
        for_dialect(conn).bulk_insert(conn, mo, rows("Bulk"))
        Backend().bulk_insert(conn, mo, rows("Plain"))
        # Tuples in a column order (what _write hands over for the bookkeeping), by COPY/executemany,
        # below the COPY threshold, and by SQLAlchemy's INSERT: the same rows.
        for_dialect(conn).bulk_insert_rows(conn, mo, columns, [tuple(r.values()) for r in rows("Tuples")])
        few = [tuple(r.values()) for r in rows("FewTuples")][:COPY_THRESHOLD - 1]
        for_dialect(conn).bulk_insert_rows(conn, mo, columns, few)
        Backend().bulk_insert_rows(conn, mo, columns, [tuple(r.values()) for r in rows("PlainTuples")])
        read = {kind: [dict(r) for r in conn.execute(
            select(mo.c.name, mo.c.row_id, mo.c.fingerprint, mo.c.prevent_destroy, mo.c.secret_refs)
            .where(mo.c.kind == kind).order_by(mo.c.row_id)).mappings()] for kind in kinds}
    assert read["Bulk"] == read["Plain"] == read["Tuples"] == read["PlainTuples"] and len(read["Bulk"]) == n
    assert read["FewTuples"] == read["Bulk"][:COPY_THRESHOLD - 1]
    assert sum(1 for r in read["Bulk"] if r["secret_refs"] is None) == sum(1 for i in range(n) if i % 3)


def test_run_rows_format_2_reads_back_as_written_and_format_1_still_reads():
    import json

    from control_plane.apply.run_rows import decode_state, encode_state

    state = {
        "SeedKeyword": {f"a/b/kw{i}": {"values": {"keyword": f"kw{i}", "search_volume": i or None, "cpc": "1.5"},
                                       "secret_refs": {}, "prevent_destroy": i == 3} for i in range(5)},
        "PaymentMethod": {
            "stripe": {"values": {"name": "Stripe", "currencies": ["USD"]},
                       "secret_refs": {"secret_key_encrypted": "STRIPE_SECRET_KEY"}, "prevent_destroy": False},
            # Another set of columns than the kind's first row: kept as its map.
            "paypal": {"values": {"name": "PayPal"}, "secret_refs": {"secret_key_encrypted": None},
                       "prevent_destroy": True},
        },
        "Role": {},
    }
    stored = json.loads(json.dumps(encode_state(state)))
    assert stored["format"] == 2 and stored["kinds"]["SeedKeyword"]["columns"] == ["keyword", "search_volume", "cpc"]
    assert decode_state(stored) == state
    assert decode_state({"format": 1, "rows": state}) == state


def test_ids_returned_by_the_insert_are_the_rows_ids(migrated_engine):
    """PostgreSQL draws the ids from the sequence and COPYs them with the rows; SQLite answers None
    (the caller reads them back). Either way no id is guessed."""
    mo = ManagedObject.__table__
    rows = [{"kind": "K", "name": f"n{i}", "table_name": "t", "row_id": i, "fingerprint": "f",
             "prevent_destroy": False, "secret_refs": None} for i in range(COPY_THRESHOLD + 10)]
    with migrated_engine.begin() as conn:
        ids = for_dialect(conn).bulk_insert_ids(conn, mo, rows)
        stored = dict(conn.execute(select(mo.c.name, mo.c.id).where(mo.c.kind == "K")).all())
    assert len(stored) == len(rows)
    if migrated_engine.dialect.name == "postgresql":
        assert ids == [stored[r["name"]] for r in rows]
    else:
        assert ids is None


def test_compare_hands_back_the_fingerprints_kind_digest_would_compute(config_tree, migrated_engine):
    """compare fills `fingerprints` only for kinds of which it fingerprinted every desired row as it
    is (the first apply: all creates), with exactly state.rows.rows_fingerprints; the apply's record
    (Prepared.kind_digest) reuses them instead of hashing every row again."""
    from control_plane.plans.compare import compare
    from control_plane.reconcile.controller import prepare
    from control_plane.state.rows import rows_fingerprints

    prepared = prepare(config_tree.root)
    box = prepared.box
    with migrated_engine.connect() as conn:
        found: dict = {}
        compare(prepared.desired, read_live(conn, box), box, fingerprints=found)
    # (a kind with an unset secret variable compares altered rows: left to kind_digest)
    unset = {p.kind for p in prepared.desired.missing_secrets}
    kinds = {k for k, rows in prepared.desired.rows.items() if rows and k not in unset}
    assert set(found) == kinds and "SeedKeyword" in kinds
    for kind in kinds:
        assert found[kind] == rows_fingerprints(ROW_KINDS[kind], prepared.desired.rows[kind], box)
    apply_config(migrated_engine, config_tree.root, actor="test", fast_path=False)
    with migrated_engine.connect() as conn:
        found = {}
        compare(prepared.desired, read_live(conn, box), box, fingerprints=found)
    assert found == {}  # nothing changed: no row fingerprinted, no kind complete
    # The applied record's digests are those of every kind's rows, reused or not.
    fresh = prepare(config_tree.root)
    assert {k: prepared.kind_digest(k) for k in ROW_KINDS} == {k: fresh.kind_digest(k) for k in ROW_KINDS}


_JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6),
                       st.decimals(allow_nan=False, allow_infinity=False, places=2))


@settings(max_examples=100, deadline=None)
@given(st.recursive(_JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=8), st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), inner, max_size=4)),
    max_leaves=40), st.integers(1, 5))
def test_run_rows_are_compressed_from_exactly_the_json_of_the_document(document, piece_items):
    """A run's rows are written out in pieces (apply.run_rows._compress: long lists a slice at a
    time, never the whole JSON at once); decompressed, they are exactly the one-shot compact JSON,
    whatever the document's shape (non-string keys, nested and short lists, decimals)."""
    import json
    import zlib

    import control_plane.apply.run_rows as run_rows
    from control_plane.plans.planfile import json_default

    kept = run_rows._JSON_SLICE
    run_rows._JSON_SLICE = piece_items
    try:
        expected = json.dumps(document, default=json_default, separators=(",", ":"))
        assert "".join(run_rows._json_pieces(document)) == expected
        assert zlib.decompress(run_rows.compress_json(document)).decode() == expected
    finally:
        run_rows._JSON_SLICE = kept
