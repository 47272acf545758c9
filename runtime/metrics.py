"""Request metrics of the runtime API on `GET /metrics` (Prometheus text format).

`cplane_http_requests_total{method, route, status}` and `cplane_http_request_duration_seconds
{method, route}`, labelled by the route's template (`/v1/sites/{site_id}`), never the raw path, so
that the number of series stays bounded; a request no route matched counts as `route="unmatched"`.
One registry per app; with several uvicorn workers each worker counts its own requests (scrape
them per worker, or run one worker per container).

Installed by one line in runtime/app.py: `metrics.install(app)`. The middleware answers
`/metrics` itself (before auth, maintenance and rate limits, like /healthz), outermost so that it
times every request, rejections included."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class RequestMetrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("cplane_http_requests", "HTTP requests answered, by route template and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("cplane_http_request_duration_seconds", "Time to answer, by route template.",
                                 ["method", "route"], buckets=BUCKETS, registry=self.registry)


class MetricsMiddleware:
    def __init__(self, app, metrics: RequestMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope.get("path") == "/metrics" and scope.get("method") in ("GET", "HEAD"):
            body = generate_latest(self.metrics.registry)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode()),
                                    (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]})
            await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
            return
        start = time.perf_counter()
        status = 500

        async def capture(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method=method, route=route, status=str(status)).inc()
            self.metrics.latency.labels(method=method, route=route).observe(time.perf_counter() - start)


def install(app) -> None:
    app.state.request_metrics = RequestMetrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.request_metrics)
