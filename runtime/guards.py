"""Maintenance mode and rate limits, in front of every tenant route (pure ASGI middleware).

Tenant routes are `/v1/...` except the public catalog and the operator API (`/v1/admin`), which,
like `/healthz`, `/readyz`, `/docs` and `/openapi.json`, keep working during maintenance and are
not rate limited per API key.

- Maintenance: system setting `maintenance_mode` true answers 503 `maintenance` with
  `Retry-After` (setting `maintenance_retry_after_seconds`, default 300) and the
  `maintenance_message`. Each worker reads the settings at most once per SETTINGS_TTL seconds, so
  an apply takes effect on every worker within that time.
- Rate limits: per API key, the plan's `api_rate_limit_per_minute`, else the system setting of the
  same name (absent or 0: unlimited), over a moving window of one minute with the `limits`
  library: counters in Redis when CPLANE_REDIS_URL is set (shared by every worker and process),
  in the worker's memory otherwise. Beyond the limit: 429 `rate_limited` with `Retry-After`;
  every rate-limited response carries `RateLimit-Limit/Remaining/Reset` and the `X-RateLimit-*`
  twins. The plan of a key is cached for KEY_TTL seconds. CPLANE_RATE_LIMITS=off disables the
  limits (load tests, benchmarks).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass

import anyio
from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from sqlalchemy import select
from sqlalchemy.engine import Engine

from control_plane.db.models import Account, APIKey, Plan
from control_plane.settings import typed_settings
from runtime.auth import KEY_PREFIX, ApiError, parse_authorization
from runtime.errors import error_response

log = logging.getLogger("runtime.guards")

SETTINGS_TTL = 1.0
KEY_TTL = 5.0
MAX_CACHED_KEYS = 50_000
EXEMPT_PREFIXES = ("/v1/catalog", "/v1/admin")
DEFAULT_RETRY_AFTER = 300
SETTING_KEYS = ("maintenance_mode", "maintenance_message", "maintenance_retry_after_seconds",
                "api_rate_limit_per_minute")


def is_tenant_path(path: str) -> bool:
    if not path.startswith("/v1/"):
        return False
    return not any(path == p or path.startswith(p + "/") for p in EXEMPT_PREFIXES)


def _int(value, default: int | None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True)
class RuntimeSettings:
    maintenance: bool = False
    message: str = "the service is under maintenance"
    retry_after: int = DEFAULT_RETRY_AFTER
    default_limit: int | None = None


def read_settings(engine: Engine) -> RuntimeSettings:
    # Typed values only: a setting edited outside cplane into the wrong type reads as unset (default).
    with engine.connect() as conn:
        values = typed_settings(conn, SETTING_KEYS)
    message = values.get("maintenance_message")
    return RuntimeSettings(
        maintenance=values.get("maintenance_mode") is True,
        message=str(message) if message else RuntimeSettings.message,
        retry_after=max(1, _int(values.get("maintenance_retry_after_seconds"), DEFAULT_RETRY_AFTER) or 1),
        default_limit=_int(values.get("api_rate_limit_per_minute"), None),
    )


def read_key(engine: Engine, digest: str) -> tuple[str, int | None] | None:
    """(key id, the plan's per-minute limit or None) of a key hash, or None when there is no such key."""
    with engine.connect() as conn:
        row = conn.execute(
            select(APIKey.id, Plan.api_rate_limit_per_minute)
            .join(Account, Account.id == APIKey.account_id)
            .outerjoin(Plan, Plan.id == Account.plan_id)
            .where(APIKey.key_hash == digest)
        ).first()
    return (str(row[0]), row[1]) if row is not None else None


def make_limiter(redis_url: str | None = None) -> tuple[MovingWindowRateLimiter, str]:
    url = redis_url if redis_url is not None else os.environ.get("CPLANE_REDIS_URL", "")
    if url:
        uri = url if url.startswith("async+") else f"async+{url}"
        return MovingWindowRateLimiter(storage_from_string(uri, implementation="redispy")), "redis"
    return MovingWindowRateLimiter(storage_from_string("async+memory://")), "memory"


class GuardMiddleware:
    def __init__(self, app, engine: Engine, *, rate_limits: bool | None = None, redis_url: str | None = None):
        self.app = app
        self.engine = engine
        if rate_limits is None:
            rate_limits = os.environ.get("CPLANE_RATE_LIMITS", "").strip().lower() not in ("off", "0", "false")
        self.rate_limits = rate_limits
        self.limiter, self.storage = make_limiter(redis_url) if rate_limits else (None, "off")
        self._settings = RuntimeSettings()
        self._settings_at = -math.inf
        self._refreshing = False
        self._keys: dict[str, tuple[float, tuple[str, int | None] | None]] = {}

    async def settings(self) -> RuntimeSettings:
        """The cached settings; one request per TTL rereads them while the others use the cached
        ones (no lock: the app may be served from several event loops, e.g. in tests)."""
        loaded = self._settings_at != -math.inf
        if time.monotonic() - self._settings_at < SETTINGS_TTL or (self._refreshing and loaded):
            return self._settings
        self._refreshing = True
        started = time.monotonic()
        try:
            self._settings = await anyio.to_thread.run_sync(read_settings, self.engine)
            self._settings_at = started
        except Exception as exc:  # the database is down: the route itself will answer 503
            log.warning("cannot read runtime settings: %s", str(exc).strip().splitlines()[:1])
            self._settings_at = started
        finally:
            self._refreshing = False
        return self._settings

    async def key(self, digest: str) -> tuple[str, int | None] | None:
        now = time.monotonic()
        cached = self._keys.get(digest)
        if cached is not None and now - cached[0] < KEY_TTL:
            return cached[1]
        info = await anyio.to_thread.run_sync(read_key, self.engine, digest)
        if len(self._keys) >= MAX_CACHED_KEYS:
            self._keys.clear()
        self._keys[digest] = (now, info)
        return info

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not is_tenant_path(scope.get("path", "")):
            return await self.app(scope, receive, send)
        settings = await self.settings()
        if settings.maintenance:
            response = error_response(503, "maintenance", settings.message,
                                      headers={"Retry-After": str(settings.retry_after)})
            return await response(scope, receive, send)
        headers = await self._rate_limit(scope, settings)
        if isinstance(headers, dict):
            response = error_response(429, "rate_limited", headers.pop("_message"), headers=headers)
            return await response(scope, receive, send)
        if not headers:
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        return await self.app(scope, receive, with_headers)

    async def _rate_limit(self, scope, settings: RuntimeSettings):
        """None: no limit applies; a list of headers: within the limit; a dict: refused (429)."""
        if self.limiter is None:
            return None
        authorization = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            _prefix, digest = parse_authorization(authorization, KEY_PREFIX)
        except ApiError:
            return None  # the route answers 401
        try:
            info = await self.key(digest)
        except Exception as exc:
            log.warning("cannot look up the API key's plan: %s", str(exc).strip().splitlines()[:1])
            return None
        if info is None:
            return None
        key_id, plan_limit = info
        limit = plan_limit if plan_limit is not None else settings.default_limit
        if not limit or limit <= 0:
            return None
        item = RateLimitItemPerMinute(limit)
        try:
            allowed = await self.limiter.hit(item, "cplane-api-key", key_id)
            reset_at, remaining = await self.limiter.get_window_stats(item, "cplane-api-key", key_id)
        except Exception as exc:  # the counters' store is down: serve rather than refuse everyone
            log.warning("rate limit store unavailable (%s): %s", self.storage, str(exc).strip().splitlines()[:1])
            return None
        reset_in = max(1, math.ceil(reset_at - time.time()))
        values = {
            "RateLimit-Limit": str(limit), "RateLimit-Remaining": str(max(0, remaining)),
            "RateLimit-Reset": str(reset_in), "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, remaining)), "X-RateLimit-Reset": str(math.ceil(reset_at)),
        }
        if not allowed:
            return {**values, "Retry-After": str(reset_in),
                    "_message": f"rate limit of {limit} requests per minute for this API key exceeded; "
                                f"retry in {reset_in} s"}
        return [(k.lower().encode(), v.encode()) for k, v in values.items()]
