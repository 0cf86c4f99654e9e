"""Routes about the server itself: liveness, readiness, the OpenAPI document, the dashboard."""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from litejobs.api.http import app_of
from litejobs.api.openapi import openapi_document
from litejobs.api.responses import JSONResponse
from litejobs.api.v1 import owner

STATIC_DIR = Path(__file__).resolve().parent.parent.parent / "static"

#: The dashboard renders job data that any target site can influence (titles, markdown, HTML), so
#: besides escaping everything it runs under a policy that allows no inline script and no foreign origin.
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
DASHBOARD_HEADERS = {
    "Content-Security-Policy": DASHBOARD_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    owner(request)  # API.md: every route but /healthz needs a key when keys are configured
    checks = await app_of(request).readiness()
    ready = checks["store"] and (checks["workers"] or not app_of(request).config.queue.enabled)
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)


async def openapi(request: Request) -> Response:
    owner(request)
    return JSONResponse(openapi_document())


async def dashboard(request: Request) -> Response:
    """The dashboard page. It holds no job data, so it needs no key: the page asks for one itself."""
    index = STATIC_DIR / "index.html"
    if index.is_file():
        return FileResponse(index, media_type="text/html", headers=DASHBOARD_HEADERS)
    return PlainTextResponse("litejobs is running. The API is under /v1; see /openapi.json.\n")


class DashboardFiles(StaticFiles):
    """The dashboard's scripts and styles; revalidated on every load, so an upgrade shows at once."""

    def file_response(
        self, full_path: PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update({"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
        return response


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/", dashboard, methods=["GET"]),
    # an install without static/ still serves the API; /static is then simply not there
    *([Mount("/static", DashboardFiles(directory=STATIC_DIR), name="static")] if STATIC_DIR.is_dir() else []),
]
