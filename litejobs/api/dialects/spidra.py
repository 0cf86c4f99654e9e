"""Spidra at /compat/spidra: `POST /api/scrape` (urls, prompt, output, screenshot) and its status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from litejobs.api.dialects.common import engine_of, pages_of, read_body, result_of, submit_one, without_queue
from litejobs.api.responses import JSONResponse
from litejobs.api.v1 import owner
from litejobs.errors import Forbidden, NotFound, QueueDisabled, ValidationFailed
from litejobs.fields import Fields, url_problem
from litejobs.jobs import Job, JobResult, JobState
from litejobs.kinds.multi import MAX_URLS

STATUS = {
    JobState.WAITING: "waiting",
    JobState.DELAYED: "delayed",
    JobState.ACTIVE: "active",
    JobState.COMPLETED: "completed",
    JobState.PARTIAL: "completed",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "failed",
}
MESSAGES = {Forbidden: "You do not have permission to access this job.", NotFound: "Scrape not found"}


def error_shape(request: Request, exc: Exception, native: dict[str, Any]) -> dict[str, Any]:
    body = {"status": "error", "message": MESSAGES.get(type(exc), native["error"]["message"])}
    if native["error"]["details"]:
        body["details"] = native["error"]["details"]
    return body


def multi_input(body: dict[str, Any]) -> dict[str, Any]:
    """The Spidra body → the `multi_fetch` input; unknown fields are refused."""
    f = Fields(body)
    raw_urls = f.any("urls")
    urls = []
    if not isinstance(raw_urls, list) or not raw_urls:
        f.problem("urls", "must be a non-empty list of {url} objects")
    else:
        for index, item in enumerate(raw_urls[: MAX_URLS + 1]):
            url = item.get("url") if isinstance(item, dict) else item
            problem = url_problem(url) if isinstance(url, str) else "must be an object with a url"
            if problem:
                f.problem(f"urls[{index}]", problem)
            for extra in sorted(set(item) - {"url"}) if isinstance(item, dict) else ():
                f.problem(f"urls[{index}].{extra}", "is not supported here (see docs/compat.md)")
            urls.append(url)
    native = {
        "urls": urls,
        "prompt": f.str("prompt", None, max_len=20_000),
        "format": f.str("output", "markdown", choices=("markdown", "json")),
        "screenshot": f.bool("screenshot", False),
    }
    f.finish()
    return {k: v for k, v in native.items() if v is not None}


def result_shape(result: JobResult, stored: dict[str, Any]) -> dict[str, Any]:
    """`stored`: pages_of() of the job, whose pages (a crawl's) are `data`, with the paging beside."""
    outputs, stats = result.outputs, result.stats
    ai = stats.get("ai") if isinstance(stats.get("ai"), Mapping) else {}
    data = [page_shape(page) for page in stored.get("pages") or pages_in(outputs)]
    paging = {name: stored[name] for name in ("total_pages", "next_offset") if name in stored}
    return {
        "content": outputs.get("content"),
        "data": data,
        "screenshots": [item["screenshotUrl"] for item in data if item["screenshotUrl"]],
        "ai_extraction_failed": outputs.get("ai_extraction_failed", False),
        "stats": {
            "durationMs": stats.get("duration_ms"),
            "captchaSolvedCount": 0,
            "inputTokens": ai.get("input_tokens", 0),
            "outputTokens": ai.get("output_tokens", 0),
            "totalTokens": ai.get("total_tokens", 0),
        },
        **paging,
    }


def pages_in(outputs: dict[str, Any]) -> list[Mapping[str, Any]]:
    """A `multi_fetch` job's pages. A job of another kind read here by its id has none, or (a
    plugin's) a `pages` output of any shape."""
    pages = outputs.get("pages")
    return [page for page in pages if isinstance(page, Mapping)] if isinstance(pages, list) else []


def page_shape(page: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "url": page.get("url"),
        "title": page.get("title"),
        "markdownContent": page.get("markdown"),
        "success": page.get("success") is True,
        # absolute already (result_of): relative to their base URL, a server-root path is a 404
        "screenshotUrl": page.get("screenshot"),
    }


def error_text(job: Job) -> str | None:
    if job.status == JobState.CANCELLED:
        return "The scrape was cancelled"
    if job.status == JobState.FAILED and job.error:
        return str(job.error.get("message"))
    return None


async def submit_scrape(request: Request) -> Response:
    who = owner(request)
    native = multi_input(await read_body(request))
    try:
        job = (await submit_one(request, {"kind": "multi_fetch", "input": native}, who, input_as="")).job
    except QueueDisabled:
        raise without_queue(request, "multi_fetch") from None
    except ValidationFailed as exc:
        # multi_fetch names them `format`; the caller sent `output`
        details = [{**d, "field": "output"} if d["field"] == "format" else d for d in exc.details]
        raise ValidationFailed(details) from None
    return JSONResponse({"jobId": job.id, "status": STATUS[job.status]})


async def get_scrape(request: Request) -> Response:
    who = owner(request)
    job = await engine_of(request).get(request.path_params["job_id"], who)
    result = await result_of(request, job, who)
    progress = job.progress or {"message": "Waiting in the queue", "progress": 0}
    if result is not None:
        progress = {"message": "Scrape completed successfully", "progress": 1}
    body = {
        "status": STATUS[job.status],
        "progress": progress,
        "result": result_shape(result, await pages_of(request, job)) if result is not None else None,
        "error": error_text(job),
    }
    return JSONResponse(body)


ROUTES = [
    Route("/api/scrape", submit_scrape, methods=["POST"]),
    Route("/api/scrape/{job_id}", get_scrape, methods=["GET"]),
]
