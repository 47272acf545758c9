"""HTTP conventions: HEAD on every GET route, the real `Allow` of a 405, chosen operationIds and
the interactive docs served from the API itself (offline: no CDN)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.staticfiles import StaticFiles

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
DOCS_ASSETS = "/docs-assets"

# Route name -> operationId where the camelCased name would not read well; the others are the
# route's name in camelCase (`create_site` -> `createSite`, `list_plans` -> `listPlans`).
OPERATION_IDS = {
    "put_prompt": "customizePrompt",
    "get_integrations": "getIntegrationSettings",
    "put_integrations": "setIntegrationOverride",
    "delete_integrations": "deleteIntegrationOverride",
    "get_modules": "getModules",
    "put_modules": "setModules",
    "catalog_plans": "listPlans",
    "catalog_credit_packages": "listCreditPackages",
    "catalog_credit_costs": "listCreditCosts",
    "catalog_industries": "listIndustries",
    "catalog_channels": "listChannels",
    "healthz": "getHealth",
    "readyz": "getReadiness",
}


def camel(name: str) -> str:
    head, *rest = [p for p in re.split(r"[_\W]+", name) if p]
    return head.lower() + "".join(p[:1].upper() + p[1:] for p in rest)


def operation_id(route: APIRoute) -> str:
    return OPERATION_IDS.get(route.name.replace("-", "_")) or camel(route.name)


def allowed_methods(app, scope) -> list[str]:
    """Every method some route serves at this path (HEAD with GET)."""
    allowed = []
    for method in METHODS:
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in app.router.routes):
            allowed.append(method)
    if "GET" in allowed:
        allowed.insert(1, "HEAD")
    return allowed


class HeadMiddleware:
    """HEAD on a path with a GET route runs the GET and sends its headers without the body."""

    def __init__(self, app, fastapi_app: FastAPI):
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            return await self.app(scope, receive, send)
        probe = {**scope, "method": "GET"}
        if not any(route.matches(probe)[0] == Match.FULL for route in self.fastapi_app.router.routes):
            return await self.app(scope, receive, send)

        async def headers_only(message):
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        return await self.app(probe, receive, headers_only)


def static_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc with their scripts and styles under /docs-assets."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=static_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui():
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - Swagger UI",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect():
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc():
        return get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png", with_google_fonts=False)
