"""User data: everything that belongs to a tenant account.

Every table reaches its account directly (`account_id`) or through a parent row that does, with
ON DELETE CASCADE, so that deleting an account removes its data. References from user data to
system tables are plain foreign keys (NO ACTION): the controller can never silently delete user
data, it retires a referenced system row instead. Every foreign-key column is indexed.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, Timestamps, uuid_pk

__all__ = [
    "Account",
    "User",
    "Site",
    "Sector",
    "SiteUserAccess",
    "Subscription",
    "Invoice",
    "Payment",
    "AccountPaymentMethod",
    "CreditBalance",
    "CreditTransaction",
    "CreditUsageLog",
    "PlanLimitUsage",
    "Keyword",
    "Cluster",
    "ContentIdea",
    "content_idea_keywords",
    "Task",
    "Content",
    "ContentImage",
    "ContentTaxonomy",
    "ContentTaxonomyRelation",
    "ContentClusterMap",
    "ContentAttribute",
    "SiteIntegration",
    "SyncEvent",
    "PublishingRecord",
    "DeploymentRecord",
    "APIKey",
    "WebhookConfig",
    "AutomationConfig",
    "AutomationRun",
    "PasswordResetToken",
    "Session",
    "AITaskLog",
    "AuditLog",
    "NotificationOutbox",
    "AdminLogEntry",
    "TaskResult",
    "GroupResult",
    "ModuleEnableSettings",
    "AIPrompt",
    "AuthorProfile",
    "Strategy",
    "USER_TABLES",
]


def _in(column: str, *values: str) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def owner_fk(target: str = "accounts.id", *, nullable: bool = False) -> Any:
    """A reference to the row that owns this one (account, site, parent): deleted with it."""
    return mapped_column(ForeignKey(target, ondelete="CASCADE"), index=True, nullable=nullable)


def link_fk(target: str) -> Any:
    """An optional reference to another user row that may go away: cleared when it does."""
    return mapped_column(ForeignKey(target, ondelete="SET NULL"), index=True, nullable=True)


def system_fk(target: str, *, nullable: bool = True, name: str | None = None) -> Any:
    """A reference to system data: no cascade, the database refuses to delete a referenced row."""
    return mapped_column(ForeignKey(target, name=name), index=True, nullable=nullable)


def created_at(*, index: bool = False) -> Mapped[datetime]:
    return mapped_column(server_default=func.now(), index=index)


# ---------------------------------------------------------------------------------------------
# Accounts and tenancy


class Account(Timestamps, Base):
    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint(_in("status", "active", "suspended", "cancelled"), name="status"),)
    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str | None] = mapped_column(String(100), unique=True)
    plan_id: Mapped[int | None] = system_fk("plans.id")
    # accounts <-> users is a cycle: this constraint is added after both tables exist.
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL", use_alter=True), index=True
    )
    status: Mapped[str] = mapped_column(String(20), default="active")
    is_active: Mapped[bool] = mapped_column(default=True)
    billing_email: Mapped[str] = mapped_column(String(254), default="")


class User(Timestamps, Base):
    __tablename__ = "users"
    # Unique per account, not across accounts: adding a user never reveals another tenant's address.
    __table_args__ = (UniqueConstraint("account_id", "email"),)
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    email: Mapped[str] = mapped_column(String(254))
    first_name: Mapped[str] = mapped_column(String(150), default="")
    last_name: Mapped[str] = mapped_column(String(150), default="")
    role_id: Mapped[int | None] = system_fk("roles.id")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True)
    is_staff: Mapped[bool] = mapped_column(default=False)
    last_login_at: Mapped[datetime | None]


class Site(Timestamps, Base):
    __tablename__ = "sites"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    name: Mapped[str] = mapped_column(String(255))
    domain: Mapped[str] = mapped_column(String(255), default="")
    industry_id: Mapped[int | None] = system_fk("industries.id")
    is_active: Mapped[bool] = mapped_column(default=True)


class Sector(Timestamps, Base):
    __tablename__ = "sectors"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    site_id: Mapped[uuid.UUID] = owner_fk("sites.id")
    industry_sector_id: Mapped[int | None] = system_fk("industry_sectors.id")
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    is_active: Mapped[bool] = mapped_column(default=True)


class SiteUserAccess(Base):
    __tablename__ = "site_user_access"
    __table_args__ = (UniqueConstraint("site_id", "user_id"),)
    id: Mapped[uuid.UUID] = uuid_pk()
    site_id: Mapped[uuid.UUID] = owner_fk("sites.id")
    user_id: Mapped[uuid.UUID] = owner_fk("users.id")
    access_level: Mapped[str] = mapped_column(String(30), default="editor")
    created_at: Mapped[datetime] = created_at()


# ---------------------------------------------------------------------------------------------
# Billing


class Subscription(Timestamps, Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint(_in("status", "active", "trialing", "past_due", "cancelled"), name="status"),
        CheckConstraint(_in("billing_cycle", "monthly", "yearly"), name="billing_cycle"),
    )
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    plan_id: Mapped[int] = system_fk("plans.id", nullable=False)
    status: Mapped[str] = mapped_column(String(20), default="active")
    billing_cycle: Mapped[str] = mapped_column(String(10), default="monthly")
    current_period_start: Mapped[datetime | None]
    current_period_end: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    external_id: Mapped[str | None] = mapped_column(String(255))


class Invoice(Timestamps, Base):
    __tablename__ = "invoices"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    subscription_id: Mapped[uuid.UUID | None] = link_fk("subscriptions.id")
    number: Mapped[str] = mapped_column(String(64), unique=True)
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    status: Mapped[str] = mapped_column(String(20), default="draft")
    issued_at: Mapped[datetime | None]
    due_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    line_items: Mapped[list[Any]] = mapped_column(default=list)


class Payment(Timestamps, Base):
    __tablename__ = "payments"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    invoice_id: Mapped[uuid.UUID | None] = link_fk("invoices.id")
    payment_method_config_id: Mapped[int | None] = system_fk(
        "payment_method_configs.id", name="fk_payments_payment_method_config_id"
    )
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    status: Mapped[str] = mapped_column(String(20), default="pending")
    external_id: Mapped[str | None] = mapped_column(String(255))
    paid_at: Mapped[datetime | None]
    # Manual payments (bank transfer): what was bought, the payer's bank reference, the decision.
    credit_package_id: Mapped[int | None] = system_fk("credit_packages.id")
    reference: Mapped[str] = mapped_column(String(255), default="", server_default="")
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approved_at: Mapped[datetime | None]
    failure_reason: Mapped[str] = mapped_column(Text, default="", server_default="")


class AccountPaymentMethod(Timestamps, Base):
    __tablename__ = "account_payment_methods"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    payment_method_config_id: Mapped[int] = system_fk(
        "payment_method_configs.id", nullable=False, name="fk_account_payment_methods_payment_method_config_id"
    )
    display_name: Mapped[str] = mapped_column(String(200), default="")
    last4: Mapped[str | None] = mapped_column(String(4))
    is_default: Mapped[bool] = mapped_column(default=False)
    external_ref: Mapped[str | None] = mapped_column(String(255))


# ---------------------------------------------------------------------------------------------
# Credits


class CreditBalance(Timestamps, Base):
    """One row per account. Charging is one statement:
    UPDATE credit_balances SET balance = balance - :n WHERE account_id = :a AND balance >= :n
    """

    __tablename__ = "credit_balances"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True, unique=True
    )
    balance: Mapped[int] = mapped_column(default=0)
    idea_credits: Mapped[int] = mapped_column(default=0)
    content_credits: Mapped[int] = mapped_column(default=0)
    image_credits: Mapped[int] = mapped_column(default=0)
    optimization_credits: Mapped[int] = mapped_column(default=0)
    period_start: Mapped[date | None]
    period_end: Mapped[date | None]


class CreditTransaction(Base):
    __tablename__ = "credit_transactions"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key"),
        CheckConstraint(
            _in("transaction_type", "charge", "grant", "purchase", "refund", "adjustment"),
            name="transaction_type",
        ),
    )
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    amount: Mapped[int]  # negative for charges
    balance_after: Mapped[int]
    transaction_type: Mapped[str] = mapped_column(String(20))
    operation: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    credit_package_id: Mapped[int | None] = system_fk("credit_packages.id")
    # Typed pools the transaction moved: {"content": -6}. `amount` and `balance_after` are the
    # general balance only, so each pool is the sum of its entries and the balance the sum of amounts.
    pools: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    created_at: Mapped[datetime] = created_at(index=True)


class CreditUsageLog(Base):
    __tablename__ = "credit_usage_logs"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    site_id: Mapped[uuid.UUID | None] = link_fk("sites.id")
    user_id: Mapped[uuid.UUID | None] = link_fk("users.id")
    transaction_id: Mapped[uuid.UUID | None] = link_fk("credit_transactions.id")
    operation: Mapped[str] = mapped_column(String(100))
    credit_type: Mapped[str] = mapped_column(String(50), default="general")
    quantity: Mapped[int] = mapped_column(default=1)
    credits_used: Mapped[int]
    related_object_type: Mapped[str | None] = mapped_column(String(100))
    related_object_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = created_at(index=True)


class PlanLimitUsage(Timestamps, Base):
    __tablename__ = "plan_limit_usage"
    __table_args__ = (UniqueConstraint("account_id", "limit_name", "period_start"),)
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    limit_name: Mapped[str] = mapped_column(String(100))
    period_start: Mapped[date]
    used: Mapped[int] = mapped_column(default=0)


# ---------------------------------------------------------------------------------------------
# Planner


class Cluster(Timestamps, Base):
    __tablename__ = "clusters"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    site_id: Mapped[uuid.UUID] = owner_fk("sites.id")
    sector_id: Mapped[uuid.UUID | None] = link_fk("sectors.id")
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_by_id: Mapped[uuid.UUID | None] = link_fk("users.id")


class Keyword(Timestamps, Base):
    __tablename__ = "keywords"
    __table_args__ = (CheckConstraint(_in("status", "pending", "clustered", "used", "archived"), name="status"),)
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    site_id: Mapped[uuid.UUID] = owner_fk("sites.id")
    sector_id: Mapped[uuid.UUID | None] = link_fk("sectors.id")
    cluster_id: Mapped[uuid.UUID | None] = link_fk("clusters.id")
    # seed_keywords is mixed (system and account rows): no cascade from a system seed.
    seed_keyword_id: Mapped[int | None] = system_fk("seed_keywords.id")
    keyword: Mapped[str] = mapped_column(String(255))
    search_volume: Mapped[int | None]
    difficulty: Mapped[int | None]
    cpc: Mapped[Decimal | None]
    intent: Mapped[str] = mapped_column(String(30), default="informational")
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_by_id: Mapped[uuid.UUID | None] = link_fk("users.id")


content_idea_keywords = Table(
    "content_idea_keywords",
    Base.metadata,
    Column("idea_id", Uuid, ForeignKey("content_ideas.id", ondelete="CASCADE"), primary_key=True, index=True),
    Column("keyword_id", Uuid, ForeignKey("keywords.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class ContentIdea(Timestamps, Base):
    __tablename__ = "content_ideas"
    __table_args__ = (CheckConstraint(_in("status", "pending", "approved", "used", "archived"), name="status"),)
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    site_id: Mapped[uuid.UUID] = owner_fk("sites.id")
    sector_id: Mapped[uuid.UUID | None] = link_fk("sectors.id")
    cluster_id: Mapped[uuid.UUID | None] = link_fk("clusters.id")
    primary_keyword_id: Mapped[uuid.UUID | None] = link_fk("keywords.id")
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    content_type_id: Mapped[int | None] = system_fk("content_type_configs.id")
    status: Mapped[str] = mapped_column(String(20), default="pending")


# ---------------------------------------------------------------------------------------------
# Writer


class AuthorProfile(Timestamps, Base):
    """An account's own author profile, or its customized clone of a global one."""

    __tablename__ = "author_profiles"
    __table_args__ = (UniqueConstraint("account_id", "slug"),)
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    slug: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    tone: Mapped[str] = mapped_column(String(200), default="")
    writing_style: Mapped[str] = mapped_column(Text, default="")
    target_audience: Mapped[str] = mapped_column(Text, default="")
    vocabulary: Mapped[str] = mapped_column(String(100), default="")
    structure: Mapped[dict[str, Any]] = mapped_column(default=dict)
    guidelines: Mapped[list[Any]] = mapped_column(default=list)
    cloned_from_id: Mapped[int | None] = system_fk("global_author_profiles.id")
    is_active: Mapped[bool] = mapped_column(default=True)


class Strategy(Timestamps, Base):
    """An account's own content strategy, or its customized clone of a global one."""

    __tablename__ = "strategies"
    __table_args__ = (UniqueConstraint("account_id", "slug"),)
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    slug: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    content_type_slug: Mapped[str | None] = mapped_column(String(100))
    prompt_types: Mapped[list[Any]] = mapped_column(default=list)
    sections: Mapped[list[Any]] = mapped_column(default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cloned_from_id: Mapped[int | None] = system_fk("global_strategies.id")
    is_active: Mapped[bool] = mapped_column(default=True)


class Task(Timestamps, Base):
    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(_in("status", "pending", "in_progress", "completed", "cancelled"), name="status"),
        CheckConstraint(_in("priority", "low", "medium", "high"), name="priority"),
    )
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    site_id: Mapped[uuid.UUID] = owner_fk("sites.id")
    sector_id: Mapped[uuid.UUID | None] = link_fk("sectors.id")
    idea_id: Mapped[uuid.UUID | None] = link_fk("content_ideas.id")
    title: Mapped[str] = mapped_column(String(255))
    brief: Mapped[str] = mapped_column(Text, default="")
    primary_keyword: Mapped[str] = mapped_column(String(255), default="")
    secondary_keywords: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    priority: Mapped[str] = mapped_column(String(10), default="medium")
    assigned_to_id: Mapped[uuid.UUID | None] = link_fk("users.id")
    due_date: Mapped[date | None]
    author_profile_id: Mapped[uuid.UUID | None] = link_fk("author_profiles.id")
    strategy_id: Mapped[uuid.UUID | None] = link_fk("strategies.id")
    created_by_id: Mapped[uuid.UUID | None] = link_fk("users.id")


class Content(Timestamps, Base):
    __tablename__ = "content"
    __table_args__ = (CheckConstraint(_in("status", "draft", "review", "approved", "published"), name="status"),)
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    site_id: Mapped[uuid.UUID] = owner_fk("sites.id")
    sector_id: Mapped[uuid.UUID | None] = link_fk("sectors.id")
    task_id: Mapped[uuid.UUID | None] = link_fk("tasks.id")
    content_type_id: Mapped[int | None] = system_fk("content_type_configs.id")
    title: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text, default="")
    excerpt: Mapped[str] = mapped_column(Text, default="")
    meta_title: Mapped[str] = mapped_column(String(255), default="")
    meta_description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="draft")
    word_count: Mapped[int] = mapped_column(default=0)
    created_by_id: Mapped[uuid.UUID | None] = link_fk("users.id")
    published_at: Mapped[datetime | None]


class ContentImage(Base):
    __tablename__ = "content_images"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    content_id: Mapped[uuid.UUID] = owner_fk("content.id")
    url: Mapped[str] = mapped_column(String(2048))
    thumbnail_url: Mapped[str] = mapped_column(String(2048), default="")
    alt_text: Mapped[str] = mapped_column(String(255), default="")
    caption: Mapped[str] = mapped_column(Text, default="")
    is_featured: Mapped[bool] = mapped_column(default=False)
    position: Mapped[int] = mapped_column(default=0)
    prompt: Mapped[str] = mapped_column(Text, default="")
    provider: Mapped[str] = mapped_column(String(50), default="")
    created_at: Mapped[datetime] = created_at()


# ---------------------------------------------------------------------------------------------
# Taxonomy and organization


class ContentTaxonomy(Timestamps, Base):
    __tablename__ = "content_taxonomies"
    __table_args__ = (CheckConstraint(_in("taxonomy_type", "category", "tag"), name="taxonomy_type"),)
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    site_id: Mapped[uuid.UUID] = owner_fk("sites.id")
    taxonomy_config_id: Mapped[int | None] = system_fk("taxonomy_configs.id")
    taxonomy_type: Mapped[str] = mapped_column(String(20), default="category")
    name: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255))
    parent_id: Mapped[uuid.UUID | None] = owner_fk("content_taxonomies.id", nullable=True)


class ContentTaxonomyRelation(Base):
    __tablename__ = "content_taxonomy_relations"
    __table_args__ = (UniqueConstraint("content_id", "taxonomy_id"),)
    id: Mapped[uuid.UUID] = uuid_pk()
    content_id: Mapped[uuid.UUID] = owner_fk("content.id")
    taxonomy_id: Mapped[uuid.UUID] = owner_fk("content_taxonomies.id")
    created_at: Mapped[datetime] = created_at()


class ContentClusterMap(Base):
    __tablename__ = "content_cluster_maps"
    __table_args__ = (
        UniqueConstraint("content_id", "cluster_id"),
        CheckConstraint(_in("role", "hub", "supporting"), name="role"),
    )
    id: Mapped[uuid.UUID] = uuid_pk()
    content_id: Mapped[uuid.UUID] = owner_fk("content.id")
    cluster_id: Mapped[uuid.UUID] = owner_fk("clusters.id")
    role: Mapped[str] = mapped_column(String(20), default="supporting")
    created_at: Mapped[datetime] = created_at()


class ContentAttribute(Base):
    __tablename__ = "content_attributes"
    id: Mapped[uuid.UUID] = uuid_pk()
    content_id: Mapped[uuid.UUID] = owner_fk("content.id")
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[str] = mapped_column(Text, default="")


# ---------------------------------------------------------------------------------------------
# Publishing and integration


class SiteIntegration(Timestamps, Base):
    __tablename__ = "site_integrations"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    site_id: Mapped[uuid.UUID] = owner_fk("sites.id")
    channel_id: Mapped[int] = system_fk("publishing_channels.id", nullable=False)
    name: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(String(2048), default="")
    username: Mapped[str] = mapped_column(String(255), default="")
    # Fernet-encrypted with CPLANE_SECRET_KEY; never stored or shown in clear.
    credentials_encrypted: Mapped[str | None] = mapped_column(Text)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Cache of the remote structure: categories, tags, authors, post types.
    structure: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_active: Mapped[bool] = mapped_column(default=True)
    last_sync_at: Mapped[datetime | None]


class SyncEvent(Base):
    __tablename__ = "sync_events"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    integration_id: Mapped[uuid.UUID] = owner_fk("site_integrations.id")
    event_type: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = created_at(index=True)


class PublishingRecord(Base):
    __tablename__ = "publishing_records"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    content_id: Mapped[uuid.UUID] = owner_fk("content.id")
    integration_id: Mapped[uuid.UUID | None] = link_fk("site_integrations.id")
    channel_id: Mapped[int] = system_fk("publishing_channels.id", nullable=False)
    external_id: Mapped[str | None] = mapped_column(String(255))
    external_url: Mapped[str] = mapped_column(String(2048), default="")
    status: Mapped[str] = mapped_column(String(20), default="pending")
    published_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at()


class DeploymentRecord(Base):
    __tablename__ = "deployment_records"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    site_id: Mapped[uuid.UUID] = owner_fk("sites.id")
    version: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = created_at()


# ---------------------------------------------------------------------------------------------
# Access and automation


class APIKey(Base):
    """The key itself is never stored: `prefix` finds candidates, `key_hash` (SHA-256 hex) proves it."""

    __tablename__ = "api_keys"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    user_id: Mapped[uuid.UUID | None] = owner_fk("users.id", nullable=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at()


class WebhookConfig(Timestamps, Base):
    __tablename__ = "webhook_configs"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[Any]] = mapped_column(default=list)
    secret_encrypted: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(default=True)


class AutomationConfig(Timestamps, Base):
    __tablename__ = "automation_configs"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    site_id: Mapped[uuid.UUID] = owner_fk("sites.id")
    clustering_limit: Mapped[int] = mapped_column(default=10)
    ideas_limit: Mapped[int] = mapped_column(default=10)
    content_limit: Mapped[int] = mapped_column(default=5)
    image_limit: Mapped[int] = mapped_column(default=10)
    publish_limit: Mapped[int] = mapped_column(default=5)
    delay_between_operations: Mapped[int] = mapped_column(default=5)  # seconds
    max_runtime: Mapped[int] = mapped_column(default=3600)  # seconds
    auto_approve: Mapped[bool] = mapped_column(default=False)
    auto_publish: Mapped[bool] = mapped_column(default=False)
    stop_on_error: Mapped[bool] = mapped_column(default=True)
    is_active: Mapped[bool] = mapped_column(default=True)


class AutomationRun(Base):
    __tablename__ = "automation_runs"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    site_id: Mapped[uuid.UUID] = owner_fk("sites.id")
    config_id: Mapped[uuid.UUID] = owner_fk("automation_configs.id")
    status: Mapped[str] = mapped_column(String(20), default="pending")
    current_stage: Mapped[str] = mapped_column(String(50), default="")
    items_processed: Mapped[int] = mapped_column(default=0)
    items_total: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    error_message: Mapped[str] = mapped_column(Text, default="")
    started_by_id: Mapped[uuid.UUID | None] = link_fk("users.id")
    created_at: Mapped[datetime] = created_at(index=True)


class PasswordResetToken(Base):
    __tablename__ = "password_reset_tokens"
    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = owner_fk("users.id")
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at()


class Session(Base):
    __tablename__ = "sessions"
    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = owner_fk("users.id")
    session_key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = created_at()


# ---------------------------------------------------------------------------------------------
# Logs


class AITaskLog(Base):
    __tablename__ = "ai_task_logs"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    site_id: Mapped[uuid.UUID | None] = link_fk("sites.id")
    operation: Mapped[str] = mapped_column(String(100))
    provider: Mapped[str] = mapped_column(String(50), default="")
    model: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(20), default="pending")
    tokens_in: Mapped[int] = mapped_column(default=0)
    tokens_out: Mapped[int] = mapped_column(default=0)
    cost: Mapped[Decimal] = mapped_column(Numeric(12, 6), default=Decimal(0))
    duration_ms: Mapped[int] = mapped_column(default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = created_at(index=True)


class AuditLog(Base):
    __tablename__ = "audit_logs"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID | None] = owner_fk(nullable=True)
    user_id: Mapped[uuid.UUID | None] = link_fk("users.id")
    action: Mapped[str] = mapped_column(String(100))
    object_type: Mapped[str] = mapped_column(String(100), default="")
    object_id: Mapped[str] = mapped_column(String(100), default="")
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    # Staff actions (`/v1/admin`, `cplane accounts|payments`): the operator who acted.
    operator_id: Mapped[uuid.UUID | None] = system_fk("cplane_operators.id")  # operators are revoked, never deleted
    created_at: Mapped[datetime] = created_at(index=True)


class NotificationOutbox(Base):
    """Notifications rendered from a NotificationTemplate, waiting for the sender."""

    __tablename__ = "notification_outbox"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    template_id: Mapped[int | None] = system_fk("notification_configs.id")
    event: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(50))
    recipient: Mapped[str] = mapped_column(String(254), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="queued")
    created_at: Mapped[datetime] = created_at(index=True)


class AdminLogEntry(Base):
    __tablename__ = "admin_log_entries"
    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID | None] = link_fk("users.id")
    action_time: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    object_type: Mapped[str] = mapped_column(String(100), default="")
    object_id: Mapped[str] = mapped_column(String(100), default="")
    object_repr: Mapped[str] = mapped_column(String(200), default="")
    action_flag: Mapped[int]
    change_message: Mapped[str] = mapped_column(Text, default="")


class TaskResult(Base):
    __tablename__ = "task_results"
    id: Mapped[uuid.UUID] = uuid_pk()
    task_id: Mapped[str] = mapped_column(String(255), unique=True)
    task_name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(50), default="PENDING")
    result: Mapped[Any | None] = mapped_column(JSON)
    traceback: Mapped[str | None] = mapped_column(Text)
    date_created: Mapped[datetime] = mapped_column(server_default=func.now())
    date_done: Mapped[datetime | None] = mapped_column(index=True)


class GroupResult(Base):
    __tablename__ = "group_results"
    id: Mapped[uuid.UUID] = uuid_pk()
    group_id: Mapped[str] = mapped_column(String(255), unique=True)
    result: Mapped[Any | None] = mapped_column(JSON)
    date_created: Mapped[datetime] = mapped_column(server_default=func.now())
    date_done: Mapped[datetime | None] = mapped_column(index=True)


# ---------------------------------------------------------------------------------------------
# Account settings


class ModuleEnableSettings(Timestamps, Base):
    __tablename__ = "module_enable_settings"
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    planner_enabled: Mapped[bool] = mapped_column(default=True)
    writer_enabled: Mapped[bool] = mapped_column(default=True)
    linker_enabled: Mapped[bool] = mapped_column(default=False)
    optimizer_enabled: Mapped[bool] = mapped_column(default=False)
    automation_enabled: Mapped[bool] = mapped_column(default=True)
    integration_enabled: Mapped[bool] = mapped_column(default=True)
    publisher_enabled: Mapped[bool] = mapped_column(default=True)


class AIPrompt(Timestamps, Base):
    """An account's customized prompt of a type, optionally for one content type; without one the
    global prompt variant that matches applies. global_prompt_id: the variant it was made from."""

    __tablename__ = "ai_prompts"
    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = owner_fk()
    prompt_type: Mapped[str] = mapped_column(String(100))
    # The content type the customization is for (NULL: every content type of the prompt type).
    content_type: Mapped[str | None] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    global_prompt_id: Mapped[int | None] = system_fk("global_ai_prompts.id")
    # The global prompt's version when this customization was made (to flag later global changes).
    based_on_global_version: Mapped[int | None]
    is_active: Mapped[bool] = mapped_column(default=True)


# One customization per (account, type, content type or none).
Index(
    "uq_ai_prompts_account_type_content_type",
    AIPrompt.account_id,
    AIPrompt.prompt_type,
    func.coalesce(AIPrompt.content_type, ""),
    unique=True,
)


USER_TABLES: tuple[str, ...] = tuple(
    cls.__tablename__
    for cls in (
        Account, User, Site, Sector, SiteUserAccess, Subscription, Invoice, Payment, AccountPaymentMethod,
        CreditBalance, CreditTransaction, CreditUsageLog, PlanLimitUsage, Keyword, Cluster, ContentIdea,
        Task, Content, ContentImage, ContentTaxonomy, ContentTaxonomyRelation, ContentClusterMap,
        ContentAttribute, SiteIntegration, SyncEvent, PublishingRecord, DeploymentRecord, APIKey,
        WebhookConfig, AutomationConfig, AutomationRun, PasswordResetToken, Session, AITaskLog, AuditLog,
        NotificationOutbox, AdminLogEntry, TaskResult, GroupResult, ModuleEnableSettings, AIPrompt, AuthorProfile, Strategy,
    )
) + ("content_idea_keywords",)
