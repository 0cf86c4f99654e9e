"""A crawl cancelled or cut by a restart: its stored pages are kept, and a resumed crawl never fetches them again."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from tests.crawl_support import all_pages, page_set
from tests.crawlsite import CrawlSite
from tests.support import Http, ServerThread, TargetSite, make_config, wait_until


@pytest.fixture
def crawlsite(site: TargetSite) -> CrawlSite:
    return CrawlSite(site)


def stored_urls(db: Path, job_id: str) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT url FROM pages WHERE job_id = ? ORDER BY seq", (job_id,))]
    finally:
        conn.close()


def wait_for_pages(db: Path, job_id: str, count: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while len(stored_urls(db, job_id)) < count:
        assert time.monotonic() < deadline, "the crawl stored too few pages in time"
        time.sleep(0.02)


def test_cancel_stops_a_crawl_within_two_seconds_and_keeps_its_pages(tmp_path: Path, crawlsite: CrawlSite) -> None:
    config = make_config(tmp_path, crawl={"per_host_delay_ms": 40})
    with ServerThread(config) as server:
        job = server.http.submit({"url": crawlsite.url("/"), "max_pages": 300, "max_depth": 5}, kind="crawl")
        wait_for_pages(Path(config.store.path), job["job_id"], 5)
        started = time.monotonic()
        cancelled = server.http.delete(f"/v1/jobs/{job['job_id']}")
        took_s = time.monotonic() - started
        hits_then = sum(crawlsite.hits.values())
        time.sleep(0.3)
        kept = stored_urls(Path(config.store.path), job["job_id"])
        assert cancelled.status == 200 and cancelled.json["status"] == "cancelled" and took_s < 2
        assert cancelled.json["result_available"] is True  # its pages are its result (was false)
        assert sum(crawlsite.hits.values()) == hits_then  # nothing fetched after the answer
        assert len(kept) >= 5 and len(set(kept)) == len(kept)
        result = server.http.get(f"/v1/jobs/{job['job_id']}/result?limit=1000")
        assert result.status == 200 and result.json["status"] == "cancelled"
        assert [p["url"] for p in result.json["pages"]] == kept
        assert not any(key.startswith("_") for page in result.json["pages"] for key in page)


def test_a_crawl_resumes_after_a_restart_without_fetching_done_pages_again(
    tmp_path: Path, crawlsite: CrawlSite
) -> None:
    config = make_config(tmp_path, crawl={"per_host_delay_ms": 25}, server={"shutdown_grace_s": 0.1})
    db = Path(config.store.path)
    first = ServerThread(config)
    job = first.http.submit({"url": crawlsite.url("/"), "max_pages": 60, "max_depth": 3}, kind="crawl")
    wait_for_pages(db, job["job_id"], 15)
    first.stop()  # the grace runs out: the crawl is handed back to the queue
    before = stored_urls(db, job["job_id"])
    with ServerThread(config) as second:
        done = second.http.wait(job["job_id"])
        result = second.http.get(f"/v1/jobs/{job['job_id']}/result").json
        pages = all_pages(second.http, job["job_id"])
    assert result["stats"]["resumed_pages"] == len(before) >= 15
    assert page_set(pages) == crawlsite.expected_crawl(60, 3) and len(pages) == 60
    again = {url: crawlsite.hits[urlsplit(url).path] for url in before}
    assert again == dict.fromkeys(before, 1) and done["status"] == "partial"


def test_a_resumed_crawl_shows_its_progress_before_it_fetches_again(tmp_path: Path, crawlsite: CrawlSite) -> None:
    config = make_config(tmp_path, crawl={"per_host_delay_ms": 25}, server={"shutdown_grace_s": 0.1})
    db = Path(config.store.path)
    first = ServerThread(config)
    job_id = first.http.submit({"url": crawlsite.url("/"), "max_pages": 60, "max_depth": 3}, kind="crawl")["job_id"]
    wait_for_pages(db, job_id, 15)
    first.stop()
    resumed_message = f"{len(stored_urls(db, job_id))}/60 pages"
    crawlsite.delay_s = 3.0  # the resumed attempt's first new pages take long: its progress must not wait for them

    def progress_shown(http: Http) -> bool:
        job = http.get(f"/v1/jobs/{job_id}").json
        return job["status"] == "active" and (job["progress"] or {}).get("message") == resumed_message

    with ServerThread(config) as second:
        shown = wait_until(lambda: progress_shown(second.http), 2.5, 0.02)
        crawlsite.delay_s = 0.0
        done = second.http.wait(job_id)
    assert shown and done["status"] == "partial" and done["progress"]["progress"] == 1


def test_a_resumed_crawl_does_not_fetch_a_stored_redirect_target_again(tmp_path: Path, site: TargetSite) -> None:
    """/r/early was stored, through its redirect to /r/target, before the restart; /r/late, which
    redirects there too, was cut by it. Resumed, /r/late's redirect comes first (the other pages of its
    depth are slow then, and hold the workers), and must find /r/target taken."""
    resumed = False
    far = f"http://localhost:{site.port}"
    hrefs = [f"{far}/r/dup/{n}" for n in range(3)] + ["/r/late", "/r/early"]
    hub = site.add_html("/r/hub", "".join(f"<a href='{href}'>x</a>" for href in hrefs))
    site.add_html("/r/target", "<title>target</title>")

    async def dup(request: web.Request) -> web.Response:  # a page dropped: it redirects to the hub
        await asyncio.sleep(1.0 if resumed else 0.0)
        raise web.HTTPFound(hub)

    async def late(request: web.Request) -> web.Response:
        await asyncio.sleep(0.0 if resumed else 30.0)
        raise web.HTTPFound("/r/target")

    async def early(request: web.Request) -> web.Response:
        raise web.HTTPFound("/r/target")

    for n in range(3):
        site.add(f"/r/dup/{n}", dup)
    site.add("/r/late", late)
    site.add("/r/early", early)
    config = make_config(tmp_path, crawl={"per_host_concurrency": 2}, server={"shutdown_grace_s": 0.1})
    first = ServerThread(config)
    job_id = first.http.submit({"url": hub, "max_depth": 1, "same_domain": False}, kind="crawl")["job_id"]
    wait_for_pages(Path(config.store.path), job_id, 2)
    first.stop()
    resumed = True
    with ServerThread(config) as second:
        done = second.http.wait(job_id)
        pages = all_pages(second.http, job_id)
    assert done["status"] == "completed" and done["attempts"] == 1  # the attempt cut by the stop is not counted
    assert [(urlsplit(p["url"]).path, urlsplit(p["final_url"]).path) for p in pages] == [
        ("/r/hub", "/r/hub"),
        ("/r/early", "/r/target"),
    ]
    assert site.hits["/r/target"] == 1 and site.hits["/r/late"] == 2
