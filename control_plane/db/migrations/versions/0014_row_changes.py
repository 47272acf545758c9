"""The row-change log: cplane_row_changes and the triggers that write it.

For the row kinds' tables (db/counters.py LOGGED_TABLES, frozen below), each write logs the ids of
the rows it touched with the change-counter version it produced: PostgreSQL per statement, from
transition tables (one INSERT ... SELECT however many rows), after cplane_count_changes has bumped
the counter; SQLite per row, in the counting trigger itself (replaced, same name). A plan whose
record is at version v0 of a table now at v1 reads only the rows the entries of (v0, v1] name,
when every version of that range has an entry (docs/architecture.md, the row-change log).

Revision ID: 0014_row_changes
Revises: 0013_plan_tables
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db import counters

revision: str = '0014_row_changes'
down_revision: str | Sequence[str] | None = '0013_plan_tables'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here: a later revision that logs more tables installs them itself.
TABLES = (
    "ai_integration_settings", "content_templates", "content_type_configs", "credit_cost_configs",
    "credit_packages", "global_ai_prompts", "global_author_profiles", "global_strategies", "industries",
    "industry_sectors", "notification_configs", "payment_method_configs", "permissions", "plans",
    "publishing_channels", "role_permissions", "roles", "seed_keywords", "system_settings",
    "taxonomy_configs",
)


def upgrade() -> None:
    op.create_table('cplane_row_changes',
    sa.Column('table_name', sa.String(length=100), nullable=False),
    sa.Column('version', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('row_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.PrimaryKeyConstraint('table_name', 'version', 'row_id', name=op.f('pk_cplane_row_changes'))
    )
    counters.install_row_log(op.get_bind(), TABLES)


def downgrade() -> None:
    counters.uninstall_row_log(op.get_bind(), TABLES)
    op.drop_table('cplane_row_changes')
