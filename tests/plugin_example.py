"""Plugin job kinds the tests install through [kinds] or an entry point; word_count is docs/plugins.md's."""

from __future__ import annotations

import asyncio
from typing import Any

from litejobs.errors import JobError
from litejobs.extract import Document
from litejobs.kinds import KindContext
from litejobs.plugins import job_kind


@job_kind({"url": "url", "min_length": {"type": "integer", "default": 1, "min": 1, "max": 50}})
async def word_count(input: dict[str, Any], ctx: KindContext) -> dict[str, Any]:
    """Fetch a page and count the words in its visible text that are at least `min_length` long."""
    await ctx.report_progress("fetching", 0.1)
    page = await ctx.fetcher.fetch(input["url"])
    if page.status_code >= 500:
        raise JobError(f"the page answered HTTP {page.status_code}", retryable=True)
    await ctx.report_progress("counting", 0.8)
    words = [w for w in Document(page.text, page.final_url).text().split() if len(w) >= input["min_length"]]
    return {"url": page.final_url, "words": len(words), "distinct": len({w.lower() for w in words})}


async def nap(input: dict[str, Any], ctx: KindContext) -> dict[str, Any]:
    """Sleep for `seconds`, reporting progress every tenth of a second: for timeouts and cancels."""
    steps = max(1, int(input["seconds"] * 10))
    for step in range(steps):
        await ctx.report_progress(f"step {step + 1} of {steps}", step / steps)
        await asyncio.sleep(0.1)
    return {"slept_s": input["seconds"]}


nap.input_schema = {"seconds": float}  # type: ignore[attr-defined]


async def flaky(input: dict[str, Any], ctx: KindContext) -> int:
    """Fail with a retryable error until attempt `succeed_on`; the answer is the attempt number."""
    if ctx.attempt < input["succeed_on"]:
        raise JobError(f"attempt {ctx.attempt} failed on purpose", retryable=True)
    return ctx.attempt


flaky.input_schema = {"succeed_on": {"type": "integer", "min": 1, "max": 10}}  # type: ignore[attr-defined]


@job_kind({"query": "string", "limit": "integer?"})
async def search(input: dict[str, Any], ctx: KindContext) -> dict[str, Any]:
    """A stand-in search backend: deterministic results for a query."""
    limit = input["limit"] or 3
    return {"results": [{"title": f"{input['query']} #{n}", "url": f"https://example.org/{n}"} for n in range(limit)]}


@job_kind({"text": "string"})
async def shout(input: dict[str, Any], ctx: KindContext) -> dict[str, Any]:
    return {"text": input["text"].upper()}


# --- plugins that must be refused at start ---------------------------------------------------------


@job_kind({"text": "string"})
def not_async(input: dict[str, Any], ctx: KindContext) -> dict[str, Any]:
    return {}


async def no_schema(input: dict[str, Any], ctx: KindContext) -> dict[str, Any]:
    return {}


@job_kind({"when": "datetime"})
async def bad_schema(input: dict[str, Any], ctx: KindContext) -> dict[str, Any]:
    return {}
