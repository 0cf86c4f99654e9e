"""Routes about the server itself: liveness, readiness, the OpenAPI document, the dashboard."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from litejobs.api.http import app_of
from litejobs.api.openapi import openapi_document

STATIC_DIR = Path(__file__).resolve().parent.parent.parent / "static"


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    checks = app_of(request).readiness()
    ready = checks["store"] and (checks["workers"] or not app_of(request).config.queue.enabled)
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


async def dashboard(request: Request) -> Response:
    index = STATIC_DIR / "index.html"
    if index.is_file():
        return FileResponse(index, media_type="text/html")
    return PlainTextResponse("litejobs is running. The API is under /v1; see /openapi.json.\n")


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/", dashboard, methods=["GET"]),
]
