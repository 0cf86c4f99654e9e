"""A Chromium crash under a rendered crawl or multi_fetch is the browser's fault, not the pages': the pages
in flight are rendered again after the relaunch, and never stored as failed for it."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from litejobs.browser import find_chromium
from tests.crawl_support import all_pages
from tests.support import ServerThread, TargetSite, make_config

pytestmark = [pytest.mark.browser, pytest.mark.skipif(find_chromium() is None, reason="no Chromium on this machine")]

PAGE = "<html><head><title>{0}</title></head><body><h1>{0}</h1>{1}</body></html>"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    config = make_config(
        tmp_path_factory.mktemp("crash"),
        browser={"max_pages": 2},
        crawl={"per_host_concurrency": 2, "per_host_delay_ms": 0},
    )
    with ServerThread(config) as running:
        yield running


@pytest.fixture()
def site() -> Iterator[TargetSite]:
    target = TargetSite()
    yield target
    target.close()


def kill_chromium(server: ServerThread) -> int:
    """SIGKILL the server's Chromium, as the OOM killer or an operator would; its pid."""
    assert server.app is not None and server.app.browser is not None
    pid = server.app.browser.state()["pid"]
    assert pid
    os.kill(pid, signal.SIGKILL)
    return int(pid)


def crashing(server: ServerThread, title: str, *, every_time: bool = False) -> Any:
    """A page whose first request (or every one) kills the Chromium rendering it, mid-navigation."""
    requests = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal requests
        requests += 1
        if requests == 1 or every_time:
            kill_chromium(server)
            await asyncio.sleep(1)  # the browser is gone by then: nobody reads this answer
        return web.Response(text=PAGE.format(title, ""), content_type="text/html")

    return handler


def run(server: ServerThread, kind: str, input: dict[str, Any], **options: Any) -> dict[str, Any]:
    job = server.http.submit(input, kind=kind, **{"timeout_s": 60, **options})
    return server.http.wait(job["job_id"], 90)


@pytest.mark.slow
def test_a_chromium_killed_mid_crawl_costs_no_page(server: ServerThread, site: TargetSite) -> None:
    links = "".join(f"<a href='/p/{n}'>{n}</a>" for n in range(1, 5))
    start = site.add_html("/", PAGE.format("Home", links))
    site.add("/p/1", crashing(server, "Page 1"))
    for n in range(2, 5):
        site.add_html(f"/p/{n}", PAGE.format(f"Page {n}", ""))

    job = run(server, "crawl", {"url": start, "max_depth": 1, "render_js": True}, max_attempts=1)

    assert job["status"] == "completed", job.get("error")
    pages = all_pages(server.http, job["job_id"])
    assert sorted((p["url"].rsplit("/", 1)[-1], p["success"], p["title"]) for p in pages) == [
        ("", True, "Home"),
        ("1", True, "Page 1"),
        ("2", True, "Page 2"),
        ("3", True, "Page 3"),
        ("4", True, "Page 4"),
    ]
    assert site.hits["/p/1"] == 2  # rendered again after the relaunch, within the one attempt


@pytest.mark.slow
def test_a_chromium_killed_mid_multi_fetch_costs_no_page(server: ServerThread, site: TargetSite) -> None:
    first = site.add("/m/1", crashing(server, "First"))
    second = site.add_html("/m/2", PAGE.format("Second", ""))

    job = run(server, "multi_fetch", {"urls": [first, second], "render_js": True}, max_attempts=1)

    assert job["status"] == "completed", job.get("error")
    pages = server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]["pages"]
    assert [(p["title"], p["success"]) for p in pages] == [("First", True), ("Second", True)]


@pytest.mark.slow
def test_a_browser_that_keeps_failing_fails_the_attempt_and_the_retry_resumes(tmp_path: Path, site: TargetSite) -> None:
    """A page whose every render loses the browser: after the relaunches, the attempt fails (retried, as a
    render job's would be), naming the page; no page is stored as failed for it, and the next attempt
    does not fetch the stored pages again."""
    # one page of the host at a time: /ok is done before /doom starts killing browsers
    config = make_config(tmp_path, crawl={"per_host_concurrency": 1, "per_host_delay_ms": 0})
    start = site.add_html("/", PAGE.format("Home", "<a href='/ok'>ok</a><a href='/doom'>doom</a>"))
    site.add_html("/ok", PAGE.format("Fine", ""))
    with ServerThread(config) as server:
        doom = site.add("/doom", crashing(server, "Doom", every_time=True))

        job = run(server, "crawl", {"url": start, "max_depth": 1, "render_js": True}, max_attempts=2)

    assert job["status"] == "failed"
    assert job["error"]["code"] == "browser_crashed" and doom in job["error"]["message"]
    assert job["attempts"] == 2
    assert site.hits["/doom"] == 6  # three renders per attempt
    assert (site.hits["/"], site.hits["/ok"]) == (1, 1)  # stored by the first attempt: resumed, not fetched again
