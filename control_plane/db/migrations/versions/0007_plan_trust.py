"""What binds a plan to its database: the database's identity and environment, and the run kinds.

- cplane_database: one row, written here once: the database's lineage id (a UUID: saved plans
  name it, and apply refuses a plan made against another database) and the environment the first
  apply recorded (NULL until then).
- cplane_apply_runs.kind: apply, saved-plan, adopt or saved-plan+adopt;
  cplane_apply_runs.environment_change: "staging -> production" when an apply changed the
  database's recorded environment (`--allow-environment-change`), else empty.

Revision ID: 0007_plan_trust
Revises: 0006_setting_schema
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007_plan_trust'
down_revision: str | Sequence[str] | None = '0006_setting_schema'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table('cplane_database',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('lineage', sa.String(length=36), nullable=False),
    sa.Column('environment', sa.String(length=100), nullable=True),
    sa.Column('environment_recorded_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cplane_database')),
    sa.UniqueConstraint('lineage', name=op.f('uq_cplane_database_lineage'))
    )
    op.bulk_insert(table, [{'id': 1, 'lineage': str(uuid.uuid4()), 'environment': None}])
    with op.batch_alter_table('cplane_apply_runs') as batch:
        batch.add_column(sa.Column('kind', sa.String(length=30), server_default='apply', nullable=False))
        batch.add_column(sa.Column('environment_change', sa.String(length=250), server_default='', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('cplane_apply_runs') as batch:
        batch.drop_column('environment_change')
        batch.drop_column('kind')
    op.drop_table('cplane_database')
