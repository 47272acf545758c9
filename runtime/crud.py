"""Tenant CRUD routes built from a declarative description of each resource.

No `from __future__ import annotations` here: the generated handlers' annotations must be real
types for FastAPI to read them.
"""

import inspect
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from control_plane.db.models import Account, Plan
from runtime.auth import Tenant, tenant_dep
from runtime.errors import TENANT, ApiError, not_found, responses
from runtime.pagination import DEFAULT_LIMIT, MAX_LIMIT, list_model, page


def owned(session: Session, model: Any, object_id: Any, account_id: uuid.UUID, label: str) -> Any:
    """The account's row, or 404 (also for another account's row)."""
    row = session.scalars(select(model).where(model.id == object_id, model.account_id == account_id)).first()
    if row is None:
        raise not_found(label)
    return row


def check_refs(session: Session, refs: dict[str, tuple[Any, str]], data: dict[str, Any],
               account_id: uuid.UUID) -> None:
    """Every referenced user object must belong to the account: 404 `not_found` otherwise."""
    for attr, (model, label) in refs.items():
        value = data.get(attr)
        if value is None:
            continue
        found = session.scalar(select(model.id).where(model.id == value, model.account_id == account_id))
        if found is None:
            raise not_found(f"{label} {value}")


def enforce_plan_limit(session: Session, account_id: uuid.UUID, model: Any, limit_attr: str, label: str) -> None:
    """403 `plan_limit_exceeded` when the account already has its plan's maximum.

    The account row is locked (FOR UPDATE) first, so concurrent creations are counted one at a time.
    """
    account = session.scalars(select(Account).where(Account.id == account_id).with_for_update()).one()
    plan = session.get(Plan, account.plan_id) if account.plan_id is not None else None
    limit = int(getattr(plan, limit_attr)) if plan is not None else 0
    count = session.scalar(select(func.count()).select_from(model).where(model.account_id == account_id))
    if count >= limit:
        plan_name = plan.slug if plan is not None else "(none)"
        raise ApiError(403, "plan_limit_exceeded",
                       f"plan {plan_name!r} allows at most {limit} {label}; the account has {count}")


@dataclass
class Resource:
    path: str  # "keywords"
    label: str  # "keyword"
    model: Any
    create: type[BaseModel]
    update: type[BaseModel]
    out: type[BaseModel]
    refs: dict[str, tuple[Any, str]] = field(default_factory=dict)
    # Query filters: name -> (annotation, function(value) -> SQL condition)
    filters: dict[str, tuple[Any, Callable[[Any], Any]]] = field(default_factory=dict)
    # Hooks: prepare(session, tenant, data, row|None) -> data; before_create(session, tenant)
    prepare: Callable[..., dict[str, Any]] | None = None
    before_create: Callable[[Session, Tenant], None] | None = None
    before_delete: Callable[[Session, Tenant, Any], None] | None = None
    # serialize(session, rows) -> list of dicts; default: out.model_validate(row)
    serialize: Callable[[Session, list[Any]], list[Any]] | None = None
    tag: str = ""


def build_router(res: Resource) -> APIRouter:
    router = APIRouter(prefix=f"/v1/{res.path}", tags=[res.tag or res.path])
    Out = res.out
    Create = res.create
    Update = res.update
    List = list_model(f"{Out.__name__}List", Out)

    def render(session: Session, rows: list[Any]) -> list[Any]:
        if res.serialize is not None:
            return res.serialize(session, rows)
        return [Out.model_validate(r, from_attributes=True) for r in rows]

    def do_create(body: Create, tenant: Tenant = Depends(tenant_dep)):  # type: ignore[valid-type]
        session = tenant.session
        data = body.model_dump()
        if res.prepare is not None:
            data = res.prepare(session, tenant, data, None)
        check_refs(session, res.refs, data, tenant.account_id)
        if res.before_create is not None:
            res.before_create(session, tenant)
        row = res.model(id=uuid.uuid4(), account_id=tenant.account_id, **data)
        session.add(row)
        session.commit()
        session.refresh(row)
        return render(session, [row])[0]

    router.add_api_route(
        "", do_create, methods=["POST"], status_code=201, response_model=Out,
        summary=f"Create a {res.label}", responses=TENANT, name=f"create_{res.label}",
    )

    def do_list(tenant: Tenant, limit: int, cursor: str | None, **filters: Any):
        session = tenant.session
        stmt = select(res.model).where(res.model.account_id == tenant.account_id)
        for fname, value in filters.items():
            if value is not None:
                stmt = stmt.where(res.filters[fname][1](value))
        rows, nxt = page(session, stmt, res.model, limit, cursor)
        return {"items": render(session, rows), "next": nxt}

    params = [
        inspect.Parameter("tenant", inspect.Parameter.KEYWORD_ONLY, default=Depends(tenant_dep), annotation=Tenant),
        inspect.Parameter("limit", inspect.Parameter.KEYWORD_ONLY,
                          default=Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Page size."), annotation=int),
        inspect.Parameter("cursor", inspect.Parameter.KEYWORD_ONLY,
                          default=Query(None, max_length=500, description="`next` of the previous page."),
                          annotation=str | None),
    ]
    for fname, (annotation, _cond) in res.filters.items():
        params.append(inspect.Parameter(fname, inspect.Parameter.KEYWORD_ONLY, default=Query(None),
                                        annotation=annotation | None))

    def list_endpoint(**kwargs: Any):
        return do_list(kwargs.pop("tenant"), kwargs.pop("limit"), kwargs.pop("cursor"), **kwargs)

    list_endpoint.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    router.add_api_route(
        "", list_endpoint, methods=["GET"], response_model=List, summary=f"List {res.path}",
        responses=TENANT, name=f"list_{res.path}",
    )

    def do_get(object_id: uuid.UUID, tenant: Tenant = Depends(tenant_dep)):
        row = owned(tenant.session, res.model, object_id, tenant.account_id, res.label)
        return render(tenant.session, [row])[0]

    router.add_api_route(
        "/{object_id}", do_get, methods=["GET"], response_model=Out, summary=f"Get a {res.label}",
        responses=TENANT, name=f"get_{res.label}",
    )

    def do_update(object_id: uuid.UUID, body: Update, tenant: Tenant = Depends(tenant_dep)):  # type: ignore[valid-type]
        session = tenant.session
        row = owned(session, res.model, object_id, tenant.account_id, res.label)
        data = body.model_dump(exclude_unset=True)
        if res.prepare is not None:
            data = res.prepare(session, tenant, data, row)
        check_refs(session, res.refs, data, tenant.account_id)
        for key, value in data.items():
            setattr(row, key, value)
        session.commit()
        session.refresh(row)
        return render(session, [row])[0]

    router.add_api_route(
        "/{object_id}", do_update, methods=["PATCH"], response_model=Out, summary=f"Update a {res.label}",
        responses=TENANT, name=f"update_{res.label}",
    )

    def do_delete(object_id: uuid.UUID, tenant: Tenant = Depends(tenant_dep)):
        session = tenant.session
        row = owned(session, res.model, object_id, tenant.account_id, res.label)
        if res.before_delete is not None:
            res.before_delete(session, tenant, row)
        session.execute(delete(res.model).where(res.model.id == row.id, res.model.account_id == tenant.account_id))
        session.commit()
        return Response(status_code=204)

    router.add_api_route(
        "/{object_id}", do_delete, methods=["DELETE"], status_code=204, response_class=Response,
        summary=f"Delete a {res.label}", responses=TENANT, name=f"delete_{res.label}",
    )
    return router


__all__ = ["Resource", "build_router", "owned", "check_refs", "enforce_plan_limit", "responses"]
