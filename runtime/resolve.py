"""Settings resolution: global defaults from config, account overrides on top.

- prompts: the account's ai_prompts row for a type if any, else the global prompt of that type;
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


# Active global prompts per database, keyed by the applied config revision (cplane_apply_runs):
# global prompts change through `cplane apply`, which records a new run. Entries also expire after
# GLOBAL_CACHE_TTL seconds, so an edit made outside cplane shows up without a restart. Whatever is
# derived from the global prompts (e.g. the rendered JSON of GET /v1/prompts) lives in the entry's
# `memo`, so it is dropped with the entry.
GLOBAL_CACHE_TTL = 30.0


@dataclass
class GlobalSet:
    revision: int | None
    loaded_at: float
    prompts: dict[str, _Global]
    memo: dict[str, Any]


_global_cache: dict[str, GlobalSet] = {}
_cache_lock = threading.Lock()


def global_prompts_statement():
    return (
        select(GlobalAIPrompt.id, GlobalAIPrompt.prompt_type, GlobalAIPrompt.name, GlobalAIPrompt.description,
               GlobalAIPrompt.variables, GlobalAIPrompt.text, GlobalAIPrompt.version)
        .where(GlobalAIPrompt.is_active)
    )


def globals_from_rows(rows) -> dict[str, _Global]:
    """Rows of global_prompts_statement() (id, prompt_type, name, description, variables, text, version)."""
    return {r[1]: _Global(r[0], r[1], r[2], r[3] or "", list(r[4] or []), r[5], r[6]) for r in rows}


def cached_globals(key: str, config_revision: int | None) -> GlobalSet | None:
    """The cached global prompts of database `key` at `config_revision`, if fresh."""
    cached = _global_cache.get(key)
    if cached is not None and cached.revision == config_revision \
            and time.monotonic() - cached.loaded_at < GLOBAL_CACHE_TTL:
        return cached
    return None


def store_globals(key: str, config_revision: int | None, prompts: dict[str, _Global],
                  loaded_at: float) -> GlobalSet:
    entry = GlobalSet(config_revision, loaded_at, prompts, {})
    with _cache_lock:
        _global_cache[key] = entry
    return entry


def global_set(session: Session, config_revision: int | None) -> GlobalSet:
    key = str(session.get_bind().url)
    cached = cached_globals(key, config_revision)
    if cached is not None:
        return cached
    now = time.monotonic()
    return store_globals(key, config_revision, globals_from_rows(session.execute(global_prompts_statement())), now)


def global_prompts(session: Session, config_revision: int | None) -> dict[str, _Global]:
    return global_set(session, config_revision).prompts


def _custom_rows(session: Session, account_id: uuid.UUID, prompt_type: str | None = None):
    stmt = select(AIPrompt.prompt_type, AIPrompt.text, AIPrompt.based_on_global_version, AIPrompt.updated_at).where(
        AIPrompt.account_id == account_id, AIPrompt.is_active
    )
    if prompt_type is not None:
        stmt = stmt.where(AIPrompt.prompt_type == prompt_type)
    return {r.prompt_type: r for r in session.execute(stmt).all()}


def effective(prompt_type: str, g: _Global | None, custom) -> EffectivePrompt:
    """The account's customization `custom` (prompt_type, text, based_on_global_version,
    updated_at; None if none) of `prompt_type` over the global prompt `g` (None if none)."""
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
    )


def effective_prompts(session: Session, account_id: uuid.UUID, config_revision: int | None = None
                      ) -> list[EffectivePrompt]:
    globals_ = global_prompts(session, config_revision)
    custom = _custom_rows(session, account_id)
    return [effective(t, globals_.get(t), custom.get(t)) for t in sorted(set(globals_) | set(custom))]


def effective_prompt(session: Session, account_id: uuid.UUID, prompt_type: str,
                     config_revision: int | None = None) -> EffectivePrompt | None:
    g = global_prompts(session, config_revision).get(prompt_type)
    custom = _custom_rows(session, account_id, prompt_type).get(prompt_type)
    if g is None and custom is None:
        return None
    return effective(prompt_type, g, custom)


def global_prompt(session: Session, prompt_type: str) -> GlobalAIPrompt | None:
    return session.scalars(
        select(GlobalAIPrompt).where(GlobalAIPrompt.prompt_type == prompt_type, GlobalAIPrompt.is_active)
    ).first()


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
