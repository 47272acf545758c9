"""Every config kind, declared once.

A `ConfigKind` says how a document maps to rows: its spec model, the table its object lives in,
the column holding its name, the children nested in its spec, what it references and which fields
are secret. A `RowKind` says how rows of one table are matched, compared and written: natural key
columns, references to other row kinds, which rows of a mixed table are system rows, how to retire
a row, and which user data points at it. Validation, JSON Schema, compare, apply, export and
cleanup all read these declarations; none of them has a per-kind branch.

Each fact is stated once and the rest derived: a config kind's rows are the row kind of the same
name (its key column that kind's natural key), secret columns come from the config kind's secret
fields, and what a nested child takes from its ancestors comes from the row kind's `refs` and
`parent`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from control_plane.kinds import catalog, conditions, specs, windows
from control_plane.kinds.columns import MODELS

if TYPE_CHECKING:
    from sqlalchemy import Table

# Spec fields whose column has another name, for every kind.
COMMON_COLUMN_NAMES = {"display_name": "name", "active": "is_active", "internal": "is_internal", "public": "is_public"}

# In a table shared with tenants, the rows that are system data: the global ones. A structured
# condition (control_plane.kinds.conditions): `cplane cleanup check` requires the manifest's
# systemRows of such a table to be the same condition.
GLOBAL_ROWS = conditions.parse({"column": "account_id", "op": "isNull"})
# The tenants' rows of such a table.
TENANT_ROWS = conditions.parse({"not": {"column": "account_id", "op": "isNull"}})


@dataclass(frozen=True)
class UserRef:
    """User data pointing at a system row: blocks deletion (retire instead) and measures impact."""

    table: str
    column: str
    label: str
    # Extra SQL condition for the impact count, e.g. only active subscriptions.
    where: str | None = None
    # Which rows of `table` are user data at all (for a mixed table: not its system rows).
    scope: conditions.Negation | None = None

    def scope_clause(self, table: Table):
        return conditions.compile_condition(self.scope, table.c) if self.scope is not None else None


@dataclass(frozen=True)
class VersionHistory:
    """A row kind whose rows carry a version number that apply bumps when `columns` differ from
    the latest version stored in `model` (so healing drift back to it keeps the version), and whose
    every version is kept in `model`, pointing at its row through `row_column`."""

    model_name: str
    row_column: str
    columns: tuple[str, ...]
    version_column: str = "version"

    @property
    def model(self) -> type:
        return model_class(self.model_name)

    @property
    def table_name(self) -> str:
        return MODELS[self.model_name][0]


@dataclass(frozen=True, eq=False)  # identity-hashed: derived facts are cached per row kind
class RowKind:
    name: str
    # The SQLAlchemy model's class name (db/models), imported only by the stages that touch the
    # database; its table name and columns come from the generated kinds/columns.py.
    model_name: str
    key_columns: tuple[str, ...]
    # FK column -> row kind whose natural key the desired state names it by.
    refs: dict[str, str] = field(default_factory=dict)
    # For mixed tables: the condition selecting the system rows (the only rows cplane sees).
    system_rows: conditions.Comparison | conditions.AllOf | conditions.AnyOf | conditions.Negation | None = None
    retire_column: str | None = "is_active"
    user_refs: tuple[UserRef, ...] = ()
    history: VersionHistory | None = None
    parent: str | None = None

    @property
    def model(self) -> type:
        return model_class(self.model_name)

    @property
    def table(self) -> Table:
        return self.model.__table__

    @property
    def table_name(self) -> str:
        return MODELS[self.model_name][0]

    @cached_property
    def column_lengths(self) -> dict[str, int | None]:
        """Every column of the table in order, with its maximum length (text columns) or None."""
        return dict(MODELS[self.model_name][1])

    @property
    def version_column(self) -> str | None:
        """The column apply maintains itself (never compared)."""
        return self.history.version_column if self.history else None

    @cached_property
    def secret_columns(self) -> tuple[str, ...]:
        """Columns holding encrypted values: declared by the config kind's secret fields."""
        ck = CONFIG_KINDS.get(self.name)
        return tuple(ck.secrets.values()) if ck else ()

    @cached_property
    def ancestor_columns(self) -> dict[str, int]:
        """Reference column -> which ancestor (0 = parent, 1 = grandparent...) it names, from `refs`
        and the `parent` chain: what a nested child's row takes from the items it is nested in."""
        chain: list[str] = []
        parent = self.parent
        while parent:
            chain.append(parent)
            parent = ROW_KINDS[parent].parent
        return {column: chain.index(target) for column, target in self.refs.items() if target in chain}

    def only_system_rows(self, stmt):
        """`stmt` (a SELECT of this kind's table) restricted to the rows cplane manages."""
        if self.system_rows is None:
            return stmt
        return stmt.where(conditions.compile_condition(self.system_rows, self.table.c))


@dataclass(frozen=True, eq=False)
class Child:
    """A list nested in a spec whose items are rows of their own table."""

    field: str
    row_kind: str
    # Key of each item inside the parent: a field of the item, or None for a list of scalars.
    key_field: str | None
    children: tuple[Child, ...] = ()
    # Spec field -> column, for fields whose column has another name.
    columns: dict[str, str] = field(default_factory=dict)

    @property
    def ancestor_columns(self) -> dict[str, int]:
        return ROW_KINDS[self.row_kind].ancestor_columns

    @cached_property
    def key_column(self) -> str:
        """Column holding the item's key (or, for scalars, the scalar itself): the part of the row
        kind's natural key that does not come from an ancestor."""
        ancestors = self.ancestor_columns
        (column,) = [c for c in ROW_KINDS[self.row_kind].key_columns if c not in ancestors]
        return column


@dataclass(frozen=True)
class SpecRef:
    """A field naming another object: validated to exist; `each` when the field is a list."""

    field: str
    target_kind: str | None = None
    catalog: tuple[str, ...] | None = None
    catalog_name: str = ""
    each: bool = False


@dataclass(frozen=True)
class TypedValue:
    """A field of any type whose type is declared, per object, by another field holding a JSON
    Schema fragment (`x-cplane-ref: KIND` or a catalog name in it is a reference)."""

    field: str
    schema_field: str


# Vocabularies of the product's code that config may refer to by name (SpecRef.catalog and
# `x-cplane-ref` in typed values).
CATALOGS: dict[str, tuple[str, ...]] = {
    "module": catalog.MODULES,
    "feature": catalog.FEATURES,
    "permission": tuple(catalog.PERMISSIONS),
    "operation": tuple(catalog.METERED_OPERATIONS),
    "creditType": catalog.CREDIT_TYPES,
}


@dataclass(frozen=True)
class ConfigKind:
    kind: str
    folder: str
    spec: type[BaseModel]
    summary: str
    columns: dict[str, str] = field(default_factory=dict)
    children: tuple[Child, ...] = ()
    spec_refs: tuple[SpecRef, ...] = ()
    # Spec field -> column holding its encrypted value.
    secrets: dict[str, str] = field(default_factory=dict)
    # Spec fields that are templates: the `variables` field declares exactly the {names} they use.
    # Issues name the first one.
    template_fields: tuple[str, ...] = ()
    # The whole catalog of this kind must be covered (e.g. every metered operation has a cost).
    required_names: tuple[str, ...] = ()
    allowed_names: tuple[str, ...] | None = None
    typed_values: tuple[TypedValue, ...] = ()

    @property
    def row_kind(self) -> str | None:
        """The row kind of the object itself: the one of the same name (None: the kind has no rows)."""
        return self.kind if self.kind in ROW_KINDS else None

    @property
    def key_column(self) -> str | None:
        """The column holding the object's name: its row kind's (single) natural key column."""
        return ROW_KINDS[self.kind].key_columns[0] if self.kind in ROW_KINDS else None

    @cached_property
    def child_fields(self) -> frozenset[str]:
        return frozenset(c.field for c in self.children)

    def column_for(self, spec_field: str) -> str:
        return self.columns.get(spec_field) or COMMON_COLUMN_NAMES.get(spec_field, spec_field)


def model_class(name: str) -> type:
    """The model class `name` of control_plane.db.models (imports SQLAlchemy on first use)."""
    from control_plane.db import models

    return getattr(models, name)


class _ModelNames:
    """`m.Plan` is "Plan": the declarations below name models without importing them."""

    def __getattr__(self, name: str) -> str:
        return name


m: Any = _ModelNames()

ROW_KINDS: dict[str, RowKind] = {
    rk.name: rk
    for rk in [
        RowKind(
            "Plan",
            m.Plan,
            ("slug",),
            user_refs=(
                UserRef("accounts", "plan_id", "accounts on this plan"),
                UserRef("subscriptions", "plan_id", "active subscriptions", "status IN ('active', 'trialing', 'past_due')"),
            ),
        ),
        RowKind(
            "CreditPackage",
            m.CreditPackage,
            ("slug",),
            user_refs=(UserRef("credit_transactions", "credit_package_id", "purchases of this package"),),
        ),
        RowKind(
            "PaymentMethod",
            m.PaymentMethodConfig,
            ("slug",),
            user_refs=(
                UserRef("account_payment_methods", "payment_method_config_id", "saved payment methods"),
                UserRef("payments", "payment_method_config_id", "payments"),
            ),
        ),
        RowKind("CreditCost", m.CreditCostConfig, ("operation",)),
        RowKind(
            "Industry",
            m.Industry,
            ("slug",),
            user_refs=(
                UserRef("sites", "industry_id", "sites in this industry"),
                UserRef("seed_keywords", "industry_id", "account seed keywords", scope=TENANT_ROWS),
            ),
        ),
        RowKind(
            "IndustrySector",
            m.IndustrySector,
            ("industry_id", "slug"),
            refs={"industry_id": "Industry"},
            parent="Industry",
            user_refs=(
                UserRef("sectors", "industry_sector_id", "site sectors"),
                UserRef("seed_keywords", "sector_id", "account seed keywords", scope=TENANT_ROWS),
            ),
        ),
        RowKind(
            "SeedKeyword",
            m.SeedKeyword,
            ("sector_id", "keyword"),
            refs={"industry_id": "Industry", "sector_id": "IndustrySector"},
            system_rows=GLOBAL_ROWS,
            parent="IndustrySector",
            user_refs=(UserRef("keywords", "seed_keyword_id", "keywords from this seed"),),
        ),
        RowKind(
            "PublishingChannel",
            m.PublishingChannel,
            ("slug",),
            user_refs=(
                UserRef("site_integrations", "channel_id", "site integrations"),
                UserRef("publishing_records", "channel_id", "publishing records"),
            ),
        ),
        RowKind(
            "Prompt",
            m.GlobalAIPrompt,
            ("slug",),
            history=VersionHistory(m.GlobalAIPromptVersion, "prompt_id", ("text", "variables")),
            user_refs=(UserRef("ai_prompts", "global_prompt_id", "accounts that customized this prompt"),),
        ),
        RowKind(
            "AuthorProfile",
            m.GlobalAuthorProfile,
            ("slug",),
            user_refs=(UserRef("author_profiles", "cloned_from_id", "account clones"),),
        ),
        RowKind(
            "Strategy",
            m.GlobalStrategy,
            ("slug",),
            user_refs=(UserRef("strategies", "cloned_from_id", "account clones"),),
        ),
        RowKind(
            "ContentType",
            m.ContentTypeConfig,
            ("slug",),
            user_refs=(
                UserRef("content", "content_type_id", "content items"),
                UserRef("content_ideas", "content_type_id", "content ideas"),
            ),
        ),
        RowKind("ContentTemplate", m.ContentTemplate, ("slug",), refs={"content_type_id": "ContentType"}),
        RowKind(
            "TaxonomyRule",
            m.TaxonomyConfig,
            ("slug",),
            user_refs=(UserRef("content_taxonomies", "taxonomy_config_id", "site taxonomies"),),
        ),
        RowKind("NotificationTemplate", m.NotificationConfig, ("slug",)),
        RowKind("Permission", m.Permission, ("codename",), retire_column=None),
        RowKind("Role", m.Role, ("slug",), user_refs=(UserRef("users", "role_id", "users with this role"),)),
        RowKind(
            "RolePermission",
            m.RolePermission,
            ("role_id", "permission_id"),
            refs={"role_id": "Role", "permission_id": "Permission"},
            parent="Role",
            retire_column=None,
        ),
        RowKind("SystemSetting", m.SystemSetting, ("key",), retire_column=None),
        RowKind(
            "IntegrationDefaults",
            m.AIIntegrationSettings,
            ("name",),
            system_rows=GLOBAL_ROWS,
        ),
    ]
}


CONFIG_KINDS: dict[str, ConfigKind] = {
    ck.kind: ck
    for ck in [
        ConfigKind(
            "Plan",
            "plans",
            specs.PlanSpec,
            "A subscription plan: prices, credit allowances, limits, modules and features.",
            spec_refs=(
                SpecRef("modules", catalog=CATALOGS["module"], catalog_name="module", each=True),
                SpecRef("features", catalog=CATALOGS["feature"], catalog_name="feature", each=True),
            ),
        ),
        ConfigKind(
            "CreditPackage",
            "credit_packages",
            specs.CreditPackageSpec,
            "A bundle of credits tenants can buy.",
            columns={"featured": "is_featured"},
        ),
        ConfigKind(
            "PaymentMethod",
            "payment_methods",
            specs.PaymentMethodSpec,
            "A payment provider configuration; keys by environment reference.",
            secrets={"secret_key": "secret_key_encrypted", "webhook_secret": "webhook_secret_encrypted"},
        ),
        ConfigKind(
            "CreditCost",
            "credit_costs",
            specs.CreditCostSpec,
            "The credits one metered operation costs; the name is the operation.",
            columns={"display_name": "display_name"},
            required_names=tuple(catalog.METERED_OPERATIONS),
            allowed_names=tuple(catalog.METERED_OPERATIONS),
        ),
        ConfigKind(
            "Industry",
            "industries",
            specs.IndustrySpec,
            "An industry of the taxonomy, with its sectors and their seed keywords nested.",
            children=(
                Child(
                    "sectors",
                    "IndustrySector",
                    key_field="name",
                    children=(
                        Child(
                            "seed_keywords",
                            "SeedKeyword",
                            key_field="keyword",
                        ),
                    ),
                ),
            ),
        ),
        ConfigKind(
            "PublishingChannel",
            "publishing_channels",
            specs.PublishingChannelSpec,
            "A channel content can be published to.",
        ),
        ConfigKind(
            "Prompt",
            "prompts",
            specs.PromptSpec,
            "A global AI prompt for an operation, optionally a content type and an industry. Accounts may customize it.",
            template_fields=("text",),
            spec_refs=(SpecRef("content_type", "ContentType"), SpecRef("industry", "Industry")),
        ),
        ConfigKind(
            "AuthorProfile",
            "author_profiles",
            specs.AuthorProfileSpec,
            "A global author persona accounts can clone.",
        ),
        ConfigKind(
            "Strategy",
            "strategies",
            specs.StrategySpec,
            "A global content strategy accounts can clone.",
            columns={"content_type": "content_type_slug"},
            spec_refs=(SpecRef("content_type", "ContentType"), SpecRef("prompt_types", "Prompt", each=True)),
        ),
        ConfigKind(
            "ContentType",
            "content_types",
            specs.ContentTypeSpec,
            "A type of content the product writes.",
        ),
        ConfigKind(
            "ContentTemplate",
            "content_templates",
            specs.ContentTemplateSpec,
            "A template for one content type.",
            columns={"content_type": "content_type_id"},
            spec_refs=(SpecRef("content_type", "ContentType"),),
        ),
        ConfigKind(
            "TaxonomyRule",
            "taxonomy_rules",
            specs.TaxonomyRuleSpec,
            "How categories and tags are derived and named.",
        ),
        ConfigKind(
            "NotificationTemplate",
            "notification_templates",
            specs.NotificationTemplateSpec,
            "An email, in-app, webhook or Slack notification.",
            template_fields=("body", "subject"),
        ),
        ConfigKind(
            "Role",
            "roles",
            specs.RoleSpec,
            "A role with its permissions.",
            children=(
                Child(
                    "permissions",
                    "RolePermission",
                    key_field=None,
                ),
            ),
            spec_refs=(
                SpecRef("permissions", catalog=CATALOGS["permission"], catalog_name="permission", each=True),
            ),
        ),
        ConfigKind(
            "SystemSetting",
            "system_settings",
            specs.SystemSettingSpec,
            "A platform-wide setting; the name is its key and `schema` declares the type of its value.",
            typed_values=(TypedValue("value", "value_schema"),),
        ),
        ConfigKind(
            "IntegrationDefaults",
            "integrations",
            specs.IntegrationDefaultsSpec,
            "Global AI provider defaults; accounts on plans that allow it may override them.",
            secrets={"api_keys": "api_keys_encrypted"},
        ),
        ConfigKind(
            "CleanupManifest",
            "cleanup",
            specs.CleanupManifestSpec,
            "Classification of every table (system, user, mixed), retention rules and cleanup profiles.",
        ),
        ConfigKind(
            "Policy",
            "policies",
            specs.PolicySpec,
            "Guardrails as CEL rules over objects (checked by validate) or over changes (checked by plan).",
        ),
        ConfigKind(
            "SyncWindow",
            "sync_windows",
            windows.SyncWindowSpec,
            "When `cplane watch` may apply by itself: deny windows (a weekend, a launch freeze) and allow windows.",
        ),
    ]
}

# Rows that come from the product's code rather than from a document.
CATALOG_ROWS: dict[str, Callable[[], list[tuple[str, dict]]]] = {
    "Permission": lambda: [
        (code, {"codename": code, "name": title, "description": ""}) for code, title in catalog.PERMISSIONS.items()
    ],
}


def apply_order() -> list[str]:
    """Row kinds ordered so that everything a row references is written before it."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise RuntimeError(f"reference cycle through {name}")
        visiting.add(name)
        for target in ROW_KINDS[name].refs.values():
            visit(target)
        visiting.discard(name)
        order.append(name)

    for name in ROW_KINDS:
        visit(name)
    return order


def config_kind_for_row_kind(row_kind: str) -> ConfigKind | None:
    ck = CONFIG_KINDS.get(row_kind)
    return ck if ck is not None and ck.row_kind == row_kind else None


def model_names() -> set[str]:
    """Every model class the registry names (tools/generate_columns.py writes their columns)."""
    names = {rk.model_name for rk in ROW_KINDS.values()}
    names |= {rk.history.model_name for rk in ROW_KINDS.values() if rk.history}
    return names
