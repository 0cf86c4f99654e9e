"""A page that redirects to an origin whose robots.txt never answers fails alone, by the pages' deadline:
the crawl ends `partial` with its other pages, its result readable (it failed `timeout` whole before)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.crawl_support import all_pages
from tests.support import ServerThread, TargetSite, make_config

PAGE = "<html><head><title>{0}</title></head><body><h1>{0}</h1>{1}</body></html>"


@pytest.fixture
def silent_robots() -> Iterator[TargetSite]:
    """Another origin of the same host (so in the crawl's scope): its robots.txt never answers."""
    other = TargetSite()

    async def never(request: web.Request) -> web.Response:
        await asyncio.sleep(60)
        return web.Response(text="")

    other.add("/robots.txt", never)
    other.add_html("/x", PAGE.format("X", ""))
    yield other
    other.close()


def crawl_through_a_silent_robots_txt(
    tmp_path: Path, site: TargetSite, silent_robots: TargetSite, timeout_s: int, **input: Any
) -> tuple[dict[str, Any], int, dict[str, dict[str, Any]]]:
    """Crawl /c0 → (/redir → the silent origin's /x, /ok → /ok2): the job, its result's status, its pages."""
    start = site.add_html("/c0", PAGE.format("C0", "<a href='/redir'>r</a><a href='/ok'>ok</a>"))

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(silent_robots.url("/x"))

    site.add("/redir", redirect)
    site.add_html("/ok", PAGE.format("OK", "<a href='/ok2'>ok2</a>"))
    site.add_html("/ok2", PAGE.format("OK2", ""))
    with ServerThread(make_config(tmp_path)) as server:
        submitted = server.http.submit(
            {"url": start, "max_depth": 2, **input}, kind="crawl", timeout_s=timeout_s, max_attempts=1
        )
        job = server.http.wait(submitted["job_id"], 90)
        result = server.http.get(f"/v1/jobs/{job['job_id']}/result")
        stored = all_pages(server.http, job["job_id"]) if result.status == 200 else []
    return job, result.status, {page["url"].rsplit("/", 1)[-1]: page for page in stored}


def test_a_redirect_to_a_silent_robots_txt_fails_that_page_alone(
    tmp_path: Path, site: TargetSite, silent_robots: TargetSite
) -> None:
    job, result_status, pages = crawl_through_a_silent_robots_txt(tmp_path, site, silent_robots, timeout_s=4)

    assert job["status"] == "partial", job.get("error")
    assert result_status == 200
    assert {name: page["success"] for name, page in pages.items()} == {"c0": True, "ok": True, "redir": False}
    assert pages["redir"]["error"]["code"] == "timeout"
    assert "robots.txt" in pages["redir"]["error"]["message"]
    assert site.hits["/ok2"] == 0 and silent_robots.hits["/x"] == 0  # the time was spent: nothing after


@pytest.mark.browser
@pytest.mark.slow
def test_a_render_landing_on_a_silent_robots_txt_fails_that_page_alone(
    tmp_path: Path, site: TargetSite, silent_robots: TargetSite
) -> None:
    # the browser follows the redirect itself: the landing's robots.txt is read after the render
    job, result_status, pages = crawl_through_a_silent_robots_txt(
        tmp_path, site, silent_robots, timeout_s=10, render_js=True
    )

    assert job["status"] == "partial", job.get("error")
    assert result_status == 200
    assert {name: page["success"] for name, page in pages.items()} == {"c0": True, "ok": True, "redir": False}
    assert pages["redir"]["error"]["code"] == "timeout"
