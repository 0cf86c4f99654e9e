"""The `multi_fetch` kind: a few URLs in turn, progress per URL, then an optional AI prompt over them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from litejobs.ai import FORMATS, extract_with_prompt
from litejobs.errors import BrowserError, JobError
from litejobs.fields import Fields, url_problem
from litejobs.jobs import JobResult, JobState
from litejobs.kinds import Kind, KindContext
from litejobs.kinds.fetch import FetchParams, finish_by, outputs_of
from litejobs.kinds.fetch_input import css_selector_problem
from litejobs.kinds.page_loads import Schedule, browser_fault, charged_to_the_attempt, load_by

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

    @property
    def distinct_urls(self) -> tuple[str, ...]:
        """The URLs to fetch: a URL submitted twice is fetched once, and reported at both places."""
        return tuple(dict.fromkeys(self.urls))


def parse_multi(raw: Mapping[str, Any]) -> MultiParams:
    f = Fields(raw, "input")
    # as sent, repeats included: a problem names the caller's index, and each URL gets its entry
    urls = f.str_list("urls", max_items=MAX_URLS, unique=False)
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
    if isinstance(params.wait_for, str) and (problem := css_selector_problem(params.wait_for)):
        f.problem("wait_for", problem)
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


def schedule_of(params: MultiParams, ctx: KindContext, now: float) -> Schedule:
    """The run's deadlines within its attempt's timeout; with a prompt, time is kept for the model."""
    # the job's timeout_s, where the worker hands it to the context (KindContext.timeout_s); else no deadlines
    done_by = finish_by(ctx, now)
    if done_by is None:
        return Schedule()
    budget_s = float(ctx.timeout_s or 0)
    ai = ctx.config.ai
    model_s = min(ai.timeout_s, budget_s / 4) if params.prompt and ai.base_url else 0.0
    return Schedule(pages_by=done_by - model_s, finish_by=done_by)


async def fetch_one(
    params: MultiParams, index: int, ctx: KindContext, deadline: float | None = None
) -> tuple[dict[str, Any], JobError | None]:
    """URL `index` as a page entry, and its failure if it failed (recorded on the entry, not raised)."""
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
        loaded = await load_by(fetch, _PageContext(ctx, index), deadline)  # type: ignore[arg-type]
    except JobError as exc:
        if isinstance(exc, BrowserError) and browser_fault(exc):
            # our browser's failure, after its retries: not the page's; the job's retry fetches them all again
            raise charged_to_the_attempt(exc, url) from exc
        return {"url": url, "success": False, "error": {"code": exc.code, "message": exc.message}}, exc
    # converted off the event loop, as fetch's and crawl's pages are: a big page would stall the server
    outputs = await outputs_of(loaded, output, None)
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


async def fetch_each(
    params: MultiParams, ctx: KindContext, schedule: Schedule
) -> dict[str, tuple[dict[str, Any], JobError | None]]:
    """Each distinct URL fetched in turn, within its deadline, with progress: its entry and failure, by URL."""
    urls, loop = params.distinct_urls, asyncio.get_running_loop()
    steps = len(urls) + (1 if params.prompt else 0)
    loaded = {}
    for number, url in enumerate(urls):
        await ctx.report_progress(f"Scraping {url} ({number + 1}/{len(urls)})", number / steps)
        deadline = schedule.page_deadline(len(urls) - number, loop.time())
        loaded[url] = await fetch_one(params, params.urls.index(url), ctx, deadline)
    return loaded


def joined_markdown(pages: list[dict[str, Any]]) -> str:
    """Every fetched page's markdown, once per URL; with several pages, each under a line naming its URL."""
    done = list({page["url"]: page for page in pages if page["success"]}.values())
    if len(done) == 1:
        return str(done[0]["markdown"])
    return "\n\n---\n\n".join(f"<!-- {page['url']} -->\n{page['markdown']}" for page in done)


async def run_multi(params: MultiParams, ctx: KindContext) -> JobResult:
    loop = asyncio.get_running_loop()
    started = loop.time()
    schedule = schedule_of(params, ctx, started)
    loaded = await fetch_each(params, ctx, schedule)
    # one entry per URL submitted, in the order submitted
    pages = [dict(loaded[url][0]) for url in params.urls]
    failures = [failure for url in params.urls if (failure := loaded[url][1]) is not None]
    if len(failures) == len(pages):
        raise failures[0]  # nothing to show: fail the attempt, so the engine's retries apply
    outputs: dict[str, Any] = {"pages": pages, "content": joined_markdown(pages), "ai_extraction_failed": False}
    stats: dict[str, Any] = {"pages_ok": len(pages) - len(failures), "pages_failed": len(failures)}
    if params.prompt:
        fetched = len(params.distinct_urls)
        await ctx.report_progress("Processing content with AI...", fetched / (fetched + 1))
        extraction = await extract_with_prompt(
            ctx.config.ai, params.prompt, outputs["content"], params.format, deadline=schedule.finish_by
        )
        outputs.update(extraction.outputs())
        stats["ai"] = extraction.stats()
    await ctx.report_progress("Scrape completed successfully", 1.0)
    stats["duration_ms"] = round((loop.time() - started) * 1000, 1)
    return JobResult(JobState.PARTIAL if failures else JobState.COMPLETED, outputs, stats)


KIND = Kind("multi_fetch", parse_multi, run_multi)
