"""The tenant API application (docs/reference.md §5)."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from control_plane import __version__
from runtime import errors, metrics, tenancy
from runtime.guards import GuardMiddleware
from runtime.http import HeadMiddleware, install_docs, operation_id
from runtime.middleware import AccessLogMiddleware, BodyLimitMiddleware
from runtime.pgasync import AsyncPool

DESCRIPTION = """\
The cplane runtime API: tenant data, credits and settings resolved as global default + account
override. Authenticate with `Authorization: Bearer <api key>` (from `cplane accounts create`).
Every error answers `{"error": {"code", "message"}}`.
"""


def _default_engine() -> Engine:
    from control_plane.db.engine import make_engine, resolve_url

    url = resolve_url()
    if url.get_backend_name() == "postgresql":
        # No pre-ping by default: it costs a round trip per request; a dead pooled connection
        # answers one 503 and is replaced. CPLANE_DB_PRE_PING=1 turns it back on.
        return make_engine(url, pool_size=int(os.environ.get("CPLANE_DB_POOL_SIZE", "20")),
                           max_overflow=int(os.environ.get("CPLANE_DB_MAX_OVERFLOW", "20")),
                           pool_pre_ping=os.environ.get("CPLANE_DB_PRE_PING", "") == "1")
    return make_engine(url)


@asynccontextmanager
async def _lifespan(app: FastAPI):
    yield
    if app.state.pg_async is not None:
        app.state.pg_async.close_idle()


def create_app(engine: Engine | None = None, *, environment: str | None = None,
               rate_limits: bool | None = None, redis_url: str | None = None) -> FastAPI:
    """The app; `rate_limits` None reads CPLANE_RATE_LIMITS, `redis_url` None reads CPLANE_REDIS_URL."""
    from runtime.routes import account, admin, billing, catalog, credits, data, library, ops, settings

    app = FastAPI(
        title="cplane runtime API",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=[{"name": "operations"}, {"name": "catalog", "description": "Public, no authentication."}],
        lifespan=_lifespan,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.engine = engine if engine is not None else _default_engine()
    # Tenant sessions: scoped to the authenticated account (runtime/tenancy.py).
    app.state.sessionmaker = tenancy.configure(sessionmaker(app.state.engine, expire_on_commit=False))
    # Async connections for the hot reads that skip the threadpool (GET /v1/prompts).
    app.state.pg_async = AsyncPool.for_engine(app.state.engine)
    app.state.environment = environment if environment is not None else os.environ.get("CPLANE_ENV") or None
    app.state.secret_box = None

    errors.install(app)
    install_docs(app)
    app.include_router(ops.router)
    app.include_router(catalog.router)
    app.include_router(account.router)
    for router in data.routers():
        app.include_router(router)
    app.include_router(credits.router)
    app.include_router(billing.router)
    app.include_router(settings.prompts_router)
    app.include_router(settings.settings_router)
    for router in library.routers():
        app.include_router(router)
    app.include_router(admin.router)

    # Outermost last: the access log sees the 413s of the body limit too.
    app.add_middleware(GuardMiddleware, engine=app.state.engine, rate_limits=rate_limits, redis_url=redis_url)
    app.add_middleware(HeadMiddleware, fastapi_app=app)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(AccessLogMiddleware)
    metrics.install(app)  # outermost: /metrics, and every request timed (runtime/metrics.py)
    return app
