"""Read-only commands plan against a database as it is: one whose migrations never ran reads as empty."""

from __future__ import annotations

from sqlalchemy import inspect

from control_plane.kinds.registry import ROW_KINDS
from control_plane.plans.compare import reference_counts
from control_plane.secrets import SecretBox
from control_plane.state.live import read_live


def test_read_live_and_reference_counts_on_an_empty_database(db_url, engine_for):
    engine = engine_for(db_url)
    with engine.connect() as conn:
        live = read_live(conn, SecretBox(None))
        counts = reference_counts(conn)
    assert live.rows == {kind: {} for kind in ROW_KINDS}
    assert live.ids == {kind: {} for kind in ROW_KINDS}
    assert live.managed == {}
    assert counts == {kind: {} for kind in ROW_KINDS}
    assert inspect(engine).get_table_names() == []  # reading created nothing
