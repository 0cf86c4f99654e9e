"""The `multi_fetch` kind: a few URLs in turn, progress per URL, then an optional AI prompt over them."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from litejobs.ai import FORMATS, extract_with_prompt
from litejobs.errors import JobError
from litejobs.fields import Fields, url_problem
from litejobs.jobs import JobResult, JobState
from litejobs.kinds import Kind, KindContext
from litejobs.kinds.fetch import FetchParams, build_outputs, load_page

MAX_URLS = 50


@dataclass(frozen=True)
class MultiParams:
    urls: tuple[str, ...]
    render_js: bool = False
    screenshot: bool = False
    screenshot_full_page: bool = False
    wait_for: str | None = None
    prompt: str | None = None
    format: str = "markdown"


def parse_multi(raw: Mapping[str, Any]) -> MultiParams:
    f = Fields(raw, "input")
    urls = f.str_list("urls", max_items=MAX_URLS)
    if urls == []:
        f.problem("urls", "must name at least one URL")
    for index, url in enumerate(urls or []):
        if problem := url_problem(url):
            f.problem(f"urls[{index}]", problem)
    prompt = f.str("prompt", None, max_len=20_000)
    if isinstance(prompt, str) and not prompt.strip():
        f.problem("prompt", "must not be empty")
    params = MultiParams(
        urls=tuple(url.strip() for url in urls or []),
        render_js=f.bool("render_js", False),
        screenshot=f.bool("screenshot", False),
        screenshot_full_page=f.bool("screenshot_full_page", False),
        wait_for=f.str("wait_for", None, max_len=1000),
        prompt=prompt,
        format=f.str("format", "markdown", choices=FORMATS),
    )
    f.finish()
    return params


class _PageContext:
    """The job's context for page `index`: its files carry the page number, so pages don't collide."""

    def __init__(self, ctx: KindContext, index: int) -> None:
        self._ctx = ctx
        self._index = index

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    async def save_file(self, name: str, data: bytes, content_type: str) -> str:
        return await self._ctx.save_file(f"page-{self._index}-{name}", data, content_type)


async def fetch_one(params: MultiParams, index: int, ctx: KindContext) -> tuple[dict[str, Any], JobError | None]:
    """One URL as a page entry, and its failure if it failed (recorded on the entry, not raised)."""
    url = params.urls[index]
    output = ("markdown", "metadata", "screenshot") if params.screenshot else ("markdown", "metadata")
    fetch = FetchParams(
        url=url,
        render_js=params.render_js or params.screenshot,
        wait_for=params.wait_for,
        output=output,
        screenshot_full_page=params.screenshot_full_page,
    )
    try:
        loaded = await load_page(fetch, _PageContext(ctx, index))  # type: ignore[arg-type]
    except JobError as exc:
        return {"url": url, "success": False, "error": {"code": exc.code, "message": exc.message}}, exc
    outputs = build_outputs(loaded, output, None)
    page = {
        "url": url,
        "final_url": outputs["final_url"],
        "status_code": outputs["status_code"],
        "title": (outputs.get("metadata") or {}).get("title"),
        "markdown": outputs["markdown"],
        "screenshot": outputs.get("screenshot"),
        "success": True,
    }
    return page, None


def joined_markdown(pages: list[dict[str, Any]]) -> str:
    """Every fetched page's markdown; with several pages, each under a line naming its URL."""
    done = [page for page in pages if page["success"]]
    if len(done) == 1:
        return str(done[0]["markdown"])
    return "\n\n---\n\n".join(f"<!-- {page['url']} -->\n{page['markdown']}" for page in done)


async def run_multi(params: MultiParams, ctx: KindContext) -> JobResult:
    started = time.monotonic()
    steps = len(params.urls) + (1 if params.prompt else 0)
    pages, failures = [], []
    for index, url in enumerate(params.urls):
        await ctx.report_progress(f"Scraping {url} ({index + 1}/{len(params.urls)})", index / steps)
        page, failure = await fetch_one(params, index, ctx)
        pages.append(page)
        if failure is not None:
            failures.append(failure)
    if len(failures) == len(pages):
        raise failures[0]  # nothing to show: fail the attempt, so the engine's retries apply
    outputs: dict[str, Any] = {"pages": pages, "content": joined_markdown(pages), "ai_extraction_failed": False}
    stats: dict[str, Any] = {"pages_ok": len(pages) - len(failures), "pages_failed": len(failures)}
    if params.prompt:
        await ctx.report_progress("Processing content with AI...", len(params.urls) / steps)
        extraction = await extract_with_prompt(ctx.config.ai, params.prompt, outputs["content"], params.format)
        outputs.update(extraction.outputs())
        stats["ai"] = extraction.stats()
    await ctx.report_progress("Scrape completed successfully", 1.0)
    stats["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    return JobResult(JobState.PARTIAL if failures else JobState.COMPLETED, outputs, stats)


KIND = Kind("multi_fetch", parse_multi, run_multi)
