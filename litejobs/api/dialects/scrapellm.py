"""ScrapeLLM's async mode at /compat/scrapellm: every job kind is a scraper; polling needs no key."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from litejobs import jsontext
from litejobs.api.dialects.common import job_by_id, pages_of, read_body, renamed, result_of, submit_one, without_queue
from litejobs.api.responses import JSONResponse
from litejobs.api.v1 import owner
from litejobs.errors import QueueDisabled, ValidationFailed
from litejobs.jobs import JobState, iso_ms

#: the vendor's promise: a failed scrape is tried up to this many times before the job fails
ATTEMPTS = 3
#: query parameters that steer the job rather than the scraper
RESERVED = ("api_key", "timeout")
STATUS = {
    JobState.WAITING: "pending",
    JobState.DELAYED: "pending",
    JobState.ACTIVE: "pending",
    JobState.COMPLETED: "done",
    JobState.PARTIAL: "done",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "failed",
}


def query_value(raw: str) -> Any:
    """A query value read as JSON when it is JSON (`true`, `3`, `["a","b"]`), else as the string."""
    try:
        return jsontext.parse(raw)
    except ValueError:
        return raw


def scraper_params(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """The scraper's parameters: the query string, then the JSON body's fields over it."""
    params: dict[str, Any] = {}
    for name in request.query_params:
        values = [query_value(v) for v in request.query_params.getlist(name)]
        params[name] = values[0] if len(values) == 1 else values
    params.update(body)
    return params


async def submit_job(request: Request) -> Response:
    body = await read_body(request)
    params = scraper_params(request, body)
    who = owner(request, body.get("api_key") if isinstance(body.get("api_key"), str) else None)
    spec: dict[str, Any] = {
        "kind": request.path_params["scraper"],
        "input": {k: v for k, v in params.items() if k not in RESERVED},
        "max_attempts": ATTEMPTS,
    }
    if "timeout" in params:
        spec["timeout_s"] = params["timeout"]
    try:
        job = (await submit_one(request, spec, who, input_as="")).job
    except QueueDisabled:
        raise without_queue(request, spec["kind"]) from None
    except ValidationFailed as exc:
        raise renamed(exc, "timeout_s", "timeout") from None
    return JSONResponse({"job_id": job.id, "status": STATUS[job.status]}, status_code=202)


async def get_job(request: Request) -> Response:
    job, who = await job_by_id(request, request.path_params["job_id"])
    result = await result_of(request, job, who)
    error = None
    if job.status == JobState.CANCELLED:
        error = "the job was cancelled"
    elif job.status == JobState.FAILED:
        error = (job.error or {}).get("message") or "the scrape failed"
    body = {
        "job_id": job.id,
        "status": STATUS[job.status],
        # a crawl's pages beside its outputs, `?offset=&limit=` at a time
        "result": {**result.outputs, **await pages_of(request, job)} if result is not None else None,
        "error": error,
        "created_at": iso_ms(job.created_at),
        "completed_at": iso_ms(job.completed_at),
    }
    return JSONResponse(body)


ROUTES = [
    Route("/scrapers/{scraper}/jobs", submit_job, methods=["POST"]),
    Route("/jobs/{job_id}", get_job, methods=["GET"]),
]
