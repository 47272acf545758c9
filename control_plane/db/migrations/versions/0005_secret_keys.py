"""Secret keys: the key id of the stored secrets (and the audit of rotations), and the references
cplane wrote each secret from.

Revision ID: 0005_secret_keys
Revises: 0003_runtime_operators
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005_secret_keys'
down_revision: str | Sequence[str] | None = '0003_runtime_operators'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('cplane_secret_keys',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('event', sa.String(length=30), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('previous_key_id', sa.String(length=64), nullable=True),
    sa.Column('reencrypted', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cplane_secret_keys'))
    )
    with op.batch_alter_table('cplane_managed_objects') as batch:
        batch.add_column(sa.Column('secret_refs', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('cplane_managed_objects') as batch:
        batch.drop_column('secret_refs')
    op.drop_table('cplane_secret_keys')
