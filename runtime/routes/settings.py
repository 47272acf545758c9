"""Settings resolved as global default + account override: prompts, AI integrations, modules."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from control_plane.catalog import MODULES, PROMPT_TYPES
from control_plane.models import AIIntegrationSettings, AIPrompt, ModuleEnableSettings
from runtime.auth import Tenant, tenant_dep
from runtime.errors import TENANT, ApiError, not_found
from runtime.resolve import (
    INTEGRATION_FIELDS,
    account_and_plan,
    account_modules,
    account_override,
    effective_integration,
    effective_prompt,
    effective_prompts,
    global_integration,
    global_prompt,
    masked_keys,
)

prompts_router = APIRouter(prefix="/v1/prompts", tags=["prompts"])
settings_router = APIRouter(prefix="/v1/settings", tags=["settings"])

TypePath = Path(..., min_length=1, max_length=100, description="Prompt type, e.g. `clustering`.")

# --- prompts -------------------------------------------------------------------------------------


class PromptOut(BaseModel):
    type: str
    name: str
    description: str
    variables: list[Any]
    text: str
    source: Literal["global", "custom"]
    global_version: int | None = Field(description="Current version of the global prompt (null if none).")
    global_changed_since_customized: bool = Field(
        description="The global prompt changed after the account customized this type."
    )
    based_on_global_version: int | None = Field(description="Global version the customization was made from.")
    customized_at: datetime | None


class PromptList(BaseModel):
    items: list[PromptOut]
    next: str | None = None


class PromptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=200_000)


@prompts_router.get("", response_model=PromptList, responses=TENANT, summary="Effective prompt of every type")
def list_prompts(tenant: Tenant = Depends(tenant_dep)):
    return {"items": [p.as_dict() for p in effective_prompts(tenant.session, tenant.account_id, tenant.config_revision)], "next": None}


@prompts_router.get("/{type}", response_model=PromptOut, responses=TENANT, summary="Effective prompt of one type")
def get_prompt(type: str = TypePath, tenant: Tenant = Depends(tenant_dep)):  # noqa: A002
    prompt = effective_prompt(tenant.session, tenant.account_id, type, tenant.config_revision)
    if prompt is None:
        raise not_found(f"prompt type {type!r}")
    return prompt.as_dict()


def _upsert_prompt(session: Session, account_id: uuid.UUID, prompt_type: str, text: str) -> None:
    g = global_prompt(session, prompt_type)
    if g is None and prompt_type not in PROMPT_TYPES:
        raise not_found(f"prompt type {prompt_type!r}")
    values = {"text": text, "global_prompt_id": g.id if g else None,
              "based_on_global_version": g.version if g else None, "is_active": True}
    for _attempt in range(2):
        row = session.scalars(
            select(AIPrompt).where(AIPrompt.account_id == account_id, AIPrompt.prompt_type == prompt_type)
            .with_for_update()
        ).first()
        if row is None:
            session.add(AIPrompt(id=uuid.uuid4(), account_id=account_id, prompt_type=prompt_type, **values))
        else:
            for key, value in values.items():
                setattr(row, key, value)
        try:
            session.commit()
            return
        except IntegrityError:  # a concurrent PUT inserted first: update theirs
            session.rollback()
    raise ApiError(409, "conflict", "concurrent update of this prompt; retry")


@prompts_router.put("/{type}", response_model=PromptOut, responses=TENANT,
                    summary="Customize the account's prompt of a type")
def put_prompt(body: PromptIn, type: str = TypePath, tenant: Tenant = Depends(tenant_dep)):  # noqa: A002
    _upsert_prompt(tenant.session, tenant.account_id, type, body.text)
    return effective_prompt(tenant.session, tenant.account_id, type, tenant.config_revision).as_dict()


@prompts_router.post("/{type}/reset", response_model=PromptOut, responses=TENANT,
                     summary="Drop the account's customization: the global prompt applies again")
def reset_prompt(type: str = TypePath, tenant: Tenant = Depends(tenant_dep)):  # noqa: A002
    session = tenant.session
    session.execute(delete(AIPrompt).where(AIPrompt.account_id == tenant.account_id, AIPrompt.prompt_type == type))
    session.commit()
    prompt = effective_prompt(session, tenant.account_id, type, tenant.config_revision)
    if prompt is None:
        raise not_found(f"prompt type {type!r}")
    return prompt.as_dict()


# --- AI integration settings ---------------------------------------------------------------------


class IntegrationOut(BaseModel):
    source: Literal["global", "override"]
    own_keys_allowed: bool = Field(description="The account's plan allows its own AI keys (an override).")
    text_provider: str
    text_model: str
    temperature: float
    max_tokens: int
    image_provider: str
    image_model: str
    image_size: str
    image_quality: str
    image_style: str
    providers: dict[str, Any]
    api_keys: dict[str, str] = Field(description="Provider -> masked key; keys are never shown in clear.")
    updated_at: datetime | None = None


class IntegrationIn(BaseModel):
    """An override; omitted fields are taken from the current override, else from the global defaults."""

    model_config = ConfigDict(extra="forbid")
    text_provider: str = Field(None, min_length=1, max_length=50)
    text_model: str = Field(None, min_length=1, max_length=100)
    temperature: float = Field(None, ge=0, le=2)
    max_tokens: int = Field(None, ge=1, le=10_000_000)
    image_provider: str = Field(None, min_length=1, max_length=50)
    image_model: str = Field(None, min_length=1, max_length=100)
    image_size: str = Field(None, min_length=1, max_length=30)
    image_quality: str = Field(None, min_length=1, max_length=30)
    image_style: str = Field(None, min_length=1, max_length=30)
    providers: dict[str, Any] = Field(None)
    api_keys: dict[str, str | None] = Field(
        None, description="Provider -> key in clear (stored encrypted); null removes a provider's key."
    )


def _box(request: Request):
    box = getattr(request.app.state, "secret_box", None)
    if box is None:
        from control_plane.secrets import SecretBox

        box = SecretBox(request.app.state.environment)
        request.app.state.secret_box = box
    return box


def _integration_out(row: AIIntegrationSettings, source: str, allowed: bool, box) -> IntegrationOut:
    return IntegrationOut(
        source=source, own_keys_allowed=allowed,
        **{f: (float(getattr(row, f)) if f == "temperature" else getattr(row, f)) for f in INTEGRATION_FIELDS},
        api_keys=masked_keys(row, box), updated_at=row.updated_at,
    )


@settings_router.get("/integrations", response_model=IntegrationOut, responses=TENANT,
                     summary="Effective AI integration settings (keys masked)")
def get_integrations(request: Request, tenant: Tenant = Depends(tenant_dep)):
    row, source, allowed = effective_integration(tenant.session, tenant.account_id)
    if row is None:
        raise not_found("AI integration settings (none configured)")
    return _integration_out(row, source, allowed, _box(request))


@settings_router.put("/integrations", response_model=IntegrationOut, responses=TENANT,
                     summary="Set the account's override (plans with own AI keys only)")
def put_integrations(body: IntegrationIn, request: Request, tenant: Tenant = Depends(tenant_dep)):
    session = tenant.session
    _account, plan = account_and_plan(session, tenant.account_id)
    if not (plan and plan.allow_own_ai_keys):
        raise ApiError(403, "plan_feature_unavailable",
                       f"plan {plan.slug if plan else '(none)'!r} does not allow own AI keys")
    box = _box(request)
    data = body.model_dump(exclude_unset=True)
    keys_in = data.pop("api_keys", None)
    row = account_override(session, tenant.account_id)
    if row is None:
        base = global_integration(session)
        values = {f: getattr(base, f) for f in INTEGRATION_FIELDS} if base is not None else {}
        values.update({k: v for k, v in data.items() if v is not None})
        missing = [f for f in INTEGRATION_FIELDS if values.get(f) is None and f != "providers"]
        if missing:
            raise ApiError(422, "validation_error", f"no global defaults to start from; set {', '.join(missing)}")
        values.setdefault("providers", {})
        row = AIIntegrationSettings(account_id=tenant.account_id, name="override", api_keys_encrypted={},
                                    is_active=True, **values)
        session.add(row)
    else:
        for key, value in data.items():
            if value is not None:
                setattr(row, key, value)
        row.is_active = True
    if "temperature" in data and data["temperature"] is not None:
        row.temperature = Decimal(str(round(data["temperature"], 2)))
    if keys_in:
        keys = dict(row.api_keys_encrypted or {})
        for provider, key in keys_in.items():
            if len(provider) > 50 or (key is not None and len(key) > 1000):
                raise ApiError(422, "validation_error", "provider names are at most 50 and keys 1000 characters")
            if key is None or key == "":
                keys.pop(provider, None)
            else:
                keys[provider] = box.encrypt(key)
        row.api_keys_encrypted = keys
    session.commit()
    session.refresh(row)
    return _integration_out(row, "override", True, box)


@settings_router.delete("/integrations", status_code=204, response_class=Response, responses=TENANT,
                        summary="Remove the account's override: the global defaults apply")
def delete_integrations(tenant: Tenant = Depends(tenant_dep)):
    session = tenant.session
    result = session.execute(
        delete(AIIntegrationSettings).where(AIIntegrationSettings.account_id == tenant.account_id)
    )
    session.commit()
    if not result.rowcount:
        raise not_found("AI integration override")
    return Response(status_code=204)


# --- modules -------------------------------------------------------------------------------------

ModuleFlags = create_model("ModuleFlags", **{m: (bool, ...) for m in MODULES})
ModulesIn = create_model(
    "ModulesIn", __config__=ConfigDict(extra="forbid"), **{m: (bool, Field(None)) for m in MODULES}
)


class ModulesOut(BaseModel):
    modules: ModuleFlags  # type: ignore[valid-type]
    source: Literal["account", "default"] = Field(description="`default`: from system setting default_modules.")
    plan_modules: list[str]
    effective: ModuleFlags = Field(description="Enabled by the account and included in its plan.")  # type: ignore[valid-type]


def _modules_out(session: Session, account_id: uuid.UUID) -> ModulesOut:
    flags, source = account_modules(session, account_id)
    _account, plan = account_and_plan(session, account_id)
    in_plan = list(plan.modules or []) if plan else []
    return ModulesOut(modules=flags, source=source, plan_modules=in_plan,
                      effective={m: flags[m] and m in in_plan for m in MODULES})


@settings_router.get("/modules", response_model=ModulesOut, responses=TENANT, summary="Module switches")
def get_modules(tenant: Tenant = Depends(tenant_dep)):
    return _modules_out(tenant.session, tenant.account_id)


@settings_router.put("/modules", response_model=ModulesOut, responses=TENANT,
                     summary="Enable or disable modules for the account (omitted modules keep their state)")
def put_modules(body: ModulesIn, tenant: Tenant = Depends(tenant_dep)):  # type: ignore[valid-type]
    session = tenant.session
    flags, _source = account_modules(session, tenant.account_id)
    flags.update({k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None})
    row = session.get(ModuleEnableSettings, tenant.account_id, with_for_update=True)
    if row is None:
        row = ModuleEnableSettings(account_id=tenant.account_id)
        session.add(row)
    for m in MODULES:
        setattr(row, f"{m}_enabled", flags[m])
    session.commit()
    return _modules_out(session, tenant.account_id)
