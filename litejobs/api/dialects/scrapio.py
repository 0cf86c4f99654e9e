"""Scrapio at /compat/scrapio: the Jobs API (`POST /v1/jobs` with a kind) and the inline surfaces
(`POST /v1/<kind>`, for every installed kind)."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from litejobs.api.dialects.common import (
    engine_of,
    pages_of,
    read_body,
    renamed,
    run_inline,
    submit_one,
    with_absolute_files,
)
from litejobs.api.errors import request_id_of
from litejobs.api.responses import JSONResponse
from litejobs.api.v1 import idempotency_key, owner
from litejobs.errors import QueueDisabled, UnsupportedKind, ValidationFailed
from litejobs.jobs import Job, JobState, iso_ms

STATUS = {
    JobState.WAITING: "queued",
    JobState.DELAYED: "queued",
    JobState.ACTIVE: "running",
    JobState.COMPLETED: "completed",
    JobState.PARTIAL: "partial",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
}
ASYNC_HINT = "submit it as a job with POST /v1/jobs and poll GET /v1/jobs/{job_id}"


def check_kind(request: Request, kind: Any) -> None:
    """`search` is a Scrapio kind that needs a search backend: only a plugin kind can be one."""
    installed = engine_of(request).kinds.names()
    if kind == "search" and "search" not in installed:
        raise UnsupportedKind(
            "no search backend is configured on this server: search runs only when a plugin kind named "
            f"'search' is installed (see docs/plugins.md); the installed kinds are {', '.join(installed)}"
        )


def queue_disabled(request: Request, kind: Any) -> QueueDisabled:
    """The native message points to `POST /v1/scrape`, which a Scrapio client does not have:
    point it to this dialect's inline route for the kind instead (relative to its base URL)."""
    kinds = engine_of(request).kinds
    prefix = "the job queue is disabled on this server (queue.enabled = false)"
    if not isinstance(kind, str) or kind not in kinds.names():
        return QueueDisabled(f"{prefix}: run a kind inline with POST /v1/<kind>, such as POST /v1/fetch")
    if not kinds.get(kind).sync_allowed:
        return QueueDisabled(f"{prefix}, and the {kind!r} kind runs only as a job")
    cap_s = engine_of(request).config.limits.sync_timeout_s
    return QueueDisabled(f"{prefix}: run it inline with POST /v1/{kind} (within {cap_s:g} s)")


def job_shape(request: Request, job: Job) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request_id": request_id_of(request),
        "job_id": job.id,
        "job_type": job.kind,
        "status": STATUS[job.status],
        "mode": "async",
        "created_at": iso_ms(job.created_at),
        "started_at": iso_ms(job.started_at),
        "completed_at": iso_ms(job.completed_at),
        "result_available": job.result_available,
    }
    if job.error and job.status == JobState.FAILED:
        body["error"] = {"code": job.error.get("code"), "message": job.error.get("message")}
    return body


async def submit_job(request: Request) -> Response:
    who = owner(request)
    body = await read_body(request)
    check_kind(request, body.get("kind"))
    try:
        submitted = await submit_one(request, body, who, idempotency_key(request))
    except QueueDisabled:
        raise queue_disabled(request, body.get("kind")) from None
    if submitted.replayed:
        return JSONResponse(job_shape(request, submitted.job), headers={"Idempotent-Replayed": "true"})
    answer = {"request_id": request_id_of(request), "mode": "async", "status": "queued", "job_id": submitted.job.id}
    return JSONResponse(answer, status_code=202)


async def get_job(request: Request) -> Response:
    job = await engine_of(request).get(request.path_params["job_id"], owner(request))
    return JSONResponse(job_shape(request, job))


async def get_result(request: Request) -> Response:
    job, result = await engine_of(request).result(request.path_params["job_id"], owner(request))
    outputs = with_absolute_files(request, job.id, result.outputs)
    body = {**job_shape(request, job), "outputs": outputs, **await pages_of(request, job)}
    return JSONResponse(body)


async def cancel_job(request: Request) -> Response:
    job = await engine_of(request).cancel(request.path_params["job_id"], owner(request))
    return JSONResponse(job_shape(request, job))


async def run_inline_kind(request: Request) -> Response:
    """`POST /v1/<kind>`: any installed kind, run now within the sync cap (unless the kind is not
    `sync_allowed`); a name that is no installed kind is no route (404), except Scrapio's own
    `search`, which says why it is missing. The key is checked first: without one, the 401 tells
    nobody which plugin kinds the server has."""
    owner(request)
    kind = request.path_params["kind"]
    if kind != "search" and kind not in engine_of(request).kinds.names():
        raise HTTPException(404)
    body = await read_body(request)
    check_kind(request, kind)
    try:
        result, pages = await run_inline(request, kind, body, ASYNC_HINT)
    except ValidationFailed as exc:
        raise renamed(exc, "input.") from None  # the body is the input here
    answer: dict[str, Any] = {
        "request_id": request_id_of(request),
        "mode": "sync",
        "job_type": kind,
        "status": result.status.value,
        "outputs": result.outputs,
        "stats": result.stats,
    }
    if pages:
        answer["pages"] = pages
    return JSONResponse(answer)


ROUTES = [
    Route("/v1/jobs", submit_job, methods=["POST"]),
    Route("/v1/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/v1/jobs/{job_id}", cancel_job, methods=["DELETE"]),
    Route("/v1/jobs/{job_id}/result", get_result, methods=["GET"]),
    # after /v1/jobs, which no kind's inline route may shadow
    Route("/v1/{kind}", run_inline_kind, methods=["POST"]),
]
