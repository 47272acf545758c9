"""Counting and logging triggers that fire in every session.

PostgreSQL fires a trigger created by CREATE TRIGGER only while session_replication_role is
'origin' (the default). A session running as 'replica' (logical replication's apply worker, a
hand-run restore or bulk fix) wrote rows without moving their table's change counter, and a plan
trusted the counter: "No changes" over a row that differs. Every trigger cplane installed is
now ENABLE ALWAYS, and the plan counts a table only when its trigger is (db/raw.py), so a trigger
disabled by hand sends the plan the full way. SQLite triggers always fire: nothing to do there.

Revision ID: 0015_triggers_always
Revises: 0014_row_changes
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from control_plane.db import counters

revision: str = '0015_triggers_always'
down_revision: str | Sequence[str] | None = '0014_row_changes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    counters.triggers_always(op.get_bind())


def downgrade() -> None:
    counters.triggers_always(op.get_bind(), always=False)
