"""The document format (docs/reference.md §2) and the spec of every config kind, as pydantic v2 models.

Field names are snake_case in Python and camelCase in YAML (Kubernetes style). Unknown fields are
errors everywhere (`extra="forbid"`): a typo must never be silently ignored.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from control_plane.kinds.catalog import CREDIT_TYPES
from control_plane.kinds.conditions import Condition

API_VERSION = "cplane/v1"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
ENV_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

# ISO 4217 codes in active use (the subset a payments platform can be asked to settle in).
ISO_4217 = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
    CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF
    GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP
    LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB
    PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL
    THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL""".split()
)


class Strict(BaseModel):
    """Strict types (docs/reference.md §2, YAML 1.2): no coercion between strings, numbers and booleans, and an
    integer field refuses 1.5. Decimals are the one conversion: a YAML number (never a string)
    becomes a Decimal through `_to_decimal`."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=False,
        str_strip_whitespace=False,
    )


def _check_currency(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # the str type check reports it
    if value not in ISO_4217:
        raise PydanticCustomError("currency", "'{value}' is not an ISO 4217 currency code", {"value": value})
    return value


def _to_decimal(value: Any) -> Any:
    """A YAML number becomes a Decimal (through its shortest repr, so 79.99 stays 79.99); anything
    else, a quoted "1" or a boolean included, is left for the strict Decimal check to refuse."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


_MONEY_BOUND = 10**10  # below it, an amount with at most 2 decimals has at most 12 digits


def _money(value: Any, handler: Any) -> Any:
    """NonNegativeMoney: `_to_decimal`, then the Decimal checks (ge=0, 12 digits, 2 decimals).

    An amount that certainly passes them (an int, or a float written with at most 2 decimals,
    from 0 up to 10**10) becomes its Decimal here, as `_to_decimal` makes it, without the checks:
    pydantic's digit count calls Decimal.as_tuple (a Python namedtuple per value), which was a
    quarter of validating a large taxonomy. Anything else takes the checks, with their errors."""
    cls = value.__class__
    if cls is float:
        if 0 < value < _MONEY_BOUND:  # not 0.0: it equals -0.0, whose Decimal differs
            found = _FLOATS_SEEN.get(value)
            if found is not None:
                return found
            text = repr(value)
            dot = text.find(".")
            if "e" not in text and (dot < 0 or len(text) - dot <= 3):
                return _seen(_FLOATS_SEEN, value, Decimal(text))
    elif cls is int and 0 <= value < _MONEY_BOUND:
        found = _INTS_SEEN.get(value)
        return found if found is not None else _seen(_INTS_SEEN, value, Decimal(value))
    return handler(_to_decimal(value))


# Amounts repeat (prices, CPCs): the same Decimal object is handed out for the same written value
# (floats and ints apart, since 7 == 7.0 but Decimal 7 is not Decimal 7.0), which keeps one object
# per distinct amount in memory and in the per-file cache. Decimals are immutable; bounded.
_FLOATS_SEEN: dict[float, Decimal] = {}
_INTS_SEEN: dict[int, Decimal] = {}
_SEEN_MAX = 65536


def _seen(seen: dict, key: Any, amount: Decimal) -> Decimal:
    if len(seen) >= _SEEN_MAX:
        seen.clear()
    seen[key] = amount
    return amount


Currency = Annotated[str, BeforeValidator(_check_currency)]
NonNegativeMoney = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2), WrapValidator(_money)]
NonNegativeInt = Annotated[int, Field(ge=0, strict=True)]
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]


def _refuse_literal_secret(value: Any) -> Any:
    if not isinstance(value, dict):
        # The value itself must never be echoed: it may be a real key pasted by mistake.
        raise PydanticCustomError(
            "literal_secret", "secret fields take a reference {fromEnv: VARIABLE}, never a literal value (value not shown)"
        )
    return value


class SecretRef(Strict):
    """A secret is named, never written: its value comes from the environment at plan/apply time."""

    from_env: str = Field(pattern=ENV_VAR_PATTERN, max_length=200)


Secret = Annotated[SecretRef, BeforeValidator(_refuse_literal_secret)]


# RFC 3339 with a zone; config.schedule checks the zone and reports the position.
Instant = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


# Every document's metadata (the JSON Schema of every kind and of the Overlay is generated from it).
class Metadata(Strict):
    """The object's name, labels, annotations, and the window in which it exists."""

    name: Name
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # The object exists from effectiveFrom (inclusive) until effectiveUntil (exclusive).
    effective_from: Instant | None = None
    effective_until: Instant | None = None


# config.schedule checks the entries with their positions; this declares their shape.
class ScheduleEntry(Strict):
    """A JSON merge patch over spec that applies from `at` (RFC 3339 with a zone) on."""

    at: Instant
    patch: dict[str, Any]


# config/validate.py reads the allowed fields from here and checks the rest with positions.
class OverlayPatch(Strict):
    """The object a patch targets (kind and name), and a JSON merge patch over its spec and/or a schedule."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["patch"]}, {"required": ["schedule"]}]})

    kind: str
    name: str
    patch: dict[str, Any] = Field(default_factory=dict)
    schedule: list[ScheduleEntry] = Field(default_factory=list)


class OverlaySpec(Strict):
    """Patches applied to the base objects when this environment is selected."""

    patches: list[OverlayPatch] = Field(default_factory=list)


class Envelope(Strict):
    """Every document, whatever its kind; `spec` is validated by the kind's own model."""

    api_version: Literal["cplane/v1"]
    kind: str
    metadata: Metadata
    spec: dict[str, Any]
    # [{at: <RFC 3339>, patch: {...}}]: merge patches over spec from their time on (config.schedule
    # checks the entries, with their positions).
    schedule: list[Any] = Field(default_factory=list)


class Common(Strict):
    display_name: str = Field(min_length=1, max_length=200)
    description: str = ""
    active: bool = True


# --- billing -------------------------------------------------------------------------------------


class PlanSpec(Common):
    price_monthly: NonNegativeMoney
    price_yearly: NonNegativeMoney
    currency: Currency = "USD"
    monthly_credits: NonNegativeInt = 0
    idea_credits: NonNegativeInt = 0
    content_credits: NonNegativeInt = 0
    image_credits: NonNegativeInt = 0
    optimization_credits: NonNegativeInt = 0
    max_sites: NonNegativeInt = 1
    max_users: NonNegativeInt = 1
    max_keywords: NonNegativeInt = 0
    modules: list[str] = Field(default_factory=list)
    features: list[str] = Field(default_factory=list)
    allow_own_ai_keys: bool = False
    # Integration overrides may point a provider at any https host (else only its documented hosts).
    allow_custom_endpoints: bool = False
    # Runtime API requests per minute per API key; unset: system setting api_rate_limit_per_minute.
    api_rate_limit_per_minute: Annotated[int, Field(ge=1, strict=True)] | None = None
    sort_order: int = 0
    internal: bool = False


class CreditPackageSpec(Common):
    credits: Annotated[int, Field(ge=1, strict=True)]
    bonus_credits: NonNegativeInt = 0
    price: NonNegativeMoney
    currency: Currency = "USD"
    featured: bool = False
    sort_order: int = 0


class PaymentMethodSpec(Common):
    provider: Literal["stripe", "paypal", "bank_transfer", "manual"]
    currencies: list[Currency] = Field(default_factory=list)
    countries: list[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    publishable_key: str | None = None
    secret_key: Secret | None = None
    webhook_secret: Secret | None = None
    sort_order: int = 0


class CreditCostSpec(Common):
    credits: NonNegativeInt
    unit: str = "request"
    credit_type: Literal[CREDIT_TYPES] = "general"  # type: ignore[valid-type]


# --- taxonomy ------------------------------------------------------------------------------------


class SeedKeywordSpec(Strict):
    keyword: str = Field(min_length=1, max_length=255)
    search_volume: NonNegativeInt | None = None
    difficulty: Annotated[int, Field(ge=0, le=100, strict=True)] | None = None
    cpc: NonNegativeMoney | None = None
    intent: Literal["informational", "commercial", "transactional", "navigational"] = "informational"
    active: bool = True


class SectorSpec(Strict):
    name: Name
    display_name: str = Field(min_length=1, max_length=200)
    description: str = ""
    active: bool = True
    seed_keywords: list[SeedKeywordSpec] = Field(default_factory=list)


class IndustrySpec(Common):
    sort_order: int = 0
    sectors: list[SectorSpec] = Field(default_factory=list)


# --- publishing and content ----------------------------------------------------------------------


class PublishingChannelSpec(Common):
    channel_type: Literal["wordpress", "ghost", "medium", "webflow", "shopify", "webhook", "custom"]
    capabilities: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    sort_order: int = 0


_VARIABLE = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")


def template_variables(text: str) -> set[str]:
    """`{name}` placeholders in a template; `{{` and `}}` are literal braces."""
    return set(_VARIABLE.findall(text))


class PromptSpec(Common):
    # The operation; defaults to metadata.name (the base prompt of a type is named after it).
    prompt_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=100)] | None = None
    # Selectors of a variant: a ContentType and/or an Industry name; None = any.
    content_type: Name | None = None
    industry: Name | None = None
    text: str = Field(min_length=1)
    variables: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _prompt_type_from_name(self, info: ValidationInfo) -> PromptSpec:
        # The loader passes the object's metadata.name as context; without it (a spec built from
        # rows, by export) the field stays as given.
        name = (info.context or {}).get("name")
        if self.prompt_type is None and name:
            self.prompt_type = name
        return self


class AuthorProfileSpec(Common):
    tone: str = Field(min_length=1, max_length=200)
    writing_style: str = ""
    target_audience: str = ""
    vocabulary: str = ""
    structure: dict[str, Any] = Field(default_factory=dict)
    guidelines: list[str] = Field(default_factory=list)


class StrategySection(Strict):
    heading: str
    guidance: str = ""
    min_words: NonNegativeInt | None = None
    max_words: NonNegativeInt | None = None
    optional: bool = False


class StrategySpec(Common):
    content_type: Name | None = None
    prompt_types: list[str] = Field(default_factory=list)
    sections: list[StrategySection] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)


class ContentTypeSpec(Common):
    min_words: NonNegativeInt = 0
    max_words: NonNegativeInt = 0
    default_structure: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _word_range(self):
        if self.max_words and self.max_words < self.min_words:
            raise PydanticCustomError("word_range", "maxWords must be at least minWords")
        return self


class TemplateSection(Strict):
    heading: str
    instructions: str = ""


class ContentTemplateSpec(Common):
    content_type: Name
    body: str = ""
    sections: list[TemplateSection] = Field(default_factory=list)


class TaxonomyRuleSpec(Common):
    taxonomy_type: Literal["category", "tag", "custom"]
    rules: dict[str, Any] = Field(default_factory=dict)


class NotificationTemplateSpec(Common):
    event: str = Field(min_length=1, max_length=100)
    channel: Literal["email", "in_app", "webhook", "slack"]
    subject: str = ""
    body: str = Field(min_length=1)
    variables: list[str] = Field(default_factory=list)


class RoleSpec(Common):
    rank: int = 0
    permissions: list[str] = Field(default_factory=list)

    @field_validator("permissions")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise PydanticCustomError("duplicate", "a permission is listed twice")
        return value


class SystemSettingSpec(Strict):
    value: Any
    # The type of `value` as a JSON Schema fragment ({type: integer, minimum: 0}, {enum: [...]},
    # {x-cplane-ref: Plan}); validate checks the value against it and the runtime reads it typed.
    value_schema: dict[str, Any] = Field(alias="schema")
    description: str = ""
    public: bool = False


class IntegrationDefaultsSpec(Strict):
    active: bool = True
    text_provider: Literal["openai", "anthropic", "google", "mistral", "azure_openai"]
    text_model: str = Field(min_length=1)
    temperature: Annotated[Decimal, Field(ge=0, le=2, decimal_places=2), BeforeValidator(_to_decimal)] = Decimal("0.7")
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000, strict=True)] = 4000
    image_provider: Literal["openai", "runware", "stability", "none"]
    image_model: str = ""
    image_size: str = "1024x1024"
    image_quality: Literal["standard", "hd"] = "standard"
    image_style: Literal["natural", "vivid"] = "natural"
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    api_keys: dict[str, Secret] = Field(default_factory=dict)


# --- cleanup manifest (config-only: read by `cplane cleanup`, never reconciled into a table) ------


class TableClassification(Strict):
    table: str
    data_class: Literal["system", "user", "mixed"] = Field(alias="class")
    # The system rows of a mixed table, as a structured condition (control_plane.kinds.conditions).
    system_rows: Condition | None = None
    reason: str = Field(min_length=1)
    # The old form, SQL text (`systemRows: account_id IS NULL`), is taken out before validation so
    # that `cplane cleanup check` refuses it with its position; it never reaches SQL.
    _sql_text: str | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _text_condition(cls, data: Any, handler):
        sql_text = None
        if isinstance(data, dict) and isinstance(data.get("systemRows"), str):
            sql_text = data["systemRows"]
            data = {k: v for k, v in data.items() if k != "systemRows"}
        obj = handler(data)
        obj._sql_text = sql_text
        has_rows = obj.system_rows is not None or sql_text is not None
        if obj.data_class == "mixed" and not has_rows:
            raise PydanticCustomError("mixed", "a mixed table needs systemRows, the condition that marks its system rows")
        if obj.data_class != "mixed" and has_rows:
            raise PydanticCustomError("mixed", "systemRows applies only to mixed tables")
        return obj

    @property
    def sql_text(self) -> str | None:
        """systemRows written as SQL text (refused by `cleanup check`), else None."""
        return self._sql_text if self.system_rows is None else None


class RetentionRule(Strict):
    name: Name
    table: str
    column: str
    max_age_days: NonNegativeInt | None = None
    expired: bool = False
    # Only rows that also match this condition (optional).
    where: Condition | None = None

    @model_validator(mode="after")
    def _age_or_expired(self):
        if (self.max_age_days is None) == (not self.expired):
            raise PydanticCustomError("retention", "a rule has exactly one of maxAgeDays or expired: true")
        return self


class ProfileFilter(Strict):
    table: str
    where: Condition


class CleanupProfile(Strict):
    name: Name
    description: str = ""
    rules: list[str] = Field(default_factory=list)
    classes: list[Literal["user", "mixed"]] = Field(default_factory=list)
    # Per table, only rows matching the condition are deleted (and what cascades from them).
    filters: list[ProfileFilter] = Field(default_factory=list)
    allow_in_production: bool = False


class CleanupManifestSpec(Strict):
    tables: list[TableClassification]
    retention: list[RetentionRule] = Field(default_factory=list)
    profiles: list[CleanupProfile] = Field(default_factory=list)


# --- policies (config-only: CEL rules read by validate and plan, never reconciled into a table) ---


class PolicyMatch(Strict):
    # The kinds the policy sees (each a config kind); names and labels narrow it further.
    kinds: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    names: list[Name] = Field(default_factory=list)
    # Objects carrying every one of these labels (matchLabels).
    labels: dict[str, str] = Field(default_factory=dict)
    # Objects carrying any one of these labels are exempt (e.g. internal plans).
    exclude_labels: dict[str, str] = Field(default_factory=dict)


class PolicyValidation(Strict):
    # A CEL expression that is true when the object (or change) is acceptable.
    expression: str = Field(min_length=1)
    message: str = ""
    # A CEL expression giving the message (a string); wins over `message` when it evaluates.
    message_expression: str = ""
    # Where a violation is reported in the object's document (`spec.price`); else at the first
    # spec field the expression reads that the document has, else at metadata.name.
    field_path: Annotated[str, Field(pattern=r"^(metadata|spec)(\.[A-Za-z0-9_]+)*$")] | None = None


class PolicySpec(Strict):
    description: str = ""
    # object: rules over `object` and `objects`, run by validate; change: rules over `oldObject`,
    # `object` and `change` (action, cause, impact...), run by plan.
    scope: Literal["object", "change"] = "object"
    severity: Literal["error", "warning"] = "error"
    match: PolicyMatch
    # Values the expressions read as `params` (e.g. the clauses each prompt type must keep).
    params: dict[str, Any] = Field(default_factory=dict)
    validations: list[PolicyValidation] = Field(min_length=1)
