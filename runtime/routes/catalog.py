"""Public catalog of active system data, with ETags keyed on the content each catalog serves.

Each catalog's ETag is a digest of the change counters (control_plane/db/counters.py) of the
tables it reads: any write to them, `cplane apply` or SQL, moves a counter, so the next request
after an edit answers 200 with the new content. A database without counters gets an ETag of the
response body itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.db.models import (
    ChangeCounter,
    CreditCostConfig,
    CreditPackage,
    Industry,
    IndustrySector,
    Plan,
    PublishingChannel,
    ScheduledChange,
)
from runtime.auth import session_dep
from runtime.errors import PUBLIC
from runtime.pagination import list_model

router = APIRouter(prefix="/v1/catalog", tags=["catalog"])


class FieldChangeItem(BaseModel):
    field: str
    before: Any
    after: Any


class UpcomingItem(BaseModel):
    at: str = Field(description="When the change takes effect (RFC 3339, UTC).")
    changes: list[FieldChangeItem]


class PlanItem(BaseModel):
    name: str = Field(description="Natural key from config.")
    display_name: str
    description: str
    price_monthly: str
    price_yearly: str
    currency: str
    monthly_credits: int
    idea_credits: int
    content_credits: int
    image_credits: int
    optimization_credits: int
    max_sites: int
    max_users: int
    max_keywords: int
    modules: list[str]
    features: list[str]
    allow_own_ai_keys: bool
    upcoming: list[UpcomingItem] = Field(
        default_factory=list, description="Scheduled price changes customers need notice of, in time order.")


class CreditPackageItem(BaseModel):
    name: str
    display_name: str
    description: str
    credits: int
    bonus_credits: int
    price: str
    currency: str
    is_featured: bool


class CreditCostItem(BaseModel):
    name: str = Field(description="The metered operation.")
    display_name: str
    description: str
    credits: int
    unit: str
    credit_type: str


class SectorItem(BaseModel):
    name: str = Field(description="Natural key: `industry/sector`.")
    slug: str
    display_name: str
    description: str


class IndustryItem(BaseModel):
    name: str
    display_name: str
    description: str
    sectors: list[SectorItem]


class ChannelItem(BaseModel):
    name: str
    display_name: str
    channel_type: str
    description: str
    capabilities: list[Any]


PRICE_FIELDS = ("price_monthly", "price_yearly", "currency")


def _now() -> datetime:
    from control_plane.state.schedule import now

    return now()


def _upcoming(session: Session) -> dict[str, list[dict[str, Any]]]:
    """Per plan name: its scheduled price changes after now (cplane_scheduled_changes, which every
    apply replaces); an entry whose time has passed is no longer upcoming, applied or not."""
    current = _now()
    out: dict[str, list[dict[str, Any]]] = {}
    table = ScheduledChange.__table__
    rows = session.execute(select(table).where(table.c.kind == "Plan", table.c.action == "update")
                           .order_by(table.c.at, table.c.id)).mappings()
    for row in rows:
        at = row["at"] if row["at"].tzinfo else row["at"].replace(tzinfo=UTC)
        if at <= current:
            continue
        changes = [f for f in row["fields"] or [] if f.get("field") in PRICE_FIELDS]
        if changes:
            out.setdefault(row["name"], []).append(
                {"at": at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"), "changes": changes})
    return out


# The tables each catalog reads.
TABLES: dict[str, tuple[str, ...]] = {
    "plans": ("plans",),
    "credit-packages": ("credit_packages",),
    "credit-costs": ("credit_cost_configs",),
    "industries": ("industries", "industry_sectors"),
    "channels": ("publishing_channels",),
}


def _digest(basis: str) -> str:
    return '"' + hashlib.sha256(basis.encode()).hexdigest()[:32] + '"'


def _etag(session: Session, kind: str) -> str | None:
    """The ETag of catalog `kind` from its tables' versions; None when a table has no counter."""
    tables = TABLES[kind]
    found = dict(session.execute(
        select(ChangeCounter.table_name, ChangeCounter.version).where(ChangeCounter.table_name.in_(tables))
    ).all())
    if len(found) != len(tables):
        return None
    basis = f"{kind}:" + ",".join(f"{t}={found[t]}" for t in tables)
    if kind == "plans":  # what is upcoming changes with time too, not only with writes
        basis += ":" + repr(sorted(_upcoming(session).items()))
    return _digest(basis)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False


def _plans(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Plan).where(Plan.is_active, Plan.is_internal.is_(False)).order_by(Plan.sort_order, Plan.id)
    )
    upcoming = _upcoming(session)
    return [PlanItem(
        name=p.slug, display_name=p.name, description=p.description, price_monthly=f"{p.price_monthly:.2f}",
        price_yearly=f"{p.price_yearly:.2f}", currency=p.currency, monthly_credits=p.monthly_credits,
        idea_credits=p.idea_credits, content_credits=p.content_credits, image_credits=p.image_credits,
        optimization_credits=p.optimization_credits, max_sites=p.max_sites, max_users=p.max_users,
        max_keywords=p.max_keywords, modules=list(p.modules or []), features=list(p.features or []),
        allow_own_ai_keys=p.allow_own_ai_keys, upcoming=upcoming.get(p.slug, []),
    ).model_dump() for p in rows]


def _packages(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(CreditPackage).where(CreditPackage.is_active).order_by(CreditPackage.sort_order, CreditPackage.id)
    )
    return [CreditPackageItem(
        name=p.slug, display_name=p.name, description=p.description, credits=p.credits,
        bonus_credits=p.bonus_credits, price=f"{p.price:.2f}", currency=p.currency, is_featured=p.is_featured,
    ).model_dump() for p in rows]


def _costs(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(CreditCostConfig).where(CreditCostConfig.is_active).order_by(CreditCostConfig.operation)
    )
    return [CreditCostItem(
        name=c.operation, display_name=c.display_name, description=c.description, credits=c.credits,
        unit=c.unit, credit_type=c.credit_type,
    ).model_dump() for c in rows]


def _industries(session: Session) -> list[dict[str, Any]]:
    industries = session.scalars(
        select(Industry).where(Industry.is_active).order_by(Industry.sort_order, Industry.slug)
    ).all()
    sectors: dict[int, list[SectorItem]] = {}
    if industries:
        slugs = {i.id: i.slug for i in industries}
        for s in session.scalars(
            select(IndustrySector).where(IndustrySector.is_active, IndustrySector.industry_id.in_(slugs))
            .order_by(IndustrySector.slug)
        ):
            sectors.setdefault(s.industry_id, []).append(SectorItem(
                name=f"{slugs[s.industry_id]}/{s.slug}", slug=s.slug, display_name=s.name, description=s.description,
            ))
    return [IndustryItem(name=i.slug, display_name=i.name, description=i.description,
                         sectors=sectors.get(i.id, [])).model_dump() for i in industries]


def _channels(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(PublishingChannel).where(PublishingChannel.is_active)
        .order_by(PublishingChannel.sort_order, PublishingChannel.slug)
    )
    return [ChannelItem(
        name=c.slug, display_name=c.name, channel_type=c.channel_type, description=c.description,
        capabilities=list(c.capabilities or []),
    ).model_dump() for c in rows]


def _route(kind: str, loader: Callable[[Session], list[dict[str, Any]]], item: type[BaseModel], summary: str):
    model = list_model(f"{item.__name__}List", item)

    def endpoint(request: Request, session: Session = Depends(session_dep)):
        etag = _etag(session, kind)
        body = None
        if etag is None:
            body = JSONResponse({"items": loader(session), "next": None})
            etag = _digest(f"{kind}:body:{hashlib.sha256(body.body).hexdigest()}")
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        if body is None:
            return JSONResponse({"items": loader(session), "next": None}, headers=headers)
        body.headers.update(headers)
        return body

    router.add_api_route(
        f"/{kind}", endpoint, methods=["GET"], response_model=model, summary=summary, name=f"catalog_{kind}",
        responses={**PUBLIC, 304: {"description": "Not modified (If-None-Match matched the ETag)."}},
    )


_route("plans", _plans, PlanItem, "Active public plans")
_route("credit-packages", _packages, CreditPackageItem, "Active credit packages")
_route("credit-costs", _costs, CreditCostItem, "Credit cost of every active metered operation")
_route("industries", _industries, IndustryItem, "Active industries with their sectors")
_route("channels", _channels, ChannelItem, "Active publishing channels")
