"""User data: users, sites (+ sectors), clusters, keywords, ideas, tasks, content."""

import uuid
from datetime import UTC, date, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from control_plane.db.models import (
    Account,
    AuthorProfile,
    Cluster,
    Content,
    ContentIdea,
    Industry,
    IndustrySector,
    Keyword,
    Role,
    Sector,
    Site,
    Strategy,
    Task,
    User,
)
from runtime.auth import Tenant, tenant_dep
from runtime.crud import Resource, build_router, check_refs, enforce_plan_limit, owned
from runtime.errors import TENANT, ApiError, not_found
from runtime.pagination import DEFAULT_LIMIT, MAX_LIMIT, list_model, page
from runtime.timefmt import Timestamp

KeywordStatus = Literal["pending", "clustered", "used", "archived"]
IdeaStatus = Literal["pending", "approved", "used", "archived"]
TaskStatus = Literal["pending", "in_progress", "completed", "cancelled"]
ContentStatus = Literal["draft", "review", "approved", "published"]
ClusterStatus = Literal["active", "archived"]
ActiveStatus = Literal["active", "inactive"]
Priority = Literal["low", "medium", "high"]

INT32 = 2_147_483_647
REQUIRED = ...


def Str(max_length: int, min_length: int = 0) -> dict[str, Any]:
    return {"max_length": max_length, "min_length": min_length}


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


def make_models(name: str, fields: dict[str, tuple[Any, Any, dict[str, Any]]],
                out_extra: dict[str, Any] | None = None) -> tuple[type[BaseModel], type[BaseModel], type[BaseModel]]:
    """(Create, Update, Out) from {field: (annotation, create default or REQUIRED, constraints)}.

    Update makes every field optional; a field whose annotation is not nullable still refuses null.
    """
    create_fields = {f: (ann, Field(default, **c)) for f, (ann, default, c) in fields.items()}
    update_fields = {f: (ann, Field(None, **c)) for f, (ann, _d, c) in fields.items()}
    out_fields: dict[str, Any] = {"id": (uuid.UUID, ...)}
    out_fields.update({f: (ann, ...) for f, (ann, _d, _c) in fields.items()})
    out_fields.update(out_extra or {})
    out_fields.update({"created_at": (Timestamp, ...), "updated_at": (Timestamp, ...)})
    create = create_model(f"{name}Create", __base__=_Input, **create_fields)
    update = create_model(f"{name}Update", __base__=_Input, **update_fields)
    out = create_model(f"{name}", **out_fields)
    return create, update, out


def status_filters(model: Any, status_type: Any) -> dict[str, tuple[Any, Any]]:
    return {
        "site_id": (uuid.UUID, lambda v: model.site_id == v),
        "status": (status_type, lambda v: model.status == v),
    }


# --- sites ---------------------------------------------------------------------------------------

SiteCreate, SiteUpdate, SiteOut = make_models("Site", {
    "name": (str, REQUIRED, Str(255, 1)),
    "domain": (str, "", Str(255)),
    "industry": (str | None, None, {"max_length": 100, "description": "Industry name from /v1/catalog/industries."}),
    "is_active": (bool, True, {}),
})


def _active_id_by_slug(session: Session, model: type, slug: str | None, label: str) -> int | None:
    """A tenant names system rows by their config name; only active ones can be chosen."""
    if slug is None:
        return None
    row_id = session.scalar(select(model.id).where(model.slug == slug, model.is_active))
    if row_id is None:
        raise not_found(f"{label} {slug!r}")
    return row_id


def _site_prepare(session: Session, _tenant: Tenant, data: dict[str, Any], _row: Any) -> dict[str, Any]:
    if "industry" in data:
        data["industry_id"] = _active_id_by_slug(session, Industry, data.pop("industry"), "industry")
    return data


def _site_serialize(session: Session, rows: list[Site]) -> list[Any]:
    ids = {r.industry_id for r in rows if r.industry_id is not None}
    slugs = dict(session.execute(select(Industry.id, Industry.slug).where(Industry.id.in_(ids))).all()) if ids else {}
    return [SiteOut(id=r.id, name=r.name, domain=r.domain, industry=slugs.get(r.industry_id), is_active=r.is_active,
                    created_at=r.created_at, updated_at=r.updated_at) for r in rows]


sites = Resource(
    path="sites", label="site", model=Site, create=SiteCreate, update=SiteUpdate, out=SiteOut,
    filters={"status": (ActiveStatus, lambda v: Site.is_active.is_(v == "active"))},
    prepare=_site_prepare,
    before_create=lambda s, t: enforce_plan_limit(s, t.account_id, Site, "max_sites", "sites"),
    serialize=_site_serialize,
)

# --- users ---------------------------------------------------------------------------------------

UserCreate, UserUpdate, UserOut = make_models("User", {
    "email": (str, REQUIRED, {"max_length": 254, "pattern": r"^[^@\s]+@[^@\s]+\.[^@\s]+$"}),
    "first_name": (str, "", Str(150)),
    "last_name": (str, "", Str(150)),
    "role": (str | None, None, {"max_length": 100, "description": "Role name (e.g. `owner`, `editor`)."}),
    "is_active": (bool, True, {}),
}, out_extra={"is_owner": (bool, ...)})


def _user_prepare(session: Session, _tenant: Tenant, data: dict[str, Any], row: Any) -> dict[str, Any]:
    if "email" in data:
        data["email"] = data["email"].strip().lower()
        clash = session.scalar(select(User.id).where(User.email == data["email"]))
        if clash is not None and (row is None or clash != row.id):
            raise ApiError(409, "conflict", "a user with this e-mail already exists")
    if "role" in data:
        data["role_id"] = _active_id_by_slug(session, Role, data.pop("role"), "role")
    return data


def _user_serialize(session: Session, rows: list[User]) -> list[Any]:
    ids = {r.role_id for r in rows if r.role_id is not None}
    slugs = dict(session.execute(select(Role.id, Role.slug).where(Role.id.in_(ids))).all()) if ids else {}
    owners = set()
    if rows:
        owners = set(session.scalars(select(Account.owner_id).where(Account.id == rows[0].account_id)))
    return [UserOut(id=r.id, email=r.email, first_name=r.first_name, last_name=r.last_name,
                    role=slugs.get(r.role_id), is_active=r.is_active, is_owner=r.id in owners,
                    created_at=r.created_at, updated_at=r.updated_at) for r in rows]


def _user_before_delete(session: Session, tenant: Tenant, row: User) -> None:
    owner = session.scalar(select(Account.owner_id).where(Account.id == tenant.account_id))
    if owner == row.id:
        raise ApiError(409, "conflict", "the account owner cannot be deleted")


users = Resource(
    path="users", label="user", model=User, create=UserCreate, update=UserUpdate, out=UserOut,
    filters={"status": (ActiveStatus, lambda v: User.is_active.is_(v == "active"))},
    prepare=_user_prepare,
    before_create=lambda s, t: enforce_plan_limit(s, t.account_id, User, "max_users", "users"),
    before_delete=_user_before_delete,
    serialize=_user_serialize,
)

# --- planner -------------------------------------------------------------------------------------

ClusterCreate, ClusterUpdate, ClusterOut = make_models("Cluster", {
    "site_id": (uuid.UUID, REQUIRED, {}),
    "sector_id": (uuid.UUID | None, None, {}),
    "name": (str, REQUIRED, Str(255, 1)),
    "description": (str, "", Str(20_000)),
    "status": (ClusterStatus, "active", {}),
})
clusters = Resource(
    path="clusters", label="cluster", model=Cluster, create=ClusterCreate, update=ClusterUpdate, out=ClusterOut,
    refs={"site_id": (Site, "site"), "sector_id": (Sector, "sector")},
    filters=status_filters(Cluster, ClusterStatus),
)

KeywordCreate, KeywordUpdate, KeywordOut = make_models("Keyword", {
    "site_id": (uuid.UUID, REQUIRED, {}),
    "sector_id": (uuid.UUID | None, None, {}),
    "cluster_id": (uuid.UUID | None, None, {}),
    "keyword": (str, REQUIRED, Str(255, 1)),
    "search_volume": (int | None, None, {"ge": 0, "le": INT32}),
    "difficulty": (int | None, None, {"ge": 0, "le": 100}),
    "cpc": (float | None, None, {"ge": 0, "le": 9_999_999_999}),
    "intent": (str, "informational", Str(30)),
    "status": (KeywordStatus, "pending", {}),
})
keywords = Resource(
    path="keywords", label="keyword", model=Keyword, create=KeywordCreate, update=KeywordUpdate, out=KeywordOut,
    refs={"site_id": (Site, "site"), "sector_id": (Sector, "sector"), "cluster_id": (Cluster, "cluster")},
    filters=status_filters(Keyword, KeywordStatus),
)


def _round_cpc(session: Session, tenant: Tenant, data: dict[str, Any], row: Any) -> dict[str, Any]:
    if data.get("cpc") is not None:
        data["cpc"] = round(data["cpc"], 2)
    return data


keywords.prepare = _round_cpc

IdeaCreate, IdeaUpdate, IdeaOut = make_models("Idea", {
    "site_id": (uuid.UUID, REQUIRED, {}),
    "sector_id": (uuid.UUID | None, None, {}),
    "cluster_id": (uuid.UUID | None, None, {}),
    "primary_keyword_id": (uuid.UUID | None, None, {}),
    "title": (str, REQUIRED, Str(255, 1)),
    "description": (str, "", Str(20_000)),
    "status": (IdeaStatus, "pending", {}),
})
ideas = Resource(
    path="ideas", label="idea", model=ContentIdea, create=IdeaCreate, update=IdeaUpdate, out=IdeaOut,
    refs={"site_id": (Site, "site"), "sector_id": (Sector, "sector"), "cluster_id": (Cluster, "cluster"),
          "primary_keyword_id": (Keyword, "keyword")},
    filters=status_filters(ContentIdea, IdeaStatus),
)

# --- writer --------------------------------------------------------------------------------------

TaskCreate, TaskUpdate, TaskOut = make_models("Task", {
    "site_id": (uuid.UUID, REQUIRED, {}),
    "sector_id": (uuid.UUID | None, None, {}),
    "idea_id": (uuid.UUID | None, None, {}),
    "title": (str, REQUIRED, Str(255, 1)),
    "brief": (str, "", Str(100_000)),
    "primary_keyword": (str, "", Str(255)),
    "secondary_keywords": (list[str], [], {"max_length": 100}),
    "status": (TaskStatus, "pending", {}),
    "priority": (Priority, "medium", {}),
    "assigned_to_id": (uuid.UUID | None, None, {}),
    "due_date": (date | None, None, {}),
    "author_profile_id": (uuid.UUID | None, None, {}),
    "strategy_id": (uuid.UUID | None, None, {}),
})
tasks = Resource(
    path="tasks", label="task", model=Task, create=TaskCreate, update=TaskUpdate, out=TaskOut,
    refs={"site_id": (Site, "site"), "sector_id": (Sector, "sector"), "idea_id": (ContentIdea, "idea"),
          "assigned_to_id": (User, "user"), "author_profile_id": (AuthorProfile, "author profile"),
          "strategy_id": (Strategy, "strategy")},
    filters=status_filters(Task, TaskStatus),
)

ContentCreate, ContentUpdate, ContentOut = make_models("Content", {
    "site_id": (uuid.UUID, REQUIRED, {}),
    "sector_id": (uuid.UUID | None, None, {}),
    "task_id": (uuid.UUID | None, None, {}),
    "title": (str, REQUIRED, Str(255, 1)),
    "body": (str, "", Str(1_000_000)),
    "excerpt": (str, "", Str(20_000)),
    "meta_title": (str, "", Str(255)),
    "meta_description": (str, "", Str(5_000)),
    "status": (ContentStatus, "draft", {}),
}, out_extra={"word_count": (int, ...), "published_at": (Timestamp | None, ...)})


def _content_prepare(_session: Session, _tenant: Tenant, data: dict[str, Any], row: Any) -> dict[str, Any]:
    if "body" in data:
        data["word_count"] = len(data["body"].split())
    if data.get("status") == "published" and (row is None or row.published_at is None):
        data["published_at"] = datetime.now(UTC)
    return data


content = Resource(
    path="content", label="content", model=Content, create=ContentCreate, update=ContentUpdate, out=ContentOut,
    refs={"site_id": (Site, "site"), "sector_id": (Sector, "sector"), "task_id": (Task, "task")},
    filters=status_filters(Content, ContentStatus),
    prepare=_content_prepare,
)

# --- sectors (nested under a site) ---------------------------------------------------------------

SectorCreate, SectorUpdate, SectorOut = make_models("Sector", {
    "name": (str, REQUIRED, Str(255, 1)),
    "description": (str, "", Str(20_000)),
    "industry_sector": (str | None, None, {"max_length": 201,
                                           "description": "Catalog sector name, `industry/sector`."}),
    "is_active": (bool, True, {}),
}, out_extra={"site_id": (uuid.UUID, ...)})
SectorList = list_model("SectorList", SectorOut)

sectors_router = APIRouter(prefix="/v1/sites/{site_id}/sectors", tags=["sites"])


def _sector_prepare(session: Session, data: dict[str, Any]) -> dict[str, Any]:
    if "industry_sector" in data:
        path = data.pop("industry_sector")
        if path is None:
            data["industry_sector_id"] = None
        else:
            industry, _, sector = path.partition("/")
            found = session.scalar(
                select(IndustrySector.id).join(Industry, Industry.id == IndustrySector.industry_id)
                .where(Industry.slug == industry, IndustrySector.slug == sector, IndustrySector.is_active)
            )
            if found is None:
                raise not_found(f"industry sector {path!r}")
            data["industry_sector_id"] = found
    return data


def _sector_out(session: Session, rows: list[Sector]) -> list[SectorOut]:
    ids = {r.industry_sector_id for r in rows if r.industry_sector_id is not None}
    paths: dict[int, str] = {}
    if ids:
        paths = {
            sid: f"{ind}/{sec}" for sid, ind, sec in session.execute(
                select(IndustrySector.id, Industry.slug, IndustrySector.slug)
                .join(Industry, Industry.id == IndustrySector.industry_id).where(IndustrySector.id.in_(ids))
            ).all()
        }
    return [SectorOut(id=r.id, site_id=r.site_id, name=r.name, description=r.description,
                      industry_sector=paths.get(r.industry_sector_id), is_active=r.is_active,
                      created_at=r.created_at, updated_at=r.updated_at) for r in rows]


def _sector(session: Session, tenant: Tenant, site_id: uuid.UUID, sector_id: uuid.UUID) -> Sector:
    owned(session, Site, site_id, tenant.account_id, "site")
    row = session.scalars(select(Sector).where(Sector.id == sector_id, Sector.site_id == site_id,
                                               Sector.account_id == tenant.account_id)).first()
    if row is None:
        raise not_found("sector")
    return row


@sectors_router.get("", response_model=SectorList, responses=TENANT, summary="List a site's sectors")
def list_sectors(site_id: uuid.UUID, limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
                 cursor: str | None = Query(None, max_length=500), tenant: Tenant = Depends(tenant_dep)):
    session = tenant.session
    owned(session, Site, site_id, tenant.account_id, "site")
    stmt = select(Sector).where(Sector.account_id == tenant.account_id, Sector.site_id == site_id)
    rows, nxt = page(session, stmt, Sector, limit, cursor)
    return {"items": _sector_out(session, rows), "next": nxt}


@sectors_router.post("", response_model=SectorOut, status_code=201, responses=TENANT, summary="Add a sector to a site")
def create_sector(site_id: uuid.UUID, body: SectorCreate, tenant: Tenant = Depends(tenant_dep)):  # type: ignore[valid-type]
    session = tenant.session
    owned(session, Site, site_id, tenant.account_id, "site")
    data = _sector_prepare(session, body.model_dump())
    row = Sector(id=uuid.uuid4(), account_id=tenant.account_id, site_id=site_id, **data)
    session.add(row)
    session.commit()
    session.refresh(row)
    return _sector_out(session, [row])[0]


@sectors_router.get("/{sector_id}", response_model=SectorOut, responses=TENANT, summary="Get a sector")
def get_sector(site_id: uuid.UUID, sector_id: uuid.UUID, tenant: Tenant = Depends(tenant_dep)):
    return _sector_out(tenant.session, [_sector(tenant.session, tenant, site_id, sector_id)])[0]


@sectors_router.patch("/{sector_id}", response_model=SectorOut, responses=TENANT, summary="Update a sector")
def update_sector(site_id: uuid.UUID, sector_id: uuid.UUID, body: SectorUpdate,  # type: ignore[valid-type]
                  tenant: Tenant = Depends(tenant_dep)):
    session = tenant.session
    row = _sector(session, tenant, site_id, sector_id)
    for key, value in _sector_prepare(session, body.model_dump(exclude_unset=True)).items():
        setattr(row, key, value)
    session.commit()
    session.refresh(row)
    return _sector_out(session, [row])[0]


@sectors_router.delete("/{sector_id}", status_code=204, response_class=Response, responses=TENANT,
                       summary="Delete a sector")
def delete_sector(site_id: uuid.UUID, sector_id: uuid.UUID, tenant: Tenant = Depends(tenant_dep)):
    session = tenant.session
    row = _sector(session, tenant, site_id, sector_id)
    session.execute(delete(Sector).where(Sector.id == row.id, Sector.account_id == tenant.account_id))
    session.commit()
    return Response(status_code=204)


RESOURCES = (users, sites, clusters, keywords, ideas, tasks, content)


def routers() -> list[APIRouter]:
    return [build_router(r) for r in RESOURCES] + [sectors_router]


__all__ = ["routers", "check_refs"]
