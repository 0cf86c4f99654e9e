"""Dashboard test support: the target site, the server with a key, and a dashboard page in headless Chromium.

The test modules keep their own module-scoped `site` and `server` fixtures (built here), so that pytest finds them
without a conftest; each module costs one extra server, while Chromium starts per test anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
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
#: every dashboard module's marks: a real Chromium, and slow
MARKS = [
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


# -- the target site and the server (each test module wraps these in its module-scoped fixtures) ----------


def build_site() -> TargetSite:
    """The target site every dashboard test reads: plain, hostile, broken, slow and echoing pages, a fake model."""
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

    async def echo(request: web.Request) -> web.Response:
        sent = (await request.read()).decode()
        page = (
            f"<html><body><p>method {request.method}</p><p>type {request.content_type}</p><p>{sent}</p></body></html>"
        )
        return web.Response(text=page, content_type="text/html")

    target.add("/echo", echo)
    target.add("/v1/chat/completions", fake_model)
    return target


#: the fake model's answer: markdown, with HTML that must stay text
AI_ANSWER = "# The answer\n\nIt is **42**.\n\n<script>window.__xss = 'ai'</script>"


async def fake_model(request: web.Request) -> web.Response:
    """An OpenAI-compatible chat endpoint that answers every prompt with AI_ANSWER."""
    await request.json()
    return web.json_response(
        {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": AI_ANSWER}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }
    )


@contextlib.contextmanager
def key_server(tmp_path_factory: pytest.TempPathFactory, site: TargetSite) -> Iterator[ServerThread]:
    """The real server with one API key and the site's fake model as its AI."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ai = {"base_url": site.url("/v1"), "model": "fake-model", "timeout_s": 10.0}
    config = make_config(tmp_path_factory.mktemp("dashboard"), auth={"keys": [KEY]}, ai=ai)
    with ServerThread(config) as running:
        yield running


def keep_pyppeteer_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep Chromium's control traffic off any proxy, and pyppeteer's files under test-artifacts/."""
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


#: a job row's status, or null while the list does not show it
ROW_STATUS = "(id) => { const row = document.querySelector(`tr[data-id='${id}']`); return row && row.dataset.status }"
#: the status badge of the job detail page
BADGE = "() => { const badge = document.querySelector('.detail-head .badge'); return badge ? badge.textContent : '' }"
