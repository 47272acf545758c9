"""Plans that cost what changed: the per-table part of cplane_applied_state.

`tables` (JSON, nullable: a record written by an older cplane has none, and a plan then reads every
table) holds, for the incremental plan (reconcile/incremental.py), the digest of the context the
record is valid in (environment, cplane version, migrations, key id, schedule bucket, schema
revision; not the config files) and, per row kind, a digest of the desired rows the apply applied
(secrets as HMACs, never values). Beside `versions` (every plan table's change counter after the
apply), a plan tells per table whether its desired or live side changed since.

Revision ID: 0013_plan_tables
Revises: 0012_plan_fastpath
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013_plan_tables'
down_revision: str | Sequence[str] | None = '0012_plan_fastpath'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('cplane_applied_state') as batch:
        batch.add_column(sa.Column('tables', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('cplane_applied_state') as batch:
        batch.drop_column('tables')
