"""BrowserPool test support: the local site Chromium renders, the network policy, and waiting on a condition.

The test modules keep their own module-scoped `run` and `site` fixtures (built here), so that pytest finds them
without a conftest.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from aiohttp import web

from litejobs.browser import LOOPBACK_ONLY_RULES, find_chromium
from litejobs.errors import BlockedAddress

needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="no Chromium on this machine")
#: Chromium may reach both loopback addresses the tests serve on; the policy alone decides about 127.0.0.2
TEST_RULES = f"{LOOPBACK_ONLY_RULES}, EXCLUDE 127.0.0.2"
Run = Callable[[Coroutine[Any, Any, Any]], Any]


class StandInPolicy:
    """Stands in for litejobs.netpolicy.NetworkPolicy while that is not there: refuses the listed addresses."""

    def __init__(self, blocked: tuple[str, ...] = ()) -> None:
        self.blocked = set(blocked)

    def check_ip(self, ip: str, port: int | None = None) -> None:
        if ip in self.blocked:
            raise BlockedAddress(f"the network policy forbids {ip}")


def make_policy(blocked: tuple[str, ...] = ()) -> Any:
    """The real network policy allowing loopback but `blocked`, or the stand-in."""
    try:
        from litejobs.netpolicy import NetworkPolicy
    except ImportError:
        return StandInPolicy(blocked)
    return NetworkPolicy(allow_private=True, blocked=blocked)


INDEX = """<!doctype html><html><head><title>index</title></head><body>
<button id="btn" onclick="document.getElementById('out').textContent = 'clicked'">go</button>
<p id="out">idle</p>
<input id="inp" oninput="document.getElementById('echo').textContent = 'typed:' + this.value">
<p id="echo"></p>
<script>setTimeout(() => {
  const div = document.createElement('div'); div.id = 'content'; div.textContent = 'Hello injected';
  document.body.appendChild(div);
}, 200);</script></body></html>"""

SCROLL = """<!doctype html><html><body style="margin:0"><ul id="list"></ul><script>
let next = 0, loading = false;
async function more() {
  if (loading) return; loading = true;
  const items = await (await fetch('/items?from=' + next)).json();
  for (const text of items) {
    const li = document.createElement('li'); li.style.height = '100px'; li.textContent = text;
    document.getElementById('list').appendChild(li);
  }
  next += items.length; loading = false;
}
more();
window.addEventListener('scroll', () => {
  if (window.innerHeight + window.scrollY >= document.body.scrollHeight - 50) more();
});
</script></body></html>"""

COOKIE_SET = """<!doctype html><html><body><script>
localStorage.setItem('secret', 'from-first-render'); document.cookie = 'js=1; path=/';
</script></body></html>"""

COOKIE_SHOW = """<!doctype html><html><body><pre id="out"></pre><script>
document.getElementById('out').textContent =
  JSON.stringify({cookie: document.cookie, stored: localStorage.getItem('secret')});
</script></body></html>"""

PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


class Site:
    """The local target site; counts what Chromium asked of it."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.active = self.peak_active = 0
        self.cookie_headers: list[str] = []
        self.hang_started = asyncio.Event()
        self.hang_closed_at: float | None = None
        self.base = ""

    def url(self, path: str) -> str:
        return self.base + path

    def app(self) -> web.Application:
        def page(body: str) -> Callable[[web.Request], Coroutine[Any, Any, web.Response]]:
            async def serve(request: web.Request) -> web.Response:
                return web.Response(text=body, content_type="text/html")

            return serve

        app = web.Application(middlewares=[self._count])
        app.router.add_get("/", page(INDEX))
        app.router.add_get("/scroll", page(SCROLL))
        app.router.add_get("/items", self._items)
        app.router.add_get("/images", page('<img src="/img/a.png"><img src="/img/b.png"><p>pictures</p>'))
        app.router.add_get("/img/{name}", self._image)
        app.router.add_get("/tall", page('<body style="margin:0"><div style="height:3000px">tall</div></body>'))
        app.router.add_get("/cookie/set", self._cookie_set)
        app.router.add_get("/cookie/show", self._cookie_show)
        app.router.add_get("/echo", self._echo)
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/hang", self._hang)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/sub", self._sub)
        return app

    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.hits[request.path.split("/")[1] or "index"] += 1
        self.hits["*"] += 1
        return await handler(request)

    async def _image(self, request: web.Request) -> web.Response:
        return web.Response(body=PNG_1X1, content_type="image/png")

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def _items(self, request: web.Request) -> web.Response:
        start = int(request.query["from"])
        return web.json_response([f"item {i}" for i in range(start, start + 20)])

    async def _cookie_set(self, request: web.Request) -> web.Response:
        response = web.Response(text=COOKIE_SET, content_type="text/html")
        response.set_cookie("sid", "first-render")
        return response

    async def _cookie_show(self, request: web.Request) -> web.Response:
        self.cookie_headers.append(request.headers.get("Cookie", ""))
        return web.Response(text=COOKIE_SHOW, content_type="text/html")

    async def _echo(self, request: web.Request) -> web.Response:
        seen = {k: request.headers.get(k, "") for k in ("User-Agent", "X-Test", "Cookie")}
        return web.Response(text=f"<pre id='seen'>{json.dumps(seen)}</pre>", content_type="text/html")

    async def _slow(self, request: web.Request) -> web.Response:
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            await asyncio.sleep(0.4)
        finally:
            self.active -= 1
        return web.Response(text="<p id='slow'>done</p>", content_type="text/html")

    async def _hang(self, request: web.Request) -> web.StreamResponse:
        """A document that never finishes loading; notes when the browser drops the connection."""
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        await response.write(b"<html><body><p>hanging</p>")
        self.hang_started.set()
        try:
            for _ in range(300):
                await asyncio.sleep(0.05)
                await response.write(b" ")
        except ConnectionError:
            self.hang_closed_at = time.monotonic()
        return response

    async def _sub(self, request: web.Request) -> web.Response:
        target = request.query["target"]
        body = f"<img src='{target}/pixel.png'><script>fetch('{target}/api').catch(() => 0)</script><p id='ok'>ok</p>"
        return web.Response(text=body, content_type="text/html")


async def serve(app: web.Application, host: str) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://{host}:{port}"


def hosted_site(run: Run) -> Iterator[Site]:
    """The Site served on 127.0.0.1 for as long as the module's tests run."""
    target = Site()
    runner, target.base = run(serve(target.app(), "127.0.0.1"))
    yield target
    run(runner.cleanup())


async def until(predicate: Callable[[], Any], timeout_s: float = 5.0) -> float:
    """Poll until predicate() is true; return how long it took."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout_s, "condition not met in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - started
