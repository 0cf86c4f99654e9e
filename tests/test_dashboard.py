"""The dashboard in real headless Chromium (pyppeteer, the system executable) against the real server.

Each test saves screenshots under test-artifacts/dashboard/ for a person to look at.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from litejobs.browser import LOOPBACK_ONLY_RULES, find_chromium
from litejobs.chromium import chromium_args
from tests.support import ROOT, ServerThread, TargetSite, make_config

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine"),
]

ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
KEY = "dashboard-test-key-0123"
# the dashboard needs nothing but the server on 127.0.0.1: resolve nothing else
CHROMIUM_ARGS = chromium_args(LOOPBACK_ONLY_RULES, as_root=os.geteuid() == 0)

ARTICLE = """<!doctype html><html lang="en"><head><title>Dashboard test page</title>
<meta name="description" content="A page for the dashboard test">
<style>body{font:16px sans-serif;margin:40px;background:#fdf6e3}h1{color:#268bd2}
.box{width:300px;height:120px;background:linear-gradient(90deg,#cb4b16,#6c71c4)}</style></head>
<body><h1>Dashboard test page</h1><p>Some <strong>bold</strong> text and a <a href="/other">link</a>.</p>
<ul><li>first item</li><li>second item</li></ul><pre><code>print("hi")</code></pre>
<div class="box"></div></body></html>"""

#: a page whose title, text and links try to run script in the dashboard
HOSTILE = """<!doctype html><html><head><title>&lt;img src=x onerror="window.__xss='title'"&gt;</title></head>
<body><h1>Hostile &lt;script&gt;window.__xss='h1'&lt;/script&gt;</h1>
<p>&lt;img src=x onerror="window.__xss='markdown'"&gt;</p>
<p><a href="javascript:window.__xss='link'">click me</a></p>
<script>window.__xss = 'page'</script></body></html>"""


# -- fixtures: one server with an API key, one target site, for the whole module -------------------------


@pytest.fixture(scope="module")
def site() -> Iterator[TargetSite]:
    target = TargetSite()
    target.add_html("/article", ARTICLE)
    target.add_html("/other", "<html><head><title>Other</title></head><body><p>other page</p></body></html>")
    target.add_html("/hostile", HOSTILE)

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="down")

    target.add("/broken", broken)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.5)
        return web.Response(text="<html><body><h1>Slow page</h1></body></html>", content_type="text/html")

    target.add("/slow", slow)
    yield target
    target.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    config = make_config(tmp_path_factory.mktemp("dashboard"), auth={"keys": [KEY]})
    with ServerThread(config) as running:
        yield running


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # pyppeteer polls Chromium over http://127.0.0.1; a proxy must not see that (notes/pyppeteer.md, 8)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("PYPPETEER_HOME", str(ROOT / "test-artifacts" / "pyppeteer"))


# -- driving Chromium ----------------------------------------------------------------------------------


class Dashboard:
    """A page of the dashboard in headless Chromium, with its console errors and requests recorded."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.errors: list[str] = []
        #: HTTP statuses the test provokes on purpose (a 401 is how the page learns that it needs a key)
        self.expected_statuses = {401}
        self.requests: list[tuple[float, str]] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("request", lambda req: self.requests.append((time.monotonic(), req.url)))

    def _console(self, message: Any) -> None:
        if message.type == "error" and not any(f"status of {s} " in message.text for s in self.expected_statuses):
            self.errors.append(message.text)

    async def open(self, hash_: str = "#/") -> None:
        await self.page.goto(f"{self.base_url}/{hash_}", waitUntil="load")

    async def text(self, selector: str) -> str:
        return await self.page.querySelectorEval(selector, "el => el.textContent")  # type: ignore[no-any-return]

    async def wait_for(self, script: str, *args: Any, timeout_s: float = 10) -> Any:
        return await self.page.waitForFunction(script, {"timeout": int(timeout_s * 1000), "polling": 50}, *args)

    async def shot(self, name: str, selector: str | None = None) -> Path:
        path = ARTIFACTS / name
        await asyncio.sleep(0.3)  # transitions (row flash, tab switch) settle
        if selector:
            element = await self.page.querySelector(selector)
            await element.screenshot({"path": str(path)})
        else:
            await self.page.screenshot({"path": str(path), "fullPage": True})
        assert path.stat().st_size > 1000
        return path


@contextlib.asynccontextmanager
async def dashboard(server: ServerThread, *, with_key: bool = True) -> AsyncIterator[Dashboard]:
    from pyppeteer import launch

    from litejobs.pyppeteer_fixes import apply_connection_patches

    apply_connection_patches()
    browser = await launch(
        executablePath=CHROMIUM,
        args=CHROMIUM_ARGS,
        headless=True,
        handleSIGINT=False,
        handleSIGTERM=False,
        handleSIGHUP=False,
        autoClose=False,
        defaultViewport={"width": 1360, "height": 900},
    )
    try:
        page = await browser.newPage()
        if with_key:
            # as if the key had been entered before: the dashboard keeps it in localStorage
            await page.evaluateOnNewDocument(
                "key => { try { localStorage.setItem('litejobs.api_key', key) } catch (e) {} }", KEY
            )
        board = Dashboard(page, server.base_url)
        yield board
        assert board.errors == [], board.errors
    finally:
        await browser.close()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


ROW_STATUS = "(id) => { const row = document.querySelector(`tr[data-id='${id}']`); return row && row.dataset.status }"
BADGE = "() => { const badge = document.querySelector('.detail-head .badge'); return badge ? badge.textContent : '' }"


# -- tests ------------------------------------------------------------------------------------------------


def test_it_asks_for_the_key_and_keeps_it_in_the_browser(server: ServerThread) -> None:
    async def scenario() -> None:
        async with dashboard(server, with_key=False) as board:
            await board.open()
            await board.page.waitForSelector("#key-overlay input[name=api_key]")
            await board.shot("01-key-prompt.png")

            await board.page.type("#key-overlay input[name=api_key]", "not-the-key")
            await board.page.click("#key-overlay button[type=submit]")
            await board.wait_for("() => document.querySelector('#key-overlay .form-problem').textContent !== ''")
            assert "not valid" in await board.text("#key-overlay .form-problem")

            await board.page.evaluate("() => { document.querySelector('#key-overlay input').value = '' }")
            await board.page.type("#key-overlay input[name=api_key]", KEY)
            await board.page.click("#key-overlay button[type=submit]")
            await board.page.waitForSelector("#overview .tile-count")
            assert await board.page.querySelector("#key-overlay") is None
            assert await board.page.evaluate("() => localStorage.getItem('litejobs.api_key')") == KEY

            await board.page.reload(waitUntil="load")
            await board.page.waitForSelector("#overview .tile-count")
            await board.wait_for("() => document.querySelector('#live').dataset.state === 'live'")
            assert await board.page.querySelector("#key-overlay") is None
            assert KEY[-4:] in await board.text("#keybox")

    run(scenario())


def test_a_job_submitted_in_the_form_turns_completed_live_and_shows_its_screenshot(
    server: ServerThread, site: TargetSite
) -> None:
    url = site.url("/article")

    async def scenario() -> None:
        async with dashboard(server) as board:
            page = board.page
            await board.open()
            await page.waitForSelector("#overview .tile-count")
            await board.wait_for("() => document.querySelector('#live').dataset.state === 'live'")
            await page.evaluate("() => { window.__sameDocument = true }")

            await page.click("nav a[data-nav=new]")
            await page.waitForSelector("form.submit-form")
            await page.click("label.seg-item input[value=render] + span")
            await page.type("input[name=url]", url)
            await page.click("label[for=f_out_screenshot]")
            await page.type("textarea[name=meta]", '{"from": "dashboard test"}')
            preview = json.loads(await board.text(".request-preview pre"))
            assert preview == {
                "kind": "render",
                "input": {"url": url, "output": ["markdown", "screenshot"]},
                "meta": {"from": "dashboard test"},
            }
            await board.shot("02-submit-form.png")

            await page.click("button[type=submit][form=submit-form]")
            row = await page.waitForSelector("tr.flash[data-id]")
            job_id = await page.evaluate("(row) => row.dataset.id", row)
            shown_at = time.monotonic()
            assert await page.evaluate("() => location.hash") == "#/"

            await board.wait_for(f"() => ({ROW_STATUS})('{job_id}') === 'completed'", timeout_s=30)
            assert await page.evaluate("() => window.__sameDocument") is True  # no reload
            assert await board.text("#live") == "live"
            # the change came over the event stream: the page asked for no job or list meanwhile
            asked = [u for at, u in board.requests if at > shown_at and "/v1/jobs" in u]
            assert asked == []
            await board.wait_for("() => Number(document.querySelector('[data-count=completed]').textContent) >= 1")
            await board.shot("03-jobs.png")
            await board.shot("03a-overview.png", "#overview")

            await page.click(f"tr[data-id='{job_id}'] a.url")
            await page.waitForSelector("#result .result-top")
            await board.wait_for(
                "() => { const i = document.querySelector('#result .thumb img'); return i && i.naturalWidth > 0 }"
            )
            assert await board.text(".detail-head .badge") == "completed"
            assert await board.text("article.markdown h1") == "Dashboard test page"
            assert await board.text("article.markdown li") == "first item"
            steps = await page.querySelectorAllEval(".timeline .step-label", "els => els.map(e => e.textContent)")
            assert steps[0] == "Submitted" and "Started" in steps and "Completed" in steps
            assert '"from": "dashboard test"' in await board.text(".grid-2 .card:nth-child(2)")
            await board.shot("04-job-detail.png")

            await page.click("button.tab[data-tab=screenshot]")
            await board.wait_for(
                "() => { const i = document.querySelector('.shots img'); return i && i.naturalWidth >= 800 }"
            )
            await board.shot("05-job-screenshot.png", "#result")

    run(scenario())


def test_the_detail_page_follows_a_running_job_to_its_result(server: ServerThread, site: TargetSite) -> None:
    job = server.http.submit({"url": site.url("/slow")})

    async def scenario() -> None:
        async with dashboard(server) as board:
            page = board.page
            await board.open(f"#/jobs/{job['job_id']}")
            await board.wait_for(f"() => ({BADGE})() === 'active'")
            await page.evaluate("() => { window.__sameDocument = true }")
            assert "appears here when the job finishes" in await board.text("#result")
            await board.wait_for(f"() => ({BADGE})() === 'completed'")
            await page.waitForSelector("#result article.markdown h1")
            assert await board.text("#result article.markdown h1") == "Slow page"
            assert await page.evaluate("() => window.__sameDocument") is True
            assert "Completed" in await board.text(".timeline")

    run(scenario())


def test_job_data_is_shown_as_text_and_never_runs(server: ServerThread, site: TargetSite) -> None:
    outputs = ["markdown", "html", "links", "metadata"]
    job = server.http.submit(
        {"url": site.url("/hostile"), "output": outputs}, meta={"note": "<img src=x onerror=\"window.__xss='meta'\">"}
    )
    assert server.http.wait(job["job_id"])["status"] == "completed"

    async def scenario() -> None:
        async with dashboard(server) as board:
            page = board.page
            await board.open(f"#/jobs/{job['job_id']}")
            await page.waitForSelector("article.markdown")
            assert "<img src=x" in await board.text("article.markdown")
            assert "<img src=x" in await board.text(".grid-2")
            for tab in ("html", "links", "metadata", "json"):
                await page.click(f"button.tab[data-tab={tab}]")
            await page.click("button.tab[data-tab=html]")
            await page.click(".tab-body .seg.small button:nth-child(2)")
            await page.waitForSelector("iframe.html-frame")
            await asyncio.sleep(0.3)
            assert await page.evaluate("() => window.__xss") is None
            assert (
                await page.querySelectorAllEval("a", "as => as.filter(a => /^javascript:/i.test(a.href)).length") == 0
            )
            assert (
                await page.querySelectorAllEval("img", "imgs => imgs.filter(i => i.getAttribute('src') === 'x').length")
                == 0
            )
            assert await page.querySelectorEval("iframe.html-frame", "f => f.getAttribute('sandbox')") == ""
            await page.click("button.tab[data-tab=markdown]")
            await board.shot("06-hostile-job.png")

    run(scenario())


def test_a_crawl_shows_its_pages_in_a_table(server: ServerThread, site: TargetSite) -> None:
    assert server.app is not None
    if "crawl" not in server.app.kinds.names():
        pytest.skip("this build has no crawl kind")
    job = server.http.submit({"url": site.url("/article"), "max_pages": 3, "max_depth": 1}, kind="crawl")
    assert server.http.wait(job["job_id"])["status"] == "completed"

    async def scenario() -> None:
        async with dashboard(server) as board:
            page = board.page
            await board.open(f"#/jobs/{job['job_id']}")
            await page.waitForSelector("#pages tbody tr")
            urls = await page.querySelectorAllEval("#pages tbody .url", "cells => cells.map(c => c.textContent)")
            assert urls == [site.url("/article"), site.url("/other")]
            assert await board.text("#pages h3") == "Pages (2)"
            await page.click("#pages tbody tr:nth-child(2)")
            await page.waitForSelector("#pages .page-preview article.markdown")
            assert "other page" in await board.text("#pages .page-preview article.markdown")
            await board.shot("07-crawl-pages.png")

    run(scenario())


def test_a_map_lists_its_urls(server: ServerThread, site: TargetSite) -> None:
    assert server.app is not None
    if "map" not in server.app.kinds.names():
        pytest.skip("this build has no map kind")
    job = server.http.submit({"url": site.url("/article")}, kind="map")
    assert server.http.wait(job["job_id"])["status"] == "completed"

    async def scenario() -> None:
        async with dashboard(server) as board:
            await board.open(f"#/jobs/{job['job_id']}")
            await board.page.waitForSelector("button.tab[data-tab=urls]")
            await board.page.click("button.tab[data-tab=urls]")
            assert site.url("/other") in await board.text("ol.links")

    run(scenario())


def test_the_form_shows_what_the_server_refused(server: ServerThread) -> None:
    async def scenario() -> None:
        async with dashboard(server) as board:
            page = board.page
            board.expected_statuses.add(422)
            await board.open("#/new")
            await page.waitForSelector("form.submit-form")
            await page.click("label.seg-item input[value=fetch] + span")
            await page.type("input[name=url]", "file:///etc/passwd")
            await page.click("button[type=submit][form=submit-form]")
            await page.waitForSelector(".form-problem .error-box")
            assert "input.url" in await board.text(".form-problem .error-box")
            assert await page.querySelector("input[name=url].invalid") is not None
            assert await page.evaluate("() => location.hash") == "#/new"
            await board.shot("10-submit-refused.png")

    run(scenario())


def test_filters_search_cancel_and_retry(server: ServerThread, site: TargetSite) -> None:
    later = server.http.submit({"url": site.url("/other")}, delay_s=3600)
    broken = server.http.submit({"url": site.url("/broken")}, max_attempts=1)
    assert server.http.wait(broken["job_id"])["status"] == "failed"

    async def scenario() -> None:
        async with dashboard(server) as board:
            page = board.page
            await board.open()
            await page.waitForSelector(f"tr[data-id='{later['job_id']}']")
            await board.shot("08-jobs-list.png")

            await page.select("select[name=status]", "failed")
            await board.wait_for(
                f"() => ({ROW_STATUS})('{broken['job_id']}') === 'failed' && !({ROW_STATUS})('{later['job_id']}')"
            )
            statuses = await page.querySelectorAllEval("tbody tr[data-id]", "rows => rows.map(r => r.dataset.status)")
            assert set(statuses) == {"failed"}
            assert "upstream_status" in await board.text(f"tr[data-id='{broken['job_id']}']")

            await page.select("select[name=status]", "")
            await page.type("input[name=q]", "/other")
            await board.wait_for(f"() => !({ROW_STATUS})('{broken['job_id']}') && ({ROW_STATUS})('{later['job_id']}')")
            await board.shot("08a-filtered-list.png", "#jobs")

            await page.click(f"tr[data-id='{later['job_id']}'] a.url")
            await page.waitForSelector(".head-actions button[data-action=cancel]")
            await board.shot("09-delayed-job.png")
            await page.click(".head-actions button[data-action=cancel]")
            await board.wait_for(f"() => ({BADGE})() === 'cancelled'")
            await page.click(".head-actions button[data-action=retry]")
            await board.wait_for(f"() => !['', 'cancelled'].includes(({BADGE})())")

    run(scenario())
    assert server.http.get(f"/v1/jobs/{later['job_id']}").json["status"] != "cancelled"


def test_the_dashboard_is_served_with_a_strict_content_security_policy(server: ServerThread) -> None:
    page = server.http.get("/", headers={"Authorization": ""})
    assert page.status == 200 and b'<script type="module" src="/static/app.js">' in page.body
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = server.http.get("/static/app.js", headers={"Authorization": ""})
    assert script.status == 200 and script.headers["content-type"].startswith("text/javascript")
    assert server.http.get("/static/nope.js").status == 404
    assert server.http.get("/static/../pyproject.toml").status == 404
