"""ScraperAPI's Async API at /compat/scraperapi: POST /jobs, then GET or DELETE the job's statusUrl."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from litejobs.api.dialects.common import (
    engine_of,
    job_by_id,
    pages_of,
    read_body,
    result_of,
    submit_one,
    without_queue,
)
from litejobs.api.responses import JSONResponse
from litejobs.api.v1 import owner
from litejobs.errors import QueueDisabled, ValidationFailed
from litejobs.fields import Fields
from litejobs.jobs import Job, JobResult, JobState

STATUS = {
    JobState.WAITING: "running",
    JobState.DELAYED: "running",
    JobState.ACTIVE: "running",
    JobState.COMPLETED: "finished",
    JobState.PARTIAL: "finished",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "failed",
}
FETCH_FIELDS = ("url", "method", "headers", "body")
#: what their page lists as query parameters of `POST /jobs`, beside `api_key` (which auth reads)
QUERY_FIELDS = ("url",)


def submission(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """The documented query parameters, then the JSON body's fields over them (as ScrapeLLM's)."""
    from_query = {name: request.query_params[name] for name in QUERY_FIELDS if name in request.query_params}
    return {**from_query, **body}


def fetch_input(body: dict[str, Any]) -> tuple[dict[str, Any], str | None, dict[str, Any]]:
    """The vendor body → (the native fetch input, the apiKey, meta); unknown fields are refused."""
    f = Fields(body)
    key = f.str("apiKey", None, max_len=1000)
    meta = f.dict("meta", {})
    api_params = Fields(f.dict("apiParams", {}), "apiParams")
    render = api_params.bool("render", False)
    api_params.reject_unknown()
    f.str("url", max_len=8192)
    for name in FETCH_FIELDS[1:]:
        f.any(name)
    f.reject_unknown()
    if f.problems or api_params.problems:
        raise ValidationFailed(f.problems + api_params.problems)
    native: dict[str, Any] = {name: body[name] for name in FETCH_FIELDS if body.get(name) is not None}
    native["output"] = ["html", "headers"]
    if render:
        native["render_js"] = True
    return native, key, meta


def status_url(request: Request, job_id: str) -> str:
    """The job's absolute URL on this server: POST .../jobs → .../jobs/{id}, whatever the mount."""
    return f"{str(request.url.replace(query='')).rstrip('/')}/{job_id}"


def job_shape(job: Job, url: str, result: JobResult | None, pages: dict[str, Any] | None = None) -> dict[str, Any]:
    """Any job in the table, in their shape: one submitted elsewhere (a Spidra `multi_fetch`, a
    native crawl, a plugin's) may have no `url` in its input, nor an `html` or `headers` output; a
    crawl's `pages` (pages_of()) sit in `response` beside its empty `body`. `meta` is always there:
    the job does not record whether an empty one was sent."""
    target = job.input.get("url")
    body: dict[str, Any] = {
        "id": job.id,
        "status": STATUS[job.status],
        "statusUrl": url,
        "url": target if isinstance(target, str) else None,
        "meta": job.meta,
    }
    if result is not None:
        body["response"] = {**response_shape(result.outputs), **(pages or {})}
    elif job.status == JobState.CANCELLED:
        body["error"] = "the job was cancelled"
    elif job.status == JobState.FAILED:
        # a job between attempts also carries the last attempt's error; their `running` has none
        body["error"] = (job.error or {}).get("message") or "the job failed"
    return body


def response_shape(outputs: dict[str, Any]) -> dict[str, Any]:
    raw_headers = outputs.get("headers")
    headers = {str(k).lower(): v for k, v in raw_headers.items()} if isinstance(raw_headers, Mapping) else {}
    headers["sa-final-url"] = outputs.get("final_url", "")
    headers["sa-statuscode"] = str(outputs.get("status_code", ""))
    return {"headers": headers, "body": outputs.get("html", ""), "statusCode": outputs.get("status_code")}


async def submit_job(request: Request) -> Response:
    body = submission(request, await read_body(request))
    native, key, meta = fetch_input(body)
    who = owner(request, key)
    try:
        submitted = await submit_one(request, {"kind": "fetch", "input": native, "meta": meta}, who, input_as="")
    except QueueDisabled:
        raise without_queue(request, "fetch") from None
    job = submitted.job
    # a status of "running" from the start, as the vendor answers: the job is accepted and under way
    answer = {"id": job.id, "status": "running", "statusUrl": status_url(request, job.id), "url": native["url"]}
    if body.get("meta") is not None:  # echoed as sent, `{}` too; their answer to a body without one has none
        answer["meta"] = job.meta
    return JSONResponse(answer)


def _own_url(request: Request) -> str:
    return str(request.url.replace(query=""))


async def get_job(request: Request) -> Response:
    job, who = await job_by_id(request, request.path_params["job_id"])
    result = await result_of(request, job, who)
    pages = await pages_of(request, job) if result is not None else None
    return JSONResponse(job_shape(job, _own_url(request), result, pages))


async def cancel_job(request: Request) -> Response:
    job, who = await job_by_id(request, request.path_params["job_id"])
    cancelled = await engine_of(request).cancel(job.id, who)
    return JSONResponse(job_shape(cancelled, _own_url(request), None))


ROUTES = [
    Route("/jobs", submit_job, methods=["POST"]),
    Route("/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/jobs/{job_id}", cancel_job, methods=["DELETE"]),
]
