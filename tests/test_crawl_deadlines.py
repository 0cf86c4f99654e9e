"""A crawl within its job's timeout_s: a page that hangs fails alone, and a crawl whose time runs out ends
`partial` with the pages it stored, readable, rather than failing `timeout` on every attempt."""

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


@pytest.fixture()
def site() -> Iterator[TargetSite]:
    target = TargetSite()
    yield target
    target.close()


def answering_after(seconds: float, title: str) -> Any:
    """A page that answers only after `seconds`."""

    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(seconds)
        return web.Response(text=PAGE.format(title, ""), content_type="text/html")

    return handler


async def stalling_body(request: web.Request) -> web.StreamResponse:
    """Headers at once, then the body never comes."""
    response = web.StreamResponse(headers={"Content-Type": "text/html", "Content-Length": "100000"})
    await response.prepare(request)
    await response.write(b"<html><body>")
    await asyncio.sleep(60)
    return response


def crawl(server: ServerThread, start: str, timeout_s: int, **input: Any) -> dict[str, Any]:
    job = server.http.submit({"url": start, **input}, kind="crawl", timeout_s=timeout_s, max_attempts=2)
    return server.http.wait(job["job_id"], 60)


def test_hanging_pages_fail_alone_and_the_crawl_keeps_the_others(tmp_path: Path, site: TargetSite) -> None:
    links = "".join(f"<a href='{path}'>{path}</a>" for path in ("/a", "/never", "/b", "/stall", "/c"))
    start = site.add_html("/", PAGE.format("Mix", links))
    for name in "abc":
        site.add_html(f"/{name}", PAGE.format(name.upper(), ""))
    site.add("/never", answering_after(60, "Never"))
    site.add("/stall", stalling_body)

    with ServerThread(make_config(tmp_path)) as server:
        job = crawl(server, start, timeout_s=4, max_depth=1)
        result = server.http.get(f"/v1/jobs/{job['job_id']}/result")

        assert (job["status"], job["attempts"]) == ("partial", 1), job.get("error")
        assert result.status == 200
        pages = {page["url"].rsplit("/", 1)[-1]: page for page in all_pages(server.http, job["job_id"])}
    assert {name: page["success"] for name, page in pages.items()} == {
        "": True,
        "a": True,
        "b": True,
        "c": True,
        "never": False,
        "stall": False,
    }
    for name in ("never", "stall"):
        assert pages[name]["error"]["code"] == "timeout"
        assert pages[name]["final_url"] == site.url(f"/{name}") and pages[name]["content_type"] is None
    assert result.json["outputs"]["pages_failed"] == 2
    assert result.json["stats"]["timed_out"] is False  # every page was tried: the crawl was not cut
    assert (site.hits["/never"], site.hits["/stall"]) == (1, 1)  # not fetched again by another attempt


def test_a_crawl_out_of_time_ends_partial_with_the_pages_it_stored(tmp_path: Path, site: TargetSite) -> None:
    links = "".join(f"<a href='/p/{n}'>{n}</a>" for n in range(12))
    start = site.add_html("/", PAGE.format("Home", links))
    for n in range(12):
        site.add(f"/p/{n}", answering_after(0.5, f"Page {n}"))
    # one page of the host at a time: twelve half-second pages take longer than the job's 3 s
    config = make_config(tmp_path, crawl={"per_host_concurrency": 1, "per_host_delay_ms": 0})

    with ServerThread(config) as server:
        job = crawl(server, start, timeout_s=3, max_depth=1)
        result = server.http.get(f"/v1/jobs/{job['job_id']}/result")
        pages = all_pages(server.http, job["job_id"])

    assert (job["status"], job["attempts"]) == ("partial", 1), job.get("error")
    assert result.status == 200 and result.json["stats"]["timed_out"] is True
    assert 2 <= len(pages) < 13 and pages[0]["title"] == "Home"
    assert all(page["success"] or page["error"]["code"] == "timeout" for page in pages)
    # a page is fetched only when it is stored: the pages the time did not reach were not started
    assert sum(site.hits[f"/p/{n}"] for n in range(12)) == len(pages) - 1
    assert job["progress"]["message"] == f"{len(pages)} pages crawled"


def test_a_crawl_cut_by_its_time_reports_the_deepest_depth_it_stored(tmp_path: Path, site: TargetSite) -> None:
    links = "".join(f"<a href='{path}'>{path}</a>" for path in ("/c1", "/c2", "/hang"))
    start = site.add_html("/", PAGE.format("C0", links))
    site.add_html("/c1", PAGE.format("C1", "<a href='/c3'>c3</a>"))
    site.add_html("/c2", PAGE.format("C2", ""))
    site.add_html("/c3", PAGE.format("C3", ""))
    site.add("/hang", answering_after(60, "Hang"))

    with ServerThread(make_config(tmp_path)) as server:
        job = crawl(server, start, timeout_s=4, max_depth=2)
        stats = server.http.get(f"/v1/jobs/{job['job_id']}/result").json["stats"]
        pages = all_pages(server.http, job["job_id"])

    assert job["status"] == "partial" and stats["timed_out"] is True
    assert site.hits["/c3"] == 0  # /hang held depth 1 to the end of the time: depth 2 was not started
    assert max(page["depth"] for page in pages) == 1
    assert stats["max_depth_reached"] == 1
