"""The one table from error class to HTTP status, and the one function that builds error bodies."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Scope

from litejobs import errors as e
from litejobs import jsontext
from litejobs.api.responses import JSONResponse

STATUS_OF: dict[type[e.LitejobsError], int] = {
    e.InvalidJson: 400,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.IdempotencyConflict: 409,
    e.JobFinished: 409,
    e.ResultNotAvailable: 409,
    e.PayloadTooLarge: 413,
    e.UnsupportedMediaType: 415,
    e.ValidationFailed: 422,
    e.UnsupportedKind: 422,
    e.QueueFull: 429,
    e.RateLimited: 429,
    e.QueueDisabled: 503,
    e.ShuttingDown: 503,
    e.StoreUnavailable: 503,
    e.StorageFull: 507,
    e.SyncTimeout: 504,
    # an inline scrape whose target failed: the target's fault, not ours
    e.JobError: 502,
}


def status_of(exc: e.LitejobsError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500


def error_body(code: str, message: str, request_id: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The API's error shape. A message may quote a page (a script's exception, half an emoji and all):
    a lone surrogate there becomes U+FFFD, or the answer could not be encoded at all (a bare 500)."""
    error = {"code": code, "message": message, "details": details or []}
    return {"error": jsontext.without_surrogates(error), "request_id": request_id}


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def error_response(request: Request, exc: e.LitejobsError) -> JSONResponse:
    details = list(getattr(exc, "details", []) or [])
    body = error_body(exc.code, exc.message, request_id_of(request), details)
    headers = {}
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after is not None and status_of(exc) in (429, 503):
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return JSONResponse(body, status_code=status_of(exc), headers=headers)


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> set[str]:
    """Every method some route takes at the request's path. Starlette's 405 names only the first
    route matching the path, where litejobs has one route per method (GET and POST /v1/jobs)."""
    methods: set[str] = set()
    for route in routes:
        match, child_scope = route.matches(scope)
        if isinstance(route, Mount):
            if match == Match.FULL:
                methods |= allowed_methods(route.routes, {**scope, **child_scope})
        elif isinstance(route, Route) and match != Match.NONE:
            methods |= route.methods or set()
    return methods
