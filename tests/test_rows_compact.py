"""The compact forms that keep a plan's rows small (state.rows.values_maker, state.live's read with
the desired rows, apply.run_rows' encoding a piece at a time) are the same data as the plain ones."""

from __future__ import annotations

import json
import pickle
import zlib
from decimal import Decimal

from control_plane.apply import run_rows
from control_plane.plans.planfile import json_default
from control_plane.reconcile.controller import apply_config, prepare
from control_plane.state.live import read_live
from control_plane.state.rows import values_maker


def test_values_maker_makes_the_dict_zip_makes():
    for columns, values in [
        (("a", "b", "c"), (1, "x", None)),
        (("a", "b", "a"), (1, 2, 3)),  # a repeated column: its first place, its last value
        (("not an identifier", "1x", "class"), ([1], {"k": Decimal("1.50")}, True)),
        ((), ()),
    ]:
        made = values_maker(columns)(values)
        plain = dict(zip(columns, values, strict=True))
        assert made == plain and list(made.items()) == list(plain.items())
        assert pickle.loads(pickle.dumps(made)) == plain and json.dumps(made, default=str) == json.dumps(plain, default=str)
    make = values_maker(("a", "b"))
    first, second = make((1, 2)), make((3, 4))
    first["c"] = 5  # another key: only this dict has it
    first["a"] = 0
    del first["b"]
    assert first == {"a": 0, "c": 5} and list(first) == ["a", "c"] and second == {"a": 3, "b": 4}


def test_run_rows_pieces_make_the_one_json_text(monkeypatch):
    monkeypatch.setattr(run_rows, "_JSON_SLICE", 2)
    for n in range(7):
        document = {"format": 3, "base": 1, "from_base": {"K": [f"gone {i}" for i in range(n)]},
                    "kinds": {"K": {"columns": ["a", "b"], "keys": [f"k{i} é\n\"" for i in range(n)],
                                    "rows": [[Decimal("1.50"), {"x": [i, None, True, 1.5]}] for i in range(n)],
                                    "secret_refs": {}, "prevent_destroy": []}},
                    "other": {1: "a key that is not text"}, "empty": []}
        text = json.dumps(document, default=json_default, separators=(",", ":")).encode()
        assert zlib.decompress(run_rows.compress_json(document)) == text


def test_live_rows_read_beside_the_desired_ones_are_the_same(config_tree, migrated_engine):
    apply_config(migrated_engine, config_tree.root, actor="test", fast_path=False)
    prepared = prepare(config_tree.root)
    with migrated_engine.connect() as conn:
        alone = read_live(conn, prepared.box)
        beside = read_live(conn, prepared.box, desired=prepared.desired.rows)
    assert alone.ids == beside.ids and alone.unreadable == beside.unreadable
    for kind, rows in alone.rows.items():
        assert list(beside.rows[kind]) == list(rows)
        for key, row in rows.items():
            other = beside.rows[kind][key]
            assert (other.kind, other.key, other.id, other.version, other.stored) == (row.kind, row.key, row.id, row.version, row.stored)
            assert list(other.values.items()) == list(row.values.items())
            assert all(type(other.values[c]) is type(v) for c, v in row.values.items())
            assert [repr(v) for v in other.values.values()] == [repr(v) for v in row.values.values()]
    shared = beside.rows["SeedKeyword"]
    desired = prepared.desired.rows["SeedKeyword"]
    key = next(iter(desired))
    assert shared[key].key is desired[key].key  # the desired row's strings, not second copies
    for kind, records in alone.managed.items():
        assert list(beside.managed[kind]) == list(records)
        for key, record in records.items():
            other = beside.managed[kind][key]
            assert (other.id, other.row_id, other.fingerprint, other.prevent_destroy, other.secret_refs) == \
                (record.id, record.row_id, record.fingerprint, record.prevent_destroy, record.secret_refs)
