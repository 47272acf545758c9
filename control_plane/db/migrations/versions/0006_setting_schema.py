"""System settings declare the type of their value: system_settings.value_schema, a JSON Schema
fragment (config's `spec.schema`), so that the runtime reads typed values even after drift.

Existing rows get {} (any value) until the next apply writes their declared schema.

Revision ID: 0006_setting_schema
Revises: 0005_secret_keys
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_setting_schema"
down_revision: str | Sequence[str] | None = "0005_secret_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("system_settings") as batch:
        batch.add_column(sa.Column("value_schema", sa.JSON(), server_default=sa.text("'{}'"), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("system_settings") as batch:
        batch.drop_column("value_schema")
