"""The no-change plan fast path: cplane_applied_state, what the last apply left behind.

At most one row: the digest of the desired state the apply applied (config files, environment,
cplane version and schema head, key id, schedule bucket), an HMAC of the secret variables' values
and the change-counter version of every table a plan reads, after the apply's own writes. A plan
whose inputs and versions all match answers `No changes` without parsing or reading rows.

Revision ID: 0012_plan_fastpath
Revises: 0010_run_desired_rows
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012_plan_fastpath'
down_revision: str | Sequence[str] | None = '0010_run_desired_rows'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('cplane_applied_state',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('apply_run_id', sa.Integer(), nullable=True),
    sa.Column('inputs_digest', sa.String(length=64), nullable=False),
    sa.Column('config_digest', sa.String(length=64), nullable=False),
    sa.Column('secrets_digest', sa.String(length=64), nullable=False),
    sa.Column('variables', sa.JSON(), nullable=False),
    sa.Column('versions', sa.JSON(), nullable=False),
    sa.Column('warnings', sa.JSON(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cplane_applied_state'))
    )


def downgrade() -> None:
    op.drop_table('cplane_applied_state')
