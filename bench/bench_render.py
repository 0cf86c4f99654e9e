"""Benchmark: renders/s through one pooled Chromium vs a Chromium per render, and the Chromium tree's memory.

Run on demand: `.venv/bin/python bench/bench_render.py [--renders 40] [--concurrency 4] [--egress-only]`.
Everything stays on 127.0.0.1: a local aiohttp page whose content JavaScript inserts after 200 ms, rendered
with wait_for. The egress part renders pages with and without the SOCKS5 egress proxy between Chromium and
the site: that page, one with 20 images each on a new connection, and one that downloads 8 MiB by fetch().
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web

from litejobs import browser
from litejobs.browser import LOOPBACK_ONLY_RULES, BrowserPool, RenderRequest
from litejobs.chromium import group_pids, tree_memory_mb
from litejobs.config import BrowserConfig

# websockets 10.4, which pyppeteer pins, warns on every connect
warnings.filterwarnings("ignore", "remove loop argument", DeprecationWarning)

PAGE = """<!doctype html><html><head><title>bench</title></head><body><p>static part</p>
<script>setTimeout(() => {
  const div = document.createElement('div'); div.id = 'content'; div.textContent = 'Hello injected';
  document.body.appendChild(div);
}, 200);</script></body></html>"""


#: 20 images, each answered with Connection: close, so each one is a new connection (a new CONNECT)
IMAGES = "".join(f'<img src="/img/{i}.png">' for i in range(20))
MANY = f"<!doctype html><html><body>{IMAGES}<p id='content'>many</p></body></html>"
DOWNLOAD = """<!doctype html><html><body><script>
fetch('/blob').then(r => r.arrayBuffer()).then(b => {
  const p = document.createElement('p'); p.id = 'content'; p.textContent = b.byteLength; document.body.appendChild(p);
});
</script></body></html>"""
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
BLOB = bytes(8 * 1024 * 1024)


class AllowAll:
    def check_ip(self, ip: str) -> None:
        return None


def new_pool(max_pages: int) -> BrowserPool:
    return BrowserPool(BrowserConfig(max_pages=max_pages), AllowAll(), host_resolver_rules=LOOPBACK_ONLY_RULES)


async def start_site() -> tuple[web.AppRunner, str]:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    def html(text: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def answer(request: web.Request) -> web.Response:
            return web.Response(text=text, content_type="text/html")

        return answer

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=PNG_1X1, content_type="image/png", headers={"Connection": "close"})

    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=BLOB, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/many", html(MANY))
    app.router.add_get("/img/{name}", image)
    app.router.add_get("/download", html(DOWNLOAD))
    app.router.add_get("/blob", blob)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/"


async def timed_batch(
    count: int, concurrency: int, render_one: Callable[[], Awaitable[None]]
) -> tuple[float, list[float]]:
    """Run `count` renders, `concurrency` at a time; (wall seconds, per-render seconds)."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one() -> None:
        async with gate:
            started = time.monotonic()
            await render_one()
            latencies.append(time.monotonic() - started)

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(count)))
    return time.monotonic() - started, latencies


def report(label: str, count: int, wall_s: float, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    print(
        f"{label:<34} {count} renders in {wall_s:6.2f} s = {count / wall_s:5.2f} renders/s"
        f"   per render median {statistics.median(ordered):.3f} s, p95 {p95:.3f} s"
    )


async def pooled(url: str, count: int, concurrency: int) -> None:
    request = RenderRequest(url, wait_for="#content")
    async with new_pool(concurrency) as pool:
        await pool.render(request)  # launch outside the measurement

        async def render_one() -> None:
            assert "Hello injected" in (await pool.render(request)).html

        wall_s, latencies = await timed_batch(count, concurrency, render_one)
    report(f"pool (1 browser, {concurrency} pages)", count, wall_s, latencies)


async def browser_per_render(url: str, count: int, concurrency: int) -> None:
    request = RenderRequest(url, wait_for="#content")

    async def render_one() -> None:
        async with new_pool(1) as pool:
            assert "Hello injected" in (await pool.render(request)).html

    wall_s, latencies = await timed_batch(count, concurrency, render_one)
    report(f"a browser per render ({concurrency} at once)", count, wall_s, latencies)


def tree(pid: int) -> tuple[int, float, float]:
    pids = group_pids(pid, alive_only=True)
    rss_mb, pss_mb = tree_memory_mb(pids)
    return len(pids), rss_mb, pss_mb


async def memory(url: str, pages: int) -> None:
    async with new_pool(pages) as pool:
        await pool.render(RenderRequest(url))
        await asyncio.sleep(3)
        pid = pool.state()["pid"]
        idle = tree(pid)
        holding = [asyncio.ensure_future(pool.render(RenderRequest(url, wait_ms=4000))) for _ in range(pages)]
        await asyncio.sleep(2.5)
        busy = tree(pid)
        await asyncio.gather(*holding)
        await asyncio.sleep(5)
        after = tree(pid)
    for label, (procs, rss_mb, pss_mb) in (("idle", idle), (f"{pages} pages open", busy), ("5 s after", after)):
        print(f"chromium tree {label:<14} {procs:3d} processes  RSS {rss_mb:7.1f} MiB  PSS {pss_mb:6.1f} MiB")
    rss_mb, pss_mb = (busy[1] - idle[1]) / pages, (busy[2] - idle[2]) / pages
    print(f"per open page (busy - idle) / {pages}      RSS {rss_mb:7.1f} MiB  PSS {pss_mb:6.1f} MiB")


@contextlib.contextmanager
def without_egress_proxy() -> Iterator[None]:
    """Chromium connects to the site directly, as before issue 7 (the proxy starts but is not used)."""
    original = browser.chromium_args

    def direct(rules: str, *, as_root: bool, proxy_port: int | None = None) -> list[str]:
        return original(rules, as_root=as_root)

    browser.chromium_args = direct  # type: ignore[assignment]
    try:
        yield
    finally:
        browser.chromium_args = original


async def egress_cost(url: str, count: int, concurrency: int) -> None:
    """The same renders with and without the egress proxy, alternating so that load drifts hit both."""
    pages = (("bench page", url, count), ("20 images, new connections", url + "many", count // 2))
    for label, page, renders in (*pages, ("8 MiB fetch()", url + "download", count // 4)):
        for at_once in (1, concurrency):
            for proxied in (True, False):
                with contextlib.nullcontext() if proxied else without_egress_proxy():
                    request = RenderRequest(page, wait_for="#content")
                    async with new_pool(at_once) as pool:
                        await pool.render(request)  # launch outside the measurement

                        async def render_one(pool: BrowserPool = pool, request: RenderRequest = request) -> None:
                            await pool.render(request)

                        cpu_started = time.process_time()
                        wall_s, latencies = await timed_batch(renders, at_once, render_one)
                        cpu_ms = (time.process_time() - cpu_started) * 1000 / renders
                        opened = pool._proxy.stats["tunnels_opened"]  # 0 when Chromium went direct
                tag = "proxy" if proxied else "direct"
                report(f"{label[:22]:<22} {at_once} at once {tag:<6}", renders, wall_s, latencies)
                print(f"{'':<41} litejobs CPU {cpu_ms:5.1f} ms per render, tunnels opened {opened}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--renders", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--egress-only", action="store_true", help="only the with/without egress proxy part")
    args = parser.parse_args()
    runner, url = await start_site()
    try:
        if not args.egress_only:
            await pooled(url, args.renders, args.concurrency)
            await browser_per_render(url, args.renders, args.concurrency)
            await memory(url, args.concurrency)
        await egress_cost(url, args.renders, args.concurrency)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
