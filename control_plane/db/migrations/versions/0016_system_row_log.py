"""The row-change log names system rows only: a tenant's write to a mixed table logs its marker.

seed_keywords and ai_integration_settings hold the system rows cplane manages beside the rows
tenants create (account_id set). Until now a tenant adding a keyword logged that row, and the
plan, finding the table moved, read it by id to learn it was not a system row; the no-change fast
path could not hold at all while tenants wrote. The triggers of these tables now log a write that
touched only tenant rows as row id 0 alone (the statement marker, or SQLite's per-row 0): the
version is accounted for and no row is named, so a plan knows that no system row moved.

Revision ID: 0016_system_row_log
Revises: 0015_triggers_always
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from control_plane.db import counters

revision: str = '0016_system_row_log'
down_revision: str | Sequence[str] | None = '0015_triggers_always'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here, as 0014 froze its tables.
TENANT_COLUMNS = {"seed_keywords": "account_id", "ai_integration_settings": "account_id"}


def upgrade() -> None:
    counters.install_row_log(op.get_bind(), list(TENANT_COLUMNS), TENANT_COLUMNS)


def downgrade() -> None:
    counters.install_row_log(op.get_bind(), list(TENANT_COLUMNS))
