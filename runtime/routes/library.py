"""Author profiles and strategies: the global library plus the account's own copies.

No `from __future__ import annotations`: generated handlers need real annotation objects.
"""

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from control_plane.db.models import AuthorProfile, GlobalAuthorProfile, GlobalStrategy, Strategy
from control_plane.kinds.specs import NAME_PATTERN
from runtime.auth import Tenant, tenant_dep
from runtime.errors import TENANT, ApiError, not_found
from runtime.overrides import check_library_object
from runtime.resolve import require_feature
from runtime.timefmt import Timestamp


@dataclass
class Library:
    path: str
    label: str
    global_model: Any
    account_model: Any
    fields: dict[str, tuple[Any, Any, dict[str, Any]]]
    schema_name: str
    # The plan feature that allows an account to hold its own copies.
    feature: str


def _models(lib: Library):
    common = {"display_name": (str, Field(..., min_length=1, max_length=200))}
    create_fields: dict[str, Any] = {"name": (str, Field(..., min_length=1, max_length=100, pattern=NAME_PATTERN))}
    create_fields.update(common)
    create_fields.update({f: (ann, Field(d, **c)) for f, (ann, d, c) in lib.fields.items()})
    update_fields: dict[str, Any] = {"display_name": (str, Field(None, min_length=1, max_length=200))}
    update_fields.update({f: (ann, Field(None, **c)) for f, (ann, _d, c) in lib.fields.items()})
    out_fields: dict[str, Any] = {
        "name": (str, Field(..., description="Natural key (the global object's name, or the account's own).")),
        "display_name": (str, ...),
        "source": (Literal["global", "custom"], ...),
        "cloned_from": (str | None, Field(None, description="Name of the global original of a clone.")),
        "is_active": (bool, ...),
        "updated_at": (Timestamp | None, None),
    }
    out_fields.update({f: (ann, ...) for f, (ann, _d, _c) in lib.fields.items()})
    base = type("_In", (BaseModel,), {"model_config": ConfigDict(extra="forbid"), "__module__": __name__})
    create = create_model(f"{lib.schema_name}Create", __base__=base, **create_fields)
    update = create_model(f"{lib.schema_name}Update", __base__=base, **update_fields)
    out = create_model(lib.schema_name, **out_fields)
    out_list = create_model(f"{lib.schema_name}List", items=(list[out], ...), next=(str | None, None))
    return create, update, out, out_list


def build_library_router(lib: Library) -> APIRouter:
    Create, Update, Out, OutList = _models(lib)
    G, A = lib.global_model, lib.account_model
    field_names = list(lib.fields)
    router = APIRouter(prefix=f"/v1/{lib.path}", tags=[lib.path])
    NamePath = Path(..., min_length=1, max_length=100, description=f"The {lib.label}'s name.")

    def out(row: Any, source: str, cloned_from: str | None = None) -> Any:
        return Out(name=row.slug, display_name=row.name, source=source, cloned_from=cloned_from,
                   is_active=row.is_active, updated_at=row.updated_at,
                   **{f: getattr(row, f) for f in field_names})

    def global_slugs(session: Session, ids: set[int]) -> dict[int, str]:
        if not ids:
            return {}
        return dict(session.execute(select(G.id, G.slug).where(G.id.in_(ids))).all())

    def account_copy(session: Session, tenant: Tenant, name: str) -> Any:
        return session.scalars(select(A).where(A.account_id == tenant.account_id, A.slug == name)).first()

    def global_row(session: Session, name: str) -> Any:
        return session.scalars(select(G).where(G.slug == name, G.is_active)).first()

    def render_copy(session: Session, row: Any) -> Any:
        slug = global_slugs(session, {row.cloned_from_id} if row.cloned_from_id else set())
        return out(row, "custom", slug.get(row.cloned_from_id))

    def list_all(tenant: Tenant = Depends(tenant_dep)):
        session = tenant.session
        globals_ = session.scalars(select(G).where(G.is_active).order_by(G.slug)).all()
        own = session.scalars(select(A).where(A.account_id == tenant.account_id).order_by(A.slug)).all()
        slugs = global_slugs(session, {r.cloned_from_id for r in own if r.cloned_from_id})
        # Each name once: the account's copy stands in for the global object it was cloned from.
        mine = {r.slug: out(r, "custom", slugs.get(r.cloned_from_id)) for r in own}
        items = [mine.pop(g.slug) if g.slug in mine else out(g, "global") for g in globals_]
        items += list(mine.values())
        return {"items": items, "next": None}

    router.add_api_route("", list_all, methods=["GET"], response_model=OutList, responses=TENANT,
                         summary=f"The global {lib.label} library and the account's own", name=f"list_{lib.path}")

    def get_one(name: str = NamePath, tenant: Tenant = Depends(tenant_dep)):
        session = tenant.session
        row = account_copy(session, tenant, name)
        if row is not None:
            return render_copy(session, row)
        g = global_row(session, name)
        if g is None:
            raise not_found(lib.label)
        return out(g, "global")

    router.add_api_route("/{name}", get_one, methods=["GET"], response_model=Out, responses=TENANT,
                         summary=f"The effective {lib.label}: the account's copy, else the global one",
                         name=f"get_{lib.label}")

    def create(body: Create, tenant: Tenant = Depends(tenant_dep)):  # type: ignore[valid-type]
        session = tenant.session
        require_feature(session, tenant.account_id, lib.feature, f"own {lib.label} copies")
        data = body.model_dump()
        name = data.pop("name")
        if account_copy(session, tenant, name) is not None:
            raise ApiError(409, "conflict", f"the account already has a {lib.label} named {name!r}")
        if global_row(session, name) is not None:
            raise ApiError(409, "conflict", f"{name!r} is a global {lib.label}; clone it instead")
        check_library_object(lib.path, data["display_name"], {f: data.get(f) for f in field_names})
        row = A(id=uuid.uuid4(), account_id=tenant.account_id, slug=name, name=data.pop("display_name"), **data)
        session.add(row)
        session.commit()
        session.refresh(row)
        return render_copy(session, row)

    router.add_api_route("", create, methods=["POST"], status_code=201, response_model=Out, responses=TENANT,
                         summary=f"Create the account's own {lib.label}", name=f"create_{lib.label}")

    def copy_fields(row: Any, g: Any) -> None:
        row.name = g.name
        for f in field_names:
            value = getattr(g, f)
            setattr(row, f, value.copy() if isinstance(value, dict | list) else value)

    def clone(name: str = NamePath, tenant: Tenant = Depends(tenant_dep)):
        session = tenant.session
        g = global_row(session, name)
        if g is None:
            raise not_found(f"global {lib.label}")
        require_feature(session, tenant.account_id, lib.feature, f"own {lib.label} copies")
        if account_copy(session, tenant, name) is not None:
            raise ApiError(409, "conflict", f"the account already has a {lib.label} named {name!r}")
        row = A(id=uuid.uuid4(), account_id=tenant.account_id, slug=g.slug, cloned_from_id=g.id, is_active=True)
        copy_fields(row, g)
        session.add(row)
        session.commit()
        session.refresh(row)
        return render_copy(session, row)

    router.add_api_route("/{name}/clone", clone, methods=["POST"], status_code=201, response_model=Out,
                         responses=TENANT, summary=f"Clone a global {lib.label} into the account",
                         name=f"clone_{lib.label}")

    def own_or_404(session: Session, tenant: Tenant, name: str) -> Any:
        row = account_copy(session, tenant, name)
        if row is None:
            raise not_found(f"{lib.label} {name!r} in this account (clone a global one first)")
        return row

    def patch(body: Update, name: str = NamePath, tenant: Tenant = Depends(tenant_dep)):  # type: ignore[valid-type]
        session = tenant.session
        row = own_or_404(session, tenant, name)
        require_feature(session, tenant.account_id, lib.feature, f"own {lib.label} copies")
        data = body.model_dump(exclude_unset=True)
        after = {f: data[f] if f in data else getattr(row, f) for f in field_names}
        check_library_object(lib.path, data.get("display_name") or row.name, after)
        if "display_name" in data:
            row.name = data.pop("display_name")
        for key, value in data.items():
            setattr(row, key, value)
        session.commit()
        session.refresh(row)
        return render_copy(session, row)

    router.add_api_route("/{name}", patch, methods=["PATCH"], response_model=Out, responses=TENANT,
                         summary=f"Edit the account's {lib.label}", name=f"update_{lib.label}")

    def remove(name: str = NamePath, tenant: Tenant = Depends(tenant_dep)):
        session = tenant.session
        row = own_or_404(session, tenant, name)
        session.execute(delete(A).where(A.id == row.id, A.account_id == tenant.account_id))
        session.commit()
        return Response(status_code=204)

    router.add_api_route("/{name}", remove, methods=["DELETE"], status_code=204, response_class=Response,
                         responses=TENANT, summary=f"Delete the account's {lib.label}", name=f"delete_{lib.label}")

    def reset(name: str = NamePath, tenant: Tenant = Depends(tenant_dep)):
        session = tenant.session
        row = own_or_404(session, tenant, name)
        if row.cloned_from_id is None:
            raise ApiError(409, "not_a_clone", f"{lib.label} {name!r} was not cloned from a global one")
        g = session.get(G, row.cloned_from_id)
        if g is None or not g.is_active:
            raise ApiError(409, "conflict", f"the global original of {name!r} is no longer available")
        copy_fields(row, g)
        session.commit()
        session.refresh(row)
        return render_copy(session, row)

    router.add_api_route("/{name}/reset", reset, methods=["POST"], response_model=Out, responses=TENANT,
                         summary=f"Reset a cloned {lib.label} to its global original", name=f"reset_{lib.label}")
    return router


AUTHOR_PROFILES = Library(
    path="author-profiles", label="author profile", global_model=GlobalAuthorProfile, account_model=AuthorProfile,
    schema_name="AuthorProfile", feature="custom_author_profiles",
    fields={
        "description": (str, "", {"max_length": 20_000}),
        "tone": (str, "", {"max_length": 200}),
        "writing_style": (str, "", {"max_length": 20_000}),
        "target_audience": (str, "", {"max_length": 20_000}),
        "vocabulary": (str, "", {"max_length": 100}),
        "structure": (dict[str, Any], {}, {}),
        "guidelines": (list[Any], [], {"max_length": 500}),
    },
)

STRATEGIES = Library(
    path="strategies", label="strategy", global_model=GlobalStrategy, account_model=Strategy,
    schema_name="Strategy", feature="custom_strategies",
    fields={
        "description": (str, "", {"max_length": 20_000}),
        "content_type_slug": (str | None, None, {"max_length": 100}),
        "prompt_types": (list[str], [], {"max_length": 100}),
        "sections": (list[Any], [], {"max_length": 500}),
        "settings": (dict[str, Any], {}, {}),
    },
)


def routers() -> list[APIRouter]:
    return [build_library_router(AUTHOR_PROFILES), build_library_router(STRATEGIES)]
