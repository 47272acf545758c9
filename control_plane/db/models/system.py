"""System data: shared by every tenant, reconciled from config/ by the controller.

Every table has an integer id (what user data points at) and a unique natural key (what config
names it by). The controller matches rows by natural key only, never by id.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, Numeric, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.models.base import Base, Timestamps, int_pk


class Plan(Timestamps, Base):
    __tablename__ = "plans"
    id: Mapped[int] = int_pk()
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    price_monthly: Mapped[Decimal]
    price_yearly: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    monthly_credits: Mapped[int] = mapped_column(default=0)
    idea_credits: Mapped[int] = mapped_column(default=0)
    content_credits: Mapped[int] = mapped_column(default=0)
    image_credits: Mapped[int] = mapped_column(default=0)
    optimization_credits: Mapped[int] = mapped_column(default=0)
    max_sites: Mapped[int] = mapped_column(default=1)
    max_users: Mapped[int] = mapped_column(default=1)
    max_keywords: Mapped[int] = mapped_column(default=0)
    modules: Mapped[list[Any]] = mapped_column(default=list)
    features: Mapped[list[Any]] = mapped_column(default=list)
    allow_own_ai_keys: Mapped[bool] = mapped_column(default=False)
    sort_order: Mapped[int] = mapped_column(default=0)
    is_active: Mapped[bool] = mapped_column(default=True)
    is_internal: Mapped[bool] = mapped_column(default=False)


class CreditPackage(Timestamps, Base):
    __tablename__ = "credit_packages"
    id: Mapped[int] = int_pk()
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    credits: Mapped[int]
    bonus_credits: Mapped[int] = mapped_column(default=0)
    price: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    is_featured: Mapped[bool] = mapped_column(default=False)
    sort_order: Mapped[int] = mapped_column(default=0)
    is_active: Mapped[bool] = mapped_column(default=True)


class PaymentMethodConfig(Timestamps, Base):
    __tablename__ = "payment_method_configs"
    id: Mapped[int] = int_pk()
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(50))
    description: Mapped[str] = mapped_column(Text, default="")
    currencies: Mapped[list[Any]] = mapped_column(default=list)
    countries: Mapped[list[Any]] = mapped_column(default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Secret values, Fernet-encrypted with CPLANE_SECRET_KEY; never stored in clear.
    publishable_key: Mapped[str | None] = mapped_column(Text)
    secret_key_encrypted: Mapped[str | None] = mapped_column(Text)
    webhook_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    sort_order: Mapped[int] = mapped_column(default=0)
    is_active: Mapped[bool] = mapped_column(default=True)


class CreditCostConfig(Timestamps, Base):
    __tablename__ = "credit_cost_configs"
    id: Mapped[int] = int_pk()
    operation: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    credits: Mapped[int]
    unit: Mapped[str] = mapped_column(String(50), default="request")
    credit_type: Mapped[str] = mapped_column(String(50), default="general")
    is_active: Mapped[bool] = mapped_column(default=True)


class Industry(Timestamps, Base):
    __tablename__ = "industries"
    id: Mapped[int] = int_pk()
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    sort_order: Mapped[int] = mapped_column(default=0)
    is_active: Mapped[bool] = mapped_column(default=True)


class IndustrySector(Timestamps, Base):
    __tablename__ = "industry_sectors"
    __table_args__ = (UniqueConstraint("industry_id", "slug"),)
    id: Mapped[int] = int_pk()
    industry_id: Mapped[int] = mapped_column(ForeignKey("industries.id", ondelete="CASCADE"), index=True)
    slug: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    is_active: Mapped[bool] = mapped_column(default=True)


class SeedKeyword(Timestamps, Base):
    """Mixed: rows with account_id NULL are system seeds (from config); others belong to an account."""

    __tablename__ = "seed_keywords"
    __table_args__ = (
        Index(
            "uq_seed_keywords_system_sector_keyword",
            "sector_id",
            "keyword",
            unique=True,
            postgresql_where=Column("account_id").is_(None),
            sqlite_where=Column("account_id").is_(None),
        ),
    )
    id: Mapped[int] = int_pk()
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    industry_id: Mapped[int] = mapped_column(ForeignKey("industries.id", ondelete="CASCADE"), index=True)
    sector_id: Mapped[int | None] = mapped_column(ForeignKey("industry_sectors.id", ondelete="CASCADE"), index=True)
    keyword: Mapped[str] = mapped_column(String(255))
    search_volume: Mapped[int | None]
    difficulty: Mapped[int | None]
    cpc: Mapped[Decimal | None]
    intent: Mapped[str] = mapped_column(String(30), default="informational")
    is_active: Mapped[bool] = mapped_column(default=True)


class PublishingChannel(Timestamps, Base):
    __tablename__ = "publishing_channels"
    id: Mapped[int] = int_pk()
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    channel_type: Mapped[str] = mapped_column(String(50))
    description: Mapped[str] = mapped_column(Text, default="")
    capabilities: Mapped[list[Any]] = mapped_column(default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sort_order: Mapped[int] = mapped_column(default=0)
    is_active: Mapped[bool] = mapped_column(default=True)


class GlobalAIPrompt(Timestamps, Base):
    """A global prompt variant: an operation (prompt_type), optionally for one content type and/or
    one industry (ContentType / Industry slugs). One prompt per selector combination, NULL = any."""

    __tablename__ = "global_ai_prompts"
    id: Mapped[int] = int_pk()
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    prompt_type: Mapped[str] = mapped_column(String(100), index=True)
    content_type: Mapped[str | None] = mapped_column(String(100))
    industry: Mapped[str | None] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text)
    variables: Mapped[list[Any]] = mapped_column(default=list)
    # Incremented by apply whenever text changes; earlier texts live in global_ai_prompt_versions.
    version: Mapped[int] = mapped_column(default=1)
    is_active: Mapped[bool] = mapped_column(default=True)


# NULL selectors compare equal: at most one prompt per (type, content type or none, industry or none).
Index(
    "uq_global_ai_prompts_selectors",
    GlobalAIPrompt.prompt_type,
    func.coalesce(GlobalAIPrompt.content_type, ""),
    func.coalesce(GlobalAIPrompt.industry, ""),
    unique=True,
)


class GlobalAIPromptVersion(Base):
    __tablename__ = "global_ai_prompt_versions"
    __table_args__ = (UniqueConstraint("prompt_id", "version"),)
    id: Mapped[int] = int_pk()
    prompt_id: Mapped[int] = mapped_column(ForeignKey("global_ai_prompts.id", ondelete="CASCADE"), index=True)
    version: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    variables: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class GlobalAuthorProfile(Timestamps, Base):
    __tablename__ = "global_author_profiles"
    id: Mapped[int] = int_pk()
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    tone: Mapped[str] = mapped_column(String(200))
    writing_style: Mapped[str] = mapped_column(Text, default="")
    target_audience: Mapped[str] = mapped_column(Text, default="")
    vocabulary: Mapped[str] = mapped_column(String(100), default="")
    structure: Mapped[dict[str, Any]] = mapped_column(default=dict)
    guidelines: Mapped[list[Any]] = mapped_column(default=list)
    is_active: Mapped[bool] = mapped_column(default=True)


class GlobalStrategy(Timestamps, Base):
    __tablename__ = "global_strategies"
    id: Mapped[int] = int_pk()
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    content_type_slug: Mapped[str | None] = mapped_column(String(100))
    prompt_types: Mapped[list[Any]] = mapped_column(default=list)
    sections: Mapped[list[Any]] = mapped_column(default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_active: Mapped[bool] = mapped_column(default=True)


class ContentTypeConfig(Timestamps, Base):
    __tablename__ = "content_type_configs"
    id: Mapped[int] = int_pk()
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    min_words: Mapped[int] = mapped_column(default=0)
    max_words: Mapped[int] = mapped_column(default=0)
    default_structure: Mapped[list[Any]] = mapped_column(default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_active: Mapped[bool] = mapped_column(default=True)


class ContentTemplate(Timestamps, Base):
    __tablename__ = "content_templates"
    id: Mapped[int] = int_pk()
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    content_type_id: Mapped[int] = mapped_column(ForeignKey("content_type_configs.id"), index=True)
    body: Mapped[str] = mapped_column(Text, default="")
    sections: Mapped[list[Any]] = mapped_column(default=list)
    is_active: Mapped[bool] = mapped_column(default=True)


class TaxonomyConfig(Timestamps, Base):
    __tablename__ = "taxonomy_configs"
    id: Mapped[int] = int_pk()
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    taxonomy_type: Mapped[str] = mapped_column(String(50))
    description: Mapped[str] = mapped_column(Text, default="")
    rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_active: Mapped[bool] = mapped_column(default=True)


class SystemSetting(Timestamps, Base):
    __tablename__ = "system_settings"
    id: Mapped[int] = int_pk()
    key: Mapped[str] = mapped_column(String(150), unique=True)
    value: Mapped[Any] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(Text, default="")
    is_public: Mapped[bool] = mapped_column(default=False)


class NotificationConfig(Timestamps, Base):
    __tablename__ = "notification_configs"
    id: Mapped[int] = int_pk()
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(50))
    subject: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text)
    variables: Mapped[list[Any]] = mapped_column(default=list)
    is_active: Mapped[bool] = mapped_column(default=True)


class Permission(Timestamps, Base):
    __tablename__ = "permissions"
    id: Mapped[int] = int_pk()
    codename: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")


class Role(Timestamps, Base):
    __tablename__ = "roles"
    id: Mapped[int] = int_pk()
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    rank: Mapped[int] = mapped_column(default=0)
    is_active: Mapped[bool] = mapped_column(default=True)


class RolePermission(Base):
    """Link table; it has its own id so the controller can track each grant like any other row."""

    __tablename__ = "role_permissions"
    __table_args__ = (UniqueConstraint("role_id", "permission_id"),)
    id: Mapped[int] = int_pk()
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), index=True)
    permission_id: Mapped[int] = mapped_column(ForeignKey("permissions.id", ondelete="CASCADE"), index=True)


class AIIntegrationSettings(Timestamps, Base):
    """Mixed: account_id NULL rows are the global defaults (from config); others are account overrides."""

    __tablename__ = "ai_integration_settings"
    __table_args__ = (
        Index(
            "uq_ai_integration_settings_global_name",
            "name",
            unique=True,
            postgresql_where=Column("account_id").is_(None),
            sqlite_where=Column("account_id").is_(None),
        ),
    )
    id: Mapped[int] = int_pk()
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100), default="default")
    text_provider: Mapped[str] = mapped_column(String(50))
    text_model: Mapped[str] = mapped_column(String(100))
    temperature: Mapped[Decimal] = mapped_column(Numeric(4, 2))
    max_tokens: Mapped[int]
    image_provider: Mapped[str] = mapped_column(String(50))
    image_model: Mapped[str] = mapped_column(String(100))
    image_size: Mapped[str] = mapped_column(String(30))
    image_quality: Mapped[str] = mapped_column(String(30))
    image_style: Mapped[str] = mapped_column(String(30))
    providers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # {provider: fernet token}; a key is never stored or shown in clear.
    api_keys_encrypted: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_active: Mapped[bool] = mapped_column(default=True)
