"""Rollback and scheduled changes.

- cplane_run_rows: the desired rows each apply run left (compressed JSON, secrets by reference
  only), for `cplane rollback --to RUN`; kept for the newest runs (CPLANE_RUN_ROWS_RETENTION).
- cplane_scheduled_changes: the changes the applied config schedules for later, replaced by every
  apply; the runtime's catalog announces them (`upcoming`).

Revision ID: 0010_run_desired_rows
Revises: 0009_tenant_rls
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010_run_desired_rows'
down_revision: str | Sequence[str] | None = '0009_tenant_rls'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('cplane_run_rows',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('row_count', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cplane_run_rows')),
    sa.UniqueConstraint('run_id', name=op.f('uq_cplane_run_rows_run_id'))
    )
    op.create_table('cplane_scheduled_changes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=50), nullable=False),
    sa.Column('name', sa.String(length=400), nullable=False),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('entries', sa.JSON(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cplane_scheduled_changes'))
    )
    op.create_index(op.f('ix_cplane_scheduled_changes_at'), 'cplane_scheduled_changes', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_cplane_scheduled_changes_at'), table_name='cplane_scheduled_changes')
    op.drop_table('cplane_scheduled_changes')
    op.drop_table('cplane_run_rows')
