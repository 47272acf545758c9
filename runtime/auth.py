"""API keys and the tenant context every tenant route runs in.

A key looks like `cpk_<prefix>_<secret>`; only its SHA-256 (hex) is stored, with the prefix for
lookup. The hash is looked up by prefix and compared with hmac.compare_digest.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from control_plane.db.models import Account, APIKey, ChangeCounter, Operator
from runtime import tenancy
from runtime.errors import ApiError

KEY_PREFIX = "cpk_"
OPERATOR_KEY_PREFIX = "cpo_"
ROLES = ("admin", "finance", "support")
LAST_USED_RESOLUTION = timedelta(minutes=5)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def generate_key(kind: str = KEY_PREFIX) -> tuple[str, str, str]:
    """(key, prefix, key_hash): the key is shown once and never stored."""
    prefix = secrets.token_hex(4)
    key = f"{kind}{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, hash_key(key)


def parse_prefix(key: str, kind: str = KEY_PREFIX) -> str | None:
    if not key.startswith(kind):
        return None
    prefix, sep, _rest = key[len(kind):].partition("_")
    return prefix if sep and 0 < len(prefix) <= 16 else None


def _unauthorized(message: str = "missing or invalid API key") -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


@dataclass
class Tenant:
    """The authenticated account and the session every query of the request runs in (scoped to
    the account: runtime/tenancy.py)."""

    session: Session
    account_id: uuid.UUID
    key_id: uuid.UUID
    prompts_version: int | None = None  # change counter of global_ai_prompts: the prompt cache's key


def parse_authorization(authorization: str | None, kind: str = KEY_PREFIX) -> tuple[str, str]:
    """(prefix, SHA-256 hex digest) of the bearer key, or a 401."""
    if not authorization:
        raise _unauthorized()
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise _unauthorized("use `Authorization: Bearer <api key>`")
    prefix = parse_prefix(key, kind)
    if prefix is None:
        raise _unauthorized()
    return prefix, hash_key(key)


def check_key(rows, digest: str, now: datetime):
    """The row whose key_hash is `digest`, compared in constant time against every candidate of the
    prefix (no early exit); 401 unless it is live, 403 unless its account is active.

    Rows need key_id, key_hash, expires_at, revoked_at, is_active and status."""
    match = None
    for row in rows:
        if hmac.compare_digest(row.key_hash, digest):
            match = row
    if match is None:
        raise _unauthorized()
    if match.revoked_at is not None:
        raise _unauthorized("API key revoked")
    if match.expires_at is not None and _aware(match.expires_at) <= now:
        raise _unauthorized("API key expired")
    if match.status == "suspended":
        raise ApiError(403, "account_suspended", "account is suspended; contact support")
    if not match.is_active or match.status != "active":
        raise ApiError(403, "account_inactive", f"account is {match.status if match.status != 'active' else 'inactive'}")
    return match


def needs_touch(last_used_at: datetime | None, now: datetime) -> bool:
    """last_used_at is refreshed at most every LAST_USED_RESOLUTION (not a write per request)."""
    return last_used_at is None or _aware(last_used_at) < now - LAST_USED_RESOLUTION


def touch_statement(key_id: uuid.UUID, now: datetime):
    return update(APIKey).where(APIKey.id == key_id).values(last_used_at=now)


PROMPTS_TABLE = "global_ai_prompts"


def key_candidates_statement():
    """The keys of bind parameter `prefix` with what check_key needs, their account's state and the
    version of the global prompts (the prompt cache's key); a route may add columns and joins."""
    return (
        select(APIKey.id.label("key_id"), APIKey.account_id.label("account_id"),
               APIKey.key_hash.label("key_hash"), APIKey.expires_at.label("expires_at"),
               APIKey.revoked_at.label("revoked_at"), APIKey.last_used_at.label("last_used_at"),
               Account.is_active.label("is_active"), Account.status.label("status"),
               select(func.max(ChangeCounter.version)).where(ChangeCounter.table_name == PROMPTS_TABLE)
               .scalar_subquery().label("prompts_version"))
        .join(Account, Account.id == APIKey.account_id)
        .where(APIKey.prefix == bindparam("prefix"))
    )


def verify(session: Session, prefix: str, digest: str, statement=None):
    """(the key's row, every row read): the candidates of `prefix` checked by check_key, and the
    key's last_used_at refreshed when due. `statement`: key_candidates_statement() with a route's
    own columns and joins, to read them in the same round trip."""
    stmt = key_candidates_statement() if statement is None else statement
    rows = session.execute(stmt, {"prefix": prefix}).all()
    now = datetime.now(UTC)
    match = check_key(rows, digest, now)
    if needs_touch(match.last_used_at, now):
        session.execute(touch_statement(match.key_id, now))
        session.commit()
    return match, rows


def authenticate(session: Session, authorization: str | None) -> Tenant:
    """The key's account; from here on the session serves that account only (tenancy.enter)."""
    prefix, digest = parse_authorization(authorization)
    match, _rows = verify(session, prefix, digest)
    tenancy.enter(session, match.account_id)
    return Tenant(session=session, account_id=match.account_id, key_id=match.key_id,
                  prompts_version=match.prompts_version)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def session_dep(request: Request) -> Iterator[Session]:
    session = request.app.state.sessionmaker()
    try:
        yield session
    finally:
        session.close()


bearer = HTTPBearer(auto_error=False, description="A tenant API key from `cplane accounts create`.")


def tenant_dep(
    request: Request, _credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Iterator[Tenant]:
    """FastAPI dependency: a session plus the account of the bearer key."""
    session = request.app.state.sessionmaker()
    try:
        tenant = authenticate(session, request.headers.get("authorization"))
        request.state.account_id = str(tenant.account_id)
        yield tenant
    finally:
        session.close()


# --- operators (staff) ----------------------------------------------------------------------------


@dataclass
class Staff:
    """The authenticated operator of an `/v1/admin` request."""

    session: Session
    operator_id: uuid.UUID
    name: str
    role: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.role})"


operator_bearer = HTTPBearer(auto_error=False, scheme_name="operatorKey",
                             description="An operator key from `cplane operators create` (`cpo_...`).")


def authenticate_operator(session: Session, authorization: str | None) -> Staff:
    prefix, digest = parse_authorization(authorization, OPERATOR_KEY_PREFIX)
    rows = session.execute(
        select(Operator.id, Operator.name, Operator.role, Operator.key_hash, Operator.revoked_at,
               Operator.last_used_at).where(Operator.prefix == prefix)
    ).all()
    match = None
    for row in rows:
        if hmac.compare_digest(row.key_hash, digest):
            match = row
    if match is None:
        raise _unauthorized("missing or invalid operator key")
    if match.revoked_at is not None:
        raise _unauthorized("operator key revoked")
    now = datetime.now(UTC)
    if needs_touch(match.last_used_at, now):
        session.execute(update(Operator).where(Operator.id == match.id).values(last_used_at=now))
        session.commit()
    return Staff(session=session, operator_id=match.id, name=match.name, role=match.role)


def require_role(*roles: str):
    """FastAPI dependency: an operator whose role is one of `roles` (403 `forbidden_role` otherwise)."""
    allowed = roles or ROLES

    def dependency(request: Request,
                   _credentials: HTTPAuthorizationCredentials | None = Depends(operator_bearer)) -> Iterator[Staff]:
        session = request.app.state.sessionmaker()
        try:
            staff = authenticate_operator(session, request.headers.get("authorization"))
            session.commit()  # end the lookup's transaction: each route opens its own
            if staff.role not in allowed:
                raise ApiError(403, "forbidden_role",
                               f"role {staff.role!r} may not do this; allowed: {', '.join(allowed)}")
            request.state.operator_id = str(staff.operator_id)
            yield staff
        finally:
            session.close()

    return dependency
