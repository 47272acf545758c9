"""The error envelope: every 4xx and 5xx answers {"error": {"code", "message"}} (docs/reference.md §5)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("runtime.errors")


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. `not_found`.")
    message: str = Field(description="Human-readable explanation.")
    details: list[dict[str, Any]] | None = Field(
        default=None, description="For `validation_error`: the offending fields."
    )


class ErrorEnvelope(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    """Raised by handlers; answered as the error envelope."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def not_found(what: str = "object") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


# Codes per status, for the OpenAPI document and for framework-raised HTTP errors.
STATUS_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "The request is malformed (e.g. an invalid cursor: `invalid_cursor`)."),
    401: ("unauthorized", "Missing, unknown, revoked or expired API key."),
    402: ("insufficient_credits", "The account's balance does not cover the charge; nothing was charged."),
    403: ("forbidden", "`plan_limit_exceeded`, `plan_feature_unavailable`, `account_suspended`, "
                       "`account_inactive` or (operators) `forbidden_role`."),
    404: ("not_found", "No such object in this account (other accounts' objects answer 404 too)."),
    405: ("method_not_allowed", "The route does not support this method."),
    409: ("conflict", "The request conflicts with existing data (duplicate name or e-mail, ...)."),
    413: ("payload_too_large", "Request bodies are limited to 1 MiB."),
    422: ("validation_error", "The request does not match the schema (`unknown_operation` for credits)."),
    429: ("rate_limited", "More requests than the plan allows per minute for this API key; see `Retry-After`."),
    500: ("internal_error", "Unexpected server error; no details are exposed."),
    503: ("service_unavailable", "The database is unreachable or the service is not ready; `maintenance` "
                                 "during maintenance (see `Retry-After`)."),
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: each listed error status with the envelope model."""
    return {
        status: {"model": ErrorEnvelope, "description": f"`{STATUS_CODES[status][0]}`: {STATUS_CODES[status][1]}"}
        for status in statuses
    }


# Every route can answer these (envelope, schema validation, DB outage, bug).
BASE = (413, 422, 500, 503)
PUBLIC = responses(*BASE)
TENANT = responses(400, 401, 403, 404, 409, 429, *BASE)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   details: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _loc(loc: Any) -> str:
    return ".".join(str(p) for p in loc)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers, getattr(exc, "details", None))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException):
        code = STATUS_CODES.get(exc.status_code, ("http_error", ""))[0]
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            from runtime.http import allowed_methods

            allow = allowed_methods(_request.app, _request.scope)
            headers = {**(headers or {}), "Allow": ", ".join(allow)}
            message = f"{_request.method} is not allowed here; allowed: {', '.join(allow)}"
        return error_response(exc.status_code, code, message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError):
        details = [
            {"loc": _loc(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
            for err in exc.errors()
        ]
        first = details[0] if details else {"loc": "", "msg": "invalid request"}
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        message = f"{first['loc']}: {first['msg']}{more}" if first["loc"] else f"{first['msg']}{more}"
        return error_response(422, "validation_error", message, details=details)

    @app.exception_handler(DataError)
    async def _data_error(_request: Request, exc: DataError):
        # Values the schema admits but the database cannot store (e.g. NUL characters in text).
        first = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc).strip() else "invalid value"
        return error_response(422, "validation_error", f"value rejected by the database: {first}")

    @app.exception_handler(IntegrityError)
    async def _integrity_error(_request: Request, exc: IntegrityError):
        log.info("integrity error: %s", str(getattr(exc, "orig", exc)).splitlines()[0])
        return error_response(409, "conflict", "the request conflicts with existing data")

    @app.exception_handler(OperationalError)
    async def _db_down(_request: Request, exc: OperationalError):
        log.error("database error: %s", str(getattr(exc, "orig", exc)).splitlines()[0])
        return error_response(503, "service_unavailable", "the database is unavailable")

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception):
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "internal server error")
