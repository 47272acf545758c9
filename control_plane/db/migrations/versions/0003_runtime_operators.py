"""Runtime operators: plan rate limits and custom endpoints, typed credit pools in the ledger,
manual payments, operator keys, operator audit and the notification outbox.

Written by hand on top of 0002_prompt_variants (batch mode, so that SQLite can add the foreign keys).

Revision ID: 0003_runtime_operators
Revises: 0002_prompt_variants
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_runtime_operators"
down_revision: str | Sequence[str] | None = "0002_prompt_variants"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("api_rate_limit_per_minute", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("allow_custom_endpoints", sa.Boolean(), server_default=sa.false(),
                                   nullable=False))

    op.create_table(
        "cplane_operators",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('admin', 'finance', 'support')", name=op.f("ck_cplane_operators_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cplane_operators")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_cplane_operators_key_hash")),
    )
    op.create_index(op.f("ix_cplane_operators_prefix"), "cplane_operators", ["prefix"], unique=False)

    with op.batch_alter_table("credit_transactions") as batch:
        batch.add_column(sa.Column("pools", sa.JSON(), server_default=sa.text("'{}'"), nullable=False))

    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("credit_package_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("reference", sa.String(length=255), server_default="", nullable=False))
        batch.add_column(sa.Column("approved_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("failure_reason", sa.Text(), server_default="", nullable=False))
        batch.create_index(batch.f("ix_payments_credit_package_id"), ["credit_package_id"], unique=False)
        batch.create_foreign_key(batch.f("fk_payments_credit_package_id_credit_packages"), "credit_packages",
                                 ["credit_package_id"], ["id"])

    with op.batch_alter_table("audit_logs") as batch:
        batch.add_column(sa.Column("operator_id", sa.Uuid(), nullable=True))
        batch.create_index(batch.f("ix_audit_logs_operator_id"), ["operator_id"], unique=False)
        batch.create_foreign_key(batch.f("fk_audit_logs_operator_id_cplane_operators"), "cplane_operators",
                                 ["operator_id"], ["id"])

    op.create_table(
        "notification_outbox",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=50), nullable=False),
        sa.Column("recipient", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"],
                                name=op.f("fk_notification_outbox_account_id_accounts"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["template_id"], ["notification_configs.id"],
                                name=op.f("fk_notification_outbox_template_id_notification_configs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_outbox")),
    )
    op.create_index(op.f("ix_notification_outbox_account_id"), "notification_outbox", ["account_id"], unique=False)
    op.create_index(op.f("ix_notification_outbox_template_id"), "notification_outbox", ["template_id"], unique=False)
    op.create_index(op.f("ix_notification_outbox_created_at"), "notification_outbox", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_table("notification_outbox")
    with op.batch_alter_table("audit_logs") as batch:
        batch.drop_constraint(batch.f("fk_audit_logs_operator_id_cplane_operators"), type_="foreignkey")
        batch.drop_index(batch.f("ix_audit_logs_operator_id"))
        batch.drop_column("operator_id")
    with op.batch_alter_table("payments") as batch:
        batch.drop_constraint(batch.f("fk_payments_credit_package_id_credit_packages"), type_="foreignkey")
        batch.drop_index(batch.f("ix_payments_credit_package_id"))
        for column in ("failure_reason", "approved_at", "approved_by", "reference", "credit_package_id"):
            batch.drop_column(column)
    with op.batch_alter_table("credit_transactions") as batch:
        batch.drop_column("pools")
    op.drop_index(op.f("ix_cplane_operators_prefix"), table_name="cplane_operators")
    op.drop_table("cplane_operators")
    with op.batch_alter_table("plans") as batch:
        batch.drop_column("allow_custom_endpoints")
        batch.drop_column("api_rate_limit_per_minute")
