"""GET /metrics: the Prometheus text format; with API keys configured it needs one, like every route."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from litejobs.api.http import app_of
from litejobs.api.v1 import owner


async def metrics(request: Request) -> Response:
    owner(request)
    body = await app_of(request).metrics.render()
    return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})


ROUTES = [Route("/metrics", metrics, methods=["GET"])]
