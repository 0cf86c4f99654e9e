"""OmniScrape at /compat/omniscrape: `POST /v1/scrape`, its async twin, and `GET /v1/jobs/{id}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from litejobs.api.dialects.common import engine_of, pages_of, read_body, renamed, result_of, submit_one
from litejobs.api.responses import JSONResponse
from litejobs.api.v1 import owner
from litejobs.errors import ValidationFailed
from litejobs.jobs import Job, JobResult, JobState, iso_ms

CONTENT_OUTPUTS = ("html", "markdown", "text")
#: always in `data` beside `content`; other requested outputs are added by their names
BASE_FIELDS = ("status_code", "final_url", "content_type")
#: what `extract: {prompt}` adds natively → its name in `data` (`content` is the page's there)
AI_FIELDS = {"content": "ai_content", "ai_extraction_failed": "ai_extraction_failed", "ai_error": "ai_error"}


def status_of(job: Job) -> str:
    if job.status in (JobState.WAITING, JobState.DELAYED):
        return "queued"
    if job.status == JobState.ACTIVE:
        return "processing"
    if job.status in (JobState.COMPLETED, JobState.PARTIAL):
        return "completed"
    if job.status == JobState.FAILED and (job.error or {}).get("code") == "timeout":
        return "timed_out"
    return "failed"


def error_shape(request: Request, exc: Exception, native: dict[str, Any]) -> dict[str, Any]:
    return {"success": False, **native}


def fetch_input(body: dict[str, Any]) -> dict[str, Any]:
    """The scrape body is the fetch input; without `output`, the page comes back as HTML."""
    return {**body, "output": ["html"]} if body.get("output") is None else body


def requested(fetch: dict[str, Any]) -> list[str]:
    """The outputs a fetch input asks for, as the fetch kind reads them (one name or a list)."""
    output = fetch.get("output")
    if isinstance(output, str):
        return [output]
    return [name for name in output if isinstance(name, str)] if isinstance(output, list) else ["markdown"]


def scrape_shape(result: JobResult, requested: list[str], elapsed_s: float | None) -> dict[str, Any]:
    outputs = result.outputs
    content_name = next((name for name in requested if name in CONTENT_OUTPUTS), None)
    data: dict[str, Any] = {"content": outputs.get(content_name, "") if content_name else ""}
    data.update({name: outputs.get(name) for name in BASE_FIELDS})
    data.update({name: outputs[name] for name in requested if name != content_name and name in outputs})
    if "extract" in outputs:  # CSS `fields`: asked by `extract`, whether or not `output` names it
        data["extract"] = outputs["extract"]
    metadata: dict[str, Any] = {"elapsed_time": elapsed_s}
    ai = result.stats.get("ai")
    if isinstance(ai, Mapping):  # a prompt went to the model: its answer, or the fallback and why
        data.update({ours: outputs[native] for native, ours in AI_FIELDS.items() if native in outputs})
        metadata["ai"] = ai
    return {"success": True, "data": data, "metadata": metadata}


def _elapsed_s(result: JobResult, job: Job | None = None) -> float | None:
    elapsed_ms = result.stats.get("elapsed_ms")
    # a job of another kind (a plugin's) read here may keep anything under that name
    if not isinstance(elapsed_ms, (int, float)) or isinstance(elapsed_ms, bool):
        elapsed_ms = None
        if job is not None and job.started_at and job.completed_at:
            elapsed_ms = job.completed_at - job.started_at
    return None if elapsed_ms is None else round(elapsed_ms / 1000, 3)


async def scrape(request: Request) -> Response:
    owner(request)
    native = fetch_input(await read_body(request))
    try:
        result, _ = await engine_of(request).run_inline("fetch", native)
    except ValidationFailed as exc:
        raise renamed(exc, "input.") from None
    return JSONResponse(scrape_shape(result, requested(native), _elapsed_s(result)))


async def scrape_async(request: Request) -> Response:
    who = owner(request)
    engine_of(request).check_accepting()
    native = fetch_input(await read_body(request))
    job = (await submit_one(request, {"kind": "fetch", "input": native}, who, input_as="")).job
    answer = {"success": True, "job_id": job.id, "status": "queued", "poll": f"/v1/jobs/{job.id}"}
    return JSONResponse(answer, status_code=202)


async def get_job(request: Request) -> Response:
    who = owner(request)
    job = await engine_of(request).get(request.path_params["job_id"], who)
    data: dict[str, Any] = {
        "job_id": job.id,
        "status": status_of(job),
        "url": job.input.get("url"),
        "created_at": iso_ms(job.created_at),
        "updated_at": iso_ms(job.updated_at),
    }
    result = await result_of(request, job, who)
    if result is not None:
        data["result"] = scrape_shape(result, requested(job.input), _elapsed_s(result, job))
        data["result"]["data"].update(await pages_of(request, job))  # a crawl's, `?offset=&limit=`
    elif job.status in (JobState.FAILED, JobState.CANCELLED):
        error = job.error or {"code": "cancelled", "message": "the job was cancelled"}
        data["error"] = {"code": error.get("code"), "message": error.get("message")}
    return JSONResponse({"success": True, "data": data})


ROUTES = [
    Route("/v1/scrape", scrape, methods=["POST"]),
    Route("/v1/scrape/async", scrape_async, methods=["POST"]),
    Route("/v1/jobs/{job_id}", get_job, methods=["GET"]),
]
