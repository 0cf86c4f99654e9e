"""What the vendor dialects share: the caller, jobs read by their unguessable id, vendor error bodies
(on every answer under a vendor's mount), file links, a multi-page job's pages."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Router
from starlette.types import Message, Receive, Scope, Send

from litejobs import jsontext
from litejobs.api.auth import owner_of_key, presented_key
from litejobs.api.http import app_of, public_page, read_json
from litejobs.api.responses import JSONResponse
from litejobs.api.v1 import owner
from litejobs.engine import Engine, shutdown_refusal
from litejobs.errors import (
    Forbidden,
    NotFound,
    QueueDisabled,
    ValidationFailed,
)
from litejobs.jobs import Job, JobResult
from litejobs.store import Submitted

#: a vendor's error body for an error: (request, error, the native body) → JSON. The error is a
#: LitejobsError, routing's HTTPException (404, 405) or, for a crash, any exception.
ErrorShape = Callable[[Request, Exception, dict[str, Any]], dict[str, Any]]
#: where a scrapio client runs a kind inline: the other dialects name it when the queue is off
SCRAPIO_INLINE = "/compat/scrapio/v1/{kind}"


def engine_of(request: Request) -> Engine:
    return app_of(request).engine


class Speaking:
    """A vendor's mount whose every error answers in the vendor's shape, with the native status and
    headers (Retry-After, Allow): its endpoints' errors, routing's 404 and 405 under its base URL, a
    crash's 500, and the `503 shutting_down` of a request a stop cut short. A vendor client checks
    its own fields (`success`, `status: "error"`) whatever went wrong, not only on matched routes."""

    def __init__(self, routes: Sequence[BaseRoute], shape: ErrorShape) -> None:
        self.router = Router(list(routes))
        self.shape = shape

    @property
    def routes(self) -> list[BaseRoute]:
        """What Mount.routes gives (reverse routing, the 405's Allow header)."""
        return self.router.routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.router(scope, receive, send)
            return
        # no handler inside the mount: an endpoint's error comes up here, as routing's do
        scope = {**scope, "starlette.exception_handlers": ({}, {})}
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.router(scope, receive, sending)
        except Exception as exc:
            if started:
                raise
            await self.answer(Request(scope, receive), exc, send)
        except asyncio.CancelledError:
            # the stop's deadline (or uvicorn's) cancels a request still running: the drain outside
            # the mount would answer it natively; answer it here, then let the cancellation go on
            request = Request(scope, receive)
            if not started and engine_of(request).shutting_down:
                stopped = shutdown_refusal("the server is shutting down and could not answer this request in time")
                await self.answer(request, stopped, send)
            raise

    async def answer(self, request: Request, exc: Exception, send: Send) -> None:
        """The app's own answer to `exc` (its handlers build the native body, log a crash), reshaped."""
        handlers = request.app.exception_handlers
        handler = next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers), None)
        if handler is None:
            raise exc
        native: Response = await handler(request, exc)
        body = self.shape(request, exc, jsontext.parse(bytes(native.body)))
        headers = {k: v for k, v in native.headers.items() if k not in ("content-length", "content-type")}
        await JSONResponse(body, status_code=native.status_code, headers=headers)(request.scope, request.receive, send)


async def read_body(request: Request) -> dict[str, Any]:
    """A JSON object body (an empty body is an empty object)."""
    body = await read_json(request, allow_empty=True)
    if not isinstance(body, Mapping):
        raise ValidationFailed([{"field": "body", "problem": "must be a JSON object"}])
    return dict(body)


async def submit_one(
    request: Request,
    spec_body: dict[str, Any],
    who: str,
    idempotency_key: str | None = None,
    input_as: str | None = None,
) -> Submitted:
    """Validate and submit one native submission. `input_as` names the vendor's place for the
    input in validation errors: "" when its fields are the body's own (`input.url` → `url`)."""
    engine = engine_of(request)
    engine.check_accepting()
    try:
        spec = engine.build_spec(spec_body, who, idempotency_key)
    except ValidationFailed as exc:
        if input_as is None:
            raise
        raise renamed(exc, "input.", input_as) from None
    [submitted] = await engine.submit([spec])
    return submitted


def without_queue(request: Request, kind: Any) -> QueueDisabled:
    """QueueDisabled for a client whose dialect has no synchronous route of its own: the native
    message's `POST /v1/scrape` is a 404 under the dialect's base URL, so name a route that runs the
    work now by its absolute URL, marked as litejobs' own rather than the vendor's."""
    engine = engine_of(request)
    prefix = "the job queue is disabled on this server (queue.enabled = false)"
    within = f"within {engine.config.limits.sync_timeout_s:g} s"
    if kind in ("fetch", "multi_fetch") or kind not in engine.kinds.names():
        what = "each URL" if kind == "multi_fetch" else "the URL"
        route = absolute_url(request, "/v1/scrape")
        return QueueDisabled(
            f'{prefix}: fetch {what} synchronously ({within}) with litejobs\' native API: POST {route} {{"url": ...}}'
        )
    if not engine.kinds.get(kind).sync_allowed:
        return QueueDisabled(f"{prefix}, and the {kind!r} kind runs only as a job")
    route = absolute_url(request, SCRAPIO_INLINE.format(kind=kind))
    return QueueDisabled(
        f"{prefix}: run it synchronously ({within}) with litejobs' Scrapio-compatible route POST {route}, "
        "whose body is the kind's input"
    )


async def job_by_id(request: Request, job_id: str) -> tuple[Job, str]:
    """The job and its owner, for vendors whose docs read a job with no key: there the 128-bit id
    is the credential, as it is on the vendor. A presented key is still checked and must own it."""
    app = app_of(request)
    if presented_key(request) is not None or not app.keys.enabled:
        who = owner(request)
        return await app.engine.get(job_id, who), who
    # a keyless read spends the caller's own bucket (by address), never the job owner's: polling
    # someone's status URL must not throttle the owner's own requests; unknown ids spend it too
    app.limiter.take_keyless(request.client.host if request.client else "-")
    # Engine.get checks an owner; trying each configured key's owner finds the job without one
    for key in app.config.auth.keys:
        who = owner_of_key(key)
        try:
            job = await app.engine.get(job_id, who)
        except Forbidden:
            continue
        return job, who
    raise NotFound()


async def result_of(request: Request, job: Job, who: str) -> JobResult | None:
    """The job's result if it has one (completed or partial), its file links absolute; else None."""
    if not job.result_available:
        return None
    _, result = await engine_of(request).result(job.id, who)
    return dataclasses.replace(result, outputs=with_absolute_files(request, job.id, result.outputs))


def with_absolute_files(request: Request, job_id: str, value: Any) -> Any:
    """`value` with the job's file links (`/v1/files/{job_id}/{name}`) as absolute URLs on this
    server, wherever they sit. The engine gives them from the server root; a vendor client resolves
    a relative link against its base URL (`…/compat/<vendor>`), where it is a 404. The file route
    takes the key in every way a dialect's client sends one (Bearer, `X-API-Key`, `?api_key=`)."""
    if isinstance(value, str):
        return absolute_url(request, value) if _is_file_link(value, job_id) else value
    if isinstance(value, Mapping):
        return {name: with_absolute_files(request, job_id, item) for name, item in value.items()}
    if isinstance(value, list):
        return [with_absolute_files(request, job_id, item) for item in value]
    return value


def _is_file_link(value: str, job_id: str) -> bool:
    prefix = f"/v1/files/{job_id}/"
    if not value.startswith(prefix):
        return False
    name = value[len(prefix) :]
    return bool(name) and "/" not in name and not any(c.isspace() for c in name)


def absolute_url(request: Request, path: str) -> str:
    """A path from the server root as an absolute URL, whatever the dialect's mount (or a proxy's root_path)."""
    return str(request.base_url).rstrip("/") + path


async def pages_of(request: Request, job: Job, default_limit: int = 100) -> dict[str, Any]:
    """A multi-page job's pages, `?offset=&limit=` at a time, as the native result gives them."""
    store = app_of(request).store
    total = await store.page_count(job.id)
    if not total:
        return {}
    offset = _int_param(request, "offset", 0, 10**9)
    limit = _int_param(request, "limit", default_limit, 1000) or default_limit
    pages = [with_absolute_files(request, job.id, public_page(p)) for p in await store.pages(job.id, offset, limit)]
    return {"pages": pages, "total_pages": total, "next_offset": offset + limit if offset + limit < total else None}


def _int_param(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name, "")
    return min(int(raw), high) if raw.isascii() and raw.isdigit() else default  # "²".isdigit() is true


async def run_inline(request: Request, kind_name: str, raw_input: Any, hint: str) -> tuple[JobResult, list[Any]]:
    """Run a kind now within limits.sync_timeout_s, with the (public) pages a multi-page kind saved."""
    result, pages = await engine_of(request).run_inline(kind_name, raw_input, hint)
    return result, [public_page(p) for p in pages]


def renamed(exc: ValidationFailed, old_prefix: str, new_prefix: str = "") -> ValidationFailed:
    """The same problems with field names in the vendor's terms (`input.url` → `url`)."""
    details = [
        {**d, "field": new_prefix + d["field"][len(old_prefix) :]} if d["field"].startswith(old_prefix) else d
        for d in exc.details
    ]
    return ValidationFailed(details)
