"""GET/PATCH /v1/account: the tenant with its plan, limits and usage."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from control_plane.db.models import Keyword, Site, User
from runtime.auth import Tenant, tenant_dep
from runtime.errors import TENANT
from runtime.resolve import account_and_plan
from runtime.timefmt import Timestamp

router = APIRouter(prefix="/v1/account", tags=["account"])


class PlanSummary(BaseModel):
    name: str = Field(description="The plan's natural key (catalog `name`).")
    display_name: str
    allow_own_ai_keys: bool
    modules: list[str]
    features: list[str]


class Limits(BaseModel):
    max_sites: int
    max_users: int
    max_keywords: int


class Usage(BaseModel):
    sites: int
    users: int
    keywords: int


class AccountOut(BaseModel):
    id: uuid.UUID
    name: str
    slug: str | None
    status: str
    billing_email: str
    plan: PlanSummary | None
    limits: Limits
    usage: Usage
    created_at: Timestamp


class AccountUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(None, min_length=1, max_length=255)
    billing_email: str = Field(None, max_length=254, pattern=r"^([^@\s]+@[^@\s]+\.[^@\s]+)?$")


def _account_out(tenant: Tenant) -> AccountOut:
    session = tenant.session
    account, plan = account_and_plan(session, tenant.account_id)

    def count(model) -> int:
        return session.scalar(select(func.count()).select_from(model).where(model.account_id == tenant.account_id))

    return AccountOut(
        id=account.id, name=account.name, slug=account.slug, status=account.status,
        billing_email=account.billing_email,
        plan=PlanSummary(name=plan.slug, display_name=plan.name, allow_own_ai_keys=plan.allow_own_ai_keys,
                         modules=list(plan.modules or []), features=list(plan.features or [])) if plan else None,
        limits=Limits(max_sites=plan.max_sites if plan else 0, max_users=plan.max_users if plan else 0,
                      max_keywords=plan.max_keywords if plan else 0),
        usage=Usage(sites=count(Site), users=count(User), keywords=count(Keyword)),
        created_at=account.created_at,
    )


@router.get("", response_model=AccountOut, responses=TENANT, summary="The caller's account")
def get_account(tenant: Tenant = Depends(tenant_dep)):
    return _account_out(tenant)


@router.patch("", response_model=AccountOut, responses=TENANT, summary="Rename the account or change its billing e-mail")
def update_account(body: AccountUpdate, tenant: Tenant = Depends(tenant_dep)):
    account, _plan = account_and_plan(tenant.session, tenant.account_id)
    for key, value in body.model_dump(exclude_unset=True).items():
        setattr(account, key, value)
    tenant.session.commit()
    return _account_out(tenant)
