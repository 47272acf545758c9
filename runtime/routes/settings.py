"""Settings resolved as global default + account override: prompts, AI integrations, modules."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials
from psycopg.rows import namedtuple_row
from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlalchemy import and_, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from control_plane.db.models import (
    AIIntegrationSettings,
    AIPrompt,
    APIKey,
    ContentTypeConfig,
    GlobalAIPrompt,
    ModuleEnableSettings,
)
from control_plane.kinds.catalog import MODULES, PROMPT_TYPES
from runtime import overrides
from runtime.auth import (
    Tenant,
    bearer,
    check_key,
    key_candidates_statement,
    needs_touch,
    parse_authorization,
    tenant_dep,
    touch_statement,
    verify,
)
from runtime.errors import TENANT, ApiError, not_found
from runtime.pagination import list_model
from runtime.pgasync import AsyncPool
from runtime.resolve import (
    INTEGRATION_FIELDS,
    EffectivePrompt,
    GlobalSet,
    account_and_plan,
    account_modules,
    account_override,
    cached_globals,
    effective_integration,
    effective_prompt,
    global_integration,
    global_prompt,
    global_prompts_statement,
    global_set,
    globals_from_rows,
    masked_keys,
    pick_custom,
    require_feature,
    resolve_prompt,
    store_globals,
)
from runtime.timefmt import Timestamp

log = logging.getLogger("runtime.errors")

prompts_router = APIRouter(prefix="/v1/prompts", tags=["prompts"])
settings_router = APIRouter(prefix="/v1/settings", tags=["settings"])

TypePath = Path(..., min_length=1, max_length=100, description="Prompt type, e.g. `clustering`.")
ContentTypeQuery = Query(None, min_length=1, max_length=100,
                         description="Selector: a content type (`blog-post`, `product-page`...).")
IndustryQuery = Query(None, min_length=1, max_length=100, description="Selector: an industry (`healthcare`...).")

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
    customized_at: Timestamp | None
    prompt: str | None = Field(
        description="Name of the global prompt variant chosen (for a customization: the one it was made from)."
    )
    content_type: str | None = Field(description="Content type the chosen prompt is for (null: any).")
    industry: str | None = Field(description="Industry the chosen global prompt is for (null: any).")
    matched: list[Literal["prompt_type", "content_type", "industry"]] = Field(
        description="The selectors the chosen prompt is specific to: why it won."
    )


PromptList = list_model("PromptList", PromptOut)


class PromptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=200_000)


# GET /v1/prompts is the hot read of the runtime: one async endpoint, no threadpool hop, one round
# trip (the key candidates of the prefix, their account's state, the config revision and the
# account's customizations in one statement, on an autocommit connection), the global prompts
# from the cache of that config revision, and JSON rendered once per revision for what is global.
# Same rules as tenant_dep + effective_prompts: check_key, needs_touch, effective().


def _list_statement():
    return (
        key_candidates_statement()
        .add_columns(AIPrompt.prompt_type.label("prompt_type"), AIPrompt.content_type.label("content_type"),
                     AIPrompt.text.label("text"), AIPrompt.global_prompt_id.label("global_prompt_id"),
                     AIPrompt.based_on_global_version.label("based_on_global_version"),
                     AIPrompt.updated_at.label("updated_at"))
        .outerjoin(AIPrompt, and_(AIPrompt.account_id == APIKey.account_id, AIPrompt.is_active))
    )


_LIST_STATEMENT = _list_statement()
_compiled: dict[Any, tuple[str, dict[str, Any], str]] = {}


def _compiled_for(dialect) -> tuple[str, dict[str, Any], str]:
    """(list SQL, its default parameters, global prompts SQL) for the raw driver."""
    found = _compiled.get(dialect)
    if found is None:
        listed = _LIST_STATEMENT.compile(dialect=dialect)
        found = _compiled[dialect] = (str(listed), dict(listed.params),
                                      str(global_prompts_statement().compile(dialect=dialect)))
    return found


def _prompt_json(prompt: EffectivePrompt) -> bytes:
    # Through the response model, as FastAPI would: the same JSON as GET /v1/prompts/{type}.
    return PromptOut.__pydantic_serializer__.to_json(PromptOut.model_validate(prompt.as_dict()))


def _render_list(gset: GlobalSet, rows, key_id, content_type: str | None = None, industry: str | None = None) -> bytes:
    """The body of GET /v1/prompts: the account's customizations (rows of its key) over the globals."""
    custom = {(r.prompt_type, r.content_type): r for r in rows if r.key_id == key_id and r.prompt_type is not None}
    prompts = gset.prompts
    # Global-only items once per config revision and selectors that select something; selectors no
    # global prompt uses resolve like none, so the memo stays as small as the catalog.
    selected = prompts.normalize(content_type, industry)
    memo = gset.memo
    items: dict[str, bytes] | None = memo.get(("prompt_items", selected))
    if items is None:
        items = memo["prompt_items", selected] = {
            t: _prompt_json(resolve_prompt(prompts, {}, t, *selected)) for t in prompts.types
        }
    if not custom:
        body = memo.get(("prompt_list", selected))
        if body is None:
            body = memo["prompt_list", selected] = _list_body(items[t] for t in prompts.types)
        return body
    out = []
    for t in sorted(set(items) | {t for t, _c in custom}):
        if pick_custom(custom, t, content_type)[0] is None:
            if t in items:
                out.append(items[t])
        else:
            out.append(_prompt_json(resolve_prompt(prompts, custom, t, content_type, industry)))
    return _list_body(out)


def _list_body(items) -> bytes:
    return b'{"items":[' + b",".join(items) + b'],"next":null}'


def _db_unavailable(exc: Exception) -> ApiError:
    log.error("database error: %s", (str(exc).strip().splitlines() or [type(exc).__name__])[0])
    return ApiError(503, "service_unavailable", "the database is unavailable")


async def _list_async(pool: AsyncPool, engine, prefix: str, digest: str):
    list_sql, params, globals_sql = _compiled_for(engine.dialect)
    params = {**params, "prefix": prefix}
    try:
        async with pool.connection() as conn:
            cur = conn.cursor(row_factory=namedtuple_row)
            await cur.execute(list_sql, params)
            rows = await cur.fetchall()
        now = datetime.now(UTC)
        match = check_key(rows, digest, now)
        key = str(engine.url)
        gset = cached_globals(key, match.config_revision)
        if gset is None or needs_touch(match.last_used_at, now):
            async with pool.connection() as conn:
                if needs_touch(match.last_used_at, now):
                    touch = touch_statement(match.key_id, now).compile(dialect=engine.dialect)
                    await conn.execute(str(touch), touch.params)
                if gset is None:
                    loaded_at = time.monotonic()
                    cur = await conn.execute(globals_sql)
                    gset = store_globals(key, match.config_revision, globals_from_rows(await cur.fetchall()),
                                         loaded_at)
    except psycopg.OperationalError as exc:
        raise _db_unavailable(exc) from None
    return match, gset, rows


def _list_sync(engine, prefix: str, digest: str):
    """The same as _list_async through the synchronous paths every other route takes (auth.verify,
    resolve.global_set), for databases other than PostgreSQL + psycopg."""
    with Session(engine) as session:
        match, rows = verify(session, prefix, digest, _LIST_STATEMENT)
        gset = global_set(session, match.config_revision)
    return match, gset, rows


@prompts_router.get("", response_model=PromptList, responses=TENANT,
                    summary="Effective prompt of every type for the selectors (content type, industry)")
async def list_prompts(request: Request, _credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
                       content_type: str | None = ContentTypeQuery, industry: str | None = IndustryQuery):
    prefix, digest = parse_authorization(request.headers.get("authorization"))
    state = request.app.state
    if state.pg_async is not None:
        match, gset, rows = await _list_async(state.pg_async, state.engine, prefix, digest)
    else:
        match, gset, rows = await run_in_threadpool(_list_sync, state.engine, prefix, digest)
    request.state.account_id = str(match.account_id)
    return Response(_render_list(gset, rows, match.key_id, content_type, industry), media_type="application/json")


@prompts_router.get("/{type}", response_model=PromptOut, responses=TENANT, summary="Effective prompt of one type")
def get_prompt(type: str = TypePath, content_type: str | None = ContentTypeQuery,  # noqa: A002
               industry: str | None = IndustryQuery, tenant: Tenant = Depends(tenant_dep)):
    prompt = effective_prompt(tenant.session, tenant.account_id, type, tenant.config_revision, content_type, industry)
    if prompt is None:
        raise not_found(f"prompt type {type!r}")
    return prompt.as_dict()


def _same_content_type(content_type: str | None):
    return AIPrompt.content_type.is_(None) if content_type is None else AIPrompt.content_type == content_type


def _upsert_prompt(session: Session, account_id: uuid.UUID, prompt_type: str, content_type: str | None,
                   industry: str | None, text: str) -> None:
    g = global_prompt(session, prompt_type, content_type, industry)
    if g is None and prompt_type not in PROMPT_TYPES:
        raise not_found(f"prompt type {prompt_type!r}")
    if content_type is not None and session.scalars(
            select(ContentTypeConfig.id).where(ContentTypeConfig.slug == content_type)).first() is None:
        raise not_found(f"content type {content_type!r}")
    require_feature(session, account_id, "custom_prompts", "customized prompts")
    known = {v for declared in session.scalars(select(GlobalAIPrompt.variables).where(
        GlobalAIPrompt.prompt_type == prompt_type, GlobalAIPrompt.is_active)) for v in declared or ()}
    overrides.check_prompt_text(text, list(g.variables or []) if g is not None else None, known)
    # The variant the customization is made from: its version is what "global changed" compares.
    values = {"text": text, "global_prompt_id": g.id if g else None,
              "based_on_global_version": g.version if g else None, "is_active": True}
    for _attempt in range(2):
        row = session.scalars(
            select(AIPrompt).where(AIPrompt.account_id == account_id, AIPrompt.prompt_type == prompt_type,
                                   _same_content_type(content_type))
            .with_for_update()
        ).first()
        if row is None:
            session.add(AIPrompt(id=uuid.uuid4(), account_id=account_id, prompt_type=prompt_type,
                                 content_type=content_type, **values))
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
                    summary="Customize the account's prompt of a type (or of a type for one content type)")
def put_prompt(body: PromptIn, type: str = TypePath, content_type: str | None = ContentTypeQuery,  # noqa: A002
               industry: str | None = IndustryQuery, tenant: Tenant = Depends(tenant_dep)):
    _upsert_prompt(tenant.session, tenant.account_id, type, content_type, industry, body.text)
    return effective_prompt(tenant.session, tenant.account_id, type, tenant.config_revision,
                            content_type, industry).as_dict()


@prompts_router.post("/{type}/reset", response_model=PromptOut, responses=TENANT,
                     summary="Drop the account's customization (of the type, or of the type for one content type)")
def reset_prompt(type: str = TypePath, content_type: str | None = ContentTypeQuery,  # noqa: A002
                 industry: str | None = IndustryQuery, tenant: Tenant = Depends(tenant_dep)):
    session = tenant.session
    session.execute(delete(AIPrompt).where(AIPrompt.account_id == tenant.account_id, AIPrompt.prompt_type == type,
                                           _same_content_type(content_type)))
    session.commit()
    prompt = effective_prompt(session, tenant.account_id, type, tenant.config_revision, content_type, industry)
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
    updated_at: Timestamp | None = None


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
    """The process's key; 503 `secrets_unavailable` (one line, no value) when there is none usable."""
    box = getattr(request.app.state, "secret_box", None)
    if box is None:
        from control_plane.errors import CplaneError
        from control_plane.secrets import SecretBox

        try:
            box = SecretBox(request.app.state.environment, request.app.state.engine.url)
        except CplaneError as exc:
            raise ApiError(503, "secrets_unavailable", str(exc)) from None
        request.app.state.secret_box = box
    return box


def _writable_box(request: Request, session: Session):
    """The key to encrypt with, only when it is the database's (never secrets another key cannot read)."""
    from control_plane.state.keys import recorded_key_id

    box = _box(request)
    recorded = recorded_key_id(session.connection())
    if recorded is not None and recorded != box.key_id:
        raise ApiError(503, "secrets_unavailable",
                       f"the stored secrets are encrypted with another key (key id {recorded}; this server's "
                       f"CPLANE_SECRET_KEY is key id {box.key_id}); restart it with the current key")
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
    box = _writable_box(request, session) if body.api_keys else _box(request)
    data = body.model_dump(exclude_unset=True)
    keys_in = data.pop("api_keys", None)
    overrides.check_integration_changes(data, keys_in, bool(plan.allow_custom_endpoints))
    providers_in = data.pop("providers", None)
    row = account_override(session, tenant.account_id)
    if row is None:
        base = global_integration(session)
        values = {f: getattr(base, f) for f in INTEGRATION_FIELDS} if base is not None else {}
        values.update({k: v for k, v in data.items() if v is not None})
        missing = [f for f in INTEGRATION_FIELDS if values.get(f) is None and f != "providers"]
        if missing:
            raise ApiError(422, "validation_error", f"no global defaults to start from; set {', '.join(missing)}")
        values["providers"] = overrides.merge_providers(values.get("providers") or {}, providers_in)
        overrides.check_integration_result(values)
        row = AIIntegrationSettings(account_id=tenant.account_id, name="override", api_keys_encrypted={},
                                    is_active=True, **values)
        session.add(row)
    else:
        for key, value in data.items():
            if value is not None:
                setattr(row, key, value)
        row.providers = overrides.merge_providers(row.providers or {}, providers_in)
        try:
            overrides.check_integration_result({f: getattr(row, f) for f in INTEGRATION_FIELDS})
        except ApiError:
            session.rollback()
            raise
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
ModuleSwitches = create_model(
    "ModuleSwitches", __config__=ConfigDict(extra="forbid"), **{m: (bool, Field(None)) for m in MODULES}
)
# The GET shape ({"modules": {...}} plus the read-only `source`, `plan_modules` and `effective`,
# which are derived and ignored), or the switches flat; omitted modules keep their state.
ModulesIn = create_model(
    "ModulesIn", __config__=ConfigDict(extra="forbid"),
    modules=(ModuleSwitches | None, Field(None)),
    source=(Literal["account", "default"] | None, Field(None, description="Read-only; ignored.")),
    plan_modules=(list[str] | None, Field(None, description="Read-only; ignored.")),
    effective=(dict[str, bool] | None, Field(None, description="Read-only; ignored.")),
    **{m: (bool, Field(None)) for m in MODULES},
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
    data = body.model_dump(exclude_unset=True)
    nested = data.pop("modules", None) or {}
    for read_only in ("source", "plan_modules", "effective"):
        data.pop(read_only, None)
    flags.update({k: v for k, v in {**nested, **data}.items() if v is not None})
    row = session.get(ModuleEnableSettings, tenant.account_id, with_for_update=True)
    if row is None:
        row = ModuleEnableSettings(account_id=tenant.account_id)
        session.add(row)
    for m in MODULES:
        setattr(row, f"{m}_enabled", flags[m])
    session.commit()
    return _modules_out(session, tenant.account_id)
