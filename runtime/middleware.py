"""Pure ASGI middleware: request body limit and structured access logs."""

from __future__ import annotations

import json
import logging
import time

from runtime.errors import error_response

access_log = logging.getLogger("runtime.access")

MAX_BODY_BYTES = 1024 * 1024


class BodyLimitMiddleware:
    """Bodies over MAX_BODY_BYTES answer 413 `payload_too_large`, declared or streamed."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    return await self._reject(scope, receive, send)
                break

        received = 0
        too_large = False
        started = False

        async def limited_receive():
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # The app sees a disconnect; whatever it answers is replaced by the 413 below.
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if too_large and not started:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not too_large or started:
                raise
        if too_large and not started:
            await self._reject(scope, receive, send)

    async def _reject(self, scope, receive, send):
        response = error_response(
            413, "payload_too_large", f"request body exceeds {self.max_bytes} bytes", headers={"Connection": "close"}
        )
        await response(scope, receive, send)


class AccessLogMiddleware:
    """One JSON line per request on the `runtime.access` logger; never the API key or the body."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500
        scope.setdefault("state", {})

        async def capture(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                state = scope.get("state") or {}
                record = {
                    "event": "request",
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - start) * 1000, 2),
                    "account_id": state.get("account_id"),
                    "client": (scope.get("client") or (None,))[0],
                }
                access_log.info(json.dumps(record, separators=(",", ":")))
