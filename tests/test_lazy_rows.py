"""state/lazyrows.KindRows: the rows config_rows builds, built only when asked for; the same
mapping as the dict, in the same order, whatever is asked first."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.config.cache import pack_rows
from control_plane.state.lazyrows import KindRows, column_values, secret_rows
from control_plane.state.rows import Row

KEYS = st.sampled_from([f"k{i}" for i in range(8)])
VALUE = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=3), st.booleans())


@st.composite
def row(draw):
    columns = draw(st.sampled_from([("a", "b"), ("a",), ("b", "a")]))
    values = {c: draw(VALUE) for c in columns}
    refs = draw(st.one_of(st.none(), st.just({}), st.just({"a": "VAR"})))
    return Row("K", draw(KEYS), values, refs, draw(st.booleans()))


# Items: groups of rows that are either given as Rows or packed into runs (a cache entry read from disk).
ITEMS = st.lists(st.tuples(st.booleans(), st.lists(row(), max_size=6)), max_size=5)
ASKS = st.lists(st.one_of(KEYS.map(lambda k: ("get", k)), st.sampled_from(
    [("len", None), ("secret", None), ("column", "a"), ("column", "b"), ("all", None)])), max_size=6)


def lazy_of(items) -> tuple[KindRows, dict[str, Row]]:
    lazy, plain = KindRows(), {}
    for packed, rows in items:
        for r in rows:
            plain[r.key] = r
        if packed:
            for run in pack_rows(rows):
                lazy.add_run(run)
        else:
            for r in rows:
                lazy.add_row(r)
    return lazy, plain


@settings(max_examples=300, deadline=None)
@given(ITEMS, ASKS)
def test_kind_rows_are_the_dict_config_rows_builds(items, asks):
    lazy, plain = lazy_of(items)
    for ask, arg in asks:
        if ask == "get":
            assert (arg in lazy) == (arg in plain)
            assert lazy.get(arg) == plain.get(arg)
            if arg in plain:
                assert lazy[arg] == plain[arg]
        elif ask == "len":
            assert len(lazy) == len(plain)
        elif ask == "secret":
            assert secret_rows(lazy) == secret_rows(plain)
        elif ask == "column":
            assert sorted(map(repr, column_values(lazy, arg))) == sorted(map(repr, column_values(plain, arg)))
        else:
            assert list(lazy.items()) == list(plain.items())
    assert list(lazy.items()) == list(plain.items())
    assert list(lazy) == list(plain) and len(lazy) == len(plain) and lazy == plain
    # A row handed out before everything was built is the one the dict holds.
    for key in plain:
        assert lazy[key] is lazy.rows()[key]
