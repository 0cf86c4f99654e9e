"""A crawl's progress while a slow page loads: the count of stored pages, never a stale one."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from tests.support import ServerThread, TargetSite, make_config, wait_until


def test_progress_counts_the_pages_stored_while_a_slow_page_still_loads(tmp_path: Path, site: TargetSite) -> None:
    """`/` and `/fast` end within 0.25 s of each other, `/slow` takes 4 s: progress said "1/50 pages"
    until it ended (the report for `/fast` came too soon after the first and was dropped)."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(4)
        return web.Response(text="<p>slow</p>", content_type="text/html")

    root = site.add_html("/p/", "<a href='/p/fast'>fast</a> <a href='/p/slow'>slow</a>")
    site.add_html("/p/fast", "<p>fast</p>")
    site.add("/p/slow", slow)
    config = make_config(tmp_path, crawl={"per_host_delay_ms": 0, "per_host_concurrency": 2})
    with ServerThread(config) as server:
        job_id = server.http.submit({"url": root, "max_pages": 50, "max_depth": 1}, kind="crawl")["job_id"]
        assert wait_until(lambda: site.hits["/p/slow"] == 1 and site.hits["/p/fast"] == 1, 3)

        def progress() -> object:
            return (server.http.get(f"/v1/jobs/{job_id}").json.get("progress") or {}).get("message")

        assert wait_until(lambda: progress() == "2/50 pages", 2.5), progress()  # /slow still loads
        job = server.http.wait(job_id, 30)
    assert job["status"] == "completed" and job["progress"]["message"] == "3 pages crawled"


def test_no_progress_report_lands_after_close() -> None:
    """A deferred report being written when the job ends is stopped before close() returns: it could
    land after the job's last word (a crawl's "N pages crawled") and publish the job once more."""
    from litejobs.kinds.progress import ThrottledProgress

    async def scenario() -> list[str]:
        events: list[str] = []

        async def write() -> None:
            events.append("write started")
            await asyncio.sleep(0.2)
            events.append("write ended")

        progress = ThrottledProgress(write, every_s=0.5)
        await progress.report()  # written at once
        await progress.report()  # too soon: deferred
        for _ in range(300):  # until the deferred write is under way (bounded)
            if events.count("write started") == 2:
                break
            await asyncio.sleep(0.01)
        await progress.close()
        events.append("closed")
        await asyncio.sleep(0.3)
        return events

    assert asyncio.run(scenario()) == ["write started", "write ended", "write started", "closed"]
