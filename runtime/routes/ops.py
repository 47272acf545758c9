"""/healthz (process up) and /readyz (database, schema, config, stored secrets readable)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from control_plane.db.engine import current_revision, head_revision
from control_plane.db.models import ApplyRun
from runtime.errors import PUBLIC, responses

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/healthz", response_model=Health, responses=PUBLIC, summary="The process is up")
async def healthz():
    return {"status": "ok"}


def _readiness(engine, environment: str | None = None) -> tuple[bool, dict[str, str]]:
    checks: dict[str, str] = {}
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {str(getattr(exc, 'orig', exc)).strip().splitlines()[0][:200]}"
        return False, checks
    try:
        current, head = current_revision(engine), head_revision()
    except SQLAlchemyError:
        current, head = None, head_revision()
    if current != head:
        checks["schema"] = f"at {current or '(empty)'}, head is {head}: run `cplane db upgrade`"
        return False, checks
    checks["schema"] = "ok"
    try:
        with engine.connect() as conn:
            applied = conn.execute(select(ApplyRun.id).limit(1)).first()
    except SQLAlchemyError:
        applied = None
    if applied is None:
        checks["config"] = "no config applied yet: run `cplane apply`"
        return False, checks
    checks["config"] = "ok"
    problem = _secrets_problem(engine, environment)
    if problem:
        checks["secrets"] = problem
        return False, checks
    checks["secrets"] = "ok"
    return True, checks


def _secrets_problem(engine, environment: str | None) -> str | None:
    """Why the stored secrets cannot be read with this process's key (None when they can)."""
    from control_plane.errors import CplaneError
    from control_plane.secrets import SecretBox
    from control_plane.state.keys import secrets_problem

    try:
        box = SecretBox(environment, engine.url)
        with engine.connect() as conn:
            return secrets_problem(conn, box)
    except CplaneError as exc:
        return str(exc)
    except SQLAlchemyError as exc:
        return f"cannot be checked: {str(getattr(exc, 'orig', exc)).strip().splitlines()[0][:200]}"


@router.get("/readyz", response_model=Ready, responses={**PUBLIC, **responses(503)},
            summary="Ready to serve: database reachable, schema at head, config applied, secrets readable")
def readyz(request: Request):
    ok, checks = _readiness(request.app.state.engine, request.app.state.environment)
    if ok:
        return {"status": "ready", "checks": checks}
    reason = "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
    return JSONResponse(
        {"error": {"code": "not_ready", "message": reason}, "checks": checks}, status_code=503,
    )
