"""/docs (Swagger UI) and /redoc (ReDoc) with their scripts and styles served by the server itself.

FastAPI's own pages load them from a CDN (jsdelivr) and Google Fonts: offline, or behind a firewall, they are
blank. The files come from the `fastapi-offline` package (part of the `serve` extra: Swagger UI's bundle and
stylesheet, ReDoc's standalone bundle, the favicon), mounted at ASSETS, and the pages are FastAPI's
documented self-hosted ones (`get_swagger_ui_html(swagger_js_url=..., ...)`, `get_redoc_html(...)`). Without
that package, both pages are a short HTML page that says where the schema is (/openapi.json).
No page and no asset needs the bearer token (the schema is public too).
"""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"


def assets_folder() -> Path | None:
    """fastapi-offline's static folder, or None when that package is not installed."""
    try:
        folder = Path(str(resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        return None
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def add_docs(app: FastAPI, openapi_url: str = "/openapi.json") -> None:
    """/docs and /redoc on `app` (created with docs_url=None, redoc_url=None), served without any CDN."""
    folder = assets_folder()
    if folder is not None:
        app.mount(ASSETS, StaticFiles(directory=folder), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        if folder is None:
            return _schema_only_page(app.title, root + openapi_url)
        # validatorUrl None: Swagger UI would otherwise send the schema to validator.swagger.io for a badge
        return get_swagger_ui_html(openapi_url=root + openapi_url, title=f"{app.title} - Swagger UI",
                                   swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
                                   swagger_ui_parameters={"validatorUrl": None})

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        if folder is None:
            return _schema_only_page(app.title, root + openapi_url)
        return get_redoc_html(openapi_url=root + openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{ASSETS}/favicon.png", with_google_fonts=False)


def _schema_only_page(title: str, openapi_url: str) -> HTMLResponse:
    url = html.escape(openapi_url)
    return HTMLResponse(f"<!DOCTYPE html><html><head><title>{html.escape(title)}</title></head><body>"
                        f"<h1>{html.escape(title)}</h1><p>The OpenAPI schema of this server is at "
                        f'<a href="{url}">{url}</a>. The interactive pages need the <code>fastapi-offline</code> '
                        f'package: <code>pip install "mlcls[serve]"</code>.</p></body></html>')
