"""Settings resolution: global defaults from config, account overrides on top.

- prompts: the most specific of the account's ai_prompts rows and the global prompt variants for
  the request's selectors (type, content type, industry; see "prompts" below);
- AI integration settings: the account's override row where its plan allows own keys, else the
  global row named "default";
- modules: the account's module_enable_settings row, else system setting `default_modules`, else
  everything enabled.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from control_plane.db.models import (
    Account,
    AIIntegrationSettings,
    AIPrompt,
    ChangeCounter,
    GlobalAIPrompt,
    ModuleEnableSettings,
    Plan,
    SystemSetting,
)
from control_plane.kinds.catalog import MODULES
from control_plane.secrets import mask

GLOBAL_INTEGRATION_NAME = "default"

# --- modules -------------------------------------------------------------------------------------


def default_modules(session: Session) -> dict[str, bool]:
    """System setting `default_modules` ({module: bool} or [enabled modules]); else all enabled."""
    value = session.scalars(select(SystemSetting.value).where(SystemSetting.key == "default_modules")).first()
    if isinstance(value, dict):
        if isinstance(value.get("modules"), dict | list):
            value = value["modules"]
    if isinstance(value, dict):
        return {m: bool(value.get(m, True)) for m in MODULES}
    if isinstance(value, list):
        enabled = {str(v) for v in value}
        return {m: m in enabled for m in MODULES}
    return {m: True for m in MODULES}


def account_modules(session: Session, account_id: uuid.UUID) -> tuple[dict[str, bool], str]:
    row = session.get(ModuleEnableSettings, account_id)
    if row is None:
        return default_modules(session), "default"
    return {m: bool(getattr(row, f"{m}_enabled")) for m in MODULES}, "account"


# --- plan ----------------------------------------------------------------------------------------


def account_and_plan(session: Session, account_id: uuid.UUID) -> tuple[Account, Plan | None]:
    row = session.execute(
        select(Account, Plan).outerjoin(Plan, Plan.id == Account.plan_id).where(Account.id == account_id)
    ).one()
    return row[0], row[1]


def require_feature(session: Session, account_id: uuid.UUID, feature: str, what: str) -> None:
    """Customizations are plan features (config/plans: `features`); without it, 403."""
    from runtime.errors import ApiError

    _account, plan = account_and_plan(session, account_id)
    if plan is None or feature not in (plan.features or []):
        raise ApiError(403, "plan_feature_unavailable",
                       f"plan {plan.slug if plan else '(none)'!r} does not include {feature} ({what})")


# --- prompts -------------------------------------------------------------------------------------
#
# A global prompt targets a type and optionally a content type and an industry; an account's
# customization targets a type and optionally a content type. For a request's selectors
# (content_type, industry), the most specific match wins:
#
#   1. the account's customization for (type, content type)
#   2. the account's customization for the type
#   3. the global prompt for (type, content type, industry)
#   4. the global prompt for (type, content type)
#   5. the global prompt for (type, industry)       an industry-only variant ranks below content type
#   6. the global prompt for the type
#
# `matched` names the selectors the chosen prompt was specific to (always "prompt_type").

SELECTORS = ("prompt_type", "content_type", "industry")


@dataclass
class EffectivePrompt:
    type: str
    name: str
    description: str
    variables: list[Any]
    text: str
    source: str  # "global" | "custom"
    global_version: int | None
    global_changed_since_customized: bool
    based_on_global_version: int | None
    customized_at: Any
    prompt: str | None = None
    content_type: str | None = None
    industry: str | None = None
    matched: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class _Global:
    id: int
    prompt_type: str
    name: str
    description: str
    variables: list[Any]
    text: str
    version: int
    slug: str = ""
    content_type: str | None = None
    industry: str | None = None


Selector = tuple[str, str | None, str | None]


def _steps(content_type: str | None, industry: str | None) -> list[tuple[str | None, str | None]]:
    """The global (content type, industry) selectors to try, most specific first (steps 3 to 6)."""
    steps: list[tuple[str | None, str | None]] = []
    if content_type and industry:
        steps.append((content_type, industry))
    if content_type:
        steps.append((content_type, None))
    if industry:
        steps.append((None, industry))
    steps.append((None, None))
    return steps


class GlobalPrompts(dict[Selector, _Global]):
    """Active global prompts by (type, content type, industry), with lookups by id and type."""

    def __init__(self, items=()):
        super().__init__(items)
        self.by_id = {g.id: g for g in self.values()}
        self.types = sorted({t for t, _c, _i in self})
        self.content_types = frozenset(c for _t, c, _i in self if c)
        self.industries = frozenset(i for _t, _c, i in self if i)

    def normalize(self, content_type: str | None, industry: str | None) -> tuple[str | None, str | None]:
        """Selectors no global prompt uses select the same globals as no selector."""
        return (content_type if content_type in self.content_types else None,
                industry if industry in self.industries else None)

    def resolve(self, prompt_type: str, content_type: str | None = None, industry: str | None = None
                ) -> tuple[_Global | None, list[str]]:
        """The most specific global prompt of `prompt_type` for the selectors, and what matched."""
        for ct, ind in _steps(content_type, industry):
            g = self.get((prompt_type, ct, ind))
            if g is not None:
                return g, ["prompt_type", *(["content_type"] if ct else []), *(["industry"] if ind else [])]
        return None, []


# Active global prompts per database, keyed on the change counter of global_ai_prompts
# (control_plane/db/counters.py): every write to that table moves it, `cplane apply` or SQL, so
# the next request after an edit loads the prompts again; no TTL. Without a counter (a database
# not migrated that far) nothing is cached. Whatever is derived from the global prompts (e.g. the
# rendered JSON of GET /v1/prompts) lives in the entry's `memo`, so it is dropped with the entry.


@dataclass
class GlobalSet:
    version: int | None
    loaded_at: float
    prompts: GlobalPrompts
    memo: dict[Any, Any]


_global_cache: dict[str, GlobalSet] = {}
_cache_lock = threading.Lock()


def prompts_version(session: Session) -> int | None:
    """The change counter of the global prompts (None without counters)."""
    return session.scalar(select(ChangeCounter.version).where(ChangeCounter.table_name == "global_ai_prompts"))


def global_prompts_statement():
    return (
        select(GlobalAIPrompt.id, GlobalAIPrompt.prompt_type, GlobalAIPrompt.name, GlobalAIPrompt.description,
               GlobalAIPrompt.variables, GlobalAIPrompt.text, GlobalAIPrompt.version, GlobalAIPrompt.slug,
               GlobalAIPrompt.content_type, GlobalAIPrompt.industry)
        .where(GlobalAIPrompt.is_active)
    )


def globals_from_rows(rows) -> GlobalPrompts:
    """Rows of global_prompts_statement() (id, prompt_type, name, description, variables, text,
    version, slug, content_type, industry)."""
    return GlobalPrompts(
        ((r[1], r[8], r[9]), _Global(r[0], r[1], r[2], r[3] or "", list(r[4] or []), r[5], r[6], r[7], r[8], r[9]))
        for r in rows
    )


def cached_globals(key: str, version: int | None) -> GlobalSet | None:
    """The cached global prompts of database `key` at counter `version` (None: never cached)."""
    cached = _global_cache.get(key)
    if cached is not None and version is not None and cached.version == version:
        return cached
    return None


def store_globals(key: str, version: int | None, prompts: GlobalPrompts, loaded_at: float) -> GlobalSet:
    entry = GlobalSet(version, loaded_at, prompts, {})
    with _cache_lock:
        _global_cache[key] = entry
    return entry


def global_set(session: Session, version: int | None = None) -> GlobalSet:
    """The global prompts at counter `version` (read from the database when None)."""
    key = str(session.get_bind().url)
    if version is None:
        version = prompts_version(session)
    cached = cached_globals(key, version)
    if cached is not None:
        return cached
    now = time.monotonic()
    return store_globals(key, version, globals_from_rows(session.execute(global_prompts_statement())), now)


def global_prompts(session: Session, version: int | None = None) -> GlobalPrompts:
    return global_set(session, version).prompts


def custom_rows(session: Session, account_id: uuid.UUID, prompt_type: str | None = None):
    """The account's customizations by (prompt_type, content_type)."""
    stmt = select(AIPrompt.prompt_type, AIPrompt.content_type, AIPrompt.text, AIPrompt.global_prompt_id,
                  AIPrompt.based_on_global_version, AIPrompt.updated_at).where(
        AIPrompt.account_id == account_id, AIPrompt.is_active
    )
    if prompt_type is not None:
        stmt = stmt.where(AIPrompt.prompt_type == prompt_type)
    return {(r.prompt_type, r.content_type): r for r in session.execute(stmt).all()}


def pick_custom(custom: dict, prompt_type: str, content_type: str | None):
    """The account's customization that wins for the selectors (steps 1 and 2), and what matched."""
    if content_type:
        row = custom.get((prompt_type, content_type))
        if row is not None:
            return row, ["prompt_type", "content_type"]
    row = custom.get((prompt_type, None))
    if row is not None:
        return row, ["prompt_type"]
    return None, []


def effective(prompt_type: str, g: _Global | None, custom, matched: list[str] | None = None) -> EffectivePrompt:
    """The account's customization `custom` (a row of custom_rows; None if none) of `prompt_type`
    over the global prompt `g` (for a customization: the variant it was made from; None if none)."""
    return EffectivePrompt(
        type=prompt_type,
        name=g.name if g else prompt_type,
        description=g.description if g else "",
        variables=list(g.variables) if g else [],
        text=custom.text if custom is not None else g.text,
        source="custom" if custom is not None else "global",
        global_version=g.version if g else None,
        global_changed_since_customized=bool(
            custom is not None and g is not None
            and (custom.based_on_global_version is None or custom.based_on_global_version < g.version)
        ),
        based_on_global_version=custom.based_on_global_version if custom is not None else None,
        customized_at=custom.updated_at if custom is not None else None,
        prompt=g.slug if g else None,
        content_type=custom.content_type if custom is not None else (g.content_type if g else None),
        industry=None if custom is not None else (g.industry if g else None),
        matched=matched if matched is not None else ["prompt_type"],
    )


def resolve_prompt(globals_: GlobalPrompts, custom: dict, prompt_type: str, content_type: str | None = None,
                   industry: str | None = None) -> EffectivePrompt | None:
    row, matched = pick_custom(custom, prompt_type, content_type)
    if row is not None:
        # Compared with the variant it was made from, while that variant is active; else with
        # what the selectors resolve to now.
        base = globals_.by_id.get(row.global_prompt_id) or globals_.resolve(prompt_type, content_type, industry)[0]
        return effective(prompt_type, base, row, matched)
    g, matched = globals_.resolve(prompt_type, content_type, industry)
    if g is None:
        return None
    return effective(prompt_type, g, None, matched)


def effective_prompts(session: Session, account_id: uuid.UUID, version: int | None = None,
                      content_type: str | None = None, industry: str | None = None) -> list[EffectivePrompt]:
    globals_ = global_prompts(session, version)
    custom = custom_rows(session, account_id)
    types = sorted(set(globals_.types) | {t for t, _c in custom})
    return [resolve_prompt(globals_, custom, t, content_type, industry) for t in types]


def effective_prompt(session: Session, account_id: uuid.UUID, prompt_type: str,
                     version: int | None = None, content_type: str | None = None,
                     industry: str | None = None) -> EffectivePrompt | None:
    globals_ = global_prompts(session, version)
    custom = custom_rows(session, account_id, prompt_type)
    return resolve_prompt(globals_, custom, prompt_type, content_type, industry)


def global_prompt(session: Session, prompt_type: str, content_type: str | None = None,
                  industry: str | None = None) -> GlobalAIPrompt | None:
    """The active global prompt the selectors resolve to (read fresh, not from the cache)."""
    rows = session.scalars(
        select(GlobalAIPrompt).where(GlobalAIPrompt.prompt_type == prompt_type, GlobalAIPrompt.is_active)
    ).all()
    by_selector = {(r.content_type, r.industry): r for r in rows}
    for step in _steps(content_type, industry):
        if step in by_selector:
            return by_selector[step]
    return None


# --- AI integration settings ---------------------------------------------------------------------

INTEGRATION_FIELDS = (
    "text_provider", "text_model", "temperature", "max_tokens", "image_provider", "image_model",
    "image_size", "image_quality", "image_style", "providers",
)


def global_integration(session: Session) -> AIIntegrationSettings | None:
    return session.scalars(
        select(AIIntegrationSettings).where(
            and_(AIIntegrationSettings.account_id.is_(None), AIIntegrationSettings.name == GLOBAL_INTEGRATION_NAME,
                 AIIntegrationSettings.is_active)
        )
    ).first()


def account_override(session: Session, account_id: uuid.UUID) -> AIIntegrationSettings | None:
    return session.scalars(
        select(AIIntegrationSettings)
        .where(AIIntegrationSettings.account_id == account_id)
        .order_by(AIIntegrationSettings.id)
    ).first()


def effective_integration(session: Session, account_id: uuid.UUID
                          ) -> tuple[AIIntegrationSettings | None, str, bool]:
    """(row, source, plan allows own keys)."""
    _account, plan = account_and_plan(session, account_id)
    allowed = bool(plan and plan.allow_own_ai_keys)
    if allowed:
        override = account_override(session, account_id)
        if override is not None and override.is_active:
            return override, "override", allowed
    return global_integration(session), "global", allowed


def masked_keys(row: AIIntegrationSettings, box) -> dict[str, str]:
    out: dict[str, str] = {}
    for provider, token in sorted((row.api_keys_encrypted or {}).items()):
        if not token:
            continue
        clear = box.decrypt(token) if isinstance(token, str) else None
        out[provider] = mask(clear) if clear else "********"
    return out
