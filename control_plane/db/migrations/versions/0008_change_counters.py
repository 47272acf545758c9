"""Change counters: cplane_change_counters and the triggers that bump it on every write.

One row per counted table (see control_plane/db/counters.py for which and why), starting at a
random version; PostgreSQL bumps it once per statement (TRUNCATE included), SQLite once per row.

Revision ID: 0008_change_counters
Revises: 0007_plan_trust
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db import counters

revision: str = '0008_change_counters'
down_revision: str | Sequence[str] | None = '0007_plan_trust'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here: later revisions that count more tables install them themselves.
TABLES = (
    "ai_integration_settings", "content_templates", "content_type_configs", "credit_cost_configs",
    "credit_packages", "global_ai_prompts", "global_author_profiles", "global_strategies", "industries",
    "industry_sectors", "notification_configs", "payment_method_configs", "permissions", "plans",
    "publishing_channels", "role_permissions", "roles", "seed_keywords", "system_settings",
    "taxonomy_configs", "global_ai_prompt_versions", "ai_prompts",
    "cplane_managed_objects", "cplane_secret_keys", "cplane_database",
)


def upgrade() -> None:
    op.create_table('cplane_change_counters',
    sa.Column('table_name', sa.String(length=100), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('table_name', name=op.f('pk_cplane_change_counters'))
    )
    counters.install(op.get_bind(), TABLES)


def downgrade() -> None:
    counters.uninstall(op.get_bind(), TABLES)
    op.drop_table('cplane_change_counters')
